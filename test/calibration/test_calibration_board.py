"""Board detection and calibration on rendered images.

A board (checkerboard, ChArUco) is waved through a 4-camera rig with mild barrel distortion; every
view is rendered as the camera would see it (anti-aliased, blurred, sensor noise), written as PNG
folders (one camera as a lossless video), detected and calibrated, and the result compared with the
truth after expressing both in camera 0's frame. Rendering is done once per module.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hpe_ros.calibration.board import Board
from hpe_ros.calibration.board_calibration import DEFAULT_INTRINSIC_FLAGS, calibrate_board, calibrate_from_detections
from hpe_ros.calibration.board_report import format_board_report, render_board_report
from hpe_ros.calibration.compare import errors_in_camera0_frame
from hpe_ros.camera import Rig, rodrigues
from hpe_ros.io.calibration import CalibrationError
from hpe_ros.sim.boards import render_board_view, synthetic_board_poses
from hpe_ros.sim.rig import default_rig

from helpers.videos import write_gray_video

N_POSES = 48
CHECKERBOARD = Board.checkerboard(9, 6, 0.10)          # 1.0 x 0.7 m print, 54 corners
CHARUCO = Board.charuco(8, 6, 0.14, 0.09)               # A0-sized, 35 corners
VIDEO_CAMERA = "cam3"


def truth_rig() -> Rig:
    """default_rig(4) pulled in to 2.5 m, with k1 = -0.1 barrel distortion."""
    return default_rig(4, radius=2.5, height=2.0, distortion=[-0.1, 0.0, 0.0, 0.0])


def render_views(board: Board, rig: Rig, poses, seed: int) -> dict[str, list[np.ndarray]]:
    return {cam.name: [render_board_view(board, cam, pose, blur=0.7, noise=2.0, seed=seed * 1000 + 10 * k + i)
                       for k, pose in enumerate(poses)]
            for i, cam in enumerate(rig)}


def write_sources(views: dict, folder: Path, video_camera: str | None) -> dict[str, Path]:
    """PNG folders per camera; `video_camera` as a lossless (FFV1, else MJPG) .avi instead."""
    sources = {}
    for name, images in views.items():
        if name == video_camera:
            path = write_gray_video(images, folder / f"{name}.avi")
        else:
            path = folder / name
            path.mkdir(parents=True)
            for k, image in enumerate(images):
                assert cv2.imwrite(str(path / f"frame_{k:04d}.png"), image)
        sources[name] = path
    return sources


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Rendered and written once: {"checkerboard": ..., "charuco": ...} with rig, poses, sources."""
    rig = truth_rig()
    out = {}
    for seed, board in enumerate((CHECKERBOARD, CHARUCO)):
        folder = tmp_path_factory.mktemp(board.kind)
        poses = synthetic_board_poses(board, rig, N_POSES, seed=seed)
        views = render_views(board, rig, poses, seed)
        sources = write_sources(views, folder, VIDEO_CAMERA if board.kind == "checkerboard" else None)
        out[board.kind] = {"board": board, "rig": rig, "poses": poses, "sources": sources, "folder": folder,
                           "views": views}
    return out


@pytest.fixture(scope="module")
def calibrated(scenes):
    """calibrate_board on each scene's files, intrinsics refined in the adjustment."""
    results = {}
    for kind, scene in scenes.items():
        rig, report = calibrate_board(scene["sources"], scene["board"], progress=False, refine_intrinsics=True)
        results[kind] = (rig, report)
    return results


# --- boards and detection --------------------------------------------------------------------------
@pytest.mark.parametrize("board", [CHECKERBOARD, CHARUCO], ids=["checkerboard", "charuco"])
def test_detection_is_subpixel_and_numbered_like_the_board(board):
    """Whatever the in-plane turn (a half turn included), ids index the same board corners."""
    camera = truth_rig()[0].copy(R=np.eye(3), t=np.zeros(3))
    obj = board.object_points()
    errors = []
    for k, psi in enumerate(np.deg2rad([0, 90, 180, 270, 35])):
        R = rodrigues([0.3, -0.25, 0.0]) @ rodrigues([0.0, 0.0, psi])
        t = np.array([0.1, -0.05, 1.8]) - R @ obj.mean(axis=0)
        image = render_board_view(board, camera, (R, t), blur=0.7, noise=2.0, seed=k)
        found = board.detect(image)
        assert found is not None, f"{board.kind} not found at in-plane angle {np.degrees(psi):.0f} deg"
        ids, corners = found
        truth = camera.project(obj[ids] @ R.T + t)
        errors.append(np.linalg.norm(corners - truth, axis=1))
    errors = np.concatenate(errors)
    assert np.sqrt(np.mean(errors ** 2)) < 0.15 and errors.max() < 0.6
    assert board.detect(np.full((480, 640), 128, np.uint8)) is None
    # a board seen from behind is not drawn
    behind = render_board_view(board, camera, (rodrigues([0.0, np.pi, 0.0]), np.array([0.5, 0.3, 1.8])))
    assert np.all(behind == 128)


