"""hpe_ros.lift"""
