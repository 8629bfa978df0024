"""Calibration files: read and write rigs of cameras.

`load_rig` and `save_rig` pick the format from the file name (and, for YAML, the content); every
reader and writer raises `CalibrationError` (a ValueError) naming the file, camera and field at fault.

Formats (all use world->camera ``x_cam = R X + t``, metres, OpenCV distortion):

* anipose / Pose2Sim TOML (``.toml``), the interchange format. One table per camera::

      [cam0]
      name = "cam0"
      size = [640, 480]
      matrix = [[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]
      distortions = [0.0, 0.0, 0.0, 0.0]     # 4, 5 or 8 OpenCV coefficients
      rotation = [1.2, -0.3, 0.1]            # Rodrigues vector, world->camera
      translation = [0.1, 0.9, 4.0]          # metres
      fisheye = false

      [metadata]
      adjusted = false
      error = 0.0

  Tables without camera keys (``[metadata]``) are skipped. An optional ``frame_id`` key is read
  and written (only when it differs from the default ``<name>_optical_frame``).

* ROS camera_info YAML (one camera, intrinsics only) as written by camera_calibration /
  camera_info_manager: `load_camera_info_yaml`, `save_camera_info_yaml`.

* hpe_ros rig YAML (``.yaml``/``.yml``): camera_info per camera (a path relative to the YAML file, or
  the same keys inline) plus extrinsics::

      cameras:
        - name: cam0
          camera_info: cam0.yaml
          extrinsics:
            rotation: [1.2, -0.3, 0.1]         # Rodrigues vector or 3x3 matrix, world->camera
            translation: [0.1, 0.9, 4.0]       # metres
          frame_id: cam0_optical_frame         # optional

* OpenCV FileStorage (``.yaml``/``.yml`` starting with ``%YAML:``, ``.xml``, ``.json``), as written
  by cv2.FileStorage: one map per camera, named by its key, holding
  ``K``|``camera_matrix``, ``dist``|``distortion_coefficients``, ``R`` (3x3 or 3x1 Rodrigues)|``rvec``,
  ``T``|``tvec``, and ``image_size`` ([w, h]) or ``image_width`` + ``image_height``. A file with these
  keys at the top level is one camera named by its ``name`` key or the file name.

* Qualisys exports (``.qca.txt``, read only): see hpe_ros.io.qualisys.

Writers build the whole text in memory after validating every camera, then write a temporary file
in the target folder and rename it over the target, so a failed save never leaves a partial file.
`save_opencv_rig` writes the OpenCV layout (R as a 3x3 matrix, every double with 17 significant
digits, so `load_opencv_rig` reads back the same numbers); `save_camera_info_dir` writes one
camera_info YAML per camera plus a rig YAML pointing at them; `convert_calibration` converts any
readable file into any of these.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from hpe_ros.camera import Camera, Rig, rodrigues, rotation_to_rvec
from hpe_ros.io.atomic import write_text_atomic
from hpe_ros.io.calibration_validate import (
    CalibrationError,
    check_distortion,
    check_intrinsics,
    check_rotation,
    check_size,
    check_translation,
    fail,
    validate_camera,
    where,
)
from hpe_ros.io.qualisys import load_qualisys_rig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (ROS 2 Humble)
    import tomli as tomllib

# Keys that mark a TOML table as a camera (the rest, e.g. [metadata], are skipped).
_TOML_CAMERA_KEYS = ("matrix", "distortions", "rotation", "translation", "size")
_BARE_TOML_KEY = re.compile(r"[A-Za-z0-9_-]+")


# --- dispatch ---------------------------------------------------------------------------------------
def load_rig(path: str | os.PathLike) -> Rig:
    """Load a rig from any supported file, chosen by extension and (for YAML) content."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name.lower().endswith(".qca.txt"):
        return load_qualisys_rig(path)
    if suffix == ".toml":
        return load_toml_rig(path)
    if suffix in (".xml", ".json"):
        return load_opencv_rig(path)
    if suffix not in (".yaml", ".yml"):
        fail(str(path), f"unsupported calibration file extension {path.suffix!r}; "
                        "expected .toml, .yaml/.yml, .xml, .json or .qca.txt")
    text = _read_text(path)
    # cv2.FileStorage writes "%YAML:1.0" (OpenCV 4) or "%YAML 1.2" + "!!opencv-matrix" tags (OpenCV 5);
    # PyYAML cannot parse either.
    if text.lstrip().startswith("%YAML:") or "!!opencv-" in text:
        return load_opencv_rig(path)
    data = _parse_yaml(text, path)
    if isinstance(data, dict) and "cameras" in data:
        return _rig_from_rig_yaml(data, path)
    if isinstance(data, dict) and "camera_matrix" in data:
        fail(str(path), "this is a ROS camera_info file of one camera (intrinsics only); a rig also "
                        "needs extrinsics. Write an hpe_ros rig YAML that points to it: "
                        f"cameras: [{{name: ..., camera_info: {path.name}, "
                        "extrinsics: {rotation: [rx, ry, rz], translation: [x, y, z]}}]")
    if isinstance(data, dict) and any(_looks_like_opencv_camera(v) for v in [data, *data.values()]):
        return load_opencv_rig(path)  # OpenCV layout written by hand, without the header
    fail(str(path), "unrecognised calibration YAML: expected an hpe_ros rig YAML (a 'cameras' list) "
                    "or an OpenCV FileStorage file (one map per camera holding K, dist, R, T, image_size)")


