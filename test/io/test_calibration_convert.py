"""Calibration file conversion: every target round-trips bit for bit, corrupt files are refused naming
camera and field, failed saves leave the old files intact."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from hpe_ros.camera import Camera, Rig, look_at
from hpe_ros.io.calibration import (
    CalibrationError,
    convert_calibration,
    load_rig,
    save_camera_info_dir,
    save_opencv_rig,
    save_rig_yaml,
    save_toml_rig,
)


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
     lambda p: _edit(p, "rotation = [",
                     "rotation = [[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]\nold_rotation = ["),
     ["rotation", "not a rotation matrix"]),
    ("toml", "negative size", lambda p: _edit(p, "size = [640, 480]", "size = [-640, 480]"), ["size", "positive"]),
    ("toml", "missing field", lambda p: _edit(p, "translation = ", "translations = "), ["translation", "missing"]),
    ("toml", "wrong shape", lambda p: _edit(p, ", [0.0, 0.0, 1.0]]", "]"), ["matrix", "3x3", "(2, 3)"]),
    ("opencv", "nan in K", lambda p: _edit(p, "data: [ 500.", "data: [ .nan"), ["K", "non-finite"]),
    ("opencv", "R not orthonormal", lambda p: _opencv_scale_R(p), ["R", "not a rotation matrix"]),
    ("opencv", "negative size", lambda p: _edit(p, "image_width: 640", "image_width: -640"),
     ["image_width/image_height", "positive"]),
    ("opencv", "missing field", lambda p: _edit(p, "   T: !!opencv-matrix", "   X: !!opencv-matrix"),
     ["missing", "'T'"]),
    ("opencv", "wrong shape",
     lambda p: _edit(p, "rows: 3\n      cols: 3\n      dt: d\n      data: [ 500.",
                     "rows: 1\n      cols: 9\n      dt: d\n      data: [ 500."),
     ["K", "3x3", "(1, 9)"]),
    ("rig-yaml", "nan in K", lambda p: _edit(p, "data: [500.0", "data: [.nan"), ["camera_matrix", "non-finite"]),
    ("rig-yaml", "R not orthonormal", lambda p: _rig_yaml_scale_R(p), ["extrinsics.rotation", "not a rotation matrix"]),
    ("rig-yaml", "negative size", lambda p: _edit(p, "image_width: 640", "image_width: -640"),
     ["image_width/image_height", "positive"]),
    ("rig-yaml", "missing field", lambda p: _edit(p, "translation:", "translate:"),
     ["extrinsics.translation", "missing"]),
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
    extrinsics = data["cameras"][0]["extrinsics"]
    extrinsics["rotation"] = (np.array(extrinsics["rotation"]) * 1.1).tolist()
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
