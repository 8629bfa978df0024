"""LiveFusion, the live policy without ROS: frames held for lifted poses, eviction, staleness, refinement.

Times are made up (the policy takes `now` from its caller), so every wait is exact.
"""
import time

import numpy as np
import pytest

from hpe_ros.calibration.online import RefineResult
from hpe_ros.camera import Rig
from hpe_ros.fusion import FusionConfig, LiveConfig, LiveFusion, TrackerConfig
from hpe_ros.fusion.live import LIFTED_FRAMES_KEPT

from helpers.fusion_scenes import observe, person, random_people, ring_rig

RIG = ring_rig(4)
PERSON = person(0.2, -0.1)
T0 = 1000.0
DT = 1 / 30
NOBODY = np.zeros((0, 17, 2)), np.zeros((0, 17))


def make_live(refiner=None, background=None, **live_options) -> LiveFusion:
    """Tracks are published from their first frame (birth_hits = 1)."""
    extra = {} if background is None else {"background": background}
    return LiveFusion(RIG, "coco17", FusionConfig(tracker=TrackerConfig(birth_hits=1)), LiveConfig(**live_options),
                      refiner=refiner, **extra)


def send_frame(live, stamp, now, seen_by=None):
    """Every camera's 2D message of one frame; cameras not in seen_by (None = all) see nobody."""
    px, sc = observe(RIG, PERSON)
    for c, name in enumerate(RIG.names):
        points, scores = (px[c][None], sc[c][None]) if seen_by is None or name in seen_by else NOBODY
        assert live.add_2d(name, stamp, points, scores, now).status == "accepted"


def send_lifted(live, camera, stamp, now):
    live.add_lifted(camera, stamp, RIG[camera].world_to_camera(PERSON)[None], np.full((1, 17), 0.9), now)


def test_a_frame_is_fused_when_every_camera_is_in():
    live = make_live()
    send_frame(live, T0, T0 + 0.01)
    out = live.finished()                                 # fused as the last camera came in
    assert len(out) == 1 and out[0].cameras == 4
    assert out[0].input_wait_s == pytest.approx(0.01)
    points, _, ids, views = out[0].result.as_arrays()
    assert len(ids) == 1 and (views[0] >= 2).all()
    assert np.abs(points[0] - PERSON).max() < 1e-6
    assert live.poll(T0 + 0.02) == [] and live.take_events() == []


def test_a_single_view_frame_waits_for_its_lifted_pose():
    live = make_live(lifter_wait_s=0.05)
    send_lifted(live, "cam0", T0 - DT, T0)               # the lifter is alive
    send_frame(live, T0, T0 + 0.01, seen_by={"cam0"})
    assert live.poll(T0 + 0.03) == []                    # held: the person would be dropped without it
    send_lifted(live, "cam0", T0, T0 + 0.035)
    out = live.finished()                                # released by its lifted pose, no timer needed
    assert len(out) == 1
    points, confidence, ids, views = out[0].result.as_arrays()
    assert len(ids) == 1 and (views[0] == 1).all()
    assert np.abs(points[0] - PERSON).max() < 1e-6      # placed by its camera as lifted
    np.testing.assert_allclose(confidence[0], 0.5 * 0.9)


def test_a_held_frame_goes_on_without_its_lifted_pose_when_the_wait_is_over():
    live = make_live(lifter_wait_s=0.05)
    send_lifted(live, "cam0", T0 - DT, T0)
    send_frame(live, T0, T0 + 0.01, seen_by={"cam0"})
    assert live.poll(T0 + 0.055) == []
    out = live.poll(T0 + 0.07)
    assert len(out) == 1 and out[0].result.persons == []  # one view, no lifted pose: nobody to place


def test_a_newer_frame_releases_the_held_one_first():
    live = make_live(lifter_wait_s=0.5)
    send_lifted(live, "cam0", T0 - DT, T0)
    send_frame(live, T0, T0 + 0.01, seen_by={"cam0"})
    send_frame(live, T0 + DT, T0 + DT + 0.01)            # complete and seen by all: needs no lifted pose
    out = live.finished()
    assert [o.result.stamp for o in out] == pytest.approx([T0, T0 + DT])
    assert out[0].result.persons == [] and len(out[1].result.persons) == 1


