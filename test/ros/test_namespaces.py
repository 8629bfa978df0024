"""A whole rig under a namespace: two simulated rigs (rig_sim_node + fusion_node each) side by side in one
ROS domain, each node in its own namespace with its own frame_prefix, without cross-talk."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402

from hpe_ros.resources import DEFAULT_CONFIG, config_path  # noqa: E402
from hpe_ros.ros.launcher import load_config, make_nodes  # noqa: E402
from hpe_ros.ros.pointcloud import cloud_to_human_pose  # noqa: E402
from hpe_ros.ros.qos import POSES  # noqa: E402

from helpers.ros_spin import spin  # noqa: E402

RIGS = {"rig_a": 1, "rig_b": 3}  # namespace -> people its simulator shows


def test_two_namespaced_rigs_do_not_cross_talk(ros_context):
    executor = SingleThreadedExecutor(context=ros_context)
    config = load_config(config_path(DEFAULT_CONFIG))
    listener = Node("rig_listener", context=ros_context)
    executor.add_node(listener)
    people: dict[str, list[int]] = {ns: [] for ns in RIGS}  # people per fused frame
    for ns in RIGS:
        listener.create_subscription(PointCloud2, f"/{ns}/human_pose_3d",
                                     lambda m, ns=ns: people[ns].append(len(cloud_to_human_pose(m).ids)), POSES)
    nodes = []
    try:
        for k, (ns, count) in enumerate(RIGS.items()):
            overrides = {"rig_sim_node": {"num_people": count, "seed": 10 + k, "frame_prefix": f"{ns}/"},
                         "fusion_node": {"use_lifter": False, "frame_prefix": f"{ns}/"}}
            rig = make_nodes(["rig_sim_node", "fusion_node"], config, overrides, context=ros_context, namespace=ns)
            for n in rig:
                executor.add_node(n)
                assert n.bring_up()
            nodes += rig
        assert spin(executor, 90.0, until=lambda: all(len(v) >= 40 for v in people.values())), people

        topics = dict(listener.get_topic_names_and_types())
        assert "/rig_a/cam0/pose_2d" in topics and "/rig_b/cam0/pose_2d" in topics
        assert "/human_pose_3d" not in topics and "/cam0/pose_2d" not in topics  # nothing left at the root
        # Each rig fuses only its own cameras: never more people than its simulator shows, mostly all of them.
        for ns, count in RIGS.items():
            seen = people[ns][10:]  # after the trackers started
            assert max(seen) <= count, (ns, seen)
            assert sum(n == count for n in seen) >= 0.7 * len(seen), (ns, seen)

        # TF: every frame a rig's fusion node publishes carries its prefix; the world is shared.
        for fusion in (nodes[1], nodes[3]):
            prefix = fusion.get_parameter("frame_prefix").value
            sent = fusion.tf.last_sent + fusion.static_tf.last_sent
            assert sent and all(t.child_frame_id.startswith(prefix) for t in sent)
            assert {t.header.frame_id for t in sent if "body_" in t.child_frame_id} == {"world"}
            assert all(t.header.frame_id.startswith(f"{prefix}body_") for t in sent
                       if "body_" not in t.child_frame_id and t.header.frame_id != "world")
    finally:
        for n in nodes:
            n.destroy_node()
        listener.destroy_node()
        executor.shutdown()
