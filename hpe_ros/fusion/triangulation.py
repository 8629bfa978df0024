"""Robust, confidence-weighted multi-view triangulation, batched over all points of a frame.

One call triangulates every (person, joint) of a frame at once:

1. undistort all detections, build the weighted DLT normal matrices (N, 4, 4) and take the eigenvector
   of the smallest eigenvalue of each (one batched ``eigh``);
2. points whose worst view disagrees by more than ``max_error_px`` get a cheap robust restart: every
   pair among their best-scored views is triangulated (closed-form ray midpoints) and scored against
   all views with a truncated squared error (MSAC); the winner's inliers are re-solved.  This keeps
   an outlier that drags the all-view DLT from making a good view look like the worst one;
3. then, bounded by ``C - min_views`` rounds, the worst view of each still-failing point is dropped and
   only those points are re-solved;
4. a final depth-reweighted solve turns the algebraic DLT error into (almost) the geometric one, and
   ``refine=True`` adds Gauss-Newton steps on the weighted reprojection error.

Every inlier view of a returned point reprojects within ``max_error_px``; points that cannot reach
that with at least ``min_views`` views are NaN (missing beats wrong for the tracker downstream).

    >>> tri = triangulate(rig, points2d, scores)     # points2d (C, N, 2) px, scores (C, N)
    >>> tri.points.shape, tri.inliers.shape
    ((N, 3), (C, N))
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from hpe_ros.camera import Rig
from hpe_ros.checks import check_shape
from hpe_ros.fusion.geometry import RigConstants, rig_constants

# A point's robust restart uses the pairs among its best-scored views; 8 views -> 28 pairs keeps
# the hypothesis count bounded for 32-camera rigs while covering small rigs completely.
_MAX_HYPOTHESIS_VIEWS = 8
_MIN_DEPTH = 1e-6


@dataclass
class Triangulation:
    """Result of `triangulate`, for N points seen by C cameras.

    points: (N, 3) world metres, NaN where no valid point.
    reprojection_error: (N,) px, mean over inlier views; NaN where no point.
    views: (N,) int, number of inlier views (0 where no point).
    inliers: (C, N) bool, views that support each point.
    confidence: (N,) in [0, 1]: mean inlier score * exp(-(err / sigma)^2 / 2); 0 where no point.
    """

    points: np.ndarray
    reprojection_error: np.ndarray
    views: np.ndarray
    inliers: np.ndarray
    confidence: np.ndarray


# --- core DLT ---------------------------------------------------------------------------------------

def _dlt_rows(P: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """P (C, 3, 4), xy (C, N, 2) -> the two DLT rows per view (C, N, 2, 4): x*P3 - P1, y*P3 - P2."""
    return xy[..., :, None] * P[:, None, 2:3, :] - P[:, None, :2, :]


def _solve_dlt(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted homogeneous least squares.

    rows: (C, N, 2, 4) DLT rows; weights: (C, N) >= 0 (0 = view unused) -> X (N, 3), NaN where fewer
    than two views carry weight or the solution is at infinity.
    """
    C, N = weights.shape
    if N == 0:
        return np.zeros((0, 3))
    A = (rows * weights[:, :, None, None]).transpose(1, 0, 2, 3).reshape(N, 2 * C, 4)
    M = np.matmul(A.transpose(0, 2, 1), A)  # (N, 4, 4) = A^T W^2 A
    # Scale each system to unit trace: eigh is scale-free but this keeps tiny / huge weights benign.
    trace = np.trace(M, axis1=1, axis2=2)
    M /= np.where(trace > 0, trace, 1.0)[:, None, None]
    _, vecs = np.linalg.eigh(M)
    h = vecs[:, :, 0]  # eigenvector of the smallest eigenvalue
    w = h[:, 3]
    ok = (np.count_nonzero(weights > 0, axis=0) >= 2) & (np.abs(w) > 1e-12)
    X = h[:, :3] / np.where(ok, w, 1.0)[:, None]
    X[~ok] = np.nan
    return X


