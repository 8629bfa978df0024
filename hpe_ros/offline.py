"""Offline triangulation of OpenPose JSON folders, with the live node's fusion (`hpe-ros triangulate`).

The Pose2Sim workflow: one folder of OpenPose JSON files per camera, a calibration TOML, and out comes
a TRC for OpenSim (one person) or a JSON of tracked skeletons (several). The cameras' files are paired
by frame number (`hpe_ros.io.openpose`); the frames run, in frame order, through the same `FusionPipeline`
as `fusion_node` (association, robust triangulation, tracking with ids), stamped frame / fps. The tracks
then use the whole clip (`hpe_ros.fusion.offline_tracks`: every frame, ids settled over the clip, short
gaps filled, zero-lag smoothing); causal=True keeps the live node's causal tracks instead.

    >>> result = triangulate_folders("calib.toml", ["pose/cam1_json", "pose/cam2_json"], "body25", fps=30)
    >>> result = triangulate_folders("calib.toml", {"cam1": "pose/cam1_json", "cam2": "pose/cam2_json"})
    >>> result.ids, result.points.shape          # (N,) track ids, (T, N, J, 3) m, NaN = absent
    >>> write_outputs(result, "out/walk")        # out/walk.trc (one id) or out/walk.json, out/walk.report.json
    >>> print(format_report(result.report))

Layouts: the pipeline runs in the files' own layout (any of `hpe_ros.skeleton.LAYOUTS`; the tracker and
orientation only need named hips and shoulders), so no joint is lost to a conversion;
BODY_25's neck and mid-hip are triangulated from their own detections, not averaged.

Reprojection report: each fused person (joints seen by >= 1 view this frame) is projected into every
camera and matched to that camera's detections (Hungarian on the median pixel distance, gated at
REPORT_MATCH_GATE_PX); the errors of the matched detections' joints with 2D score > REPORT_MIN_SCORE
give per-camera median / mean / 90th percentile and the count above REPORT_OUTLIER_PX. The points are
the tracked, smoothed output, so the numbers include the filter's lag as well as calibration and
detection errors.
"""
from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from .camera import Rig
from .fusion import FusionConfig, FusionPipeline
from .fusion.offline_tracks import ClipConfig, settle_tracks, whole_clip_fusion_config
from .fusion.pipeline import stack_views
from .io.atomic import atomic_group, write_text_atomic
from .io.calibration import load_rig
from .io.openpose import SynchronisedOpenPose
from .io.pose_cloud import HumanPoses
from .io.skeleton_json import SkeletonFrame, write_skeleton_json
from .io.trc import write_trc, zup_to_yup
from .skeleton import Layout, get_layout

log = logging.getLogger(__name__)

REPORT_MIN_SCORE = 0.3       # 2D joints below this score are left out of the reprojection report
REPORT_OUTLIER_PX = 20.0     # errors above this are counted separately
REPORT_MATCH_GATE_PX = 50.0  # a fused person and a detection further apart (median px) are not a match
FORMATS = ("auto", "trc", "json")


