"""The parameter file and the launch file describe the graph the nodes actually implement."""
from __future__ import annotations

import importlib
import time

import pytest
import yaml

from hpe_ros.resources import DEFAULT_CONFIG, config_path, share_dir
from hpe_ros.ros.launcher import (
    NODE_MODULES,
    RVIZ_CONFIG,
    graph,
    launch_flag,
    launch_log_level,
    launch_parameters,
    load_config,
    node_command,
    node_parameters,
)

LAUNCH_FILE = share_dir() / "launch" / "multi_camera.launch.py"


def test_graph_order():
    assert graph(sim=True) == ["rig_sim_node", "lifter_node", "fusion_node"]
    assert graph(sim=False) == ["camera_pose_node", "lifter_node", "fusion_node"]


def test_config_sections_name_real_nodes_and_parameters(ros_context):
    """Every key in config/multi_camera.yaml is a parameter its node declares (typos fail here)."""
    from rclpy.parameter import Parameter

    config = load_config(config_path(DEFAULT_CONFIG))
    assert set(config) - {"/**"} <= set(NODE_MODULES)
    for node_name, (module, cls) in NODE_MODULES.items():
        node = getattr(importlib.import_module(module), cls)(context=ros_context)
        own = config.get(node_name, {}).get("ros__parameters", {})
        unknown = [k for k in own if not node.has_parameter(k)]
        assert not unknown, f"{node_name} does not declare {unknown}"
        node.destroy_node()
        # Values are accepted with their declared types.
        params = node_parameters(config, node_name)
        node = getattr(importlib.import_module(module), cls)(
            context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        for k, v in own.items():
            assert node.get_parameter(k).value == v
        node.destroy_node()


def test_bad_parameter_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fusion_node:\n  min_views: 2\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)
    bad.write_text("::: not yaml")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)


def test_node_command_is_what_ros2_run_would_start(tmp_path):
    cmd = node_command("fusion_node", "/p.yaml", {"cameras": ["a", "b"], "fusion.min_views": 3}, workdir=tmp_path)
    assert cmd[1:3] == ["-m", "hpe_ros.ros.fusion_node"]
    overrides = tmp_path / "fusion_node.overrides.yaml"
    assert cmd[3:] == ["--ros-args", "-r", "__node:=fusion_node", "--params-file", "/p.yaml",
                       "--params-file", str(overrides)]
    assert yaml.safe_load(overrides.read_text()) == {
        "fusion_node": {"ros__parameters": {"cameras": ["a", "b"], "fusion.min_views": 3}}}


def test_overrides_beat_the_config_file_and_renamed_nodes_keep_their_section(ros_context, tmp_path):
    """What the node process actually sees: its own section of the config, then the overrides on top."""
    import rclpy

    from hpe_ros.ros.rig_sim_node import RigSimNode

    cmd = node_command("rig_sim_node", config_path(DEFAULT_CONFIG), {"seed": 3}, name="second_sim",
                       workdir=tmp_path)
    args = cmd[cmd.index("--ros-args"):]
    context = rclpy.context.Context()
    rclpy.init(args=args, context=context)
    try:
        node = RigSimNode(context=context)
        assert node.get_name() == "second_sim"
        assert node.get_parameter("seed").value == 3  # the config file says 0
        config = node_parameters(load_config(config_path(DEFAULT_CONFIG)), "rig_sim_node")
        assert node.get_parameter("noise_px").value == config["noise_px"]
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_launch_file_declares_the_graph():
    source = LAUNCH_FILE.read_text()
    assert "graph(sim)" in source and 'DeclareLaunchArgument("sim"' in source


def test_launch_file_declares_the_robot_arguments_and_passes_them_on():
    source = LAUNCH_FILE.read_text()
    for name in ("config", "sim", "namespace", "use_sim_time", "log_level", "autostart", "rviz"):
        assert f'DeclareLaunchArgument("{name}"' in source, name
    assert "namespace=arg(\"namespace\")" in source and "launch_parameters(" in source and "--log-level" in source
    assert 'executable="rviz2"' in source and "RVIZ_CONFIG" in source


def test_launch_arguments_are_checked_with_one_line():
    assert launch_flag("rviz", "True") is True and launch_flag("sim", "0") is False
    with pytest.raises(ValueError, match=r"launch argument rviz:='maybe': expected true or false"):
        launch_flag("rviz", "maybe")
    assert launch_log_level("DEBUG") == "debug"
    with pytest.raises(ValueError, match="log_level:='loud': expected one of debug, info, warn, error, fatal"):
        launch_log_level("loud")


def test_launch_parameters_reach_every_node(ros_context):
    """use_sim_time and autostart from the launch arguments are parameters every node of the graph takes."""
    from rclpy.parameter import Parameter

    params = launch_parameters(use_sim_time=True, autostart=False)
    for module, cls in NODE_MODULES.values():
        node = getattr(importlib.import_module(module), cls)(
            context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        assert node.autostart is False and node.get_parameter("use_sim_time").value is True
        assert node.get_clock().ros_time_is_active
        node.destroy_node()


def test_rviz_config_shows_skeletons_and_tf_in_the_world_frame():
    rviz = yaml.safe_load((share_dir() / "config" / RVIZ_CONFIG).read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "world"
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/human_pose_3d/markers"
    assert displays["rviz_default_plugins/MarkerArray"]["Enabled"] is True
    assert displays["rviz_default_plugins/TF"]["Frames"]["All Enabled"] is True   # bodies, joints, cameras
    assert displays["rviz_default_plugins/PointCloud2"]["Topic"]["Value"] == "/human_pose_3d"


def test_launch_file_runs_with_launch_pytest():
    """Needs ROS 2's launch stack (not on PyPI): runs on a robot / in a sourced ROS 2 workspace."""
    pytest.importorskip("launch_pytest", reason="launch_pytest is not on PyPI; needs a sourced ROS 2")
    pytest.importorskip("launch_ros", reason="launch_ros is not on PyPI; needs a sourced ROS 2")
    import rclpy
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from sensor_msgs.msg import PointCloud2

    import launch

    ld = launch.LaunchDescription([launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)), launch_arguments={"sim": "true"}.items())])
    service = launch.LaunchService()
    service.include_launch_description(ld)
    import threading

    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    rclpy.init()
    node = rclpy.create_node("launch_test_listener")
    got = []
    node.create_subscription(PointCloud2, "/human_pose_3d", got.append, 10)
    end = time.monotonic() + 60
    while time.monotonic() < end and not any(m.height for m in got):
        rclpy.spin_once(node, timeout_sec=0.1)
    service.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    assert any(m.height for m in got)
