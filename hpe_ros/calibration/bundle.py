"""Sparse bundle adjustment: camera extrinsics and free 3D points from their 2D observations.

One `scipy.optimize.least_squares` problem (trust-region reflective, LSMR on a sparse Jacobian
pattern, finite differences grouped by that pattern) over

* the extrinsics of every camera but ``fixed_camera`` (Rodrigues vector and translation, 6 each),
  optionally a focal-length factor per camera (``refine_focal``; off by default: intrinsics are
  usually better known from a board than from people);
* the free 3D points (3 each);
* optionally one shared length per bone group (`BoneConstraints`, e.g. one per person and bone).

Residuals, all batched in numpy (no Python loop over observations):

* reprojection: ``weight * (project(camera, X) - xy)`` in pixels, with the camera's K and OpenCV
  distortion;
* bone length: ``bones.weight * (|X_a - X_b| - L_bone)`` (scene units times px per unit);
* scale gauge (``fix_scale``): the distance between the fixed camera and the camera farthest from it
  keeps its initial value. With one camera fixed, scale is the only free direction of the gauge;
  pinning it costs nothing and keeps the normal equations well conditioned.

A robust loss (``soft_l1`` or ``huber``, ``f_scale`` px) limits what the remaining outliers can do, and
rounds with a shrinking threshold (``outlier_px``, default 20 -> 8 -> 4 px) drop them: before each
round, observations whose reprojection error exceeds that round's threshold are left out of it. A
threshold never goes below ``outlier_sigmas`` times the noise seen in the inliers (robust sigma from the
median error), so a noisier data set is not stripped of its good observations. Points left with fewer
than two observations in a round are held fixed in that round and returned as NaN if that is still so
at the end.

    >>> obs = Observations(camera=cam_idx, point=pt_idx, xy=pixels, weight=scores)   # (M,), (M,), (M, 2), (M,)
    >>> rig2, X2, rep = bundle_adjust(rig, obs, X)                                     # X: (N, 3)
    >>> rep.rms_px, rep.inliers.mean()
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import coo_matrix

from hpe_ros.camera import Rig, distort_normalized, rodrigues, rotation_to_rvec
from hpe_ros.checks import check_shape

_MIN_DEPTH = 1e-6
_RAYLEIGH_MEDIAN = float(np.sqrt(2 * np.log(2)))  # median of |e| for a 2D Gaussian e with unit sigma


@dataclass
class Observations:
    """M observations of 3D points in cameras.

    camera: (M,) int camera index; point: (M,) int point index; xy: (M, 2) distorted pixels;
    weight: (M,) >= 0, multiplies the residual (e.g. the detector's confidence; 0 = unused).
    """

    camera: np.ndarray
    point: np.ndarray
    xy: np.ndarray
    weight: np.ndarray | None = None

    def __post_init__(self):
        self.camera = np.asarray(self.camera, dtype=np.int64).ravel()
        self.point = np.asarray(self.point, dtype=np.int64).ravel()
        xy = np.asarray(self.xy, dtype=np.float64)
        check_shape("observations.xy", xy, (2,), leading=True)
        self.xy = xy.reshape(-1, 2)
        M = self.camera.size
        self.weight = (np.ones(M) if self.weight is None
                       else np.asarray(self.weight, dtype=np.float64).ravel())
        dims = {"M": M}
        check_shape("observations.point", self.point, ("M",), dims)
        check_shape("observations.xy", self.xy, ("M", 2), dims)
        check_shape("observations.weight", self.weight, ("M",), dims)

    def __len__(self) -> int:
        return self.camera.size


@dataclass
class BoneConstraints:
    """Bone-length consistency between points that belong to one body over many frames.

    a, b: (K,) int point indices of the two ends of each constrained pair; bone: (K,) int in [0, B),
    the shared length each pair uses (e.g. person * bones_per_person + bone); lengths: (B,) initial
    lengths (scene units; NaN = take the median of the initial point distances); weight: residual
    per scene unit (px per metre for a metric scene: 100 makes 1 cm count as 1 px).
    """

    a: np.ndarray
    b: np.ndarray
    bone: np.ndarray
    lengths: np.ndarray
    weight: float = 100.0

    def __post_init__(self):
        self.a = np.asarray(self.a, dtype=np.int64).ravel()
        self.b = np.asarray(self.b, dtype=np.int64).ravel()
        self.bone = np.asarray(self.bone, dtype=np.int64).ravel()
        self.lengths = np.asarray(self.lengths, dtype=np.float64).ravel()
        dims = check_shape("bones.a", self.a, ("K",))
        check_shape("bones.b", self.b, ("K",), dims)
        check_shape("bones.bone", self.bone, ("K",), dims)
        if self.bone.size and (self.bone.min() < 0 or self.bone.max() >= self.lengths.size):
            raise ValueError(f"bones: bone ids must be in [0, {self.lengths.size})")


@dataclass
class BundleReport:
    """What `bundle_adjust` did.

    rms_px, median_px: (C,) reprojection error per camera over its inlier observations of the last
    round (NaN for a camera without any); observations: (C,) inliers used per camera; outliers: (C,)
    observations dropped; inliers: (M,) bool, the last round's inlier mask; errors_px: (M,) final
    reprojection error of every observation; bone_lengths: (B,) or None; rounds: one dict per round
    (threshold_px, observations, points, cost, nfev, seconds); focal_scale: (C,) factors applied to fx,
    fy (ones unless refine_focal); time_s: total seconds.
    """

    rms_px: np.ndarray
    median_px: np.ndarray
    observations: np.ndarray
    outliers: np.ndarray
    inliers: np.ndarray
    errors_px: np.ndarray
    bone_lengths: np.ndarray | None
    rounds: list = field(default_factory=list)
    focal_scale: np.ndarray | None = None
    time_s: float = 0.0

    def to_dict(self, names: list[str] | None = None) -> dict:
        """JSON-friendly summary (per camera keyed by name when given)."""
        names = names or [f"cam{i}" for i in range(len(self.rms_px))]

        def f(v):
            return None if not np.isfinite(v) else round(float(v), 3)

        return {
            "per_camera": {n: {"rms_px": f(self.rms_px[i]), "median_px": f(self.median_px[i]),
                               "observations": int(self.observations[i]), "outliers": int(self.outliers[i])}
                           for i, n in enumerate(names)},
            "rounds": self.rounds, "time_s": round(self.time_s, 3),
        }


# --- projection ------------------------------------------------------------------------------------

class _Projector:
    """Projection of M observations with their cameras' constants gathered once (per observation)."""

    def __init__(self, K: np.ndarray, dist: np.ndarray, camera: np.ndarray):
        self.camera = camera
        Kc = K[camera]
        self.fx, self.fy, self.skew = Kc[:, 0, 0], Kc[:, 1, 1], Kc[:, 0, 1]
        self.cx, self.cy = Kc[:, 0, 2], Kc[:, 1, 2]
        self.dist = dist[camera].T if np.any(dist) else None               # (8, M): one set per observation

    def __call__(self, rvec: np.ndarray, t: np.ndarray, X: np.ndarray, focal_scale: np.ndarray | None = None
                 ) -> np.ndarray:
        C = rvec.shape[0]
        Rt = np.concatenate([rodrigues(rvec).reshape(C, 9), t], axis=1)[self.camera]   # (M, 12)
        x, y, z = X[:, 0], X[:, 1], X[:, 2]
        xc = Rt[:, 0] * x + Rt[:, 1] * y + Rt[:, 2] * z + Rt[:, 9]
        yc = Rt[:, 3] * x + Rt[:, 4] * y + Rt[:, 5] * z + Rt[:, 10]
        zc = Rt[:, 6] * x + Rt[:, 7] * y + Rt[:, 8] * z + Rt[:, 11]
        zc = np.maximum(zc, _MIN_DEPTH)
        xy = np.stack([xc / zc, yc / zc], axis=-1)
        if self.dist is not None:
            xy = distort_normalized(xy, self.dist)
        fx, fy = self.fx, self.fy
        if focal_scale is not None:
            fx, fy = fx * focal_scale[self.camera], fy * focal_scale[self.camera]
        return np.stack([fx * xy[:, 0] + self.skew * xy[:, 1] + self.cx, fy * xy[:, 1] + self.cy], axis=-1)


def project_observations(rvec: np.ndarray, t: np.ndarray, K: np.ndarray, dist: np.ndarray,
                         camera: np.ndarray, X: np.ndarray, focal_scale: np.ndarray | None = None) -> np.ndarray:
    """Pixels (M, 2) of points X (M, 3) in cameras `camera` (M,), all at once.

    rvec, t: (C, 3) world -> camera; K: (C, 3, 3); dist: (C, 8) OpenCV order; focal_scale: (C,)
    factor on fx and fy (None = 1). Points behind a camera are clamped to a tiny depth (large error).
    """
    return _Projector(K, dist, np.asarray(camera, dtype=np.int64))(rvec, t, np.asarray(X, dtype=np.float64),
                                                                    focal_scale)


def reprojection_errors(rig: Rig, observations: Observations, points3d: np.ndarray) -> np.ndarray:
    """(M,) pixel distance between each observation and its point's projection (NaN for NaN points)."""
    rvec = np.stack([rotation_to_rvec(c.R) for c in rig])
    t = np.stack([c.t for c in rig])
    K = np.stack([c.K for c in rig])
    dist = np.stack([c.dist for c in rig])
    X = np.asarray(points3d, dtype=np.float64)[observations.point]
    px = project_observations(rvec, t, K, dist, observations.camera, np.nan_to_num(X))
    err = np.linalg.norm(px - observations.xy, axis=1)
    return np.where(np.isfinite(X).all(axis=1), err, np.nan)


# --- the problem -----------------------------------------------------------------------------------

class _Problem:
    """Parameter packing, residuals and Jacobian pattern for one round (a fixed set of observations)."""

    def __init__(self, K, dist, free_cams, refine_focal, active_points, obs_cam, obs_pt, obs_xy, obs_w,
                 bones, gauge):
        self.K, self.dist = K, dist
        C = K.shape[0]
        self.C = C
        self.free_cams = free_cams                                        # (Cf,) camera indices
        self.cam_slot = np.full(C, -1)
        self.cam_slot[free_cams] = np.arange(free_cams.size)
        self.refine_focal = refine_focal
        self.n_cam = 6 * free_cams.size
        self.n_focal = C if refine_focal else 0
        self.active = active_points                                       # (Na,) point indices
        slot = np.full(int(active_points.max()) + 1 if active_points.size else 0, -1)
        slot[active_points] = np.arange(active_points.size)
        self.slot = slot
        self.n_pts = 3 * active_points.size
        self.obs_cam, self.obs_pt, self.obs_xy, self.obs_w = obs_cam, slot[obs_pt], obs_xy, obs_w
        self.project = _Projector(K, dist, obs_cam)
        self.bones = bones                                                # (a_slot, b_slot, bone, weight, B) or None
        self.n_bones = bones[4] if bones is not None else 0
        self.gauge = gauge                                                # (ref cam, fixed centre, d0, weight) or None

    # packing
    def pack(self, rvec, t, focal, X, L):
        parts = [np.concatenate([rvec[self.free_cams], t[self.free_cams]], axis=1).ravel()]
        if self.refine_focal:
            parts.append(np.log(focal))
        parts.append(X[self.active].ravel())
        if self.n_bones:
            parts.append(L)
        return np.concatenate(parts)

    def unpack(self, p, rvec0, t0):
        Cf = self.free_cams.size
        cams = p[: self.n_cam].reshape(Cf, 6)
        rvec, t = rvec0.copy(), t0.copy()
        rvec[self.free_cams], t[self.free_cams] = cams[:, :3], cams[:, 3:]
        k = self.n_cam
        focal = np.exp(p[k: k + self.n_focal]) if self.refine_focal else None
        k += self.n_focal
        X = p[k: k + self.n_pts].reshape(-1, 3)
        L = p[k + self.n_pts:]
        return rvec, t, focal, X, L

    def residuals(self, p, rvec0, t0):
        rvec, t, focal, X, L = self.unpack(p, rvec0, t0)
        px = self.project(rvec, t, X[self.obs_pt], focal)
        parts = [((px - self.obs_xy) * self.obs_w[:, None]).ravel()]
        if self.n_bones:
            a, b, bone, weight, _ = self.bones
            d = X[a] - X[b]
            parts.append(weight * (np.sqrt((d * d).sum(axis=1)) - L[bone]))
        if self.gauge is not None:
            ref, c_fixed, d0, weight = self.gauge
            c_ref = -rodrigues(rvec[ref]).T @ t[ref]
            parts.append([weight * (np.linalg.norm(c_ref - c_fixed) - d0)])
        return np.concatenate(parts)

    def sparsity(self):
        """Jacobian pattern (rows x params) as a CSR matrix, built with index arrays."""
        M = self.obs_cam.size
        rows, cols = [], []
        obs_rows = np.stack([2 * np.arange(M), 2 * np.arange(M) + 1], axis=1)        # (M, 2)
        slot = self.cam_slot[self.obs_cam]
        free = slot >= 0
        if free.any():  # 2 rows x 6 camera columns per observation of a free camera
            r = np.repeat(obs_rows[free], 6, axis=1)                                  # (Mf, 12)
            c = np.tile(6 * slot[free, None] + np.arange(6), 2)
            rows.append(r.ravel()), cols.append(c.ravel())
        if self.refine_focal:
            rows.append(obs_rows.ravel()), cols.append(np.repeat(self.n_cam + self.obs_cam, 2))
        base = self.n_cam + self.n_focal
        r = np.repeat(obs_rows, 3, axis=1)                                            # (M, 6)
        c = np.tile(base + 3 * self.obs_pt[:, None] + np.arange(3), 2)
        rows.append(r.ravel()), cols.append(c.ravel())
        n_rows = 2 * M
        if self.n_bones:
            a, b, bone, _, _ = self.bones
            K = a.size
            br = n_rows + np.arange(K)
            rows += [np.repeat(br, 3), np.repeat(br, 3), br]
            cols += [(base + 3 * a[:, None] + np.arange(3)).ravel(), (base + 3 * b[:, None] + np.arange(3)).ravel(),
                     base + self.n_pts + bone]
            n_rows += K
        if self.gauge is not None:
            ref = self.gauge[0]
            rows.append(np.full(6, n_rows)), cols.append(6 * self.cam_slot[ref] + np.arange(6))
            n_rows += 1
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        n_params = base + self.n_pts + self.n_bones
        return coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n_rows, n_params)).tocsr()


