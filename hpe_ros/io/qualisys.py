"""Qualisys calibration exports (``.qca.txt``, XML) -> Rig.

One ``<camera>`` per camera under ``<calibration><cameras>``::

    <camera active="1" serial="cam01" model="none" viewrotation="0" [video_resolution="1080p"]>
      <fov_video left="0" top="0" right="1087" bottom="1919"/>
      <transform x=".." y=".." z=".." r11=".." ... r33=".."/>
      <intrinsic focalLengthU=".." focalLengthV=".." centerPointU=".." centerPointV=".."
                 radialDistortion1..3=".." tangentalDistortion1..2=".." skew=".." .../>
    </camera>

Units and frames, as QTM writes them:

* focal lengths and principal point are in sensor "subpixels", 1/64 px, on the full sensor;
  ``fov_video`` is the sensor region (inclusive, sensor px) the video covers, so the principal point
  moves by its ``left``/``top``, and the image size is its extent. A ``video_resolution`` ("540p")
  much smaller than that extent means a binned / scaled video: K scales by the ratio. A few pixels
  less (a 1080-line video of a 1088-line region) is a crop, which QTM already reports in ``fov_video``.
* ``transform`` is the camera in the world: position in mm, and a rotation matrix whose rows
  (r11 r12 r13, ...) are the camera's x, y, z axes in world coordinates. The Qualisys camera looks down
  its -z axis with y up, so the OpenCV optical frame is that frame turned by pi about x:
  ``R = diag(1, -1, -1) M``, ``t = -R p``.
* distortion coefficients are OpenCV's (k1, k2, p1, p2, k3) as they stand, not divided by 64 (a
  Pose2Sim converter did so): on the Pose2Sim demo's own checkerboard images the corners undistort
  straighter with the stored values (0.12 px RMS off their lines vs 0.14 with /64 or none), and a fresh
  OpenCV calibration of those images gives k1 = -0.05, k2 = 0.15 against the file's -0.046, 0.14.

The result is in the sensor's orientation; ``viewrotation`` (how QTM shows a rotated camera) is
ignored. By default only video cameras are kept (``model`` names a video camera or is "none"; marker
cameras film infrared dots, not people), and inactive ones are skipped.

Readers tolerate the export's quirks: a byte-order mark, an XML declaration naming an encoding the
bytes do not follow, bare ``&`` in attribute values, decimal commas, attribute names in another case,
text after the closing tag. Anything else broken raises CalibrationError with one line naming the
file, camera and field.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from hpe_ros.camera import Camera, Rig
from hpe_ros.io.calibration_validate import (
    check_distortion,
    check_intrinsics,
    check_rotation,
    check_size,
    fail,
    validate_camera,
    where,
)

SUBPIXELS_PER_PIXEL = 64.0
QUALISYS_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])  # Qualisys camera frame (-z forward, y up) -> OpenCV
_BINNING_THRESHOLD = 0.02  # a video extent this close to the sensor region is a crop, not a rescale
_BARE_AMPERSAND = re.compile(r"&(?!(?:[A-Za-z]+|#[0-9]+|#x[0-9A-Fa-f]+);)")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_RESOLUTION = re.compile(r"^\s*(\d+)\s*p?\s*$", re.IGNORECASE)


def load_qualisys_rig(path: str | os.PathLike, video_only: bool = True) -> Rig:
    """Read a Qualisys ``.qca.txt`` calibration into a Rig (cameras named by their serial)."""
    path = Path(path)
    if not path.is_file():
        fail(str(path), "calibration file not found" if not path.exists() else "not a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        fail(str(path), f"cannot read: {e.strerror}")
    return parse_qualisys(data, source=str(path), video_only=video_only)


def parse_qualisys(data: bytes | str, source: str = "", video_only: bool = True) -> Rig:
    """Parse the text (or bytes) of a ``.qca.txt`` file; `source` names it in error messages."""
    root = _parse_xml(data, source)
    elements = root.findall("cameras/camera")
    if not elements:
        fail(source, "not a Qualisys calibration: no <cameras><camera> elements under <calibration>")
    cameras, skipped_models = [], []
    for index, element in enumerate(elements):
        attrs = _attributes(element)
        name = attrs.get("serial") or f"camera{index + 1}"
        if attrs.get("active", "1").strip() == "0":
            continue
        model = attrs.get("model", "none")
        if video_only and not _is_video_model(model):
            skipped_models.append(model)
            continue
        cameras.append(_camera(element, name, source))
    if not cameras:
        detail = f"; marker-camera models: {sorted(set(skipped_models))} (pass video_only=False to keep them)" \
            if skipped_models else ""
        fail(source, f"no active video cameras{detail}")
    names = [c.name for c in cameras]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        fail(source, f"camera serials must be unique; repeated: {repeated}")
    return Rig(cameras)


def qualisys_pose_to_extrinsics(rotation: np.ndarray, position_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Qualisys camera pose (rotation (3, 3): rows = camera axes in the world; position (3,) mm) ->
    world->camera R (3, 3), t (3,) m for the OpenCV optical frame."""
    R = QUALISYS_TO_OPTICAL @ np.asarray(rotation, dtype=np.float64)
    return R, -R @ (np.asarray(position_mm, dtype=np.float64) / 1000.0)


