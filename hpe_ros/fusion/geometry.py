"""Per-rig constants for the fusion hot path, computed once per rig instead of once per frame.

`rig_constants(rig)` returns a cached `RigConstants`: stacked intrinsics, distortion, [R | t], camera
centres, the essential matrix of every camera pair, and batched (one numpy expression for all cameras,
no Python loop over cameras) undistortion and projection with `hpe_ros.camera`'s distortion model.

The cache is keyed by the rig object and checked on every call against the identity of its cameras and
of their K, distortion, R and t arrays (a few microseconds): replacing a camera or one of those arrays
recomputes the constants. Writing into those arrays in place is not noticed (Rig.projection_matrices
does not notice it either): build a new Camera / Rig after recalibration.

    >>> rc = rig_constants(rig)
    >>> xy = rc.undistort(points2d)        # (C, ..., 2) px -> (C, ..., 2) normalised
    >>> px = rc.project(points3d)          # (..., 3) world -> (C, ..., 2) px, NaN behind a camera
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np

from ..camera import Rig, distort_xy, undistort_normalized

_UNDISTORT_ITERATIONS = 10  # as Camera.undistort_points (cv2.undistortPoints' default)


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    z = np.zeros(v.shape[:-1])
    return np.stack([z, -v[..., 2], v[..., 1], v[..., 2], z, -v[..., 0], -v[..., 1], v[..., 0], z],
                    axis=-1).reshape(v.shape[:-1] + (3, 3))


def _iter_parts(rig: Rig) -> Iterator:
    """The objects the constants derive from, in a fixed order."""
    return (x for c in rig.cameras for x in (c, c.K, c.dist, c.R, c.t))


def _parts(rig: Rig) -> list:
    """_iter_parts as a list (held by the cache, so the objects stay alive and comparable by identity)."""
    return list(_iter_parts(rig))


class RigConstants:
    """Constants of one rig of C cameras (all arrays have a leading camera axis).

    K (C, 3, 3); dist (C, 8) OpenCV order; R (C, 3, 3), t (C, 3) world -> camera; P (C, 3, 4) = [R | t];
    Rt (C, 3, 3) = R^T (for X @ R^T as one matmul); centers (C, 3) world; focal (C, 2) = (fx, fy);
    f_geo (C,) = sqrt(fx fy); E (C, C, 3, 3) essential matrices with x_b^T E[a, b] x_a = 0 for
    normalised homogeneous points x_a in camera a and x_b in camera b (zero on the diagonal).
    """

    def __init__(self, rig: Rig):
        cams = rig.cameras
        C = len(cams)
        self.C = C
        self.K = np.stack([c.K for c in cams]) if C else np.zeros((0, 3, 3))
        self.dist = np.stack([c.dist for c in cams]) if C else np.zeros((0, 8))
        self.has_distortion = bool(np.any(self.dist))
        self.R = np.stack([c.R for c in cams]) if C else np.zeros((0, 3, 3))
        self.t = np.stack([c.t for c in cams]) if C else np.zeros((0, 3))
        self.P = np.concatenate([self.R, self.t[:, :, None]], axis=2)
        self.Rt = np.ascontiguousarray(self.R.transpose(0, 2, 1))
        self.centers = -np.einsum("cji,cj->ci", self.R, self.t)
        self.fx, self.fy = self.K[:, 0, 0].copy(), self.K[:, 1, 1].copy()
        self.cx, self.cy, self.skew = self.K[:, 0, 2].copy(), self.K[:, 1, 2].copy(), self.K[:, 0, 1].copy()
        self.focal = np.stack([self.fx, self.fy], axis=1)
        self.f_geo = np.sqrt(self.fx * self.fy)
        # Relative pose b <- a for every ordered pair: R_ab = R_b R_a^T, t_ab = t_b - R_ab t_a; E = [t_ab]x R_ab.
        R_ab = np.matmul(self.R[None, :], self.Rt[:, None])                       # [a, b] = R_b R_a^T
        t_ab = self.t[None, :] - np.einsum("abij,aj->abi", R_ab, self.t)
        self.E = np.matmul(_skew(t_ab), R_ab)                                      # (C, C, 3, 3)
        self.E[np.arange(C), np.arange(C)] = 0.0
        self.ET = np.ascontiguousarray(self.E.transpose(0, 1, 3, 2))

    def _per_camera(self, values: np.ndarray, ndim: int) -> np.ndarray:
        """Per-camera scalars (C,) shaped to broadcast against (C, ...) arrays of `ndim` dims."""
        return values.reshape((self.C,) + (1,) * (ndim - 1))

    def undistort(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (C, ..., 2) -> undistorted normalised coordinates (C, ..., 2), as Rig.undistort_points."""
        px = np.asarray(pixels, dtype=np.float64)
        n = px.ndim - 1
        fx, fy = self._per_camera(self.fx, n), self._per_camera(self.fy, n)
        cx, cy, sk = self._per_camera(self.cx, n), self._per_camera(self.cy, n), self._per_camera(self.skew, n)
        y0 = (px[..., 1] - cy) / fy
        x0 = (px[..., 0] - cx - sk * y0) / fx
        if self.has_distortion:  # the same fixed-point inversion as Camera, coefficients per camera
            xy = undistort_normalized(np.stack([x0, y0], axis=-1), [self._per_camera(d, n) for d in self.dist.T],
                                      _UNDISTORT_ITERATIONS)
            x0, y0 = xy[..., 0], xy[..., 1]
        out = np.empty(px.shape)
        out[..., 0], out[..., 1] = x0, y0
        return out

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixels (C, ..., 2) in every camera, distortion applied; NaN behind a
        camera (z <= 1e-9), as Rig.project."""
        X = np.asarray(points, dtype=np.float64)
        shape = X.shape[:-1]
        flat = X.reshape(1, -1, 3)
        pc = np.matmul(flat, self.Rt) + self.t[:, None, :]                        # (C, N, 3)
        z = pc[..., 2]
        front = z > 1e-9
        zs = np.where(front, z, 1.0)
        x = np.where(front, pc[..., 0] / zs, np.nan)
        y = np.where(front, pc[..., 1] / zs, np.nan)
        if self.has_distortion:
            x, y = distort_xy(x, y, self.dist.T[:, :, None])
        out = np.empty((self.C, flat.shape[1], 2))
        out[..., 0] = self.fx[:, None] * x + self.skew[:, None] * y + self.cx[:, None]
        out[..., 1] = self.fy[:, None] * y + self.cy[:, None]
        return out.reshape((self.C,) + shape + (2,))


_CACHE: weakref.WeakKeyDictionary[Rig, tuple[list, RigConstants]] = weakref.WeakKeyDictionary()


def _same_parts(rig: Rig, held: list) -> bool:
    """Whether `rig` still has exactly the objects `held` (by identity; no key built per call)."""
    return len(held) == 5 * len(rig.cameras) and all(a is b for a, b in zip(_iter_parts(rig), held))


def rig_constants(rig: Rig) -> RigConstants:
    """The RigConstants of `rig`, computed on first use and again when its cameras are replaced."""
    hit = _CACHE.get(rig)
    if hit is not None and _same_parts(rig, hit[0]):
        return hit[1]
    rc = RigConstants(rig)
    _CACHE[rig] = (_parts(rig), rc)
    return rc
