"""OpenPose JSON keypoints: one file per frame per camera, as OpenPose's `--write_json` and Pose2Sim use.

Each file holds `{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}, ...]}` in pixels;
a keypoint with x = y = 0 or c = 0 is missing (NaN here, score 0). A folder holds one camera's frames,
named with the frame number, e.g. `cam1_000000000012_keypoints.json`: files are ordered by the last
integer in the name (natural order), or by name when some name has no digits.

    >>> points, scores = read_openpose_frame("cam1/cam1_000000000012_keypoints.json", "body25")  # (P, 25, 2), (P, 25)
    >>> cam = OpenPoseFolder("cam1", "body25")
    >>> cam.frame_indices[:3], len(cam)          # [0, 1, 2], 400
    >>> points, scores = cam.get(12)             # frame 12; a frame the folder lacks = no detections
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..skeleton import LAYOUTS, Layout, get_layout
from .atomic import write_text_atomic

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"\d+")


def _matching_layouts(num_joints: int) -> list[str]:
    return [name for name, layout in LAYOUTS.items() if layout.num_joints == num_joints]


def _empty(J: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, J, 2)), np.zeros((0, J))


def read_openpose_frame(path: str | os.PathLike, layout: str | Layout = "body25") -> tuple[np.ndarray, np.ndarray]:
    """One OpenPose JSON file -> points (P, J, 2) px (NaN = missing), scores (P, J) (0 = missing).

    An empty file or `"people": []` is a frame without detections (P = 0); so is a person whose
    `pose_keypoints_2d` is empty (OpenPose writes that when the body model is off). Raises ValueError
    naming the file for non-JSON content, a missing "people" list, or a keypoint array whose length is
    not a multiple of 3 or does not match `layout` (the message names the layouts that would match).
    """
    path = Path(path)
    layout = get_layout(layout)
    J = layout.num_joints
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: keypoint file not found") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    if not raw.strip():
        return _empty(J)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not an OpenPose JSON file (invalid UTF-8 at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not an OpenPose JSON file ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise ValueError(f'{path}: no "people" list; expected OpenPose keypoints '
                         '{"people": [{"pose_keypoints_2d": [x, y, c, ...]}, ...]}')
    rows = []
    for p, person in enumerate(data["people"]):
        values = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if not isinstance(values, list):
            raise ValueError(f'{path}: person {p} has no "pose_keypoints_2d" list')
        if not values:
            continue
        if len(values) % 3:
            raise ValueError(f"{path}: person {p}: pose_keypoints_2d has {len(values)} values, "
                             "not a multiple of 3 (x, y, confidence per keypoint)")
        n = len(values) // 3
        if n != J:
            fits = _matching_layouts(n)
            hint = (f"; --layout {' or '.join(fits)} would match" if fits
                    else "; no known layout has that many")
            raise ValueError(f"{path}: person {p} has {n} keypoints but layout {layout.name} has {J}{hint}")
        try:
            rows.append(np.asarray(values, dtype=np.float64).reshape(J, 3))
        except (TypeError, ValueError):
            raise ValueError(f"{path}: person {p}: pose_keypoints_2d holds non-numeric values") from None
    if not rows:
        return _empty(J)
    kp = np.stack(rows)                                                   # (P, J, 3)
    xy, c = kp[..., :2], kp[..., 2]
    missing = ~np.isfinite(kp).all(-1) | (c <= 0) | ((xy[..., 0] == 0) & (xy[..., 1] == 0))
    points = np.where(missing[..., None], np.nan, xy)
    scores = np.where(missing, 0.0, np.minimum(c, 1.0))
    return points, scores


def write_openpose_frame(path: str | os.PathLike, points: np.ndarray, scores: np.ndarray) -> Path:
    """Write points (P, J, 2) px and scores (P, J) as an OpenPose JSON file, atomically.

    Missing keypoints (NaN, or score <= 0) are written as 0, 0, 0, as OpenPose does.
    """
    points = np.asarray(points, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 2 or scores.shape != points.shape[:2]:
        raise ValueError(f"points must be (P, J, 2) and scores (P, J), got {points.shape} and {scores.shape}")
    missing = ~np.isfinite(points).all(-1) | ~np.isfinite(scores) | (scores <= 0)
    kp = np.concatenate([points, scores[..., None]], axis=-1)
    kp[missing] = 0.0
    people = [{"person_id": [-1], "pose_keypoints_2d": [round(float(v), 4) for v in row.ravel()],
               "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": []}
              for row in kp]
    return write_text_atomic(path, json.dumps({"version": 1.3, "people": people}, separators=(",", ":")) + "\n")


def _frame_number(name: str) -> int | None:
    numbers = _DIGITS.findall(Path(name).stem)
    return int(numbers[-1]) if numbers else None


class OpenPoseFolder:
    """One camera's OpenPose JSON folder: frames by index, read on access.

    Frame indices are the last integer in each file name (natural order); when some name has none,
    files are taken in name order and numbered 0, 1, 2, ... Raises ValueError for a missing or empty
    folder and for two files with the same frame number. `get(index)` of a frame the folder lacks,
    of an empty file or of a file without people gives no detections (P = 0); the first such frame
    is logged once per folder, and `empty_frames` counts them.
    """

    def __init__(self, folder: str | os.PathLike, layout: str | Layout = "body25"):
        self.folder = Path(folder)
        self.layout = get_layout(layout)
        if not self.folder.exists():
            raise ValueError(f"{self.folder}: keypoint folder not found")
        if not self.folder.is_dir():
            raise ValueError(f"{self.folder}: not a folder (expected one folder of OpenPose JSON files per camera)")
        files = sorted(p for p in self.folder.iterdir()
                       if p.suffix.lower() == ".json" and not p.name.startswith(".") and p.is_file())
        if not files:
            raise ValueError(f"{self.folder}: no .json keypoint files in this folder")
        numbers = [_frame_number(p.name) for p in files]
        self._files: dict[int, Path] = {}
        if any(n is None for n in numbers):
            self._files = dict(enumerate(files))
        else:
            for n, p in zip(numbers, files):
                if n in self._files:
                    raise ValueError(f"{self.folder}: {self._files[n].name} and {p.name} both hold frame {n}")
                self._files[n] = p
        self.frame_indices: list[int] = sorted(self._files)
        self.empty_frames = 0
        self.missing_frames = 0
        self._warned = False

    @property
    def name(self) -> str:
        return self.folder.name

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, index: int) -> bool:
        return index in self._files

    def path(self, index: int) -> Path:
        """File of frame `index` (KeyError if the folder lacks it)."""
        return self._files[index]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """points (P, J, 2), scores (P, J) of frame `index`; KeyError if the folder lacks it."""
        return read_openpose_frame(self._files[index], self.layout)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Like [index], but a frame the folder lacks is a frame without detections."""
        if index not in self._files:
            self.missing_frames += 1
            self._warn_once(f"{self.folder}: no file for frame {index}; treated as no detections")
            return _empty(self.layout.num_joints)
        points, scores = self[index]
        if len(points) == 0:
            self.empty_frames += 1
            self._warn_once(f"{self._files[index]}: no people (empty file or no detections); "
                            "further such frames of this camera are counted, not logged")
        return points, scores

    def _warn_once(self, message: str):
        if not self._warned:
            self._warned = True
            log.warning(message)

    def __repr__(self) -> str:
        first, last = (self.frame_indices[0], self.frame_indices[-1]) if self.frame_indices else (None, None)
        return f"OpenPoseFolder({str(self.folder)!r}, {self.layout.name}, {len(self)} frames {first}..{last})"


def frame_union(folders: list[OpenPoseFolder]) -> list[int]:
    """Sorted frame indices present in any of `folders`."""
    return sorted(set().union(*(f.frame_indices for f in folders))) if folders else []


__all__ = ["read_openpose_frame", "write_openpose_frame", "OpenPoseFolder", "frame_union"]