def test_board_definitions_are_checked():
    with pytest.raises(ValueError, match="inner corners"):
        Board.checkerboard(1, 6, 0.1)
    with pytest.raises(ValueError, match="marker"):
        Board.charuco(5, 4, 0.1, 0.12)
    with pytest.raises(ValueError, match="dictionary"):
        Board.charuco(5, 4, 0.1, 0.07, "DICT_9X9_1")
    with pytest.raises(ValueError, match="markers"):
        Board.charuco(12, 10, 0.1, 0.07, "DICT_4X4_50")
    with pytest.warns(UserWarning, match="half turn"):
        Board.checkerboard(8, 6, 0.1)
    assert CHECKERBOARD.object_points().shape == (54, 3)
    assert np.allclose(CHARUCO.object_points()[[0, 7]], [[0.14, 0.14, 0], [0.14, 0.28, 0]])
    assert np.allclose(CHARUCO.object_points(), CHARUCO.cv_board().getChessboardCorners())


# --- calibration ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["checkerboard", "charuco"])
def test_calibration_matches_the_truth(scenes, calibrated, kind, tmp_path):
    rig, report = calibrated[kind]
    truth = scenes[kind]["rig"]
    assert rig.names == truth.names and all(c.size == (640, 480) for c in rig)
    for camera in report.cameras:
        assert camera.detected >= 12 and camera.extrinsics_views >= 12, camera
        assert camera.intrinsics_views >= 10
        assert camera.after["rms"] < 0.5, camera        # sub-pixel for every camera
        assert camera.after["p99"] < 1.0
        assert camera.after["rms"] <= camera.before["rms"] + 1e-9
    for name, e in errors_in_camera0_frame(rig, truth).items():
        assert e["focal_error_pct"] < 1.0, (name, e)
        assert e["rotation_error_deg"] < 0.2, (name, e)
        assert e["centre_error_mm"] < 5.0, (name, e)
    assert all(abs(c.dist[0] + 0.1) < 0.01 for c in rig)
    assert len(report.tree) == 3 and all(n > 0 for n in report.pairs.values())
    text = format_board_report(report)
    assert all(name in text for name in rig.names) and "after BA" in text
    picture = render_board_report(report, tmp_path / "report.png")
    assert picture.stat().st_size > 10_000 and cv2.imread(str(picture)) is not None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.parametrize("kind", ["checkerboard", "charuco"])
def test_fixed_intrinsics_is_also_subpixel(scenes, calibrated, kind):
    """The default (per-camera intrinsics kept) is sub-pixel too; joint refinement is what reaches 5 mm."""
    _, report = calibrated[kind]
    rig, fixed = calibrate_from_detections(report.detections, scenes[kind]["board"], report.sizes)
    assert all(c.after["rms"] < 0.5 for c in fixed.cameras)
    for name, e in errors_in_camera0_frame(rig, scenes[kind]["rig"]).items():
        assert e["focal_error_pct"] < 1.0 and e["rotation_error_deg"] < 0.2 and e["centre_error_mm"] < 10.0, (name, e)


def test_noisier_corners_degrade_gracefully(scenes, calibrated):
    """0.3 px of extra corner noise (about 6x what the rendered views give): still sub-pixel and the
    focal within 1 %; pose errors grow about in proportion (this geometry: a 1 m board 2.7 m away)."""
    _, report = calibrated["checkerboard"]
    rng = np.random.default_rng(11)
    noisy = {n: {f: (ids, px + rng.normal(0.0, 0.3, px.shape)) for f, (ids, px) in frames.items()}
             for n, frames in report.detections.items()}
    rig, result = calibrate_from_detections(noisy, scenes["checkerboard"]["board"], report.sizes,
                                            refine_intrinsics=True)
    assert all(c.after["rms"] < 0.5 for c in result.cameras)
    for name, e in errors_in_camera0_frame(rig, scenes["checkerboard"]["rig"]).items():
        assert e["focal_error_pct"] < 1.0 and e["rotation_error_deg"] < 1.5 and e["centre_error_mm"] < 80.0, (name, e)