def _solve_affine(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Like `_solve_dlt` but with X4 = 1 fixed: a 3x3 linear solve (Cramer, batched), for points already
    known to be finite. With rows divided by depth this is the linearised geometric error."""
    C, N = weights.shape
    A = (rows * weights[:, :, None, None]).transpose(1, 0, 2, 3).reshape(N, 2 * C, 4)
    M = np.matmul(A.transpose(0, 2, 1), A)
    # M[:3, :3] X = -M[:3, 3], solved by Cramer's rule with M symmetric (cofactors written out: numpy's
    # cross / det on (N, 3) arrays cost more in call overhead than in arithmetic).
    m00, m01, m02, m11, m12, m22 = M[:, 0, 0], M[:, 0, 1], M[:, 0, 2], M[:, 1, 1], M[:, 1, 2], M[:, 2, 2]
    b0, b1, b2 = -M[:, 0, 3], -M[:, 1, 3], -M[:, 2, 3]
    c00 = m11 * m22 - m12 * m12
    c01 = m02 * m12 - m01 * m22
    c02 = m01 * m12 - m02 * m11
    c11 = m00 * m22 - m02 * m02
    c12 = m01 * m02 - m00 * m12
    c22 = m00 * m11 - m01 * m01
    det = m00 * c00 + m01 * c01 + m02 * c02
    X = np.empty((N, 3))
    X[:, 0] = c00 * b0 + c01 * b1 + c02 * b2
    X[:, 1] = c01 * b0 + c11 * b1 + c12 * b2
    X[:, 2] = c02 * b0 + c12 * b1 + c22 * b2
    scale = np.abs(M[:, :3, :3]).reshape(N, 9).max(axis=1) ** 3
    ok = (np.abs(det) > 1e-12 * scale) & (np.count_nonzero(weights, axis=0) >= 2)
    X /= np.where(ok, det, 1.0)[:, None]
    X[~ok] = np.nan
    return X


def triangulate_normalized(P: np.ndarray, xy: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Confidence-weighted DLT on undistorted normalised coordinates (the core solver, no outlier logic).

    P: (C, 3, 4) [R | t] per camera; xy: (C, N, 2) normalised image coordinates (NaN allowed where the
    weight is 0); weights: (C, N) >= 0, 0 = view unused -> X (N, 3) world, NaN with < 2 weighted views.
    """
    P = np.asarray(P, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    dims = check_shape("P", P, ("C", 3, 4))
    check_shape("xy", xy, ("C", "N", 2), dims)
    check_shape("weights", weights, ("C", "N"), dims)
    weights = np.where(np.isfinite(weights) & np.isfinite(xy).all(-1), np.maximum(weights, 0.0), 0.0)
    xy = np.where(weights[..., None] > 0, xy, 0.0)
    return _solve_dlt(_dlt_rows(P, xy), weights)


# --- helpers ----------------------------------------------------------------------------------------

class _Views:
    """Per-frame constants shared by the solver stages (all (C, N, ...) arrays)."""

    def __init__(self, rc: RigConstants, xy: np.ndarray, weights: np.ndarray):
        self.P = rc.P                                        # (C, 3, 4)
        self.R, self.t = rc.R, rc.t
        self.Rt = rc.Rt                                      # X @ R^T batched as matmul (einsum is slow)
        self.focal = rc.focal
        self.centers = rc.centers
        # Rows scaled by focal length so the algebraic error is in pixel units times depth: cameras with
        # different focal lengths then weigh as their pixel noise does.
        self.rows = _dlt_rows(self.P, xy) * self.focal.mean(axis=1)[:, None, None, None]
        self.xy = xy
        self.weights = weights

    def errors(self, X: np.ndarray, idx: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Pixel reprojection error (C, n) of X (n, 3) for points idx, inf behind a camera; and depths (C, n)."""
        Xc = np.matmul(X[None], self.Rt) + self.t[:, None, :]               # (C, n, 3)
        z = Xc[..., 2]
        in_front = z > _MIN_DEPTH
        zs = np.where(in_front, z, 1.0)
        xy = self.xy[:, idx]
        dx = (Xc[..., 0] / zs - xy[..., 0]) * self.focal[:, 0:1]
        dy = (Xc[..., 1] / zs - xy[..., 1]) * self.focal[:, 1:2]
        err = np.sqrt(dx * dx + dy * dy)
        err[~(in_front & np.isfinite(err))] = np.inf
        return err, z

    def solve(self, mask: np.ndarray, idx: np.ndarray | slice = slice(None),
              depth: np.ndarray | None = None) -> np.ndarray:
        """DLT of points idx over views mask (C, n); depth (C, n) turns on geometric reweighting."""
        w = self.weights[:, idx] * mask
        if depth is not None:
            return _solve_affine(self.rows[:, idx], w / np.maximum(depth, _MIN_DEPTH))
        return _solve_dlt(self.rows[:, idx], w)


_PAIRS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a < b) of k views, cached."""
    if k not in _PAIRS:
        a, b = np.array(list(combinations(range(k), 2)), dtype=np.int64).reshape(-1, 2).T
        _PAIRS[k] = (a, b)
    return _PAIRS[k]


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot product over a last axis of 3 (explicit: numpy's reductions over tiny axes are slow)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _worst_inlier(err: np.ndarray, inl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """err, inl (C, n) -> worst inlier error (n,) and its camera (n,)."""
    e = np.where(inl, err, -1.0)
    worst = e.argmax(axis=0)
    return e[worst, np.arange(e.shape[1])], worst


def _pair_hypotheses(views: _Views, idx: np.ndarray, usable: np.ndarray, max_error_px: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Robust restart for points idx: best pair-midpoint hypothesis by truncated error (MSAC).

    usable: (C, n) views available to points idx -> (inliers (C, n) of the winning hypothesis, cost (n,)).
    """
    C, n = usable.shape
    w = views.weights[:, idx] * usable
    k = min(C, _MAX_HYPOTHESIS_VIEWS)
    top = np.argsort(-w, axis=0, kind="stable")[:k]                       # (k, n) best-scored views
    pa, pb = _pairs(k)                                                    # (H,) each
    ca, cb = top[pa], top[pb]                                             # (H, n) camera indices
    cols = np.arange(n)
    valid = (w[ca, cols] > 0) & (w[cb, cols] > 0)

    # Closed-form midpoint of the two rays: cheap, and exact for noise-free detections.
    xy = views.xy[:, idx]
    d_cam = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1)  # (C, n, 3)
    d = np.matmul(d_cam, views.R)                                         # R^T d: world directions
    centers = views.centers                                               # (C, 3)
    da, db = d[ca, cols], d[cb, cols]                                     # (H, n, 3)
    b = centers[cb] - centers[ca]
    aa, bb_, cc = _dot3(da, da), _dot3(da, db), _dot3(db, db)
    e1, e2 = _dot3(da, b), _dot3(db, b)
    denom = aa * cc - bb_ * bb_
    valid &= denom > 1e-12 * aa * cc
    denom = np.where(valid, denom, 1.0)
    s = (e1 * cc - bb_ * e2) / denom
    u = (bb_ * e1 - aa * e2) / denom
    valid &= (s > 0) & (u > 0)
    X = 0.5 * (centers[ca] + s[..., None] * da + centers[cb] + u[..., None] * db)  # (H, n, 3)

    # Score every hypothesis against the same top-k views only (truncated squared error, MSAC): this
    # bounds the work by k, not C; the winner is then checked against all views.
    P = views.P[top]                                                       # (k, n, 3, 4)
    Xh = X.transpose(1, 2, 0)                                              # (n, 3, H)
    Xc = np.matmul(P[..., :3], Xh[None]) + P[..., 3:]                      # (k, n, 3, H)
    z = Xc[:, :, 2]
    front = z > _MIN_DEPTH
    zs = np.where(front, z, 1.0)
    xy_top, f_top = xy[top, cols][..., None], views.focal[top][..., None]   # (k, n, 2, 1)
    dx = (Xc[:, :, 0] / zs - xy_top[:, :, 0]) * f_top[:, :, 0]
    dy = (Xc[:, :, 1] / zs - xy_top[:, :, 1]) * f_top[:, :, 1]
    err2 = dx * dx + dy * dy                                               # (k, n, H)
    err2 = np.where(front & (err2 < max_error_px ** 2), err2, max_error_px ** 2)
    cost = (w[top, cols][..., None] * err2).sum(0)                         # (n, H)
    cost = np.where(valid.T, cost, np.inf)
    best = cost.argmin(axis=1)
    X_best = X[best, cols]
    err_all, _ = views.errors(X_best, idx)
    return usable & (err_all <= max_error_px), cost[cols, best]


# --- robust triangulation ---------------------------------------------------------------------------

def _robust_solve(rig: Rig, points2d: np.ndarray, scores: np.ndarray, min_views: int, min_score: float,
                  max_error_px: float, max_removals: int | None, refine: bool) -> dict:
    """The stages of `triangulate`, returning intermediate arrays too (used by association)."""
    points2d = np.asarray(points2d, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    C = len(rig)
    dims = check_shape("points2d", points2d, (C, "N", 2))
    check_shape("scores", scores, (C, "N"), dims)
    if min_views < 2:
        raise ValueError(f"min_views must be >= 2, got {min_views}")
    N = points2d.shape[1]

    finite = np.isfinite(points2d).all(-1) & np.isfinite(scores)
    usable = finite & (scores > 0) & (scores >= min_score)
    weights = np.where(usable, np.minimum(scores, 1.0), 0.0)
    rc = rig_constants(rig)
    xy = rc.undistort(np.where(usable[..., None], points2d, 0.0)) if C else np.zeros((0, N, 2))
    xy[~usable] = 0.0
    views = _Views(rc, xy, weights)
    max_removals = C if max_removals is None else int(max_removals)

    solvable = usable.sum(0) >= min_views
    inl = usable & solvable
    X = np.full((N, 3), np.nan)
    err = np.full((C, N), np.inf)
    if N and C:
        X[solvable] = views.solve(inl[:, solvable], solvable)
        err[:, solvable], _ = views.errors(X[solvable], solvable)

    # Robust restart for points whose DLT already disagrees with some view.
    worst, _ = _worst_inlier(err, inl)
    suspect = np.flatnonzero(solvable & (worst > max_error_px) & (inl.sum(0) > min_views))
    if suspect.size and max_removals > 0 and _MAX_HYPOTHESIS_VIEWS >= 2:
        h_inl, _ = _pair_hypotheses(views, suspect, inl[:, suspect], max_error_px)
        removed = inl[:, suspect].sum(0) - h_inl.sum(0)
        take = (h_inl.sum(0) >= min_views) & (removed <= max_removals)
        idx = suspect[take]
        if idx.size:
            inl[:, idx] = h_inl[:, take]
            X[idx] = views.solve(inl[:, idx], idx)
            err[:, idx], _ = views.errors(X[idx], idx)
            # A pair's midpoint is imprecise in depth; re-admit the views that agree with the re-solved point.
            grown = usable[:, idx] & (err[:, idx] <= max_error_px)
            grow = (grown.sum(0) > inl[:, idx].sum(0)) & (usable[:, idx].sum(0) - grown.sum(0) <= max_removals)
            if grow.any():
                g = idx[grow]
                inl[:, g] = grown[:, grow]
                X[g] = views.solve(inl[:, g], g)
                err[:, g], _ = views.errors(X[g], g)

    # Bounded outlier removal: drop the worst view of each failing point, re-solve just those.
    removed = usable.sum(0) - inl.sum(0)
    for _ in range(max(C - min_views, 0)):
        worst, worst_cam = _worst_inlier(err, inl)
        idx = np.flatnonzero(solvable & (worst > max_error_px) & (inl.sum(0) > min_views) & (removed < max_removals))
        if idx.size == 0:
            break
        inl[worst_cam[idx], idx] = False
        removed[idx] += 1
        X[idx] = views.solve(inl[:, idx], idx)
        err[:, idx], _ = views.errors(X[idx], idx)

    # Final polish: weight rows by 1/depth so the DLT minimises (nearly) the geometric error.
    idx = np.flatnonzero(solvable & np.isfinite(X).all(1))
    if idx.size:
        _, depth = views.errors(X[idx], idx)
        X_re = views.solve(inl[:, idx], idx, depth=depth)
        ok = np.isfinite(X_re).all(1)
        X[idx[ok]] = X_re[ok]
        err[:, idx], _ = views.errors(X[idx], idx)
    if refine and idx.size:
        X[idx], err[:, idx] = _gauss_newton(views, X[idx], idx, inl[:, idx], err[:, idx])

    worst, _ = _worst_inlier(err, inl)
    good = solvable & np.isfinite(X).all(1) & (inl.sum(0) >= min_views) & (worst <= max_error_px)
    return dict(X=X, err=err, inl=inl, good=good, usable=usable, weights=weights)


def _gauss_newton(views: _Views, X: np.ndarray, idx: np.ndarray, inl: np.ndarray, err: np.ndarray,
                  iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Newton on sum_c w_c^2 |pixel residual|^2 over inlier views, batched over points.

    X (n, 3), inl / err (C, n) -> refined X (n, 3) and errors (C, n); a step is kept only where it
    lowers the cost, so refinement never makes a point worse.
    """
    w = views.weights[:, idx] * inl                                           # (C, n)
    w2 = w * w
    f = views.focal[:, None, :, None]                                         # (C, 1, 2, 1)
    cost = (w2 * np.where(inl, err, 0.0) ** 2).sum(0)
    C, n = w.shape
    for _ in range(iterations):
        Xc = np.matmul(X[None], views.Rt) + views.t[:, None, :]              # (C, n, 3)
        z = np.where(Xc[..., 2] > _MIN_DEPTH, Xc[..., 2], np.inf)
        proj = Xc[..., :2] / z[..., None]
        r = (proj - views.xy[:, idx]) * f[..., 0]                             # (C, n, 2) px residual
        # d(pixel)/dX = f / z * (R[:2] - proj * R[2]) per view.
        J = (views.R[:, None, :2, :] - proj[..., None] * views.R[:, None, 2:3, :]) * (f / z[..., None, None])
        r = np.where(np.isfinite(r), r, 0.0) * w[..., None]
        J = np.where(np.isfinite(J), J, 0.0) * w[..., None, None]
        Jn = J.transpose(1, 0, 2, 3).reshape(n, 2 * C, 3)
        H = np.matmul(Jn.transpose(0, 2, 1), Jn)                              # (n, 3, 3)
        g = np.matmul(Jn.transpose(0, 2, 1), r.transpose(1, 0, 2).reshape(n, 2 * C, 1))
        H += 1e-9 * np.trace(H, axis1=1, axis2=2)[:, None, None] * np.eye(3)   # tiny damping for safety
        ok = np.abs(np.linalg.det(H)) > 0
        step = np.zeros_like(X)
        if ok.any():
            step[ok] = np.linalg.solve(H[ok], -g[ok])[..., 0]
        X_new = X + step
        err_new, _ = views.errors(X_new, idx)
        cost_new = (w2 * np.where(inl, err_new, 0.0) ** 2).sum(0)
        better = (cost_new < cost) & np.isfinite(X_new).all(1)
        X = np.where(better[:, None], X_new, X)
        err = np.where(better[None], err_new, err)
        cost = np.where(better, cost_new, cost)
    return X, err


def triangulate(rig: Rig, points2d: np.ndarray, scores: np.ndarray, min_views: int = 2,
                min_score: float = 0.05, max_error_px: float = 12.0, max_removals: int | None = None,
                refine: bool = False, sigma_px: float = 8.0) -> Triangulation:
    """Robust confidence-weighted triangulation of N points seen by the C cameras of `rig`.

    points2d: (C, N, 2) distorted pixels; scores: (C, N) in [0, 1], 0 or non-finite coordinates =
    missing, below min_score = unused. Views are dropped (at most max_removals per point, default
    C - min_views) until every remaining view reprojects within max_error_px; a point needs min_views
    such views, else it is NaN. refine=True adds Gauss-Newton steps on the reprojection error.
    sigma_px sets how fast confidence falls with the reprojection error.
    -> Triangulation with points (N, 3), reprojection_error (N,), views (N,), inliers (C, N), confidence (N,).
    """
    r = _robust_solve(rig, points2d, scores, min_views, min_score, max_error_px, max_removals, refine)
    return _result(r, sigma_px)


def _result(r: dict, sigma_px: float = 8.0) -> Triangulation:
    """`_robust_solve`'s arrays -> Triangulation (shared with association, which reuses its solve)."""
    good, inl, err = r["good"], r["inl"] & r["good"][None], r["err"]
    n_views = inl.sum(0)
    denom = np.maximum(n_views, 1)
    mean_err = np.where(good, np.where(inl, err, 0.0).sum(0) / denom, np.nan)
    mean_score = np.where(inl, r["weights"], 0.0).sum(0) / denom
    confidence = np.where(good, mean_score * np.exp(-0.5 * (np.nan_to_num(mean_err) / sigma_px) ** 2), 0.0)
    points = np.where(good[:, None], r["X"], np.nan)
    return Triangulation(points=points, reprojection_error=mean_err, views=n_views.astype(np.int64),
                         inliers=inl, confidence=confidence)
