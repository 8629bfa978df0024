"""hpe_ros.io"""
