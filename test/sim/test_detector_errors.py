"""Realistic detector errors: each kind of error, measured on many samples, matches its parameter."""
import dataclasses

import numpy as np
import pytest

from hpe_ros.sim import MotionScript, default_rig, observe
from hpe_ros.sim.detector_errors import (
    OKS_SIGMAS,
    DetectorErrors,
    joint_sigmas,
    mirror_index,
    person_size_px,
    preset,
    swap_groups,
)
from hpe_ros.sim.stream import SimConfig, SimStream
from hpe_ros.skeleton import COCO17, get_layout

# Every error off; each test turns on the one it measures.
NONE = DetectorErrors(noise=0.0, definition_offset_m=0.0, swap_rate=0.0, jump_rate=0.0, miss_rate=0.0,
                      occlusion_rate=0.0, guess_rate=0.0, truncation_rate=0.0, person_miss_rate=0.0,
                      frame_miss_rate=0.0, false_people_rate=0.0)
# A standing person seen from the front, COCO-17, height 1 (x right, y down), feet at y = 0.95.
STANDING = np.array([
    [0.0, 0.06], [0.02, 0.045], [-0.02, 0.045], [0.045, 0.055], [-0.045, 0.055],
    [0.11, 0.18], [-0.11, 0.18], [0.14, 0.34], [-0.14, 0.34], [0.15, 0.48], [-0.15, 0.48],
    [0.07, 0.52], [-0.07, 0.52], [0.075, 0.74], [-0.075, 0.74], [0.08, 0.95], [-0.08, 0.95]])


def frame(C=1, P=1, height=1920.0, image=(4000, 4000), centre=(2000.0, 1000.0)):
    """Ideal pixels (C, P, 17, 2) of standing people `height` px tall at `centre`, all visible."""
    pixels = np.broadcast_to(np.asarray(centre) + (STANDING - [0, 0.5]) * height, (C, P, 17, 2)).copy()
    size = np.broadcast_to(np.asarray(image, dtype=float), (C, 2))
    inside = np.all((pixels >= 0) & (pixels < size[:, None, None]), axis=-1)
    return pixels, inside, np.zeros_like(inside), size


def run(model, pixels, visible, occluded, size, seed=0):
    return model.apply(pixels, visible, occluded, size, np.random.default_rng(seed))


def test_noise_follows_oks_sigmas_and_person_size():
    model = dataclasses.replace(NONE, noise=0.05)
    for height in (1920.0, 192.0):
        pixels, visible, occluded, size = frame(P=4000, height=height)
        det = run(model, pixels, visible, occluded, size)
        error = det.points2d[:, :4000] - pixels
        std = np.sqrt(np.mean(error ** 2, axis=(0, 1, 3)))                # (J,) per coordinate
        hip, eye = COCO17.index("left_hip"), COCO17.index("left_eye")
        ratio = std[hip] / std[eye]
        assert abs(ratio / (0.107 / 0.025) - 1) < 0.2, ratio                # OKS ratio 4.28
        expected_hip = 0.05 * 0.107 * person_size_px(pixels)[0, 0]         # ~10.3 px at 1920 px
        assert abs(std[hip] / expected_hip - 1) < 0.1, (std[hip], expected_hip)
        if height == 1920.0:
            mean_2d = np.mean(np.linalg.norm(error[..., hip, :], axis=-1))
            assert 10 < mean_2d < 20                                         # "10-20 px for hips"


def test_joint_definition_offsets_are_fixed_per_person():
    model = dataclasses.replace(NONE, definition_offset_m=0.02, seed=3)
    offsets = model.definition_offsets(3000)
    np.testing.assert_array_equal(offsets[:5], model.definition_offsets(5))   # the same every frame
    assert not np.allclose(offsets[0], offsets[1])
    assert not np.allclose(offsets[0], dataclasses.replace(model, seed=4).definition_offsets(1)[0])
    std = offsets.std(axis=(0, 2))
    assert abs(std[COCO17.index("right_hip")] / 0.02 - 1) < 0.1
    assert abs(std[COCO17.index("nose")] / (0.02 * 0.026 / 0.107) - 1) < 0.1
    joints = np.zeros((2, 17, 3))
    np.testing.assert_allclose(model.offset_joints(joints), model.definition_offsets(2))


