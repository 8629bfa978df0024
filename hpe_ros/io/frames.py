"""Frames from a folder of images or a video file, indexed so that several cameras line up.

    >>> for index, image in read_frames("calib/cam0", step=2):   # image: (H, W, 3) BGR uint8
    ...     ...

A folder's frames are its images sorted by file name (frame_000.png, frame_001.png, ...), the index
being the position in that order; a video's index is the frame number. Cameras are synchronised by
this index.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in `folder`, sorted by name (the frame index is the position in this list)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_frames(source: str | os.PathLike, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, BGR image (H, W, 3) uint8) from a folder of images or a video file.

    `step` keeps every step-th frame. Raises FileNotFoundError for a missing source and ValueError for
    an unreadable one.
    """
    import cv2

    source = Path(source)
    step = max(1, int(step))
    if source.is_dir():
        for index, path in enumerate(list_images(source)):
            if index % step:
                continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{path}: not a readable image")
            yield index, image
        return
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder or video file")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"{source}: not a readable video (or a folder of images)")
    try:
        index = 0
        while True:
            ok = capture.grab()
            if not ok:
                break
            if index % step == 0:
                ok, image = capture.retrieve()
                if not ok:
                    break
                yield index, image
            index += 1
    finally:
        capture.release()


def count_frames(source: str | os.PathLike) -> int | None:
    """Number of frames in a folder or video (a video's own count, which may be approximate), or None."""
    import cv2

    source = Path(source)
    if source.is_dir():
        return len(list_images(source))
    capture = cv2.VideoCapture(str(source))
    try:
        n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    return n or None


__all__ = ["IMAGE_SUFFIXES", "list_images", "read_frames", "count_frames"]
