"""The Pose2Sim demo rig's Qualisys calibration, read with load_rig and checked against its own data:
plausible intrinsics, optical axes that meet, and distortion that straightens the real checkerboard."""
import cv2
import numpy as np
import pytest

from hpe_ros.io.calibration import load_rig
from hpe_ros.realdata import DEMOS

pytestmark = pytest.mark.realdata

BOARD_CORNERS = (7, 4)   # inner corners of the demo's checkerboard (Config.toml: intrinsics_corners_nb)


def _demo_rig(realdata_demo, demo="Demo_SinglePerson"):
    return load_rig(realdata_demo(demo) / "calibration" / "Calib.qca.txt")


@pytest.mark.parametrize("demo", DEMOS)
def test_every_demo_loads_four_portrait_cameras(realdata_demo, demo):
    rig = _demo_rig(realdata_demo, demo)
    assert rig.names == ["cam01", "cam02", "cam03", "cam04"]
    for camera in rig:
        assert camera.size == (1088, 1920)
        fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
        assert 1500 < fx < 1900 and abs(fx - fy) < 0.01 * fx            # ~1680 px: a phone-like 35 deg lens
        assert abs(cx - 544) < 50 and abs(cy - 960) < 50                 # principal point near the centre
        assert 1.0 < camera.center[2] < 2.5                              # mounted 1.7-2.1 m above the floor
        assert camera.R[2, 2] < 0                                        # looking down (z-up world)


def test_optical_axes_meet_in_front_of_every_camera(realdata_demo):
    rig = _demo_rig(realdata_demo)
    centers, axes = rig.centers, np.stack([c.R[2] for c in rig])         # optical axis = camera z in the world
    # The point nearest to all four axes (least squares), and each axis' distance to it.
    projectors = np.eye(3) - axes[:, :, None] * axes[:, None, :]
    meeting = np.linalg.solve(projectors.sum(axis=0), np.einsum("cij,cj->i", projectors, centers))
    offsets = meeting - centers
    distances = np.linalg.norm(np.cross(offsets, axes), axis=1)
    assert distances.max() < 0.3                                         # measured: 0.04-0.11 m
    assert np.all(np.einsum("ci,ci->c", offsets, axes) > 2.0)            # 2-5 m in front of each camera
    assert 0.0 < meeting[2] < 1.5                                        # around a person's waist
    pixels = rig.project(meeting)                                        # (C, 2): near each image's middle
    assert np.all(np.abs(pixels - [544, 960]) < [250, 400])


def _line_residual_px(corners: np.ndarray) -> float:
    """RMS distance (px) of (rows, cols, 2) board corners from the best line through each row and column."""
    residuals = []
    for lines in (corners, corners.transpose(1, 0, 2)):
        centred = lines - lines.mean(axis=1, keepdims=True)
        smallest = np.linalg.svd(centred, compute_uv=False)[:, -1]       # off-line spread per line
        residuals.append(smallest ** 2 / lines.shape[1])
    return float(np.sqrt(np.mean(np.concatenate(residuals))))


def test_stored_distortion_straightens_the_real_checkerboard(realdata_demo):
    """Qualisys distortion coefficients are OpenCV's as they stand: dividing them by 64 (as one Pose2Sim
    converter did) leaves the board's corner rows as bent as not undistorting at all."""
    rig = _demo_rig(realdata_demo)
    residual = {"stored": [], "divided by 64": [], "none": []}
    for camera in rig:
        folder = realdata_demo("Demo_SinglePerson") / "calibration" / "intrinsics" / f"int_{camera.name}_img"
        for image_path in sorted(folder.glob("*.jpg"))[:3]:
            gray = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
            found, corners = cv2.findChessboardCorners(gray, BOARD_CORNERS)
            if not found:
                continue
            corners = cv2.cornerSubPix(gray, corners, (11, 11), (-1, -1),
                                       (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3))
            grid = corners.reshape(BOARD_CORNERS[1], BOARD_CORNERS[0], 2).astype(np.float64)
            for label, dist in (("stored", camera.dist), ("divided by 64", camera.dist / 64), ("none", None)):
                pixels = grid if dist is None else camera.copy(dist=dist).undistort_pixels(grid)
                residual[label].append(_line_residual_px(pixels))
    assert len(residual["stored"]) >= 8, "too few checkerboards found"
    mean = {label: float(np.mean(values)) for label, values in residual.items()}
    assert mean["stored"] < 0.93 * mean["divided by 64"], mean           # measured: 0.12 vs 0.14 px
    assert mean["stored"] < 0.93 * mean["none"], mean


def test_videos_match_the_calibrated_cameras(realdata_demo):
    rig = _demo_rig(realdata_demo)
    for camera in rig:
        capture = cv2.VideoCapture(str(realdata_demo("Demo_SinglePerson") / "videos" / f"{camera.name}.mp4"))
        try:
            width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
            frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        finally:
            capture.release()
        # The videos are 1080 px wide: an 8-column crop of the 1088-column calibrated region.
        assert height == camera.size[1] and abs(width - camera.size[0]) <= 8
        assert frames > 0
