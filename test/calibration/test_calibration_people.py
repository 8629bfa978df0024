"""Calibration from people walking through the scene, and the bundle adjustment under it.

Synthetic rig (hpe_ros.sim): cameras on a circle, one or two people walking for 20 s, seen at 10 fps
with 2 px noise, 5 % gross outliers, misses and occlusion. The issue's targets: every camera within
0.5 deg and 20 mm of the truth (after a similarity alignment), triangulation of held-out frames within
10 % of its MPJPE with the true rig, metric scale within 2 % from the person's height, floor at z = 0
with z up. Each scene is calibrated once per session (cached) and shared by the tests that use it.
"""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from hpe_ros.anthropometry import DEFAULT_HEIGHT
from hpe_ros.calibration.bundle import BoneConstraints, Observations, bundle_adjust
from hpe_ros.calibration.compare import apply_similarity, compare_rigs
from hpe_ros.calibration.from_people import (
    RECORDING_GAP,
    calibrate_from_people,
    estimate_heights,
    link_tracks,
    load_keypoint_folders,
    pool_recordings,
)
from hpe_ros.camera import Rig, rodrigues
from hpe_ros.fusion import triangulate
from hpe_ros.io.calibration import CalibrationError
from hpe_ros.io.openpose import write_openpose_frame
from hpe_ros.sim import MotionScript, default_rig, observe
from hpe_ros.skeleton import COCO17

FPS = 10.0
SECONDS = 20.0


@functools.cache
def scene(cameras: int, people: int, seed: int = 0, fps: float = FPS):
    """Truth rig, script and detections (C, F, P, J, 2) / (C, F, P, J), rows shuffled as a detector's."""
    rig = default_rig(cameras)
    script = MotionScript(n_people=people, seed=seed, activities=["walk"])
    rng = np.random.default_rng(seed)
    times = np.arange(0.0, SECONDS, 1.0 / fps)
    points = np.full((cameras, len(times), people, COCO17.num_joints, 2), np.nan)
    scores = np.zeros((cameras, len(times), people, COCO17.num_joints))
    for k, t in enumerate(times):
        obs = observe(rig, script.pose(t), rng, noise_px=2.0, outlier_rate=0.05)
        n = obs.num_rows
        points[:, k, :n], scores[:, k, :n] = obs.points2d, obs.scores
    return rig, script, points, scores


@functools.cache
def calibrated(cameras: int, people: int, known_height: bool = True):
    rig, script, points, scores = scene(cameras, people)
    height = float(script.heights.mean()) if known_height else None
    estimated, report = calibrate_from_people(default_rig(cameras), points, scores, person_height=height,
                                              progress=False)
    return estimated, report


def held_out_mpjpe(truth: Rig, estimated: Rig, script: MotionScript, frames: int = 40) -> tuple[float, float]:
    """MPJPE (m) of hpe_ros triangulation with the true rig and with `estimated` (already in the truth
    frame), on frames between the calibration frames, with known identities."""
    rng = np.random.default_rng(123)
    C = len(truth)
    errors = {0: [], 1: []}
    for t in np.linspace(0.05, SECONDS - 0.05, frames):
        joints = script.pose(t)
        obs = observe(truth, joints, rng, noise_px=2.0, outlier_rate=0.05)
        pts, sc = obs.by_person(len(joints))
        for k, rig in enumerate((truth, estimated)):
            X = triangulate(rig, pts.reshape(C, -1, 2), sc.reshape(C, -1)).points.reshape(joints.shape)
            errors[k].append(np.linalg.norm(X - joints, axis=-1).ravel())
    e_true, e_est = (np.concatenate(errors[k]) for k in (0, 1))
    both = np.isfinite(e_true) & np.isfinite(e_est)
    assert both.mean() > 0.8
    return float(e_true[both].mean()), float(e_est[both].mean())


# --- the targets -------------------------------------------------------------------------

