"""What a lifter sees and what it answers, independent of camera and person size.

Input (one view, one person): pixels -> normalised image coordinates x = K^-1 [u, v, 1] (so any
camera looks the same), centred on the 2D root c (mid-hip, or the confidence-weighted centroid when a hip
is missing) and divided by the 2D spread s (confidence-weighted RMS distance from c). The network gets
`net_input` (N, J + 1, 3): rows 0..J-1 = (p_x, p_y, confidence) with p = (x - c) / s (0 where unseen),
row J = (c_x, c_y, 0), the viewing ray of the root, which is all the perspective a pose needs.

Output: a scale-free shape Q (N, J, 3), root-relative at the mid-hip, and log m, where the metric pose in
the camera frame is P_rel = m Q and m = Z_root * s (Z_root: depth of the mid-hip). With that choice Q's
x, y are close to the input p (weak perspective) and the network mostly has to find depth; the single
number m carries all of the metric scale (the "scale prior" head) and places the person: Z_root = m / s.

Shapes: N samples, J joints. Arrays are numpy here; `torch_*` twins serve training losses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpe_ros.checks import check_shape
from hpe_ros.skeleton import Layout

MIN_SCORE = 0.05   # joints below this confidence count as unseen
MIN_JOINTS = 4     # fewer seen joints: the person is not lifted
_EPS = 1e-9


@dataclass
class Normalised:
    """A batch of normalised 2D skeletons (see the module docstring).

    net_input (N, J + 1, 3) float32; centre (N, 2) root ray c; spread (N,) s; rays (N, J, 2) normalised image
    coordinates of every joint (NaN where unseen); weights (N, J) confidences used (0 = unseen); ok (N,)
    enough joints to lift.
    """

    net_input: np.ndarray
    centre: np.ndarray
    spread: np.ndarray
    rays: np.ndarray
    weights: np.ndarray
    ok: np.ndarray


def hip_indices(layout: Layout) -> tuple[int, int]:
    return layout.index("left_hip"), layout.index("right_hip")


def to_rays(points2d: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels (N, J, 2) with K (3, 3) or (N, 3, 3) -> normalised image coordinates (N, J, 2)."""
    K = np.asarray(K, dtype=np.float64)
    K = np.broadcast_to(K, (points2d.shape[0], 3, 3)) if K.ndim == 2 else K
    f = np.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None]          # (N, 1, 2)
    c = np.stack([K[:, 0, 2], K[:, 1, 2]], -1)[:, None]
    skew = K[:, 0, 1][:, None]
    y = (points2d[..., 1] - c[..., 1]) / f[..., 1]
    x = (points2d[..., 0] - c[..., 0] - skew * y) / f[..., 0]
    return np.stack([x, y], -1)


