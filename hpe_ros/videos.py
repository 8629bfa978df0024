"""Offline 2D inference on synchronised videos or a rosbag2's image topics, fused into 3D skeletons
(`hpe-ros process`).

One video per calibrated camera, frame i of every video taken at the same instant (hardware trigger,
or cut to a common start); or one image topic per camera of a bag, paired by header stamp. Each time
step's frames go through the 2D backend in one batched call (all people of all cameras), then through
the same fusion as `fusion_node` (hpe_ros.offline.fuse_frames: whole-clip tracks by default, causal=True
for the live node's).
The 2D keypoints can be kept as OpenPose JSON folders (for Pose2Sim, or `hpe-ros triangulate` later).

    >>> backend = create_backend("onnxruntime", model="rtmpose-m", detector="rtmdet-nano")
    >>> result = process_videos(["c1.mp4", "c2.mp4"], "calib.toml", backend, save_2d="out/pose2d")
    >>> write_outputs(result, "out/skeletons")
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from hpe_ros.io.calibration import load_rig
from hpe_ros.io.openpose import write_openpose_frame
from hpe_ros.io.rosbag import BagImages
from hpe_ros.offline import OfflineResult, fuse_frames
from hpe_ros.skeleton import convert, convert_scores, get_layout

log = logging.getLogger(__name__)


class VideoSet:
    """Synchronised readers over several video files: iterate to get (frame index, [BGR frame per video])."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]
        self.captures = []
        try:
            for p in self.paths:
                if not p.is_file():
                    raise ValueError(f"{p}: video file not found")
                cap = cv2.VideoCapture(str(p))
                if not cap.isOpened():
                    raise ValueError(f"{p}: OpenCV cannot open this video (unknown container or codec?)")
                self.captures.append(cap)
        except ValueError:
            self.close()
            raise
        self.fps = [float(c.get(cv2.CAP_PROP_FPS)) for c in self.captures]
        self.frame_counts = [int(c.get(cv2.CAP_PROP_FRAME_COUNT)) for c in self.captures]
        self.sizes = [(int(c.get(cv2.CAP_PROP_FRAME_WIDTH)), int(c.get(cv2.CAP_PROP_FRAME_HEIGHT)))
                      for c in self.captures]
        if len(set(self.frame_counts)) > 1:
            log.warning("videos have different frame counts %s; processing stops at the shortest",
                        dict(zip([p.name for p in self.paths], self.frame_counts)))
        finite = [f for f in self.fps if f > 0]
        if finite and max(finite) > 1.01 * min(finite):
            log.warning("videos have different frame rates %s; frames are paired by index",
                        dict(zip([p.name for p in self.paths], self.fps)))

    def __len__(self) -> int:
        return min(self.frame_counts) if self.frame_counts else 0

    def __iter__(self) -> Iterator[tuple[int, list[np.ndarray]]]:
        index = 0
        while True:
            frames = []
            for p, cap in zip(self.paths, self.captures):
                ok, frame = cap.read()
                if not ok:
                    return  # the shortest video ended
                frames.append(frame)
            yield index, frames
            index += 1

    def close(self) -> None:
        for c in self.captures:
            c.release()
        self.captures = []


def _check_sizes(rig, videos: VideoSet) -> None:
    for cam, path, size in zip(rig, videos.paths, videos.sizes):
        if tuple(size) != tuple(cam.size):
            raise ValueError(f"{path}: video is {size[0]}x{size[1]} but camera {cam.name} is calibrated at "
                             f"{cam.size[0]}x{cam.size[1]}; keypoints would not match the intrinsics")


def _keypoint_dirs(save_2d, names) -> list[Path] | None:
    if save_2d is None:
        return None
    dirs = [Path(save_2d) / name for name in names]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def _detections(rig, backend, layout: str, frames: Iterable[tuple[int, int | None, list[np.ndarray]]], total: int,
                out_dirs: list[Path] | None, stats: dict) -> Iterator[tuple[int, list, int | None]]:
    """(index, stamp ns or None, [BGR image per camera]) -> (index, [(points, scores) per camera in `layout`], stamp):
    one batched backend call per time step; the 2D keypoints go to `out_dirs` as OpenPose JSON when given."""
    for index, stamp, images in frames:
        if stats["frames"] >= total:
            return
        dets = []
        for points, scores in backend.infer(images, rig.names):
            points = convert(points, backend.layout, layout)
            scores = np.nan_to_num(convert_scores(scores, backend.layout, layout))
            dets.append((points, scores))
            stats["people_2d"] += len(points)
        if out_dirs is not None:
            for d, cam, (points, scores) in zip(out_dirs, rig.names, dets):
                write_openpose_frame(d / f"{cam}_{index:012d}_keypoints.json", points, scores)
        stats["frames"] += 1
        yield index, dets, stamp


