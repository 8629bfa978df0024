"""What a board calibration did: per camera counts and reprojection errors before and after the
bundle adjustment, the camera pairs and spanning tree, the adjustment rounds and timings; as text
(`format_board_report`) and as a picture (`render_board_report`: error histograms and a top view of
the rig).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpe_ros.camera import Rig


def error_stats(errors: np.ndarray) -> dict:
    """Reprojection error norms (n,) px -> {n, rms, p50, p90, p99} (NaN when empty)."""
    e = np.asarray(errors, dtype=np.float64)
    if e.size == 0:
        return {"n": 0, "rms": float("nan"), "p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    p50, p90, p99 = np.percentile(e, [50, 90, 99])
    return {"n": int(e.size), "rms": float(np.sqrt(np.mean(e ** 2))), "p50": float(p50), "p90": float(p90),
            "p99": float(p99)}


@dataclass
class CameraBoardReport:
    """One camera's share of a board calibration. Errors in pixels."""

    name: str
    size: tuple[int, int]
    frames: int = 0                 # frames read
    detected: int = 0               # frames where the board was found (with enough corners)
    intrinsics_views: int = 0       # views calibrateCamera used (after rejection)
    intrinsics_rejected: int = 0    # views dropped for a high per-view error
    intrinsics_corners_rejected: int = 0  # outlier corners left out of the intrinsics
    intrinsics_rms: float = float("nan")
    pose_rejected: int = 0          # views whose single-camera board pose did not fit
    pose_corners_rejected: int = 0  # outlier corners left out after the per-view pose
    extrinsics_views: int = 0       # views that took part in the bundle adjustment (final round)
    observations: int = 0           # corners kept in the final round
    dropped: int = 0                # corners left out as outliers in the final round
    before: dict = field(default_factory=dict)   # error_stats before bundle adjustment (all corners)
    after: dict = field(default_factory=dict)    # error_stats after, over kept corners
    after_all: dict = field(default_factory=dict)  # error_stats after, over all corners (outliers too)
    errors_before: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    errors_after: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()
                if not isinstance(v, np.ndarray)}


@dataclass
class BoardCalibrationReport:
    """A whole board calibration: the cameras' reports, how they were linked, the adjustment rounds, timings
    (s), and for pictures and tests the rigs, board poses and detections."""

    board: str
    cameras: list[CameraBoardReport]
    world: str
    pairs: dict = field(default_factory=dict)      # "camA-camB" -> shared views
    tree: list = field(default_factory=list)       # (parent, child, shared views), from the first camera
    rounds: list = field(default_factory=list)     # per BA round: threshold, observations, dropped, rms, nfev
    refine_intrinsics: bool = False
    intrinsic_flags: int = 0
    seconds: dict = field(default_factory=dict)    # detect, intrinsics, extrinsics, bundle_adjustment, total
    rig: Rig | None = field(default=None, repr=False)
    initial_rig: Rig | None = field(default=None, repr=False)   # the spanning-tree rig, before the adjustment
    board_poses: dict = field(default_factory=dict, repr=False)  # frame -> (R (3, 3), t (3,)) board -> world
    detections: dict = field(default_factory=dict, repr=False)   # camera -> {frame: (ids, corners px)}, as detected
    sizes: dict = field(default_factory=dict, repr=False)        # camera -> (w, h)

    def camera(self, name: str) -> CameraBoardReport:
        return next(c for c in self.cameras if c.name == name)

    def to_dict(self) -> dict:
        return {"board": self.board, "world": self.world, "cameras": [c.to_dict() for c in self.cameras],
                "pairs": dict(self.pairs), "tree": [list(e) for e in self.tree], "rounds": list(self.rounds),
                "refine_intrinsics": self.refine_intrinsics, "intrinsic_flags": int(self.intrinsic_flags),
                "seconds": dict(self.seconds)}


