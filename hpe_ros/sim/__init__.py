"""hpe_ros.sim"""
