"""2D pose estimation: backends (MediaPipe now; TensorRT / ONNX Runtime / torch with issue 4)."""
from hpe_ros.detect2d.backends import BackendUnavailable, PoseBackend, create_backend

__all__ = ["BackendUnavailable", "PoseBackend", "create_backend"]
