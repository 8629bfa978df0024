"""Nodes in this process (real rclpy, real DDS loopback): lifecycle, parameters, and bad input."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2, PointField  # noqa: E402

from hpe_ros.io.calibration import load_rig  # noqa: E402
from hpe_ros.resources import DEFAULT_RIG, resolve_path  # noqa: E402
from hpe_ros.ros.fusion_node import FusionNode  # noqa: E402
from hpe_ros.ros.pointcloud import cloud_to_human_pose, make_header, pose2d_to_cloud  # noqa: E402
from hpe_ros.ros.qos import POSES  # noqa: E402
from hpe_ros.sim import MotionScript, observe  # noqa: E402

from helpers.ros_spin import spin  # noqa: E402


@pytest.fixture
def graph(ros_context):
    """A fusion node (autostarted) plus a test node that publishes 2D and records /human_pose_3d."""
    # max_age_s 5 s: on a loaded machine the reordered frame (0.2 s old when sent) must still count as late,
    # not stale; the stale one below is 30 s old.
    fusion = FusionNode(context=ros_context, parameter_overrides=[Parameter("fusion.tracker.birth_hits", value=2),
                                                                  Parameter("max_age_s", value=5.0)])
    assert fusion.bring_up()
    tester = Node("tester", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(fusion)
    executor.add_node(tester)
    out = []
    tester.create_subscription(PointCloud2, "/human_pose_3d", lambda m: out.append(cloud_to_human_pose(m)), POSES)
    pubs = {c: tester.create_publisher(PointCloud2, f"/{c}/pose_2d", POSES) for c in fusion.rig.names}
    yield fusion, executor, pubs, out
    executor.shutdown()
    tester.destroy_node()
    fusion.destroy_node()


T0 = time.time()


def publish_frame(pubs, rig, stamp, rng, script, cams=None):
    obs = observe(rig, script.pose(stamp - T0), rng, noise_px=1.0)
    for c, name in enumerate(rig.names):
        if cams is not None and name not in cams:
            continue
        rows = obs.person_ids[c] >= 0
        pubs[name].publish(pose2d_to_cloud(obs.points2d[c][rows], obs.scores[c][rows],
                                           make_header(stamp, rig[c].frame_id)))


def test_fusion_node_keeps_running_through_bad_input(graph):
    fusion, executor, pubs, out = graph
    rig = load_rig(resolve_path("", DEFAULT_RIG))
    rng = np.random.default_rng(0)
    script = MotionScript(n_people=1, seed=1)
    now = time.time()
    for k in range(15):  # good frames: a track is born
        publish_frame(pubs, rig, now + k / 30, rng, script)
        spin(executor, 0.02)
    assert spin(executor, 2.0, until=lambda: any(len(p.ids) for p in out))

    # Malformed clouds: a missing field, truncated data, the wrong joint count, NaN everywhere.
    bad = PointCloud2(height=1, width=17, point_step=4, row_step=68, data=bytes(68),
                      fields=[PointField(name="u", offset=0, datatype=PointField.FLOAT32, count=1)])
    pubs["cam0"].publish(bad)
    truncated = pose2d_to_cloud(np.zeros((1, 17, 2)), np.ones((1, 17)), make_header(time.time(), "x"))
    truncated.data = bytes(truncated.data)[:-7]
    pubs["cam1"].publish(truncated)
    pubs["cam2"].publish(pose2d_to_cloud(np.zeros((1, 5, 2)), np.ones((1, 5)), make_header(time.time(), "x")))
    pubs["cam3"].publish(pose2d_to_cloud(np.full((2, 17, 2), np.nan), np.ones((2, 17)),
                                         make_header(time.time(), "x")))
    # A stale frame (older than max_age_s) and one from the past after newer ones (reordered).
    pubs["cam0"].publish(pose2d_to_cloud(np.zeros((0, 17, 2)), np.zeros((0, 17)), make_header(time.time() - 30, "x")))
    spin(executor, 0.3)
    n_before = len(out)
    now = time.time()
    for k in range(15):
        publish_frame(pubs, rig, now + k / 30, rng, script)
        spin(executor, 0.02)
    assert spin(executor, 2.0, until=lambda: len(out) >= n_before + 10)
    # Reordered: older than frames already fused (published only once they are, so a loaded machine that
    # fuses late cannot turn it into an in-order frame).
    publish_frame(pubs, rig, now - 0.2, rng, script)
    spin(executor, 2.0, until=lambda: fusion.live.sync.counters.late >= 1)
    assert len(out[-1].ids) == 1
    stats = fusion.stats
    assert stats["cam0"].errors >= 1 and stats["cam1"].errors >= 1 and stats["cam2"].errors >= 1
    assert stats["cam0"].dropped >= 1  # the stale one
    assert fusion.live.sync.counters.late >= 1  # the reordered one


def test_fusion_node_without_calibration_stays_up_unconfigured(ros_context):
    node = FusionNode(context=ros_context,
                      parameter_overrides=[Parameter("calibration_file", value="/nonexistent/rig.toml")])
    assert node.bring_up() is False
    assert node.live is None and node.rig is None
    node.destroy_node()


def test_fusion_node_refuses_cameras_not_in_calibration(ros_context):
    node = FusionNode(context=ros_context, parameter_overrides=[Parameter("cameras", value=["cam0", "camX"])])
    assert node.bring_up() is False
    node.destroy_node()


def test_camera_pose_node_reports_a_missing_backend_clearly(ros_context):
    try:
        import mediapipe  # noqa: F401
        pytest.skip("mediapipe is installed; this test covers its absence")
    except ImportError:
        pass
    from hpe_ros.detect2d import BackendUnavailable, create_backend
    from hpe_ros.ros.camera_pose_node import CameraPoseNode

    with pytest.raises(BackendUnavailable, match=r"pip install 'hpe_ros\[mediapipe\]'"):
        create_backend("mediapipe")
    node = CameraPoseNode(context=ros_context)
    assert node.bring_up() is False
    node.destroy_node()


def test_camera_pose_node_with_mediapipe_survives_malformed_images(ros_context):
    pytest.importorskip("mediapipe", reason="mediapipe==0.10.14 not installed (pip install 'hpe_ros[mediapipe]')")
    from hpe_ros.ros.camera_pose_node import CameraPoseNode

    node = CameraPoseNode(context=ros_context, parameter_overrides=[Parameter("cameras", value=["cam0"]),
                                                                    Parameter("backend", value="mediapipe")])
    assert node.bring_up()
    tester = Node("img_tester", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(tester)
    from hpe_ros.ros.qos import SENSOR

    pub = tester.create_publisher(Image, "/cam0/image_raw", SENSOR)
    got = []
    tester.create_subscription(PointCloud2, "/cam0/pose_2d", got.append, POSES)
    # One at a time: the node keeps only the newest image, so a burst would hide the bad ones.
    pub.publish(Image(height=4, width=4, encoding="32FC1", step=16, data=bytes(64)))
    assert spin(executor, 5.0, until=lambda: "cam0" in node.stats and node.stats["cam0"].errors >= 1)
    pub.publish(Image(height=4, width=4, encoding="bgr8", step=12, data=bytes(10)))  # truncated data
    assert spin(executor, 5.0, until=lambda: node.stats["cam0"].errors >= 2)
    img = Image(height=480, width=640, encoding="bgr8", step=1920, data=bytes(480 * 1920))
    img.header = make_header(time.time(), "cam0_optical_frame")
    pub.publish(img)
    assert spin(executor, 10.0, until=lambda: len(got) >= 1)  # still alive, still publishing
    executor.shutdown()
    tester.destroy_node()
    node.destroy_node()


@pytest.mark.parametrize("node_name", ["rig_sim_node", "lifter_node", "fusion_node"])
def test_lifecycle_deactivate_and_reactivate(ros_context, node_name):
    """deactivate releases publishers/subscriptions/timers; activate makes them again; cleanup works."""
    import importlib

    from rclpy.lifecycle import TransitionCallbackReturn

    from hpe_ros.ros.launcher import NODE_MODULES

    module, cls = NODE_MODULES[node_name]
    overrides = [Parameter("calibration_file", value="example_rig.toml")]
    node = getattr(importlib.import_module(module), cls)(context=ros_context, parameter_overrides=overrides)
    assert node.bring_up()
    active_entities = len(node._owned)
    assert active_entities > 0
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node._owned == []
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert len(node._owned) == active_entities
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    node.destroy_node()
