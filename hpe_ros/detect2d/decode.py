"""Keypoint decoding for top-down 2D pose networks: heatmaps (argmax + DARK / quarter-pixel refinement)
and SimCC (RTMPose). Batched over persons × joints.

Coordinates are pixel coordinates with pixel centres at integers (see :mod:`hpe_ros.detect2d.preprocess`):
:func:`decode_heatmaps` returns heatmap px, :func:`heatmap_to_input` turns them into network-input px,
:func:`decode_simcc` returns network-input px directly. Map input px back to the image with
``apply_affines(points, invert_affines(affines))``.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from hpe_ros.checks import check_shape

_REFINES = ("none", "quarter", "dark")


def _flat_argmax(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise argmax and max of (M, K), ignoring NaN. -> idx (M,) int, vals (M,) (-inf for all-NaN rows)."""
    m = len(flat)
    idx = flat.argmax(axis=1)
    vals = flat[np.arange(m), idx].astype(np.float64)
    # argmax returns the first NaN; redo only those rows with NaN treated as -inf (rare, so no full copy).
    nan_rows = np.flatnonzero(np.isnan(vals))
    if nan_rows.size:
        sub = flat[nan_rows].astype(np.float64)
        sub[np.isnan(sub)] = -np.inf
        idx[nan_rows] = sub.argmax(axis=1)
        vals[nan_rows] = sub[np.arange(nan_rows.size), idx[nan_rows]]
    return idx, vals


@lru_cache(maxsize=16)
def _blur_band(kernel: int) -> np.ndarray:
    """(kernel + 2, 3) matrix B with ``(row @ B)[j]`` = the Gaussian-blurred row at neighbour j-1 of the centre.

    Uses cv2.getGaussianKernel(kernel, 0), i.e. the same weights as cv2.GaussianBlur(.., (k, k), 0).
    """
    g = cv2.getGaussianKernel(kernel, 0, ktype=cv2.CV_64F).ravel()
    band = np.zeros((kernel + 2, 3))
    for j in range(3):
        band[j:j + kernel, j] = g
    band.flags.writeable = False
    return band


def _dark_offsets(flat: np.ndarray, px: np.ndarray, py: np.ndarray, h: int, w: int,
                  kernel: int) -> np.ndarray:
    """DARK sub-pixel offsets (M, 2) at integer peaks (px, py) of maps ``flat`` (M, h*w); 0 where skipped.

    DARK blurs the whole map, takes the log and expands it to second order at the peak. Only the blurred
    3×3 neighbourhood of the peak enters the expansion, so we blur just the (kernel+2)² window around each
    peak (zero outside the map, as mmpose's padded blur), which is exact and ~100× cheaper than blurring
    every map. mmpose also rescales the blurred map to keep its maximum; that is a constant factor, i.e.
    an additive constant after the log, and drops out of the gradient and Hessian, so it is skipped.
    """
    m = len(flat)
    band = _blur_band(kernel)  # kernel 1: identity (no blur)
    r = kernel // 2 + 1
    offs = np.arange(-r, r + 1)
    ys, xs = py[:, None] + offs, px[:, None] + offs  # (M, 2r+1)
    inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    lin = np.clip(ys, 0, h - 1)[:, :, None] * w + np.clip(xs, 0, w - 1)[:, None, :]
    win = flat[np.arange(m)[:, None, None], lin]  # (M, 2r+1, 2r+1) gather
    win = np.where(inside, win, 0.0).astype(np.float64)
    blurred = band.T @ (win @ band)  # (M, 3, 3): rows y-1..y+1, columns x-1..x+1
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        lg = np.log(np.maximum(blurred, 1e-10))
        dx = 0.5 * (lg[:, 1, 2] - lg[:, 1, 0])
        dy = 0.5 * (lg[:, 2, 1] - lg[:, 0, 1])
        dxx = lg[:, 1, 2] - 2.0 * lg[:, 1, 1] + lg[:, 1, 0]
        dyy = lg[:, 2, 1] - 2.0 * lg[:, 1, 1] + lg[:, 0, 1]
        dxy = 0.25 * (lg[:, 2, 2] - lg[:, 0, 2] - lg[:, 2, 0] + lg[:, 0, 0])
        det = dxx * dyy - dxy * dxy
        # Newton step -H^-1 g with the closed-form 2×2 inverse.
        off = np.stack([-(dyy * dx - dxy * dy) / det, -(dxx * dy - dxy * dx) / det], axis=1)
    # A maximum needs a negative definite Hessian; a border peak has no full neighbourhood.
    ok = (dxx < 0) & (det > 0) & (px >= 1) & (px <= w - 2) & (py >= 1) & (py <= h - 2)
    ok &= np.isfinite(off).all(axis=1)
    return np.where(ok[:, None], np.clip(off, -1.0, 1.0), 0.0)