@pytest.mark.parametrize("why", ["lifter silent", "lifter off", "no wait"])
def test_frames_are_not_held_when_waiting_cannot_help(why):
    options = {"lifter silent": {}, "lifter off": {"use_lifter": False}, "no wait": {"lifter_wait_s": 0.0}}[why]
    live = make_live(**{"lifter_wait_s": 0.05, **options})
    heard = T0 - 1.0 if why == "lifter silent" else T0   # camera_timeout_s is 0.5 s
    send_lifted(live, "cam0", T0 - 1.0, heard)
    send_frame(live, T0, T0 + 0.01, seen_by={"cam0"})
    assert len(live.poll(T0 + 0.01)) == 1


def test_only_the_last_frames_lifted_poses_are_kept():
    live = make_live(lifter_wait_s=0.05)
    stamps = T0 + np.arange(LIFTED_FRAMES_KEPT + 2) * DT
    for stamp in stamps:
        send_lifted(live, "cam0", stamp, T0)
    # The two oldest were evicted: that frame waits and goes on unplaced; the newest is placed at once.
    send_frame(live, stamps[0], T0 + 0.01, seen_by={"cam0"})
    assert live.poll(T0 + 0.02) == []
    out = live.poll(T0 + 0.1)
    assert len(out) == 1 and out[0].result.persons == []
    # Arriving after its stamp: a stamp ahead of the clock would be taken for a camera clock running ahead.
    send_frame(live, stamps[-1], stamps[-1] + 0.01, seen_by={"cam0"})
    out = live.poll(stamps[-1] + 0.01)
    assert len(out) == 1 and len(out[0].result.persons) == 1


def test_stale_late_and_malformed_messages():
    live = make_live()
    px, sc = observe(RIG, PERSON)
    stale = live.add_2d("cam0", T0 - 1.0, px[0][None], sc[0][None], T0)
    assert stale.status == "stale" and stale.age_s == pytest.approx(1.0)
    send_frame(live, T0, T0 + 0.01)
    assert len(live.poll(T0 + 0.01)) == 1
    assert live.add_2d("cam1", T0 - 0.1, px[1][None], sc[1][None], T0 + 0.02).status == "late"
    assert live.sync.counters.late == 1
    with pytest.raises(ValueError, match="unknown camera 'camX'"):
        live.add_2d("camX", T0 + 0.1, *NOBODY, T0 + 0.1)
    with pytest.raises(ValueError, match=r"points2d must have shape \(P, 17, 2\), got \(1, 5, 2\)"):
        live.add_2d("cam0", T0 + 0.1, np.zeros((1, 5, 2)), np.ones((1, 5)), T0 + 0.1)
    with pytest.raises(ValueError, match="scores must have shape"):
        live.add_2d("cam0", T0 + 0.1, np.zeros((2, 17, 2)), np.ones((1, 17)), T0 + 0.1)
    with pytest.raises(ValueError, match="points3d must have shape"):
        live.add_lifted("cam0", T0 + 0.1, np.zeros((1, 17, 2)), np.ones((1, 17)), T0 + 0.1)
    # Nobody seen: any joint count will do.
    assert live.add_2d("cam0", T0 + 0.1, np.zeros((0, 5, 2)), np.zeros((0, 5)), T0 + 0.1).status == "accepted"


def test_a_frame_the_pipeline_rejects_is_dropped_with_an_event():
    live = make_live()
    live.pipeline.step(T0 + 10.0, np.zeros((4, 0, 17, 2)), np.zeros((4, 0, 17)))  # a newer stamp went through
    send_frame(live, T0, T0 + 0.01)
    assert live.poll(T0 + 0.01) == []
    events = live.take_events()
    assert [e.kind for e in events] == ["frame_dropped"] and "backwards" in events[0].message
    assert live.take_events() == []


