"""What the pose clouds carry, as plain numpy: field tables, column building and packing (no ROS).

hpe_ros.ros.pointcloud wraps these bytes in rclpy's PointCloud2 for the live nodes and
hpe_ros.io.rosbag in rosbags' PointCloud2 for bag files, so a live cloud and a bag cloud of the same
poses carry the same bytes. Datatype numbers are sensor_msgs/PointField's constants.

    >>> columns = human_pose_columns(poses)
    >>> data = pack_columns(HUMAN_POSE_FIELDS, columns, poses.points.shape[:2])   # (P, J) structured
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# sensor_msgs/PointField datatypes
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
NUMPY_CODE = {INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2", INT32: "i4", UINT32: "u4",
              FLOAT32: "f4", FLOAT64: "f8"}

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


__all__ = ["HumanPoses", "POSE_2D_FIELDS", "POSE_3D_FIELDS", "HUMAN_POSE_FIELDS", "NUMPY_CODE", "packed_dtype",
           "pack_columns", "clean_missing", "check_poses", "row_values", "per_person", "joint_column",
           "human_pose_columns", "INT32_RANGE", "UINT32_RANGE"]