@pytest.mark.parametrize("cameras,people", [(4, 1), (4, 2), (8, 1), (8, 2)])
def test_rig_from_people_walking_meets_targets(cameras, people):
    truth, script, _, _ = scene(cameras, people)
    estimated, report = calibrated(cameras, people)
    cmp = compare_rigs(estimated, truth)
    assert cmp["rotation_error_deg"].max() < 0.5, cmp["rotation_error_deg"]
    assert cmp["centre_error_mm"].max() < 20.0, cmp["centre_error_mm"]
    mpjpe_true, mpjpe_est = held_out_mpjpe(truth, cmp["aligned"], script)
    assert mpjpe_est <= 1.10 * mpjpe_true, (mpjpe_est, mpjpe_true)

    # The report says what was used, per camera and per pair, and is JSON.
    json.dumps(report)
    assert len(report["people"]["distinct"]) == people
    assert sorted(report["per_camera"]) == sorted(truth.names)
    for cam in report["per_camera"].values():
        assert cam["reprojection_rms_px"] < 4.0 and cam["observations_used"] > 500
    tree = [e for e in report["pair_graph"] if e["tree"]]
    assert len(tree) == cameras - 1
    assert report["scale"]["source"] == "person_height"


@pytest.mark.parametrize("cameras", [4, 8])
def test_metric_scale_floor_and_up_from_one_person(cameras):
    truth, script, points, scores = scene(cameras, 1)
    estimated, report = calibrated(cameras, 1)
    cmp = compare_rigs(estimated, truth)
    assert abs(cmp["scale_error_pct"]) < 2.0, cmp["scale_error_pct"]
    assert abs(report["people"]["estimated_height_m"][0] - script.heights[0]) < 0.02 * script.heights[0]

    # z up: the alignment to the truth (z up) only turns about z.
    R = np.asarray(cmp["alignment"]["R"])
    assert np.degrees(np.arccos(np.clip(R[2, 2], -1, 1))) < 1.0

    # The floor is z = 0: a standing person's ankles are at their true height above the floor (the
    # ankle joint sits 3.9 % of standing height up), in the estimated rig's own frame.
    joints = script.pose(0.0)
    assert script.activity_at(0.0) == ["walk"]
    obs = observe(truth, joints, np.random.default_rng(5), noise_px=2.0, outlier_rate=0.0)
    pts, sc = obs.by_person(1)
    X = triangulate(estimated, pts.reshape(cameras, -1, 2), sc.reshape(cameras, -1)).points.reshape(joints.shape)
    ankles = [COCO17.index("left_ankle"), COCO17.index("right_ankle")]
    assert np.all(np.abs(X[0, ankles, 2] - joints[0, ankles, 2]) < 0.03), (X[0, ankles, 2], joints[0, ankles, 2])
    head = X[0, COCO17.index("nose"), 2]
    assert head > X[0, ankles, 2].max() + 1.0

    # +x is camera 0's viewing direction on the floor, the origin below it.
    cam0 = estimated[0]
    assert np.allclose(cam0.center[:2], 0.0, atol=1e-9)
    view = cam0.R[2]
    assert view[0] > 0 and abs(view[1]) < 1e-9


def test_without_a_size_the_average_adult_is_assumed_and_said():
    truth, script, points, scores = scene(4, 1, fps=5.0)
    estimated, report = calibrate_from_people(default_rig(4), points, scores, progress=False)
    assert report["scale"]["source"] == "assumed_height"
    assert "1.70" in report["scale"]["note"]
    cmp = compare_rigs(estimated, truth)
    expected = (DEFAULT_HEIGHT / script.heights[0] - 1.0) * 100.0
    assert abs(cmp["scale_error_pct"] - expected) < 2.0, (cmp["scale_error_pct"], expected)
    assert cmp["rotation_error_deg"].max() < 0.5


def test_known_bone_length_sets_the_scale():
    truth, script, points, scores = scene(4, 1, fps=5.0)
    thigh = 0.245 * float(script.heights[0])     # the simulator's proportions
    estimated, report = calibrate_from_people(default_rig(4), points, scores, progress=False,
                                              bone_length={"left_hip-left_knee": thigh})
    assert report["scale"]["source"] == "bone_length"
    assert abs(compare_rigs(estimated, truth)["scale_error_pct"]) < 2.0


# --- bad input: clear errors naming the camera ----------------------------------------------------

def test_one_camera_is_refused():
    _, _, points, scores = scene(4, 1, fps=5.0)
    with pytest.raises(CalibrationError, match="at least 2 cameras.*'cam0'"):
        calibrate_from_people(default_rig(1), points[:1], scores[:1], progress=False)


