"""Frames from image folders and video files: indices that line cameras up, every step-th frame, errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hpe_ros.io.frames import count_frames, list_images, read_frames

N_FRAMES = 12


def frame(k: int) -> np.ndarray:
    """A smooth gray image (480, 640) with a bright square that moves with k."""
    v, u = np.mgrid[0:480, 0:640]
    image = (40 + 0.2 * u + 0.1 * v).astype(np.uint8)
    image[100:180, 40 + 30 * k: 120 + 30 * k] = 230
    return image


def write_video(images, path: Path) -> Path:
    """A lossless (FFV1, else MJPG) .avi."""
    h, w = images[0].shape[:2]
    for codec in ("FFV1", "MJPG"):
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, (w, h))
        if writer.isOpened():
            break
    assert writer.isOpened(), "opencv cannot write FFV1 or MJPG video here"
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_read_frames_from_folder_and_video(tmp_path):
    images = [frame(k) for k in range(N_FRAMES)]
    folder = tmp_path / "cam0"
    folder.mkdir()
    for k, image in enumerate(images):
        assert cv2.imwrite(str(folder / f"frame_{k:04d}.png"), image)
    (folder / "notes.txt").write_text("not a frame")
    video = write_video(images, tmp_path / "cam1.avi")

    indices = [i for i, _ in read_frames(folder)]
    assert indices == list(range(N_FRAMES)) and len(list_images(folder)) == N_FRAMES
    assert count_frames(folder) == N_FRAMES and count_frames(video) == N_FRAMES
    frames = list(read_frames(video, step=5))
    assert [i for i, _ in frames] == list(range(0, N_FRAMES, 5))
    for i, image in frames:  # FFV1 is lossless; MJPG would only be close
        assert image.shape == (480, 640, 3)
        assert np.abs(image[:, :, 0].astype(int) - images[i]).mean() < 1.0
    with pytest.raises(FileNotFoundError):
        list(read_frames(folder / "missing.avi"))
    with pytest.raises(ValueError, match="not a readable video"):
        list(read_frames(folder / "notes.txt"))
