"""Offline tracks: causal (the live node's) vs whole clip (with and without smoothing), on simulated trials.

    .venv/bin/python benchmarks/bench_offline_tracks.py [--frames 300] [--people 2] [--cameras 4] [--seed 0]

Same 2D input for every mode (hpe_ros.sim: default_rig(C), MotionScript, observe), run through
hpe_ros.offline.fuse_frames. Trials: the 12-frame trial and a longer clip with the simulator's clean
error model, and the longer clip with a real detector's errors (``errors="realistic"``). Per mode:
person-frames output against the person-frames in the truth, frames with people, ids, and
hpe_ros.metrics.PoseScorer over every frame (MPJPE, missed people, false positives, id switches).
Prints one JSON document.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from hpe_ros.fusion.offline_tracks import ClipConfig
from hpe_ros.metrics import PoseScorer
from hpe_ros.offline import fuse_frames
from hpe_ros.sim import MotionScript, default_rig, simulate_clip

FPS = 30.0
MODES = {"causal": {"causal": True}, "whole_clip_raw": {"clip": ClipConfig(smooth=False)}, "whole_clip": {}}


def simulate(rig, people: int, frames: int, seed: int, errors: str | None):
    """[(index, detections per camera)], truth (T, P, 17, 3)."""
    return simulate_clip(rig, MotionScript(n_people=people, seed=seed), frames, FPS, np.random.default_rng(seed),
                         errors)


def score(result, truth) -> dict:
    scorer = PoseScorer()
    present = result.present
    for t in range(len(truth)):
        scorer.add(result.points[t, present[t]], result.ids[present[t]], truth[t])
    s = scorer.summary()
    return {"person_frames_out": int(present.sum()), "person_frames_truth": int(truth.shape[0] * truth.shape[1]),
            "frames_with_people": int(present.any(1).sum()), "ids": len(result.ids),
            "mpjpe_mm": round(s["mpjpe_mm"], 2), "missed_people": s["missed_people"],
            "false_positives": s["false_positives"], "id_switches": s["id_switches"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="frames of the longer clip")
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rig = default_rig(a.cameras)
    trials = {"trial_12_frames": (12, None), f"clip_{a.frames}_frames": (a.frames, None),
              f"clip_{a.frames}_frames_realistic_errors": (a.frames, "realistic")}
    out = {"fps": FPS, "people": a.people, "cameras": a.cameras, "seed": a.seed, "trials": {}}
    for name, (frames, errors) in trials.items():
        dets, truth = simulate(rig, a.people, frames, a.seed, errors)
        rows = {}
        for mode, kwargs in MODES.items():
            result = fuse_frames(rig, "coco17", dets, FPS, progress=False, **kwargs)
            rows[mode] = {**score(result, truth), "tracking": result.report["tracking"]}
        out["trials"][name] = rows
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
