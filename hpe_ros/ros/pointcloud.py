"""Pose arrays <-> sensor_msgs/PointCloud2, following the schema in README "Interfaces".

Every pose cloud is *organized*: height = persons (P), width = joints (J), one point per joint,
little-endian, is_dense False. Three kinds share that shape:

    pose_2d      u, v, confidence (float32), person (int32), joint (int32)      /<cam>/pose_2d
    pose_3d      x, y, z, confidence (float32), person (int32), joint (int32)   /<cam>/pose_3d
    human_pose   x, y, z, confidence (float32), id (uint32), joint, views (int32) /human_pose_3d

A missing joint is NaN coordinates with confidence 0; both the encoder and the decoder enforce it,
so "confidence > 0" always means "finite coordinates". P = 0 is a valid cloud (height 0, no data).

Decoders look fields up by name and honour point_step, row_step and is_bigendian, so clouds from
other publishers (reordered fields, padding, big-endian) decode the same; the decode is one strided
numpy view plus one copy per field, never a Python loop over points. sensor_msgs_py is not needed.

    >>> msg = pose3d_to_cloud(points, scores, make_header(12.5, "cam0_optical_frame"))
    >>> points, scores, person = cloud_to_pose3d(msg)
"""
from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

# The pure-numpy part (field tables, packing, HumanPoses) is shared with bag files.
from hpe_ros.io.pose_cloud import (
    HUMAN_POSE_FIELDS,
    POSE_2D_FIELDS,
    POSE_3D_FIELDS,
    CloudLayout,
    HumanPoses,
    decode_columns,
    human_pose_columns,
    pack_columns,
)
from hpe_ros.io.pose_cloud import INT32_RANGE as _INT32
from hpe_ros.io.pose_cloud import check_poses as _check_poses
from hpe_ros.io.pose_cloud import clean_missing as _clean
from hpe_ros.io.pose_cloud import joint_column as _joint_column
from hpe_ros.io.pose_cloud import per_person as _per_person
from hpe_ros.io.pose_cloud import row_values as _row_values

_FLOATS = (PointField.FLOAT32, PointField.FLOAT64)
_INTEGERS = (PointField.INT8, PointField.UINT8, PointField.INT16, PointField.UINT16,
             PointField.INT32, PointField.UINT32)


# --- stamps and headers ---------------------------------------------------------------------------

def seconds_to_stamp(seconds: float) -> Time:
    """Float seconds -> builtin_interfaces Time (nanoseconds rounded; must be >= 0)."""
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"stamp must be a finite, non-negative number of seconds, got {seconds}")
    sec = math.floor(seconds)
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:  # rounding carried into the next second
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    if sec > 2**31 - 1:
        raise ValueError(f"stamp {seconds} s does not fit builtin_interfaces/Time (int32 seconds)")
    return Time(sec=int(sec), nanosec=nanosec)


def stamp_to_seconds(stamp) -> float:
    """builtin_interfaces Time, std_msgs Header, rclpy Time or float seconds -> float seconds."""
    if isinstance(stamp, Header):
        stamp = stamp.stamp
    if isinstance(stamp, Time):
        return stamp.sec + stamp.nanosec * 1e-9
    if hasattr(stamp, "nanoseconds"):  # rclpy.time.Time
        return stamp.nanoseconds * 1e-9
    if isinstance(stamp, (int, float, np.integer, np.floating)):
        return float(stamp)
    raise ValueError(f"cannot read a time stamp from {type(stamp).__name__}")


def make_header(stamp, frame_id: str) -> Header:
    """std_msgs Header from a stamp (float seconds, builtin_interfaces Time or rclpy Time) and frame."""
    if isinstance(stamp, Time):
        msg_stamp = Time(sec=stamp.sec, nanosec=stamp.nanosec)
    elif hasattr(stamp, "to_msg"):  # rclpy.time.Time
        msg_stamp = stamp.to_msg()
    else:
        msg_stamp = seconds_to_stamp(stamp)
    return Header(stamp=msg_stamp, frame_id=str(frame_id))


def copy_header(header: Header | None) -> Header:
    """A fresh Header equal to `header` (messages are mutable; never share one between messages)."""
    if header is None:
        return Header()
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


# --- generic packing ------------------------------------------------------------------------------

def _encode(fields, columns: dict, shape: tuple[int, int], header) -> PointCloud2:
    """Pack per-joint columns {name: (P, J)} into an organized PointCloud2."""
    persons, joints = shape
    packed = pack_columns(fields, columns, shape)
    dtype = packed.dtype
    msg = PointCloud2()
    msg.header = copy_header(header)
    msg.height, msg.width = persons, joints
    msg.fields = [PointField(name=name, offset=dtype.fields[name][1], datatype=datatype, count=1)
                  for name, datatype in fields]
    msg.is_bigendian = False
    msg.point_step = dtype.itemsize
    msg.row_step = dtype.itemsize * joints
    msg.is_dense = False
    # array('B', bytes) is a single memcpy and skips the per-element checks the setter runs otherwise.
    msg.data = array.array("B", packed.tobytes())
    return msg


