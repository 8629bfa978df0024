"""ROS4HRI output: fusion_node with publish_hri sends the track ids on /humans/bodies/tracked
(hri_msgs/IdsList), read by a real subscriber, matching the body_<id> frames on /tf."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("hri_msgs.msg", reason="hri_msgs is not installed: `make interfaces` generates it "
                                           "(tools/build_interfaces.py; needs a C/C++ compiler)")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not installed: `make interfaces` generates it")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]

from hri_msgs.msg import IdsList  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from hpe_ros.resources import DEFAULT_CONFIG, config_path  # noqa: E402
from hpe_ros.ros.launcher import load_config, make_nodes  # noqa: E402
from hpe_ros.ros.pointcloud import cloud_to_human_pose  # noqa: E402
from hpe_ros.ros.qos import POSES  # noqa: E402

from helpers.ros_spin import spin  # noqa: E402


def stamp_ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def test_tracked_bodies_list_matches_the_fused_people_and_body_frames(ros_context):
    executor = SingleThreadedExecutor(context=ros_context)
    config = load_config(config_path(DEFAULT_CONFIG))
    overrides = {"rig_sim_node": {"num_people": 2, "seed": 4},
                 "fusion_node": {"use_lifter": False, "publish_hri": True}}
    nodes = make_nodes(["rig_sim_node", "fusion_node"], config, overrides, context=ros_context)
    listener = Node("hri_listener", context=ros_context)
    tracked: dict[int, list[str]] = {}
    fused: dict[int, set[str]] = {}
    bodies: dict[int, set[str]] = {}
    listener.create_subscription(IdsList, "/humans/bodies/tracked",
                                 lambda m: tracked.__setitem__(stamp_ns(m.header.stamp), list(m.ids)), 10)
    listener.create_subscription(PointCloud2, "/human_pose_3d", lambda m: fused.__setitem__(
        stamp_ns(m.header.stamp), {str(int(i)) for i in cloud_to_human_pose(m).ids}), POSES)
    listener.create_subscription(TFMessage, "/tf", lambda m: [bodies.setdefault(stamp_ns(t.header.stamp), set()).add(
        t.child_frame_id[len("body_"):]) for t in m.transforms if t.child_frame_id.startswith("body_")], 100)
    executor.add_node(listener)
    try:
        for n in nodes:
            executor.add_node(n)
            assert n.bring_up()
        assert spin(executor, 90.0, until=lambda: sum(map(len, tracked.values())) >= 60), tracked
        spin(executor, 0.3)
        (info,) = listener.get_publishers_info_by_topic("/humans/bodies/tracked")
        assert info.topic_type == "hri_msgs/msg/IdsList"
        common = sorted(set(tracked) & set(fused))
        assert len(common) >= 0.9 * len(tracked), (len(common), len(tracked))
        assert all(set(tracked[s]) == fused[s] and len(tracked[s]) == len(set(tracked[s])) for s in common)
        assert any(len(tracked[s]) == 2 for s in common)
        # ROS4HRI finds each listed body as the frame body_<id> of the same stamp.
        with_bodies = [s for s in common if tracked[s] and s in bodies]
        assert len(with_bodies) >= 0.8 * sum(bool(tracked[s]) for s in common)
        assert all(bodies[s] <= set(tracked[s]) for s in with_bodies)
    finally:
        for n in nodes:
            n.destroy_node()
        listener.destroy_node()
        executor.shutdown()
