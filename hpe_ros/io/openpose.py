"""OpenPose JSON keypoints: one file per frame per camera, as OpenPose's `--write_json` and Pose2Sim use.

Each file holds `{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}, ...]}` in pixels;
a keypoint with x = y = 0 or c = 0 is missing (NaN here, score 0). A folder holds one camera's frames.

Frame pairing, the one rule every multi-camera reader here follows (`SynchronisedOpenPose`):

- A file's frame number is the last integer in its name (`cam1_000000000012_keypoints.json` -> 12).
  In a folder where some name holds no digits, the files are numbered 0, 1, 2, ... in name order.
  Two files of one folder with the same frame number are an error.
- Cameras are paired by frame number, never by position: the recording's frames are the union of
  every folder's frame numbers, in increasing order.
- A camera without a file for a frame, with an empty file or with `"people": []` has no detections
  in that frame. Each camera's first such frame is logged; all of them are counted (`inputs()`).
- Real folders hold bad entries: a file that cannot be used (unreadable, truncated, not JSON, no
  "people" list) is a frame without detections, and a bad person entry (no `pose_keypoints_2d`, a
  body of another layout's length) is left out; both are recorded (`skipped()`, `skip_report()`) and
  the run goes on. Only a recording with nothing usable is an error (`check_usable`). Non-.json files
  are ignored and counted; a UTF-8 byte order mark is accepted.
- Folders are matched to a calibration's cameras by name ({camera: folder}, `CAM=DIR` on the command
  line) or by position (a list in the calibration's camera order; a list whose folder names look
  like the calibration's cameras in another order is flagged).

    >>> points, scores = read_openpose_frame("cam1/cam1_000000000012_keypoints.json", "body25")  # (P, 25, 2), (P, 25)
    >>> cam = OpenPoseFolder("cam1", "body25")
    >>> cam.frame_indices[:3], len(cam)          # [0, 1, 2], 400
    >>> points, scores = cam.get(12)             # frame 12; a frame the folder lacks = no detections
    >>> rec = SynchronisedOpenPose.for_cameras({"cam1": "pose/cam1", "cam2": "pose/cam2"}, rig.names, "body25")
    >>> for index, detections in rec: ...        # detections[c] = (points (P, J, 2), scores (P, J))
    >>> frames, points2d, scores = rec.read_all()  # (F,), (F, C, P, J, 2) px, (F, C, P, J)
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
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


def read_openpose_frame(path: str | os.PathLike, layout: str | Layout = "body25",
                        skipped: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One OpenPose JSON file -> points (P, J, 2) px (NaN = missing), scores (P, J) (0 = missing).

    An empty file or `"people": []` is a frame without detections (P = 0); so is a person whose
    `pose_keypoints_2d` is empty (OpenPose writes that when the body model is off). A UTF-8 byte order
    mark is accepted. Raises ValueError naming the file for an unreadable file, non-JSON content or a
    missing "people" list. A bad person entry (no `pose_keypoints_2d` list, a length that is not a
    multiple of 3 or does not match `layout`, non-numeric values) raises too, or, when `skipped` is a
    list, is left out and appended to it as {"file", "entry": "person p", "reason"}.
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
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not an OpenPose JSON file (invalid UTF-8 at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not an OpenPose JSON file ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise ValueError(f'{path}: no "people" list; expected OpenPose keypoints '
                         '{"people": [{"pose_keypoints_2d": [x, y, c, ...]}, ...]}')
    rows = []
    for p, person in enumerate(data["people"]):
        try:
            row = _person_keypoints(person, layout)
        except ValueError as e:
            if skipped is None:
                raise ValueError(f"{path}: person {p}{e}") from None
            skipped.append({"file": str(path), "entry": f"person {p}", "reason": str(e).lstrip(": ")})
            continue
        if row is not None:
            rows.append(row)
    if not rows:
        return _empty(J)
    kp = np.stack(rows)                                                   # (P, J, 3)
    xy, c = kp[..., :2], kp[..., 2]
    missing = ~np.isfinite(kp).all(-1) | (c <= 0) | ((xy[..., 0] == 0) & (xy[..., 1] == 0))
    points = np.where(missing[..., None], np.nan, xy)
    scores = np.where(missing, 0.0, np.minimum(c, 1.0))
    return points, scores


def _person_keypoints(person, layout: Layout) -> np.ndarray | None:
    """One entry of "people" -> (J, 3) x, y, c; None for an empty keypoint list. ValueError's text continues
    "person p" (': reason' or ' has ...')."""
    J = layout.num_joints
    values = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
    if not isinstance(values, list):
        raise ValueError(' has no "pose_keypoints_2d" list')
    if not values:
        return None
    if len(values) % 3:
        raise ValueError(f": pose_keypoints_2d has {len(values)} values, "
                         "not a multiple of 3 (x, y, confidence per keypoint)")
    n = len(values) // 3
    if n != J:
        fits = _matching_layouts(n)
        hint = (f"; --layout {' or '.join(fits)} would match" if fits else "; no known layout has that many")
        raise ValueError(f" has {n} keypoints but layout {layout.name} has {J}{hint}")
    try:
        return np.asarray(values, dtype=np.float64).reshape(J, 3)
    except (TypeError, ValueError):
        raise ValueError(": pose_keypoints_2d holds non-numeric values") from None


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
    """One camera's OpenPose JSON folder: frames by frame number (the module's rule), read on access.

    Raises ValueError for a missing or empty folder and for two files with the same frame number.
    Files that are not .json are ignored (counted in `ignored_files`). `get(index)` of a frame the
    folder lacks, of an empty file or of a file without people gives no detections (P = 0); so does a
    file that cannot be used (unreadable, not JSON, no "people" list), and a bad person entry is left
    out: both are recorded in `skipped` ({"file", "entry", "reason"}; entry None = the whole file) and
    the first is logged. `empty_frames` and `missing_frames` count the frames without detections.
    """

    def __init__(self, folder: str | os.PathLike, layout: str | Layout = "body25"):
        self.folder = Path(folder)
        self.layout = get_layout(layout)
        if not self.folder.exists():
            raise ValueError(f"{self.folder}: keypoint folder not found")
        if not self.folder.is_dir():
            raise ValueError(f"{self.folder}: not a folder (expected one folder of OpenPose JSON files per camera)")
        entries = sorted(p for p in self.folder.iterdir() if not p.name.startswith(".") and p.is_file())
        files = [p for p in entries if p.suffix.lower() == ".json"]
        self.ignored_files = len(entries) - len(files)
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
        self.read_files = 0          # files read without a file-level problem
        self.people = 0              # person entries kept
        self.skipped: list[dict] = []
        self._warned = False
        self._warned_skip = False

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def bad_files(self) -> int:
        return sum(1 for s in self.skipped if s["entry"] is None)

    @property
    def skipped_people(self) -> int:
        return sum(1 for s in self.skipped if s["entry"] is not None)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, index: int) -> bool:
        return index in self._files

    def path(self, index: int) -> Path:
        """File of frame `index` (KeyError if the folder lacks it)."""
        return self._files[index]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """points (P, J, 2), scores (P, J) of frame `index`; KeyError if the folder lacks it; ValueError for a
        bad file or person entry."""
        return read_openpose_frame(self._files[index], self.layout)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Like [index], but a frame the folder lacks, or a bad file, is a frame without detections, and bad
        person entries are left out (all recorded in `skipped`)."""
        if index not in self._files:
            self.missing_frames += 1
            self._warn_once(f"{self.folder}: no file for frame {index}; treated as no detections")
            return _empty(self.layout.num_joints)
        path = self._files[index]
        before = len(self.skipped)
        try:
            points, scores = read_openpose_frame(path, self.layout, self.skipped)
        except ValueError as e:
            reason = str(e).removeprefix(f"{path}: ")
            self.skipped.append({"file": str(path), "entry": None, "reason": reason})
            points, scores = _empty(self.layout.num_joints)
        else:
            self.read_files += 1
            self.people += len(points)
        if len(self.skipped) > before and not self._warned_skip:
            self._warned_skip = True
            first = self.skipped[before]
            log.warning("%s%s: %s; skipped (further skipped entries of this camera are counted in the report)",
                        first["file"], f", {first['entry']}" if first["entry"] else "", first["reason"])
        if len(points) == 0 and len(self.skipped) == before:
            self.empty_frames += 1
            self._warn_once(f"{path}: no people (empty file or no detections); "
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


def _tokens(name: str) -> set[str]:
    return {t.lower() for t in re.split(r"[^A-Za-z0-9]+", name) if t}


def _warn_if_reordered(camera_names: Sequence[str], dirs: Sequence[Path]) -> None:
    """Warn when every folder names exactly one camera and the order differs from the calibration's."""
    owner = []
    for d in dirs:
        hits = [i for i, n in enumerate(camera_names) if n.lower() in _tokens(d.name) | {d.name.lower()}]
        if len(hits) != 1:
            return
        owner.append(hits[0])
    if len(set(owner)) == len(owner) and owner != list(range(len(owner))):
        log.warning("keypoint folders %s look like cameras %s, but the calibration's order is %s; folders "
                    "are paired with cameras by position", [d.name for d in dirs],
                    [camera_names[i] for i in owner], list(camera_names))


def folders_for_cameras(folders: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
                        camera_names: Sequence[str], source: object = "the calibration") -> list[Path]:
    """One folder per camera, in `camera_names` order, from {camera: folder} (matched by name, every
    camera exactly once) or a list (the calibration's camera order, one folder per camera).

    source names the calibration in error messages. Raises ValueError for missing, unknown or
    surplus cameras; warns when a list's folder names look like the cameras in another order.
    """
    names = list(camera_names)
    if isinstance(folders, Mapping):
        given = [str(k) for k in folders]
        missing = [n for n in names if n not in given]
        unknown = [n for n in given if n not in names]
        if missing or unknown:
            parts = ([f"no keypoint folder for camera(s) {missing}"] if missing else []) + \
                    ([f"folder(s) given for camera(s) {unknown} the calibration does not have"] if unknown else [])
            raise ValueError(f"{source}: {'; '.join(parts)}; the calibration's cameras are {names}")
        by_name = {str(k): Path(v) for k, v in folders.items()}
        return [by_name[n] for n in names]
    if isinstance(folders, (str, os.PathLike)):
        raise ValueError(f"keypoint folders: expected one folder per camera (a list, or {{camera: folder}}), "
                         f"got the single path {str(folders)!r}")
    dirs = [Path(d) for d in folders]
    if len(dirs) != len(names):
        raise ValueError(f"{source}: the calibration has {len(names)} cameras ({', '.join(names)}) but "
                         f"{len(dirs)} keypoint folders were given; give one folder per camera, in the "
                         "calibration's order, or CAMERA=FOLDER pairs")
    _warn_if_reordered(names, dirs)
    return dirs


class SynchronisedOpenPose:
    """One OpenPose folder per camera, frames paired by frame number (the module's rule).

    Iterating yields (frame number, [(points (P, J, 2) px, scores (P, J)) per camera]) over the union
    of the folders' frames; a camera lacking a frame contributes no detections (P = 0) there.
    names: the cameras' names (default: the folders' names).
    """

    def __init__(self, folders: Sequence[str | os.PathLike], layout: str | Layout = "body25",
                 names: Sequence[str] | None = None):
        self.layout = get_layout(layout)
        self.folders = [OpenPoseFolder(f, self.layout) for f in folders]
        self.names = list(names) if names is not None else [f.name for f in self.folders]
        if len(self.names) != len(self.folders):
            raise ValueError(f"{len(self.names)} camera names for {len(self.folders)} keypoint folders")
        self.frame_indices: list[int] = frame_union(self.folders)

    @classmethod
    def for_cameras(cls, folders: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
                    camera_names: Sequence[str], layout: str | Layout = "body25",
                    source: object = "the calibration") -> SynchronisedOpenPose:
        """The folders of a calibration's cameras, matched by `folders_for_cameras`, in the calibration's order."""
        return cls(folders_for_cameras(folders, camera_names, source), layout, camera_names)

    def __len__(self) -> int:
        return len(self.frame_indices)

    def __iter__(self) -> Iterator[tuple[int, list[tuple[np.ndarray, np.ndarray]]]]:
        for index in self.frame_indices:
            yield index, [folder.get(index) for folder in self.folders]

    def read_all(self, min_people: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every frame at once: frame numbers (F,), points2d (F, C, P, J, 2) px (NaN = missing) and
        scores (F, C, P, J) (0 = missing); P is the most people any file holds, at least `min_people`.
        Cameras lacking files for some frames are logged in one line, with their counts. Raises ValueError
        when nothing is usable (`check_usable`)."""
        frames = [detections for _, detections in self]
        self.check_usable()
        if self.gaps():
            log.warning("keypoint folders: %s; no detections there", self.gaps())
        P = max([len(points) for detections in frames for points, _ in detections] + [int(min_people)])
        F, C, J = len(frames), len(self.folders), self.layout.num_joints
        points2d = np.full((F, C, P, J, 2), np.nan)
        scores = np.zeros((F, C, P, J))
        for f, detections in enumerate(frames):
            for c, (points, score) in enumerate(detections):
                points2d[f, c, :len(points)], scores[f, c, :len(points)] = points, score
        return np.asarray(self.frame_indices, dtype=np.int64), points2d, scores

    def check_usable(self) -> None:
        """After reading: ValueError (one line, with the first problem) when no camera's files gave a person,
        and some were skipped (unusable files or entries); a recording of only empty frames is not an error."""
        if any(folder.people for folder in self.folders):
            return
        skipped = self.skipped()
        if not skipped:
            return
        first = skipped[0]
        files = sum(len(folder) for folder in self.folders)
        raise ValueError(f"nothing usable in the keypoint folders: {files} files, "
                         f"{sum(f.bad_files for f in self.folders)} unusable, "
                         f"{sum(f.skipped_people for f in self.folders)} person entries skipped, none kept; first: "
                         f"{first['file']}{', ' + first['entry'] if first['entry'] else ''}: {first['reason']}")

    def skipped(self) -> list[dict]:
        """Every skipped file or person entry so far: {"camera", "file", "entry" (None = the file), "reason"}."""
        return [{"camera": name, **entry} for name, folder in zip(self.names, self.folders) for entry in folder.skipped]

    def skip_report(self, limit: int = 200) -> dict:
        """The report's "skipped" section: totals per camera and the first `limit` entries."""
        entries = self.skipped()
        per_camera = {name: {"bad_files": folder.bad_files, "bad_person_entries": folder.skipped_people,
                             "ignored_files": folder.ignored_files}
                      for name, folder in zip(self.names, self.folders)}
        return {"total": len(entries), "per_camera": per_camera, "entries": entries[:limit],
                "entries_left_out": max(0, len(entries) - limit)}

    def inputs(self) -> list[dict]:
        """Per camera: folder, files, frames without people (counted as they are read), without a file,
        files and person entries skipped, files that are not .json."""
        return [{"camera": name, "folder": str(folder.folder), "files": len(folder),
                 "frames_without_people": folder.empty_frames,
                 "frames_without_file": len(self.frame_indices) - len(folder),
                 "files_skipped": folder.bad_files, "people_skipped": folder.skipped_people,
                 "files_ignored": folder.ignored_files}
                for name, folder in zip(self.names, self.folders)]

    def gaps(self) -> str:
        """One line naming the cameras that lack files for some frames ("" when none does)."""
        return "; ".join(f"{row['camera']}: {row['frames_without_file']} of {len(self)} frames without a file"
                         for row in self.inputs() if row["frames_without_file"])


__all__ = ["read_openpose_frame", "write_openpose_frame", "OpenPoseFolder", "frame_union", "folders_for_cameras",
           "SynchronisedOpenPose"]
