"""Multi-view recordings and EpipolarPose self-supervision (hpe_ros.lift.recordings).

1. The rig's own triangulations, moved into each camera's frame, are close to the truth (pseudo-labels).
2. Fine-tuning a supervised lifter with method "epipolar" on a new rig's recording (its pseudo-labels only)
   improves P-MPJPE and MPJPE on another recording of that rig.
3. load_recording reads back OpenPose folders written by the package's own writer, pairing the cameras'
   frames by frame number; bad input is refused.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hpe_ros.io.calibration import save_rig
from hpe_ros.io.openpose import write_openpose_frame
from hpe_ros.lift.recordings import (
    Recording,
    epipolar_samples,
    load_recording,
    pseudo_label_weight,
    simulate_recording,
    views_2d,
)
from hpe_ros.sim.rig import default_rig
from hpe_ros.skeleton import COCO17

torch.set_num_threads(1)

NEW_RIG = dict(n_cameras=3, radius=5.0, height=3.8, focal=800.0, size=(1280, 720))
ACTIVITIES = ["walk", "turn", "squat", "wave", "reach", "stand"]


@pytest.fixture(scope="module")
def new_rig():
    return default_rig(**NEW_RIG)


@pytest.fixture(scope="module")
def recording(new_rig):
    return simulate_recording(new_rig, seconds=15.0, fps=10.0, n_people=2, seed=0, activities=ACTIVITIES)


def _sample_sources(rec: Recording, samples) -> tuple[np.ndarray, np.ndarray]:
    """(camera, row) of each sample, found by its 2D (the rig has no distortion, so pixels are unchanged)."""
    cams, rows = np.zeros(len(samples), int), np.zeros(len(samples), int)
    for i in range(len(samples)):
        cand = rec.points2d[samples.frame[i]]                                   # (C, P, J, 2)
        same = np.isclose(cand, samples.keypoints2d[i]) | (np.isnan(cand) & np.isnan(samples.keypoints2d[i]))
        c, r = np.nonzero(same.all((-1, -2)))
        assert len(c) == 1
        cams[i], rows[i] = c[0], r[0]
    return cams, rows


def test_recording_shapes_and_views_2d(recording, new_rig):
    F, C, P, J = recording.scores.shape
    assert (F, C, P, J) == (150, 3, 2, 17)
    assert recording.truth.shape == (F, P, J, 3) and recording.person_ids.shape == (F, C, P)
    # People stay in view: most (frame, camera, person) are detected.
    assert (recording.person_ids >= 0).mean() > 0.8
    v = views_2d(recording, with_truth=True, progress=False)
    assert len(v) > 0.8 * F * C * P
    assert np.isfinite(v.joints3d).all() and (v.joints3d[..., 2] > 0).all()
    # The truth in the camera frame projects onto the (noisy) detections.
    K = v.K
    proj = np.einsum("nij,nkj->nki", K, v.joints3d)
    proj = proj[..., :2] / proj[..., 2:]
    err = np.linalg.norm(proj - v.keypoints2d, axis=-1)[v.scores > 0.6]
    assert np.median(err) < 4.0
    # One person id per (camera, person); without truth the joints are NaN.
    assert len(np.unique(v.person)) == C * P
    assert np.isnan(views_2d(recording, progress=False).joints3d).all()


def test_epipolar_targets_close_to_truth(recording, new_rig):
    samples, weight = epipolar_samples(recording, progress=False)
    F, C, P, J = recording.scores.shape
    assert len(samples) > 0.8 * F * C * P
    assert weight.shape == (len(samples), J)
    assert ((weight >= 0) & (weight <= 1)).all()
    has = np.isfinite(samples.joints3d).all(-1)
    assert ((weight > 0) == has).all() and has.mean() > 0.9

    # The ground truth is never read: without it the samples are the same.
    blind = Recording(recording.rig, recording.stamps, recording.points2d, recording.scores, recording.layout)
    samples2, weight2 = epipolar_samples(blind, progress=False)
    np.testing.assert_array_equal(samples2.joints3d, samples.joints3d)
    np.testing.assert_array_equal(weight2, weight)

    # Pseudo-labels vs truth in the camera frame: median joint error below 25 mm (measured ~15 mm with 2 px noise).
    cams, rows = _sample_sources(recording, samples)
    pid = recording.person_ids[samples.frame, cams, rows]
    assert (pid >= 0).all()
    R = np.stack([c.R for c in new_rig])[cams]
    t = np.stack([c.t for c in new_rig])[cams]
    truth = np.einsum("nij,nkj->nki", R, recording.truth[samples.frame, pid]) + t[:, None]
    err = np.linalg.norm(samples.joints3d - truth, axis=-1)[has]
    assert np.median(err) < 0.025, f"median pseudo-label error {np.median(err) * 1000:.1f} mm"
    assert np.percentile(err, 95) < 0.08
    # A person keeps their id within a camera (tracking): about C * P ids, not one per frame.
    assert len(np.unique(samples.person)) <= 3 * C * P

    # Weights grow with views and confidence, 0 below min_views.
    w = pseudo_label_weight(np.array([1, 2, 3, 4, 3]), np.array([0.9, 0.9, 0.9, 0.9, 0.5]))
    assert w[0] == 0 and 0 < w[1] < w[2] < w[3] <= 1 and w[4] < w[2]
    s3, w3 = epipolar_samples(recording, min_views=3, progress=False)
    assert (w3[np.isfinite(s3.joints3d).all(-1)] > 0).all() and len(s3) <= len(samples)


@pytest.mark.slow
def test_epipolar_finetune_improves_new_rig(tmp_path, new_rig, recording):
    """A supervised lifter trained briefly on the package's synthetic data (random cameras, no squat/wave),
    fine-tuned with the new rig's pseudo-labels only, evaluated on a separate recording of that rig."""
    from hpe_ros.lift.synthetic import CameraSampling, SyntheticSpec, make_samples
    from hpe_ros.lift.train import TrainConfig, evaluate, prepare_data, train

    spec = SyntheticSpec(n_random=4000, n_sequences=4, seconds=10.0, cameras=CameraSampling(distance=(2.0, 5.0)))
    base = train(TrainConfig(method="supervised", width=256, steps=400, batch=128, lr=2e-3, device="cpu",
                             eval_every=10**6, checkpoint_every=10**6),
                 prepare_data(make_samples(spec, seed=3)), out_dir=tmp_path / "base", progress=False)
    test = views_2d(simulate_recording(new_rig, seconds=10.0, fps=10.0, n_people=2, seed=11,
                                       activities=ACTIVITIES), with_truth=True, progress=False)
    before = evaluate(base.model, test)

    samples, weight = epipolar_samples(recording, progress=False)
    tuned = train(TrainConfig(method="epipolar", init=str(tmp_path / "base" / "lifter.pt"), steps=300, batch=128,
                              lr=1e-3, lr_final=1e-5, device="cpu", eval_every=10**6, checkpoint_every=10**6),
                  prepare_data(samples, target_weight=weight), progress=False)
    after = evaluate(tuned.model, test)
    # Measured (seed 0): P-MPJPE 115 -> 65 mm (1.8x), MPJPE 188 -> 95 mm (2.0x); require 1.3x each.
    assert after["pmpjpe_mm"] < before["pmpjpe_mm"] / 1.3, (before, after)
    assert after["mpjpe_mm"] < before["mpjpe_mm"] / 1.3, (before, after)