class FakeRefiner:
    """Ready after two frames; refine() returns (or raises) the next of `outcomes`."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.added, self.rigs = [], []

    def add(self, stamp, points2d, scores, fused):
        self.added.append((stamp, points2d.shape, scores.shape, fused.shape))
        return fused.size

    def ready(self):
        return len(self.added) >= 2

    def refine(self):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def set_rig(self, rig):
        self.rigs.append(rig)


def refine_result(accepted: bool, rig: Rig) -> RefineResult:
    return RefineResult(accepted, "as planned", rig, 2.0, 1.0, np.full(4, 0.5), np.full(4, 0.01))


def test_refinement_runs_in_the_background_once_per_period_and_an_accepted_rig_is_applied():
    moved = Rig([c.copy(t=c.t + [0.01, 0.0, 0.0]) for c in RIG])
    refiner = FakeRefiner([refine_result(True, moved), refine_result(False, moved), RuntimeError("no points")])
    jobs = []  # background work, run when the test says so
    live = make_live(refiner=refiner, background=jobs.append, refine_period_s=1.0)
    for k in range(3):
        send_frame(live, T0 + k * DT, T0 + k * DT + 0.01)
        assert len(live.poll(T0 + k * DT + 0.01)) == 1
    # Every frame fed the refiner (one person, seen by four cameras); one refinement started once it was ready.
    assert [a[1:] for a in refiner.added] == [((4, 1, 17, 2), (4, 1, 17), (1, 17, 3))] * 3
    assert len(jobs) == 1
    live.poll(T0 + 0.2)
    assert len(jobs) == 1 and live.rig is RIG               # one at a time, applied only once finished
    jobs[0]()
    assert live.rig is RIG                                  # applied by poll, on the caller's thread
    live.poll(T0 + 0.3)
    assert live.rig is moved and live.pipeline.rig is moved and refiner.rigs == [moved] and live.refinements == 1
    [event] = live.take_events()
    assert event.kind == "refine_applied" and "error 2.00 -> 1.00 px" in event.message
    assert "cam0 0.50 deg" in event.message
    assert event.refinement.accepted

    live.poll(T0 + 0.9)
    assert len(jobs) == 1                                   # at most once per refine_period_s
    live.poll(T0 + 1.1)
    assert len(jobs) == 2
    jobs[1]()
    live.poll(T0 + 1.2)
    [event] = live.take_events()
    assert event.kind == "refine_kept" and "as planned" in event.message and live.refinements == 1

    live.poll(T0 + 2.2)
    jobs[2]()
    live.poll(T0 + 2.3)
    [event] = live.take_events()
    assert event.kind == "refine_failed" and "no points" in event.message and live.rig is moved


def test_the_default_background_is_a_thread():
    moved = Rig([c.copy(t=c.t + [0.01, 0.0, 0.0]) for c in RIG])
    live = make_live(refiner=FakeRefiner([refine_result(True, moved)]))
    for k in range(2):
        send_frame(live, T0 + k * DT, T0 + k * DT + 0.01)
        live.poll(T0 + k * DT + 0.01)
    for k in range(500):
        if live.refinements:
            break
        time.sleep(0.01)
        live.poll(T0 + 0.1 + k * 1e-3)
    assert live.rig is moved


def test_a_future_stamp_is_dropped_and_the_other_cameras_keep_fusing():
    live = make_live()
    px, sc = observe(RIG, PERSON)
    for k in range(8):
        send_frame(live, T0 + k * DT, T0 + k * DT + 0.01)
    future = live.add_2d("cam2", T0 + 3600, px[2][None], sc[2][None], T0 + 8 * DT + 0.01)
    assert future.status == "future"
    for k in range(8, 12):
        send_frame(live, T0 + k * DT, T0 + k * DT + 0.01)
    assert live.sync.counters.late == 0 and len(live.finished()) == 12


def test_a_camera_whose_clock_runs_ahead_is_dropped_and_named():
    live = make_live()
    px, sc = observe(RIG, PERSON)
    statuses = []
    for k in range(12):
        stamp, now = T0 + k * DT, T0 + k * DT + 0.01
        for c, name in enumerate(RIG.names):
            arrival = live.add_2d(name, stamp + (0.2 if name == "cam3" else 0.0), px[c][None], sc[c][None], now)
            if name == "cam3":
                statuses.append(arrival.status)
        live.poll(now + 0.05)
    assert statuses[-1] == "ahead" and arrival.clock_offset_s == pytest.approx(0.2)
    assert live.clocks.offsets()["cam0"] == pytest.approx(0.0)
    assert live.sync.counters.late == 0


def crowd(n, confidence, seed=0):
    """n random 2D people (n, 17, 2) px with every joint at `confidence`."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 480, (n, 17, 2)), np.full((n, 17), confidence)


