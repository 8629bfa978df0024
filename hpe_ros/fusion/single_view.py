"""Single-view placement: people or joints fewer than two cameras see, placed from per-view lifted poses.

The pipeline triangulates what two or more cameras see; this module holds the maths for the rest:

- `duplicate_single_views`: a single-view group whose detection overlaps a triangulated person in that
  camera is the same person (an occluded or outlier-ridden view association split off), not a new one;
- `fill_from_lifted`: every member view's lifted pose (camera frame) is rotated into the world by the
  calibration, aligned to the group's triangulated joints (`align_lifted`), and fills the joints that
  were not triangulated; a person seen by one camera alone is placed as that camera sees it, its depth
  moved part of the way towards where its track predicts it (`depth_towards_track`).

All functions are batched over cameras, groups and joints. Groups are (G, C) detection rows per camera
(-1 = not in that camera), as `associate` returns them.
"""
from __future__ import annotations

import numpy as np

from ..camera import Rig
from ..skeleton import Layout
from .association import gather_groups

SINGLE_VIEW_CONFIDENCE = 0.5  # lifted (single-view) joints are trusted half as much as triangulated ones
DUPLICATE_MIN_IOU = 0.3   # a single view overlapping a triangulated person's projection this much repeats it
ALIGN_MIN_JOINTS = 4      # common joints needed to fit a lifted pose's scale (fewer: translation only)
ALIGN_MIN_SPREAD_M = 0.1  # ... and their RMS distance from their centroid (a head's joints alone: too tight)
ALIGN_SCALE_RANGE = (0.5, 2.0)


