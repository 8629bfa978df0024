"""Whole-clip tracks for the offline tools: every frame, identities settled over the clip, zero-lag
smoothing, short gaps filled.

The live tracker is causal: a new person is published after `birth_hits` frames and joints are One-Euro
filtered (a little lag). Offline the whole recording is known, so `hpe_ros.offline.fuse_frames` runs the
live pipeline with births immediate and no filter (`whole_clip_fusion_config`) and hands the tracklets
it produced to `settle_tracks`:

1. measured joints only: joints the tracker held (views 0, extrapolated) are dropped, step 3 re-makes them;
2. link: a tracklet starting after another one ended, within link_gap_s and close enough (mean joint
   distance <= link_m + link_speed * gap), continues it; closest pairs first, one successor and one
   predecessor per tracklet;
3. fill: each joint's gaps of up to max_gap frames inside a track are interpolated over the stamps
   (cubic spline through the joint's samples as Pose2Sim does, linear with fewer than 4 samples);
4. drop: tracks present in fewer than min_track_frames frames (association ghosts, false detections);
5. smooth: Butterworth low-pass run forward and backward (scipy filtfilt: zero phase, so no lag), each
   joint's contiguous runs separately; Pose2Sim's default: 4th order overall (a 2nd-order filter run
   twice), 6 Hz.

    tracks = settle_tracks(ids, points, confidence, views, stamps, fps, ClipConfig())
    tracks.points          # (T, K, J, 3) m, K settled people, ids 0..K-1 by first appearance
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import butter, filtfilt

from ..checks import check_shape
from .pipeline import FusionConfig
from .tracking import pose_distance

log = logging.getLogger(__name__)

INTERPOLATIONS = ("cubic", "linear")


@dataclass
class ClipConfig:
    """Whole-clip tracking parameters (the offline CLI's --smooth-cutoff, --fill-gaps, ... options)."""

    link_gap_s: float = field(default=1.0, metadata={"help": "longest time between two tracklets linked as one person"})
    link_m: float = field(default=0.5, metadata={"help": "mean joint distance (m) under which tracklets link at once"})
    link_speed: float = field(default=1.5, metadata={"help": "m/s a person may move while unseen between tracklets"})
    min_track_frames: int = field(default=5, metadata={
        "help": "tracks present in fewer frames are dropped (never more than the clip's frames)"})
    max_gap: int = field(default=10, metadata={"help": "longest gap (frames) of a joint that is interpolated; 0 = off"})
    interpolation: str = field(default="cubic", metadata={"help": f"gap filling: {' | '.join(INTERPOLATIONS)}"})
    smooth: bool = field(default=True, metadata={"help": "zero-lag Butterworth smoothing (filtfilt)"})
    cutoff_hz: float = field(default=6.0, metadata={"help": "smoothing cutoff frequency (Hz)"})
    order: int = field(default=4, metadata={
        "help": "smoothing order overall (even: a filter of half this order runs forward and backward)"})

    def __post_init__(self):
        for name in ("link_gap_s", "link_m", "link_speed"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ClipConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.cutoff_hz > 0:
            raise ValueError(f"ClipConfig.cutoff_hz must be > 0, got {self.cutoff_hz}")
        if self.min_track_frames < 1 or self.max_gap < 0:
            raise ValueError("ClipConfig: min_track_frames must be >= 1 and max_gap >= 0, "
                             f"got {self.min_track_frames} and {self.max_gap}")
        if self.order < 2 or self.order % 2:
            raise ValueError(f"ClipConfig.order must be even and >= 2, got {self.order}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"ClipConfig.interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")


@dataclass
class SettledTracks:
    """ids (K,) 0..K-1 by first appearance; points (T, K, J, 3) m (NaN = absent); confidence (T, K, J);
    views (T, K, J) cameras per joint, 0 for interpolated joints; stats: counts for the report."""

    ids: np.ndarray
    points: np.ndarray
    confidence: np.ndarray
    views: np.ndarray
    stats: dict


def whole_clip_fusion_config(config: FusionConfig | None) -> FusionConfig:
    """The live settings with births immediate and no causal filter: settle_tracks does both over the clip."""
    config = config or FusionConfig()
    return replace(config, tracker=replace(config.tracker, birth_hits=1, filter="none"))


def settle_tracks(ids: np.ndarray, points: np.ndarray, confidence: np.ndarray, views: np.ndarray,
                  stamps: np.ndarray, fps: float, config: ClipConfig | None = None) -> SettledTracks:
    """Tracklets of a whole clip -> settled tracks (see module docstring).

    ids (N,) tracklet ids; points (T, N, J, 3) m, NaN = absent; confidence, views (T, N, J); stamps (T,) s,
    increasing; fps: the frame rate the smoothing cutoff refers to.
    """
    cfg = config or ClipConfig()
    points = np.asarray(points, dtype=np.float64)
    dims = check_shape("points", points, ("T", "N", "J", 3))
    check_shape("confidence", confidence, ("T", "N", "J"), dims)
    check_shape("views", views, ("T", "N", "J"), dims)
    check_shape("ids", ids, ("N",), dims)
    check_shape("stamps", stamps, ("T",), dims)
    stamps = np.asarray(stamps, dtype=np.float64)
    measured = np.isfinite(points).all(-1) & (np.asarray(views) >= 1)
    points = np.where(measured[..., None], points, np.nan)
    confidence = np.where(measured, confidence, 0.0)
    views = np.where(measured, views, 0).astype(np.int64)

    chains = link_tracklets(points, stamps, cfg)
    present = measured.any(-1)                                          # (T, N)
    chains.sort(key=lambda chain: (int(np.argmax(present[:, chain].any(1))), int(ids[chain[0]])))
    T, K, J = len(stamps), len(chains), dims["J"]
    out_p, out_c = np.full((T, K, J, 3), np.nan), np.zeros((T, K, J))
    out_v = np.zeros((T, K, J), dtype=np.int64)
    for k, chain in enumerate(chains):
        for n in chain:   # tracklets of a chain never share a frame
            seen = present[:, n]
            out_p[seen, k], out_c[seen, k], out_v[seen, k] = points[seen, n], confidence[seen, n], views[seen, n]

    before = np.isfinite(out_p).all(-1)
    fill_gaps(out_p, out_c, stamps, cfg.max_gap, cfg.interpolation)
    filled = np.isfinite(out_p).all(-1) & ~before
    frames = np.isfinite(out_p).all(-1).any(-1).sum(0)                  # (K,)
    keep = frames >= min(cfg.min_track_frames, T)
    out_p, out_c, out_v, filled = out_p[:, keep], out_c[:, keep], out_v[:, keep], filled[:, keep]
    smoothing = smooth_tracks(out_p, fps, cfg) if cfg.smooth else "off"
    stats = {
        "tracklets": int(len(ids)), "linked": int(len(ids) - K), "kept": int(keep.sum()),
        "dropped": int((~keep).sum()), "dropped_frames": int(frames[~keep].sum()),
        "joints_filled": int(filled.sum()),
        "person_frames_filled": int((filled.any(-1) & ~before[:, keep].any(-1)).sum()),
        "max_gap_frames": cfg.max_gap, "smoothing": smoothing,
    }
    return SettledTracks(np.arange(int(keep.sum()), dtype=np.int64), out_p, out_c, out_v, stats)


def link_tracklets(points: np.ndarray, stamps: np.ndarray, cfg: ClipConfig) -> list[list[int]]:
    """Chains of tracklet columns, each one person: points (T, N, J, 3) NaN = absent, stamps (T,) s.

    A pair (a, b) is a candidate when b starts after a ended, within link_gap_s, and a's last pose and
    b's first are within link_m + link_speed * gap (mean joint distance); candidates are taken closest
    (relative to their allowance) first, each tracklet keeping one successor and one predecessor.
    """
    present = np.isfinite(points).all(-1).any(-1)                       # (T, N)
    N = present.shape[1]
    cols = [n for n in range(N) if present[:, n].any()]
    first = {n: int(np.flatnonzero(present[:, n])[0]) for n in cols}
    last = {n: int(np.flatnonzero(present[:, n])[-1]) for n in cols}
    candidates = []
    for a in cols:
        for b in cols:
            gap = stamps[first[b]] - stamps[last[a]] if first[b] > last[a] else np.inf
            if gap > cfg.link_gap_s:
                continue
            allowed = cfg.link_m + cfg.link_speed * gap
            d = pose_distance(points[last[a], a][None], points[first[b], b][None])[0, 0]
            if d <= allowed:
                candidates.append((d / max(allowed, 1e-9), a, b))
    successor: dict[int, int] = {}
    has_predecessor: set[int] = set()
    for _, a, b in sorted(candidates):
        if a not in successor and b not in has_predecessor:
            successor[a] = b
            has_predecessor.add(b)
    chains = []
    for n in cols:
        if n in has_predecessor:
            continue
        chain = [n]
        while chain[-1] in successor:
            chain.append(successor[chain[-1]])
        chains.append(chain)
    return chains


def fill_gaps(points: np.ndarray, confidence: np.ndarray, stamps: np.ndarray, max_gap: int,
              interpolation: str = "cubic") -> None:
    """Interpolate, in place, each joint's interior gaps of 1..max_gap frames over the stamps.

    points (T, K, J, 3) NaN = missing; confidence (T, K, J) gets the neighbours' confidence, linearly.
    """
    if max_gap <= 0:
        return
    T, K, J = confidence.shape
    for k in range(K):
        for j in range(J):
            idx = np.flatnonzero(np.isfinite(points[:, k, j]).all(-1))
            if idx.size < 2:
                continue
            holes = np.diff(idx) - 1
            short = (holes > 0) & (holes <= max_gap)
            if not short.any():
                continue
            target = np.concatenate([np.arange(s + 1, e) for s, e in zip(idx[:-1][short], idx[1:][short])])
            x, y = stamps[idx], points[idx, k, j]
            if interpolation == "cubic" and idx.size >= 4:
                points[target, k, j] = CubicSpline(x, y)(stamps[target])
            else:
                points[target, k, j] = np.stack([np.interp(stamps[target], x, y[:, d]) for d in range(3)], -1)
            confidence[target, k, j] = np.interp(stamps[target], x, confidence[idx, k, j])


def smooth_tracks(points: np.ndarray, fps: float, cfg: ClipConfig) -> str:
    """Zero-lag Butterworth smoothing, in place, of each joint's contiguous runs of points (T, K, J, 3).

    Returns what was done, for the report; a cutoff at or above the Nyquist frequency (fps / 2) leaves
    the points as they are (with a warning).
    """
    if cfg.cutoff_hz >= fps / 2:
        log.warning("smoothing skipped: cutoff %.3g Hz is not below half the frame rate (%.3g fps)", cfg.cutoff_hz, fps)
        return f"skipped: cutoff {cfg.cutoff_hz:g} Hz >= fps / 2"
    b, a = butter(cfg.order // 2, cfg.cutoff_hz / (fps / 2), btype="low")
    T, K, J, _ = points.shape
    ok = np.isfinite(points).all(-1)
    for k in range(K):
        for j in range(J):
            run_starts, run_ends = _runs(ok[:, k, j])
            for s, e in zip(run_starts, run_ends):
                if e - s >= 4:   # shorter runs carry no frequency content to filter
                    points[s:e, k, j] = filtfilt(b, a, points[s:e, k, j], axis=0,
                                                 padlen=min(3 * max(len(a), len(b)), e - s - 1))
    return f"butterworth filtfilt, order {cfg.order}, {cfg.cutoff_hz:g} Hz"


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the True runs of a 1D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def describe(stats: dict) -> str:
    """One line for the CLI: frames in / out, tracks kept / dropped, gaps filled, smoothing."""
    line = (f"{stats['frames_in']} frames in, {stats['frames_with_people']} with people out; "
            f"tracking: {stats['mode']}")
    if stats["mode"] == "whole clip":
        line += (f", {stats['tracklets']} tracklets -> {stats['kept']} people kept, {stats['dropped']} dropped "
                 f"(< min frames), {stats['joints_filled']} joint samples filled "
                 f"(gaps <= {stats['max_gap_frames']} frames), smoothing: {stats['smoothing']}")
    return line


__all__ = ["ClipConfig", "SettledTracks", "settle_tracks", "link_tracklets", "fill_gaps", "smooth_tracks",
           "whole_clip_fusion_config", "describe", "INTERPOLATIONS"]
