"""Filters and the 3D tracker on synthetic skeletons (no cameras, no sim)."""
import numpy as np
import pytest

from hpe_ros.fusion.filters import FILTERS, OneEuroFilter, PassThrough, make_filter
from hpe_ros.fusion.tracking import Tracker, TrackerConfig, pose_distance
from hpe_ros.skeleton import COCO17

from helpers.fusion_scenes import TEMPLATE, person

DT = 1 / 30


def observe(poses, rng, noise=0.01, miss=0.05):
    """Noisy measurements of (G, 17, 3) poses with some joints missing -> poses, confidence, views."""
    poses = poses + rng.normal(0, noise, poses.shape)
    conf = rng.uniform(0.6, 1.0, poses.shape[:2])
    missing = rng.random(poses.shape[:2]) < miss
    poses[missing] = np.nan
    conf[missing] = 0
    return poses, conf, np.where(missing, 0, 3)


# --- filters -------------------------------------------------------------------------------------------

def test_filter_smooths_noise_at_rest():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(1.0, 20.0)
    truth = np.array([[1.0, 2.0, 1.0]] * 5)                    # 5 elements at rest
    noisy = truth + rng.normal(0, 0.005, (300,) + truth.shape)
    out = np.array([f(k * DT, x) for k, x in enumerate(noisy)])[60:]
    rms = lambda x: np.sqrt(((x - truth) ** 2).sum(-1).mean())
    assert rms(out) < 0.6 * rms(noisy[60:]), (rms(out), rms(noisy))


def test_one_euro_follows_a_ramp_with_small_lag():
    f = OneEuroFilter(min_cutoff=1.0, beta=20.0)
    times = np.arange(120) * DT
    ramp = np.stack([times * 1.0, np.zeros_like(times), np.ones_like(times)], -1)[:, None]  # 1 m/s along x
    out = np.array([f(t, x) for t, x in zip(times, ramp)])
    lag = np.abs(out[60:, 0, 0] - ramp[60:, 0, 0]).max()
    assert lag < 0.015, lag                                    # < 15 mm behind a 1 m/s walk
    assert 0.9 < f.velocity[0, 0] < 1.3                     # speed estimate (drives the cutoff)


def test_filters_are_chosen_by_name_with_their_prefixed_settings():
    assert set(FILTERS) >= {"one_euro", "none"}
    f = make_filter("one_euro", TrackerConfig(one_euro_beta=3.0, one_euro_min_cutoff=2.0))
    assert isinstance(f, OneEuroFilter) and (f.beta, f.min_cutoff, f.d_cutoff) == (3.0, 2.0, 1.0)
    none = make_filter("none", TrackerConfig())
    assert isinstance(none, PassThrough)
    x = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(none(0.0, x), x)
    with pytest.raises(ValueError, match="unknown filter 'kalman'; choose one of: one_euro, none"):
        make_filter("kalman")
    with pytest.raises(ValueError, match="filter must be one of"):
        TrackerConfig(filter="kalman")


def test_filter_masks_reset_and_resize():
    f = OneEuroFilter()
    x = np.zeros((2, 3, 3))
    valid = np.array([[True, False, True], [True, True, True]])
    out = f(0.0, x, valid)
    assert np.isnan(out[0, 1]).all() and np.isfinite(out[1]).all()   # never seen -> NaN
    out = f(DT, x + 5.0, ~valid)                                       # only [0, 1] updates
    assert np.allclose(out[0, 1], 5.0) and np.allclose(out[1], 0.0)   # first sample initialises
    f.reset(np.array([[True, False, False], [False, False, False]]))
    assert np.allclose(f(2 * DT, x + 3.0)[0, 0], 3.0)                  # restarted element jumps
    f.resize(4)
    assert f(3 * DT, np.ones((4, 3, 3))).shape == (4, 3, 3)
    with pytest.raises(ValueError, match="resize"):
        f(4 * DT, np.ones((5, 3, 3)))


# --- tracker -------------------------------------------------------------------------------------------

def run_walkers(paths, seconds, rng, tracker=None, **observe_kw):
    """Feed the tracker walkers (list of functions t -> (x, y, yaw)); returns per-frame (truth, tracks)."""
    tracker = tracker or Tracker()
    frames = []
    for k in range(int(seconds / DT)):
        t = k * DT
        truth = np.stack([person(*p(t)) for p in paths])
        poses, conf, views = observe(truth, rng, **observe_kw)
        order = rng.permutation(len(poses))                      # input order carries no identity
        ids, priors = tracker.predict(t)
        assert priors.shape == (len(ids), 17, 3)
        tracks = tracker.update(t, poses[order], conf[order], views[order])
        frames.append((truth, tracks))
    return frames


