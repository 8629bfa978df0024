"""Bag replay gives what the live graph gave: the sim's pose_2d topics are recorded into a rosbag2 (MCAP,
with rosbags), then played back into a fresh fusion_node on sim time (/clock published here from the
recorded stamps), and the fused skeletons match the live ones frame by frame."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(240)]

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402

from hpe_ros.resources import DEFAULT_CONFIG, config_path  # noqa: E402
from hpe_ros.ros.launcher import load_config, make_nodes  # noqa: E402
from hpe_ros.ros.pointcloud import cloud_to_human_pose, make_header  # noqa: E402
from hpe_ros.ros.qos import POSES  # noqa: E402

from helpers.ros_spin import spin  # noqa: E402

CAMERAS = ["cam0", "cam1", "cam2", "cam3"]
OVERRIDES = {"rig_sim_node": {"num_people": 2, "seed": 8}, "fusion_node": {"use_lifter": False}}


def stamp_ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def stamp_ms(stamp) -> int:
    """A fused frame's stamp to the millisecond: the frame stamp (a mean of camera stamps in float seconds)
    may differ in the last microsecond with the order the cameras arrived in; frames are 33 ms apart."""
    return round(stamp_ns(stamp) / 1e6)


class Tap:
    """A test node recording the 2D topics (header stamp, raw CDR) and the fused skeletons by stamp."""

    def __init__(self, context, executor, record: bool):
        self.node = Node("bag_tap", context=context)
        executor.add_node(self.node)
        self.recorded: list[tuple[str, int, bytes]] = []  # (topic, stamp ns, CDR)
        self.fused: dict[int, object] = {}  # stamp ms -> HumanPoses
        self.node.create_subscription(PointCloud2, "/human_pose_3d",
                                      lambda m: self.fused.__setitem__(stamp_ms(m.header.stamp),
                                                                       cloud_to_human_pose(m)), POSES)
        if record:
            for cam in CAMERAS:
                topic = f"/{cam}/pose_2d"
                self.node.create_subscription(PointCloud2, topic, lambda m, t=topic: self.recorded.append(
                    (t, stamp_ns(m.header.stamp), serialize_message(m))), POSES)


def record_live(context, bag) -> dict[int, object]:
    """Run rig_sim_node + fusion_node, write the pose_2d messages to `bag`; -> the live fused frames."""
    executor = SingleThreadedExecutor(context=context)
    config = load_config(config_path(DEFAULT_CONFIG))
    tap = Tap(context, executor, record=True)
    nodes = make_nodes(["rig_sim_node", "fusion_node"], config, OVERRIDES, context=context)
    try:
        for n in nodes:
            executor.add_node(n)
            assert n.bring_up()
        assert spin(executor, 90.0, until=lambda: len(tap.recorded) >= 4 * 120), len(tap.recorded)
        spin(executor, 0.3)
    finally:
        for n in nodes:
            n.destroy_node()
        tap.node.destroy_node()
        executor.shutdown()
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {t: writer.add_connection(t, "sensor_msgs/msg/PointCloud2", typestore=typestore)
                       for t in sorted({t for t, _, _ in tap.recorded})}
        for topic, stamp, raw in sorted(tap.recorded, key=lambda r: r[1]):
            writer.write(connections[topic], stamp, raw)
    return tap.fused


def replay(context, bag) -> dict[int, object]:
    """A fresh fusion_node on sim time; the bag's messages published in stamp order, /clock just ahead."""
    executor = SingleThreadedExecutor(context=context)
    config = load_config(config_path(DEFAULT_CONFIG))
    tap = Tap(context, executor, record=False)
    overrides = {"fusion_node": {**OVERRIDES["fusion_node"], "use_sim_time": True}}
    (fusion,) = make_nodes(["fusion_node"], config, overrides, context=context)
    clock = tap.node.create_publisher(Clock, "/clock", 10)
    publishers = {cam: tap.node.create_publisher(PointCloud2, f"/{cam}/pose_2d", POSES) for cam in CAMERAS}
    try:
        executor.add_node(fusion)
        with Reader(bag) as reader:
            messages = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
        first = messages[0][1]
        clock.publish(Clock(clock=make_header(first * 1e-9, "").stamp))
        assert spin(executor, 10.0, until=lambda: fusion.get_clock().now().nanoseconds >= first)
        assert fusion.bring_up()
        assert spin(executor, 10.0, until=lambda: all(p.get_subscription_count() for p in publishers.values()))
        spin(executor, 0.5)
        for topic, stamp, raw in messages:
            now = stamp + 2_000_000  # delivered 2 ms after the trigger, as live
            clock.publish(Clock(clock=make_header(now * 1e-9, "").stamp))
            spin(executor, 0.05, until=lambda n=now: fusion.get_clock().now().nanoseconds >= n)
            publishers[topic.split("/")[1]].publish(raw)  # the recorded bytes as they are
            spin(executor, 0.005)
        spin(executor, 0.3)
    finally:
        fusion.destroy_node()
        tap.node.destroy_node()
        executor.shutdown()
    return tap.fused


def test_replayed_bag_fuses_like_the_live_graph(ros_context, tmp_path):
    live = record_live(ros_context, tmp_path / "pose2d_bag")
    replayed = replay(ros_context, tmp_path / "pose2d_bag")
    common = sorted(set(live) & set(replayed))
    assert len(common) >= 100 and len(common) >= 0.9 * len(replayed), (len(live), len(replayed), len(common))
    compared = common[20:]  # once both trackers have confirmed the people
    same_count = [s for s in compared if len(live[s].ids) == len(replayed[s].ids)]
    assert len(same_count) >= 0.95 * len(compared), (len(same_count), len(compared))
    errors = []
    for s in same_count:
        a, b = live[s].points, replayed[s].points
        if len(a):
            gaps = np.nanmean(np.linalg.norm(a[:, None] - b[None], axis=-1), axis=-1)  # (P, P) mean joint gap
            errors.extend(gaps.min(axis=1))
    print(f"{len(live)} live / {len(replayed)} replayed fused frames, {len(common)} common; people count equal in "
          f"{len(same_count)} of {len(compared)}; live-vs-replay MPJPE median {np.median(errors) * 1e3:.2f} mm, "
          f"max {np.max(errors) * 1e3:.2f} mm")
    assert np.median(errors) < 0.005 and np.max(errors) < 0.03  # same frames, same fusion: well inside the noise
