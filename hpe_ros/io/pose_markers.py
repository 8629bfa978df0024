"""What the RViz skeleton markers draw, as plain numpy (no ROS): colours, marker ids and geometry.

hpe_ros.ros.markers turns the parts into rclpy's MarkerArray for the live node and hpe_ros.io.rosbag
into rosbags' MarkerArray for bag files, so both draw the same. Per person three markers, with ids
derived from the track id so RViz replaces them frame to frame: 3*id joints (SPHERE_LIST), 3*id+1 bones
(LINE_LIST), 3*id+2 an "id N" label above the head.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpe_ros.skeleton import Layout, get_layout

# Okabe-Ito and Tableau colours: distinct, readable on RViz's dark grey background.
PALETTE = (
    (0.90, 0.62, 0.00), (0.34, 0.71, 0.91), (0.00, 0.62, 0.45), (0.94, 0.89, 0.26),
    (0.00, 0.45, 0.70), (0.84, 0.37, 0.00), (0.80, 0.47, 0.65), (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81), (0.89, 0.47, 0.76),
)
# Marker.id is int32: wrap track ids so 3*id+2 always fits.
ID_WRAP = (2**31 - 1) // 3
LABEL_HEIGHT = 0.15   # m, text size
LABEL_OFFSET = 0.25   # m above the highest valid joint (world z is up, REP-103)


def id_color(track_id: int) -> tuple[float, float, float]:
    """Fixed colour (r, g, b in 0..1) for a track id; ids 0..11 get distinct colours."""
    return PALETTE[int(track_id) % len(PALETTE)]


@dataclass
class SkeletonParts:
    """One person's markers: base_id (joints; bones base_id + 1, label base_id + 2), colour (r, g, b),
    joints (K, 3) valid joint positions, segments (2B, 3) bone end points in LINE_LIST order,
    label_xyz (3,) label position (meaningless when K = 0)."""

    track_id: int
    base_id: int
    color: tuple[float, float, float]
    joints: np.ndarray
    segments: np.ndarray
    label_xyz: np.ndarray


def skeleton_parts(points, confidence, ids, layout: Layout | str,
                   min_confidence: float = 0.05) -> list[SkeletonParts]:
    """Skeletons -> per person parts to draw.

    points: (P, J, 3) m; confidence: (P, J); ids: (P,) track ids; a joint is drawn when
    confidence > min_confidence and its position is finite.
    """
    layout = get_layout(layout)
    points = np.asarray(points, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    ids = np.asarray(ids).reshape(-1)
    persons = ids.shape[0]
    if points.shape != (persons, layout.num_joints, 3):
        raise ValueError(f"skeleton_markers: points must be (P, {layout.num_joints}, 3) for {layout.name} "
                         f"with P = {persons} ids, got {points.shape}")
    if confidence.shape != points.shape[:2]:
        raise ValueError(f"skeleton_markers: confidence must be {points.shape[:2]}, got {confidence.shape}")

    with np.errstate(invalid="ignore"):
        valid = np.isfinite(points).all(axis=-1) & (confidence > min_confidence)  # (P, J)
    bones = layout.bone_array()
    bone_valid = valid[:, bones[:, 0]] & valid[:, bones[:, 1]]  # (P, B)
    out = []
    for p in range(persons):
        track_id = int(ids[p])
        joints = points[p, valid[p]]
        ends = bones[bone_valid[p]]  # (B', 2) -> segment endpoints in LINE_LIST order a0 b0 a1 b1 ...
        label = np.zeros(3)
        if len(joints):
            label = np.array([*joints[:, :2].mean(axis=0), joints[:, 2].max() + LABEL_OFFSET])
        out.append(SkeletonParts(track_id=track_id, base_id=3 * (track_id % ID_WRAP), color=id_color(track_id),
                                 joints=joints, segments=points[p, ends.reshape(-1)], label_xyz=label))
    return out


__all__ = ["PALETTE", "ID_WRAP", "LABEL_HEIGHT", "LABEL_OFFSET", "id_color", "SkeletonParts", "skeleton_parts"]