def normalise(points2d: np.ndarray, scores: np.ndarray, K: np.ndarray, layout: Layout,
              min_score: float = MIN_SCORE) -> Normalised:
    """points2d (N, J, 2) px (NaN = missing), scores (N, J), K (3, 3) or (N, 3, 3) -> Normalised."""
    points2d = np.asarray(points2d, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    dims = check_shape(f"{layout.name} points2d", points2d, ("N", layout.num_joints, 2))
    check_shape("scores", scores, ("N", layout.num_joints), dims)
    rays = to_rays(points2d, K)
    return normalise_rays(rays, scores, layout, min_score)


def normalise_rays(rays: np.ndarray, scores: np.ndarray, layout: Layout, min_score: float = MIN_SCORE) -> Normalised:
    """Like `normalise` from normalised image coordinates (N, J, 2)."""
    N, J, _ = rays.shape
    seen = np.isfinite(rays).all(-1) & np.isfinite(scores) & (scores >= min_score)
    w = np.where(seen, np.clip(np.nan_to_num(scores), 0.0, 1.0), 0.0)
    r = np.where(seen[..., None], rays, 0.0)
    lh, rh = hip_indices(layout)
    both_hips = seen[:, lh] & seen[:, rh]
    centroid = (w[..., None] * r).sum(1) / np.maximum(w.sum(1), _EPS)[:, None]
    centre = np.where(both_hips[:, None], 0.5 * (r[:, lh] + r[:, rh]), centroid)
    d = np.where(seen[..., None], r - centre[:, None], 0.0)
    spread = np.sqrt((w * (d ** 2).sum(-1)).sum(1) / np.maximum(w.sum(1), _EPS))
    ok = (seen.sum(1) >= MIN_JOINTS) & (spread > 1e-6)
    p = d / np.where(ok, spread, 1.0)[:, None, None]
    net = np.zeros((N, J + 1, 3), dtype=np.float32)
    net[:, :J, :2] = p
    net[:, :J, 2] = w
    net[:, J, :2] = centre
    net[~ok] = 0.0
    return Normalised(net, centre, spread, np.where(seen[..., None], rays, np.nan), w, ok)


def targets_from_3d(joints3d: np.ndarray, norm: Normalised, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Training targets from camera-frame joints (N, J, 3) m: shape Q (N, J, 3) and log m (N,)."""
    root = layout.hip_centre(joints3d)                                       # (N, 3)
    m = root[:, 2] * norm.spread
    Q = (joints3d - root[:, None]) / np.where(m > 0, m, 1.0)[:, None, None]
    return Q.astype(np.float32), np.log(np.maximum(m, 1e-6)).astype(np.float32)


def place(shape: np.ndarray, log_scale: np.ndarray, norm: Normalised) -> np.ndarray:
    """Network output -> camera-frame joints (N, J, 3) m (NaN rows where `norm.ok` is False).

    Depth of the root from the scale: Z = m / s. Its x, y are fitted so that the placed joints reproject
    onto the seen rays (confidence-weighted least squares, closed form for fixed Z): a root taken from
    the 2D centre alone would be off whenever a hip is missing.
    """
    m = np.exp(np.asarray(log_scale, dtype=np.float64).reshape(-1))
    P = np.asarray(shape, dtype=np.float64) * m[:, None, None]              # (N, J, 3) root-relative
    Z = m / np.maximum(norm.spread, _EPS)                                    # (N,)
    w = norm.weights
    rays = np.nan_to_num(norm.rays)
    # Joint j reprojects onto its ray when T_xy = ray_j * (Z + P_z) - P_xy; average over seen joints.
    t_xy = rays * (Z[:, None, None] + P[..., 2:3]) - P[..., :2]
    T_xy = (w[..., None] * t_xy).sum(1) / np.maximum(w.sum(1), _EPS)[:, None]
    root = np.concatenate([T_xy, Z[:, None]], -1)
    out = P + root[:, None]
    out[~norm.ok] = np.nan
    return out


# --- torch twins for training losses ---------------------------------------------------------------

def torch_project(points, eps: float = 1e-4):
    """(..., J, 3) camera-frame points -> (..., J, 2) normalised image coordinates (depth clamped at eps)."""
    import torch

    z = torch.clamp(points[..., 2:3], min=eps)
    return points[..., :2] / z


def torch_normalise(rays, weights, lh: int, rh: int):
    """Torch version of `normalise_rays` for fully seen, differentiable rays (N, J, 2) with weights (N, J).

    Centre at the mid-hip (projections made in training always see both hips). Returns
    (net_input (N, J + 1, 3), centre (N, 2), spread (N,)).
    """
    import torch

    centre = 0.5 * (rays[:, lh] + rays[:, rh])
    d = rays - centre[:, None]
    spread = torch.sqrt((weights * (d ** 2).sum(-1)).sum(1) / weights.sum(1).clamp_min(_EPS)).clamp_min(1e-6)
    p = d / spread[:, None, None]
    row = torch.cat([centre, torch.zeros_like(centre[:, :1])], -1)[:, None]
    net = torch.cat([torch.cat([p, weights[..., None]], -1), row], 1)
    return net, centre, spread


# --- mirror symmetry ---------------------------------------------------------------------------------

def mirror_index(layout: Layout) -> np.ndarray:
    """(J,) joint order of the mirrored skeleton: left_* <-> right_*."""
    def swap(name: str) -> str:
        if name.startswith("left_"):
            return "right_" + name[5:]
        if name.startswith("right_"):
            return "left_" + name[6:]
        return name
    return np.array([layout.index(swap(n)) if layout.has(swap(n)) else i
                     for i, n in enumerate(layout.joint_names)], dtype=np.int64)


def mirror_input(net_input, mirror):
    """Mirror a batch of inputs (B, J + 1, 3) about the camera's y-z plane: x -> -x for every 2D point and
    the root ray, left and right joints swapped. This is an exact symmetry of the pinhole camera, so a
    lifter's answer for the mirrored input, mirrored back, is a second opinion (test-time averaging) and
    mirrored samples are free training data. Works on numpy arrays and torch tensors."""
    J = len(mirror)
    out = net_input * 1.0
    out[:, :J] = net_input[:, mirror]
    out[:, :, 0] = -out[:, :, 0]
    return out


def mirror_shape(shape, mirror):
    """Mirror a shape (B, J, 3) back: x -> -x, left and right joints swapped. numpy or torch."""
    out = shape[:, mirror] * 1.0
    out[..., 0] = -out[..., 0]
    return out
