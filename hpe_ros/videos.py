"""Offline 2D inference on synchronised videos or a rosbag2's image topics, fused into 3D skeletons
(`hpe-ros process`).

One video per calibrated camera, frame i of every video taken at the same instant (hardware trigger,
or cut to a common start); or one image topic per camera of a bag, paired by header stamp. Each time
step's frames go through the 2D backend in one batched call (all people of all cameras), then through
the same fusion as `fusion_node` (hpe_ros.offline.fuse_frames: whole-clip tracks by default, causal=True
for the live node's).
The 2D keypoints can be kept as OpenPose JSON folders (for Pose2Sim, or `hpe-ros triangulate` later).

Real recordings are not tidy: a video a few pixels larger or smaller than its calibration (codec padding,
1080 coded as 1088) is accepted with a warning, cameras whose frame counts differ are aligned from the
start, and a frame the decoder fails on is skipped for that camera only (`VideoSet`).

    >>> backend = create_backend("onnxruntime", model="rtmpose-m", detector="rtmdet-nano")
    >>> result = process_videos(["c1.mp4", "c2.mp4"], "calib.toml", backend, save_2d="out/pose2d")
    >>> write_outputs(result, "out/skeletons")
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from hpe_ros.io.calibration import load_rig
from hpe_ros.io.openpose import write_openpose_frame
from hpe_ros.io.rosbag import BagImages
from hpe_ros.offline import OfflineResult, fuse_frames
from hpe_ros.skeleton import convert, convert_scores, get_layout

log = logging.getLogger(__name__)

# FFmpeg prints its decoder errors straight to stderr, a line per damaged frame; the readers here warn once per
# camera and count the rest, so FFmpeg is kept quiet unless the user sets the level.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


# Codecs pad frames to whole macroblocks (1080 rows are coded as 1088); a size this close to the calibrated
# one, the larger a multiple of PADDING_MULTIPLE, is taken as padding at the bottom / right.
PADDING_MULTIPLE = 8
MAX_PADDING_PX = 16


def padding_crop(size: tuple[int, int], calibrated: tuple[int, int], where: str, camera: str) -> tuple[int, int] | None:
    """An image size (w, h) against its camera's calibrated (w, h): None when equal; the calibrated size when
    they differ by codec padding (each side 0 <= |difference| < MAX_PADDING_PX, the larger a multiple of
    PADDING_MULTIPLE; either may be the larger), with a warning stating the assumption: the extra rows /
    columns are padding at the bottom / right and the intrinsics hold unchanged. Frames larger than the
    calibration are cropped to it. Raises ValueError for another resolution."""
    size, calibrated = tuple(int(v) for v in size), tuple(int(v) for v in calibrated)
    if size == calibrated:
        return None
    padded = all(abs(s - c) < MAX_PADDING_PX and (s == c or max(s, c) % PADDING_MULTIPLE == 0)
                 for s, c in zip(size, calibrated))
    if not padded:
        raise ValueError(f"{where}: video is {size[0]}x{size[1]} but camera {camera} is calibrated at "
                         f"{calibrated[0]}x{calibrated[1]}; keypoints would not match the intrinsics")
    dw, dh = size[0] - calibrated[0], size[1] - calibrated[1]
    extra = " and ".join(f"{abs(d)} {what} {'cropped off' if d > 0 else 'missing from the video'}"
                         for d, what in ((dh, "rows at the bottom"), (dw, "columns at the right")) if d)
    log.warning("%s: video is %dx%d, camera %s is calibrated at %dx%d: assuming codec padding (%s), "
                "intrinsics unchanged", where, size[0], size[1], camera, calibrated[0], calibrated[1], extra)
    return calibrated


class VideoSet:
    """Synchronised readers over several video files: iterate to get (frame index, [BGR frame or None per video]).

    Frame i of every video is one time step. Videos whose frame counts differ (by a frame or two, as cut
    recordings do) are aligned from the first frame and read up to the shortest (`aligned_frames`; the
    surplus is reported per video). A frame the decoder fails on mid-stream is None for that video (warned,
    recorded in `bad_frames`) and reading goes on, so the other cameras keep going and that camera resumes
    when the decoder recovers; stop_on_bad_frame=True ends the iteration at the first such frame instead
    (`stopped_at`). crop: per video, a (w, h) to crop frames to (codec padding), or None.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], stop_on_bad_frame: bool = False):
        self.paths = [Path(p) for p in paths]
        self.captures = []
        self.stop_on_bad_frame = stop_on_bad_frame
        try:
            for p in self.paths:
                if not p.is_file():
                    raise ValueError(f"{p}: video file not found")
                cap = cv2.VideoCapture(str(p))
                if not cap.isOpened():
                    raise ValueError(f"{p}: OpenCV cannot open this video (unknown container or codec, or a "
                                     "truncated file?)")
                self.captures.append(cap)
        except ValueError:
            self.close()
            raise
        self.fps = [float(c.get(cv2.CAP_PROP_FPS)) for c in self.captures]
        self.frame_counts = [int(c.get(cv2.CAP_PROP_FRAME_COUNT)) for c in self.captures]
        self.sizes = [(int(c.get(cv2.CAP_PROP_FRAME_WIDTH)), int(c.get(cv2.CAP_PROP_FRAME_HEIGHT)))
                      for c in self.captures]
        self.crop: list[tuple[int, int] | None] = [None] * len(self.paths)
        self.bad_frames: list[list[int]] = [[] for _ in self.paths]
        self.stopped_at: int | None = None
        if len(set(self.frame_counts)) > 1:
            log.warning("videos have different frame counts %s; aligned from their first frames, the last %s "
                        "unused", dict(zip([p.name for p in self.paths], self.frame_counts)),
                        ", ".join(f"{n - len(self)} of {p.name}" for p, n in zip(self.paths, self.frame_counts)
                                  if n > len(self)))
        finite = [f for f in self.fps if f > 0]
        if finite and max(finite) > 1.01 * min(finite):
            log.warning("videos have different frame rates %s; frames are paired by index",
                        dict(zip([p.name for p in self.paths], self.fps)))

    def __len__(self) -> int:
        """Aligned time steps: the shortest video's frame count (0 when a container does not say)."""
        return max(0, min(self.frame_counts)) if self.frame_counts else 0

    def __iter__(self) -> Iterator[tuple[int, list[np.ndarray | None]]]:
        known = len(self) > 0
        index = 0
        while not known or index < len(self):
            frames = [self._read(v, index) for v in range(len(self.paths))]
            failed = [v for v, f in enumerate(frames) if f is None]
            if not known and failed:
                return  # a container without a frame count: the first failure is its end
            if failed and self.stop_on_bad_frame:
                self.stopped_at = index
                log.warning("frame %d: the decoder failed on %s; stopping there (--stop-on-bad-frame)", index,
                            ", ".join(self.paths[v].name for v in failed))
                return
            yield index, frames
            index += 1

    def _read(self, v: int, index: int) -> np.ndarray | None:
        ok, frame = self.captures[v].read()
        if not ok or frame is None:
            if not self.bad_frames[v] and len(self) > 0 and not self.stop_on_bad_frame:
                log.warning("%s: the decoder failed on frame %d (of %d); that camera has no detections there, "
                            "the others go on (further bad frames are counted in the report)",
                            self.paths[v], index, self.frame_counts[v])
            if len(self) > 0:
                self.bad_frames[v].append(index)
            return None
        crop = self.crop[v]
        return frame if crop is None else frame[:crop[1], :crop[0]]

    def skip_report(self, names: Sequence[str], limit: int = 200) -> dict:
        """The report's "skipped" section: bad frames per camera, as runs of frames ("frames 19-39")."""
        entries = []
        for name, path, bad in zip(names, self.paths, self.bad_frames):
            for first, last in _runs(bad):
                entries.append({"camera": name, "file": str(path),
                                "entry": f"frame {first}" if first == last else f"frames {first}-{last}",
                                "reason": "the decoder failed (damaged or truncated video)"})
        total = sum(len(b) for b in self.bad_frames)
        return {"total": total, "per_camera": {name: {"bad_frames": len(b)} for name, b in zip(names, self.bad_frames)},
                "entries": entries[:limit], "entries_left_out": max(0, len(entries) - limit),
                "stopped_at_frame": self.stopped_at}

    def close(self) -> None:
        for c in self.captures:
            c.release()
        self.captures = []


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted frame indices -> [(first, last)] of consecutive runs."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _check_sizes(rig, videos: VideoSet) -> None:
    """Each video's size against its camera's: equal, codec padding (frames cropped), or ValueError."""
    for v, (cam, path, size) in enumerate(zip(rig, videos.paths, videos.sizes)):
        videos.crop[v] = padding_crop(size, cam.size, str(path), cam.name)


