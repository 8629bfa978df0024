"""Virtual camera rigs for the simulator."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..camera import Camera, Rig, look_at


def default_rig(n_cameras: int = 4, radius: float = 4.0, height: float = 2.5,
                target: Sequence[float] = (0.0, 0.0, 1.0), size: tuple[int, int] = (640, 480),
                focal: float = 500.0, distortion: Sequence[float] | None = None) -> Rig:
    """`n_cameras` cameras cam0..cam{N-1} evenly on a circle, all looking at `target`.

    Camera i sits at azimuth a = 45 + 360 i / N degrees, at (radius cos a, radius sin a, height)
    (metres, z up); fx = fy = focal (px), principal point at the image centre (w / 2, h / 2);
    `distortion` (OpenCV order) is shared by all cameras. config/example_rig.toml is default_rig(4).
    """
    if int(n_cameras) != n_cameras or n_cameras < 1:
        raise ValueError(f"n_cameras must be a positive integer, got {n_cameras!r}")
    if not radius > 0 or not focal > 0:
        raise ValueError(f"radius and focal must be positive, got radius={radius}, focal={focal}")
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive (width, height), got {size}")
    K = np.array([[focal, 0.0, w / 2], [0.0, focal, h / 2], [0.0, 0.0, 1.0]])
    cameras = []
    for i in range(int(n_cameras)):
        a = np.deg2rad(45.0 + 360.0 * i / n_cameras)
        R, t = look_at([radius * np.cos(a), radius * np.sin(a), height], target)
        cameras.append(Camera(f"cam{i}", K.copy(), distortion, R, t, (w, h)))
    return Rig(cameras)
