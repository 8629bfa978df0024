"""hpe_ros.calibration: camera calibration files (anipose/Pose2Sim TOML, ROS camera_info YAML,
hpe_ros rig YAML, OpenCV FileStorage) and their validation.

    >>> rig = load_rig("config/example_rig.toml")
    >>> save_rig(rig, "/tmp/rig.toml")          # .toml or .yaml, written atomically
"""
from hpe_ros.calibration.formats import (
    load_camera_info_yaml,
    load_opencv_rig,
    load_rig,
    load_rig_yaml,
    load_toml_rig,
    rig_from_camera_infos,
    save_camera_info_yaml,
    save_rig,
    save_rig_yaml,
    save_toml_rig,
)
from hpe_ros.calibration.validate import CalibrationError, validate_camera

__all__ = [
    "CalibrationError",
    "load_camera_info_yaml",
    "load_opencv_rig",
    "load_rig",
    "load_rig_yaml",
    "load_toml_rig",
    "rig_from_camera_infos",
    "save_camera_info_yaml",
    "save_rig",
    "save_rig_yaml",
    "save_toml_rig",
    "validate_camera",
]
