"""One lifter call for the people of several camera views (what lifter_node runs per synchronised frame).

A learned lifter normalises each person with its own K, so the views' people go through the network as
one batch: one runtime call per frame instead of one per camera. Lifters that take a single K
(the apparent-size placeholder) are called once per view.
"""
from __future__ import annotations

import numpy as np


def lift_views(lifter, views: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """views: [(K (3, 3), points2d (P_i, J, 2) px, scores (P_i, J))] -> [(points3d (P_i, J, 3), conf (P_i, J))].

    Row i of each answer is person i of its view, as if every view had been lifted on its own.
    """
    if not getattr(lifter, "per_person_K", False) or len(views) < 2:
        return [lifter.lift(K, points2d, scores) for K, points2d, scores in views]
    counts = [len(scores) for _, _, scores in views]
    Ks = np.concatenate([np.broadcast_to(np.asarray(K, dtype=np.float64), (n, 3, 3)) for (K, _, _), n
                         in zip(views, counts)])
    points3d, conf = lifter.lift(Ks, np.concatenate([p for _, p, _ in views]),
                                 np.concatenate([s for _, _, s in views]))
    splits = np.cumsum(counts)[:-1]
    return list(zip(np.split(points3d, splits), np.split(conf, splits)))


__all__ = ["lift_views"]