def format_board_report(report: BoardCalibrationReport) -> str:
    """Human-readable summary: one line per camera, then pairs, tree, adjustment rounds and timings."""
    lines = [f"board calibration: {report.board}; {len(report.cameras)} cameras; world = {report.world}"
             + ("; intrinsics refined in the adjustment" if report.refine_intrinsics else "")]
    header = (f"{'camera':<12} {'size':>9} {'frames':>6} {'found':>5} {'intr':>4} {'BA':>4} {'intr rms':>8}  "
              f"{'before BA rms/p50/p90/p99 px':>29}  {'after BA rms/p50/p90/p99 px':>28} {'dropped':>7}")
    lines += [header, "-" * len(header)]

    def stats(s):
        if not s or not s.get("n"):
            return "-"
        return f"{s['rms']:.2f}/{s['p50']:.2f}/{s['p90']:.2f}/{s['p99']:.2f}"

    for c in report.cameras:
        lines.append(f"{c.name:<12} {c.size[0]:>4}x{c.size[1]:<4} {c.frames or '-':>6} {c.detected:>5} "
                     f"{c.intrinsics_views:>4} {c.extrinsics_views:>4} {c.intrinsics_rms:>8.3f}  "
                     f"{stats(c.before):>29}  {stats(c.after):>28} {c.dropped:>7}")
    if report.pairs:
        lines.append("shared views: " + ", ".join(f"{k} {v}" for k, v in report.pairs.items()))
    if report.tree:
        lines.append("spanning tree: " + ", ".join(f"{p} -> {c} ({n})" for p, c, n in report.tree))
    for r in report.rounds:
        applied = "/".join(f"{v:.2f}" for v in r["limit_px"])
        lines.append(f"adjustment round, threshold {r['threshold_px']:g} px (applied per camera {applied} px): "
                     f"{r['observations']} corners kept, {r['dropped']} dropped, rms {r['rms_px']:.3f} px, "
                     f"{r['nfev']} evaluations")
    if report.seconds:
        lines.append("time: " + ", ".join(f"{k} {v:.2f} s" for k, v in report.seconds.items()))
    weak = [c.name for c in report.cameras if c.after.get("n") and c.after["rms"] > 1.0]
    if weak:
        lines.append(f"warning: reprojection RMS above 1 px for {weak}: check focus, motion blur, board flatness")
    return "\n".join(lines)


def render_board_report(report: BoardCalibrationReport, path: str | os.PathLike) -> Path:
    """Write a PNG: per camera a histogram of reprojection errors before and after the adjustment, and a
    top view of the camera poses (and board positions). Written atomically (the folder is created if
    missing); matplotlib's Agg canvas, no pyplot state. Returns the path."""
    from matplotlib.figure import Figure

    from hpe_ros.io.atomic import atomic_path

    n = len(report.cameras)
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    fig = Figure(figsize=(3.6 * cols + 6, max(2.8 * rows, 5.0)), dpi=100)
    grid = fig.add_gridspec(rows, cols + 2)
    upper = max([1.5 * np.percentile(c.errors_before, 99) for c in report.cameras if c.errors_before.size] + [0.2])
    bins = np.linspace(0, min(upper, 20.0), 40)
    for k, c in enumerate(report.cameras):
        ax = fig.add_subplot(grid[k // cols, k % cols])
        if c.errors_before.size:
            ax.hist(np.clip(c.errors_before, 0, bins[-1]), bins=bins, color="0.6", label="before BA")
        if c.errors_after.size:
            ax.hist(np.clip(c.errors_after, 0, bins[-1]), bins=bins, color="tab:blue", alpha=0.8, label="after BA")
        after = c.after.get("rms", float("nan"))
        ax.set_title(f"{c.name}: rms {c.before.get('rms', float('nan')):.2f} -> {after:.2f} px", fontsize=9)
        ax.set_xlabel("reprojection error (px, clipped)", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[:, cols:])
    _top_view(ax, report)
    fig.suptitle(f"board calibration: {report.board}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _top_view(ax, report: BoardCalibrationReport) -> None:
    """Camera centres and viewing directions projected on the floor plane (normal = the cameras' mean up)."""
    rig = report.rig
    if rig is None or len(rig) == 0:
        ax.set_axis_off()
        return
    up = -np.mean([c.R[1] for c in rig], axis=0)  # camera y is down in the image
    up = up / np.linalg.norm(up) if np.linalg.norm(up) > 1e-6 else np.array([0.0, 0.0, 1.0])
    e1 = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    plane = lambda p: np.stack([p @ e1, p @ e2], axis=-1)
    centres = plane(rig.centers)
    if report.board_poses:
        b = plane(np.stack([t for _, t in report.board_poses.values()]))
        ax.scatter(b[:, 0], b[:, 1], s=6, color="0.6", label="board (per frame)")
    span = np.ptp(np.concatenate([centres, b]) if report.board_poses else centres, axis=0).max() or 1.0
    for c, xy in zip(rig, centres):
        d = plane(c.R[2])
        d = d / (np.linalg.norm(d) or 1.0) * 0.12 * span
        ax.annotate("", xy=xy + d, xytext=xy, arrowprops=dict(arrowstyle="->", color="tab:red"))
        ax.scatter(*xy, color="tab:red", s=20)
        ax.text(*(xy + 0.03 * span), c.name, fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("top view (m), world frame projected on the floor", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)


__all__ = ["error_stats", "CameraBoardReport", "BoardCalibrationReport", "format_board_report", "render_board_report"]
