"""Person-detector output decoding (YOLOX raw head, mmdeploy end2end), NMS, and boxes from keypoints.

Boxes are (x0, y0, x1, y1) in pixel coordinates. Detector inputs are letterboxed with
:func:`hpe_ros.detect2d.preprocess.letterbox` (image at the top-left, ``image px = letterbox px / scale``),
so decoding only divides by each image's scale.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from hpe_ros.checks import check_shape


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of boxes (..., 4) -> (...); 0 for inverted boxes."""
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with boxes (N, 4) -> (N,); 0 where the union is empty."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    union = box_area(box) + box_area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) xyxy; scores: (N,). Boxes or scores that are not finite are dropped.
        iou_threshold: a box is suppressed when its IoU with a kept, higher-scoring box exceeds this.

    Returns:
        keep: (K,) int64 indices into boxes, in descending score order.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    dims = check_shape("boxes", boxes, ("N", 4))
    check_shape("scores", scores, ("N",), dims)
    finite = np.isfinite(scores) & np.isfinite(boxes).all(axis=1)
    order = np.flatnonzero(finite)
    order = order[np.argsort(-scores[order], kind="stable")]
    keep = []
    # One vectorised IoU row per kept box; the loop runs at most (number of kept boxes) times.
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


@lru_cache(maxsize=8)
def _yolox_grid(input_size: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """YOLOX anchor points: grid (A, 2) cell (x, y) and stride (A,), strides in order, each grid row-major."""
    w, h = input_size
    grids, strs = [], []
    for s in strides:
        gh, gw = h // s, w // s
        yv, xv = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack([xv.ravel(), yv.ravel()], axis=1))
        strs.append(np.full(gh * gw, float(s)))
    grid, stride = np.concatenate(grids).astype(np.float64), np.concatenate(strs)
    grid.flags.writeable = stride.flags.writeable = False
    return grid, stride


def _scales_and_sizes(scales, batch: int, image_sizes) -> tuple[np.ndarray, list | None]:
    scales = np.asarray(scales, dtype=np.float64).reshape(-1)
    if scales.size == 1:
        scales = np.repeat(scales, batch)
    if scales.shape != (batch,) or not np.all(scales > 0):
        raise ValueError(f"scales must be ({batch},) positive letterbox scales; got {scales.tolist()}")
    if image_sizes is not None:
        image_sizes = list(image_sizes)
        if len(image_sizes) != batch:
            raise ValueError(f"image_sizes must have {batch} (w, h) entries; got {len(image_sizes)}")
    return scales, image_sizes


def _finish(boxes: np.ndarray, scores: np.ndarray, scale: float, size) -> tuple[np.ndarray, np.ndarray]:
    boxes = boxes / scale
    if size is not None:
        w, h = size
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0.0, float(w))
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0.0, float(h))
    return boxes, scores