def _quarter_offsets(flat: np.ndarray, px: np.ndarray, py: np.ndarray, h: int, w: int) -> np.ndarray:
    """Classic quarter-pixel shift (M, 2) toward the higher neighbour along each axis; 0 at the border."""
    rows = np.arange(len(flat))

    def at(y, x):
        return flat[rows, np.clip(y, 0, h - 1) * w + np.clip(x, 0, w - 1)].astype(np.float64)

    dx = np.where((px >= 1) & (px <= w - 2), at(py, px + 1) - at(py, px - 1), 0.0)
    dy = np.where((py >= 1) & (py <= h - 2), at(py + 1, px) - at(py - 1, px), 0.0)
    return 0.25 * np.sign(np.nan_to_num(np.stack([dx, dy], axis=1)))


def decode_heatmaps(heatmaps: np.ndarray, refine: str = "dark", blur_kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps -> keypoints at the maximum of each map, with sub-pixel refinement.

    Args:
        heatmaps: (N, J, h, w) float, one map per person and joint.
        refine: "none" (integer argmax), "quarter" (shift 0.25 px toward the higher neighbour per axis),
            or "dark" (Zhang et al., CVPR 2020: Gaussian-blur, log, second-order Taylor expansion at the
            argmax; offset clipped to ±1 px; skipped where the Hessian is not negative definite or the
            peak is on the border).
        blur_kernel: odd DARK blur size; should match the training Gaussian (mmpose: 11 for sigma 2 on
            64×48 maps, 17 for sigma 3); 1 disables the blur.

    Returns:
        points: (N, J, 2) float64 (x, y) in heatmap px (pixel centres at integers); NaN where the map has
            no positive maximum (all zero / negative / NaN).
        scores: (N, J) float64, map value at the integer peak clipped to [0, 1]; 0 where points are NaN.
    """
    hm = np.asarray(heatmaps)
    check_shape("heatmaps", hm, ("N", "J", "h", "w"))
    if refine not in _REFINES:
        raise ValueError(f"refine must be one of {_REFINES}; got {refine!r}")
    if refine == "dark" and (int(blur_kernel) != blur_kernel or blur_kernel < 1 or blur_kernel % 2 == 0):
        raise ValueError(f"blur_kernel must be an odd positive integer; got {blur_kernel}")
    n, j, h, w = hm.shape
    if h < 1 or w < 1:
        raise ValueError(f"heatmaps must be at least 1×1; got {hm.shape}")
    if not np.issubdtype(hm.dtype, np.floating):
        hm = hm.astype(np.float32)
    if n * j == 0:
        return np.zeros((n, j, 2)), np.zeros((n, j))
    flat = hm.reshape(n * j, h * w)
    idx, vals = _flat_argmax(flat)
    py, px = np.divmod(idx, w)
    points = np.stack([px, py], axis=1).astype(np.float64)
    if refine == "dark":
        points += _dark_offsets(flat, px, py, h, w, int(blur_kernel))
    elif refine == "quarter":
        points += _quarter_offsets(flat, px, py, h, w)
    valid = vals > 0  # False for NaN / -inf too
    points[~valid] = np.nan
    scores = np.where(valid, np.clip(vals, 0.0, 1.0), 0.0)
    return points.reshape(n, j, 2), scores.reshape(n, j)


def heatmap_to_input(points: np.ndarray, heatmap_size: Sequence[int], input_size: Sequence[int],
                     udp: bool = False) -> np.ndarray:
    """Heatmap px -> network-input px.

    Default: mmpose's MSRAHeatmap convention, ``input = heatmap_px * input_size / heatmap_size`` (pairs with
    ``crop_affines(..., udp=False)``). ``udp=True``: ``heatmap_px * (input_size - 1) / (heatmap_size - 1)``,
    which with ``crop_affines(..., udp=True)`` reproduces mmpose's UDPHeatmap decoding in image px.

    Args:
        points: (N, J, 2) (x, y) heatmap px; NaN stays NaN.
        heatmap_size, input_size: (w, h).

    Returns:
        (N, J, 2) float64 input px.
    """
    points = np.asarray(points, dtype=np.float64)
    check_shape("points", points, ("N", "J", 2))
    hs = np.asarray(heatmap_size, dtype=np.float64).reshape(-1)
    ins = np.asarray(input_size, dtype=np.float64).reshape(-1)
    if hs.shape != (2,) or ins.shape != (2,) or np.any(hs < (2 if udp else 1)) or np.any(ins < 1):
        raise ValueError(f"heatmap_size and input_size must be positive (w, h); got {heatmap_size}, {input_size}")
    factor = (ins - 1.0) / (hs - 1.0) if udp else ins / hs
    return points * factor


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = 2.0, normalize: bool = False,
                 beta: float = 1.0, score_mode: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """SimCC (RTMPose) 1-D classification vectors -> keypoints in network-input px.

    Args:
        simcc_x: (N, J, Wx), Wx = input width × split_ratio bins.
        simcc_y: (N, J, Hy), Hy = input height × split_ratio bins.
        split_ratio: bins per input pixel.
        normalize: apply a softmax (of ``beta`` × values) along each axis first. Use it when the model's
            raw outputs are unnormalised logits and you want scores that are comparable across models /
            thresholdable as probabilities (mmpose does this with beta=150 for its visibility output);
            RTMPose's raw maxima are already usable as confidences, which is what the default keeps.
        beta: softmax temperature factor, only with ``normalize``.
        score_mode: "mean" = 0.5 (max_x + max_y) (rtmlib, early mmpose 1.x); "min" = min(max_x, max_y)
            (current mmpose ``get_simcc_maximum``).

    Returns:
        points: (N, J, 2) float64 (x, y) = argmax bin / split_ratio in input px; NaN where either axis'
            maximum is <= 0 (or NaN).
        scores: (N, J) float64 clipped to [0, 1]; 0 where points are NaN.
    """
    sx, sy = np.asarray(simcc_x), np.asarray(simcc_y)
    dims = check_shape("simcc_x", sx, ("N", "J", "Wx"))
    check_shape("simcc_y (same N, J as simcc_x)", sy, ("N", "J", "Hy"), dims)
    if sx.shape[2] < 1 or sy.shape[2] < 1:
        raise ValueError(f"SimCC vectors must have at least one bin; got {sx.shape} and {sy.shape}")
    if not split_ratio > 0:
        raise ValueError(f"split_ratio must be positive; got {split_ratio}")
    if score_mode not in ("mean", "min"):
        raise ValueError(f"score_mode must be 'mean' or 'min'; got {score_mode!r}")
    n, j = sx.shape[:2]
    if n * j == 0:
        return np.zeros((n, j, 2)), np.zeros((n, j))

    def axis_max(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = v.reshape(n * j, -1)
        if normalize:
            v = v.astype(np.float64) * beta
            v = np.where(np.isnan(v), -np.inf, v)
            with np.errstate(invalid="ignore"):  # all -inf rows give NaN, handled as invalid below
                e = np.exp(v - v.max(axis=1, keepdims=True))
                v = e / e.sum(axis=1, keepdims=True)
        return _flat_argmax(v)

    ix, mx = axis_max(sx)
    iy, my = axis_max(sy)
    points = np.stack([ix, iy], axis=1) / float(split_ratio)
    vals = 0.5 * (mx + my) if score_mode == "mean" else np.minimum(mx, my)
    valid = (mx > 0) & (my > 0)
    points[~valid] = np.nan
    scores = np.where(valid, np.clip(vals, 0.0, 1.0), 0.0)
    return points.reshape(n, j, 2), scores.reshape(n, j)
