"""hpe_ros: real-time multi-camera 3D human pose estimation for ROS 2.

The core (skeleton, camera, calibration, sim, fusion, ...) is ROS-free; `hpe_ros.ros` is the rclpy adapter.
"""
__version__ = "0.1.0"
