"""Frame maths for TF output and input: REP-155 names, body-relative joint poses, a small transform buffer.

Poses are 4x4 homogeneous matrices `parent_from_child` (a point in the child frame -> the parent frame).
No ROS here: hpe_ros/ros/tf.py converts to and from TransformStamped.
"""
from __future__ import annotations

import numpy as np

from hpe_ros.camera import Rig


def rep155_joint_name(name: str) -> str:
    """A layout joint name in REP-155 / ROS4HRI style: left_/right_ -> l_/r_ (left_elbow -> l_elbow)."""
    for side, short in (("left_", "l_"), ("right_", "r_")):
        if name.startswith(side):
            return short + name[len(side):]
    return name


def pose_matrices(rotations, translations) -> np.ndarray:
    """rotations (..., 3, 3), translations (..., 3) -> poses (..., 4, 4)."""
    rotations, translations = np.asarray(rotations, dtype=np.float64), np.asarray(translations, dtype=np.float64)
    out = np.zeros(rotations.shape[:-2] + (4, 4))
    out[..., :3, :3] = rotations
    out[..., :3, 3] = translations
    out[..., 3, 3] = 1.0
    return out


def invert_poses(poses) -> np.ndarray:
    """Rigid poses (..., 4, 4) -> their inverses (..., 4, 4)."""
    poses = np.asarray(poses, dtype=np.float64)
    r_t = np.swapaxes(poses[..., :3, :3], -1, -2)
    return pose_matrices(r_t, -np.einsum("...ij,...j->...i", r_t, poses[..., :3, 3]))


def joints_in_body(points, joint_rotations, body_poses) -> tuple[np.ndarray, np.ndarray]:
    """World joint poses expressed in their person's body frame.

    points: (P, J, 3) world m; joint_rotations: (P, J, 3, 3) world-from-joint; body_poses: (P, 4, 4)
    world-from-body. Returns body-frame positions (P, J, 3) and body-from-joint rotations (P, J, 3, 3).
    """
    body_from_world = invert_poses(body_poses)  # (P, 4, 4)
    rot, trans = body_from_world[:, None, :3, :3], body_from_world[:, None, :3, 3]
    positions = np.einsum("pjik,pjk->pji", rot, np.asarray(points, dtype=np.float64)) + trans
    rotations = np.einsum("pjik,pjkl->pjil", np.broadcast_to(rot, np.shape(joint_rotations)), joint_rotations)
    return positions, rotations


class TransformBuffer:
    """The latest pose of each child frame relative to its parent, looked up along the tree.

    Enough for static or slowly moving frames (camera mounts, pan-tilt heads): no history, no
    interpolation; a lookup composes the newest transforms along the chain.
    """

    def __init__(self):
        self._parent: dict[str, tuple[str, np.ndarray, float]] = {}  # child -> (parent, parent_from_child, stamp)

    def set(self, parent: str, child: str, pose, stamp: float = 0.0) -> None:
        """Record parent_from_child pose (4, 4) at stamp s; an older stamp than the one held is ignored."""
        held = self._parent.get(child)
        if held is not None and held[0] == parent and held[2] > stamp:
            return
        self._parent[child] = (parent, np.asarray(pose, dtype=np.float64), float(stamp))

    def _to_root(self, frame: str) -> tuple[list[str], np.ndarray]:
        """Frames from `frame` up to its root, and root_from_frame."""
        chain, pose = [frame], np.eye(4)
        while frame in self._parent:
            frame, parent_from_child, _ = self._parent[frame]
            if frame in chain:
                raise ValueError(f"TF loop through {frame!r}")
            chain.append(frame)
            pose = parent_from_child @ pose
        return chain, pose

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """target_from_source (4, 4), or None while the two frames are not connected."""
        source_chain, root_from_source = self._to_root(source)
        target_chain, root_from_target = self._to_root(target)
        if source_chain[-1] != target_chain[-1]:
            return None
        return invert_poses(root_from_target) @ root_from_source


def rig_from_camera_poses(rig: Rig, world_from_camera: list) -> Rig:
    """The rig with each camera's extrinsics replaced by its world-from-camera-frame pose (4, 4).

    Camera convention x_cam = R X + t, the camera frame being its optical frame: R = R_wc^T, t = -R c.
    """
    cameras = []
    for camera, pose in zip(rig, world_from_camera):
        R = np.asarray(pose)[:3, :3].T
        cameras.append(camera.copy(R=R, t=-R @ np.asarray(pose)[:3, 3]))
    return Rig(cameras)
