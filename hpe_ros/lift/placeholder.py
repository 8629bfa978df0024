"""The apparent-size lifter (model "apparent_size_placeholder"): a flat person at the depth its torso implies.

It puts every joint of a person at one depth, the depth at which a torso of `torso_m` metres looks as long
as the observed shoulder-to-hip distance in pixels. Good enough to place a person seen by a single camera
roughly in the world; it knows nothing about limb depth.
"""
from __future__ import annotations

import numpy as np

from hpe_ros.skeleton import get_layout


class ApparentSizeLifter:
    """points2d (P, J, 2) px + scores (P, J) + K (3, 3) -> points3d (P, J, 3) m in the camera frame."""

    name = "apparent_size_placeholder"

    def __init__(self, layout: str = "coco17", torso_m: float = 0.50, min_score: float = 0.2):
        self.layout = get_layout(layout)
        self.torso_m = torso_m
        self.min_score = min_score
        L = self.layout
        self._pairs = np.array([[L.index("left_shoulder"), L.index("left_hip")],
                                [L.index("right_shoulder"), L.index("right_hip")]])

    def lift(self, K: np.ndarray, points2d: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points2d = np.asarray(points2d, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        P, J = scores.shape
        ok = (scores >= self.min_score) & np.all(np.isfinite(points2d), axis=-1)
        a, b = self._pairs[:, 0], self._pairs[:, 1]
        seg = np.linalg.norm(points2d[:, a] - points2d[:, b], axis=-1)  # (P, 2) torso sides in px
        seg = np.where(ok[:, a] & ok[:, b], seg, np.nan)
        have = np.isfinite(seg)
        with np.errstate(invalid="ignore", divide="ignore"):
            torso_px = np.where(have, seg, 0.0).sum(axis=1) / have.sum(axis=1)  # NaN where no side is seen
        focal = 0.5 * (K[0, 0] + K[1, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = focal * self.torso_m / torso_px  # (P,)
        xy = (points2d - K[:2, 2]) / np.array([K[0, 0], K[1, 1]])
        pts = np.concatenate([xy, np.ones((P, J, 1))], axis=-1) * depth[:, None, None]
        valid = ok & np.isfinite(depth)[:, None] & (depth[:, None] > 0)
        pts[~valid] = np.nan
        return pts, np.where(valid, scores, 0.0)
