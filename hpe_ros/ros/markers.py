"""Skeletons as visualization_msgs/MarkerArray for RViz.

Per person three markers, with ids derived from the track id so RViz replaces them frame to frame:
3*id joints (SPHERE_LIST), 3*id+1 bones (LINE_LIST), 3*id+2 an "id N" label above the head.
A marker with nothing to draw (no valid joint / bone) is sent as DELETE, so a person's stale
skeleton vanishes at once instead of lingering for `lifetime_s`.
"""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from hpe_ros.ros.pointcloud import copy_header
from hpe_ros.skeleton import Layout, get_layout

# Okabe-Ito and Tableau colours: distinct, readable on RViz's dark grey background.
_PALETTE = (
    (0.90, 0.62, 0.00), (0.34, 0.71, 0.91), (0.00, 0.62, 0.45), (0.94, 0.89, 0.26),
    (0.00, 0.45, 0.70), (0.84, 0.37, 0.00), (0.80, 0.47, 0.65), (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81), (0.89, 0.47, 0.76),
)
# Marker.id is int32: wrap track ids so 3*id+2 always fits.
_ID_WRAP = (2**31 - 1) // 3
LABEL_HEIGHT = 0.15   # m, text size
LABEL_OFFSET = 0.25   # m above the highest valid joint (world z is up, REP-103)


def id_color(track_id: int) -> tuple[float, float, float]:
    """Fixed colour (r, g, b in 0..1) for a track id; ids 0..11 get distinct colours."""
    return _PALETTE[int(track_id) % len(_PALETTE)]


def _duration(seconds: float) -> Duration:
    seconds = max(float(seconds), 0.0)
    sec = math.floor(seconds)
    return Duration(sec=int(sec), nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def _points(xyz: np.ndarray) -> list[Point]:
    """(N, 3) -> geometry_msgs Points (Marker wants a list of message objects)."""
    return [Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]


def _marker(header: Header, ns: str, marker_id: int, kind: int, color, lifetime: Duration) -> Marker:
    m = Marker()
    m.header = copy_header(header)
    m.ns = ns
    m.id = marker_id
    m.type = kind
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.color = ColorRGBA(r=float(color[0]), g=float(color[1]), b=float(color[2]), a=1.0)
    m.lifetime = lifetime
    return m


def _delete(header: Header, ns: str, marker_id: int) -> Marker:
    m = Marker()
    m.header = copy_header(header)
    m.ns = ns
    m.id = marker_id
    m.action = Marker.DELETE
    return m


def skeleton_markers(points, confidence, ids, layout: Layout | str, header: Header, ns: str = "human_pose",
                     lifetime_s: float = 0.5, joint_scale: float = 0.05, bone_width: float = 0.03,
                     min_confidence: float = 0.05) -> MarkerArray:
    """Skeletons -> MarkerArray (3 markers per person, see module docstring).

    points: (P, J, 3) m in header.frame_id; confidence: (P, J); ids: (P,) track ids;
    a joint is drawn when confidence > min_confidence and its position is finite.
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
    lifetime = _duration(lifetime_s)

    out = MarkerArray()
    for p in range(persons):
        track_id = int(ids[p])
        base = 3 * (track_id % _ID_WRAP)
        color = id_color(track_id)
        joints = points[p, valid[p]]
        if len(joints) == 0:
            out.markers.extend(_delete(header, ns, base + k) for k in range(3))
            continue

        spheres = _marker(header, ns, base, Marker.SPHERE_LIST, color, lifetime)
        spheres.scale.x = spheres.scale.y = spheres.scale.z = float(joint_scale)
        spheres.points = _points(joints)
        out.markers.append(spheres)

        ends = bones[bone_valid[p]]  # (B', 2) -> segment endpoints in LINE_LIST order a0 b0 a1 b1 ...
        if len(ends):
            lines = _marker(header, ns, base + 1, Marker.LINE_LIST, color, lifetime)
            lines.scale.x = float(bone_width)
            lines.points = _points(points[p, ends.reshape(-1)])
            out.markers.append(lines)
        else:
            out.markers.append(_delete(header, ns, base + 1))

        label = _marker(header, ns, base + 2, Marker.TEXT_VIEW_FACING, color, lifetime)
        label.scale.z = LABEL_HEIGHT
        label.text = f"id {track_id}"
        label.pose.position.x, label.pose.position.y = (float(v) for v in joints[:, :2].mean(axis=0))
        label.pose.position.z = float(joints[:, 2].max() + LABEL_OFFSET)
        out.markers.append(label)
    return out


def delete_all_markers(header: Header, ns: str = "") -> MarkerArray:
    """MarkerArray with one DELETEALL marker (clears every marker; send when a node stops)."""
    m = Marker()
    m.header = copy_header(header)
    m.ns = ns
    m.action = Marker.DELETEALL
    return MarkerArray(markers=[m])
