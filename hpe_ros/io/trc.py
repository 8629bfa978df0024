"""TRC marker files (Motion Analysis "Track Row Column"), as Pose2Sim writes them for OpenSim.

Layout (tab-separated):

    PathFileType  4  (X/Y/Z)  walk.trc
    DataRate  CameraRate  NumFrames  NumMarkers  Units  OrigDataRate  OrigDataStartFrame  OrigNumFrames
    30  30  40  25  m  30  0  40
    Frame#  Time  nose  <tab><tab>  neck ...
            X1  Y1  Z1  X2  Y2  Z2 ...
    (blank line)
    0  0.000000  x  y  z  x  y  z ...

Marker names are the layout's joint names. Frame# is the source frame number (OpenPose file number),
Time = frame / fps, so OrigDataStartFrame is the first frame's number.

Missing markers: by default empty fields, the convention of OpenSim's documentation and of Pose2Sim
(pandas writes NaN as ''); OpenSim 4's TRCFileAdapter reads an empty X/Y/Z as NaN. That reader counts
fields per row and drops a trailing empty field, so every value here is followed by a tab (as
OpenSim's own writer does): a row whose last marker is missing still has 2 + 3 M fields.
`missing="nan"` writes the text NaN instead (what OpenSim's writer itself produces, parsed by
std::stod) for tools that split on whitespace and would lose empty fields.

Axes: hpe_ros's world is z-up (REP-103). Pose2Sim turns z-up calibrations into OpenSim's y-up frame
with the cyclic permutation (x, y, z) -> (y, z, x); `y_up=True` does the same. The default keeps z-up.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_shape
from .atomic import write_text_atomic

_HEADER_KEYS = ("DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units", "OrigDataRate",
                "OrigDataStartFrame", "OrigNumFrames")


def zup_to_yup(points: np.ndarray) -> np.ndarray:
    """(..., 3) z-up -> y-up as Pose2Sim does for OpenSim: (x, y, z) -> (y, z, x) (a proper rotation)."""
    points = np.asarray(points, dtype=np.float64)
    return points[..., [1, 2, 0]]


def yup_to_zup(points: np.ndarray) -> np.ndarray:
    """Inverse of zup_to_yup: (x', y', z') -> (z', x', y')."""
    points = np.asarray(points, dtype=np.float64)
    return points[..., [2, 0, 1]]


def _num(value: float) -> str:
    return f"{value:.10g}"


def write_trc(path: str | os.PathLike, points: np.ndarray, marker_names: Sequence[str], fps: float,
              frame_numbers: Sequence[int] | None = None, y_up: bool = False, missing: str = "empty",
              decimals: int = 6) -> Path:
    """Write points (T, M, 3) in metres (NaN = missing) as a TRC file, atomically.

    frame_numbers: (T,) source frame numbers (default 0..T-1); Time = frame / fps. y_up: rotate the
    z-up world to OpenSim's y-up (see module docstring). missing: "empty" (default) or "nan".
    """
    points = np.asarray(points, dtype=np.float64)
    names = [str(n) for n in marker_names]
    dims = check_shape(f"points ({len(names)} markers)", points, ("T", len(names), 3))
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be > 0, got {fps}")
    if missing not in ("empty", "nan"):
        raise ValueError(f"missing must be 'empty' or 'nan', got {missing!r}")
    for n in names:
        if not n or any(ch.isspace() for ch in n):
            raise ValueError(f"marker name {n!r} is empty or holds whitespace (TRC columns are tab/space separated)")
    T, M = points.shape[:2]
    frames = np.arange(T) if frame_numbers is None else np.asarray(frame_numbers, dtype=np.int64)
    check_shape("frame_numbers", frames, ("T",), dims)
    if y_up:
        points = zup_to_yup(points)
    start = int(frames[0]) if T else 0
    lines = [
        f"PathFileType\t4\t(X/Y/Z)\t{Path(path).name}",
        "\t".join(_HEADER_KEYS),
        "\t".join([_num(fps), _num(fps), str(T), str(M), "m", _num(fps), str(start), str(T)]),
        "Frame#\tTime\t" + "".join(f"{n}\t\t\t" for n in names),
        "\t\t" + "".join(f"X{i}\tY{i}\tZ{i}\t" for i in range(1, M + 1)),
        "",
    ]
    empty = "" if missing == "empty" else "NaN"
    fmt = f"{{:.{decimals}f}}"
    for t in range(T):
        fields = [str(int(frames[t])), f"{frames[t] / fps:.6f}"]
        for xyz in points[t]:
            if np.isfinite(xyz).all():
                fields.extend(fmt.format(v) for v in xyz)
            else:
                fields.extend((empty, empty, empty))
        lines.append("".join(f + "\t" for f in fields))  # every field tab-terminated (see module docstring)
    return write_text_atomic(path, "\n".join(lines) + "\n")


@dataclass
class TRC:
    """A TRC file's content: header {key: str}, marker_names, frame_numbers (T,), times (T,) s,
    points (T, M, 3) as stored in the file (NaN = missing; not rotated back from y-up)."""

    header: dict[str, str]
    marker_names: list[str]
    frame_numbers: np.ndarray
    times: np.ndarray
    points: np.ndarray
    path_line: str = ""

    @property
    def fps(self) -> float:
        return float(self.header["DataRate"])


def read_trc(path: str | os.PathLike) -> TRC:
    """Read a TRC file (empty fields and NaN both read as missing). Raises ValueError naming the file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    if len(lines) < 5 or not lines[0].startswith("PathFileType"):
        raise ValueError(f"{path}: not a TRC file (first line must start with PathFileType)")
    keys = [k for k in lines[1].replace("\r", "").split("\t") if k.strip()]
    values = [v for v in lines[2].replace("\r", "").split("\t") if v.strip()]
    if len(keys) != len(values):
        raise ValueError(f"{path}: header has {len(keys)} keys but {len(values)} values")
    header = dict(zip(keys, values))
    labels = [s.strip() for s in lines[3].replace("\r", "").split("\t") if s.strip()]
    if labels[:2] != ["Frame#", "Time"]:
        raise ValueError(f"{path}: line 4 must start with Frame# and Time, got {labels[:2]}")
    names = labels[2:]
    M = len(names)
    if "NumMarkers" in header and int(header["NumMarkers"]) != M:
        raise ValueError(f"{path}: NumMarkers is {header['NumMarkers']} but {M} marker names are listed")
    frames, times, rows = [], [], []
    for number, line in enumerate(lines[5:], start=6):
        line = line.replace("\r", "")
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 2 + 3 * M:
            raise ValueError(f"{path}: line {number} has {len(fields)} fields, expected {2 + 3 * M}")
        if any(f for f in fields[2 + 3 * M:]):
            raise ValueError(f"{path}: line {number} has values beyond the {M} markers")
        try:
            frames.append(int(float(fields[0])))
            times.append(float(fields[1]))
            rows.append([float(f) if f else math.nan for f in fields[2:2 + 3 * M]])
        except ValueError:
            raise ValueError(f"{path}: line {number}: not a number") from None
    points = np.asarray(rows, dtype=np.float64).reshape(len(rows), M, 3)
    if "NumFrames" in header and int(header["NumFrames"]) != len(rows):
        raise ValueError(f"{path}: NumFrames is {header['NumFrames']} but {len(rows)} data rows were found")
    return TRC(header=header, marker_names=names, frame_numbers=np.asarray(frames, dtype=np.int64),
               times=np.asarray(times), points=points, path_line=lines[0])


__all__ = ["write_trc", "read_trc", "TRC", "zup_to_yup", "yup_to_zup"]
