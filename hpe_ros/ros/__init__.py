"""hpe_ros.ros"""