def _keypoint_dirs(save_2d, names) -> list[Path] | None:
    if save_2d is None:
        return None
    dirs = [Path(save_2d) / name for name in names]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def _detections(rig, backend, layout: str, frames: Iterable[tuple[int, int | None, list[np.ndarray]]], total: int,
                out_dirs: list[Path] | None, stats: dict) -> Iterator[tuple[int, list, int | None]]:
    """(index, stamp ns or None, [BGR image or None per camera]) -> (index, [(points, scores) per camera in
    `layout`], stamp): one batched backend call per time step over the cameras with an image (None = a frame
    the decoder failed on: no detections); the 2D keypoints go to `out_dirs` as OpenPose JSON when given."""
    J = get_layout(layout).num_joints
    for index, stamp, images in frames:
        if stats["frames"] >= total:
            return
        have = [c for c, image in enumerate(images) if image is not None]
        dets = [(np.zeros((0, J, 2)), np.zeros((0, J))) for _ in images]
        inferred = backend.infer([images[c] for c in have], [rig.names[c] for c in have]) if have else []
        for c, (points, scores) in zip(have, inferred):
            points = convert(points, backend.layout, layout)
            scores = np.nan_to_num(convert_scores(scores, backend.layout, layout))
            dets[c] = (points, scores)
            stats["people_2d"] += len(points)
        if out_dirs is not None:
            for d, cam, (points, scores) in zip(out_dirs, rig.names, dets):
                write_openpose_frame(d / f"{cam}_{index:012d}_keypoints.json", points, scores)
        stats["frames"] += 1
        yield index, dets, stamp


