"""Pinhole cameras with OpenCV distortion, and rigs of them; batched numpy throughout.

Convention: world -> camera is ``x_cam = R @ X_world + t`` (camera optical frame: x right, y down,
z forward). Distortion follows OpenCV's order (k1, k2, p1, p2[, k3[, k4, k5, k6]]); shorter vectors are
zero-padded. Image size is (width, height) in pixels.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _as_dist(dist) -> np.ndarray:
    d = np.zeros(8)
    if dist is not None:
        v = np.asarray(dist, dtype=np.float64).ravel()
        if v.size > 8:
            raise ValueError(f"distortion has {v.size} coefficients; at most 8 (rational model) are supported")
        d[: v.size] = v
    return d


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3)."""
    rvec = np.asarray(rvec, dtype=np.float64)
    theta = np.linalg.norm(rvec, axis=-1, keepdims=True)
    k = np.where(theta > 1e-12, rvec / np.maximum(theta, 1e-12), 0.0)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    Kx = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(k.shape[:-1] + (3, 3))
    th = theta[..., None]
    eye = np.broadcast_to(np.eye(3), Kx.shape)
    return eye + np.sin(th) * Kx + (1 - np.cos(th)) * (Kx @ Kx)


def rotation_to_rvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> axis-angle (3,)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_rotvec()


