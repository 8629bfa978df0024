"""hpe_ros.fusion: multi-view fusion of 2D detections into tracked 3D persons.

triangulation (robust batched DLT) -> association (cross-view grouping) -> tracking (ids, gating,
bone lengths, smoothing) -> orientation (body and joint frames); `pipeline.FusionPipeline` runs them
per frame for the ROS node and the CLI (`single_view` places what one camera alone sees, `robust_scale`
sets outlier thresholds from the data), and
`live.LiveFusion` is the live policy around it (frame sync, waiting for lifted poses, online calibration).
"""
from .association import Association, associate
from .live import LiveConfig, LiveFusion
from .orientation import body_frames, joint_rotations
from .pipeline import FusedPerson, FusionConfig, FusionPipeline, FusionResult
from .tracking import Track, Tracker, TrackerConfig
from .triangulation import Triangulation, triangulate

__all__ = [
    "triangulate", "Triangulation", "associate", "Association", "Tracker", "TrackerConfig", "Track",
    "FusionPipeline", "FusionConfig", "FusionResult", "FusedPerson", "body_frames", "joint_rotations",
    "LiveFusion", "LiveConfig",
]