def id_switches(frames):
    """Ground-truth person -> track id by nearest pose each frame; count changes of that mapping."""
    last, switches, used = {}, 0, set()
    for truth, tracks in frames:
        if not tracks:
            continue
        d = pose_distance(truth, np.stack([tr.joints for tr in tracks]))
        for p in range(len(truth)):
            tid = tracks[int(np.argmin(d[p]))].id
            used.add(tid)
            if p in last and last[p] != tid:
                switches += 1
            last[p] = tid
    return switches, used


@pytest.mark.parametrize("lateral_gap", [0.6, 0.8])
def test_ids_survive_two_walkers_crossing(lateral_gap):
    rng = np.random.default_rng(1)
    speed = 1.4
    # One walks +x, the other -x on a parallel line `lateral_gap` away: they pass at t = 2 s, face to face.
    a = lambda t: (-2.8 + speed * t, 0.0, 0.0)
    b = lambda t: (2.8 - speed * t, lateral_gap, np.pi)
    frames = run_walkers([a, b], 4.0, rng)
    closest = min(np.linalg.norm(np.subtract(a(t)[:2], b(t)[:2])) for t in np.arange(0, 4, DT))
    assert closest <= lateral_gap + 0.01
    switches, used = id_switches(frames)
    assert switches == 0 and len(used) == 2
    assert all(len(tracks) == 2 for _, tracks in frames[3:])


def test_ids_survive_an_x_crossing():
    rng = np.random.default_rng(2)
    v = 1.4 / np.sqrt(2)
    # Diagonal paths through the origin; the second is 0.45 s late, so they are ~0.6 m apart there.
    a = lambda t: (-2 + v * t, -2 + v * t, np.pi / 4)
    b = lambda t: (2 - v * (t - 0.45), -2 + v * (t - 0.45), 3 * np.pi / 4)
    frames = run_walkers([a, b], 4.5, rng)
    switches, used = id_switches(frames)
    assert switches == 0 and len(used) == 2


def test_birth_only_after_birth_hits_and_ids_never_reused():
    rng = np.random.default_rng(3)
    tracker = Tracker(TrackerConfig(birth_hits=3))
    pose = person(0, 0)[None]
    counts = [len(tracker.update(k * DT, *observe(pose, rng, miss=0))) for k in range(4)]
    assert counts == [0, 0, 1, 1]
    # A one-frame ghost elsewhere is never published.
    ghost = np.concatenate([pose, person(3, 3)[None]])
    tracks = tracker.update(4 * DT, *observe(ghost, rng, miss=0))
    tracks = tracker.update(5 * DT, *observe(pose, rng, miss=0))
    assert [tr.id for tr in tracks] == [0]
    assert tracker.num_live == 1


def test_track_holds_joints_then_dies_after_timeout():
    rng = np.random.default_rng(4)
    tracker = Tracker(TrackerConfig(death_timeout_s=0.5, joint_hold_s=0.2))
    pose = person(1, 1)[None]
    for k in range(10):
        tracker.update(k * DT, *observe(pose, rng, noise=0.002, miss=0))
    t0 = 9 * DT
    empty = (np.zeros((0, 17, 3)), np.zeros((0, 17)), np.zeros((0, 17)))
    held = tracker.update(t0 + 0.1, *empty)
    assert len(held) == 1 and np.isfinite(held[0].joints).all()         # joints extrapolated
    assert np.abs(held[0].joints - pose[0]).max() < 0.05
    assert (held[0].views == 0).all() and (held[0].confidence < 0.6).all()
    dropped = tracker.update(t0 + 0.3, *empty)
    assert len(dropped) == 1 and np.isnan(dropped[0].joints).all()      # past the hold: NaN, still alive
    assert tracker.update(t0 + 0.55, *empty) == []                       # past the timeout: dead
    # The same person coming back is a new track with a new id.
    for k in range(3):
        tracks = tracker.update(t0 + 0.6 + k * DT, *observe(pose, rng, miss=0))
    assert [tr.id for tr in tracks] == [1]