def _errors(rvec, t, K, dist, focal, obs: Observations, X) -> np.ndarray:
    Xo = X[obs.point]
    ok = np.isfinite(Xo).all(axis=1)
    px = project_observations(rvec, t, K, dist, obs.camera, np.where(ok[:, None], Xo, 0.0), focal)
    return np.where(ok, np.linalg.norm(px - obs.xy, axis=1), np.inf)


def bundle_adjust(rig: Rig, observations: Observations, points3d: np.ndarray, *,
                  bones: BoneConstraints | None = None, fixed_camera: int = 0, fix_scale: bool = True,
                  refine_focal: bool = False, loss: str = "soft_l1", f_scale: float = 3.0,
                  outlier_px: tuple[float, ...] = (20.0, 8.0, 4.0), outlier_sigmas: float = 3.0,
                  max_nfev: int = 60, ftol: float = 1e-6, progress: bool = False
                  ) -> tuple[Rig, np.ndarray, BundleReport]:
    """Refine the extrinsics of `rig` and the points `points3d` (N, 3) against `observations`.

    observations: `Observations` (camera (M,), point (M,) in [0, N), xy (M, 2) px, weight (M,));
    bones: optional `BoneConstraints` between points (shared lengths are free parameters);
    fixed_camera: index of the camera whose R, t stay as given (the gauge); fix_scale: also keep the
    distance from it to the farthest camera; refine_focal: one free factor on fx, fy per camera;
    loss: "soft_l1", "huber", "cauchy" or "linear", f_scale its soft threshold (px);
    outlier_px: threshold per round (px), see the module docstring; outlier_sigmas: floor of each
    threshold in robust sigmas of the inliers' errors.

    Returns (rig with refined cameras (same names, intrinsics unless refine_focal), points (N, 3) with
    NaN for points not supported by two inlier observations at the end, BundleReport).
    """
    t_start = time.perf_counter()
    C = len(rig)
    obs = observations
    X = np.array(points3d, dtype=np.float64).reshape(-1, 3)
    N = X.shape[0]
    _check_arguments(C, N, obs, fixed_camera, outlier_px)

    K = np.stack([c.K for c in rig])
    dist = np.stack([c.dist for c in rig])
    rvec = np.stack([rotation_to_rvec(c.R) for c in rig])
    t = np.stack([c.t for c in rig]).copy()
    focal = np.ones(C) if refine_focal else None
    L = _initial_bone_lengths(bones, X)

    free_cams = np.array([c for c in range(C) if c != fixed_camera], dtype=np.int64)
    usable = (obs.weight > 0) & np.isfinite(obs.xy).all(axis=1)
    rounds = []
    inliers = np.zeros(len(obs), dtype=bool)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(outlier_px), desc="bundle adjustment", unit="round", leave=False)
    for threshold in outlier_px:
        t_round = time.perf_counter()
        err = _errors(rvec, t, K, dist, focal, obs, X)
        threshold, inliers, views = _round_inliers(err, usable, inliers, threshold, outlier_sigmas, obs.point, N)
        active = np.flatnonzero(views >= 2)
        gauge = _scale_gauge(rvec, t, fixed_camera, f_scale) if fix_scale and free_cams.size else None
        prob = _Problem(K, dist, free_cams, refine_focal, active, obs.camera[inliers], obs.point[inliers],
                        obs.xy[inliers], obs.weight[inliers], _bone_args(bones, views, active), gauge)
        p0 = prob.pack(rvec, t, focal if refine_focal else None, X, L)
        res = least_squares(prob.residuals, p0, jac_sparsity=prob.sparsity(), method="trf", loss=loss,
                            f_scale=f_scale, x_scale="jac", ftol=ftol, xtol=1e-10, max_nfev=max_nfev,
                            tr_solver="lsmr", args=(rvec, t))
        rvec, t, focal_new, Xa, L_new = prob.unpack(res.x, rvec, t)
        if refine_focal:
            focal = focal_new
        X[active] = Xa
        if bones is not None:
            L = L_new
        rounds.append({"threshold_px": round(float(threshold), 3), "observations": int(inliers.sum()),
                       "points": int(active.size), "cost": float(res.cost), "nfev": int(res.nfev),
                       "seconds": round(time.perf_counter() - t_round, 3)})
        if bar is not None:
            bar.set_postfix(threshold=f"{threshold:.1f}px", obs=int(inliers.sum()))
            bar.update(1)
    if bar is not None:
        bar.close()

    err = _errors(rvec, t, K, dist, focal, obs, X)
    X[np.bincount(obs.point[inliers], minlength=N) < 2] = np.nan
    R = rodrigues(rvec)
    cams = []
    for c, cam in enumerate(rig):
        Kc = cam.K.copy()
        if refine_focal:
            Kc[0, 0] *= focal[c]
            Kc[1, 1] *= focal[c]
        cams.append(cam.copy(K=Kc, R=R[c], t=t[c]))
    report = _report(obs, err, inliers, usable, C, L, rounds, focal if refine_focal else np.ones(C),
                     time.perf_counter() - t_start)
    return Rig(cams), X, report


