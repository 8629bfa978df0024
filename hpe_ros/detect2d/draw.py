"""Draw 2D skeletons on images (debug image topic, offline previews)."""
from __future__ import annotations

import cv2
import numpy as np

from hpe_ros.skeleton import get_layout

_PALETTE = np.array([(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                     (213, 94, 0), (204, 121, 167)], dtype=np.int32)  # colour-blind safe, BGR order irrelevant


def draw_skeletons(image: np.ndarray, points: np.ndarray, scores: np.ndarray, layout: str,
                   min_score: float = 0.3) -> np.ndarray:
    """Copy of BGR `image` with people drawn: points (P, J, 2) px, scores (P, J); one colour per person."""
    out = np.ascontiguousarray(image).copy()
    bones = get_layout(layout).bone_array()
    thickness = max(1, round(max(out.shape[:2]) / 320))
    for p in range(len(points)):  # a handful of people, a few dozen lines each
        colour = tuple(int(c) for c in _PALETTE[p % len(_PALETTE)])
        ok = (np.nan_to_num(scores[p]) >= min_score) & np.isfinite(points[p]).all(axis=1)
        for a, b in bones:
            if ok[a] and ok[b]:
                cv2.line(out, tuple(int(v) for v in points[p, a]), tuple(int(v) for v in points[p, b]),
                         colour, thickness, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(out, tuple(int(v) for v in points[p, j]), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out