def test_swap_rate():
    model = dataclasses.replace(NONE, swap_rate=0.1)
    pixels, visible, occluded, size = frame(C=50, P=200)
    det = run(model, pixels, visible, occluded, size)
    mirrored = np.all(det.points2d[:, :200] == pixels[:, :, mirror_index()], axis=-1)   # (C, P, J)
    sided = swap_groups()                                                   # (G, J)
    group_swapped = np.stack([mirrored[..., g].all(axis=-1) for g in sided], axis=-1)    # (C, P, G)
    rate, n = group_swapped.mean(), group_swapped.size
    assert abs(rate - 0.1) < 4 * np.sqrt(0.1 * 0.9 / n), rate
    np.testing.assert_array_equal(det.is_outlier[:, :200], mirrored & (mirror_index() != np.arange(17)))


def test_false_people_rate():
    model = dataclasses.replace(NONE, false_people_rate=0.3, max_false_people=2)
    pixels, visible, occluded, size = frame(C=20000, P=1, image=(1920, 1080), centre=(900.0, 500.0))
    det = run(model, pixels, visible, occluded, size)
    false = det.person_ids == -2
    assert np.all(det.person_ids[:, 1:] != 0) and np.all(det.person_ids[:, 0] == 0)
    # E[min(N, 2)] for N ~ Poisson(0.3); a false row whose joints all fell off the image is not reported.
    expected = 1 - np.exp(-0.3) * (1 + 0.3) + 1 - np.exp(-0.3)
    assert abs(false.sum(axis=1).mean() / expected - 1) < 0.08, false.sum(axis=1).mean()
    inside = det.points2d[:, 1:][det.scores[:, 1:] > 0]
    assert np.all((inside >= 0) & (inside < [1920, 1080]))
    assert np.all(det.is_outlier[:, 1:] == (det.scores[:, 1:] > 0))


def test_missed_frames_and_people():
    model = dataclasses.replace(NONE, frame_miss_rate=0.2, person_miss_rate=0.1)
    pixels, visible, occluded, size = frame(C=5000, P=4)
    det = run(model, pixels, visible, occluded, size)
    empty_frames = ~det.detected.any(axis=(1, 2))
    assert abs(empty_frames.mean() - 0.2) < 0.03
    missed_people = ~det.detected[~empty_frames, :4].any(axis=-1)
    assert abs(missed_people.mean() - 0.1) < 0.015


def test_partial_occlusion_hides_one_side():
    model = dataclasses.replace(NONE, occlusion_rate=0.3)
    pixels, visible, occluded, size = frame(C=100, P=100)
    det = run(model, pixels, visible, occluded, size)
    hidden = det.is_occluded[:, :100]
    assert abs(hidden.any(axis=-1).mean() - 0.3) < 0.03
    share = hidden.mean(axis=-1)[hidden.any(axis=-1)]
    assert 0.05 < share.min() and share.max() <= 0.7                     # 15-50% of the extent; joints bunch
    assert not np.any(det.detected[:, :100] & hidden)                     # guess_rate 0: none reported
    guessing = run(dataclasses.replace(model, guess_rate=1.0), pixels, visible, occluded, size)
    np.testing.assert_array_equal(guessing.detected[:, :100], True)
    assert np.all(guessing.scores[:, :100][guessing.is_occluded[:, :100]] <= 0.35)


def test_truncated_bodies_pile_on_the_border():
    # A 1000 px person whose left side sticks out past the image's right edge (x = 1919).
    pixels, visible, occluded, size = frame(C=1, P=1, height=1000.0, image=(1920, 1080), centre=(1850.0, 540.0))
    outside = ~visible[0, 0]
    assert outside.any() and visible.any()
    piled = run(dataclasses.replace(NONE, truncation_rate=1.0), pixels, visible, occluded, size)
    near = outside & (pixels[0, 0, :, 0] - 1919 < 0.2 * person_size_px(pixels)[0, 0])
    np.testing.assert_array_equal(piled.is_truncated[0, 0], near)
    np.testing.assert_allclose(piled.points2d[0, 0, near, 0], 1919.0)
    assert np.all(piled.scores[0, 0, near] <= 0.4) and np.all(piled.scores[0, 0, ~outside] >= 0.6)
    dropped = run(NONE, pixels, visible, occluded, size)
    np.testing.assert_array_equal(dropped.detected[0, 0], visible[0, 0])