@dataclass
class OfflineResult:
    """Tracked persons over the frames of a folder set.

    frame_indices (T,) source frame numbers; ids (N,) every track id that appeared, sorted;
    points (T, N, J, 3) world m (NaN = absent / missing joint); confidence, views (T, N, J);
    report: the summary written to OUT.report.json (see `reprojection_report`);
    stamps_ns (T,) int ns each frame was fused at (frame / fps, or the images' exact header stamps from a bag).
    """

    layout: Layout
    fps: float
    camera_names: list[str]
    frame_indices: np.ndarray
    ids: np.ndarray
    points: np.ndarray
    confidence: np.ndarray
    views: np.ndarray
    report: dict = field(default_factory=dict)
    stamps_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def present(self) -> np.ndarray:
        """(T, N) whether each id was output in each frame."""
        return np.isfinite(self.points).all(-1).any(-1)

    def frames_per_id(self) -> dict[int, int]:
        return {int(i): int(n) for i, n in zip(self.ids, self.present.sum(0))}

    def longest_lived_id(self) -> int | None:
        """The id output in the most frames (the smallest such id on a tie); None without any."""
        if len(self.ids) == 0:
            return None
        return int(self.ids[int(np.argmax(self.present.sum(0)))])

    def track(self, person_id: int) -> np.ndarray:
        """(T, J, 3) one person's joints over all frames (NaN where absent)."""
        k = np.flatnonzero(self.ids == person_id)
        if k.size == 0:
            raise KeyError(f"no person id {person_id}; ids: {self.ids.tolist()}")
        return self.points[:, k[0]]

    def pose_frames(self, world_frame: str = "world") -> Iterator[HumanPoses]:
        """Each frame's present persons as the live node's HumanPoses (what /human_pose_3d carries)."""
        present = self.present
        for t, stamp_ns in enumerate(self.stamps_ns):
            k = present[t]
            yield HumanPoses(points=self.points[t, k], confidence=self.confidence[t, k], ids=self.ids[k],
                             views=self.views[t, k], stamp=int(stamp_ns) * 1e-9, frame_id=world_frame)


# --- reprojection report -------------------------------------------------------------------------
class _ReprojectionStats:
    """Per-camera reprojection errors of fused persons against their matched 2D detections."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.errors: list[list[np.ndarray]] = [[] for _ in rig]
        self.detections = np.zeros(len(rig), dtype=np.int64)
        self.matched = np.zeros(len(rig), dtype=np.int64)

    def add(self, points3d: np.ndarray, valid: np.ndarray, detections: list[tuple[np.ndarray, np.ndarray]]):
        """points3d (P, J, 3), valid (P, J); detections[c] = (points (D, J, 2), scores (D, J))."""
        for c, (cam, (det, sc)) in enumerate(zip(self.rig, detections)):
            self.detections[c] += len(det)
            if len(det) == 0 or len(points3d) == 0:
                continue
            proj = cam.project(points3d)                                       # (P, J, 2)
            dist = np.linalg.norm(proj[:, None] - det[None], axis=-1)         # (P, D, J)
            ok = valid[:, None] & (sc >= REPORT_MIN_SCORE)[None] & np.isfinite(dist)
            n_ok = ok.sum(-1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (no common joints) -> NaN
                cost = np.nanmedian(np.where(ok, dist, np.nan), axis=-1)
            cost = np.where(n_ok >= 3, cost, np.inf)
            finite = np.isfinite(cost)
            if not finite.any():
                continue
            rows, cols = linear_sum_assignment(np.where(finite, cost, 1e9))
            for p, d in zip(rows, cols):
                if cost[p, d] <= REPORT_MATCH_GATE_PX:
                    self.matched[c] += 1
                    self.errors[c].append(dist[p, d][ok[p, d]])

    def summary(self) -> list[dict]:
        out = []
        for c, cam in enumerate(self.rig):
            e = np.concatenate(self.errors[c]) if self.errors[c] else np.zeros(0)
            row = {"camera": cam.name, "detections": int(self.detections[c]), "matched": int(self.matched[c]),
                   "joints": int(e.size)}
            if e.size:
                over = int((e > REPORT_OUTLIER_PX).sum())
                row.update(median_px=round(float(np.median(e)), 3), mean_px=round(float(e.mean()), 3),
                           p90_px=round(float(np.percentile(e, 90)), 3), over_20px=over,
                           over_20px_pct=round(100.0 * over / e.size, 2))
            else:
                row.update(median_px=None, mean_px=None, p90_px=None, over_20px=0, over_20px_pct=None)
            out.append(row)
        return out


def format_report(report: dict) -> str:
    """The reprojection part of a report as a small text table (one row per camera)."""
    rows = report.get("reprojection", {}).get("cameras", [])
    f = lambda v: "-" if v is None else f"{v:.2f}"
    lines = [f"{'camera':<12} {'joints':>7} {'median px':>10} {'mean px':>8} {'p90 px':>7} {'>20 px':>14}"]
    for r in rows:
        over = f"{r['over_20px']} ({f(r['over_20px_pct'])}%)" if r["joints"] else "-"
        lines.append(f"{r['camera']:<12} {r['joints']:>7} {f(r['median_px']):>10} {f(r['mean_px']):>8} "
                     f"{f(r['p90_px']):>7} {over:>14}")
    skipped = format_skipped(report.get("skipped"))
    if skipped:
        lines.append(skipped)
    run = report.get("processing", {})
    if run:
        lines.append(f"{report.get('frames', 0)} frames, person ids {report.get('person_ids', [])}, "
                     f"{run.get('seconds', 0):.2f} s ({run.get('frames_per_s', 0):.0f} frames/s)")
    return "\n".join(lines)


def format_skipped(skipped: dict | None) -> str:
    """A report's "skipped" section ({"total", "per_camera": {camera: {kind: count}}}) as one line ("" if none)."""
    if not skipped or not skipped.get("total"):
        return ""
    parts = [f"{camera} " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items() if n)
             for camera, counts in skipped.get("per_camera", {}).items() if any(counts.values())]
    return f"skipped {skipped['total']} bad input entries ({'; '.join(parts)}); details in the report's \"skipped\""


