"""hpe_ros.detect2d"""