def look_at(eye: Sequence[float], target: Sequence[float],
            up: Sequence[float] = (0, 0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """World->camera (R, t) for an optical-frame camera at `eye` looking at `target` (z-up world).

    Batched: eye, target (..., 3) -> R (..., 3, 3), t (..., 3)."""
    eye_, target_, up_ = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target_ - eye_
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    x = np.cross(z, up_)
    along_up = np.linalg.norm(x, axis=-1, keepdims=True) < 1e-9  # looking straight along `up`
    x = np.where(along_up, np.cross(z, [0.0, 1.0, 0.0]), x)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=-2)  # rows: camera axes in world coordinates
    return R, -np.einsum("...ij,...j->...i", R, eye_)


def distort_normalized(xy: np.ndarray, dist) -> np.ndarray:
    """Apply OpenCV distortion to normalised coordinates xy (..., 2) -> (..., 2); the one distortion model.

    dist: the 8 coefficients (k1, k2, p1, p2, k3, k4, k5, k6), each a number or an array broadcasting
    with xy[..., 0] (e.g. (C, 1) per camera for xy (C, N, 2): every camera in one expression).
    """
    return np.stack(distort_xy(xy[..., 0], xy[..., 1], dist), axis=-1)


def distort_xy(x: np.ndarray, y: np.ndarray, dist) -> tuple[np.ndarray, np.ndarray]:
    """`distort_normalized` on the coordinates as two arrays (...,) -> (xd, yd): the fusion hot path keeps
    x and y apart, and contiguous arrays are faster than the strided halves of an (..., 2) array."""
    k1, k2, p1, p2, k3, k4, k5, k6 = dist
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def undistort_normalized(xy_d: np.ndarray, dist, iterations: int = 10) -> np.ndarray:
    """Invert `distort_normalized` by fixed-point iteration (as cv2.undistortPoints does).

    dist: the 8 coefficients, each a number or an array broadcasting with xy_d[..., 0] (per camera).
    """
    if not any(np.any(d) for d in dist):
        return xy_d
    k1, k2, p1, p2, k3, k4, k5, k6 = dist
    x, y = xy_d[..., 0].copy(), xy_d[..., 1].copy()
    x0, y0 = xy_d[..., 0], xy_d[..., 1]
    for _ in range(iterations):
        r2 = x * x + y * y
        icdist = (1 + r2 * (k4 + r2 * (k5 + r2 * k6))) / (1 + r2 * (k1 + r2 * (k2 + r2 * k3)))
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (x0 - dx) * icdist
        y = (y0 - dy) * icdist
    return np.stack([x, y], axis=-1)


@dataclass
class Camera:
    """One calibrated camera.

    K: (3, 3) intrinsics; dist: (8,) OpenCV distortion; R: (3, 3), t: (3,) world->camera;
    size: (width, height) px; name: e.g. "cam0"; frame_id: its optical TF frame.
    """

    name: str
    K: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(8))
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))
    size: tuple[int, int] = (640, 480)
    frame_id: str = ""

    def __post_init__(self):
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.dist = _as_dist(self.dist)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        self.size = (int(self.size[0]), int(self.size[1]))
        if not self.frame_id:
            self.frame_id = f"{self.name}_optical_frame"

    # --- geometry -------------------------------------------------------------------------------
    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (3,)."""
        return -self.R.T @ self.t

    @property
    def P(self) -> np.ndarray:
        """(3, 4) projection matrix for normalised (undistorted, K-free) coordinates: [R | t]."""
        return np.concatenate([self.R, self.t[:, None]], axis=1)

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world -> (..., 3) camera optical frame."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def camera_to_world(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) camera optical frame -> (..., 3) world."""
        return (np.asarray(points, dtype=np.float64) - self.t) @ self.R

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixels (..., 2), distortion applied; NaN behind the camera."""
        pc = self.world_to_camera(points)
        z = pc[..., 2:3]
        xy = np.where(z > 1e-9, pc[..., :2] / np.where(z > 1e-9, z, 1.0), np.nan)
        return self.normalized_to_pixels(distort_normalized(xy, self.dist))

    def normalized_to_pixels(self, xy: np.ndarray) -> np.ndarray:
        K = self.K
        u = K[0, 0] * xy[..., 0] + K[0, 1] * xy[..., 1] + K[0, 2]
        v = K[1, 1] * xy[..., 1] + K[1, 2]
        return np.stack([u, v], axis=-1)

    def undistort_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Detected pixels (..., 2) -> the pixels an ideal pinhole camera with the same K would see
        (returned as they are when the camera has no distortion)."""
        if not np.any(self.dist):
            return pixels
        return self.normalized_to_pixels(self.undistort_points(pixels))

    def undistort_points(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (..., 2) -> undistorted normalised coordinates (..., 2) (z = 1 plane)."""
        px = np.asarray(pixels, dtype=np.float64)
        K = self.K
        y = (px[..., 1] - K[1, 2]) / K[1, 1]
        x = (px[..., 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
        return undistort_normalized(np.stack([x, y], axis=-1), self.dist)

    def rays(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Back-project pixels (..., 2) -> (origin (3,), unit directions (..., 3)) in the world frame."""
        xy = self.undistort_points(pixels)
        d = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1) @ self.R  # R^T d_cam
        return self.center, d / np.linalg.norm(d, axis=-1, keepdims=True)

    def in_image(self, pixels: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Boolean (...,) mask of finite pixels inside the image."""
        w, h = self.size
        u, v = pixels[..., 0], pixels[..., 1]
        with np.errstate(invalid="ignore"):
            return (np.isfinite(u) & np.isfinite(v) & (u >= -margin) & (u < w + margin)
                    & (v >= -margin) & (v < h + margin))

    def copy(self, **changes) -> Camera:
        kw: dict[str, Any] = dict(name=self.name, K=self.K.copy(), dist=self.dist.copy(), R=self.R.copy(),
                                  t=self.t.copy(), size=self.size, frame_id=self.frame_id)
        kw.update(changes)
        return Camera(**kw)


class Rig:
    """An ordered set of cameras; batched operations return arrays with a leading camera axis C."""

    def __init__(self, cameras: Sequence[Camera]):
        self.cameras = list(cameras)
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        self._refresh()

    def _refresh(self):
        self._R = np.stack([c.R for c in self.cameras]) if self.cameras else np.zeros((0, 3, 3))
        self._t = np.stack([c.t for c in self.cameras]) if self.cameras else np.zeros((0, 3))

    # --- container ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self) -> Iterator[Camera]:
        return iter(self.cameras)

    def __getitem__(self, key: int | str) -> Camera:
        if isinstance(key, str):
            for c in self.cameras:
                if c.name == key:
                    return c
            raise KeyError(f"no camera named {key!r}; rig has {self.names}")
        return self.cameras[key]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def subset(self, names_or_indices: Sequence[int | str]) -> Rig:
        return Rig([self[k] for k in names_or_indices])

    # --- batched geometry -------------------------------------------------------------------------
    @property
    def projection_matrices(self) -> np.ndarray:
        """(C, 3, 4) [R | t] per camera, for undistorted normalised coordinates."""
        return np.concatenate([self._R, self._t[:, :, None]], axis=2)

    @property
    def centers(self) -> np.ndarray:
        """(C, 3) camera centres in the world frame."""
        return -np.einsum("cji,cj->ci", self._R, self._t)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixels (C, ..., 2) in every camera."""
        return np.stack([c.project(points) for c in self.cameras])

    def project_per_camera(self, points: np.ndarray) -> np.ndarray:
        """Points (C, ..., 3), one set per camera -> pixels (C, ..., 2)."""
        return np.stack([c.project(p) for c, p in zip(self.cameras, points)])

    def undistort_points(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (C, ..., 2) -> normalised undistorted coordinates (C, ..., 2)."""
        return np.stack([c.undistort_points(p) for c, p in zip(self.cameras, pixels)])

    def rays(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (C, ..., 2) -> origins (C, 3) and unit world directions (C, ..., 3)."""
        xy = self.undistort_points(pixels)
        d = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1)
        flat = d.reshape(len(self), -1, 3)
        dw = np.einsum("cnj,cjk->cnk", flat, self._R).reshape(d.shape)  # R^T d per camera
        return self.centers, dw / np.linalg.norm(dw, axis=-1, keepdims=True)