def _check_arguments(C: int, N: int, obs: Observations, fixed_camera: int, outlier_px) -> None:
    if not 0 <= fixed_camera < C:
        raise ValueError(f"fixed_camera {fixed_camera} is not a camera index of a rig of {C}")
    if len(obs) and (obs.camera.min() < 0 or obs.camera.max() >= C):
        raise ValueError(f"observations: camera index out of range [0, {C})")
    if len(obs) and (obs.point.min() < 0 or obs.point.max() >= N):
        raise ValueError(f"observations: point index out of range [0, {N})")
    if not outlier_px:
        raise ValueError("outlier_px needs at least one round")


def _initial_bone_lengths(bones: BoneConstraints | None, X: np.ndarray) -> np.ndarray | None:
    """(B,) starting lengths: the given ones, NaN replaced by the median of the initial point distances."""
    if bones is None:
        return None
    L = bones.lengths.copy()
    d = np.linalg.norm(X[bones.a] - X[bones.b], axis=1)
    for k in np.flatnonzero(~np.isfinite(L)):       # B is small (bones x people): a loop is fine
        dk = d[(bones.bone == k) & np.isfinite(d)]
        L[k] = np.median(dk) if dk.size else 0.0
    return L


def _round_inliers(err: np.ndarray, usable: np.ndarray, inliers: np.ndarray, threshold, outlier_sigmas: float,
                   point: np.ndarray, N: int):
    """One round's (threshold px, inliers (M,), inlier views per point (N,)): errors under the threshold,
    raised to `outlier_sigmas` x the noise of the previous round's inliers; observations of points with
    fewer than two inlier views sit the round out."""
    current = usable & (err < np.inf)
    if inliers.any():  # noise floor from the previous round's inliers
        sigma = np.median(err[inliers & current]) / _RAYLEIGH_MEDIAN
        threshold = max(float(threshold), outlier_sigmas * sigma)
    inliers = current & (err <= threshold)
    views = np.bincount(point[inliers], minlength=N)
    inliers &= views[point] >= 2
    if not (views >= 2).any():
        raise ValueError("bundle adjustment: no point has two observations within "
                         f"{threshold:.1f} px; check the initial cameras and points")
    return threshold, inliers, views