def decode_yolox(raw: np.ndarray, input_size: Sequence[int], scales: np.ndarray,
                 strides: Sequence[int] = (8, 16, 32), score_threshold: float = 0.3, nms_threshold: float = 0.45,
                 class_id: int | None = 0, image_sizes: Sequence[Sequence[int]] | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode a YOLOX export without decode-in-inference (the common ONNX export) into person boxes.

    The head's output per anchor is (dx, dy, log w, log h, objectness, class probabilities...), with
    objectness and classes already sigmoid-ed; anchors are the cells of the stride-8, -16, -32 grids in
    that order, each (h/s × w/s) row-major. Centre = (raw_xy + cell) × stride, size = exp(raw_wh) × stride.

    Args:
        raw: (B, A, 5 + C) detector output in letterbox px.
        input_size: (w, h) of the detector input.
        scales: (B,) letterbox scales (image px = letterbox px / scale), or one scalar for all.
        strides: feature strides, in the order of the anchors.
        score_threshold: keep boxes with obj × cls[class_id] above this.
        nms_threshold: NMS IoU threshold.
        class_id: class to keep (COCO person = 0); None keeps every class, scored by its best class
            (class-agnostic NMS).
        image_sizes: optional (w, h) per image to clip the boxes to.

    Returns:
        one (boxes (n, 4) xyxy image px float64, scores (n,) float64) per image, descending score.
    """
    raw = np.asarray(raw)
    if raw.ndim != 3 or raw.shape[2] < 6:
        raise ValueError(f"raw YOLOX output must have shape (B, A, 5 + C); got {raw.shape}")
    w, h = (int(v) for v in input_size)
    grid, stride = _yolox_grid((w, h), tuple(int(s) for s in strides))
    if raw.shape[1] != len(grid):
        raise ValueError(f"raw YOLOX output has {raw.shape[1]} anchors but input {w}×{h} with strides "
                         f"{tuple(strides)} gives {len(grid)}; is it an export with decode_in_inference?")
    num_classes = raw.shape[2] - 5
    if class_id is not None and not 0 <= class_id < num_classes:
        raise ValueError(f"class_id {class_id} out of range for {num_classes} classes")
    scales, image_sizes = _scales_and_sizes(scales, len(raw), image_sizes)
    out = []
    for b in range(len(raw)):  # a handful of images; everything per image is vectorised
        obj = raw[b, :, 4].astype(np.float64)
        cls = raw[b, :, 5 + class_id] if class_id is not None else raw[b, :, 5:].max(axis=1)
        score = obj * cls
        cand = np.flatnonzero(score > score_threshold)  # decode only candidates
        r = raw[b, cand, :4].astype(np.float64)
        centre = (r[:, :2] + grid[cand]) * stride[cand, None]
        size = np.exp(np.minimum(r[:, 2:4], 30.0)) * stride[cand, None]  # cap: no overflow on garbage
        boxes = np.concatenate([centre - 0.5 * size, centre + 0.5 * size], axis=1)
        keep = nms(boxes, score[cand], nms_threshold)
        out.append(_finish(boxes[keep], score[cand][keep], scales[b], None if image_sizes is None else image_sizes[b]))
    return out


def decode_end2end(dets: np.ndarray, labels: np.ndarray, scales: np.ndarray, score_threshold: float = 0.3,
                   class_id: int | None = 0, image_sizes: Sequence[Sequence[int]] | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode an mmdeploy end2end detector (e.g. RTMDet): NMS is already in the graph.

    Args:
        dets: (B, N, 5) x0, y0, x1, y1, score in letterbox px (padding rows have score 0).
        labels: (B, N) int class ids.
        scales: (B,) letterbox scales, or one scalar for all.
        score_threshold: keep detections scoring above this.
        class_id: class to keep (person = 0); None keeps all.
        image_sizes: optional (w, h) per image to clip the boxes to.

    Returns:
        one (boxes (n, 4) xyxy image px float64, scores (n,) float64) per image, descending score.
    """
    dets = np.asarray(dets)
    labels = np.asarray(labels)
    dims = check_shape("dets", dets, ("B", "N", 5))
    check_shape("labels", labels, ("B", "N"), dims)
    scales, image_sizes = _scales_and_sizes(scales, len(dets), image_sizes)
    out = []
    for b in range(len(dets)):
        d = dets[b].astype(np.float64)
        m = np.isfinite(d).all(axis=1) & (d[:, 4] > score_threshold)
        if class_id is not None:
            m &= labels[b] == class_id
        d = d[m]
        d = d[np.argsort(-d[:, 4], kind="stable")]
        out.append(_finish(d[:, :4], d[:, 4], scales[b], None if image_sizes is None else image_sizes[b]))
    return out


def boxes_from_keypoints(points: np.ndarray, scores: np.ndarray, min_score: float = 0.3,
                         margin: float = 0.1) -> np.ndarray:
    """Boxes around each person's confident keypoints, e.g. to track people between detector runs.

    Args:
        points: (P, J, 2) image px (NaN = missing).
        scores: (P, J) keypoint confidences; a keypoint counts when finite and score >= min_score.
        margin: the box grows by margin × its width (height) on the left and right (top and bottom).

    Returns:
        (P, 4) xyxy image px; NaN rows for persons with fewer than 2 confident keypoints.
    """
    points = np.asarray(points, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    dims = check_shape("points", points, ("P", "J", 2))
    check_shape("scores", scores, ("P", "J"), dims)
    conf = (scores >= min_score) & np.isfinite(points).all(axis=2)
    # +/-inf fill instead of nanmin/nanmax: no warnings for persons without keypoints.
    lo = np.where(conf[:, :, None], points, np.inf).min(axis=1, initial=np.inf)
    hi = np.where(conf[:, :, None], points, -np.inf).max(axis=1, initial=-np.inf)
    with np.errstate(invalid="ignore"):  # rows without keypoints become NaN just below
        size = hi - lo
        boxes = np.concatenate([lo - margin * size, hi + margin * size], axis=1)
    boxes[conf.sum(axis=1) < 2] = np.nan
    return boxes