def save_rig(rig: Rig, path: str | os.PathLike) -> None:
    """Save `rig` in the format named by the extension: .toml (Pose2Sim), .yaml/.yml (rig YAML) or
    .xml/.json (OpenCV FileStorage)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".toml":
        save_toml_rig(rig, path)
    elif suffix in (".yaml", ".yml"):
        save_rig_yaml(rig, path)
    elif suffix in (".xml", ".json"):
        save_opencv_rig(rig, path)
    else:
        fail(str(path), f"cannot save a rig as {Path(path).suffix!r}; use .toml, .yaml, .xml or .json")


CONVERSION_TARGETS = ("auto", "toml", "rig-yaml", "opencv", "camera-info")


def convert_calibration(src: str | os.PathLike, dst: str | os.PathLike, to: str = "auto") -> Rig:
    """Read any calibration file `src` (see `load_rig`, validated) and write it to `dst`. Returns the rig.

    to: "toml" (anipose/Pose2Sim), "rig-yaml" (hpe_ros rig YAML, camera_info inline), "opencv"
    (cv2.FileStorage; YAML unless dst ends in .xml or .json), "camera-info" (dst is a folder: one ROS
    camera_info YAML per camera + rig.yaml, see `save_camera_info_dir`), or "auto": by dst's suffix,
    .toml -> toml, .yaml/.yml -> rig-yaml, .xml/.json -> opencv, no suffix -> camera-info.
    Every target round-trips exactly (the same numbers come back). Nothing is written when `src`
    is invalid (CalibrationError naming file, camera and field).
    """
    if to not in CONVERSION_TARGETS:
        fail("", f"unknown conversion target {to!r}; expected one of {list(CONVERSION_TARGETS)}")
    rig = load_rig(src)
    dst = Path(dst)
    if to == "auto":
        suffix = dst.suffix.lower()
        if suffix == ".toml":
            to = "toml"
        elif suffix in (".yaml", ".yml"):
            to = "rig-yaml"
        elif suffix in (".xml", ".json"):
            to = "opencv"
        elif suffix == "" or dst.is_dir():
            to = "camera-info"
        else:
            fail(str(dst), f"cannot tell the format from {dst.suffix!r}; use .toml, .yaml, .xml, .json, "
                           "a folder, or say which with to=")
    if to == "toml":
        save_toml_rig(rig, dst)
    elif to == "rig-yaml":
        save_rig_yaml(rig, dst)
    elif to == "opencv":
        save_opencv_rig(rig, dst)
    else:
        save_camera_info_dir(rig, dst)
    return rig


# --- anipose / Pose2Sim TOML ------------------------------------------------------------------------
def load_toml_rig(path: str | os.PathLike) -> Rig:
    """Read an anipose/Pose2Sim calibration TOML -> Rig (cameras in file order)."""
    path = Path(path)
    text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(str(path), f"not a valid TOML file: {e}")
    cameras = []
    for key, table in data.items():
        if not isinstance(table, dict) or not any(k in table for k in _TOML_CAMERA_KEYS):
            continue
        name = table.get("name", key)
        at = where(path, name)
        if not isinstance(name, str) or not name:
            fail(at, f"name must be a non-empty string, got {name!r}")
        for k in _TOML_CAMERA_KEYS:
            if k not in table:
                fail(at, f"missing key {k!r} (table [{key}])")
        if table.get("fisheye", False) is not False:
            fail(at, "fisheye = true: fisheye (equidistant) cameras are not supported yet")
        frame_id = table.get("frame_id", "")
        if not isinstance(frame_id, str):
            fail(at, f"frame_id must be a string, got {frame_id!r}")
        cameras.append(_make_camera(
            at, path, name,
            K=check_intrinsics(table["matrix"], at, "matrix"),
            dist=check_distortion(table["distortions"], at, "distortions"),
            R=check_rotation(table["rotation"], at, "rotation"),
            t=check_translation(table["translation"], at, "translation"),
            size=check_size(table["size"], at, "size"),
            frame_id=frame_id,
        ))
    return _make_rig(cameras, path)


def save_toml_rig(rig: Rig, path: str | os.PathLike) -> None:
    """Write `rig` as an anipose/Pose2Sim TOML, full float precision, atomically.

    Rotations are stored as Rodrigues vectors chosen so that reading the file back gives the same
    R bit for bit (see `_exact_rvec`).
    """
    _validate_rig(rig, path)
    blocks, used = [], {"metadata"}
    for i, cam in enumerate(rig):
        key = cam.name if _BARE_TOML_KEY.fullmatch(cam.name) and cam.name not in used else None
        key = key or next(f"cam_{n}" for n in itertools.count(i + 1) if f"cam_{n}" not in used)
        used.add(key)
        lines = [
            f"[{key}]",
            f"name = {_toml_value(cam.name)}",
            f"size = {_toml_value(list(cam.size))}",
            f"matrix = {_toml_value(cam.K.tolist())}",
            f"distortions = {_toml_value(_trim_distortion(cam.dist).tolist())}",
            f"rotation = {_toml_value(_exact_rvec(cam.R).tolist())}",
            f"translation = {_toml_value(cam.t.tolist())}",
            "fisheye = false",
        ]
        if cam.frame_id != f"{cam.name}_optical_frame":
            lines.append(f"frame_id = {_toml_value(cam.frame_id)}")
        blocks.append("\n".join(lines))
    blocks.append("[metadata]\nadjusted = false\nerror = 0.0")
    _write_atomically(path, "\n\n".join(blocks) + "\n")


def _toml_value(value) -> str:
    """The few TOML values a calibration needs: bool, int, float (repr: exact), str, nested lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else ("nan" if np.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _trim_distortion(dist: np.ndarray) -> np.ndarray:
    """(8,) -> the shortest OpenCV form that keeps every non-zero term: 4, 5 or 8 coefficients."""
    if np.any(dist[5:]):
        return dist[:8]
    return dist[:5] if dist[4] != 0 else dist[:4]


def _exact_rvec(R: np.ndarray, radius: int = 2) -> np.ndarray:
    """Rodrigues vector (3,) for R (3, 3), chosen so that `rodrigues(rvec)` equals R bit for bit.

    rotation_to_rvec alone is only accurate to ~1e-16, so TOML -> Rig -> TOML -> Rig would drift in
    the last bit. Newton steps on the float residual bring the vector to the ulp, then a search of
    the neighbouring floats (up to `radius` ulps per component) finds one that reproduces R. R that
    did not come from a Rodrigues vector (e.g. look_at) has no exact vector; the refined one is
    returned (error ~1e-16).
    """
    rvec = rotation_to_rvec(R)
    for _ in range(3):
        residual = (R - rodrigues(rvec)).ravel()
        if not residual.any():
            return rvec
        h = 1e-7
        jacobian = np.stack([(rodrigues(rvec + h * e) - rodrigues(rvec - h * e)).ravel() / (2 * h)
                             for e in np.eye(3)], axis=1)  # (9, 3)
        rvec = rvec + np.linalg.lstsq(jacobian, residual, rcond=None)[0]
    steps = sorted(itertools.product(range(-radius, radius + 1), repeat=3), key=lambda s: sum(map(abs, s)))
    for step in steps:
        candidate = np.array([_ulp_step(x, k) for x, k in zip(rvec, step)])
        if np.array_equal(rodrigues(candidate), R):
            return candidate
    return rvec


def _ulp_step(x: float, k: int) -> float:
    for _ in range(abs(k)):
        x = np.nextafter(x, np.inf if k > 0 else -np.inf)
    return float(x)


# --- ROS camera_info YAML ---------------------------------------------------------------------------
_DISTORTION_MODELS = {"plumb_bob": (0, 4, 5), "rational_polynomial": (0, 5, 8)}
_FISHEYE_MODELS = ("equidistant", "fisheye", "kannala_brandt")


def load_camera_info_yaml(path_or_dict, source: str = "", name: str | None = None) -> dict:
    """ROS camera_info YAML (a path, or its content as a dict) -> dict(name, K (3, 3), dist (n,), size (w, h)).

    Reads `image_width`, `image_height`, `camera_name`, `camera_matrix` and
    `distortion_coefficients` ({rows, cols, data}; a plain list is also accepted) and
    `distortion_model` (plumb_bob or rational_polynomial). Rectification and projection matrices
    are ignored. `source` names the data in messages when a dict is given; `name` overrides
    `camera_name` (a rig YAML names its cameras itself).
    """
    if isinstance(path_or_dict, dict):
        data, source = path_or_dict, source or "camera_info"
        default_name = None
    else:
        path = Path(path_or_dict)
        source = source or str(path)
        data = _parse_yaml(_read_text(path), path)
        default_name = path.stem
        if not isinstance(data, dict):
            fail(source, f"a camera_info YAML must be a mapping of keys, got {type(data).__name__}")
    name = name or data.get("camera_name") or default_name
    at = where(source, name)
    if not isinstance(name, str) or not name:
        fail(at, "missing key 'camera_name'")
    for key in ("image_width", "image_height", "camera_matrix", "distortion_coefficients"):
        if key not in data:
            fail(at, f"missing key {key!r}")
    model = data.get("distortion_model", "plumb_bob")
    if model in _FISHEYE_MODELS:
        fail(at, f"distortion_model {model!r} (fisheye) is not supported yet; "
                 "use plumb_bob or rational_polynomial")
    if model not in _DISTORTION_MODELS:
        fail(at, f"unknown distortion_model {model!r}; expected one of {sorted(_DISTORTION_MODELS)}")
    return {
        "name": name,
        "K": check_intrinsics(_ros_matrix(data["camera_matrix"], at, "camera_matrix"), at, "camera_matrix"),
        "dist": check_distortion(_ros_matrix(data["distortion_coefficients"], at, "distortion_coefficients"),
                                 at, f"distortion_coefficients ({model})", lengths=_DISTORTION_MODELS[model]),
        "size": check_size([data["image_width"], data["image_height"]], at, "image_width/image_height"),
    }


def save_camera_info_yaml(camera: Camera, path: str | os.PathLike) -> None:
    """Write one camera's intrinsics as a ROS camera_info YAML (camera_info_manager can load it).

    plumb_bob (5 coefficients) unless k4..k6 are used, then rational_polynomial (8). Rectification is
    identity and the projection matrix is [K | 0] (a monocular camera, no rectified image).
    """
    validate_camera(camera, path)
    yaml_text = yaml.safe_dump(_camera_info_dict(camera), sort_keys=False, default_flow_style=None, width=1000)
    _write_atomically(path, yaml_text)


def _camera_info_dict(camera: Camera) -> dict:
    rational = bool(np.any(camera.dist[5:]))
    dist = camera.dist[:8] if rational else camera.dist[:5]

    def matrix(values: np.ndarray) -> dict:
        rows, cols = (1, values.size) if values.ndim == 1 else values.shape
        return {"rows": rows, "cols": cols, "data": [float(v) for v in values.ravel()]}

    return {
        "image_width": camera.size[0],
        "image_height": camera.size[1],
        "camera_name": camera.name,
        "camera_matrix": matrix(camera.K),
        "distortion_model": "rational_polynomial" if rational else "plumb_bob",
        "distortion_coefficients": matrix(dist),
        "rectification_matrix": matrix(np.eye(3)),
        "projection_matrix": matrix(np.concatenate([camera.K, np.zeros((3, 1))], axis=1)),
    }


def _ros_matrix(value, at: str, field: str):
    """{rows, cols, data} -> flat data list (checked against rows x cols); a plain list passes through."""
    if not isinstance(value, dict):
        return value
    if "data" not in value:
        fail(at, f"{field}: missing key 'data'")
    data = value["data"] if value["data"] is not None else []
    rows, cols = value.get("rows"), value.get("cols")
    if isinstance(data, list) and isinstance(rows, int) and isinstance(cols, int) and rows * cols != len(data):
        fail(at, f"{field}: rows x cols = {rows}x{cols} but data has {len(data)} values")
    return data


# --- hpe_ros rig YAML -------------------------------------------------------------------------------
def load_rig_yaml(path: str | os.PathLike) -> Rig:
    """Read an hpe_ros rig YAML (camera_info per camera + extrinsics) -> Rig."""
    path = Path(path)
    data = _parse_yaml(_read_text(path), path)
    if not isinstance(data, dict) or "cameras" not in data:
        fail(str(path), "missing key 'cameras' (a list of {name, camera_info, extrinsics})")
    return _rig_from_rig_yaml(data, path)


def save_rig_yaml(rig: Rig, path: str | os.PathLike) -> None:
    """Write `rig` as an hpe_ros rig YAML with camera_info inline and R as a 3x3 matrix (exact)."""
    _validate_rig(rig, path)
    _write_atomically(path, _rig_yaml_text(rig))


def save_camera_info_dir(rig: Rig, folder: str | os.PathLike, rig_file: str = "rig.yaml") -> Path:
    """Write one ROS camera_info YAML per camera (``<name>.yaml``, what camera_info_manager loads) and
    the extrinsics as an hpe_ros rig YAML (`rig_file`) that refers to them, in `folder` (created if
    missing). `load_rig(folder / rig_file)` reads the same rig back. Every camera is validated before
    anything is written; each file is written atomically, the rig file last. Returns the rig file's path.
    """
    folder = Path(folder)
    _validate_rig(rig, folder / rig_file)
    if folder.exists() and not folder.is_dir():
        fail(str(folder), "not a folder")
    files, used = [], {rig_file.lower()}
    for cam in rig:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", cam.name).strip(".") or "camera"
        name = f"{stem}.yaml"
        n = 1
        while name.lower() in used:
            n += 1
            name = f"{stem}_{n}.yaml"
        used.add(name.lower())
        files.append(name)
    folder.mkdir(parents=True, exist_ok=True)
    for cam, name in zip(rig, files):
        save_camera_info_yaml(cam, folder / name)
    _write_atomically(folder / rig_file, _rig_yaml_text(rig, files))
    return folder / rig_file


def _rig_yaml_text(rig: Rig, camera_info_files: Sequence[str] | None = None) -> str:
    """Rig YAML: camera_info inline, or the given file names (relative to the rig file)."""
    cameras = []
    for i, cam in enumerate(rig):
        if camera_info_files is None:
            info = _camera_info_dict(cam)
            for unused in ("rectification_matrix", "projection_matrix"):
                del info[unused]
        else:
            info = camera_info_files[i]
        cameras.append({
            "name": cam.name,
            "frame_id": cam.frame_id,
            "camera_info": info,
            "extrinsics": {"rotation": cam.R.tolist(), "translation": cam.t.tolist()},
        })
    return yaml.safe_dump({"cameras": cameras}, sort_keys=False, default_flow_style=None, width=1000)


def _rig_from_rig_yaml(data: dict, path: Path) -> Rig:
    entries = data["cameras"]
    if not isinstance(entries, list) or not entries:
        fail(str(path), "'cameras' must be a non-empty list of {name, camera_info, extrinsics}")
    cameras = []
    for i, entry in enumerate(entries):
        label = entry.get("name", f"#{i}") if isinstance(entry, dict) else f"#{i}"
        at = where(path, label)
        if not isinstance(entry, dict):
            fail(at, f"each camera must be a mapping, got {type(entry).__name__}")
        for key in ("camera_info", "extrinsics"):
            if key not in entry:
                fail(at, f"missing key {key!r}")
        info_ref = entry["camera_info"]
        if isinstance(info_ref, str):
            info = load_camera_info_yaml(path.parent / info_ref, name=entry.get("name"))
        elif isinstance(info_ref, dict):
            info = load_camera_info_yaml(info_ref, source=f"{path} (inline camera_info)", name=entry.get("name"))
        else:
            fail(at, "camera_info must be a file path or a camera_info mapping")
        name = info["name"]
        at = where(path, name)
        extrinsics = entry["extrinsics"]
        if not isinstance(extrinsics, dict):
            fail(at, "extrinsics must be a mapping {rotation, translation}")
        for key in ("rotation", "translation"):
            if key not in extrinsics:
                fail(at, f"missing key 'extrinsics.{key}'")
        cameras.append(_make_camera(
            at, path, name, K=info["K"], dist=info["dist"], size=info["size"],
            R=check_rotation(extrinsics["rotation"], at, "extrinsics.rotation"),
            t=check_translation(extrinsics["translation"], at, "extrinsics.translation"),
            frame_id=entry.get("frame_id", ""),
        ))
    return _make_rig(cameras, path)


# --- OpenCV FileStorage ------------------------------------------------------------------------------
_CV_KEYS = {
    "K": ("K", "camera_matrix", "cameraMatrix"),
    "dist": ("dist", "distortion_coefficients", "dist_coeffs", "distCoeffs", "D"),
    "R": ("R", "rvec", "rotation"),
    "t": ("T", "tvec", "t", "translation"),
}


def load_opencv_rig(path: str | os.PathLike) -> Rig:
    """Read an OpenCV FileStorage file (YAML / XML / JSON written by cv2.FileStorage) -> Rig."""
    import cv2

    path = Path(path)
    _read_text(path)  # clear messages for a missing or empty file
    try:
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as e:  # parse errors surface as SystemError in some cv2 builds
        cause = e.__cause__ or e
        fail(str(path), f"not a readable OpenCV FileStorage file: {str(cause).strip().splitlines()[-1]}")
    if not storage.isOpened():
        fail(str(path), "not a readable OpenCV FileStorage file")
    try:
        root = storage.root()
        if _cv_is_camera(root):
            name = _cv_value(root.getNode("name")) or path.stem
            nodes = [(str(name), root)]
        else:
            nodes = []
            for key in root.keys():
                node = root.getNode(key)
                if _cv_is_camera(node):
                    inner = _cv_value(node.getNode("name"))
                    nodes.append((inner if isinstance(inner, str) and inner else key, node))
        if not nodes:
            fail(str(path), "no cameras found: expected one map per camera holding K (or camera_matrix)")
        cameras = [_camera_from_cv_node(name, node, path) for name, node in nodes]
    finally:
        storage.release()
    return _make_rig(cameras, path)


def _looks_like_opencv_camera(value) -> bool:
    return isinstance(value, dict) and any(k in value for k in _CV_KEYS["K"])


def _cv_is_camera(node) -> bool:
    return node.isMap() and any(not node.getNode(k).empty() for k in _CV_KEYS["K"])


def _cv_value(node):
    """FileNode -> numpy array (matrices), nested list (sequences), float, str, or None when absent."""
    import cv2

    if node.empty() or node.isNone():
        return None
    if node.isString():
        return node.string()
    if node.isInt() or node.isReal():
        return node.real()
    if node.isSeq():
        return [_cv_value(node.at(i)) for i in range(node.size())]
    try:
        return node.mat()  # an !!opencv-matrix map; None for other maps
    except cv2.error:
        return None


def _camera_from_cv_node(name: str, node, path: Path) -> Camera:
    at = where(path, name)
    found = {}
    for field, keys in _CV_KEYS.items():
        key = next((k for k in keys if not node.getNode(k).empty()), None)
        if key is None:
            fail(at, f"missing key {' or '.join(map(repr, keys))}")
        found[field] = (key, _cv_value(node.getNode(key)))
    if not node.getNode("image_size").empty():
        size_field, size = "image_size", _cv_value(node.getNode("image_size"))
        size = np.asarray(size).ravel().tolist() if isinstance(size, np.ndarray) else size
    elif not node.getNode("image_width").empty() and not node.getNode("image_height").empty():
        size_field = "image_width/image_height"
        size = [_cv_value(node.getNode("image_width")), _cv_value(node.getNode("image_height"))]
    else:
        fail(at, "missing key 'image_size' (or 'image_width' and 'image_height')")
    frame_id = _cv_value(node.getNode("frame_id")) or ""
    return _make_camera(
        at, path, name,
        K=check_intrinsics(found["K"][1], at, found["K"][0]),
        dist=check_distortion(found["dist"][1], at, found["dist"][0]),
        R=check_rotation(found["R"][1], at, found["R"][0]),
        t=check_translation(found["t"][1], at, found["t"][0]),
        size=check_size(size, at, size_field),
        frame_id=frame_id,
    )


_CV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_CV_FORMATS = {".xml": "FORMAT_XML", ".json": "FORMAT_JSON"}


def save_opencv_rig(rig: Rig, path: str | os.PathLike) -> None:
    """Write `rig` as an OpenCV FileStorage file that `load_opencv_rig` (and OpenCV programs) read.

    One map per camera, keyed by its name (``cam_<i>`` when the name is not a valid FileStorage key),
    holding ``name``, ``K`` (3x3), ``dist`` (1xN, 4, 5 or 8 coefficients), ``R`` (3x3, world->camera),
    ``T`` (3x1, metres), ``image_width``, ``image_height`` and ``frame_id``. YAML unless `path` ends in
    .xml or .json. Doubles carry 17 significant digits, so reading the file back gives the same
    numbers. Validated first, written atomically.
    """
    import cv2

    path = Path(path)
    _validate_rig(rig, path)
    fmt = getattr(cv2, f"FILE_STORAGE_{_CV_FORMATS.get(path.suffix.lower(), 'FORMAT_YAML')}")
    storage = cv2.FileStorage(path.name, cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY | fmt)
    used = set()
    for i, cam in enumerate(rig):
        key = cam.name if _CV_KEY.fullmatch(cam.name) and cam.name not in used else None
        key = key or next(f"cam_{n}" for n in itertools.count(i) if f"cam_{n}" not in used)
        used.add(key)
        storage.startWriteStruct(key, cv2.FILE_NODE_MAP)
        storage.write("name", cam.name)
        storage.write("K", cam.K)
        storage.write("dist", _trim_distortion(cam.dist)[None, :])
        storage.write("R", cam.R)
        storage.write("T", cam.t[:, None])
        storage.write("image_width", int(cam.size[0]))
        storage.write("image_height", int(cam.size[1]))
        storage.write("frame_id", cam.frame_id)
        storage.endWriteStruct()
    _write_atomically(path, storage.releaseAndGetString())


# --- rigs from live data ----------------------------------------------------------------------------
def rig_from_camera_infos(infos: Sequence[dict], extrinsics: Sequence[tuple], names: Sequence[str] | None = None,
                          source: str = "camera_info") -> Rig:
    """Rig from intrinsics dicts + extrinsics, e.g. live CameraInfo messages + TF or a config.

    infos: per camera dict(K (3, 3) or 9 values row-major, dist (n,), size (w, h), optional name,
    distortion_model, frame_id) -- `load_camera_info_yaml`'s output, or a CameraInfo message as
    dict(K=msg.k, dist=msg.d, size=(msg.width, msg.height), distortion_model=msg.distortion_model,
    frame_id=msg.header.frame_id). extrinsics: per camera (R (3, 3) or Rodrigues (3,), t (3,)),
    world->camera. names: overrides the names in `infos` (default name: cam<i>).
    """
    if len(infos) != len(extrinsics):
        fail(source, f"got {len(infos)} camera infos but {len(extrinsics)} extrinsics")
    if names is not None and len(names) != len(infos):
        fail(source, f"got {len(infos)} camera infos but {len(names)} names")
    cameras = []
    for i, (info, pose) in enumerate(zip(infos, extrinsics)):
        name = names[i] if names is not None else (info.get("name") or f"cam{i}")
        at = where(source, name)
        for key in ("K", "dist", "size"):
            if key not in info:
                fail(at, f"missing key {key!r}")
        model = info.get("distortion_model") or "plumb_bob"
        if model in _FISHEYE_MODELS:
            fail(at, f"distortion_model {model!r} (fisheye) is not supported yet")
        if model not in _DISTORTION_MODELS:
            fail(at, f"unknown distortion_model {model!r}; expected one of {sorted(_DISTORTION_MODELS)}")
        if not isinstance(pose, (tuple, list)) or len(pose) != 2:
            fail(at, "extrinsics must be a pair (R, t)")
        cameras.append(_make_camera(
            at, source, name,
            K=check_intrinsics(info["K"], at, "K"),
            dist=check_distortion(info["dist"], at, "dist"),
            R=check_rotation(pose[0], at, "R"),
            t=check_translation(pose[1], at, "t"),
            size=check_size(info["size"], at, "size"),
            frame_id=info.get("frame_id") or "",
        ))
    return _make_rig(cameras, source)


# --- shared helpers ---------------------------------------------------------------------------------
def _make_camera(at: str, source, name: str, *, K, dist, R, t, size, frame_id: str = "") -> Camera:
    if not isinstance(frame_id, str):
        fail(at, f"frame_id must be a string, got {frame_id!r}")
    camera = Camera(name=name, K=K, dist=dist, R=R, t=t, size=size, frame_id=frame_id)
    validate_camera(camera, source)
    return camera


def _make_rig(cameras: list[Camera], source) -> Rig:
    if not cameras:
        fail(str(source), "no cameras found")
    names = [c.name for c in cameras]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        fail(str(source), f"camera names must be unique; repeated: {duplicates}")
    return Rig(cameras)


def _validate_rig(rig: Rig, path) -> None:
    if len(rig) == 0:
        fail(str(path), "refusing to save a rig with no cameras")
    for camera in rig:
        validate_camera(camera, path)


def _read_text(path: Path) -> str:
    if not path.exists():
        fail(str(path), "calibration file not found")
    if not path.is_file():
        fail(str(path), "not a file")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")  # a byte order mark, as Windows editors write, is accepted
    except UnicodeDecodeError as e:
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
        fail(str(path), "a UTF-16 text file; save it as UTF-8" if utf16 else
             f"not a text file (invalid UTF-8 at byte {e.start})")
    except OSError as e:
        fail(str(path), f"cannot read: {e.strerror}")
    if not text.strip():
        fail(str(path), "file is empty")
    return text


def _parse_yaml(text: str, path: Path):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        fail(str(path), f"not a valid YAML file: {str(e).splitlines()[0]}")


def _write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` beside `path`, then rename it over `path` (never half-written)."""
    if not Path(path).parent.is_dir():
        fail(str(path), f"folder {str(Path(path).parent)!r} does not exist")
    write_text_atomic(path, text)


__all__ = [
    "CalibrationError", "CONVERSION_TARGETS", "convert_calibration", "load_rig", "save_rig",
    "load_toml_rig", "save_toml_rig", "load_camera_info_yaml", "save_camera_info_yaml", "load_rig_yaml",
    "save_rig_yaml", "save_camera_info_dir", "load_opencv_rig", "save_opencv_rig", "rig_from_camera_infos",
]
