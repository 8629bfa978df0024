"""hpe_ros.io: file formats for offline work.

openpose (OpenPose JSON keypoint folders, read and write), trc (Pose2Sim/OpenSim marker files),
skeleton_json (tracked 3D skeletons of any number of persons), atomic (temp file + rename writes),
calibration (rigs of cameras: load_rig / save_rig for every calibration format; calibration_validate,
qualisys), frames (images from folders or videos), rosbag (rosbag2 image topics in, pose topics out);
what ROS messages carry, without ROS: image_encodings, pose_cloud, pose_markers.
"""
from .atomic import write_text_atomic
from .calibration import CalibrationError, load_rig, save_rig
from .openpose import (
                       OpenPoseFolder,
                       SynchronisedOpenPose,
                       folders_for_cameras,
                       frame_union,
                       read_openpose_frame,
                       write_openpose_frame,
)
from .skeleton_json import SkeletonFrame, SkeletonSequence, read_skeleton_json, write_skeleton_json
from .trc import TRC, read_trc, write_trc, yup_to_zup, zup_to_yup

__all__ = [
    "write_text_atomic", "CalibrationError", "load_rig", "save_rig",
    "OpenPoseFolder", "SynchronisedOpenPose", "folders_for_cameras", "frame_union",
    "read_openpose_frame", "write_openpose_frame",
    "SkeletonFrame", "SkeletonSequence", "read_skeleton_json", "write_skeleton_json",
    "TRC", "read_trc", "write_trc", "zup_to_yup", "yup_to_zup",
]
