"""hpe_ros.io: file formats for offline work.

openpose (OpenPose JSON keypoint folders, read and write), trc (Pose2Sim/OpenSim marker files),
skeleton_json (tracked 3D skeletons of any number of persons), atomic (temp file + rename writes).
"""
from .atomic import write_text_atomic
from .openpose import (OpenPoseFolder, SynchronisedOpenPose, folders_for_cameras, frame_union, read_openpose_frame,
                       write_openpose_frame)
from .skeleton_json import SkeletonFrame, SkeletonSequence, read_skeleton_json, write_skeleton_json
from .trc import TRC, read_trc, write_trc, yup_to_zup, zup_to_yup

__all__ = [
    "write_text_atomic", "OpenPoseFolder", "SynchronisedOpenPose", "folders_for_cameras", "frame_union",
    "read_openpose_frame", "write_openpose_frame",
    "SkeletonFrame", "SkeletonSequence", "read_skeleton_json", "write_skeleton_json",
    "TRC", "read_trc", "write_trc", "zup_to_yup", "yup_to_zup",
]
