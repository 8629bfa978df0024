"""TF frames for tracked people and calibrated cameras.

Frames (parent = the world frame named by header.frame_id):
    body_<id>          REP-155 body frame at the hip centre: x forward, z up
    <joint_name>_<id>  at each joint, oriented by the joint rotation (identity when unknown)
    <camera frame_id>  each camera's optical frame (pose of the camera in the world: R^T, centre)

Building the messages needs only geometry_msgs. TFSender sends them through tf2_ros's broadcasters
when tf2_ros is importable; without it (PyPI ships no tf2_ros) it publishes tf2_msgs/TFMessage on /tf
and /tf_static itself, with the broadcasters' QoS, when tf2_msgs is importable (`make interfaces`
generates it); otherwise it only keeps the last list in `.last_sent`.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.qos import QoSProfile

from hpe_ros.ros.pointcloud import copy_header, make_header
from hpe_ros.ros.qos import LATCHED
from hpe_ros.skeleton import Layout, get_layout


def rotation_matrix_to_quaternion(R) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (x, y, z, w), w >= 0.

    Shepperd's method: build the quaternion from whichever of w, x, y, z has the largest magnitude,
    so it stays accurate near 180-degree rotations. Non-finite input gives the identity (0, 0, 0, 1).
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be (..., 3, 3), got shape {R.shape}")
    finite = np.isfinite(R).all(axis=(-2, -1))
    R = np.where(finite[..., None, None], R, np.eye(3))
    r = {(i, j): R[..., i, j] for i in range(3) for j in range(3)}
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    # 4 * (w^2, x^2, y^2, z^2) - 1 = (trace, 2 R00 - trace, 2 R11 - trace, 2 R22 - trace): pivot on the largest.
    pivots = np.stack([trace, 2 * r[0, 0] - trace, 2 * r[1, 1] - trace, 2 * r[2, 2] - trace], axis=-1)
    choice = np.argmax(pivots, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Each candidate is 4*q_k * q written in (x, y, z, w); only the chosen one is well scaled.
        candidates = np.stack([
            np.stack([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], 1 + trace], axis=-1),
            np.stack([1 + r[0, 0] - r[1, 1] - r[2, 2], r[0, 1] + r[1, 0], r[0, 2] + r[2, 0], r[2, 1] - r[1, 2]], axis=-1),
            np.stack([r[0, 1] + r[1, 0], 1 - r[0, 0] + r[1, 1] - r[2, 2], r[1, 2] + r[2, 1], r[0, 2] - r[2, 0]], axis=-1),
            np.stack([r[0, 2] + r[2, 0], r[1, 2] + r[2, 1], 1 - r[0, 0] - r[1, 1] + r[2, 2], r[1, 0] - r[0, 1]], axis=-1),
        ], axis=-2)  # (..., 4 candidates, 4)
        q = np.take_along_axis(candidates, choice[..., None, None], axis=-2)[..., 0, :]
        q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[..., 3:4] < 0, -q, q)  # one of the two equivalent signs, deterministically
    return np.where(np.isfinite(q).all(axis=-1, keepdims=True), q, np.array([0.0, 0.0, 0.0, 1.0]))


def _transform(header, child: str, translation, quaternion) -> TransformStamped:
    msg = TransformStamped()
    msg.header = copy_header(header)
    msg.child_frame_id = child
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in translation)
    q.x, q.y, q.z, q.w = (float(v) for v in quaternion)
    return msg


def skeleton_transforms(points, ids, layout: Layout | str, header, joint_rotations=None,
                        body_poses=None) -> list[TransformStamped]:
    """Per person `body_<id>` and per joint `<joint_name>_<id>` transforms from header.frame_id (world).

    points: (P, J, 3) m in the world frame; ids: (P,) track ids; joint_rotations: (P, J, 3, 3)
    world-from-joint rotations or None (identity); body_poses: (P, 4, 4) world-from-body poses or
    None (hip centre, identity rotation). Joints / bodies with non-finite positions are skipped.
    """
    layout = get_layout(layout)
    points = np.asarray(points, dtype=np.float64)
    ids = np.asarray(ids).reshape(-1)
    persons, joints = ids.shape[0], layout.num_joints
    if points.shape != (persons, joints, 3):
        raise ValueError(f"skeleton_transforms: points must be (P, {joints}, 3) for {layout.name} "
                         f"with P = {persons} ids, got {points.shape}")

    if body_poses is None:
        body_xyz = layout.hip_centre(points)  # (P, 3), NaN where a hip is missing
        body_q = np.tile([0.0, 0.0, 0.0, 1.0], (persons, 1))
    else:
        body_poses = np.asarray(body_poses, dtype=np.float64)
        if body_poses.shape != (persons, 4, 4):
            raise ValueError(f"skeleton_transforms: body_poses must be ({persons}, 4, 4), got {body_poses.shape}")
        body_xyz = body_poses[:, :3, 3]
        body_q = rotation_matrix_to_quaternion(body_poses[:, :3, :3])

    if joint_rotations is None:
        joint_q = np.broadcast_to([0.0, 0.0, 0.0, 1.0], (persons, joints, 4))
    else:
        joint_rotations = np.asarray(joint_rotations, dtype=np.float64)
        if joint_rotations.shape != (persons, joints, 3, 3):
            raise ValueError(f"skeleton_transforms: joint_rotations must be ({persons}, {joints}, 3, 3), "
                             f"got {joint_rotations.shape}")
        joint_q = rotation_matrix_to_quaternion(joint_rotations)

    body_ok = np.isfinite(body_xyz).all(axis=-1)
    joint_ok = np.isfinite(points).all(axis=-1)
    out = []
    for p in range(persons):
        track_id = int(ids[p])
        if body_ok[p]:
            out.append(_transform(header, f"body_{track_id}", body_xyz[p], body_q[p]))
        for j in np.flatnonzero(joint_ok[p]):
            out.append(_transform(header, f"{layout.joint_names[j]}_{track_id}", points[p, j], joint_q[p, j]))
    return out


def camera_transforms(rig, world_frame: str, stamp) -> list[TransformStamped]:
    """world_frame -> each camera's frame_id. stamp: float seconds or builtin_interfaces Time.

    Camera convention x_cam = R X + t, so the camera frame's pose in the world is (R^T, centre).
    """
    header = make_header(stamp, world_frame)
    cameras = list(rig)
    if not cameras:
        return []
    q = rotation_matrix_to_quaternion(np.stack([c.R.T for c in cameras]))
    return [_transform(header, c.frame_id, c.center, q[i]) for i, c in enumerate(cameras)]


class _TFMessageBroadcaster:
    """tf2_ros's broadcasters over a plain tf2_msgs/TFMessage publisher, for when tf2_ros is missing.

    Dynamic: /tf, keep last 100. Static: /tf_static, transient local, keep last 1, and every message
    carries all static frames sent so far (the newest per child frame), so late joiners get them all.
    """

    DYNAMIC_QOS = QoSProfile(depth=100)  # tf2_ros.TransformBroadcaster's default
    STATIC_QOS = LATCHED  # tf2_ros.StaticTransformBroadcaster's: reliable, transient local, keep last 1

    def __init__(self, node, message_type, static: bool):
        self._message_type = message_type
        self._static_frames: dict[str, TransformStamped] | None = {} if static else None
        topic, qos = ("/tf_static", self.STATIC_QOS) if static else ("/tf", self.DYNAMIC_QOS)
        self._publisher = node.create_publisher(message_type, topic, qos)

    # tf2_ros's method name, so that TFSender drives either broadcaster the same way.
    def sendTransform(self, transforms: list[TransformStamped]) -> None:
        if self._static_frames is not None:
            self._static_frames.update((t.child_frame_id, t) for t in transforms)
            transforms = list(self._static_frames.values())
        self._publisher.publish(self._message_type(transforms=transforms))


def _make_broadcaster(node, static: bool):
    """tf2_ros's broadcaster, else one over tf2_msgs, else None (neither is installed)."""
    try:
        import tf2_ros
    except ImportError:
        pass
    else:
        return (tf2_ros.StaticTransformBroadcaster if static else tf2_ros.TransformBroadcaster)(node)
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return _TFMessageBroadcaster(node, TFMessage, static)


class TFSender:
    """Sends TransformStamped lists on /tf (static: /tf_static) when tf2_ros or tf2_msgs is installed;
    otherwise only keeps them.

    `.available`: whether transforms are sent; `.last_sent`: the list given to the last send()
    (kept either way, for tests and the demo).
    """

    def __init__(self, node, static: bool = False):
        self.static = static
        self.last_sent: list[TransformStamped] = []
        self._broadcaster = _make_broadcaster(node, static)
        self.available = self._broadcaster is not None
        if not self.available:
            node.get_logger().info(
                f"TF frames are built but not sent: neither tf2_ros nor tf2_msgs is installed "
                f"({'static' if static else 'dynamic'} transforms kept in memory only; `make interfaces` "
                f"generates tf2_msgs)")

    def send(self, transforms: list[TransformStamped]) -> None:
        transforms = list(transforms)
        self.last_sent = transforms
        if self._broadcaster is not None and transforms:
            self._broadcaster.sendTransform(transforms)
