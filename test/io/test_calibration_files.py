"""Calibration file formats: round trips, foreign files, corrupt files, atomic saves, the example rig."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from hpe_ros.camera import Camera, Rig, look_at, rodrigues
from hpe_ros.io.calibration import (
    CalibrationError,
    load_camera_info_yaml,
    load_rig,
    load_toml_rig,
    rig_from_camera_infos,
    save_camera_info_yaml,
    save_rig,
    save_toml_rig,
)
from hpe_ros.io.calibration_validate import validate_camera

EXAMPLE_RIG = Path(__file__).resolve().parents[2] / "config" / "example_rig.toml"


def random_rig(seed: int = 0) -> Rig:
    """Four cameras with varied intrinsics, 4-, 5- and 8-term distortion and arbitrary poses."""
    rng = np.random.default_rng(seed)
    dists = [rng.normal(0, 0.05, 4), rng.normal(0, 0.05, 5), rng.normal(0, 0.05, 8), np.zeros(8)]
    cameras = []
    for i, dist in enumerate(dists):
        K = np.array([[rng.uniform(400, 1500), rng.uniform(-1, 1), rng.uniform(300, 700)],
                      [0.0, rng.uniform(400, 1500), rng.uniform(200, 500)],
                      [0.0, 0.0, 1.0]])
        eye = rng.uniform(-5, 5, 3) + [0, 0, 3]
        R, t = look_at(eye, rng.uniform(-0.5, 0.5, 3))
        size = (int(rng.integers(320, 2000)), int(rng.integers(240, 1500)))
        cameras.append(Camera(f"cam{i}", K, dist, R, t, size=size))
    cameras[3] = cameras[3].copy(frame_id="rig/left_optical")
    return Rig(cameras)


def assert_rigs_identical(a: Rig, b: Rig) -> None:
    assert a.names == b.names
    for ca, cb in zip(a, b):
        for field in ("K", "dist", "R", "t"):
            assert np.array_equal(getattr(ca, field), getattr(cb, field)), (ca.name, field)
        assert ca.size == cb.size and ca.frame_id == cb.frame_id


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- TOML ------------------------------------------------------------------------------------------
def test_toml_round_trip_is_exact(tmp_path):
    original = random_rig()
    save_toml_rig(original, tmp_path / "a.toml")
    loaded = load_toml_rig(tmp_path / "a.toml")
    for c0, c1 in zip(original, loaded):  # the first save stores R as a Rodrigues vector: ~1e-16
        np.testing.assert_allclose(c1.R, c0.R, rtol=0, atol=1e-14)
        assert np.array_equal(c1.K, c0.K) and np.array_equal(c1.dist, c0.dist) and np.array_equal(c1.t, c0.t)
    save_toml_rig(loaded, tmp_path / "b.toml")
    again = load_toml_rig(tmp_path / "b.toml")
    assert_rigs_identical(loaded, again)
    save_toml_rig(again, tmp_path / "c.toml")
    assert (tmp_path / "b.toml").read_text() == (tmp_path / "c.toml").read_text()


def test_toml_writes_pose2sim_keys_and_shortest_distortion(tmp_path):
    save_toml_rig(random_rig(), tmp_path / "rig.toml")
    import tomllib

    data = tomllib.loads((tmp_path / "rig.toml").read_text())
    assert data["metadata"] == {"adjusted": False, "error": 0.0}
    assert [len(data[f"cam{i}"]["distortions"]) for i in range(4)] == [4, 5, 8, 4]
    for i in range(4):
        table = data[f"cam{i}"]
        assert table["name"] == f"cam{i}" and table["fisheye"] is False
        assert np.shape(table["matrix"]) == (3, 3) and len(table["rotation"]) == 3 and len(table["translation"]) == 3
    assert "frame_id" not in data["cam0"] and data["cam3"]["frame_id"] == "rig/left_optical"


POSE2SIM_TOML = """\
[cam_01]
name = "cam_01"
size = [ 1088.0, 1920.0,]
matrix = [ [ 1681.0, 0.0, 539.5,], [ 0.0, 1677.5, 959.5,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.08, 0.1, 0.001, -0.002,]
rotation = [ 1.6, 0.9, -0.5,]
translation = [ 0.4, 0.9, 3.7,]
fisheye = false

[cam_02]
name = "cam_02"
size = [ 1920.0, 1080.0,]
matrix = [ [ 1500.0, 0.0, 960.0,], [ 0.0, 1500.0, 540.0,], [ 0.0, 0.0, 1.0,],]
distortions = [ 0.0, 0.0, 0.0, 0.0,]
rotation = [ 0.0, 0.0, 0.0,]
translation = [ 0.0, 0.0, 5.0,]
fisheye = false

[metadata]
adjusted = false
error = 0.0
"""


def test_pose2sim_toml_loads_and_projects_like_opencv(tmp_path):
    path = tmp_path / "Calib_scene.toml"
    path.write_text(POSE2SIM_TOML)
    rig = load_rig(path)
    assert rig.names == ["cam_01", "cam_02"]
    cam = rig["cam_01"]
    assert cam.size == (1088, 1920)
    np.testing.assert_array_equal(cam.K, [[1681.0, 0, 539.5], [0, 1677.5, 959.5], [0, 0, 1]])
    np.testing.assert_array_equal(cam.dist, [-0.08, 0.1, 0.001, -0.002, 0, 0, 0, 0])
    rvec, tvec = np.array([1.6, 0.9, -0.5]), np.array([0.4, 0.9, 3.7])
    np.testing.assert_allclose(cam.R, cv2.Rodrigues(rvec)[0], atol=1e-14)
    np.testing.assert_array_equal(cam.t, tvec)
    # a world point in front of the camera: 2 m ahead on its optical axis, offset sideways
    point = cam.camera_to_world(np.array([0.3, -0.2, 2.0]))
    expected, _ = cv2.projectPoints(point[None], rvec, tvec, cam.K, np.array([-0.08, 0.1, 0.001, -0.002]))
    np.testing.assert_allclose(cam.project(point), expected.reshape(2), atol=1e-8)
    np.testing.assert_allclose(rig["cam_02"].project(np.array([0.5, 0.0, 0.0])), [960 + 1500 * 0.1, 540], atol=1e-9)


# --- ROS camera_info YAML --------------------------------------------------------------------------
CAMERA_CALIBRATION_YAML = """\
image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [ 612.5, 0, 321.25, 0, 611, 238.75, 0, 0, 1 ]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [ -0.12, 0.05, 0.0004, -0.0002, 0 ]
rectification_matrix:
  rows: 3
  cols: 3
  data: [ 1, 0, 0, 0, 1, 0, 0, 0, 1 ]
projection_matrix:
  rows: 3
  cols: 4
  data: [ 600, 0, 320, 0, 0, 600, 240, 0, 0, 0, 1, 0 ]
"""


def test_camera_info_yaml_as_written_by_camera_calibration(tmp_path):
    (tmp_path / "narrow.yaml").write_text(CAMERA_CALIBRATION_YAML)
    info = load_camera_info_yaml(tmp_path / "narrow.yaml")
    assert info["name"] == "narrow_stereo" and info["size"] == (640, 480)
    np.testing.assert_array_equal(info["K"], [[612.5, 0, 321.25], [0, 611, 238.75], [0, 0, 1]])
    np.testing.assert_array_equal(info["dist"], [-0.12, 0.05, 0.0004, -0.0002, 0])


@pytest.mark.parametrize("dist, model", [([-0.12, 0.05, 1e-4, -2e-4, 0.01], "plumb_bob"),
                                         ([0.1, -0.2, 1e-3, 2e-3, 0.03, 0.1, -0.02, 0.003], "rational_polynomial")])
def test_camera_info_yaml_round_trip(tmp_path, dist, model):
    K = np.array([[612.123456789, 0.0, 321.5], [0.0, 611.987654321, 238.25], [0.0, 0.0, 1.0]])
    cam = Camera("front", K, dist, size=(1280, 720))
    save_camera_info_yaml(cam, tmp_path / "front.yaml")
    raw = yaml.safe_load((tmp_path / "front.yaml").read_text())
    assert raw["distortion_model"] == model and raw["distortion_coefficients"]["cols"] == len(dist)
    info = load_camera_info_yaml(tmp_path / "front.yaml")
    assert info["name"] == "front" and info["size"] == (1280, 720)
    assert np.array_equal(info["K"], K) and np.array_equal(info["dist"], dist)


def test_load_rig_refuses_a_lone_camera_info(tmp_path):
    (tmp_path / "narrow.yaml").write_text(CAMERA_CALIBRATION_YAML)
    with pytest.raises(CalibrationError, match="extrinsics") as err:
        load_rig(tmp_path / "narrow.yaml")
    assert "narrow.yaml" in str(err.value) and "cameras:" in str(err.value)


# --- hpe_ros rig YAML -------------------------------------------------------------------------------
def test_rig_yaml_with_camera_info_files_and_extrinsics(tmp_path):
    (tmp_path / "intrinsics").mkdir()
    (tmp_path / "intrinsics" / "left.yaml").write_text(CAMERA_CALIBRATION_YAML)
    right = Camera("right_cam", [[700.0, 0, 330], [0, 705.0, 250], [0, 0, 1]], [0.01, -0.02, 0, 0, 0.003],
                   size=(800, 600))
    save_camera_info_yaml(right, tmp_path / "intrinsics" / "right.yaml")
    R_right, t_right = look_at([3.0, -2.0, 2.0], [0, 0, 1])
    rig_yaml = {
        "cameras": [
            {"name": "left", "camera_info": "intrinsics/left.yaml",
             "extrinsics": {"rotation": [0.1, -0.2, 0.3], "translation": [0.5, 0.25, 4.0]}},
            {"camera_info": "intrinsics/right.yaml", "frame_id": "right_optical",
             "extrinsics": {"rotation": R_right.tolist(), "translation": t_right.tolist()}},
            {"name": "inline",
             "camera_info": {"image_width": 320, "image_height": 240,
                             "camera_matrix": {"rows": 3, "cols": 3, "data": [300, 0, 160, 0, 300, 120, 0, 0, 1]},
                             "distortion_model": "plumb_bob",
                             "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0, 0, 0, 0, 0]}},
             "extrinsics": {"rotation": [0, 0, 0], "translation": [0, 0, 2]}},
        ]
    }
    (tmp_path / "rig.yaml").write_text(yaml.safe_dump(rig_yaml))
    rig = load_rig(tmp_path / "rig.yaml")
    assert rig.names == ["left", "right_cam", "inline"]
    np.testing.assert_array_equal(rig["left"].K, [[612.5, 0, 321.25], [0, 611, 238.75], [0, 0, 1]])
    np.testing.assert_allclose(rig["left"].R, cv2.Rodrigues(np.array([0.1, -0.2, 0.3]))[0], atol=1e-15)
    np.testing.assert_array_equal(rig["left"].t, [0.5, 0.25, 4.0])
    assert np.array_equal(rig["right_cam"].R, R_right) and np.array_equal(rig["right_cam"].t, t_right)
    assert np.array_equal(rig["right_cam"].dist[:5], [0.01, -0.02, 0, 0, 0.003]) and rig["right_cam"].size == (800, 600)
    assert rig["right_cam"].frame_id == "right_optical" and rig["inline"].frame_id == "inline_optical_frame"
    np.testing.assert_allclose(rig["inline"].project(np.array([0.2, 0.0, 0.0])), [190.0, 120.0])
    # and the rig saved as YAML (R as a matrix) comes back bit for bit
    save_rig(rig, tmp_path / "copy.yaml")
    assert_rigs_identical(rig, load_rig(tmp_path / "copy.yaml"))


# --- OpenCV FileStorage -----------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".xml"])
def test_opencv_filestorage_rig(tmp_path, suffix):
    # no skew: cv2.projectPoints, the reference below, ignores K[0, 1]
    rig = Rig([c.copy(K=c.K * [[1, 0, 1], [1, 1, 1], [1, 1, 1]]) for c in random_rig(seed=3)])
    path = tmp_path / f"opencv{suffix}"
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for i, cam in enumerate(rig):
        fs.startWriteStruct(cam.name, cv2.FileNode_MAP)
        fs.write("camera_matrix" if i % 2 else "K", cam.K)
        fs.write("distortion_coefficients" if i % 2 else "dist", cam.dist[:5].reshape(1, 5))
        if i % 2:
            fs.write("rvec", cv2.Rodrigues(cam.R)[0])  # 3x1, as cv2.calibrateCamera returns it
            fs.write("image_width", cam.size[0])
            fs.write("image_height", cam.size[1])
        else:
            fs.write("R", cam.R)
            fs.startWriteStruct("image_size", cv2.FileNode_SEQ)
            fs.write("", cam.size[0])
            fs.write("", cam.size[1])
            fs.endWriteStruct()
        fs.write("T", cam.t.reshape(3, 1))
        fs.endWriteStruct()
    fs.release()
    loaded = load_rig(path)
    assert loaded.names == rig.names
    for c0, c1 in zip(rig, loaded):
        assert np.array_equal(c1.K, c0.K) and np.array_equal(c1.t, c0.t) and c1.size == c0.size
        np.testing.assert_array_equal(c1.dist[:5], c0.dist[:5])
        np.testing.assert_allclose(c1.R, c0.R, atol=1e-12)
    point = np.array([0.1, 0.2, 1.0])
    expected = [cv2.projectPoints(point[None], cv2.Rodrigues(c.R)[0], c.t, c.K, c.dist[:5])[0].reshape(2) for c in rig]
    np.testing.assert_allclose(loaded.project(point), np.stack(expected), atol=1e-6)


def test_plain_yaml_in_opencv_layout_without_header(tmp_path):
    (tmp_path / "hand.yaml").write_text(
        "cam0:\n  K: [[400, 0, 320], [0, 400, 240], [0, 0, 1]]\n  dist: [0, 0, 0, 0, 0]\n"
        "  rvec: [0, 0, 0]\n  T: [0, 0, 3]\n  image_size: [640, 480]\n")
    rig = load_rig(tmp_path / "hand.yaml")
    np.testing.assert_allclose(rig["cam0"].project(np.array([0.3, 0.0, 0.0])), [360.0, 240.0])


# --- live CameraInfo + extrinsics -------------------------------------------------------------------
def test_rig_from_camera_infos(tmp_path):
    (tmp_path / "narrow.yaml").write_text(CAMERA_CALIBRATION_YAML)
    from_file = load_camera_info_yaml(tmp_path / "narrow.yaml")
    like_a_message = {"K": [500.0, 0, 320, 0, 500, 240, 0, 0, 1], "dist": [0.0] * 8, "size": (640, 480),
                      "distortion_model": "rational_polynomial", "frame_id": "cam_b_optical"}
    poses = [look_at([2, 2, 2], [0, 0, 1]), (np.array([0.0, 0.0, 0.5]), [0, 0, 3])]
    rig = rig_from_camera_infos([from_file, like_a_message], poses)
    assert rig.names == ["narrow_stereo", "cam1"] and rig["cam1"].frame_id == "cam_b_optical"
    assert np.array_equal(rig[0].R, poses[0][0]) and np.array_equal(rig[1].R, rodrigues(np.array([0.0, 0.0, 0.5])))
    assert rig_from_camera_infos([from_file], poses[:1], names=["front"]).names == ["front"]
    with pytest.raises(CalibrationError, match="2 camera infos but 1 extrinsics"):
        rig_from_camera_infos([from_file, like_a_message], poses[:1])
    with pytest.raises(CalibrationError, match="'cam1'.*equidistant.*not supported"):
        rig_from_camera_infos([from_file, dict(like_a_message, distortion_model="equidistant")], poses)
    with pytest.raises(CalibrationError, match="'cam1'.*R is not a proper rotation"):
        rig_from_camera_infos([from_file, like_a_message], [poses[0], (-np.eye(3), [0, 0, 3])])


# --- corrupt files ----------------------------------------------------------------------------------
GOOD_CAMERA = {
    "name": '"cam2"', "size": "[640, 480]", "matrix": "[[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]",
    "distortions": "[0.0, 0.0, 0.0, 0.0]", "rotation": "[0.1, 0.2, 0.3]", "translation": "[0.0, 0.0, 4.0]",
    "fisheye": "false",
}


def toml_with(**changes) -> str:
    table = {**GOOD_CAMERA, **changes}
    body = "\n".join(f"{k} = {v}" for k, v in table.items() if v is not None)
    return (f"[cam_1]\nname = \"cam1\"\nsize = [640, 480]\nmatrix = {GOOD_CAMERA['matrix']}\n"
            "distortions = [0.0, 0.0, 0.0, 0.0]\nrotation = [0.0, 0.0, 0.0]\ntranslation = [0.0, 0.0, 4.0]\n\n"
            f"[cam_2]\n{body}\n\n[metadata]\nadjusted = false\n")


CORRUPT_TOML = {
    "missing rotation": (dict(rotation=None), ["missing key 'rotation'"]),
    "NaN in matrix": (dict(matrix="[[nan, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]"),
                      ["matrix", "non-finite"]),
    "mirror rotation": (dict(rotation="[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]"),
                        ["rotation", "det=-1.00"]),
    "scaled rotation": (dict(rotation="[[1.1, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]"),
                        ["rotation", "not a rotation"]),
    "matrix 2x3": (dict(matrix="[[500.0, 0.0, 320.0], [0.0, 500.0, 240.0]]"), ["matrix", "3x3", "(2, 3)"]),
    "zero focal length": (dict(matrix="[[0.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]"), ["matrix", "fx=0"]),
    "bad last row": (dict(matrix="[[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 1.0, 1.0]]"),
                     ["matrix", "last row"]),
    "3 distortions": (dict(distortions="[0.1, 0.0, 0.0]"), ["distortions", "got 3"]),
    "inf translation": (dict(translation="[0.0, inf, 4.0]"), ["translation", "non-finite"]),
    "2-value translation": (dict(translation="[0.0, 4.0]"), ["translation", "3 values"]),
    "string rotation": (dict(rotation='"identity"'), ["rotation", "numbers"]),
    "negative size": (dict(size="[640, -480]"), ["size", "positive"]),
    "fractional size": (dict(size="[640.5, 480]"), ["size", "whole"]),
    "fisheye": (dict(fisheye="true"), ["fisheye", "not supported"]),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_TOML))
def test_corrupt_toml_names_file_camera_and_field(tmp_path, case):
    changes, expected = CORRUPT_TOML[case]
    path = tmp_path / "calib.toml"
    path.write_text(toml_with(**changes))
    with pytest.raises(CalibrationError) as err:
        load_rig(path)
    message = str(err.value)
    assert message.startswith(f"{path}: camera 'cam2': "), message
    for fragment in expected:
        assert fragment in message, message


def test_baseline_of_corrupt_cases_is_valid(tmp_path):
    (tmp_path / "calib.toml").write_text(toml_with())
    assert load_rig(tmp_path / "calib.toml").names == ["cam1", "cam2"]


@pytest.mark.parametrize("content, fragment", [
    ("[cam_1\nmatrix = ", "not a valid TOML"),
    ("", "empty"),
    ("   \n\n", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a text file"),
    ("[metadata]\nadjusted = false\n", "no cameras"),
    ("[cam_1]\nname = \"a\"\nsize = [1, 1]\nmatrix = [[1.0,0.0,0.0],[0.0,1.0,0.0],[0.0,0.0,1.0]]\ndistortions = []\n"
     "rotation = [0.0,0.0,0.0]\ntranslation = [0.0,0.0,0.0]\n[cam_2]\nname = \"a\"\nsize = [1, 1]\n"
     "matrix = [[1.0,0.0,0.0],[0.0,1.0,0.0],[0.0,0.0,1.0]]\ndistortions = []\nrotation = [0.0,0.0,0.0]\n"
     "translation = [0.0,0.0,0.0]\n", "unique"),
])
def test_unreadable_toml(tmp_path, content, fragment):
    path = tmp_path / "calib.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CalibrationError, match=fragment) as err:
        load_rig(path)
    assert str(path) in str(err.value)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(CalibrationError, match="not found") as err:
        load_rig(tmp_path / "nowhere.toml")
    assert "nowhere.toml" in str(err.value)
    (tmp_path / "rig.txt").write_text("hello")
    with pytest.raises(CalibrationError, match="extension '.txt'"):
        load_rig(tmp_path / "rig.txt")


@pytest.mark.parametrize("edit, fragments", [
    (lambda d: d.pop("camera_matrix"), ["'narrow_stereo'", "missing key 'camera_matrix'"]),
    (lambda d: d.update(distortion_model="equidistant"), ["'narrow_stereo'", "equidistant", "not supported"]),
    (lambda d: d.update(distortion_model="pinhole_magic"), ["unknown distortion_model"]),
    (lambda d: d["camera_matrix"].update(data=[1.0] * 8), ["camera_matrix", "3x3 but data has 8"]),
    (lambda d: d["distortion_coefficients"].update(cols=8, data=[0.1] * 8),
     ["distortion_coefficients (plumb_bob)", "got 8"]),
    (lambda d: d.update(image_width=0), ["image_width/image_height", "positive"]),
])
def test_corrupt_camera_info_yaml(tmp_path, edit, fragments):
    data = yaml.safe_load(CAMERA_CALIBRATION_YAML)
    edit(data)
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CalibrationError) as err:
        load_camera_info_yaml(path)
    for fragment in [str(path), *fragments]:
        assert fragment in str(err.value), str(err.value)


def test_corrupt_rig_yaml_and_opencv_files(tmp_path):
    (tmp_path / "left.yaml").write_text(CAMERA_CALIBRATION_YAML)
    mirror = {"cameras": [{"name": "left", "camera_info": "left.yaml",
                           "extrinsics": {"rotation": np.diag([1.0, -1.0, 1.0]).tolist(), "translation": [0, 0, 1]}}]}
    (tmp_path / "rig.yaml").write_text(yaml.safe_dump(mirror))
    not_proper = r"rig.yaml: camera 'left': extrinsics.rotation is not a proper rotation \(det=-1.00\)"
    with pytest.raises(CalibrationError, match=not_proper):
        load_rig(tmp_path / "rig.yaml")
    no_translation = {"cameras": [{"name": "left", "camera_info": "left.yaml", "extrinsics": {"rotation": [0, 0, 0]}}]}
    (tmp_path / "rig.yaml").write_text(yaml.safe_dump(no_translation))
    with pytest.raises(CalibrationError, match="camera 'left': missing key 'extrinsics.translation'"):
        load_rig(tmp_path / "rig.yaml")
    missing_info = {"cameras": [{"name": "left", "camera_info": "gone.yaml",
                                 "extrinsics": {"rotation": [0, 0, 0], "translation": [0, 0, 1]}}]}
    (tmp_path / "rig.yaml").write_text(yaml.safe_dump(missing_info))
    with pytest.raises(CalibrationError, match="gone.yaml: calibration file not found"):
        load_rig(tmp_path / "rig.yaml")

    fs = cv2.FileStorage(str(tmp_path / "cv.yaml"), cv2.FILE_STORAGE_WRITE)
    fs.startWriteStruct("side", cv2.FileNode_MAP)
    fs.write("K", np.array([[500.0, 0, 320], [0, np.nan, 240], [0, 0, 1]]))
    fs.write("dist", np.zeros((1, 5)))
    fs.write("R", np.eye(3))
    fs.write("T", np.zeros((3, 1)))
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.endWriteStruct()
    fs.release()
    with pytest.raises(CalibrationError, match="cv.yaml: camera 'side': K has non-finite"):
        load_rig(tmp_path / "cv.yaml")
    (tmp_path / "other.yaml").write_text("just: [some, yaml]\n")
    with pytest.raises(CalibrationError, match="unrecognised calibration YAML"):
        load_rig(tmp_path / "other.yaml")


def test_validate_camera_accepts_file_noise_and_refuses_impossible_cameras():
    R, t = look_at([3, 1, 2], [0, 0, 1])
    good = Camera("c", [[500.0, 0, 320], [0, 500, 240], [0, 0, 1]], R=R, t=t)
    validate_camera(good)
    validate_camera(good.copy(R=np.round(R, 7)))  # rotation printed with 7 decimals: noise, accepted
    for bad, fragment in [
        (good.copy(R=R * 1.01), "R is not a rotation matrix"),
        (good.copy(R=R @ np.diag([1.0, 1.0, -1.0])), "R is not a proper rotation (det=-1.00)"),
        (good.copy(K=np.diag([500.0, -500.0, 1.0])), "fy=-500"),
        (good.copy(t=[0.0, np.nan, 1.0]), "t has non-finite"),
        (good.copy(dist=[0.1, np.inf]), "dist has non-finite"),
        (good.copy(size=(0, 480)), "size must be two positive"),
        (good.copy(name=""), "name must be a non-empty string"),
    ]:
        with pytest.raises(CalibrationError) as err:
            validate_camera(bad, "rig.toml")
        assert str(err.value).startswith("rig.toml: camera") and fragment in str(err.value), str(err.value)


# --- atomic saves -----------------------------------------------------------------------------------
def test_failed_save_leaves_nothing_behind(tmp_path):
    rig = random_rig()
    broken = Rig([rig[0], rig[1].copy(K=np.where(np.eye(3, dtype=bool), np.nan, rig[1].K))])
    for name in ("new.toml", "new.yaml"):
        with pytest.raises(CalibrationError, match="camera 'cam1': K has non-finite"):
            save_rig(broken, tmp_path / name)
    with pytest.raises(CalibrationError, match="camera 'cam1'"):
        save_camera_info_yaml(broken[1], tmp_path / "cam1.yaml")
    assert files_in(tmp_path) == []

    save_toml_rig(rig, tmp_path / "rig.toml")
    before = (tmp_path / "rig.toml").read_bytes()
    with pytest.raises(CalibrationError):
        save_toml_rig(broken, tmp_path / "rig.toml")
    assert (tmp_path / "rig.toml").read_bytes() == before and files_in(tmp_path) == ["rig.toml"]
    assert os.stat(tmp_path / "rig.toml").st_mode & 0o044 == 0o044  # readable by others, unlike a raw mkstemp file

    (tmp_path / "taken.toml").mkdir()  # the final rename fails after the temp file was written
    with pytest.raises(OSError):
        save_toml_rig(rig, tmp_path / "taken.toml")
    assert files_in(tmp_path) == ["rig.toml", "taken.toml"] and files_in(tmp_path / "taken.toml") == []
    with pytest.raises(CalibrationError, match="does not exist"):
        save_toml_rig(rig, tmp_path / "no_such_folder" / "rig.toml")


# --- the shipped example rig ------------------------------------------------------------------------
def test_example_rig_file(tmp_path):
    rig = load_rig(EXAMPLE_RIG)
    assert rig.names == ["cam0", "cam1", "cam2", "cam3"]
    target = np.array([0.0, 0.0, 1.0])
    for cam, azimuth in zip(rig, np.radians([45, 135, 225, 315])):
        eye = [4 * np.cos(azimuth), 4 * np.sin(azimuth), 2.5]
        R, t = look_at(eye, target)
        np.testing.assert_allclose(cam.center, eye, atol=1e-12)
        np.testing.assert_allclose(cam.R, R, atol=1e-14)
        np.testing.assert_allclose(cam.t, t, atol=1e-14)
        assert cam.size == (640, 480) and not cam.dist.any()
        assert np.array_equal(cam.K, [[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        pixel = cam.project(target)
        assert cam.in_image(pixel) and np.linalg.norm(pixel - [320, 240]) < 1.0, pixel
    save_toml_rig(rig, tmp_path / "copy.toml")  # the file is a fixed point of load -> save
    assert (tmp_path / "copy.toml").read_text() == EXAMPLE_RIG.read_text()


def test_a_byte_order_mark_is_accepted_and_utf16_named(tmp_path):
    from hpe_ros.sim import default_rig

    rig = default_rig(2)
    save_rig(rig, tmp_path / "calib.toml")
    text = (tmp_path / "calib.toml").read_text(encoding="utf-8")
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_rig(tmp_path / "bom.toml").names == rig.names
    (tmp_path / "wide.toml").write_bytes(text.encode("utf-16"))
    with pytest.raises(CalibrationError, match=r"wide.toml: a UTF-16 text file; save it as UTF-8"):
        load_rig(tmp_path / "wide.toml")
