"""Accuracy of tracked 3D skeletons against ground truth: MPJPE, PCK, missing joints, id switches; and the
summary of a live stream of them (accuracy, latency, drops, the nodes' own diagnostics), as the demo reports it."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def nearest_by_stamp(by_stamp_ns: Mapping[int, object], stamp: float, tolerance_s: float = 0.008):
    """The entry whose stamp (ns keys) is nearest `stamp` (s), or None if none is within tolerance."""
    if not by_stamp_ns:
        return None
    keys = np.fromiter(by_stamp_ns.keys(), dtype=np.int64)
    k = keys[np.argmin(np.abs(keys - round(stamp * 1e9)))]
    return by_stamp_ns[int(k)] if abs(k * 1e-9 - stamp) <= tolerance_s else None


def summarise_stream(fused: Sequence[tuple[float, object]], truth: Mapping[int, object], t_start: float,
                     diagnostics: Mapping[str, Mapping[str, str]] | None = None) -> dict:
    """Score fused frames acquired after t_start against the nearest ground-truth frame.

    fused: (arrival wall time s, poses) in arrival order; truth: {stamp ns: poses}; poses have `stamp` (s),
    `points` (P, J, 3) m and (fused) `ids` (P,). diagnostics: {"<node>: <stage>": {key: value string}}
    from /diagnostics. Latency = arrival - stamp; dropped = truth frames in the window no fused frame matched.
    """
    diagnostics = diagnostics or {}
    # Frames acquired after the start (by stamp): frames queued before it would count start-up delays.
    window = [(t, p) for t, p in fused if p.stamp >= t_start]
    scorer = PoseScorer()
    latencies = []
    matched_stamps = set()
    for arrival, poses in window:
        latencies.append((arrival - poses.stamp) * 1e3)
        gt = nearest_by_stamp(truth, poses.stamp)
        if gt is None:
            continue
        matched_stamps.add(round(gt.stamp * 1e9))
        scorer.add(poses.points, poses.ids, gt.points)
    stamps = [p.stamp for _, p in window]
    truth_in_window = [k for k in truth if stamps and min(stamps) * 1e9 <= k <= max(stamps) * 1e9]
    fusion_diag = next((v for k, v in diagnostics.items() if k.endswith(": fusion")), {})
    lat = np.asarray(latencies) if latencies else np.full(1, np.nan)
    return {
        "frames": len(window),
        **scorer.summary(),
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p99": float(np.percentile(lat, 99)),
        "latency_ms_max": float(np.max(lat)),
        "dropped": len(set(truth_in_window) - matched_stamps),
        "fusion_node_dropped": int(fusion_diag.get("dropped", 0)),
        "fusion_node_latency_ms_p99": float(fusion_diag.get("latency_ms_p99", "nan")),
        "stage_latency_ms": {name: {"p50": float(v.get("latency_ms_p50", "nan")),
                                    "p99": float(v.get("latency_ms_p99", "nan"))}
                             for name, v in sorted(diagnostics.items()) if "latency_ms_p50" in v},
        "rss_mb": {name.removesuffix(": memory"): float(v["rss_mb"]) for name, v in sorted(diagnostics.items())
                   if name.endswith(": memory") and "rss_mb" in v},
        "fusion_step_ms": {k.removesuffix("_ms"): float(v) for k, v in fusion_diag.items()
                           if k.endswith("_ms") and not k.startswith("latency")},
    }


def _counter_delta(before: Mapping[str, Mapping[str, str]], after: Mapping[str, Mapping[str, str]], status: str,
                   key: str) -> int | None:
    """How much counter `key` of diagnostics status `status` grew between two snapshots; None if never seen."""
    if key not in after.get(status, {}):
        return None
    return int(float(after[status][key])) - int(float(before.get(status, {}).get(key, 0)))


def stage_flow(before: Mapping[str, Mapping[str, str]], after: Mapping[str, Mapping[str, str]],
               cameras: Sequence[str]) -> dict:
    """Frames through each stage of the live graph between two /diagnostics snapshots, from the nodes' own
    counters ({"<node>: <stage>": {key: value string}}, as `summarise_stream` takes them).

    Returns {"sim_frames": frames the simulator published on every camera, "sim_fell_behind": frames it
    skipped, "fused": fusion frames out, "fusion_sync_dropped": frames its time sync gave up on, "cameras":
    {cam: {"published", "pose_2d" (camera_pose_node outputs), "pose_2d_dropped_in_node" (overwritten by a newer
    frame before inference), "missed_before_node" (stamp gaps: lost in DDS), "lifted" (lifter_node outputs),
    "fusion_in" (2D fusion_node took)}}}; a stage that is not in the graph is left out (None). Snapshots
    of different nodes are taken up to a diagnostics period apart, so counts of neighbouring stages can
    differ by that many frames without any drop.
    """
    d = lambda status, key: _counter_delta(before, after, status, key)
    sim_frames = d("rig_sim_node: sim", "processed")
    per_camera = {}
    for cam in cameras:
        counts = {"published": sim_frames,
                  "pose_2d": d(f"camera_pose_node: {cam}", "processed"),
                  "pose_2d_dropped_in_node": d(f"camera_pose_node: {cam}", "dropped"),
                  "missed_before_node": d(f"camera_pose_node: {cam}", "missed_before_node"),
                  "lifted": d(f"lifter_node: {cam}", "processed"),
                  "fusion_in": d(f"fusion_node: {cam}", "processed")}
        per_camera[cam] = {k: v for k, v in counts.items() if v is not None}
    return {"sim_frames": sim_frames, "sim_fell_behind": d("rig_sim_node: sim", "dropped"),
            "fused": d("fusion_node: fusion", "processed"),
            "fusion_sync_dropped": d("fusion_node: fusion", "dropped"), "cameras": per_camera}
