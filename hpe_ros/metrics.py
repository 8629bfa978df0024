"""Accuracy of tracked 3D skeletons against ground truth: MPJPE, PCK, missing joints, id switches."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def match_people(pred: np.ndarray, gt: np.ndarray, max_mean_error_m: float = 0.5) -> list[tuple[int, int]]:
    """Pair predicted (P, J, 3) and true (G, J, 3) people by mean joint distance (Hungarian, gated)."""
    if len(pred) == 0 or len(gt) == 0:
        return []
    d = np.linalg.norm(pred[:, None] - gt[None], axis=-1)  # (P, G, J)
    ok = np.isfinite(d)
    cost = np.where(ok.any(-1), np.where(ok, d, 0).sum(-1) / np.maximum(ok.sum(-1), 1), 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] <= max_mean_error_m]


class PoseScorer:
    """Accumulate frames of (predicted poses with track ids, true poses with person indices)."""

    def __init__(self, max_mean_error_m: float = 0.5):
        self.max_mean_error_m = max_mean_error_m
        self.errors: list[np.ndarray] = []
        self.missing = 0
        self.joints = 0
        self.frames = 0
        self.false_positives = 0
        self.missed_people = 0
        self.id_switches = 0
        self._last_id: dict[int, int] = {}

    def add(self, pred: np.ndarray, ids: np.ndarray, gt: np.ndarray) -> None:
        """pred: (P, J, 3) m, NaN = missing; ids: (P,) track ids; gt: (G, J, 3) m, rows = person index."""
        self.frames += 1
        pairs = match_people(pred, gt, self.max_mean_error_m)
        self.false_positives += len(pred) - len(pairs)
        self.missed_people += len(gt) - len(pairs)
        for p, g in pairs:
            e = np.linalg.norm(pred[p] - gt[g], axis=-1)
            ok = np.isfinite(e)
            self.errors.append(e[ok])
            self.missing += int((~ok).sum())
            self.joints += e.size
            track = int(ids[p])
            if g in self._last_id and self._last_id[g] != track:
                self.id_switches += 1
            self._last_id[g] = track

    def summary(self) -> dict:
        e = np.concatenate(self.errors) if self.errors else np.zeros(0)
        return {
            "scored_frames": self.frames,
            "mpjpe_mm": float(e.mean() * 1e3) if e.size else float("nan"),
            "median_joint_error_mm": float(np.median(e) * 1e3) if e.size else float("nan"),
            "pck50_pct": float((e < 0.05).mean() * 100) if e.size else float("nan"),
            "missing_joints_pct": float(self.missing / self.joints * 100) if self.joints else float("nan"),
            "missed_people": self.missed_people,
            "false_positives": self.false_positives,
            "id_switches": self.id_switches,
        }