def process_videos(videos: Sequence[str | os.PathLike], calib_path: str | os.PathLike, backend,
                   layout: str = "coco17", fps: float | None = None, save_2d: str | os.PathLike | None = None,
                   max_frames: int | None = None, progress: bool = True, config=None, causal: bool = False,
                   clip=None, stop_on_bad_frame: bool = False) -> OfflineResult:
    """2D inference on each time step of `videos` (calibration order) and fusion into tracked 3D skeletons.

    backend: a PoseBackend (hpe_ros.detect2d.create_backend); its keypoints are converted to `layout`.
    fps: stamps are frame / fps (default: the first video's frame rate, else 30). save_2d: folder that
    gets one OpenPose JSON folder per camera (<save_2d>/<camera>/<camera>_<frame>_keypoints.json).
    causal / clip: the tracks' mode and whole-clip settings (`hpe_ros.offline.fuse_frames`).
    Videos are read as `VideoSet` does: codec padding accepted with a warning (`padding_crop`), frame counts
    aligned to the shortest, a frame the decoder fails on skipped for that camera (or the end of the run with
    stop_on_bad_frame); report["inputs"] and report["skipped"] say what happened per camera.
    Raises ValueError naming the file for unreadable videos or a video / calibration size mismatch, and
    when no frame of any video could be decoded.
    """
    rig = load_rig(calib_path)
    layout = get_layout(layout).name
    if len(videos) != len(rig):
        raise ValueError(f"{calib_path}: the calibration has {len(rig)} cameras ({', '.join(rig.names)}) but "
                         f"{len(videos)} videos were given; give one video per camera, in the calibration's order")
    video_set = VideoSet(videos, stop_on_bad_frame)
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
    used = len(result.frame_indices)
    if used and all(len(bad) >= used for bad in video_set.bad_frames):
        raise ValueError(f"no video frame could be decoded ({', '.join(map(str, video_set.paths))}): "
                         "damaged or truncated videos?")
    result.report["calibration"] = str(calib_path)
    result.report["backend"] = getattr(backend, "name", type(backend).__name__)
    result.report["inputs"] = [{"camera": name, "video": str(p), "size": list(size), "fps": f, "frames": n,
                                "frames_aligned": len(video_set), "frames_unused_at_end": max(0, n - len(video_set)),
                                "padding_assumed": crop is not None}
                               for name, p, size, f, n, crop in zip(rig.names, video_set.paths, video_set.sizes,
                                                                    video_set.fps, video_set.frame_counts,
                                                                    video_set.crop)]
    result.report["skipped"] = video_set.skip_report(rig.names)
    result.report["detections_2d"] = stats
    if save_2d is not None:
        result.report["keypoints_2d"] = str(save_2d)
    return result


def _checked_sizes(rig, bag: BagImages, frames) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Bag frames, each image checked against its camera's calibrated size (codec padding cropped off, warned
    once per topic and size; another size is a ValueError)."""
    seen: dict[tuple, tuple[int, int] | None] = {}
    for index, stamp, images in frames:
        checked = []
        for cam, topic, image in zip(rig, bag.topics, images):
            key = (topic, image.shape[1], image.shape[0])
            if key not in seen:
                seen[key] = padding_crop(key[1:], cam.size, f"{bag.path}: {topic}", cam.name)
            crop = seen[key]
            checked.append(image if crop is None else image[:crop[1], :crop[0]])
        yield index, stamp, checked


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
