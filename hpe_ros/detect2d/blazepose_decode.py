"""BlazePose maths, batched numpy: detector anchors and decoding, weighted NMS, rotated ROIs, landmarks.

The constants and formulas are those of mediapipe 0.10.14's pose graphs (the subgraphs compiled into its
wheel: PoseDetectionCpu, PoseDetectionToRoi, PoseLandmarkByRoiCpu, TensorsToPoseLandmarksAndSegmentation,
PoseLandmarksToRoi), so the networks see what they were trained on.

Coordinates: image and network-input pixels with pixel (i, j)'s centre at (i, j), as cv2.warpAffine uses.
A ROI is (cx, cy, size, angle): a square of `size` px centred on (cx, cy) in image px, rotated by `angle`
radians (image y down, so positive angles turn clockwise on screen); its crop maps the square's corners
onto the network input's corners (MediaPipe's ImageToTensorCalculator).
"""
from __future__ import annotations

import numpy as np

from hpe_ros.checks import check_shape
from hpe_ros.detect2d.boxes import box_iou

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
NUM_LANDMARKS = 33               # blazepose33; the network also returns 2 alignment + 4 extra points (39)
HIP_CENTER, SCALE_POINT = 33, 34  # alignment landmarks that place the next frame's ROI
# SsdAnchorsCalculator: 5 layers, 2 anchors per layer and cell (aspect 1 and the interpolated scale), fixed
# size; layers with the same stride share one grid -> 28x28x2 + 14x14x2 + 7x7x6 = 2254 anchors.
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
SCORE_CLIP = 100.0               # TensorsToDetectionsCalculator: logits clipped before the sigmoid
DETECTION_KEYPOINTS = 4          # 0 hip centre, 1 body-scale point, 2 shoulder centre, 3 upper-body scale point
ROI_SCALE = 1.25                 # RectTransformationCalculator: square_long, scale 1.25
HEATMAP_KERNEL = 7               # RefineLandmarksFromHeatmapCalculator
HEATMAP_MIN_CONFIDENCE = 0.5
# PoseLandmarkFiltering: the alignment landmarks that place the next ROI always pass a One-Euro filter
# (heavier than the landmarks' own), so a still person's crop stays still.
ROI_FILTER = dict(min_cutoff=0.01, beta=10.0, derivative_cutoff=1.0)
FRAME_PERIOD_S = 1 / 30          # the filter's time step per frame (MediaPipe's solution API assumes 30 fps)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function without exp overflow


