"""What the pose clouds carry, as plain numpy: field tables, column building and packing (no ROS).

hpe_ros.ros.pointcloud wraps these bytes in rclpy's PointCloud2 for the live nodes and
hpe_ros.io.rosbag in rosbags' PointCloud2 for bag files, so a live cloud and a bag cloud of the same
poses carry the same bytes. Datatype numbers are sensor_msgs/PointField's constants.

    >>> columns = human_pose_columns(poses)
    >>> data = pack_columns(HUMAN_POSE_FIELDS, columns, poses.points.shape[:2])   # (P, J) structured
    >>> columns = decode_columns("pose_2d", CloudLayout(fields, P, J, 20, 20 * J, False, data),
    ...                          {"u": FLOATS, "v": FLOATS, "confidence": FLOATS})  # validated, (P, J) each
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# sensor_msgs/PointField datatypes
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
NUMPY_CODE = {INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2", INT32: "i4", UINT32: "u4",
              FLOAT32: "f4", FLOAT64: "f8"}
DATATYPE_NAME = {INT8: "INT8", UINT8: "UINT8", INT16: "INT16", UINT16: "UINT16", INT32: "INT32", UINT32: "UINT32",
                 FLOAT32: "FLOAT32", FLOAT64: "FLOAT64"}
FLOATS = (FLOAT32, FLOAT64)

# Field lists the encoders write, in order, packed without padding.
POSE_2D_FIELDS = (("u", FLOAT32), ("v", FLOAT32), ("confidence", FLOAT32), ("person", INT32), ("joint", INT32))
POSE_3D_FIELDS = (("x", FLOAT32), ("y", FLOAT32), ("z", FLOAT32), ("confidence", FLOAT32),
                  ("person", INT32), ("joint", INT32))
HUMAN_POSE_FIELDS = (("x", FLOAT32), ("y", FLOAT32), ("z", FLOAT32), ("confidence", FLOAT32), ("id", UINT32),
                     ("joint", INT32), ("views", INT32))

INT32_RANGE = (-(2**31), 2**31 - 1)
UINT32_RANGE = (0, 2**32 - 1)


@dataclass
class HumanPoses:
    """Fused, tracked poses: what a /human_pose_3d cloud carries (the encoder's input, the decoder's output).

    points: (P, J, 3) m in `frame_id`, NaN where missing; confidence: (P, J), 0 where missing;
    ids: (P,) persistent track ids (uint32 on the wire; int64 decoded); views: (P, J) cameras per joint;
    stamp: float seconds (image acquisition time); frame_id: the world frame.
    """

    points: np.ndarray
    confidence: np.ndarray
    ids: np.ndarray
    views: np.ndarray
    stamp: float
    frame_id: str

    @property
    def num_persons(self) -> int:
        return self.points.shape[0]


def packed_dtype(fields, big_endian: bool = False) -> np.dtype:
    """numpy structured dtype of `fields` ((name, datatype), ...) packed without padding."""
    order = ">" if big_endian else "<"
    return np.dtype({"names": [name for name, _ in fields],
                     "formats": [order + NUMPY_CODE[datatype] for _, datatype in fields]})


# What a decoded value may be: NaN marks a missing joint (cleaned later), inf never; no denormal-small
# non-zero values, confidences within a bound far beyond any score: bytes read in the wrong order (a lying
# is_bigendian) land outside these almost surely, and their joint indices outside 0..J-1. Finite but
# absurd coordinates pass (the consumers treat them as outliers).
CHECKED_FLOATS = ("u", "v", "x", "y", "z", "confidence")
CONFIDENCE_LIMIT = 1e2
TINY = 1e-30


@dataclass(frozen=True)
class CloudLayout:
    """A PointCloud2's layout without ROS: fields ((name, offset, datatype, count), ...), organized as
    height x width points of point_step bytes, rows row_step bytes apart; data: its bytes."""

    fields: tuple
    height: int
    width: int
    point_step: int
    row_step: int
    is_bigendian: bool
    data: object


def _check_layout(kind: str, cloud: CloudLayout) -> dict:
    """{name: (offset, datatype, count)} of a cloud whose fields and sizes add up; ValueError otherwise."""
    by_name: dict = {}
    spans = []
    for name, offset, datatype, count in cloud.fields:
        if name in by_name:
            raise ValueError(f"{kind} cloud: field {name!r} appears twice")
        if datatype not in NUMPY_CODE:
            raise ValueError(f"{kind} cloud: field {name!r} has unknown datatype {datatype}")
        end = offset + np.dtype(NUMPY_CODE[datatype]).itemsize * max(count, 1)
        if end > cloud.point_step:
            raise ValueError(f"{kind} cloud: field {name!r} (bytes {offset}..{end}) overruns point_step "
                             f"{cloud.point_step}")
        for other, (start, stop) in spans:
            if offset < stop and start < end:
                raise ValueError(f"{kind} cloud: fields {other!r} and {name!r} overlap")
        spans.append((name, (offset, end)))
        by_name[name] = (offset, datatype, count)
    if cloud.row_step < cloud.point_step * cloud.width:
        raise ValueError(f"{kind} cloud: row_step {cloud.row_step} < point_step {cloud.point_step} * width "
                         f"{cloud.width}")
    expected = cloud.row_step * cloud.height
    if len(cloud.data) != expected:
        raise ValueError(f"{kind} cloud: data has {len(cloud.data)} bytes; expected row_step * height = "
                         f"{cloud.row_step} * {cloud.height} = {expected}")
    return by_name


def _check_values(kind: str, columns: dict) -> None:
    """Reject inf, non-zero magnitudes below TINY, confidences beyond CONFIDENCE_LIMIT and joint indices
    outside 0..J-1 (what bytes read in the wrong order look like). NaN is a missing joint: allowed."""
    for name in CHECKED_FLOATS:
        values = columns.get(name)
        if values is None:
            continue
        if np.isinf(values).any():
            raise ValueError(f"{kind} cloud: {name} is infinite")
        magnitude = np.abs(values[~np.isnan(values)])
        limit = CONFIDENCE_LIMIT if name == "confidence" else np.inf
        if (magnitude > limit).any() or ((magnitude < TINY) & (magnitude > 0)).any():
            raise ValueError(f"{kind} cloud: {name} has impossible values (below {TINY:g} or beyond {limit:g}; "
                             "wrong is_bigendian?)")
    joint = columns.get("joint")
    if joint is not None and joint.size and (joint.min() < 0 or joint.max() >= joint.shape[1]):
        raise ValueError(f"{kind} cloud: joint field outside 0..{joint.shape[1] - 1} (wrong is_bigendian?)")


def decode_columns(kind: str, cloud: CloudLayout, required: dict, optional: dict | None = None) -> dict:
    """Named fields of an organized pose cloud -> {name: (P, J) float64 (floats) / int64 (integers)}.

    required/optional: {name: allowed datatypes}; optional fields the cloud lacks are absent from the
    result; a `joint` field, when the cloud has one, is checked too. The data is read in the byte order
    is_bigendian declares (a big-endian publisher decodes the same as a little-endian one); a flag that
    lies shows as impossible values and is rejected. ValueError, one line, for any cloud that does not add
    up: duplicated or overlapping fields, sizes that disagree, bad datatypes, impossible values.
    """
    by_name = _check_layout(kind, cloud)
    wanted = dict(required)
    for name, allowed in (optional or {}).items():
        if name in by_name:
            wanted[name] = allowed
    if "joint" in by_name and "joint" not in wanted:
        wanted["joint"] = (INT8, UINT8, INT16, UINT16, INT32, UINT32)
    for name, allowed in wanted.items():
        if name not in by_name:
            raise ValueError(f"{kind} cloud: missing field {name!r} (has {', '.join(by_name) or 'no fields'})")
        _, datatype, count = by_name[name]
        if datatype not in allowed:
            expected = " or ".join(DATATYPE_NAME[d] for d in allowed)
            raise ValueError(f"{kind} cloud: field {name!r} has datatype {DATATYPE_NAME[datatype]} ({datatype}); "
                             f"expected {expected}")
        if count > 1:
            raise ValueError(f"{kind} cloud: field {name!r} has count {count}; expected 1")
    order = ">" if cloud.is_bigendian else "<"
    dtype = np.dtype({"names": list(wanted), "formats": [order + NUMPY_CODE[by_name[n][1]] for n in wanted],
                      "offsets": [by_name[n][0] for n in wanted], "itemsize": cloud.point_step})
    shape = (cloud.height, cloud.width)
    if cloud.height * cloud.width == 0:
        view = np.zeros(shape, dtype=dtype)
    else:  # one strided view over the buffer: rows may be padded past point_step * width
        view = np.ndarray(shape, dtype=dtype, buffer=np.frombuffer(cloud.data, dtype=np.uint8),
                          strides=(cloud.row_step, cloud.point_step))
    with np.errstate(all="ignore"):  # garbage is reported by _check_values, not by numpy warnings
        columns = {name: view[name].astype(np.float64 if by_name[name][1] in FLOATS else np.int64)
                   for name in wanted}
        _check_values(kind, columns)
    return columns


def pack_columns(fields, columns: dict, shape: tuple[int, int]) -> np.ndarray:
    """Per-joint columns {name: (P, J)} -> (P, J) little-endian structured array (a cloud's data)."""
    packed = np.empty(shape, dtype=packed_dtype(fields))
    for name, _ in fields:
        packed[name] = columns[name]
    return packed


def clean_missing(coords: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Enforce the missing-joint rule: non-finite coords or confidence -> NaN coords, confidence 0.

    coords: (P, J, D); confidence: (P, J). Negative confidences are clipped to 0.
    """
    finite = np.isfinite(coords).all(axis=-1)
    confidence = np.where(finite & np.isfinite(confidence), np.maximum(confidence, 0.0), 0.0)
    coords = np.where(finite[..., None], coords, np.nan)
    return coords, confidence


def check_poses(kind: str, points, scores, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """points (P, J, dim), scores (P, J) as float64, missing joints cleaned; ValueError for other shapes."""
    points = np.asarray(points, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != dim:
        raise ValueError(f"{kind}: points must be (P, J, {dim}), got shape {points.shape}")
    if scores.shape != points.shape[:2]:
        raise ValueError(f"{kind}: scores must be (P, J) = {points.shape[:2]}, got shape {scores.shape}")
    return clean_missing(points, scores)


def row_values(kind: str, name: str, values, persons: int, low: int, high: int) -> np.ndarray:
    """Per-person integers (P,) checked against the field's range."""
    values = np.asarray(values)
    if values.shape != (persons,):
        raise ValueError(f"{kind}: {name} must be ({persons},), got shape {values.shape}")
    if values.size and not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.equal(np.mod(values, 1), 0)):
            raise ValueError(f"{kind}: {name} must be integers")
    values = values.astype(np.int64)
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"{kind}: {name} must lie in [{low}, {high}], got [{values.min()}, {values.max()}]")
    return values