# --- the run -------------------------------------------------------------------------------------
def triangulate_folders(calib_path: str | os.PathLike,
                        keypoint_dirs: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
                        layout: str | Layout = "body25", fps: float = 30.0, progress: bool = True,
                        config: FusionConfig | None = None, causal: bool = False,
                        clip: ClipConfig | None = None) -> OfflineResult:
    """Fuse OpenPose JSON folders frame by frame: one folder per camera, a list in the calibration file's
    camera order or {camera: folder}.

    Frames are paired by frame number (`hpe_ros.io.openpose`): every frame number present in any folder
    is one step (stamp = number / fps), and a camera lacking it, or with an empty file, contributes no
    detections; report["inputs"] counts those per camera. Bad files and person entries are skipped and
    listed in report["skipped"] (`SynchronisedOpenPose.skip_report`). Raises ValueError (CalibrationError
    for the calibration) with a message naming the file for bad input, and when no file gave a usable
    person; nothing is written here.
    """
    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be > 0, got {fps}")
    layout = get_layout(layout)
    rig = load_rig(calib_path)
    recording = SynchronisedOpenPose.for_cameras(keypoint_dirs, rig.names, layout, source=calib_path)
    out = fuse_frames(rig, layout, recording, fps, total=len(recording), progress=progress, config=config,
                      desc="triangulate", causal=causal, clip=clip)
    recording.check_usable()
    out.report["calibration"] = str(calib_path)
    out.report["inputs"] = recording.inputs()
    out.report["skipped"] = recording.skip_report()
    return out


