"""hpe_ros.fusion"""
