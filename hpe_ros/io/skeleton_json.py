"""Tracked 3D skeletons over time as one JSON file (any number of persons, ids kept).

    {"layout": "body25", "joint_names": [...], "fps": 30.0, "units": "m", "up_axis": "z",
     "frames": [{"index": 12, "persons": [{"id": 1, "keypoints": [[x, y, z, confidence], ...]}]}]}

One entry per frame processed (persons may be empty); keypoints are world metres in the layout's
joint order; a missing joint is [null, null, null, 0.0]. Written atomically.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checks import check_shape
from ..skeleton import Layout, get_layout
from .atomic import write_text_atomic


@dataclass
class SkeletonFrame:
    """One frame: source frame index, ids (P,), points (P, J, 3) m (NaN = missing), confidence (P, J)."""

    index: int
    ids: np.ndarray
    points: np.ndarray
    confidence: np.ndarray


@dataclass
class SkeletonSequence:
    layout: str
    joint_names: list[str]
    fps: float
    frames: list[SkeletonFrame] = field(default_factory=list)
    units: str = "m"
    up_axis: str = "z"

    def person_ids(self) -> list[int]:
        """Every id that appears, sorted."""
        return sorted({int(i) for f in self.frames for i in f.ids})

    def track(self, person_id: int) -> tuple[np.ndarray, np.ndarray]:
        """One person over all frames -> points (T, J, 3) (NaN where absent), confidence (T, J)."""
        J = len(self.joint_names)
        pts, conf = np.full((len(self.frames), J, 3), np.nan), np.zeros((len(self.frames), J))
        for t, f in enumerate(self.frames):
            hit = np.flatnonzero(np.asarray(f.ids) == person_id)
            if hit.size:
                pts[t], conf[t] = f.points[hit[0]], f.confidence[hit[0]]
        return pts, conf


def _number(v: float, decimals: int):
    return round(float(v), decimals) if math.isfinite(v) else None


def write_skeleton_json(path: str | os.PathLike, layout: str | Layout, fps: float, frames: Sequence[SkeletonFrame],
                        up_axis: str = "z", decimals: int = 6) -> Path:
    """Write `frames` (see SkeletonFrame) as the skeleton JSON, atomically; NaN -> null."""
    layout = get_layout(layout)
    J = layout.num_joints
    out = []
    for f in frames:
        points, conf = np.asarray(f.points, dtype=np.float64), np.asarray(f.confidence, dtype=np.float64)
        ids = np.asarray(f.ids).reshape(-1)
        dims = check_shape(f"frame {f.index}: points (one row per id)", points, ("P", J, 3), {"P": len(ids)})
        check_shape(f"frame {f.index}: confidence", conf, ("P", J), dims)
        persons = []
        for pid, p, c in zip(ids, points, conf):
            ok = np.isfinite(p).all(-1)
            persons.append({"id": int(pid), "keypoints": [
                [_number(x, decimals), _number(y, decimals), _number(z, decimals),
                 _number(cj, 4) if ok[j] and math.isfinite(cj) else 0.0]
                for j, ((x, y, z), cj) in enumerate(zip(p, c))]})
        out.append({"index": int(f.index), "persons": persons})
    doc = {"layout": layout.name, "joint_names": list(layout.joint_names), "fps": float(fps), "units": "m",
           "up_axis": up_axis, "frames": out}
    return write_text_atomic(path, json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n")


def read_skeleton_json(path: str | os.PathLike) -> SkeletonSequence:
    """Read a skeleton JSON (null -> NaN). Raises ValueError naming the file for malformed content."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    try:
        names = [str(n) for n in doc["joint_names"]]
        J = len(names)
        seq = SkeletonSequence(layout=str(doc["layout"]), joint_names=names, fps=float(doc["fps"]),
                               units=str(doc.get("units", "m")), up_axis=str(doc.get("up_axis", "z")))
        for fr in doc["frames"]:
            persons = fr["persons"]
            for p in persons:
                if len(p["keypoints"]) != J or any(len(k) != 4 for k in p["keypoints"]):
                    raise ValueError(f"frame {fr['index']}, person {p.get('id')}: expected {J} keypoints "
                                     "of [x, y, z, confidence]")
            kp = np.array([[[math.nan if v is None else float(v) for v in k] for k in p["keypoints"]] for p in persons],
                          dtype=np.float64).reshape(len(persons), J, 4)
            seq.frames.append(SkeletonFrame(index=int(fr["index"]), ids=np.array([int(p["id"]) for p in persons],
                                                                                  dtype=np.int64),
                                            points=kp[..., :3], confidence=np.nan_to_num(kp[..., 3])))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a skeleton JSON file ({type(e).__name__}: {e})") from None
    return seq


__all__ = ["SkeletonFrame", "SkeletonSequence", "write_skeleton_json", "read_skeleton_json"]