def per_person(row: np.ndarray, joints: int) -> np.ndarray:
    """(P,) -> (P, J) the same value along each row."""
    return np.repeat(row[:, None], joints, axis=1)


def joint_column(persons: int, joints: int) -> np.ndarray:
    """(P, J) joint index of each point."""
    return np.broadcast_to(np.arange(joints, dtype=np.int32), (persons, joints))


def human_pose_columns(poses: HumanPoses) -> dict:
    """HumanPoses -> {field name: (P, J)} of HUMAN_POSE_FIELDS; ValueError for bad shapes or ids outside uint32."""
    points, confidence = check_poses("human_pose", poses.points, poses.confidence, 3)
    persons, joints = confidence.shape
    ids = row_values("human_pose", "ids", poses.ids, persons, *UINT32_RANGE)
    views = np.asarray(poses.views)
    if views.shape != (persons, joints):
        raise ValueError(f"human_pose: views must be (P, J) = {(persons, joints)}, got shape {views.shape}")
    return {
        "x": points[..., 0], "y": points[..., 1], "z": points[..., 2], "confidence": confidence,
        "id": per_person(ids, joints), "joint": joint_column(persons, joints),
        "views": np.clip(np.nan_to_num(views, nan=0), *INT32_RANGE).astype(np.int32),
    }


__all__ = ["HumanPoses", "CloudLayout", "decode_columns", "DATATYPE_NAME", "FLOATS", "POSE_2D_FIELDS",
           "POSE_3D_FIELDS", "HUMAN_POSE_FIELDS", "NUMPY_CODE", "packed_dtype", "pack_columns", "clean_missing",
           "check_poses", "row_values", "per_person", "joint_column", "human_pose_columns", "INT32_RANGE",
           "UINT32_RANGE"]
