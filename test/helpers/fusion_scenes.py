"""Synthetic scenes for the fusion tests: a ring of cameras and random standing COCO-17 people.

Self-contained on purpose (no hpe_ros.sim): the geometry tests must not move when the simulator does.
"""
from __future__ import annotations

import numpy as np

from hpe_ros.camera import Camera, Rig, look_at

# Standing COCO-17 person, 1.75 m, local frame: x forward, y left, z up (metres).
TEMPLATE = np.array([
    [0.09, 0.00, 1.63],                       # nose
    [0.07, 0.03, 1.67], [0.07, -0.03, 1.67],  # eyes
    [0.00, 0.08, 1.64], [0.00, -0.08, 1.64],  # ears
    [0.00, 0.19, 1.45], [0.00, -0.19, 1.45],  # shoulders
    [0.04, 0.23, 1.16], [0.04, -0.23, 1.16],  # elbows
    [0.12, 0.22, 0.90], [0.12, -0.22, 0.90],  # wrists
    [0.00, 0.10, 0.95], [0.00, -0.10, 0.95],  # hips
    [0.03, 0.11, 0.51], [0.03, -0.11, 0.51],  # knees
    [0.00, 0.11, 0.08], [0.00, -0.11, 0.08],  # ankles
])


def person(x: float, y: float, yaw: float = 0.0) -> np.ndarray:
    """(17, 3) template person turned by yaw about z, hips above (x, y)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return TEMPLATE @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + [x, y, 0.0]


def ring_rig(n: int = 8, radius: float = 4.0, height: float = 2.5, f: float = 500.0,
             dist=None, size=(640, 480)) -> Rig:
    """n cameras evenly on a circle, all looking at (0, 0, 1)."""
    K = np.array([[f, 0, size[0] / 2], [0, f, size[1] / 2], [0, 0, 1]])
    cams = []
    for i in range(n):
        a = 2 * np.pi * i / n
        R, t = look_at([radius * np.cos(a), radius * np.sin(a), height], [0, 0, 1])
        cams.append(Camera(f"cam{i}", K, dist, R, t, size))
    return Rig(cams)


def random_person(rng: np.random.Generator, position=None, yaw=None) -> np.ndarray:
    """One standing person (17, 3): height 1.6-1.9 m, jittered limbs, random yaw and position."""
    scale = rng.uniform(1.6, 1.9) / 1.75
    joints = TEMPLATE * scale + rng.normal(0, 0.03, TEMPLATE.shape) * [1, 1, 0.5]
    yaw = rng.uniform(-np.pi, np.pi) if yaw is None else yaw
    c, s = np.cos(yaw), np.sin(yaw)
    Rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    pos = rng.uniform(-1.5, 1.5, 2) if position is None else np.asarray(position, dtype=float)
    return joints @ Rz.T + [pos[0], pos[1], 0.0]


def random_people(rng: np.random.Generator, count: int, min_separation: float = 0.7) -> np.ndarray:
    """count people (count, 17, 3) whose hip centres are at least min_separation apart."""
    positions = []
    while len(positions) < count:
        p = rng.uniform(-1.5, 1.5, 2)
        if all(np.linalg.norm(p - q) >= min_separation for q in positions):
            positions.append(p)
    return np.stack([random_person(rng, p) for p in positions]) if count else np.zeros((0, 17, 3))


def observe(rig: Rig, points3d: np.ndarray, rng: np.random.Generator | None = None, noise_px: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Project points (..., 3) into every camera -> pixels (C, ..., 2) (+ Gaussian noise) and scores
    (C, ...) in [0.6, 1], 0 (and NaN pixels) outside the image or behind the camera."""
    px = rig.project(points3d)
    if noise_px and rng is not None:
        px = px + rng.normal(0, noise_px, px.shape)
    inside = np.stack([cam.in_image(p) for cam, p in zip(rig, px)])
    r = rng if rng is not None else np.random.default_rng(0)
    scores = np.where(inside, r.uniform(0.6, 1.0, inside.shape), 0.0)
    px = np.where(inside[..., None], px, np.nan)
    return px, scores
