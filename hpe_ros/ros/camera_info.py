"""sensor_msgs/CameraInfo <-> hpe_ros.camera intrinsics."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo

from hpe_ros.camera import Camera


def camera_to_camera_info(camera: Camera, header) -> CameraInfo:
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = camera.size
    n = 8 if np.any(camera.dist[5:]) else 5
    msg.distortion_model = "rational_polynomial" if n == 8 else "plumb_bob"
    msg.d = [float(x) for x in camera.dist[:n]]
    msg.k = [float(x) for x in camera.K.ravel()]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = camera.K
    msg.p = [float(x) for x in P.ravel()]
    return msg


def camera_info_to_intrinsics(msg: CameraInfo) -> dict:
    """-> dict(K (3,3), dist (n,), size (w, h)); ValueError for an unusable message (all-zero K, odd model)."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"camera_info for frame '{msg.header.frame_id}' has no valid K (uncalibrated camera?)")
    model = msg.distortion_model or "plumb_bob"
    if model not in ("plumb_bob", "rational_polynomial", ""):
        raise ValueError(f"camera_info for frame '{msg.header.frame_id}': distortion model '{model}' is not supported")
    return {"K": K, "dist": np.asarray(msg.d, dtype=np.float64), "size": (int(msg.width), int(msg.height))}
