"""TF really leaves the nodes: /tf and /tf_static as tf2_msgs/TFMessage, read by an independent subscriber.

Without tf2_ros (not on PyPI) TFSender publishes TFMessage itself; tf2_msgs is generated at set-up by
tools/build_interfaces.py (`make interfaces`). These tests skip, saying so, where it was not built.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not installed: `make interfaces` generates it "
                                           "(tools/build_interfaces.py; needs a C/C++ compiler)")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from hpe_ros.fusion.frames import rep155_joint_name  # noqa: E402
from hpe_ros.resources import DEFAULT_CONFIG, config_path  # noqa: E402
from hpe_ros.ros.launcher import load_config, make_nodes  # noqa: E402
from hpe_ros.ros.pointcloud import cloud_to_human_pose  # noqa: E402
from hpe_ros.ros.qos import POSES  # noqa: E402
from hpe_ros.ros.tf import TFSender, camera_transforms, transform_to_pose  # noqa: E402
from hpe_ros.skeleton import COCO17  # noqa: E402

from helpers.fusion_scenes import ring_rig  # noqa: E402
from helpers.ros_spin import spin  # noqa: E402

# The RIHS01 type hash of ROS 2's own tf2_msgs/msg/TFMessage (as `ros2 topic info -v /tf` shows it on a
# ROS install): the generated type is the same type on the wire.
TF_MESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"
# What tf2_ros's TransformListener subscribes with: /tf depth 100; /tf_static depth 100, transient local
# (a depth of 1 would let one static publisher's message overwrite another's in the reader).
TF_QOS = QoSProfile(depth=100)
TF_STATIC_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Parent of each kind of frame (REP-155): bodies and cameras under the world, joints under their own body.
EXPECTED_PARENTS = {"body": {"world"}, "joint": {"body_<own id>"}, "camera": {"world"}}
JOINT_FRAMES = [rep155_joint_name(n) for n in COCO17.joint_names]


def stamp_ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def frame_kind(child: str, cameras: set[str]) -> tuple[str, int | None]:
    """('body' | 'joint' | 'camera' | 'other', track id or None) of a child frame name."""
    if child in cameras:
        return "camera", None
    match = re.fullmatch(r"(body|" + "|".join(JOINT_FRAMES) + r")_(\d+)", child)
    if match is None:
        return "other", None
    return ("body" if match[1] == "body" else "joint"), int(match[2])


def parent_structure(messages: list[TFMessage], cameras: set[str]) -> dict[str, set[str]]:
    """kind of child frame -> parents seen, a parent equal to the child's own body written body_<own id>."""
    seen: dict[str, set[str]] = {}
    for msg in messages:
        for t in msg.transforms:
            kind, track = frame_kind(t.child_frame_id, cameras)
            parent = t.header.frame_id
            seen.setdefault(kind, set()).add("body_<own id>" if parent == f"body_{track}" else parent)
    return seen


@pytest.fixture
def executor(ros_context):
    ex = SingleThreadedExecutor(context=ros_context)
    yield ex
    ex.shutdown()


def test_static_sender_latches_every_static_frame_for_late_joiners(ros_context, executor):
    """Like tf2_ros's static broadcaster: one transient-local message carrying all static frames sent so far."""
    publisher = Node("static_tf_publisher", context=ros_context)
    listener = Node("late_static_listener", context=ros_context)
    executor.add_node(publisher)
    executor.add_node(listener)
    sender = TFSender(publisher, static=True)
    assert sender.available
    rig = ring_rig(4)
    sender.send(camera_transforms(rig.subset([0, 1]), "world", 1.0))
    sender.send(camera_transforms(rig.subset([1, 2, 3]), "world", 2.0))  # cam1 again, newer

    got: list[TFMessage] = []
    listener.create_subscription(TFMessage, "/tf_static", got.append, TF_STATIC_QOS)  # joins after both sends
    assert spin(executor, 10.0, until=lambda: len(got) >= 1)
    spin(executor, 0.3)
    assert len(got) == 1  # the publisher keeps only its newest message, which holds every frame
    frames = {t.child_frame_id: stamp_ns(t.header.stamp) for t in got[0].transforms}
    assert frames == {rig[0].frame_id: 1 * 10**9, rig[1].frame_id: 2 * 10**9,
                      rig[2].frame_id: 2 * 10**9, rig[3].frame_id: 2 * 10**9}
    (info,) = listener.get_publishers_info_by_topic("/tf_static")
    assert info.topic_type == "tf2_msgs/msg/TFMessage"
    assert str(info.topic_type_hash) == TF_MESSAGE_HASH
    # Discovery carries durability and reliability, not the history depth (shown by `len(got) == 1`).
    assert info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    listener.destroy_node()
    publisher.destroy_node()