# --- one camera -------------------------------------------------------------------------------------
def _camera(element: ET.Element, name: str, source: str) -> Camera:
    at = where(source, name)
    fov = _child(element, "fov_video", at, required=False)
    if fov is None:  # not `or`: an element without children is falsy
        fov = _child(element, "fov_marker", at)
    left, top, right, bottom = (_number(fov, key, at) for key in ("left", "top", "right", "bottom"))
    extent = (right - left + 1.0, bottom - top + 1.0)
    scale = _video_scale(_attributes(element).get("video_resolution"), extent, at)
    size = check_size([round(extent[0] * scale), round(extent[1] * scale)], at, "fov_video")

    intrinsic = _child(element, "intrinsic", at)
    fu, fv, cu, cv = (_number(intrinsic, key, at) / SUBPIXELS_PER_PIXEL
                      for key in ("focalLengthU", "focalLengthV", "centerPointU", "centerPointV"))
    skew = _number(intrinsic, "skew", at, default=0.0) / SUBPIXELS_PER_PIXEL
    K = check_intrinsics([[fu * scale, skew * scale, (cu - left) * scale],
                          [0.0, fv * scale, (cv - top) * scale], [0.0, 0.0, 1.0]], at, "intrinsic")
    dist = check_distortion([_number(intrinsic, key, at, default=0.0) for key in (
        "radialDistortion1", "radialDistortion2", "tangentalDistortion1", "tangentalDistortion2",
        "radialDistortion3")], at, "intrinsic distortion")

    transform = _child(element, "transform", at)
    rotation = check_rotation([[_number(transform, f"r{i}{j}", at) for j in "123"] for i in "123"],
                              at, "transform rotation", allow_rvec=False)
    u, _, vt = np.linalg.svd(rotation)  # drop the print rounding: an exact rotation
    position = np.array([_number(transform, key, at) for key in "xyz"])
    R, t = qualisys_pose_to_extrinsics(u @ vt, position)
    camera = Camera(name=name, K=K, dist=dist, R=R, t=t, size=size)
    validate_camera(camera, source)
    return camera


def _video_scale(resolution: str | None, extent: tuple[float, float], at: str) -> float:
    """Pixels of the video per sensor pixel: "540p" of a 1080-line region is 0.5; absent or "N/A" is 1."""
    if resolution is None or resolution.strip().upper() in ("", "N/A", "NONE"):
        return 1.0
    match = _RESOLUTION.match(resolution)
    if not match or int(match.group(1)) <= 0:
        fail(at, f"video_resolution must look like '1080p', got {resolution!r}")
    scale = int(match.group(1)) / min(extent)
    return 1.0 if abs(scale - 1.0) <= _BINNING_THRESHOLD else scale


def _is_video_model(model: str) -> bool:
    model = model.strip().lower()
    return model in ("", "none") or "video" in model


# --- tolerant XML access ----------------------------------------------------------------------------
def _parse_xml(data: bytes | str, source: str) -> ET.Element:
    if isinstance(data, bytes):
        data = data.removeprefix(b"\xef\xbb\xbf")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")  # QTM on Windows writes the local code page
    else:
        text = data.removeprefix("\ufeff")
    if not text.strip():
        fail(source, "file is empty")
    # The declaration's encoding may not match the bytes (it says ASCII, paths hold accents): drop it.
    text = _XML_DECLARATION.sub("", text, count=1)
    end = text.rfind("</calibration>")
    if end >= 0:
        text = text[: end + len("</calibration>")]
    text = _BARE_AMPERSAND.sub("&amp;", text)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        line, column = e.position
        fail(source, f"not a valid Qualisys XML file (line {line}, column {column}: {str(e).split(':')[0]})")
    if root.tag.lower() != "calibration":
        fail(source, f"not a Qualisys calibration: root element is <{root.tag}>, expected <calibration>")
    return root


def _attributes(element: ET.Element) -> dict[str, str]:
    return {key.lower(): value for key, value in element.attrib.items()}


def _child(element: ET.Element, tag: str, at: str, required: bool = True) -> ET.Element | None:
    for child in element:
        if child.tag.lower() == tag.lower():
            return child
    if required:
        fail(at, f"missing <{tag}> element")
    return None


def _number(element: ET.Element, key: str, at: str, default: float | None = None) -> float:
    value = _attributes(element).get(key.lower())
    if value is None:
        if default is None:
            fail(at, f"<{element.tag}> lacks attribute {key}")
        return default
    text = value.strip()
    if "," in text and "." not in text:
        text = text.replace(",", ".")  # decimal comma from a localised export
    try:
        number = float(text)
    except ValueError:
        fail(at, f"<{element.tag}> {key} must be a number, got {value!r}")
    if not np.isfinite(number):
        fail(at, f"<{element.tag}> {key} must be finite, got {value!r}")
    return number


__all__ = ["load_qualisys_rig", "parse_qualisys", "qualisys_pose_to_extrinsics"]
