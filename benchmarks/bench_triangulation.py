"""Triangulation: hpe_ros's batched robust DLT vs the per-point loop offline tools use, side by side.

    .venv/bin/python benchmarks/bench_triangulation.py [--cameras 4 8 16 32] [--people 6] [--frames 30]

Same synthetic input for both (hpe_ros.sim: 2 px noise, misses, occlusion, gross outliers). The baseline
is the textbook per-point DLT (one SVD per joint over its confident views, weights = scores), the way
Pose2Sim's and anipose's plain triangulation work. Prints JSON: MPJPE and time per frame for each, and
the ratios baseline / hpe_ros.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hpe_ros.fusion import triangulate
from hpe_ros.sim import MotionScript, default_rig, observe


def loop_dlt(rig, points2d: np.ndarray, scores: np.ndarray, min_score: float = 0.05) -> np.ndarray:
    """Baseline: one weighted SVD per point, Python loop over points. points2d (C, N, 2) -> (N, 3)."""
    C, N = scores.shape
    xy = rig.undistort_points(points2d)
    P = rig.projection_matrices
    out = np.full((N, 3), np.nan)
    for n in range(N):
        rows = []
        for c in range(C):
            if scores[c, n] >= min_score and np.isfinite(xy[c, n]).all():
                x, y = xy[c, n]
                rows.append(scores[c, n] * (x * P[c, 2] - P[c, 0]))
                rows.append(scores[c, n] * (y * P[c, 2] - P[c, 1]))
        if len(rows) >= 4:
            X = np.linalg.svd(np.asarray(rows))[2][-1]
            out[n] = X[:3] / X[3]
    return out


def frames(n_cameras: int, people: int, n_frames: int, seed: int = 0):
    rig = default_rig(n_cameras)
    script = MotionScript(n_people=people, seed=seed, area=(4.0, 4.0))
    rng = np.random.default_rng(seed)
    for k in range(n_frames):
        truth = script.pose(k / 30)
        obs = observe(rig, truth, rng, noise_px=2.0, outlier_rate=0.1)
        # Known identities (association is not what this benchmark measures): rows -> true person order.
        pts, sc = obs.by_person(len(truth))
        C = len(rig)
        yield rig, truth, pts.reshape(C, -1, 2), sc.reshape(C, -1)


def run(n_cameras: int, people: int, n_frames: int) -> dict:
    res = {"ours": [[], []], "baseline": [[], []]}
    for rig, truth, pts, sc in frames(n_cameras, people, n_frames):
        gt = truth.reshape(-1, 3)
        for name, fn in (("ours", lambda: triangulate(rig, pts, sc).points),
                         ("baseline", lambda: loop_dlt(rig, pts, sc))):
            t = time.perf_counter()
            X = fn()
            res[name][0].append(time.perf_counter() - t)
            err = np.linalg.norm(X - gt, axis=-1)
            res[name][1].append(err[np.isfinite(err)])
    out = {"cameras": n_cameras, "people": people, "frames": n_frames}
    for name, (times, errs) in res.items():
        out[f"{name}_ms_per_frame"] = float(np.median(times) * 1e3)
        out[f"{name}_mpjpe_mm"] = float(np.concatenate(errs).mean() * 1e3)
    out["speedup"] = out["baseline_ms_per_frame"] / out["ours_ms_per_frame"]
    out["mpjpe_ratio_ours_to_baseline"] = out["ours_mpjpe_mm"] / out["baseline_mpjpe_mm"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--frames", type=int, default=30)
    a = ap.parse_args()
    print(json.dumps([run(c, a.people, a.frames) for c in a.cameras], indent=1))


if __name__ == "__main__":
    main()