def _bone_args(bones: BoneConstraints | None, views: np.ndarray, active: np.ndarray):
    """The bone constraints between adjusted points, in `_Problem`'s form (point slots, bone, weight, B)."""
    if bones is None:
        return None
    keep = (views[bones.a] >= 2) & (views[bones.b] >= 2)
    slot = np.full(views.size, -1)
    slot[active] = np.arange(active.size)
    return slot[bones.a[keep]], slot[bones.b[keep]], bones.bone[keep], float(bones.weight), bones.lengths.size


def _scale_gauge(rvec: np.ndarray, t: np.ndarray, fixed_camera: int, f_scale: float):
    """(camera farthest from the fixed one, fixed camera's centre, their distance, residual weight), or None
    when all cameras sit at one point."""
    centers = -np.einsum("cji,cj->ci", rodrigues(rvec), t)
    gap = np.linalg.norm(centers - centers[fixed_camera], axis=1)
    ref = int(np.argmax(gap))
    if gap[ref] > 0:
        return ref, centers[fixed_camera], float(gap[ref]), 1e3 * f_scale / gap[ref]
    return None


def _report(obs: Observations, err: np.ndarray, inliers: np.ndarray, usable: np.ndarray, C: int, L, rounds,
            focal_scale: np.ndarray, seconds: float) -> BundleReport:
    e_in = np.where(inliers, err, np.nan)
    n_in = np.bincount(obs.camera[inliers], minlength=C)
    rms = np.full(C, np.nan)
    med = np.full(C, np.nan)
    for c in np.flatnonzero(n_in):  # C is small
        ec = e_in[(obs.camera == c) & inliers]
        rms[c], med[c] = np.sqrt(np.mean(ec ** 2)), np.median(ec)
    outliers = np.bincount(obs.camera[usable & ~inliers], minlength=C)
    return BundleReport(rms_px=rms, median_px=med, observations=n_in, outliers=outliers, inliers=inliers,
                        errors_px=err, bone_lengths=L, rounds=rounds, focal_scale=focal_scale, time_s=seconds)


__all__ = ["Observations", "BoneConstraints", "BundleReport", "bundle_adjust", "project_observations",
           "reprojection_errors"]
