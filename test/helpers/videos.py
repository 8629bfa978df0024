"""Small lossless test videos written with OpenCV."""
from __future__ import annotations

from pathlib import Path

import cv2


def write_gray_video(images, path: Path, fps: float = 10) -> Path:
    """Gray (H, W) uint8 images as a lossless (FFV1, else MJPG) video at `path`; returns `path`."""
    h, w = images[0].shape[:2]
    for codec in ("FFV1", "MJPG"):
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
        if writer.isOpened():
            break
    assert writer.isOpened(), "opencv cannot write FFV1 or MJPG video here"
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path