def _write_folders(rec: Recording, root):
    dirs = {}
    for c, name in enumerate(rec.rig.names):
        d = root / f"{name}_json"
        d.mkdir()
        for f in range(rec.num_frames):
            rows = rec.person_ids[f, c] >= 0
            write_openpose_frame(d / f"{name}_{f:012d}_keypoints.json", rec.points2d[f, c, rows],
                                 rec.scores[f, c, rows])
        dirs[name] = d
    return dirs


def test_load_recording_round_trip_and_errors(tmp_path):
    rig = default_rig(3)
    rec = simulate_recording(rig, seconds=1.0, fps=10.0, n_people=2, seed=4)
    save_rig(rig, tmp_path / "calib.toml")
    dirs = _write_folders(rec, tmp_path)
    loaded = load_recording(tmp_path / "calib.toml", dirs, fps=10.0)
    assert loaded.rig.names == rig.names and loaded.truth is None and loaded.person_ids is None
    np.testing.assert_allclose(loaded.stamps, rec.stamps)
    P = loaded.scores.shape[2]
    assert P == int((rec.person_ids >= 0).sum(-1).max())
    np.testing.assert_allclose(loaded.points2d, rec.points2d[:, :, :P], atol=1e-3)   # NaN where missing
    np.testing.assert_allclose(loaded.scores, rec.scores[:, :, :P], atol=1e-4)
    # The same samples as from the simulated recording (ids come from the fusion's tracks instead).
    a, b = views_2d(loaded, progress=False), views_2d(rec, progress=False)
    np.testing.assert_allclose(a.keypoints2d, b.keypoints2d, atol=1e-3)
    # Camera order comes from the calibration, not the mapping's order; a list is in the calibration's order.
    shuffled = {n: dirs[n] for n in reversed(rig.names)}
    np.testing.assert_allclose(load_recording(tmp_path / "calib.toml", shuffled, fps=10.0).scores, loaded.scores)
    np.testing.assert_allclose(load_recording(tmp_path / "calib.toml", list(dirs.values()), fps=10.0).scores,
                               loaded.scores)

    with pytest.raises(ValueError, match=r"no keypoint folder for camera\(s\) \['cam2'\]"):
        load_recording(tmp_path / "calib.toml", {n: dirs[n] for n in ("cam0", "cam1")})
    with pytest.raises(ValueError, match="camera.*'cam9'.*does not have"):
        load_recording(tmp_path / "calib.toml", {**dirs, "cam9": dirs["cam0"]})
    with pytest.raises(ValueError, match="3 cameras .* 2 keypoint folders"):
        load_recording(tmp_path / "calib.toml", list(dirs.values())[:2])
    with pytest.raises(ValueError, match="not found"):
        load_recording(tmp_path / "calib.toml", {**dirs, "cam1": tmp_path / "nowhere"})
    with pytest.raises(ValueError, match="17 keypoints but layout body25"):
        load_recording(tmp_path / "calib.toml", dirs, layout="body25")


