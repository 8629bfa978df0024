"""hpe_ros.calibration"""
