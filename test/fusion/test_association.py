"""Cross-view association: identities recovered across cameras, priors, singletons, empty inputs."""
import time

import numpy as np
import pytest

from hpe_ros.fusion.association import Association, associate

from helpers.fusion_scenes import observe, random_people, ring_rig


def _scene(rng, cameras, people, noise_px=0.0, outliers=0.0, separation=0.7):
    """Detections shuffled per camera: row r of camera c shows person perm[c, r]."""
    rig = ring_rig(cameras)
    truth = random_people(rng, people, separation)
    px, sc = observe(rig, truth, rng, noise_px)                      # (C, P, J, 2), (C, P, J)
    if outliers:
        m = (rng.random(sc.shape) < outliers) & (sc > 0)
        px[m] += rng.uniform(-120, 120, (m.sum(), 2))
    perm = np.stack([rng.permutation(people) for _ in range(cameras)])
    px = np.take_along_axis(px, perm[:, :, None, None], 1)
    sc = np.take_along_axis(sc, perm[:, :, None], 1)
    return rig, truth, px, sc, perm


def _check_structure(assoc: Association, cameras: int, people: int):
    assert assoc.groups.shape[1] == cameras and assoc.prior_index.shape == (len(assoc.groups),)
    for c in range(cameras):
        rows = assoc.groups[:, c][assoc.groups[:, c] >= 0]
        assert len(rows) == len(set(rows.tolist())), "a detection is in two groups"
        assert np.all(rows < people)
    assert np.all((assoc.groups >= 0).any(1)), "empty group"


def _correct(assoc: Association, perm: np.ndarray) -> int:
    """Detections in the group that holds most of their person, where that group is theirs alone."""
    ids = np.where(assoc.groups >= 0, perm[np.arange(perm.shape[0])[None], np.maximum(assoc.groups, 0)], -1)
    correct = 0
    for person in range(perm.shape[1]):
        count = (ids == person).sum(1)
        g = count.argmax()
        others = (ids[g] >= 0) & (ids[g] != person)
        correct += count[g] if not others.any() else 0
    return int(correct)


@pytest.mark.parametrize("cameras", [4, 6, 8])
def test_noise_free_identities_are_exact(cameras):
    rng = np.random.default_rng(cameras)
    for _ in range(8):
        people = int(rng.integers(2, 7))
        rig, truth, px, sc, perm = _scene(rng, cameras, people)
        assoc = associate(rig, px, sc)
        _check_structure(assoc, cameras, people)
        assert len(assoc) == people
        assert _correct(assoc, perm) == (sc.max(-1) > 0).sum()
        assert np.all(assoc.prior_index == -1)


def test_noisy_with_outliers_over_many_scenes():
    rng = np.random.default_rng(10)
    total = correct = 0
    for _ in range(30):
        cameras, people = int(rng.integers(4, 9)), int(rng.integers(2, 7))
        rig, truth, px, sc, perm = _scene(rng, cameras, people, noise_px=2.0, outliers=0.05)
        assoc = associate(rig, px, sc)
        _check_structure(assoc, cameras, people)
        total += cameras * people
        correct += _correct(assoc, perm)
    print(f"2 px noise + 5% joint outliers: {correct / total:.1%} of detections correctly grouped")
    assert correct / total >= 0.95


def test_priors_keep_close_people_apart():
    rng = np.random.default_rng(11)
    total = correct = 0
    for _ in range(10):
        rig = ring_rig(4)
        centre = rng.uniform(-0.8, 0.8, 2)
        step = rng.uniform(0.35, 0.55) * np.array([np.cos(a := rng.uniform(0, np.pi)), np.sin(a)])
        from helpers.fusion_scenes import random_person
        truth = np.stack([random_person(rng, centre + k * step) for k in (-1, 0, 1)])   # < 0.6 m apart
        px, sc = observe(rig, truth, rng, 2.0)
        perm = np.stack([rng.permutation(3) for _ in range(4)])
        px = np.take_along_axis(px, perm[:, :, None, None], 1)
        sc = np.take_along_axis(sc, perm[:, :, None], 1)
        priors = truth + rng.normal(0, 0.03, truth.shape)      # the tracker's prediction, 3 cm off
        priors[:, :3] = np.nan                                  # joints may be missing
        assoc = associate(rig, px, sc, priors=priors)
        _check_structure(assoc, 4, 3)
        assert sorted(assoc.prior_index.tolist()) == [0, 1, 2]
        for g, t in zip(assoc.groups, assoc.prior_index):
            seen = perm[np.arange(4)[g >= 0], g[g >= 0]]
            assert np.all(seen == t), "prior group holds another person"
        total += 12
        correct += _correct(assoc, perm)
    assert correct == total