def test_a_flooded_message_keeps_its_most_confident_people():
    live = make_live(max_persons_per_camera=5)
    px, sc = observe(RIG, PERSON)
    junk, junk_scores = crowd(1000, 0.3)
    points = np.concatenate([junk[:500], px[0][None], junk[500:]])
    scores = np.concatenate([junk_scores[:500], np.clip(sc[0], 0.9, 1)[None], junk_scores[500:]])
    arrival = live.add_2d("cam0", T0, points, scores, T0 + 0.01)
    assert arrival.status == "accepted" and arrival.persons_dropped == 996
    for c, name in enumerate(RIG.names[1:], start=1):
        live.add_2d(name, T0, px[c][None], sc[c][None], T0 + 0.01)
    (out,) = live.finished()
    kept = out.result  # the real person is among the 5 kept and is fused
    assert any(np.nanmax(np.abs(p.joints - PERSON)) < 0.05 for p in kept.persons)


def test_a_frame_keeps_its_most_confident_people_over_all_cameras():
    live = make_live(max_persons_per_camera=50, max_persons_per_frame=10)
    px, sc = observe(RIG, PERSON)
    junk, junk_scores = crowd(30, 0.3)
    for c, name in enumerate(RIG.names):
        live.add_2d(name, T0, np.concatenate([junk, px[c][None]]),
                    np.concatenate([junk_scores, np.clip(sc[c], 0.9, 1)[None]]), T0 + 0.01)
    (out,) = live.finished()
    assert live.frame_persons_dropped == 4 * 31 - 10
    assert [e.kind for e in live.take_events()] == ["persons_capped"]
    assert any(np.nanmax(np.abs(p.joints - PERSON)) < 0.05 for p in out.result.persons)


def test_state_stays_bounded_while_people_come_and_go():
    """A long run with people churning (new track ids all along), a camera dropping out now and then and
    lifted poses for one camera: every container LiveFusion keeps stays bounded, whatever the frame count."""
    live = make_live(lifter_wait_s=0.005)
    rng = np.random.default_rng(3)
    frames, churn = 1500, 10
    for k in range(frames):
        if k % churn == 0:
            people = random_people(rng, int(rng.integers(1, 4)))
        stamp = T0 + k * DT
        px, sc = observe(RIG, people, rng, noise_px=1.0)
        for c, name in enumerate(RIG.names):
            if name == "cam3" and k % 7 == 0:
                continue  # a camera missing from some frames: they go on after their wait
            live.add_2d(name, stamp, px[c], sc[c], stamp + 0.01)
        live.add_lifted("cam0", stamp, RIG["cam0"].world_to_camera(people), np.full((len(people), 17), 0.9),
                        stamp + 0.012)
        live.poll(stamp + 0.06)
        live.take_events()
    tracker = live.pipeline.tracker
    assert tracker._next_id > frames // churn  # ids kept coming...
    # ...but dead tracks' slots are reused: capacity covers the tracks alive at once (old ones linger for
    # death_timeout_s after a churn), not every id ever made; the filter's state follows the slots.
    assert len(tracker._id) <= 16 and tracker._filter.t_prev.shape[0] == len(tracker._id)
    assert live.sync.counters.superseded + live.sync.counters.overflow < frames
    assert len(live.sync.pending) <= live.sync.max_pending
    assert set(live.sync.last_heard) <= set(RIG.names) and set(live.sync.newest) <= set(RIG.names)
    assert all(len(store) <= LIFTED_FRAMES_KEPT for store in live._lifted.values())
    assert all(len(h) <= h.maxlen for h in live.clocks._skews.values())
    assert live.finished() == [] and live.take_events() == []