def test_dynamic_sender_publishes_on_tf(ros_context, executor):
    publisher = Node("tf_publisher", context=ros_context)
    listener = Node("tf_listener", context=ros_context)
    executor.add_node(publisher)
    executor.add_node(listener)
    got: list[TFMessage] = []
    listener.create_subscription(TFMessage, "/tf", got.append, TF_QOS)
    sender = TFSender(publisher)
    cams = camera_transforms(ring_rig(2), "world", 3.5)
    assert spin(executor, 10.0, until=lambda: listener.count_publishers("/tf") >= 1)
    spin(executor, 0.5)  # let the reader match the writer
    sender.send(cams)
    sender.send([])  # nothing to send: no message
    assert spin(executor, 10.0, until=lambda: len(got) >= 1)
    spin(executor, 0.3)
    assert len(got) == 1
    assert [t.child_frame_id for t in got[0].transforms] == [t.child_frame_id for t in cams]
    assert all(stamp_ns(t.header.stamp) == 3_500_000_000 for t in got[0].transforms)
    listener.destroy_node()
    publisher.destroy_node()


class GraphListener:
    """/tf, /tf_static and /human_pose_3d as an outside node sees them."""

    def __init__(self, context, executor):
        self.node = Node("tf_graph_listener", context=context)
        executor.add_node(self.node)
        self.tf: list[TFMessage] = []
        self.tf_static: list[TFMessage] = []
        self.fused: dict[int, set[int]] = {}  # fused frame stamp (ns) -> track ids in it
        self.joints: dict[tuple[int, str], np.ndarray] = {}  # (stamp ns, "<joint>_<id>") -> fused xyz (3,) m
        self.node.create_subscription(TFMessage, "/tf", self.tf.append, TF_QOS)
        self.node.create_subscription(TFMessage, "/tf_static", self.tf_static.append, TF_STATIC_QOS)
        # As deep as /tf's: the fusion node can publish a few frames back to back after a stall (its inbox
        # runs what waited in one batch), and a shallower cloud history would lose clouds whose /tf it kept.
        self.node.create_subscription(PointCloud2, "/human_pose_3d", self._fused,
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

    def _fused(self, msg: PointCloud2) -> None:
        poses, stamp = cloud_to_human_pose(msg), stamp_ns(msg.header.stamp)
        self.fused[stamp] = {int(i) for i in poses.ids}
        for track, points in zip(poses.ids, poses.points):
            for name, xyz in zip(JOINT_FRAMES, points):
                self.joints[stamp, f"{name}_{int(track)}"] = xyz

    def body_stamps(self) -> dict[int, set[int]]:
        """/tf stamp (ns) -> track ids with a body_<id> frame in the message(s) of that stamp."""
        out: dict[int, set[int]] = {}
        for msg in self.tf:
            for t in msg.transforms:
                if t.child_frame_id.startswith("body_"):
                    out.setdefault(stamp_ns(t.header.stamp), set()).add(int(t.child_frame_id[5:]))
        return out


def test_fusion_graph_sends_body_joint_and_camera_frames(ros_context, executor):
    """rig_sim_node + fusion_node through the in-process launcher; frames checked against the fused clouds."""
    config = load_config(config_path(DEFAULT_CONFIG))
    overrides = {"rig_sim_node": {"num_people": 2, "seed": 3}, "fusion_node": {"use_lifter": False}}
    nodes = make_nodes(["rig_sim_node", "fusion_node"], config, overrides, context=ros_context)
    listener = GraphListener(ros_context, executor)
    try:
        for n in nodes:
            executor.add_node(n)
            assert n.bring_up()
        fusion = nodes[1]
        cameras = {c.frame_id for c in fusion.rig}
        assert spin(executor, 90.0, until=lambda: len(listener.body_stamps()) >= 30), \
            f"{len(listener.tf)} /tf messages, {len(listener.fused)} fused frames"
        spin(executor, 0.5)  # the clouds of the last TF stamps

        # body_<id>: stamped with the fused frame's stamp, one per track id of that frame.
        bodies = listener.body_stamps()
        assert set(bodies) <= set(listener.fused), "a body frame's stamp is no fused frame's stamp"
        assert all(ids <= listener.fused[s] for s, ids in bodies.items())
        with_people = [s for s, ids in listener.fused.items() if ids]
        matched = sum(bodies.get(s) == listener.fused[s] for s in with_people)  # none only if hips are missing
        assert matched >= 0.9 * len(with_people), (matched, len(with_people))

        # Joint frames <joint_name>_<id> come with each body, at the same stamp; cameras never go on /tf.
        kinds_by_stamp: dict[int, set[str]] = {}
        for msg in listener.tf:
            for t in msg.transforms:
                kinds_by_stamp.setdefault(stamp_ns(t.header.stamp), set()).add(frame_kind(t.child_frame_id, cameras)[0])
        assert all(kinds == {"body", "joint"} for s, kinds in kinds_by_stamp.items() if s in bodies), kinds_by_stamp
        joints = {t.child_frame_id for m in listener.tf for t in m.transforms
                  if frame_kind(t.child_frame_id, cameras)[0] == "joint"}
        some_id = next(iter(next(iter(bodies.values()))))
        # A joint frame, composed with its body's, sits where the fused cloud of its stamp puts the joint.
        placed = []
        for m in listener.tf:
            world_from = {t.child_frame_id: transform_to_pose(t) for t in m.transforms}
            for t in m.transforms:
                if frame_kind(t.child_frame_id, cameras)[0] == "joint":
                    world_xyz = (world_from[t.header.frame_id] @ transform_to_pose(t))[:3, 3]
                    placed.append((listener.joints[stamp_ns(t.header.stamp), t.child_frame_id], world_xyz))
        assert placed, "no joint frame with its body frame in the same message"
        cloud_xyz, tf_xyz = np.array(placed).transpose(1, 0, 2)
        np.testing.assert_allclose(tf_xyz, cloud_xyz, atol=1e-5)
        assert {f"{j}_{some_id}" for j in ("l_hip", "r_hip", "nose")} <= joints

        # Cameras on /tf_static (latched), from both the sim and the fusion node, each message carrying all.
        assert len(listener.node.get_publishers_info_by_topic("/tf_static")) == 2  # rig_sim_node, fusion_node
        assert len(listener.tf_static) == 2, listener.tf_static  # one each: they send once, on activation
        for msg in listener.tf_static:
            assert {t.child_frame_id for t in msg.transforms} == cameras

        structure = parent_structure(listener.tf + listener.tf_static, cameras)
        print(f"TF parent structure: {structure}; {len(bodies)} /tf stamps with bodies, {matched} of "
              f"{len(with_people)} fused frames with people matched exactly, {len(joints)} joint frames, "
              f"{len(listener.tf_static)} /tf_static messages")
        assert set(structure) == {"body", "joint", "camera"}, structure
        for kind, parents in structure.items():
            assert parents <= EXPECTED_PARENTS[kind], (kind, parents)
        assert len(structure["joint"]) == 1, structure  # one convention at a time
    finally:
        for n in nodes:
            n.destroy_node()
        listener.node.destroy_node()


def test_camera_extrinsics_from_tf_fuse_like_the_file(ros_context, executor):
    """A static world->camera TF publisher + fusion_node with camera_extrinsics_from_tf fuses the same
    skeletons as a fusion_node reading the extrinsics from the calibration file, on the same input."""
    config = load_config(config_path(DEFAULT_CONFIG))
    overrides = {"rig_sim_node": {"num_people": 2, "seed": 5, "publish_camera_frames": False},
                 "fusion_node": {"use_lifter": False}}
    sim, from_file = make_nodes(["rig_sim_node", "fusion_node"], config, overrides, context=ros_context)
    from_tf_overrides = {**overrides, "fusion_node": {"use_lifter": False, "camera_extrinsics_from_tf": True,
                                                      "camera_tf_period_s": 0.2, "output_topic": "human_pose_3d_tf"}}
    (from_tf,) = make_nodes(["fusion_node"], config, from_tf_overrides, context=ros_context)
    tf_publisher = Node("camera_tf_publisher", context=ros_context)
    fused: dict[str, dict[int, tuple]] = {"human_pose_3d": {}, "human_pose_3d_tf": {}}
    for topic, store in fused.items():
        tf_publisher.create_subscription(
            PointCloud2, topic, lambda m, s=store: s.__setitem__(stamp_ns(m.header.stamp), cloud_to_human_pose(m)),
            POSES)
    nodes = [sim, from_file, from_tf]
    try:
        for n in [tf_publisher, *nodes]:
            executor.add_node(n)
        for n in nodes:
            assert n.bring_up()
        static = TFSender(tf_publisher, static=True)
        assert not from_tf.static_tf.last_sent, "fusion_node re-published camera frames it reads from TF"
        static.send(camera_transforms(from_file.rig, "world", 0.0))
        both = lambda: set(fused["human_pose_3d"]) & set(fused["human_pose_3d_tf"])
        assert spin(executor, 90.0, until=lambda: len(both()) >= 20), {k: len(v) for k, v in fused.items()}
        compared = 0
        for stamp in sorted(both()):
            a, b = fused["human_pose_3d"][stamp], fused["human_pose_3d_tf"][stamp]
            if len(a.ids) and len(a.ids) == len(b.ids):  # track ids differ (b started later): pair by position
                gaps = np.nanmean(np.linalg.norm(a.points[:, None] - b.points[None], axis=-1), axis=-1)  # (P, P)
                # Same rig, same input: only the trackers' smoothing differs (b's tracks began later).
                assert (gaps.min(axis=1) < 0.01).all(), gaps
                compared += 1
        assert compared >= 10, compared
        np.testing.assert_allclose(np.stack([c.R for c in from_tf.rig]), np.stack([c.R for c in from_file.rig]),
                                   atol=1e-9)
        assert not from_tf.static_tf.last_sent
    finally:
        for n in nodes:
            n.destroy_node()
        tf_publisher.destroy_node()