def ssd_anchors(input_size: int = DETECTOR_SIZE, strides: tuple = ANCHOR_STRIDES) -> np.ndarray:
    """Anchor centres (A, 2) normalised x, y in the detector input, in the network's output order."""
    centres = []
    layer = 0
    while layer < len(strides):
        same = 1
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        side = int(np.ceil(input_size / strides[layer]))
        y, x = np.meshgrid((np.arange(side) + 0.5) / side, (np.arange(side) + 0.5) / side, indexing="ij")
        grid = np.stack([x.ravel(), y.ravel()], axis=1)
        centres.append(np.repeat(grid, 2 * same, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, min_score: float,
                      input_size: int = DETECTOR_SIZE) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Detector outputs -> per image (scores (N,), boxes (N, 4) xyxy, keypoints (N, 4, 2)) in input px.

    raw_boxes: (B, A, 12) x, y, w, h offsets then 4 keypoints x, y (input px, relative to the anchor);
    raw_scores: (B, A, 1) logits. Only anchors scoring >= min_score are kept (no NMS here).
    """
    dims = check_shape("raw_boxes", raw_boxes, ("B", "A", 4 + 2 * DETECTION_KEYPOINTS))
    check_shape("raw_scores", raw_scores, ("B", "A", 1), dims)
    check_shape("anchors", anchors, ("A", 2), dims)
    scores = sigmoid(np.clip(raw_scores[..., 0], -SCORE_CLIP, SCORE_CLIP))
    centre_px = anchors * input_size
    out = []
    for b in range(dims["B"]):
        keep = np.flatnonzero(scores[b] >= min_score)
        raw, anchor = raw_boxes[b, keep], centre_px[keep]
        centre, half = raw[:, :2] + anchor, raw[:, 2:4] / 2
        keypoints = raw[:, 4:].reshape(-1, DETECTION_KEYPOINTS, 2) + anchor[:, None]
        out.append((scores[b, keep], np.concatenate([centre - half, centre + half], axis=1), keypoints))
    return out


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray,
                 iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-maximum suppression: each kept detection is the score-weighted mean of the
    boxes and keypoints that overlap the best remaining one by more than `iou_threshold` (score: the best's).

    scores (N,), boxes (N, 4), keypoints (N, K, 2) -> the same with M <= N rows, best first.
    """
    order = np.argsort(-scores, kind="stable")
    out_scores, out_boxes, out_keypoints = [], [], []
    while len(order):
        top = order[0]
        overlap = box_iou(boxes[top], boxes[order]) > iou_threshold
        members, order = order[overlap | (order == top)], order[~(overlap | (order == top))]
        w = scores[members] / scores[members].sum()
        out_scores.append(scores[top])
        out_boxes.append(w @ boxes[members])
        out_keypoints.append(np.einsum("n,nkd->kd", w, keypoints[members]))
    if not out_scores:
        return scores[:0], boxes[:0], keypoints[:0]
    return np.array(out_scores), np.stack(out_boxes), np.stack(out_keypoints)


def letterbox_affine(image_size: tuple[int, int], input_size: int = DETECTOR_SIZE) -> np.ndarray:
    """(2, 3) image px -> detector input px: the whole image centred in a square of its longer side."""
    w, h = image_size
    side = float(max(w, h))
    s = input_size / side
    return np.array([[s, 0.0, (side - w) / 2 * s], [0.0, s, (side - h) / 2 * s]])


def rois_from_alignment(centre: np.ndarray, scale_point: np.ndarray, roi_scale: float = ROI_SCALE) -> np.ndarray:
    """Person ROIs (N, 4) cx, cy, size, angle from the hip centre and body-scale point (N, 2) image px.

    The square's side is 2 * |scale_point - centre| * roi_scale; the angle turns the hip->scale-point
    direction to straight up (AlignmentPointsRectsCalculator, target angle 90 degrees).
    """
    check_shape("centre", centre, ("N", 2))
    check_shape("scale_point", scale_point, (len(centre), 2))
    d = scale_point - centre
    size = 2.0 * np.hypot(d[:, 0], d[:, 1]) * roi_scale
    angle = np.pi / 2 - np.arctan2(-d[:, 1], d[:, 0])
    angle = angle - 2 * np.pi * np.floor((angle + np.pi) / (2 * np.pi))  # to [-pi, pi)
    return np.stack([centre[:, 0], centre[:, 1], size, angle], axis=1)


def roi_affines(rois: np.ndarray, input_size: int = LANDMARK_SIZE) -> np.ndarray:
    """(N, 2, 3) image px -> crop px for ROIs (N, 4): corners of the rotated square onto the crop's corners."""
    check_shape("rois", rois, ("N", 4))
    cx, cy, size, angle = rois.T
    k = input_size / np.maximum(size, 1e-6)
    cos, sin = np.cos(angle) * k, np.sin(angle) * k
    affines = np.empty((len(rois), 2, 3))
    affines[:, 0, 0], affines[:, 0, 1] = cos, sin          # k * R(-angle)
    affines[:, 1, 0], affines[:, 1, 1] = -sin, cos
    affines[:, 0, 2] = input_size / 2 - (cos * cx + sin * cy)
    affines[:, 1, 2] = input_size / 2 - (-sin * cx + cos * cy)
    return affines


def roi_boxes(rois: np.ndarray) -> np.ndarray:
    """Axis-aligned xyxy boxes (N, 4) of the ROIs' squares, ignoring rotation (to compare people)."""
    half = rois[:, 2:3] / 2
    return np.concatenate([rois[:, :2] - half, rois[:, :2] + half], axis=1)


def refine_with_heatmap(xy: np.ndarray, heatmaps: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN_CONFIDENCE) -> np.ndarray:
    """MediaPipe's heatmap refinement: each landmark moves to the sigmoid-weighted mean cell of the
    kernel x kernel window around it, where the window's peak confidence reaches `min_confidence`.

    xy: (N, L, 2) normalised crop coordinates; heatmaps: (N, h, w, L) logits -> refined xy (N, L, 2).
    """
    n, h, w, nl = heatmaps.shape
    check_shape("xy", xy, (n, nl, 2))
    half = (kernel - 1) // 2
    col = np.trunc(xy[..., 0] * w).astype(np.int64)    # C++ float -> int truncation, as MediaPipe does
    row = np.trunc(xy[..., 1] * h).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    offsets = np.arange(-half, half + 1)
    rows = np.clip(row, 0, h - 1)[..., None] + offsets                              # (N, L, k) cell index
    cols = np.clip(col, 0, w - 1)[..., None] + offsets
    # Only the windows pass the sigmoid; cells beyond the border count as zero (MediaPipe shrinks the kernel).
    logits = heatmaps[np.arange(n)[:, None, None, None], np.clip(rows, 0, h - 1)[..., :, None],
                      np.clip(cols, 0, w - 1)[..., None, :], np.arange(nl)[None, :, None, None]]  # (N, L, k, k)
    on_map = ((rows >= 0) & (rows < h))[..., :, None] & ((cols >= 0) & (cols < w))[..., None, :]
    window = np.where(on_map, sigmoid(logits), 0.0)
    total = window.sum(axis=(2, 3))
    mean_row = (window.sum(axis=3) * rows).sum(axis=2) / np.where(total > 0, total, 1)
    mean_col = (window.sum(axis=2) * cols).sum(axis=2) / np.where(total > 0, total, 1)
    use = inside & (window.max(axis=(2, 3)) >= min_confidence) & (total > 0)
    refined = xy.copy()
    refined[..., 0] = np.where(use, mean_col / w, xy[..., 0])
    refined[..., 1] = np.where(use, mean_row / h, xy[..., 1])
    return refined


def decode_landmarks(raw: np.ndarray, heatmaps: np.ndarray | None = None,
                     input_size: int = LANDMARK_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmark-network outputs -> (xy (N, 39, 2) normalised crop coords, visibility (N, 39), presence (N, 39)).

    raw: (N, 39 * 5) x, y, z (crop px), visibility and presence logits; heatmaps: (N, 64, 64, 39) logits
    for MediaPipe's sub-pixel refinement (None: the regressed coordinates as they are).
    """
    check_shape("raw", raw, ("N", "L5"))
    values = raw.reshape(len(raw), -1, 5)
    xy = values[..., :2] / input_size
    if heatmaps is not None:
        xy = refine_with_heatmap(xy, heatmaps)
    return xy, sigmoid(values[..., 3]), sigmoid(values[..., 4])


def _alpha(cutoff, dt: float):
    return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))


def smooth_alignment(raw: np.ndarray, state: np.ndarray, dt: float = FRAME_PERIOD_S,
                     min_cutoff: float = ROI_FILTER["min_cutoff"], beta: float = ROI_FILTER["beta"],
                     derivative_cutoff: float = ROI_FILTER["derivative_cutoff"]) -> tuple[np.ndarray, np.ndarray]:
    """One One-Euro step (LandmarksSmoothingCalculator) for each person's alignment points.

    raw: (N, K, 2) image px; state: (N, 3, K, 2) last raw value, filtered value, filtered derivative, NaN
    for a person seen for the first time (who passes unfiltered). Speeds are measured in object scales
    per second, the object scale being the unscaled ROI side (2 |scale point - hip centre|).
    Returns (filtered (N, K, 2), new state (N, 3, K, 2)).
    """
    check_shape("state", state, (len(raw), 3) + raw.shape[1:])
    last, filtered, derivative = state[:, 0], state[:, 1], state[:, 2]
    fresh = np.isnan(last).any(axis=(1, 2))[:, None, None]
    scale = 2 * np.hypot(*(raw[:, 1] - raw[:, 0]).T)[:, None, None]
    speed = np.where(fresh, 0.0, (raw - last) / np.maximum(scale, 1e-6) / dt)
    a = _alpha(derivative_cutoff, dt)
    speed = np.where(fresh, speed, a * speed + (1 - a) * derivative)
    a = _alpha(min_cutoff + beta * np.abs(speed), dt)
    out = np.where(fresh, raw, a * raw + (1 - a) * filtered)
    return out, np.stack([raw, out, speed], axis=1)


def crop_to_image(xy: np.ndarray, rois: np.ndarray) -> np.ndarray:
    """Normalised crop coordinates (N, L, 2) -> image px through each ROI (N, 4) (LandmarkProjectionCalculator)."""
    check_shape("rois", rois, (len(xy), 4))
    cx, cy, size, angle = (v[:, None] for v in rois.T)
    u, v = (xy[..., 0] - 0.5) * size, (xy[..., 1] - 0.5) * size
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([cx + cos * u - sin * v, cy + sin * u + cos * v], axis=-1)
