"""TF frames for tracked people and calibrated cameras, and a minimal TF reader.

Frames sent (REP-105 / REP-155; every name after an optional `frame_prefix`):
    body_<id>          parent: the reference (world) frame. REP-155 body frame at the hip centre:
                       x forward, z up
    <joint>_<id>       parent: body_<id>. At each joint, oriented by the joint rotation (identity
                       when unknown); REP-155 names (l_elbow, r_knee, nose, ...)
    <camera frame_id>  parent: the world frame. Each camera's optical frame (its pose: R^T, centre)

Building the messages needs only geometry_msgs. TFSender sends them through tf2_ros's broadcasters
when tf2_ros is importable; without it (PyPI ships no tf2_ros) it publishes tf2_msgs/TFMessage on /tf
and /tf_static itself, with the broadcasters' QoS, when tf2_msgs is importable (`make interfaces`
generates it); otherwise it only keeps the last list in `.last_sent`.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile

from hpe_ros.fusion.frames import (
    TransformBuffer,
    joints_in_body,
    pose_matrices,
    rep155_joint_name,
    rig_from_camera_poses,
)
from hpe_ros.ros.params import declare
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
            np.stack([1 + r[0, 0] - r[1, 1] - r[2, 2], r[0, 1] + r[1, 0], r[0, 2] + r[2, 0], r[2, 1] - r[1, 2]],
                     axis=-1),
            np.stack([r[0, 1] + r[1, 0], 1 - r[0, 0] + r[1, 1] - r[2, 2], r[1, 2] + r[2, 1], r[0, 2] - r[2, 0]],
                     axis=-1),
            np.stack([r[0, 2] + r[2, 0], r[1, 2] + r[2, 1], 1 - r[0, 0] - r[1, 1] + r[2, 2], r[1, 0] - r[0, 1]],
                     axis=-1),
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
                        body_poses=None, prefix: str = "") -> list[TransformStamped]:
    """Per person `<prefix>body_<id>` from header.frame_id (the reference frame) and, under it, per joint
    `<prefix><joint>_<id>` (REP-155 names: l_elbow_3, nose_3, ...).

    points: (P, J, 3) m in the reference frame; ids: (P,) track ids; joint_rotations: (P, J, 3, 3)
    reference-from-joint rotations or None (identity); body_poses: (P, 4, 4) reference-from-body poses
    or None (hip centre, identity rotation). Joints with non-finite positions are skipped, and so is a
    person whose body frame is unknown (no hips), joints included.
    """
    layout = get_layout(layout)
    points = np.asarray(points, dtype=np.float64)
    ids = np.asarray(ids).reshape(-1)
    persons, joints = ids.shape[0], layout.num_joints
    if points.shape != (persons, joints, 3):
        raise ValueError(f"skeleton_transforms: points must be (P, {joints}, 3) for {layout.name} "
                         f"with P = {persons} ids, got {points.shape}")
    if body_poses is None:
        body_poses = pose_matrices(np.broadcast_to(np.eye(3), (persons, 3, 3)), layout.hip_centre(points))
    body_poses = np.asarray(body_poses, dtype=np.float64)
    if body_poses.shape != (persons, 4, 4):
        raise ValueError(f"skeleton_transforms: body_poses must be ({persons}, 4, 4), got {body_poses.shape}")
    if joint_rotations is None:
        joint_rotations = np.broadcast_to(np.eye(3), (persons, joints, 3, 3))
    joint_rotations = np.asarray(joint_rotations, dtype=np.float64)
    if joint_rotations.shape != (persons, joints, 3, 3):
        raise ValueError(f"skeleton_transforms: joint_rotations must be ({persons}, {joints}, 3, 3), "
                         f"got {joint_rotations.shape}")

    body_ok = np.isfinite(body_poses).all(axis=(-2, -1))
    safe_bodies = np.where(body_ok[:, None, None], body_poses, np.eye(4))
    joint_xyz, joint_rot = joints_in_body(points, joint_rotations, safe_bodies)
    body_q = rotation_matrix_to_quaternion(safe_bodies[:, :3, :3])
    joint_q = rotation_matrix_to_quaternion(joint_rot)
    joint_ok = np.isfinite(joint_xyz).all(axis=-1)
    names = [prefix + rep155_joint_name(n) for n in layout.joint_names]
    out = []
    for p in np.flatnonzero(body_ok):
        track_id = int(ids[p])
        body = f"{prefix}body_{track_id}"
        out.append(_transform(header, body, safe_bodies[p, :3, 3], body_q[p]))
        body_header = copy_header(header)
        body_header.frame_id = body
        for j in np.flatnonzero(joint_ok[p]):
            out.append(_transform(body_header, f"{names[j]}_{track_id}", joint_xyz[p, j], joint_q[p, j]))
    return out


def camera_transforms(rig, world_frame: str, stamp, prefix: str = "") -> list[TransformStamped]:
    """world_frame -> each camera's `<prefix><frame_id>`. stamp: float seconds or builtin_interfaces Time.

    Camera convention x_cam = R X + t, so the camera frame's pose in the world is (R^T, centre).
    """
    header = make_header(stamp, world_frame)
    cameras = list(rig)
    if not cameras:
        return []
    q = rotation_matrix_to_quaternion(np.stack([c.R.T for c in cameras]))
    return [_transform(header, prefix + c.frame_id, c.center, q[i]) for i, c in enumerate(cameras)]


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


def quaternion_to_rotation_matrix(q) -> np.ndarray:
    """Quaternions (..., 4) as (x, y, z, w) -> rotation matrices (..., 3, 3) (normalised first)."""
    q = np.asarray(q, dtype=np.float64)
    x, y, z, w = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=-2)


def transform_to_pose(t: TransformStamped) -> np.ndarray:
    """parent_from_child pose (4, 4) of a TransformStamped."""
    r, p = t.transform.rotation, t.transform.translation
    return pose_matrices(quaternion_to_rotation_matrix([r.x, r.y, r.z, r.w]), [p.x, p.y, p.z])


class TFListener:
    """/tf and /tf_static (tf2_msgs/TFMessage, tf2_ros's listener QoS) into a TransformBuffer of the
    latest transform per frame. Without tf2_msgs `.available` is False and lookups find nothing.

    Enough for camera mounts, static or slowly moving; not a replacement for tf2_ros's time-travel buffer.
    """

    def __init__(self, node):
        self.buffer = TransformBuffer()
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.available = False
            return
        self.available = True
        # A managed node's own_subscription: released on deactivate with the node's other subscriptions.
        subscribe = getattr(node, "own_subscription", node.create_subscription)
        subscribe(TFMessage, "/tf", self._on_message, QoSProfile(depth=100))
        subscribe(TFMessage, "/tf_static", self._on_message,
                  QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def _on_message(self, msg) -> None:
        for t in msg.transforms:
            stamp = t.header.stamp.sec + t.header.stamp.nanosec * 1e-9
            self.buffer.set(t.header.frame_id, t.child_frame_id, transform_to_pose(t), stamp)

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """target_from_source (4, 4) from the newest transforms, or None while not connected."""
        return self.buffer.lookup(target, source)


class CameraPosesFromTF:
    """Camera extrinsics read from TF: each camera's `<prefix><frame_id>` pose in `world_frame`.

    `poll(rig)` -> the rig with the poses TF holds now, or None while some camera is not connected to
    the world yet (`.missing` names them). Call it periodically so moving (pan-tilt) cameras are followed.
    """

    def __init__(self, node, world_frame: str, prefix: str = ""):
        self.listener = TFListener(node)
        self.world_frame, self.prefix = world_frame, prefix
        self.missing: list[str] = []
        self.ready = False

    def poll(self, rig) -> object | None:
        poses = {c.name: self.listener.lookup(self.world_frame, self.prefix + c.frame_id) for c in rig}
        self.missing = [self.prefix + rig[name].frame_id for name, pose in poses.items() if pose is None]
        if self.missing:
            return None
        self.ready = True
        return rig_from_camera_poses(rig, [poses[name] for name in rig.names])


def declare_frame_parameters(node, read_camera_tf: bool = True) -> None:
    """The TF naming parameters a node shares: frame_prefix, publish_camera_frames and, for a node
    that can take its extrinsics from TF, camera_extrinsics_from_tf and camera_tf_period_s."""
    declare(node, "frame_prefix", "", "prefix of every frame this node publishes (body_<id>, joints, cameras; "
            "not world_frame), e.g. 'rig_a/' to keep two rigs' frames apart", read_only=True)
    declare(node, "publish_camera_frames", True, "send each camera's frame on /tf_static (off when "
            "camera_extrinsics_from_tf: the camera frames are then someone else's)", read_only=True)
    if read_camera_tf:
        declare(node, "camera_extrinsics_from_tf", False, "take each camera's pose from TF (its "
                "<frame_prefix><frame_id> in world_frame) instead of the calibration file", read_only=True)
        declare(node, "camera_tf_period_s", 1.0, "how often camera poses are re-read from TF (pan-tilt cameras)",
                low=0.01, high=3600.0, read_only=True)


def publishes_camera_frames(node) -> bool:
    """publish_camera_frames, unless the node reads the camera frames from TF."""
    from_tf = node.has_parameter("camera_extrinsics_from_tf") and node.get_parameter("camera_extrinsics_from_tf").value
    return bool(node.get_parameter("publish_camera_frames").value) and not from_tf