def test_deterministic_given_the_seed():
    model = DetectorErrors(false_people_rate=0.5, swap_rate=0.2, occlusion_rate=0.3)
    pixels, visible, occluded, size = frame(C=4, P=3, image=(1920, 1080), centre=(900.0, 500.0), height=700.0)
    a, b = run(model, pixels, visible, occluded, size, seed=7), run(model, pixels, visible, occluded, size, seed=7)
    for field in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))
    c = run(model, pixels, visible, occluded, size, seed=8)
    assert not np.array_equal(np.nan_to_num(a.points2d), np.nan_to_num(c.points2d))


def test_observe_realistic_mode():
    rig, people = default_rig(4), MotionScript(3, seed=1).pose(2.0)
    obs = observe(rig, people, np.random.default_rng(0), errors="realistic")
    again = observe(rig, people, np.random.default_rng(0), errors=DetectorErrors())
    np.testing.assert_array_equal(obs.points2d, again.points2d)
    assert obs.points2d.shape[1:] == (obs.num_rows, 17, 2) and obs.scores.shape == obs.points2d.shape[:3]
    assert set(np.unique(obs.person_ids)) <= {-2, -1, 0, 1, 2}
    points, _ = obs.by_person(3)
    truth = np.stack([c.project(people) for c in rig])
    error = np.linalg.norm(points - truth, axis=-1)
    assert 0.5 < np.nanmedian(error) < 15                                 # px, on people ~100-250 px tall
    clean = observe(rig, people, np.random.default_rng(0), errors="clean")
    default = observe(rig, people, np.random.default_rng(0))
    np.testing.assert_array_equal(clean.points2d, default.points2d)
    with pytest.raises(ValueError, match="unknown detector error preset 'good'"):
        observe(rig, people, np.random.default_rng(0), errors="good")


def test_sigmas_for_every_layout():
    body25 = joint_sigmas("body25")
    names = ("mid_hip", "neck", "left_big_toe", "right_heel", "nose")
    expected = (OKS_SIGMAS["left_hip"], OKS_SIGMAS["left_shoulder"], OKS_SIGMAS["left_ankle"],
                OKS_SIGMAS["left_ankle"], OKS_SIGMAS["nose"])
    for name, sigma in zip(names, expected):
        assert body25[get_layout("body25").index(name)] == pytest.approx(sigma)
    for layout in ("halpe26", "h36m17", "blazepose33", "body25b"):
        assert np.all(np.isfinite(joint_sigmas(layout)))
    assert preset("clean") is None and preset("realistic") == DetectorErrors()
    with pytest.raises(ValueError, match="swap_rate must be in"):
        DetectorErrors(swap_rate=1.5)


def test_sim_stream_realistic_mode():
    config = SimConfig(num_people=3, seed=2, detector_errors="realistic")
    frames = [SimStream(default_rig(4), config).render(k) for k in range(2)]
    again = SimStream(default_rig(4), config).render(0)
    for a, b in zip(frames[0].points2d, again.points2d):
        np.testing.assert_array_equal(a, b)
    assert all(p.shape[1:] == (17, 2) for f in frames for p in f.points2d)
    with pytest.raises(ValueError, match="detector_errors must be one of clean, realistic, got 'noisy'"):
        SimConfig(detector_errors="noisy")


def test_simulated_recordings_keep_rows_for_false_people():
    from hpe_ros.lift.recordings import simulate_recording

    rec = simulate_recording(default_rig(4), seconds=3.0, fps=5.0, n_people=2, seed=1,
                             errors=DetectorErrors(false_people_rate=0.5, max_false_people=2))
    assert rec.points2d.shape[2] == 2 + 2 and rec.truth.shape[1] == 2
    assert np.any(rec.person_ids == -2) and set(np.unique(rec.person_ids)) <= {-2, -1, 0, 1}
