"""ros2 launch hpe_ros multi_camera.launch.py [config:=/path/params.yaml] [sim:=true]

Thin: reads the same parameter file as `hpe-ros run` and starts the same graph
(camera_pose_node or rig_sim_node -> lifter_node -> fusion_node), see hpe_ros.ros.launcher.graph.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _nodes(context):
    from hpe_ros.ros.launcher import graph

    config = LaunchConfiguration("config").perform(context)
    sim = LaunchConfiguration("sim").perform(context).lower() in ("1", "true", "yes")
    return [Node(package="hpe_ros", executable=name, name=name, parameters=[config], output="screen")
            for name in graph(sim)]


def generate_launch_description():
    default_config = os.path.join(get_package_share_directory("hpe_ros"), "config", "multi_camera.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config, description="ROS parameter file"),
        DeclareLaunchArgument("sim", default_value="false", description="synthetic rig instead of cameras"),
        OpaqueFunction(function=_nodes),
    ])
