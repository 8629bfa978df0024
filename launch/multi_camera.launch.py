"""ros2 launch hpe_ros multi_camera.launch.py [config:=PARAMS.yaml] [sim:=true] [namespace:=NS]
    [frame_prefix:=PREFIX] [hri:=true] [use_sim_time:=true] [log_level:=debug] [autostart:=false] [rviz:=true]

Thin: reads the same parameter file as `hpe-ros run` and starts the same graph
(camera_pose_node or rig_sim_node -> lifter_node -> fusion_node), see hpe_ros.ros.launcher.graph.
rviz:=true adds rviz2 with the package's config/hpe_ros.rviz.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _nodes(context):
    from hpe_ros.ros.launcher import RVIZ_CONFIG, graph, launch_flag, launch_log_level, launch_parameters

    def arg(name):
        return LaunchConfiguration(name).perform(context)

    sim, rviz = launch_flag("sim", arg("sim")), launch_flag("rviz", arg("rviz"))
    use_sim_time = launch_flag("use_sim_time", arg("use_sim_time"))
    common = launch_parameters(use_sim_time, launch_flag("autostart", arg("autostart")))
    if arg("frame_prefix"):
        common["frame_prefix"] = arg("frame_prefix")
    if launch_flag("hri", arg("hri")):
        common["publish_hri"] = True
    ros_args = ["--ros-args", "--log-level", launch_log_level(arg("log_level"))]
    nodes = [Node(package="hpe_ros", executable=name, name=name, namespace=arg("namespace"),
                  parameters=[arg("config"), common], arguments=ros_args, output="screen")
             for name in graph(sim)]
    if rviz:
        rviz_config = os.path.join(get_package_share_directory("hpe_ros"), "config", RVIZ_CONFIG)
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
                          parameters=[{"use_sim_time": use_sim_time}], output="screen"))
    return nodes


def generate_launch_description():
    default_config = os.path.join(get_package_share_directory("hpe_ros"), "config", "multi_camera.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config, description="ROS parameter file"),
        DeclareLaunchArgument("sim", default_value="false",
                              description="synthetic rig (rig_sim_node) instead of cameras (camera_pose_node)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of every node: every topic of the rig moves under it"),
        DeclareLaunchArgument("frame_prefix", default_value="",
                              description="prefix of every TF frame the nodes publish (e.g. rig_a/; not "
                                          "world_frame): keeps two rigs' frames apart on the shared /tf"),
        DeclareLaunchArgument("hri", default_value="false",
                              description="ROS4HRI: fusion_node also publishes humans/bodies/tracked"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="nodes and RViz follow /clock (e.g. `ros2 bag play --clock`)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="log level of every node: debug, info, warn, error or fatal"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="nodes configure and activate themselves; false leaves them "
                                          "unconfigured for a lifecycle manager"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="also start rviz2 with the package's config/hpe_ros.rviz"),
        OpaqueFunction(function=_nodes),
    ])