def _decode(kind: str, msg: PointCloud2, required: dict, optional: dict = None) -> dict:
    """Read named fields of an organized cloud -> {name: (P, J) float64/int64}, validated by
    hpe_ros.io.pose_cloud.decode_columns (ValueError, one line, for a cloud that does not add up).

    required/optional: {name: allowed datatypes}. Missing optional fields are absent from the result.
    """
    if not isinstance(msg, PointCloud2):
        raise ValueError(f"{kind} cloud: expected sensor_msgs/PointCloud2, got {type(msg).__name__}")
    fields = tuple((f.name, f.offset, f.datatype, f.count) for f in msg.fields)
    cloud = CloudLayout(fields, msg.height, msg.width, msg.point_step, msg.row_step, bool(msg.is_bigendian),
                        msg.data)
    return decode_columns(kind, cloud, required, optional)


def _first_column(values: np.ndarray, default: np.ndarray) -> np.ndarray:
    """(P, J) per-person column -> (P,), falling back to `default` when J = 0."""
    return values[:, 0] if values.shape[1] > 0 else default


# --- pose_2d --------------------------------------------------------------------------------------

def pose2d_to_cloud(points2d, scores, header: Header | None) -> PointCloud2:
    """2D detections -> pose_2d cloud.

    points2d: (P, J, 2) px; scores: (P, J) in [0, 1]; header: image stamp + camera optical frame.
    """
    points2d, scores = _check_poses("pose_2d", points2d, scores, 2)
    persons, joints = scores.shape
    columns = {
        "u": points2d[..., 0], "v": points2d[..., 1], "confidence": scores,
        "person": _per_person(np.arange(persons), joints), "joint": _joint_column(persons, joints),
    }
    return _encode(POSE_2D_FIELDS, columns, (persons, joints), header)


def cloud_to_pose2d(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """pose_2d cloud -> (points2d (P, J, 2) float64 px, scores (P, J) float64)."""
    cols = _decode("pose_2d", msg, {"u": _FLOATS, "v": _FLOATS, "confidence": _FLOATS})
    points = np.stack([cols["u"], cols["v"]], axis=-1)
    return _clean(points, cols["confidence"])


# --- pose_3d --------------------------------------------------------------------------------------

def pose3d_to_cloud(points3d, scores, header: Header | None, person=None) -> PointCloud2:
    """Per-view 3D poses -> pose_3d cloud.

    points3d: (P, J, 3) m in the camera optical frame; scores: (P, J); person: (P,) int row labels
    (default 0..P-1, e.g. the index of the 2D detection each pose was lifted from).
    """
    points3d, scores = _check_poses("pose_3d", points3d, scores, 3)
    persons, joints = scores.shape
    person = np.arange(persons) if person is None else _row_values("pose_3d", "person", person, persons, *_INT32)
    columns = {
        "x": points3d[..., 0], "y": points3d[..., 1], "z": points3d[..., 2], "confidence": scores,
        "person": _per_person(person, joints), "joint": _joint_column(persons, joints),
    }
    return _encode(POSE_3D_FIELDS, columns, (persons, joints), header)


def cloud_to_pose3d(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pose_3d cloud -> (points (P, J, 3) float64, scores (P, J) float64, person (P,) int64).

    `person` is read from the first joint of each row; a cloud without that field gets 0..P-1.
    """
    cols = _decode("pose_3d", msg, {"x": _FLOATS, "y": _FLOATS, "z": _FLOATS, "confidence": _FLOATS},
                   {"person": _INTEGERS})
    points, scores = _clean(np.stack([cols["x"], cols["y"], cols["z"]], axis=-1), cols["confidence"])
    rows = np.arange(msg.height, dtype=np.int64)
    person = _first_column(cols["person"], rows) if "person" in cols else rows
    return points, scores, person


# --- human_pose (fused, tracked) ------------------------------------------------------------------

def human_pose_to_cloud(poses: HumanPoses, header: Header | None = None) -> PointCloud2:
    """Fused, tracked poses -> human_pose cloud.

    poses.ids must lie in [0, 2^32); header: None = one made of poses.stamp and poses.frame_id (a caller
    that sends the same header with other messages, e.g. markers, passes it; its stamp and frame win).
    """
    columns = human_pose_columns(poses)
    header = make_header(poses.stamp, poses.frame_id) if header is None else header
    return _encode(HUMAN_POSE_FIELDS, columns, poses.points.shape[:2], header)


def cloud_to_human_pose(msg: PointCloud2) -> HumanPoses:
    """human_pose cloud -> HumanPoses. A cloud without `views` gets views = 0."""
    cols = _decode("human_pose", msg,
                   {"x": _FLOATS, "y": _FLOATS, "z": _FLOATS, "confidence": _FLOATS, "id": _INTEGERS},
                   {"views": _INTEGERS})
    points, confidence = _clean(np.stack([cols["x"], cols["y"], cols["z"]], axis=-1), cols["confidence"])
    ids = _first_column(cols["id"], np.arange(msg.height, dtype=np.int64))
    views = cols["views"] if "views" in cols else np.zeros(confidence.shape, dtype=np.int64)
    return HumanPoses(points=points, confidence=confidence, ids=ids, views=views,
                      stamp=stamp_to_seconds(msg.header.stamp), frame_id=msg.header.frame_id)