def test_velocity_gate_rejects_a_teleporting_joint():
    rng = np.random.default_rng(5)
    tracker = Tracker(TrackerConfig(max_joint_speed=10.0))
    wrist = COCO17.index("left_wrist")
    for k in range(10):
        tracker.update(k * DT, *observe(person(0.02 * k, 0)[None], rng, noise=0.002, miss=0))
    poses, conf, views = observe(person(0.2, 0)[None], rng, noise=0.002, miss=0)
    poses[0, wrist] += [0.0, 2.0, 0.0]                                    # 2 m in one frame = 60 m/s
    (track,) = tracker.update(10 * DT, poses, conf, views)
    assert np.linalg.norm(track.joints[wrist] - person(0.2, 0)[wrist]) < 0.03   # predicted instead
    assert track.views[wrist] == 0
    others = np.delete(np.arange(17), wrist)
    assert (track.views[others] == 3).all()
    (track,) = tracker.update(11 * DT, *observe(person(0.22, 0)[None], rng, noise=0.002, miss=0))
    assert track.views[wrist] == 3                                        # back to normal next frame


def test_bone_lengths_converge_and_steady_the_skeleton():
    rng = np.random.default_rng(6)
    cfg = TrackerConfig(filter="none", bone_min_samples=15)
    tracker = Tracker(cfg)
    bones = COCO17.bone_array()
    true_len = np.linalg.norm(TEMPLATE[bones[:, 1]] - TEMPLATE[bones[:, 0]], axis=-1)
    raw_err, out_err = [], []
    for k in range(90):
        truth = person(0.03 * k, 0, yaw=0.01 * k)[None]
        poses, conf, views = observe(truth, rng, noise=0.015, miss=0)
        tracks = tracker.update(k * DT, poses, conf, views)
        if k >= 45:
            length = lambda p: np.linalg.norm(p[bones[:, 1]] - p[bones[:, 0]], axis=-1)
            raw_err.append(np.abs(length(poses[0]) - true_len))
            out_err.append(np.abs(length(tracks[0].joints) - true_len))
    raw_err, out_err = np.mean(raw_err), np.mean(out_err)
    assert out_err < 0.85 * raw_err, (raw_err, out_err)            # gently pulled toward stable lengths
    estimate = tracker.bone_lengths(tracks[0].id)
    assert np.abs(estimate - true_len).max() < 0.01                 # running estimate converged


def test_duplicate_group_is_merged_not_a_second_track():
    rng = np.random.default_rng(7)
    tracker = Tracker()
    pose = person(0, 0)[None]
    for k in range(5):
        tracker.update(k * DT, *observe(pose, rng, miss=0))
    # Association split the person in two groups (e.g. upper / lower body from different cameras).
    p, c, v = observe(np.concatenate([pose, pose]), rng, noise=0.01, miss=0)
    p[0, 11:], c[0, 11:] = np.nan, 0
    p[1, :11], c[1, :11] = np.nan, 0
    p[1, 5:7] = pose[0, 5:7]  # shoulders shared so the halves can be compared
    c[1, 5:7] = 0.8
    p[1, 11:] += 0.08          # and the lower half sits off a little
    for k in range(5, 10):
        tracks = tracker.update(k * DT, p, c, v)
    assert [tr.id for tr in tracks] == [0] and tracker.num_live == 1


def test_update_validates_shapes_and_time():
    tracker = Tracker()
    tracker.update(1.0, np.zeros((0, 17, 3)), np.zeros((0, 17)), np.zeros((0, 17)))
    with pytest.raises(ValueError, match="backwards"):
        tracker.update(0.5, np.zeros((0, 17, 3)), np.zeros((0, 17)))
    with pytest.raises(ValueError, match=r"poses must have shape \(\?, 17, 3\), got \(1, 16, 3\)"):
        tracker.update(2.0, np.zeros((1, 16, 3)), np.zeros((1, 16)))
    with pytest.raises(ValueError, match="confidence"):
        tracker.update(2.0, np.zeros((2, 17, 3)), np.zeros((1, 17)))


def test_many_people_grow_the_slot_arrays():
    rng = np.random.default_rng(8)
    tracker = Tracker(capacity=2)
    grid = [(x, y) for x in range(4) for y in range(3)]              # 12 people 1 m apart
    for k in range(5):
        poses = np.stack([person(x + 0.02 * k, y) for x, y in grid])
        tracks = tracker.update(k * DT, *observe(poses, rng))
    assert [tr.id for tr in tracks] == list(range(12))
    d = pose_distance(np.stack([tr.joints for tr in tracks]), poses)
    assert (d.argmin(1) == np.arange(12)).all() and d.min(1).max() < 0.03
