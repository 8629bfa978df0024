"""Frames from image folders and video files: indices that line cameras up, every step-th frame, errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hpe_ros.io.frames import count_frames, list_images, read_frames

from helpers.videos import write_gray_video

N_FRAMES = 12


def frame(k: int) -> np.ndarray:
    """A smooth gray image (480, 640) with a bright square that moves with k."""
    v, u = np.mgrid[0:480, 0:640]
    image = (40 + 0.2 * u + 0.1 * v).astype(np.uint8)
    image[100:180, 40 + 30 * k: 120 + 30 * k] = 230
    return image


def test_read_frames_from_folder_and_video(tmp_path):
    images = [frame(k) for k in range(N_FRAMES)]
    folder = tmp_path / "cam0"
    folder.mkdir()
    for k, image in enumerate(images):
        assert cv2.imwrite(str(folder / f"frame_{k:04d}.png"), image)
    (folder / "notes.txt").write_text("not a frame")
    video = write_gray_video(images, tmp_path / "cam1.avi")

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


def test_unreadable_frames_are_skipped_and_listed_the_others_keep_their_index(tmp_path, caplog):
    images = [frame(k) for k in range(N_FRAMES)]
    folder = tmp_path / "cam0"
    folder.mkdir()
    for k, image in enumerate(images):
        assert cv2.imwrite(str(folder / f"frame_{k:04d}.png"), image)
    (folder / "frame_0003.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    video = tmp_path / "cam1.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    data = bytearray(video.read_bytes())   # zero the JPEG data of frames 5 and 6 ('00dc' chunks: tag, size, data)
    chunks = [i for i in range(len(data) - 10) if data[i:i + 4] == b"00dc" and data[i + 8:i + 10] == b"\xff\xd8"]
    for f in (5, 6):
        size = int.from_bytes(data[chunks[f] + 4:chunks[f] + 8], "little")
        data[chunks[f] + 8:chunks[f] + 8 + size] = bytes(size)
    video.write_bytes(bytes(data))

    skipped = []
    with caplog.at_level("WARNING"):
        assert [i for i, _ in read_frames(folder, skipped=skipped)] == [k for k in range(N_FRAMES) if k != 3]
        assert [i for i, _ in read_frames(video, skipped=skipped)] == [k for k in range(N_FRAMES) if k not in (5, 6)]
    assert [(Path(s["file"]).name, s["entry"]) for s in skipped] == [("cam0", "frame 3"), ("cam1.avi", "frame 5"),
                                                                     ("cam1.avi", "frame 6")]
    assert "frame_0003.png: not a readable image" in skipped[0]["reason"]
    logged = [r.getMessage() for r in caplog.records if r.name == "hpe_ros.io.frames"]
    assert len(logged) == 2 and "cam1.avi: frame 5: the decoder failed" in logged[1]
