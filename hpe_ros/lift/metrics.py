"""Single-view 3D pose errors: MPJPE (root-aligned), N-MPJPE (+ scale), P-MPJPE (+ rotation: Procrustes).

All take pred, gt (N, J, 3) metres and return per-sample mean joint errors (N,) in metres, ignoring joints
that are NaN in either; `summary` turns them into the JSON `hpe-ros eval-lifter` prints.
"""
from __future__ import annotations

import numpy as np

from hpe_ros.skeleton import Layout


def _root_align(pred, gt, layout: Layout):
    return pred - layout.hip_centre(pred)[:, None], gt - layout.hip_centre(gt)[:, None]


def _mean_error(a, b):
    d = np.linalg.norm(a - b, axis=-1)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=1)


def mpjpe(pred, gt, layout: Layout) -> np.ndarray:
    """Mean joint error after moving both mid-hips to the origin. (N,) m."""
    p, g = _root_align(np.asarray(pred, float), np.asarray(gt, float), layout)
    return _mean_error(p, g)


def n_mpjpe(pred, gt, layout: Layout) -> np.ndarray:
    """MPJPE after the least-squares scale of the root-aligned prediction (Rhodin et al. 2018). (N,) m."""
    p, g = _root_align(np.asarray(pred, float), np.asarray(gt, float), layout)
    ok = np.isfinite(p).all(-1) & np.isfinite(g).all(-1)
    p0, g0 = np.where(ok[..., None], p, 0.0), np.where(ok[..., None], g, 0.0)
    s = (p0 * g0).sum((1, 2)) / np.maximum((p0 * p0).sum((1, 2)), 1e-12)
    return _mean_error(p * s[:, None, None], g)


def p_mpjpe(pred, gt, layout: Layout | None = None) -> np.ndarray:
    """MPJPE after the best similarity transform (rotation, scale, translation) per sample. (N,) m."""
    pred, gt = np.asarray(pred, float), np.asarray(gt, float)
    ok = np.isfinite(pred).all(-1) & np.isfinite(gt).all(-1)              # (N, J)
    w = ok.astype(float)[..., None]
    n = np.maximum(w.sum(1), 1.0)                                          # (N, 1)
    mp = (np.where(ok[..., None], pred, 0.0)).sum(1) / n
    mg = (np.where(ok[..., None], gt, 0.0)).sum(1) / n
    p = np.where(ok[..., None], pred - mp[:, None], 0.0)
    g = np.where(ok[..., None], gt - mg[:, None], 0.0)
    H = np.einsum("nji,njk->nik", p, g)                                    # (N, 3, 3)
    U, S, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.einsum("nij,njk->nik", U, Vt)))
    D = np.ones((len(pred), 3))
    D[:, 2] = d
    R = np.einsum("nij,nj,njk->nik", U, D, Vt)                             # p @ R ~ g
    scale = (S * D).sum(1) / np.maximum((p ** 2).sum((1, 2)), 1e-12)
    aligned = scale[:, None, None] * np.einsum("nji,nik->njk", p, R) + mg[:, None]
    out = _mean_error(aligned, np.where(ok[..., None], gt, np.nan))
    out[ok.sum(1) < 3] = np.nan
    return out


def summary(pred, gt, layout: Layout) -> dict:
    """{"frames", "mpjpe_mm", "pmpjpe_mm", "nmpjpe_mm"} over samples with a prediction (means, mm)."""
    pred, gt = np.asarray(pred, float), np.asarray(gt, float)
    have = np.isfinite(pred).all(-1).any(-1)
    out = {"frames": int(len(gt)), "lifted": int(have.sum())}
    for key, fn in (("mpjpe_mm", mpjpe), ("pmpjpe_mm", p_mpjpe), ("nmpjpe_mm", n_mpjpe)):
        e = fn(pred[have], gt[have], layout) if have.any() else np.array([np.nan])
        out[key] = round(float(np.nanmean(e)) * 1000.0, 2) if np.isfinite(e).any() else None
    return out