def test_no_people_is_refused():
    _, _, points, scores = scene(4, 1, fps=5.0)
    with pytest.raises(CalibrationError, match="no people detected.*'cam0'"):
        calibrate_from_people(default_rig(4), np.full_like(points, np.nan), np.zeros_like(scores), progress=False)


def test_a_camera_without_detections_is_named():
    _, _, points, scores = scene(4, 1, fps=5.0)
    points, scores = points.copy(), scores.copy()
    points[2] = np.nan
    with pytest.raises(CalibrationError, match="camera 'cam2': no usable detections"):
        calibrate_from_people(default_rig(4), points, scores, progress=False)


def test_shapes_are_checked():
    _, _, points, scores = scene(4, 1, fps=5.0)
    with pytest.raises(ValueError, match=r"points2d .* must have shape \(3, .*, 17, 2\)"):
        calibrate_from_people(default_rig(3), points, scores, progress=False)
    with pytest.raises(ValueError, match=r"scores must have shape \(4, "):
        calibrate_from_people(default_rig(4), points, scores[:, :-1], progress=False)
    with pytest.raises(ValueError, match="person_height"):
        calibrate_from_people(default_rig(4), points, scores, person_height=17.0, progress=False)


# --- the parts --------------------------------------------------------------------------------------

def test_tracks_follow_each_person_through_shuffled_rows():
    rig = default_rig(4)
    script = MotionScript(n_people=2, seed=3, activities=["walk"])
    rng = np.random.default_rng(3)
    frames = [observe(rig, script.pose(t), rng, noise_px=2.0, outlier_rate=0.05) for t in np.arange(0, 6, 0.1)]
    P = 2
    points = np.full((len(frames), P, 17, 2), np.nan)
    scores = np.zeros((len(frames), P, 17))
    truth = np.full((len(frames), P), -1)
    for k, o in enumerate(frames):
        n = o.num_rows
        points[k, :n], scores[k, :n], truth[k, :n] = o.points2d[0], o.scores[0], o.person_ids[0]
    ids = link_tracks(points, (scores >= 0.4) & np.isfinite(points).all(-1))
    for track in np.unique(ids[ids >= 0]):
        assert len(np.unique(truth[ids == track])) == 1      # no track mixes people
    lengths = np.bincount(ids[ids >= 0])
    assert np.sort(lengths)[-2:].sum() > 0.8 * (truth >= 0).sum()   # and they are long


def test_pooled_recordings_keep_their_people_apart():
    """Recordings one after the other with empty frames between: P padded, and a person standing where the
    previous recording's person stood still starts a new track."""
    rng = np.random.default_rng(0)
    a = rng.normal(500, 50, (2, 1, 1, 17, 2)) + rng.normal(0, 1, (2, 5, 1, 17, 2))   # one person standing
    b = np.concatenate([np.repeat(a[:, -1:], 4, axis=1), np.full((2, 4, 1, 17, 2), np.nan)], axis=2)
    points, scores = pool_recordings([a, b], [np.ones(a.shape[:-1]), np.isfinite(b[..., 0]) * 1.0])
    assert points.shape == (2, 5 + RECORDING_GAP + 4, 2, 17, 2) and np.isnan(points[:, 5:5 + RECORDING_GAP]).all()
    assert (scores[:, :5, 1] == 0).all() and (scores[:, 5:5 + RECORDING_GAP] == 0).all()
    ids = link_tracks(points[0], scores[0] > 0)
    assert len(set(ids[:5, 0])) == 1 and len(set(ids[-4:, 0])) == 1 and ids[0, 0] != ids[-1, 0]
    with pytest.raises(ValueError, match="recording 1: points2d"):
        pool_recordings([a, a[:1]], [np.ones(a.shape[:-1])] * 2)