def test_outliers_are_dropped_and_world_can_be_the_board(scenes, calibrated):
    scene = scenes["checkerboard"]
    _, report = calibrated["checkerboard"]
    rng = np.random.default_rng(7)
    corrupted = {}
    for name, frames in report.detections.items():
        corrupted[name] = {}
        for f, (ids, px) in frames.items():
            px = px.copy()
            bad = rng.random(len(ids)) < 0.03
            px[bad] += rng.normal(0, 15, (bad.sum(), 2))  # gross errors on 3 % of the corners
            corrupted[name][f] = (ids, px)
    rig, robust = calibrate_from_detections(corrupted, scene["board"], report.sizes, world="board")
    assert sum(c.dropped + c.pose_corners_rejected for c in robust.cameras) > 0
    assert all(c.after["rms"] < 0.5 for c in robust.cameras)
    for name, e in errors_in_camera0_frame(rig, scene["rig"]).items():
        assert e["rotation_error_deg"] < 0.3 and e["centre_error_mm"] < 10.0, (name, e)
    # world = board frame of the first frame seen: that board lies at the origin
    first = min(robust.board_poses)
    R, t = robust.board_poses[first]
    assert np.allclose(R, np.eye(3), atol=1e-9) and np.allclose(t, 0, atol=1e-9)


def test_unlinked_camera_and_too_few_views_are_named(scenes, calibrated):
    _, report = calibrated["charuco"]
    board, sizes = scenes["charuco"]["board"], report.sizes
    detections = {name: dict(frames) for name, frames in report.detections.items()}
    others = set().union(*(set(detections[n]) for n in ("cam0", "cam1", "cam3")))
    detections["cam2"] = {f: d for f, d in detections["cam2"].items() if f not in others}
    with pytest.raises(CalibrationError, match="camera 'cam2'.*shares no board views"):
        calibrate_from_detections(detections, board, sizes)
    detections = {name: dict(frames) for name, frames in report.detections.items()}
    detections["cam1"] = dict(list(detections["cam1"].items())[:2])
    with pytest.raises(CalibrationError, match="camera 'cam1'.*at least 3"):
        calibrate_from_detections(detections, board, sizes)
    with pytest.raises(CalibrationError, match="camera 'cam0'.*does not exist"):
        calibrate_board({"cam0": scenes["charuco"]["folder"] / "nope"}, board, progress=False)
    with pytest.raises(CalibrationError, match="camera 'cam0': images are 640x480 but camera_sizes says 1280x720"):
        calibrate_board({"cam0": scenes["charuco"]["sources"]["cam0"]}, board, camera_sizes={"cam0": (1280, 720)},
                        progress=False, step=8)
    assert DEFAULT_INTRINSIC_FLAGS == cv2.CALIB_FIX_K3


def test_world_on_the_floor_is_z_up_where_the_board_lies(scenes, calibrated):
    """world="floor": a board lying face up on the floor in one frame puts the world there, z up; on the
    synthetic rig (whose world is z-up with the floor at z = 0) the calibrated cameras land on the truth."""
    scene = scenes["checkerboard"]
    rig_truth, board = scene["rig"], scene["board"]
    _, report = calibrated["checkerboard"]
    floor_R = np.diag([1.0, -1.0, -1.0])  # face up: the board's z (into the print) points down
    floor_pose = (floor_R, -floor_R @ board.object_points().mean(axis=0))  # centred on the world origin
    floor_frame = 1000
    detections = {name: dict(frames) for name, frames in report.detections.items()}
    for i, cam in enumerate(rig_truth):
        found = board.detect(render_board_view(board, cam, floor_pose, blur=0.7, noise=2.0, seed=i))
        if found is not None:
            detections[cam.name][floor_frame] = found
    assert sum(floor_frame in frames for frames in detections.values()) >= 2, "too few cameras see the floor board"

    rig, floor = calibrate_from_detections(detections, board, report.sizes, world="floor",
                                           world_frame_index=floor_frame)
    assert "z up" in floor.world
    R, t = floor.board_poses[floor_frame]
    assert np.allclose(R, floor_R, atol=1e-9) and np.allclose(t, 0, atol=1e-9)
    origin = floor_pose[1]  # the new world: the truth's axes, its origin at the board's corner 0
    for est, truth in zip(rig, rig_truth):
        np.testing.assert_allclose(est.center, truth.center - origin, atol=0.03)
        up_est, up_truth = est.R @ [0, 0, 1.0], truth.R @ [0, 0, 1.0]  # world up in each camera
        assert np.degrees(np.arccos(np.clip(up_est @ up_truth, -1, 1))) < 0.5
    with pytest.raises(CalibrationError, match="world frame 999"):
        calibrate_from_detections(detections, board, report.sizes, world="floor", world_frame_index=999)
