"""Board calibration on rendered images, and calibration file conversion.

A board (checkerboard, ChArUco) is waved through a 4-camera rig with mild barrel distortion; every
view is rendered as the camera would see it (anti-aliased, blurred, sensor noise), written as PNG
folders (one camera as a lossless video), detected and calibrated, and the result compared with the
truth after expressing both in camera 0's frame. Rendering is done once per module.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpe_ros.calibration.board import (
    Board,
    list_images,
    read_frames,
    render_board_view,
    synthetic_board_poses,
)
from hpe_ros.calibration.board_calibration import (
    DEFAULT_INTRINSIC_FLAGS,
    calibrate_board,
    calibrate_from_detections,
    format_board_report,
    render_board_report,
)
from hpe_ros.calibration.formats import (
    convert_calibration,
    load_rig,
    save_camera_info_dir,
    save_opencv_rig,
    save_rig_yaml,
    save_toml_rig,
)
from hpe_ros.calibration.compare import errors_in_camera0_frame
from hpe_ros.calibration.validate import CalibrationError
from hpe_ros.camera import Camera, Rig, look_at, rodrigues
from hpe_ros.sim.rig import default_rig

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
            path = write_video(images, folder / f"{name}.avi")
        else:
            path = folder / name
            path.mkdir(parents=True)
            for k, image in enumerate(images):
                assert cv2.imwrite(str(path / f"frame_{k:04d}.png"), image)
        sources[name] = path
    return sources


def write_video(images, path: Path) -> Path:
    h, w = images[0].shape[:2]
    for codec in ("FFV1", "MJPG"):
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, (w, h))
        if writer.isOpened():
            break
    assert writer.isOpened(), "opencv cannot write FFV1 or MJPG video here"
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


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


# --- boards, detection, frames ---------------------------------------------------------------------
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
    assert np.allclose(CHARUCO.object_points(), CHARUCO._cv_board().getChessboardCorners())


def test_read_frames_from_folder_and_video(scenes):
    scene = scenes["checkerboard"]
    folder, video = scene["sources"]["cam0"], scene["sources"][VIDEO_CAMERA]
    indices = [i for i, _ in read_frames(folder)]
    assert indices == list(range(N_POSES)) and len(list_images(folder)) == N_POSES
    frames = list(read_frames(video, step=5))
    assert [i for i, _ in frames] == list(range(0, N_POSES, 5))
    original = scene["views"][VIDEO_CAMERA]
    for i, image in frames:  # FFV1 is lossless; MJPG would only be close
        assert image.shape == (480, 640, 3)
        assert np.abs(image[:, :, 0].astype(int) - original[i]).mean() < 1.0
    with pytest.raises(FileNotFoundError):
        list(read_frames(folder / "missing.avi"))


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


# --- file conversion ----------------------------------------------------------------------------------
def varied_rig() -> Rig:
    rng = np.random.default_rng(3)
    cameras = []
    for i, dist in enumerate([rng.normal(0, 0.05, 4), rng.normal(0, 0.05, 5), rng.normal(0, 0.05, 8)]):
        K = np.array([[rng.uniform(400, 1500), rng.uniform(-1, 1), rng.uniform(300, 700)],
                      [0.0, rng.uniform(400, 1500), rng.uniform(200, 500)], [0.0, 0.0, 1.0]])
        R, t = look_at(rng.uniform(-5, 5, 3) + [0, 0, 3], rng.uniform(-0.5, 0.5, 3))
        cameras.append(Camera(f"cam{i}" if i < 2 else "left camera/2", K, dist, R, t, (1280 + i, 720 + i)))
    return Rig(cameras)


def assert_rigs_equal(a: Rig, b: Rig, atol: float = 1e-9) -> None:
    assert a.names == b.names
    for ca, cb in zip(a, b):
        for field in ("K", "dist", "R", "t"):
            assert np.allclose(getattr(ca, field), getattr(cb, field), rtol=0, atol=atol), (ca.name, field)
        assert ca.size == cb.size and ca.frame_id == cb.frame_id


def test_conversion_round_trip_is_exact(tmp_path):
    original = varied_rig()
    save_toml_rig(original, tmp_path / "rig.toml")
    convert_calibration(tmp_path / "rig.toml", tmp_path / "rig_cv.yml", to="opencv")
    assert (tmp_path / "rig_cv.yml").read_text().startswith("%YAML")
    convert_calibration(tmp_path / "rig_cv.yml", tmp_path / "rig.yaml")        # auto: rig YAML
    convert_calibration(tmp_path / "rig.yaml", tmp_path / "back.toml")         # auto: TOML
    convert_calibration(tmp_path / "back.toml", tmp_path / "infos")            # auto: camera_info folder
    convert_calibration(tmp_path / "infos" / "rig.yaml", tmp_path / "rig.xml")  # auto: OpenCV XML
    first = load_rig(tmp_path / "rig.toml")
    for path in ("rig_cv.yml", "rig.yaml", "back.toml", "infos/rig.yaml", "rig.xml"):
        assert_rigs_equal(first, load_rig(tmp_path / path), atol=1e-9)
        assert_rigs_equal(first, load_rig(tmp_path / path), atol=0.0)  # in fact bit for bit
    assert sorted(p.name for p in (tmp_path / "infos").iterdir()) == ["cam0.yaml", "cam1.yaml", "left_camera_2.yaml",
                                                                       "rig.yaml"]
    with pytest.raises(CalibrationError, match="unknown conversion target"):
        convert_calibration(tmp_path / "rig.toml", tmp_path / "x.toml", to="pdf")
    with pytest.raises(CalibrationError, match="cannot tell the format"):
        convert_calibration(tmp_path / "rig.toml", tmp_path / "x.txt")


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, (path.name, old)
    path.write_text(text.replace(old, new, count))


def _one_camera_files(tmp_path: Path) -> dict[str, Path]:
    rig = Rig([Camera("front", [[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]], [-0.1, 0.01, 0, 0],
                      look_at([2.0, 1.0, 2.0], [0, 0, 1])[0], look_at([2.0, 1.0, 2.0], [0, 0, 1])[1], (640, 480))])
    files = {"toml": tmp_path / "rig.toml", "opencv": tmp_path / "cv.yml", "rig-yaml": tmp_path / "rig.yaml"}
    save_toml_rig(rig, files["toml"])
    save_opencv_rig(rig, files["opencv"])
    save_rig_yaml(rig, files["rig-yaml"])
    return files


# (format, corruption, edit(path, rig), words the message must hold besides the camera)
CORRUPTIONS = [
    ("toml", "nan in K", lambda p: _edit(p, "matrix = [[500.0", "matrix = [[nan"), ["matrix", "non-finite"]),
    ("toml", "R not orthonormal",
     lambda p: _edit(p, "rotation = [", "rotation = [[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]\nold_rotation = ["),
     ["rotation", "not a rotation matrix"]),
    ("toml", "negative size", lambda p: _edit(p, "size = [640, 480]", "size = [-640, 480]"), ["size", "positive"]),
    ("toml", "missing field", lambda p: _edit(p, "translation = ", "translations = "), ["translation", "missing"]),
    ("toml", "wrong shape", lambda p: _edit(p, ", [0.0, 0.0, 1.0]]", "]"), ["matrix", "3x3", "(2, 3)"]),
    ("opencv", "nan in K", lambda p: _edit(p, "data: [ 500.", "data: [ .nan"), ["K", "non-finite"]),
    ("opencv", "R not orthonormal", lambda p: _opencv_scale_R(p), ["R", "not a rotation matrix"]),
    ("opencv", "negative size", lambda p: _edit(p, "image_width: 640", "image_width: -640"), ["image_width/image_height", "positive"]),
    ("opencv", "missing field", lambda p: _edit(p, "   T: !!opencv-matrix", "   X: !!opencv-matrix"), ["missing", "'T'"]),
    ("opencv", "wrong shape",
     lambda p: _edit(p, "rows: 3\n      cols: 3\n      dt: d\n      data: [ 500.", "rows: 1\n      cols: 9\n      dt: d\n      data: [ 500."),
     ["K", "3x3", "(1, 9)"]),
    ("rig-yaml", "nan in K", lambda p: _edit(p, "data: [500.0", "data: [.nan"), ["camera_matrix", "non-finite"]),
    ("rig-yaml", "R not orthonormal", lambda p: _rig_yaml_scale_R(p), ["extrinsics.rotation", "not a rotation matrix"]),
    ("rig-yaml", "negative size", lambda p: _edit(p, "image_width: 640", "image_width: -640"), ["image_width/image_height", "positive"]),
    ("rig-yaml", "missing field", lambda p: _edit(p, "translation:", "translate:"), ["extrinsics.translation", "missing"]),
    ("rig-yaml", "wrong shape",
     lambda p: _edit(p, "rows: 3\n      cols: 3\n      data: [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]",
                     "rows: 2\n      cols: 3\n      data: [500.0, 0.0, 320.0, 0.0, 500.0, 240.0]"),
     ["camera_matrix", "3x3", "(6,)"]),
]


def _opencv_scale_R(path: Path) -> None:
    text = path.read_text()
    head, tail = text.split("   R: !!opencv-matrix", 1)
    start = tail.index("data: [") + len("data: [")
    end = tail.index("]", start)
    values = [float(v) * 1.1 for v in tail[start:end].replace("\n", " ").split(",")]
    path.write_text(head + "   R: !!opencv-matrix" + tail[:start] + ", ".join(map(repr, values)) + tail[end:])


def _rig_yaml_scale_R(path: Path) -> None:
    import yaml

    data = yaml.safe_load(path.read_text())
    data["cameras"][0]["extrinsics"]["rotation"] = (np.array(data["cameras"][0]["extrinsics"]["rotation"]) * 1.1).tolist()
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


@pytest.mark.parametrize("fmt,case,edit,words", CORRUPTIONS, ids=[f"{f}-{c}" for f, c, _, _ in CORRUPTIONS])
def test_corrupt_files_are_refused_naming_camera_and_field(tmp_path, fmt, case, edit, words):
    path = _one_camera_files(tmp_path)[fmt]
    load_rig(path)  # fine before the edit
    edit(path)
    with pytest.raises(CalibrationError) as error:
        convert_calibration(path, tmp_path / "out.toml")
    message = str(error.value)
    assert "camera 'front'" in message, message
    for word in words:
        assert word in message, (word, message)
    assert not (tmp_path / "out.toml").exists()


def test_failed_saves_leave_the_old_files_intact(tmp_path, monkeypatch):
    good = varied_rig()
    bad = Rig([good[0], good[1].copy(K=np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]))])
    targets = {"toml": tmp_path / "r.toml", "opencv": tmp_path / "r.yml", "rig-yaml": tmp_path / "r.yaml"}
    writers = {"toml": save_toml_rig, "opencv": save_opencv_rig, "rig-yaml": save_rig_yaml}
    for fmt, path in targets.items():
        writers[fmt](good, path)
    before = {fmt: path.read_bytes() for fmt, path in targets.items()}
    for fmt, path in targets.items():
        with pytest.raises(CalibrationError, match="camera 'cam1'"):
            writers[fmt](bad, path)
        assert path.read_bytes() == before[fmt]
    with pytest.raises(CalibrationError, match="camera 'cam1'"):
        save_camera_info_dir(bad, tmp_path / "infos")
    assert not (tmp_path / "infos").exists()  # validated before anything is written

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    for fmt, path in targets.items():
        with pytest.raises(OSError):
            writers[fmt](Rig([good[0]]), path)
        assert path.read_bytes() == before[fmt]
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml", "r.yaml", "r.yml"]  # no temp files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_rigs_equal(load_rig(targets["opencv"]), good, atol=0.0)
