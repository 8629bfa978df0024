"""Top-down multi-person 2D pose: person boxes → affine crops → one batched pose-network call → keypoints.

For a batch of images (one per camera served by the node):
1. boxes per image: the person detector (letterboxed, all due images in one call), or, between detector
   runs (`detect_every` > 1), boxes grown around the keypoints found in that camera's previous frame;
   without a detector the whole image is one person's box (single-person cameras, tests, demos).
2. one crop per box, warped to the pose network's input size; all crops of all images go through the
   pose network in one call (the runner splits it when the engine's batch is smaller).
3. decoding by the manifest's output kind (heatmap: argmax + DARK; SimCC: per-axis argmax), then the
   inverse crop transform back to image pixels.

    >>> pose = TopDownPoseBackend(create_runner("onnxruntime", "rtmpose-m.onnx"), load_manifest("rtmpose-m"))
    >>> [(points, scores)] = pose.infer([bgr_image], ["cam0"])      # (P, J, 2) px, (P, J)
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hpe_ros.detect2d.boxes import boxes_from_keypoints, decode_end2end, decode_yolox
from hpe_ros.detect2d.decode import decode_heatmaps, decode_simcc, heatmap_to_input
from hpe_ros.detect2d.preprocess import (
    apply_affines,
    boxes_to_center_scale,
    crop_affines,
    invert_affines,
    letterbox,
    to_network_input,
    warp_crops,
)
from hpe_ros.runtime.base import warm_up_runner
from hpe_ros.skeleton import get_layout


@dataclass
class TopDownConfig:
    detect_every: int = 1            # run the detector every N frames of a camera; boxes follow keypoints between
    box_score_threshold: float = 0.3
    nms_threshold: float = 0.45
    max_people: int = 16             # per image, highest detector scores first
    box_padding: float = 1.25        # crop = box grown by this factor (mmpose's default)
    heatmap_refine: str = "dark"     # "dark", "quarter" or "none"
    track_min_score: float = 0.3     # keypoints that define a box when the detector is skipped
    min_people_score: float = 0.2    # a tracked person whose mean keypoint score falls below this is dropped

    def __post_init__(self):
        if int(self.detect_every) < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {self.max_people}")


class TopDownPoseBackend:
    """A 2D pose backend (PoseBackend protocol) from a pose network and an optional person detector."""

    def __init__(self, pose_runner, pose_manifest, detector_runner=None, detector_manifest=None,
                 config: TopDownConfig | None = None):
        if pose_manifest.output not in ("heatmap", "simcc"):
            raise ValueError(f"pose model {pose_manifest.name}: output kind {pose_manifest.output!r} is not "
                             "a pose output (heatmap or simcc)")
        if (detector_runner is None) != (detector_manifest is None):
            raise ValueError("a person detector needs both its runner and its manifest")
        if detector_manifest is not None and detector_manifest.output not in ("yolox", "end2end"):
            raise ValueError(f"detector {detector_manifest.name}: output kind {detector_manifest.output!r} is not "
                             "a detector output (yolox or end2end)")
        self.pose_runner, self.pose_manifest = pose_runner, pose_manifest
        self.detector_runner, self.detector_manifest = detector_runner, detector_manifest
        self.config = config or TopDownConfig()
        self.layout = get_layout(pose_manifest.layout).name
        self.name = f"{pose_runner.name}:{pose_manifest.name}"
        if detector_manifest is not None:
            self.name += f"+{detector_manifest.name}"
        self._tracked: dict[str, np.ndarray] = {}   # stream -> (P, 4) boxes from its last keypoints
        self._frames: dict[str, int] = {}           # stream -> frames since its last detector run
        self.last_timings: dict[str, float] = {}

    # --- the PoseBackend interface ----------------------------------------------------------------
    def infer(self, images: list[np.ndarray], streams: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """images: BGR uint8 (H, W, 3), one per stream → per image (points (P, J, 2) px, scores (P, J))."""
        if len(images) != len(streams):
            raise ValueError(f"{len(images)} images but {len(streams)} stream names")
        t0 = time.perf_counter()
        boxes = self._boxes(images, streams)
        t1 = time.perf_counter()
        points, scores = self.estimate(images, boxes)
        t2 = time.perf_counter()
        for stream, p, s in zip(streams, points, scores):
            self._remember(stream, p, s)
        self.last_timings = {"detect_ms": (t1 - t0) * 1e3, "pose_ms": (t2 - t1) * 1e3,
                             "people": float(sum(len(b) for b in boxes))}
        return list(zip(points, scores))

    def estimate(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[list, list]:
        """Keypoints of the people in `boxes` (per image (P_i, 4) xyxy px): lists of (P_i, J, 2), (P_i, J)."""
        m = self.pose_manifest
        J = get_layout(m.layout).num_joints
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            return [np.zeros((0, J, 2)) for _ in images], [np.zeros((0, J)) for _ in images]
        all_boxes = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes])
        image_index = np.repeat(np.arange(len(images)), counts)
        input_w, input_h = m.input_size
        center, scale = boxes_to_center_scale(all_boxes, input_w / input_h, self.config.box_padding)
        affines = crop_affines(center, scale, m.input_size)
        crops = warp_crops(images, image_index, affines, m.input_size)
        outputs = self.pose_runner.run(to_network_input(crops, m.mean, m.std, m.color))
        points, scores = self._decode(outputs)
        if points.shape[1] != J:
            raise ValueError(f"pose model {m.name}: network gives {points.shape[1]} joints but its layout "
                             f"{m.layout} has {J}")
        points = apply_affines(points, invert_affines(affines))
        split = np.cumsum(counts)[:-1]
        return np.split(points, split), np.split(scores, split)

    def warm_up(self, cameras: int) -> dict[str, list[int]]:
        """Run both networks at start-up on every batch size they will see for `cameras` images per call
        (detector: up to `cameras`; pose: up to cameras x max_people crops, or one per image without a
        detector), so the runtimes' memory reaches its ceiling now (OnnxRuntimeRunner.warm_up).
        Returns the batch sizes run per network."""
        crops = cameras * (self.config.max_people if self.detector_runner is not None else 1)
        sizes = {"pose": warm_up_runner(self.pose_runner, crops)}
        if self.detector_runner is not None:
            sizes["detector"] = warm_up_runner(self.detector_runner, cameras)
        return sizes

    def reset(self, stream: str | None = None) -> None:
        """Forget tracked boxes (of one stream, or all): the next frame runs the detector."""
        for table in (self._tracked, self._frames):
            if stream is None:
                table.clear()
            else:
                table.pop(stream, None)

    def close(self) -> None:
        for runner in (self.pose_runner, self.detector_runner):
            if runner is not None and hasattr(runner, "close"):
                runner.close()

    # --- steps ---------------------------------------------------------------------------------------
    def _decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        m = self.pose_manifest
        if m.output == "heatmap":
            heatmaps = outputs[0]
            points, scores = decode_heatmaps(heatmaps, refine=self.config.heatmap_refine)
            h, w = heatmaps.shape[-2:]
            return heatmap_to_input(points, (w, h), m.input_size), scores
        if len(outputs) < 2:
            raise ValueError(f"pose model {m.name}: SimCC output needs two tensors (x, y), got {len(outputs)}")
        return decode_simcc(outputs[0], outputs[1], m.simcc_split_ratio)

    def _boxes(self, images: list[np.ndarray], streams: list[str]) -> list[np.ndarray]:
        """Person boxes (P_i, 4) per image: detector when due, tracked boxes otherwise."""
        boxes: list[np.ndarray | None] = [None] * len(images)
        due = []
        for i, stream in enumerate(streams):
            tracked = self._tracked.get(stream)
            fresh = self._frames.get(stream, 0) % self.config.detect_every != 0
            if self.detector_runner is not None and tracked is not None and len(tracked) and fresh:
                boxes[i] = tracked
            else:
                due.append(i)
            self._frames[stream] = self._frames.get(stream, 0) + 1
        if due:
            detected = self._detect([images[i] for i in due])
            for i, b in zip(due, detected):
                boxes[i] = b
        return boxes

    def _detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if self.detector_runner is None:  # whole image = one person
            return [np.array([[0.0, 0.0, img.shape[1] - 1.0, img.shape[0] - 1.0]]) for img in images]
        m, c = self.detector_manifest, self.config
        padded, scales = zip(*(letterbox(img, m.input_size) for img in images))
        outputs = self.detector_runner.run(to_network_input(np.stack(padded), m.mean, m.std, m.color))
        scales = np.asarray(scales, dtype=np.float64)
        if m.output == "yolox":
            found = decode_yolox(outputs[0], m.input_size, scales, strides=tuple(m.strides),
                                 score_threshold=c.box_score_threshold, nms_threshold=c.nms_threshold)
        else:
            found = decode_end2end(outputs[0], outputs[1], scales, score_threshold=c.box_score_threshold)
        result = []
        for img, (b, s) in zip(images, found):
            b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[np.argsort(-np.asarray(s))[: c.max_people]]
            h, w = img.shape[:2]
            b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w - 1)
            b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h - 1)
            keep = (b[:, 2] - b[:, 0] > 2) & (b[:, 3] - b[:, 1] > 2)
            result.append(b[keep])
        return result

    def _remember(self, stream: str, points: np.ndarray, scores: np.ndarray) -> None:
        """Boxes around this frame's people, for frames where the detector is skipped."""
        if self.detector_runner is None or self.config.detect_every == 1:
            return
        c = self.config
        alive = np.nan_to_num(scores).mean(axis=1) >= c.min_people_score if len(scores) else np.zeros(0, bool)
        boxes = boxes_from_keypoints(points[alive], scores[alive], min_score=c.track_min_score)
        self._tracked[stream] = boxes[np.isfinite(boxes).all(axis=1)]
