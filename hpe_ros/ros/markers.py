"""Skeletons as visualization_msgs/MarkerArray for RViz.

Per person three markers (what to draw comes from hpe_ros.io.pose_markers, shared with bag files):
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

from hpe_ros.io.pose_markers import LABEL_HEIGHT, id_color, skeleton_parts
from hpe_ros.ros.pointcloud import copy_header
from hpe_ros.skeleton import Layout


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
    lifetime = _duration(lifetime_s)
    out = MarkerArray()
    for person in skeleton_parts(points, confidence, ids, layout, min_confidence):
        base, color = person.base_id, person.color
        if len(person.joints) == 0:
            out.markers.extend(_delete(header, ns, base + k) for k in range(3))
            continue

        spheres = _marker(header, ns, base, Marker.SPHERE_LIST, color, lifetime)
        spheres.scale.x = spheres.scale.y = spheres.scale.z = float(joint_scale)
        spheres.points = _points(person.joints)
        out.markers.append(spheres)

        if len(person.segments):
            lines = _marker(header, ns, base + 1, Marker.LINE_LIST, color, lifetime)
            lines.scale.x = float(bone_width)
            lines.points = _points(person.segments)
            out.markers.append(lines)
        else:
            out.markers.append(_delete(header, ns, base + 1))

        label = _marker(header, ns, base + 2, Marker.TEXT_VIEW_FACING, color, lifetime)
        label.scale.z = LABEL_HEIGHT
        label.text = f"id {person.track_id}"
        label.pose.position.x, label.pose.position.y, label.pose.position.z = (float(v) for v in person.label_xyz)
        out.markers.append(label)
    return out


def delete_all_markers(header: Header, ns: str = "") -> MarkerArray:
    """MarkerArray with one DELETEALL marker (clears every marker; send when a node stops)."""
    m = Marker()
    m.header = copy_header(header)
    m.ns = ns
    m.action = Marker.DELETEALL
    return MarkerArray(markers=[m])


__all__ = ["id_color", "skeleton_markers", "delete_all_markers"]