def test_prior_gate_and_new_people():
    rng = np.random.default_rng(12)
    rig, truth, px, sc, perm = _scene(rng, 5, 3)
    # Prior 0 is person 0; prior 1 is far from everyone and must not grab anybody.
    priors = np.stack([truth[0], truth[0] + [5.0, 5.0, 0.0]])
    assoc = associate(rig, px, sc, priors=priors)
    assert assoc.prior_index.tolist().count(0) == 1 and 1 not in assoc.prior_index
    assert len(assoc) == 3
    assert _correct(assoc, perm) == 15


def test_single_view_person_is_a_singleton():
    rng = np.random.default_rng(13)
    rig, truth, px, sc, perm = _scene(rng, 6, 3)
    # Person 2 is seen only by camera 4 (everywhere else its detection is gone).
    sc = sc.copy()
    for c in range(6):
        if c != 4:
            sc[c, perm[c] == 2] = 0.0
    assoc = associate(rig, px, sc)
    _check_structure(assoc, 6, 3)
    assert len(assoc) == 3
    single = assoc.groups[assoc.views == 1]
    assert len(single) == 1 and perm[4, single[0, 4]] == 2
    assert sorted(assoc.views.tolist()) == [1, 6, 6]


def test_empty_inputs():
    rig = ring_rig(4)
    for people in (0, 3):
        assoc = associate(rig, np.full((4, people, 17, 2), np.nan), np.zeros((4, people, 17)))
        assert assoc.groups.shape == (0, 4) and assoc.prior_index.shape == (0,)
    assoc = associate(rig, np.zeros((4, 0, 17, 2)), np.zeros((4, 0, 17)), priors=np.zeros((2, 17, 3)))
    assert len(assoc) == 0
    # Cameras without detections (all rows empty there) still work.
    rng = np.random.default_rng(14)
    rig, truth, px, sc, perm = _scene(rng, 4, 2)
    sc = sc.copy()
    sc[1] = 0.0
    assoc = associate(rig, px, sc)
    assert len(assoc) == 2 and np.all(assoc.groups[:, 1] == -1)
    with pytest.raises(ValueError, match=r"points2d must have shape \(4, P, J, 2\), got \(3, 2, 17, 2\)"):
        associate(rig, np.zeros((3, 2, 17, 2)), np.zeros((3, 2, 17)))
    with pytest.raises(ValueError, match="priors"):
        associate(rig, px, sc, priors=np.zeros((2, 5, 3)))


def test_many_cameras_and_speed():
    rng = np.random.default_rng(15)
    rig, truth, px, sc, perm = _scene(rng, 8, 6, noise_px=1.0)
    associate(rig, px, sc)
    runs = 10
    t0 = time.perf_counter()
    for _ in range(runs):
        assoc = associate(rig, px, sc)
    ms = (time.perf_counter() - t0) / runs * 1e3
    assert _correct(assoc, perm) == 48
    rig32, truth, px32, sc32, perm32 = _scene(rng, 32, 8, noise_px=1.0)
    t0 = time.perf_counter()
    assoc32 = associate(rig32, px32, sc32)
    ms32 = (time.perf_counter() - t0) * 1e3
    rig2, truth, px2, sc2, perm2 = _scene(rng, 2, 4)
    assoc2 = associate(rig2, px2, sc2)
    print(f"associate: 8 cams x 6 people {ms:.2f} ms; 32 cams x 8 people {ms32:.1f} ms")
    assert _correct(assoc32, perm32) == 32 * 8
    assert _correct(assoc2, perm2) == 8
    assert ms < 50.0