def test_bundle_adjust_recovers_perturbed_cameras_and_flags_outliers():
    rng = np.random.default_rng(0)
    truth = default_rig(4)
    script = MotionScript(n_people=1, seed=1, activities=["walk"])
    joints = np.stack([script.pose(t) for t in np.arange(0, 10, 0.25)])[:, 0]            # (F, 17, 3)
    F = len(joints)
    X = joints.reshape(-1, 3)
    N = len(X)
    px = truth.project(X) + rng.normal(0, 1.0, (4, N, 2))
    cam, point = np.repeat(np.arange(4), N), np.tile(np.arange(N), 4)
    xy = px.reshape(-1, 2).copy()
    bad = rng.random(len(xy)) < 0.03
    xy[bad] += rng.uniform(40, 80, (bad.sum(), 2))
    obs = Observations(cam, point, xy, np.ones(len(xy)))
    start = Rig([c if i == 0 else c.copy(R=rodrigues(rng.normal(0, 0.01, 3)) @ c.R, t=c.t + rng.normal(0, 0.05, 3))
                 for i, c in enumerate(truth)])
    ids = np.arange(N).reshape(F, 17)
    bones = COCO17.bone_array()
    cons = BoneConstraints(ids[:, bones[:, 0]].ravel(), ids[:, bones[:, 1]].ravel(),
                           np.tile(np.arange(len(bones)), F), np.full(len(bones), np.nan), weight=30.0)
    before = compare_rigs(start, truth)
    rig, points, report = bundle_adjust(start, obs, X + rng.normal(0, 0.02, X.shape), bones=cons)
    after = compare_rigs(rig, truth)
    assert after["rotation_error_deg"].max() < 0.1 < before["rotation_error_deg"].max()
    assert after["centre_error_mm"].max() < 5.0 < before["centre_error_mm"].max()
    assert np.all(report.rms_px < 1.6)
    assert not report.inliers[bad].any()                       # every gross outlier dropped
    assert report.inliers[~bad].mean() > 0.95
    assert [r["threshold_px"] for r in report.rounds][0] == 20.0
    assert np.allclose(rig[0].R, truth[0].R) and np.allclose(rig[0].t, truth[0].t)   # the gauge
    assert report.bone_lengths is not None and np.nanmean(np.abs(points - X)) < 0.01


def test_compare_rigs_sees_through_a_similarity():
    truth = default_rig(6)
    R = rodrigues(np.array([0.3, -0.2, 1.1]))
    moved = apply_similarity(truth, 0.5, R, np.array([1.0, -2.0, 0.3]))
    cmp = compare_rigs(moved, truth)
    assert cmp["max_rotation_error_deg"] < 1e-6 and cmp["max_centre_error_mm"] < 1e-6
    assert cmp["scale"] == pytest.approx(2.0) and cmp["scale_error_pct"] == pytest.approx(-50.0)
    # a moved camera shows up as that camera's error, in mm
    shifted = Rig([c.copy(t=c.t + np.array([0.0, 0.0, 0.01])) if i == 3 else c for i, c in enumerate(truth)])
    cmp = compare_rigs(shifted, truth, with_scale=False)
    assert np.argmax(cmp["centre_error_mm"]) == 3 and 5.0 < cmp["centre_error_mm"][3] < 10.5


def test_height_model_matches_the_simulated_body():
    script = MotionScript(n_people=2, seed=4, activities=["walk"])
    joints = np.stack([script.pose(t) for t in np.arange(0, 5, 0.5)])
    assert np.allclose(estimate_heights(joints, "coco17"), script.heights, rtol=1e-9)


def test_load_keypoint_folders_reads_openpose_json(tmp_path):
    rng = np.random.default_rng(0)
    expected = np.full((2, 3, 2, 17, 2), np.nan)
    for c in range(2):
        (tmp_path / f"cam{c}").mkdir()
        for f in range(3):
            people = 1 + (f + c) % 2
            pts = rng.uniform(10, 600, (people, 17, 2))
            path = tmp_path / f"cam{c}" / f"cam{c}_{f:012d}_keypoints.json"
            write_openpose_frame(path, pts, np.full((people, 17), 0.9))
            expected[c, f, :people] = pts
    points, scores = load_keypoint_folders([tmp_path / "cam0", tmp_path / "cam1"], "coco17")
    assert points.shape == (2, 3, 2, 17, 2) and scores.shape == (2, 3, 2, 17)
    assert np.allclose(points, expected, atol=1e-3, equal_nan=True)
    assert np.all((scores > 0) == np.isfinite(expected[..., 0]))