def test_load_recording_pairs_frames_by_number(tmp_path, caplog):
    """Frames are paired by the number in the file name: a camera lacking a frame has no detections
    there (counted and logged), and the other cameras' frames stay where their numbers say."""
    rig = default_rig(3)
    rec = simulate_recording(rig, seconds=1.0, fps=10.0, n_people=2, seed=4)
    save_rig(rig, tmp_path / "calib.toml")
    dirs = _write_folders(rec, tmp_path)
    (dirs["cam1"] / "cam1_000000000000_keypoints.json").unlink()
    (dirs["cam2"] / "cam2_000000000009_keypoints.json").unlink()
    with caplog.at_level("WARNING"):
        loaded = load_recording(tmp_path / "calib.toml", dirs, fps=10.0)
    np.testing.assert_allclose(loaded.stamps, rec.stamps)                      # the union: frames 0..9
    assert (loaded.scores[0, 1] == 0).all() and (loaded.scores[9, 2] == 0).all()
    P = loaded.scores.shape[2]
    keep = np.ones(loaded.scores.shape[:2], bool)
    keep[0, 1] = keep[9, 2] = False
    np.testing.assert_allclose(loaded.scores[keep], rec.scores[:, :, :P][keep], atol=1e-4)
    summary = [r.getMessage() for r in caplog.records if "without a file" in r.getMessage()]
    assert summary == ["keypoint folders: cam1: 1 of 10 frames without a file; cam2: 1 of 10 frames without a "
                       "file; no detections there"]


def test_recording_validates_shapes(new_rig):
    with pytest.raises(ValueError, match="points2d must be"):
        Recording(new_rig, np.arange(3), np.zeros((3, 2, 1, 17, 2)), np.zeros((3, 2, 1, 17)))
    with pytest.raises(ValueError, match="stamps must increase"):
        Recording(new_rig, np.zeros(3), np.zeros((3, 3, 1, 17, 2)), np.zeros((3, 3, 1, 17)))
    rec = Recording(new_rig, np.arange(2.0), np.full((2, 3, 0, 17, 2), np.nan), np.zeros((2, 3, 0, 17)))
    samples, weight = epipolar_samples(rec, progress=False)
    assert len(samples) == 0 and weight.shape == (0, 17) and len(views_2d(rec, progress=False)) == 0
    assert dataclasses.is_dataclass(rec) and COCO17.num_joints == 17