def fuse_frames(rig: Rig, layout: str | Layout, frames: Iterable[tuple[int, list]], fps: float,
                total: int | None = None, progress: bool = True, config: FusionConfig | None = None,
                desc: str = "fuse", causal: bool = False, clip: ClipConfig | None = None) -> OfflineResult:
    """Fuse offline frames with the live pipeline: `frames` yields (frame index, detections per camera) or
    (frame index, detections, stamp int ns), each detection (points (P, J, 2) px, scores (P, J)) in `layout`,
    cameras in the rig's order; stamp = index / fps unless given (not None).

    By default the tracks use the whole clip (`hpe_ros.fusion.offline_tracks`, settings `clip`): a person
    is output from the first frame they are triangulated in, tracklets are linked over the clip, short
    tracks dropped, joint gaps up to clip.max_gap frames filled and the joints smoothed without lag; ids
    are 0..K-1 by first appearance. causal=True keeps the live node's behaviour (births after
    birth_hits frames, One-Euro filter, live ids). report["tracking"] says which, with frames in and
    out, tracks kept / dropped and gaps filled.
    """
    from tqdm import tqdm

    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be > 0, got {fps}")
    layout = get_layout(layout)
    pipe = FusionPipeline(rig, layout, config if causal else whole_clip_fusion_config(config))
    J = layout.num_joints

    indices: list[int] = []
    stamps_ns: list[int] = []
    per_frame: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    detections: list[list] = []   # kept for the reprojection report, computed on the final tracks
    fusion_ms = 0.0
    t0 = time.perf_counter()
    for index, dets, *stamp in tqdm(frames, desc=desc, unit="frame", total=total, disable=not progress, leave=False):
        if len(dets) != len(rig):
            raise ValueError(f"frame {index}: detections for {len(dets)} cameras, the rig has {len(rig)}")
        points2d, scores = stack_views(dets, J)
        given = stamp[0] if stamp else None
        stamps_ns.append(round(index * 1e9 / fps) if given is None else int(given))
        result = pipe.step(index / fps if given is None else int(given) * 1e-9, points2d, scores, orientations=False)
        fusion_ms += result.timing_ms.get("total", 0.0)
        indices.append(int(index))
        per_frame.append(result.as_arrays())
        detections.append(dets)

    ids, points, confidence, views = _stack_frames(per_frame, J)
    T = len(indices)
    tracking: dict = {"mode": "causal"}
    if not causal:
        settled = settle_tracks(ids, points, confidence, views, np.asarray(stamps_ns, dtype=np.float64) * 1e-9,
                                fps, clip)
        ids, points, confidence, views = settled.ids, settled.points, settled.confidence, settled.views
        tracking = {"mode": "whole clip", **settled.stats}
    seconds = time.perf_counter() - t0
    present = np.isfinite(points).all(-1).any(-1)                       # (T, N)
    stats = _ReprojectionStats(rig)
    for t, dets in enumerate(detections):
        k = present[t]
        stats.add(points[t, k], np.isfinite(points[t, k]).all(-1) & (views[t, k] >= 1), dets)
    tracking = {"frames_in": T, "frames_with_people": int(present.any(1).sum()), **tracking}

    out = OfflineResult(layout=layout, fps=float(fps), camera_names=rig.names,
                        frame_indices=np.asarray(indices, dtype=np.int64), ids=ids, points=points,
                        confidence=confidence, views=views, stamps_ns=np.asarray(stamps_ns, dtype=np.int64))
    out.report = {
        "layout": layout.name,
        "fps": float(fps),
        "frames": T,
        "frame_range": [indices[0], indices[-1]] if indices else None,
        "person_ids": ids.tolist(),
        "frames_per_id": {str(k): v for k, v in out.frames_per_id().items()},
        "tracking": tracking,
        "processing": {"seconds": round(seconds, 3), "frames_per_s": round(T / seconds, 1) if seconds > 0 else None,
                       "fusion_ms_per_frame": round(fusion_ms / T, 3) if T else None},
        "reprojection": {"min_score": REPORT_MIN_SCORE, "outlier_px": REPORT_OUTLIER_PX,
                         "match_gate_px": REPORT_MATCH_GATE_PX, "cameras": stats.summary()},
    }
    return out


