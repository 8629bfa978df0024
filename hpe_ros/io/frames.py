"""Frames from a folder of images or a video file, indexed so that several cameras line up.

    >>> for index, image in read_frames("calib/cam0", step=2):   # image: (H, W, 3) BGR uint8
    ...     ...

A folder's frames are its images sorted by file name (frame_000.png, frame_001.png, ...), the index
being the position in that order; a video's index is the frame number. Cameras are synchronised by
this index. A frame that cannot be read is skipped (logged, and listed when asked), not the end.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# FFmpeg's per-frame decoder errors would go straight to stderr; read_frames warns once and lists the frames.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in `folder`, sorted by name (the frame index is the position in this list)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_frames(source: str | os.PathLike, step: int = 1,
                skipped: list | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, BGR image (H, W, 3) uint8) from a folder of images or a video file.

    `step` keeps every step-th frame. A frame that cannot be read (a corrupt image in a folder, a frame the
    decoder fails on before the video's advertised end) is skipped, its index left out, logged once per
    source and appended to `skipped` when given ({"file", "entry": "frame k", "reason"}); the other frames
    keep their indices. Raises FileNotFoundError for a missing source and ValueError for an unreadable one.
    """
    import cv2

    source = Path(source)
    step = max(1, int(step))
    bad = _BadFrames(source, skipped)
    if source.is_dir():
        for index, path in enumerate(list_images(source)):
            if index % step:
                continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                bad.add(index, f"{path.name}: not a readable image")
                continue
            yield index, image
        return
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder or video file")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"{source}: not a readable video (or a folder of images)")
    advertised = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    try:
        index = 0
        while True:
            ok = capture.grab()
            if ok and index % step == 0:
                ok, image = capture.retrieve()
                if ok:
                    yield index, image
            if not ok:
                if index >= advertised - 1:
                    break  # the end (the last advertised frame may be missing: counts are estimates)
                bad.add(index, "the decoder failed (damaged or truncated video)")
            index += 1
    finally:
        capture.release()


class _BadFrames:
    """Frames of one source that could not be read: logged once, recorded in a caller's list."""

    def __init__(self, source: Path, skipped: list | None):
        self.source, self.skipped, self.count = source, skipped, 0

    def add(self, index: int, reason: str) -> None:
        if self.count == 0:
            log.warning("%s: frame %d: %s; skipped (further unreadable frames are skipped too)", self.source,
                        index, reason)
        self.count += 1
        if self.skipped is not None:
            self.skipped.append({"file": str(self.source), "entry": f"frame {index}", "reason": reason})


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
