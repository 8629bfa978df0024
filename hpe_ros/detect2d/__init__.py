"""2D pose estimation: backends behind create_backend (MediaPipe, multi-person BlazePose, top-down networks)."""
from hpe_ros.detect2d.backends import BackendUnavailable, PoseBackend, create_backend

__all__ = ["BackendUnavailable", "PoseBackend", "create_backend"]