def _stack_frames(per_frame: list[tuple[np.ndarray, ...]], num_joints: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (points (P, J, 3), confidence (P, J), ids (P,), views (P, J)) -> ids (N,) sorted, every id
    seen; points (T, N, J, 3) NaN = absent; confidence, views (T, N, J)."""
    all_ids = np.array(sorted({int(i) for _, _, ids, _ in per_frame for i in ids}), dtype=np.int64)
    col = {int(i): k for k, i in enumerate(all_ids)}
    T, N, J = len(per_frame), len(all_ids), num_joints
    points = np.full((T, N, J, 3), np.nan)
    confidence, views = np.zeros((T, N, J)), np.zeros((T, N, J), dtype=np.int64)
    for t, (pts, conf, ids, v) in enumerate(per_frame):
        k = [col[int(i)] for i in ids]
        points[t, k], confidence[t, k], views[t, k] = pts, conf, v
    return all_ids, points, confidence, views


# --- outputs -------------------------------------------------------------------------------------
def output_paths(out: str | os.PathLike, fmt: str = "auto") -> tuple[Path, Path, str]:
    """OUT -> (output stem, report path, format fixed by OUT's suffix or `fmt`).

    OUT may end in .trc or .json (that suffix then picks the format under "auto", and must agree with
    an explicit `fmt`), or have no such suffix (the format's suffix is added). The report is
    <stem>.report.json. Raises ValueError for a suffix that contradicts `fmt`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    suffix = out.suffix.lower()
    stem = out.with_name(out.name[: -len(suffix)]) if suffix in (".trc", ".json") else out
    if suffix in (".trc", ".json"):
        implied = suffix[1:]
        if fmt != "auto" and fmt != implied:
            raise ValueError(f"--out {out} ends in {suffix} but --format is {fmt}")
        fmt = implied
    if not stem.name:
        raise ValueError(f"--out {out}: no file name")
    return stem, stem.with_name(stem.name + ".report.json"), fmt


def write_outputs(result: OfflineResult, out: str | os.PathLike, fmt: str = "auto", y_up: bool = False) -> dict:
    """Write the TRC or JSON output and OUT.report.json, both or neither (folders created as needed).

    Format: "trc" -> the longest-lived id, trimmed to the frames from its first to its last appearance;
    "json" -> every id; "auto" -> TRC when exactly one id appeared, else JSON (or what OUT's suffix says).
    Returns {"output", "report", "format", "person_id"}; ValueError when a TRC is asked for and no
    person was tracked. Both files are written to a staging folder first and then renamed
    (`io.atomic.atomic_group`): when this raises, Ctrl-C and SIGTERM included, the output and the report
    are as they were before the call (no new file, an old one unchanged) and no temp file is left.
    """
    stem, report_path, fmt = output_paths(out, fmt)
    if fmt == "auto":
        fmt = "trc" if len(result.ids) == 1 else "json"
    stem.parent.mkdir(parents=True, exist_ok=True)
    info = {"format": fmt, "person_id": None, "up_axis": "y" if y_up else "z"}
    path = stem.with_name(stem.name + "." + fmt)
    if fmt == "trc":
        pid = result.longest_lived_id()
        if pid is None:
            raise ValueError("no person was tracked in any frame: there is no TRC to write "
                             "(check the calibration and the keypoint folders' camera order)")
        if len(result.ids) > 1:
            log.warning("%d person ids %s; the TRC holds the longest-lived id %d (--format json keeps all)",
                        len(result.ids), result.ids.tolist(), pid)
    with atomic_group([path, report_path]) as (staged_output, staged_report):
        if fmt == "trc":
            track = result.track(pid)
            seen = np.flatnonzero(np.isfinite(track).all(-1).any(-1))
            span = slice(seen[0], seen[-1] + 1)
            write_trc(staged_output, track[span], result.layout.joint_names, result.fps,
                      frame_numbers=result.frame_indices[span], y_up=y_up)
            info.update(person_id=pid, frames=int(seen[-1] - seen[0] + 1))
        else:
            write_skeleton_json(staged_output, result.layout, result.fps, _skeleton_frames(result, y_up),
                                up_axis=info["up_axis"])
        info["output"] = str(path)
        result.report["output"] = dict(info)
        write_text_atomic(staged_report, json.dumps(result.report, indent=2, allow_nan=False) + "\n")
    info["report"] = str(report_path)
    return info


def _skeleton_frames(result: OfflineResult, y_up: bool) -> list[SkeletonFrame]:
    """The present ids of every frame, for the JSON output (y-up when asked)."""
    present = result.present
    frames = [SkeletonFrame(index=int(idx), ids=result.ids[present[t]], points=result.points[t, present[t]],
                            confidence=result.confidence[t, present[t]])
              for t, idx in enumerate(result.frame_indices)]
    if y_up:
        frames = [SkeletonFrame(f.index, f.ids, zup_to_yup(f.points), f.confidence) for f in frames]
    return frames


__all__ = ["OfflineResult", "triangulate_folders", "fuse_frames", "write_outputs", "output_paths", "format_report",
           "format_skipped", "REPORT_MIN_SCORE", "REPORT_OUTLIER_PX"]