def process_videos(videos: Sequence[str | os.PathLike], calib_path: str | os.PathLike, backend,
                   layout: str = "coco17", fps: float | None = None, save_2d: str | os.PathLike | None = None,
                   max_frames: int | None = None, progress: bool = True, config=None, causal: bool = False,
                   clip=None) -> OfflineResult:
    """2D inference on each time step of `videos` (calibration order) and fusion into tracked 3D skeletons.

    backend: a PoseBackend (hpe_ros.detect2d.create_backend); its keypoints are converted to `layout`.
    fps: stamps are frame / fps (default: the first video's frame rate, else 30). save_2d: folder that
    gets one OpenPose JSON folder per camera (<save_2d>/<camera>/<camera>_<frame>_keypoints.json).
    causal / clip: the tracks' mode and whole-clip settings (`hpe_ros.offline.fuse_frames`).
    Raises ValueError naming the file for unreadable videos or a video / calibration size mismatch.
    """
    rig = load_rig(calib_path)
    layout = get_layout(layout).name
    if len(videos) != len(rig):
        raise ValueError(f"{calib_path}: the calibration has {len(rig)} cameras ({', '.join(rig.names)}) but "
                         f"{len(videos)} videos were given; give one video per camera, in the calibration's order")
    video_set = VideoSet(videos)
    try:
        _check_sizes(rig, video_set)
        fps = fps or next((f for f in video_set.fps if f > 0), 30.0)
        total = len(video_set) if max_frames is None else min(len(video_set), int(max_frames))
        stats = {"frames": 0, "people_2d": 0}
        frames = ((index, None, images) for index, images in video_set)  # fused at index / fps
        result = fuse_frames(rig, layout, _detections(rig, backend, layout, frames, total,
                                                      _keypoint_dirs(save_2d, rig.names), stats),
                             fps, total=total, progress=progress, config=config, desc="process",
                             causal=causal, clip=clip)
    finally:
        video_set.close()
    result.report["calibration"] = str(calib_path)
    result.report["backend"] = getattr(backend, "name", type(backend).__name__)
    result.report["inputs"] = [{"camera": name, "video": str(p), "size": list(size), "fps": f, "frames": n}
                               for name, p, size, f, n in zip(rig.names, video_set.paths, video_set.sizes,
                                                              video_set.fps, video_set.frame_counts)]
    result.report["detections_2d"] = stats
    if save_2d is not None:
        result.report["keypoints_2d"] = str(save_2d)
    return result


def _checked_sizes(rig, bag: BagImages, frames) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Bag frames, each image checked against its camera's calibrated size."""
    for index, stamp, images in frames:
        for cam, topic, image in zip(rig, bag.topics, images):
            if (image.shape[1], image.shape[0]) != tuple(cam.size):
                raise ValueError(f"{bag.path}: {topic} images are {image.shape[1]}x{image.shape[0]} but camera "
                                 f"{cam.name} is calibrated at {cam.size[0]}x{cam.size[1]}")
        yield index, stamp, images


def process_bag(bag_path: str | os.PathLike, topics: Sequence[str], calib_path: str | os.PathLike, backend,
                layout: str = "coco17", fps: float | None = None, save_2d: str | os.PathLike | None = None,
                max_frames: int | None = None, progress: bool = True, config=None,
                slop_s: float | None = None, causal: bool = False, clip=None) -> OfflineResult:
    """As process_videos, from image topics of a rosbag2 bag (one per camera, calibration order).

    Frames are the images synchronised by header stamp (hpe_ros.io.rosbag.BagImages, within slop_s) and
    fused at those stamps; fps (default: from the median frame period) only labels the outputs.
    """
    rig = load_rig(calib_path)
    layout = get_layout(layout).name
    if len(topics) != len(rig):
        raise ValueError(f"{calib_path}: the calibration has {len(rig)} cameras ({', '.join(rig.names)}) but "
                         f"{len(topics)} topics were given; give one image topic per camera, "
                         "in the calibration's order")
    with BagImages(bag_path, topics, slop_s) as bag:
        if len(bag) == 0:
            raise ValueError(f"{bag_path}: no frame has an image on every topic ({', '.join(topics)}) within "
                             f"{bag.slop_s * 1e3:.1f} ms; messages per topic: {bag.counts}")
        period = bag.frame_period()
        fps = fps or (1.0 / period if period else 30.0)
        total = len(bag) if max_frames is None else min(len(bag), int(max_frames))
        stats = {"frames": 0, "people_2d": 0}
        result = fuse_frames(rig, layout, _detections(rig, backend, layout, _checked_sizes(rig, bag, bag), total,
                                                      _keypoint_dirs(save_2d, rig.names), stats),
                             fps, total=total, progress=progress, config=config, desc="process",
                             causal=causal, clip=clip)
    result.report["calibration"] = str(calib_path)
    result.report["backend"] = getattr(backend, "name", type(backend).__name__)
    result.report["inputs"] = [{"camera": name, "bag": str(bag_path), "topic": topic, "messages": n, "unmatched": u}
                               for name, topic, n, u in zip(rig.names, topics, bag.counts, bag.unmatched)]
    result.report["sync_slop_s"] = bag.slop_s
    result.report["detections_2d"] = stats
    if save_2d is not None:
        result.report["keypoints_2d"] = str(save_2d)
    return result