def duplicate_single_views(rig: Rig, points2d: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                           poses: np.ndarray, cams: np.ndarray, min_score: float,
                           min_iou: float = DUPLICATE_MIN_IOU) -> np.ndarray:
    """(G,) bool: single-view groups whose detection overlaps a triangulated person in that camera.

    points2d (C, P, J, 2) px, scores (C, P, J); groups (G, C); poses (G, J, 3) world (triangulated for
    multi-view groups); cams (G,) cameras per group. Association leaves a view on its own when it does
    not fit (an occluded or outlier-ridden detection of someone the other cameras already triangulated).
    Lifted and placed on its own it would become a second track of that person, so it is dropped: a
    detection box that overlaps the projection of a multi-view group's pose (IoU > min_iou) in its
    camera is a duplicate.
    """
    duplicate = np.zeros(len(groups), dtype=bool)
    single, multi = np.flatnonzero(cams == 1), np.flatnonzero(cams >= 2)
    if single.size == 0 or multi.size == 0:
        return duplicate
    cam = (groups[single] >= 0).argmax(1)                                   # (S,)
    det = points2d[cam, groups[single, cam]]                                # (S, J, 2)
    det_ok = (scores[cam, groups[single, cam]] >= min_score) & np.isfinite(det).all(-1)
    proj = rig.project(poses[multi])[cam]                                   # (S, M, J, 2)
    proj_ok = np.isfinite(proj).all(-1)
    box_d = _boxes(det, det_ok)[:, None]                                    # (S, 1, 4)
    box_p = _boxes(proj, proj_ok)                                           # (S, M, 4)
    lo, hi = np.maximum(box_d[..., :2], box_p[..., :2]), np.minimum(box_d[..., 2:], box_p[..., 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area(box_d) + area(box_p) - inter)
    duplicate[single] = np.nan_to_num(iou, nan=0.0).max(1) > min_iou
    return duplicate


def fill_from_lifted(R: np.ndarray, t: np.ndarray, layout: Layout, poses: np.ndarray, confidence: np.ndarray,
                     views: np.ndarray, groups: np.ndarray, lifted: np.ndarray, lifted_scores: np.ndarray,
                     prior_root: np.ndarray | None, min_score: float, track_depth: float = 0.0,
                     fit_scale: bool = False) -> None:
    """Fill joints seen by fewer than two cameras from the groups' lifted poses, in place.

    R (C, 3, 3), t (C, 3) world -> camera; poses (G, J, 3), confidence (G, J), views (G, J) as
    triangulated; groups (G, C); lifted (C, P, J, 3) camera optical frames, lifted_scores (C, P, J);
    prior_root (G, 3) world mid-hip the matched track predicts (NaN rows: none) or None.
    Every member view's lifted pose is turned into the world by the calibrated rotation and then aligned
    to the group's triangulated joints (views >= 2) that it also has: a translation (`align_lifted`; with
    `fit_scale` also a scale when >= ALIGN_MIN_JOINTS common joints spread over the body), and as placed
    by its camera with none (a single-view person, whose depth `depth_towards_track` first moves by
    `track_depth`). A joint to fill takes the score-weighted mean of the aligned views that have it.
    Filled joints have views = 1 and confidence x SINGLE_VIEW_CONFIDENCE.
    """
    member = (groups >= 0).T                                          # (C, G)
    sc = gather_groups(lifted_scores, groups) * member[..., None]     # (C, G, J)
    cam_points = gather_groups(lifted, groups)                        # (C, G, J, 3) optical frames
    if prior_root is not None and track_depth > 0:
        unanchored = ~(np.isfinite(poses).all(-1) & (views >= 2)).any(-1)   # (G,)
        cam_points = depth_towards_track(R, t, layout, cam_points, np.where(unanchored[:, None], prior_root, np.nan),
                                         track_depth)
    world = np.einsum("cgjk,ckl->cgjl", cam_points - t[:, None, None], R)  # R^T (x - t)
    usable = np.isfinite(world).all(-1) & (sc >= min_score)
    world = np.where(usable[..., None], world, 0.0)
    sc = np.where(usable, sc, 0.0)

    anchor = np.isfinite(poses).all(-1) & (views >= 2)                # (G, J) triangulated joints
    aligned, anchored = align_lifted(world, sc * np.where(anchor, confidence, 0.0)[None],
                                     np.where(anchor[..., None], poses, 0.0)[None], fit_scale=fit_scale)
    # Views that saw the joint dominate (unseen joints come with a fraction of the person's score);
    # a view that could not be anchored does not mix with views of the same group that could.
    weight = sc ** 2 * (anchored | ~anchored.any(0))[..., None]
    total = weight.sum(0)                                             # (G, J)
    fill = (total > 0) & ~anchor
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = np.einsum("cgj,cgjk->gjk", weight, aligned) / total[..., None]
        score = (weight * sc).sum(0) / total
    poses[fill] = merged[fill]
    confidence[fill] = SINGLE_VIEW_CONFIDENCE * score[fill]
    views[fill] = 1


def depth_towards_track(R: np.ndarray, t: np.ndarray, layout: Layout, cam_points: np.ndarray,
                        prior_root: np.ndarray, fraction: float) -> np.ndarray:
    """One view cannot tell a small near person from a big far one. Scale each lifted pose
    cam_points (C, G, J, 3) about its camera centre (its 2D stays exactly as seen) `fraction` of the way
    (in log depth) towards the depth at which the matched track predicts its mid-hip, prior_root (G, 3)
    world (NaN rows: untouched). Part of the way only: the track keeps learning from the lifted depth."""
    pred = np.einsum("cij,gj->cgi", R, np.nan_to_num(prior_root)) + t[:, None]   # (C, G, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = pred[..., 2] / layout.hip_centre(cam_points)[..., 2]
        k = np.exp(fraction * np.log(np.clip(ratio, 0.5, 2.0)))
    ok = np.isfinite(prior_root).all(-1)[None] & np.isfinite(k) & (pred[..., 2] > 0)
    return cam_points * np.where(ok, k, 1.0)[..., None, None]


def align_lifted(points: np.ndarray, weights: np.ndarray, targets: np.ndarray,
                 fit_scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scale + translation that best map `points` onto `targets` (weighted least squares), applied.

    points (..., J, 3) world-oriented lifted joints (0 where unusable); weights (..., J), > 0 on the joints
    common with the targets (..., J, 3). With >= ALIGN_MIN_JOINTS common joints spread over
    ALIGN_MIN_SPREAD_M the scale is fitted (clipped to ALIGN_SCALE_RANGE); with fewer, or a degenerate fit,
    only the translation (weighted mean offset); with none, the points are returned as they are.
    Rotation is not fitted: the calibration already gives it. Returns the aligned points (..., J, 3) and
    (...) bool: aligned to at least one target.
    """
    total = weights.sum(-1)                                               # (...)
    have = total > 0
    safe = np.where(have, total, 1.0)[..., None]
    mu_p = np.einsum("...j,...jk->...k", weights, points) / safe          # (..., 3)
    mu_t = np.einsum("...j,...jk->...k", weights, targets) / safe
    dp, dt = points - mu_p[..., None, :], targets - mu_t[..., None, :]
    var = np.einsum("...j,...jk,...jk->...", weights, dp, dp) / safe[..., 0]
    cov = np.einsum("...j,...jk,...jk->...", weights, dp, dt) / safe[..., 0]
    fit = fit_scale & ((weights > 0).sum(-1) >= ALIGN_MIN_JOINTS) & (var > ALIGN_MIN_SPREAD_M ** 2) & (cov > 0)
    scale = np.where(fit, np.clip(cov / np.where(fit, var, 1.0), *ALIGN_SCALE_RANGE), 1.0)
    shift = np.where(have[..., None], mu_t - scale[..., None] * mu_p, 0.0)
    return scale[..., None, None] * points + shift[..., None, :], have


def _boxes(points: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Bounding boxes (..., 4) = (u0, v0, u1, v1) of points (..., J, 2) where ok (..., J); NaN if none."""
    big = np.where(ok[..., None], points, np.inf)
    small = np.where(ok[..., None], points, -np.inf)
    box = np.concatenate([big.min(-2), small.max(-2)], axis=-1)
    box[~ok.any(-1)] = np.nan
    return box
