"""Checks that calibration values are well formed and physically possible.

The calibration file readers (`hpe_ros.io.calibration`, `hpe_ros.io.qualisys`) check every value they
read with these; the estimators (`hpe_ros.calibration`) check the cameras they produce with
`validate_camera`.

Every check takes `where` (e.g. "calib.toml: camera 'cam2'") and the field's name as the file spells
it (e.g. "matrix" in a TOML file, "camera_matrix" in a camera_info YAML), so that an error says which
file, camera and field to fix:

    calib.toml: camera 'cam2': rotation is not a proper rotation (det=-1.00)

The `check_*` functions take raw values (lists from a parser, numpy arrays) and return clean numpy
arrays; `validate_camera` re-checks a built `Camera`.
"""
from __future__ import annotations

import math

import numpy as np

from hpe_ros.camera import Camera, rodrigues

# Rotation matrices read from files carry print-rounding noise: a matrix written with six decimals
# is off by up to ~5e-7 per entry, so R R^T can miss I by a few 1e-6. Anything beyond this is a
# wrong matrix (scaled, sheared, transposed half-way), not noise.
ORTHONORMAL_TOLERANCE = 1e-5

# OpenCV distortion vector lengths: none, (k1 k2 p1 p2), + k3, + k4 k5 k6 (rational model).
DISTORTION_LENGTHS = (0, 4, 5, 8)


class CalibrationError(ValueError):
    """A calibration file or camera is missing, malformed or physically impossible."""


def where(source: object = "", camera: object = None) -> str:
    """Message prefix naming the file and camera, e.g. "calib.toml: camera 'cam2'"."""
    parts = [str(source)] if source not in ("", None) else []
    if camera is not None:
        parts.append(f"camera {str(camera)!r}")
    return ": ".join(parts)


def fail(at: str, message: str) -> None:
    """Raise a CalibrationError prefixed with `at` (file and camera)."""
    raise CalibrationError(f"{at}: {message}" if at else message)


def as_floats(value, at: str, field: str) -> np.ndarray:
    """Any nested list of numbers -> float64 array; refuses strings, ragged lists, booleans."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        fail(at, f"{field} must be numbers, got {_short(value)}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(at, f"{field} must be numbers (a list or matrix of numbers), got {_short(value)}")
    return array


def check_intrinsics(K, at: str, field: str = "K") -> np.ndarray:
    """Camera matrix, 3x3 (or 9 values row-major, as in sensor_msgs/CameraInfo.k) -> (3, 3)."""
    K = as_floats(K, at, field)
    if K.shape not in ((3, 3), (9,)):
        fail(at, f"{field} must be a 3x3 matrix, got shape {K.shape}")
    K = K.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        fail(at, f"{field} has non-finite values (NaN or inf): {K.tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        fail(at, f"{field} focal lengths must be positive, got fx={K[0, 0]:g}, fy={K[1, 1]:g}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0], rtol=0, atol=1e-9):
        fail(at, f"{field} last row must be [0, 0, 1], got {K[2].tolist()}")
    if K[1, 0] != 0:  # Camera ignores it; a non-zero value means a transposed or foreign matrix
        fail(at, f"{field}[1][0] must be 0 (upper-triangular intrinsics), got {K[1, 0]:g}")
    return K


def check_distortion(dist, at: str, field: str = "dist", lengths=DISTORTION_LENGTHS) -> np.ndarray:
    """OpenCV distortion coefficients -> (n,), n in `lengths`.

    Longer OpenCV vectors (12: thin prism, 14: tilted) are accepted only when the extra terms are
    zero, and trimmed to 8.
    """
    d = as_floats(dist, at, field).ravel()
    if d.size in (12, 14) and 8 in lengths and np.all(d[8:] == 0):
        d = d[:8]
    if d.size not in lengths:
        fail(at, f"{field} must have {' or '.join(map(str, lengths))} coefficients, got {d.size}")
    if not np.all(np.isfinite(d)):
        fail(at, f"{field} has non-finite values (NaN or inf): {d.tolist()}")
    return d


def check_rotation(value, at: str, field: str = "R", allow_rvec: bool = True) -> np.ndarray:
    """Rotation as a Rodrigues vector (3 values) or a matrix (3x3) -> (3, 3) world->camera.

    A Rodrigues vector always gives a proper rotation; a matrix must be orthonormal (up to
    ORTHONORMAL_TOLERANCE) with det = +1.
    """
    r = as_floats(value, at, field)
    if allow_rvec and r.size == 3 and r.ndim <= 2:
        if not np.all(np.isfinite(r)):
            fail(at, f"{field} has non-finite values (NaN or inf): {r.ravel().tolist()}")
        return rodrigues(r.reshape(3))
    if r.shape not in ((3, 3), (9,)):
        expected = "a Rodrigues vector (3 values) or a 3x3 matrix" if allow_rvec else "a 3x3 matrix"
        fail(at, f"{field} must be {expected}, got shape {r.shape}")
    R = r.reshape(3, 3)
    if not np.all(np.isfinite(R)):
        fail(at, f"{field} has non-finite values (NaN or inf): {R.tolist()}")
    det = float(np.linalg.det(R))
    if det < 0:
        fail(at, f"{field} is not a proper rotation (det={det:.2f}); a mirror, not a rotation")
    error = float(np.max(np.abs(R @ R.T - np.eye(3))))
    if error > ORTHONORMAL_TOLERANCE or abs(det - 1.0) > 3 * ORTHONORMAL_TOLERANCE:
        fail(at, f"{field} is not a rotation matrix (max |R R^T - I| = {error:.1e}, det={det:.4f})")
    return R


def check_translation(value, at: str, field: str = "t") -> np.ndarray:
    """Translation (world->camera, metres), 3 values -> (3,)."""
    t = as_floats(value, at, field)
    if t.size != 3 or t.ndim > 2:
        fail(at, f"{field} must have 3 values (x, y, z), got shape {t.shape}")
    t = t.reshape(3)
    if not np.all(np.isfinite(t)):
        fail(at, f"{field} has non-finite values (NaN or inf): {t.tolist()}")
    return t


def check_size(value, at: str, field: str = "size") -> tuple[int, int]:
    """Image size (width, height): two positive whole numbers (1920.0 as Pose2Sim writes is fine)."""
    values = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != 2:
        fail(at, f"{field} must be [width, height], got {_short(value)}")
    size = []
    for v in values:
        whole = (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                 and math.isfinite(v) and float(v) == int(v))
        if not whole or int(v) <= 0:
            fail(at, f"{field} must be two positive whole numbers [width, height], got {_short(value)}")
        size.append(int(v))
    return size[0], size[1]


def validate_camera(camera: Camera, source: object = "") -> None:
    """Raise CalibrationError unless `camera` is usable: sane K, finite distortion, proper R, finite t,
    positive size, a name. `source` (a file name) prefixes the message."""
    name = getattr(camera, "name", None)
    at = where(source, name)
    if not isinstance(name, str) or not name:
        fail(at, f"name must be a non-empty string, got {name!r}")
    for attribute in ("K", "dist", "R", "t", "size"):
        if not hasattr(camera, attribute):
            fail(at, f"missing {attribute}")
    check_intrinsics(camera.K, at, "K")
    check_distortion(camera.dist, at, "dist", lengths=tuple(range(9)))
    check_rotation(camera.R, at, "R", allow_rvec=False)
    check_translation(camera.t, at, "t")
    check_size(camera.size, at, "size")


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
