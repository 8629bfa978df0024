"""2D keypoints of a multi-camera rig as JSON lines: the package's own recording format (`hpe_ros.pose2d.v1`).

The file is UTF-8 text, one JSON object per line ('\\n' line ends; blank lines are skipped).

Line 1, the header:

    {"format": "hpe_ros.pose2d.v1", "layout": "coco17", "cameras": ["cam0", "cam1", "cam2"], "fps": 10.0}

- format: exactly "hpe_ros.pose2d.v1" (another "hpe_ros.pose2d.vN" is refused as an unsupported version);
- layout: a keypoint layout name of `hpe_ros.skeleton.LAYOUTS` (coco17, halpe26, body25, ...): every
  person in the file has that layout's J joints, in its order;
- cameras: the camera names, unique, non-empty strings (matched by name to a calibration when read);
- fps: optional, > 0; informational (frames carry their own stamps).

Every further line is one synchronised frame:

    {"stamp": 0.1, "views": {"cam0": [[[u, v, score], null, ...J joints], ...persons], "cam1": [], ...}}

- stamp: seconds (any epoch), finite, strictly increasing from frame to frame;
- views: {camera name: list of persons}; each person is a list of J joints, each joint [u, v, score]
  (pixels as detected, i.e. distorted; finite numbers, score >= 0) or null. A joint that is null or has
  score 0 is missing. A camera with nobody in view is [] or absent; a camera not in the header is an error.
  Rows keep their position: a person that is all null still takes its row (the writer keeps such rows
  only when a later row of that camera is present, so the row indices of the arrays survive a round trip).

Unknown keys in the header or a frame are ignored (room for e.g. person ids later).

    >>> write_pose2d_jsonl("rec.jsonl", points2d, scores, stamps, ["cam0", "cam1"], "coco17", fps=10.0)
    >>> seq = read_pose2d_jsonl("rec.jsonl")       # stamps (F,), points2d (F, C, P, J, 2), scores (F, C, P, J)
    >>> stamps, points2d, scores, cameras, layout, fps = seq

The writer is atomic (a temp file beside the target, renamed when complete: never a half-written file).
The reader streams the file line by line. A bad header (unknown format or version, layout, cameras) is an
error naming the file and line. Real recordings hold bad lines: a malformed frame line (not JSON, no
stamp, a stamp that does not increase) is skipped, a bad view (a camera not in the header) or person (a
joint count that does not match the layout, a malformed joint) is left out, each recorded with its line
and reason, and the read goes on; only a file with no usable frame line is an error. strict=True
raises at the first bad entry instead.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..checks import check_shape
from ..skeleton import LAYOUTS, get_layout
from .atomic import atomic_path

FORMAT = "hpe_ros.pose2d.v1"
_FORMAT_FAMILY = "hpe_ros.pose2d."

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "Pose2DSequence", "read_pose2d_jsonl", "write_pose2d_jsonl"]


class Pose2DSequence(NamedTuple):
    """What `read_pose2d_jsonl` returns (unpacks as a tuple).

    stamps (F,) s; points2d (F, C, P, J, 2) px, NaN = missing (P = the most persons any camera had in one
    frame, rows past a camera's persons are NaN); scores (F, C, P, J), 0 = missing; cameras: the C names in
    header order; layout: layout name; fps: the header's fps or None.
    """

    stamps: np.ndarray
    points2d: np.ndarray
    scores: np.ndarray
    cameras: list
    layout: str
    fps: float | None


# --- writing ---------------------------------------------------------------------------------------------

def _number(x: float, decimals: int | None):
    x = float(x)
    if decimals is not None:
        x = round(x, decimals)
    return int(x) if x.is_integer() and abs(x) < 2 ** 53 else x


def _frame_line(stamp: float, cameras: Sequence[str], points: np.ndarray, scores: np.ndarray,
                decimals: int | None) -> str:
    """One frame (points (C, P, J, 2), scores (C, P, J)) as a JSON line (without the newline)."""
    valid = np.isfinite(points).all(-1) & np.isfinite(scores) & (scores > 0)          # (C, P, J)
    views = {}
    for c, name in enumerate(cameras):
        rows = np.flatnonzero(valid[c].any(-1))
        persons = []
        for p in range(rows[-1] + 1 if len(rows) else 0):                # trailing empty rows dropped
            persons.append([[_number(points[c, p, j, 0], decimals), _number(points[c, p, j, 1], decimals),
                             _number(scores[c, p, j], decimals)] if valid[c, p, j] else None
                            for j in range(points.shape[2])])
        views[name] = persons
    return json.dumps({"stamp": float(stamp), "views": views}, separators=(",", ":"), allow_nan=False)


def write_pose2d_jsonl(path: str | os.PathLike, points2d, scores, stamps, cameras: Sequence[str],
                       layout: str = "coco17", fps: float | None = None, decimals: int | None = None) -> Path:
    """Write F frames of C cameras as `hpe_ros.pose2d.v1` JSON lines, atomically. Returns the path.

    points2d (F, C, P, J, 2) px (NaN = missing), scores (F, C, P, J) (0 / NaN = missing), stamps (F,) s
    (finite, strictly increasing), cameras: C unique names, layout: a layout with J joints, fps: optional
    (> 0), written to the header. decimals: round pixels and scores to this many decimals (default: exact,
    the file reads back bit-identical). Raises ValueError for inconsistent input before anything is
    written; if writing fails midway the target is left as it was.
    """
    lay = get_layout(layout)
    points2d = np.asarray(points2d, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    stamps = np.asarray(stamps, dtype=np.float64).reshape(-1)
    cameras = [str(c) for c in cameras]
    J, F, C = lay.num_joints, len(stamps), len(cameras)
    dims = check_shape(f"{path}: points2d ({F} stamps, {C} cameras, {lay.name})", points2d, ("F", "C", "P", "J", 2),
                       {"F": F, "C": C, "J": J})
    check_shape(f"{path}: scores", scores, ("F", "C", "P", "J"), dims)
    _check_cameras(cameras, str(path))
    if not np.isfinite(stamps).all():
        raise ValueError(f"{path}: stamps must be finite (frame {int(np.flatnonzero(~np.isfinite(stamps))[0])})")
    if F > 1 and not (np.diff(stamps) > 0).all():
        k = int(np.flatnonzero(np.diff(stamps) <= 0)[0]) + 1
        raise ValueError(f"{path}: stamps must increase strictly; frame {k} ({stamps[k]!r}) is not after "
                         f"frame {k - 1} ({stamps[k - 1]!r})")
    bad = np.isfinite(points2d).all(-1) & np.isfinite(scores) & (scores < 0)
    if bad.any():
        raise ValueError(f"{path}: scores must be >= 0 (frame {int(np.argwhere(bad)[0][0])})")
    header = {"format": FORMAT, "layout": lay.name, "cameras": cameras}
    if fps is not None:
        fps = float(fps)
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"{path}: fps must be > 0, got {fps}")
        header["fps"] = fps
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(header) + "\n")
            for k in range(F):
                f.write(_frame_line(stamps[k], cameras, points2d[k], scores[k], decimals) + "\n")
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def _check_cameras(cameras, where: str) -> None:
    if not cameras:
        raise ValueError(f"{where}: no cameras")
    if any(not isinstance(c, str) or not c for c in cameras):
        raise ValueError(f"{where}: camera names must be non-empty strings, got {cameras}")
    dup = sorted({c for c in cameras if cameras.count(c) > 1})
    if dup:
        raise ValueError(f"{where}: camera names must be unique, {dup} repeated")


# --- reading ---------------------------------------------------------------------------------------------

def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _parse_header(obj, where: str) -> tuple[str, list, float | None]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: the header must be a JSON object, got {type(obj).__name__}")
    fmt = obj.get("format")
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith(_FORMAT_FAMILY):
            raise ValueError(f"{where}: unsupported version {fmt!r}; this reader knows {FORMAT!r}")
        raise ValueError(f"{where}: unknown format {fmt!r}: not an hpe_ros 2D keypoint JSON-lines file "
                         f"(the first line must be a header with \"format\": \"{FORMAT}\")")
    layout = obj.get("layout")
    if not isinstance(layout, str) or layout.lower() not in LAYOUTS:
        raise ValueError(f"{where}: unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    cameras = obj.get("cameras")
    if not isinstance(cameras, list):
        raise ValueError(f"{where}: \"cameras\" must be a list of camera names, got {cameras!r}")
    _check_cameras(cameras, where)
    fps = obj.get("fps")
    if fps is not None and not (_is_number(fps) and fps > 0):
        raise ValueError(f"{where}: \"fps\" must be a number > 0, got {fps!r}")
    return get_layout(layout).name, cameras, (float(fps) if fps is not None else None)


class _BadEntry(ValueError):
    """A bad part of one line: `entry` ("line 7" or "line 7: camera 'cam0', person 1") and `tail`, the
    message's rest from its separator on (": malformed JSON", " is not in ...", ", joint 3: ...")."""

    def __init__(self, file: str, entry: str, tail: str):
        super().__init__(f"{file}, {entry}{tail}")
        self.record = {"file": file, "entry": entry, "reason": tail.lstrip(",: ")}


def _parse_person(person, J: int, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """One person -> points (J, 2), scores (J,); ValueError(the message's tail, see _BadEntry) for a bad one."""
    if not isinstance(person, list):
        raise ValueError(f": a person must be a list of {J} joints, got {type(person).__name__}")
    if len(person) != J:
        other = [n for n, lay in LAYOUTS.items() if lay.num_joints == len(person)]
        hint = f" (that is {', '.join(other)})" if other else ""
        raise ValueError(f": {len(person)} joints, but layout {layout} has {J}{hint}")
    pts, sc = np.full((J, 2), np.nan), np.zeros(J)
    for j, joint in enumerate(person):
        if joint is None:
            continue
        if not (isinstance(joint, list) and len(joint) == 3 and all(_is_number(v) for v in joint)):
            raise ValueError(f", joint {j}: expected [u, v, score] (finite numbers) or null, got {joint!r}")
        if joint[2] < 0:
            raise ValueError(f", joint {j}: score {joint[2]} < 0")
        if joint[2] > 0:
            pts[j], sc[j] = joint[:2], joint[2]
    return pts, sc


class _Reader:
    """State of one read: the header, the frames so far; `bad` raises (strict) or records a bad entry."""

    def __init__(self, name: str, strict: bool, skipped: list):
        self.name, self.strict, self.skipped = name, strict, skipped
        self.header = None
        self.frames: list[list[tuple[np.ndarray, np.ndarray] | None]] = []
        self.stamps: list[float] = []
        self.prev_line = 0

    def bad(self, entry: str, tail: str) -> None:
        problem = _BadEntry(self.name, entry, tail)
        if self.strict:
            raise problem
        self.skipped.append(problem.record)

    def line(self, lineno: int, raw: bytes) -> None:
        """Parse one line; a bad frame line raises _BadEntry, a bad view or person goes through `bad`."""
        entry = f"line {lineno}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _BadEntry(self.name, entry, f": not UTF-8 text ({e.reason} at byte {e.start})") from None
        if lineno == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            return
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise _BadEntry(self.name, entry, f": malformed JSON: {e.msg} (column {e.colno})") from None
        if self.header is None:
            self.header = _parse_header(obj, f"{self.name}, {entry}")
            return
        self.frame(obj, lineno)

    def frame(self, obj, lineno: int) -> None:
        entry = f"line {lineno}"
        layout, cameras, _ = self.header
        if not isinstance(obj, dict):
            raise _BadEntry(self.name, entry, f": a frame must be a JSON object, got {type(obj).__name__}")
        if "stamp" not in obj or "views" not in obj:
            missing = [k for k in ("stamp", "views") if k not in obj]
            raise _BadEntry(self.name, entry, f": a frame needs \"stamp\" and \"views\"; missing {missing}")
        stamp, views = obj["stamp"], obj["views"]
        if not _is_number(stamp):
            raise _BadEntry(self.name, entry, f": \"stamp\" must be a finite number of seconds, got {stamp!r}")
        if self.stamps and not stamp > self.stamps[-1]:
            what = "repeats" if stamp == self.stamps[-1] else "goes back from"
            raise _BadEntry(self.name, entry, f": stamp {stamp!r} {what} the previous frame's stamp "
                            f"{self.stamps[-1]!r} (line {self.prev_line}); stamps must increase strictly")
        if not isinstance(views, dict):
            raise _BadEntry(self.name, entry, f": \"views\" must be an object {{camera: persons}}, got "
                            f"{type(views).__name__}")
        J = get_layout(layout).num_joints
        frame: list = [None] * len(cameras)
        for cam, persons in views.items():
            if cam not in cameras:
                self.bad(f"{entry}: camera {cam!r}", f" is not in the header's cameras {cameras}")
                continue
            if persons is None:
                continue
            if not isinstance(persons, list):
                self.bad(f"{entry}: camera {cam!r}", f": expected a list of persons, got {type(persons).__name__}")
                continue
            if persons:
                frame[cameras.index(cam)] = self.persons(persons, J, layout, f"{entry}: camera {cam!r}")
        self.frames.append(frame)
        self.stamps.append(float(stamp))
        self.prev_line = lineno

    def persons(self, persons: list, J: int, layout: str, entry: str) -> tuple[np.ndarray, np.ndarray]:
        """A camera's persons -> (points (P, J, 2), scores (P, J)); a bad person keeps its row, empty."""
        parsed = []
        for i, person in enumerate(persons):
            try:
                parsed.append(_parse_person(person, J, layout))
            except ValueError as e:
                self.bad(f"{entry}, person {i}", str(e))
                parsed.append((np.full((J, 2), np.nan), np.zeros(J)))
        return np.stack([p for p, _ in parsed]), np.stack([s for _, s in parsed])


def read_pose2d_jsonl(path: str | os.PathLike, strict: bool = False, skipped: list | None = None) -> Pose2DSequence:
    """Read an `hpe_ros.pose2d.v1` file (format in the module docstring), streaming it line by line.

    Returns a `Pose2DSequence` (stamps, points2d NaN-padded to the most persons per camera, scores,
    cameras, layout, fps). A bad frame line (malformed JSON, no stamp, a stamp that does not increase, ...)
    is skipped, a bad camera view or person is left out (the person keeps its row, without joints); each
    goes into `skipped` when given ({"file", "entry", "reason"}) and the read goes on; the first is logged
    with the count. strict=True raises ValueError at the first instead. Always raises ValueError naming
    the file and line for a missing or bad header, and for a file whose every frame line is bad;
    FileNotFoundError if there is no such file.
    """
    path = Path(path)
    reader = _Reader(str(path), strict, [] if skipped is None else skipped)
    first_skip = len(reader.skipped)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                reader.line(lineno, raw)
            except _BadEntry as e:
                if strict or reader.header is None:
                    raise
                reader.skipped.append(e.record)
    if reader.header is None:
        raise ValueError(f"{path}: empty file: no header line (expected {{\"format\": \"{FORMAT}\", ...}})")
    problems = reader.skipped[first_skip:]
    if problems:
        first = problems[0]
        if not reader.frames:
            raise ValueError(f"{path}: no usable frame: {len(problems)} bad entries; first: {first['entry']}: "
                             f"{first['reason']}")
        log.warning("%s, %s: %s; skipped (%d bad entries in all, %d frames kept)", path, first["entry"],
                    first["reason"], len(problems), len(reader.frames))
    return _as_sequence(reader)


def _as_sequence(reader: _Reader) -> Pose2DSequence:
    layout, cameras, fps = reader.header
    J = get_layout(layout).num_joints
    F, C = len(reader.frames), len(cameras)
    P = max((len(v[0]) for fr in reader.frames for v in fr if v is not None), default=0)
    points = np.full((F, C, P, J, 2), np.nan)
    scores = np.zeros((F, C, P, J))
    for k, fr in enumerate(reader.frames):
        for c, v in enumerate(fr):
            if v is not None:
                points[k, c, :len(v[0])], scores[k, c, :len(v[1])] = v
    return Pose2DSequence(np.asarray(reader.stamps, dtype=np.float64), points, scores, list(cameras), layout, fps)
