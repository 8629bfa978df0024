"""Synthetic rig: time per frame of procedural motion + simulated 2D detections (what rig_sim_node does).

    .venv/bin/python benchmarks/bench_sim.py [--cameras 8] [--people 6] [--seconds 3]

Prints JSON: milliseconds per frame for `MotionScript.pose` + `observe` after a warm-up of the same length
(a frame at 30 Hz has 33 ms; the simulator should take a small part of it).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hpe_ros.sim import MotionScript, default_rig, observe

FPS = 30.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    rig, script, rng = default_rig(a.cameras), MotionScript(a.people, seed=0), np.random.default_rng(6)
    for t in np.arange(0.0, a.seconds, 1.0 / FPS):                    # plan ahead and warm up
        observe(rig, script.pose(t), rng)
    times = np.arange(a.seconds, 2 * a.seconds, 1.0 / FPS)
    start = time.perf_counter()
    for t in times:
        observe(rig, script.pose(t), rng)
    per_frame_ms = (time.perf_counter() - start) / len(times) * 1e3
    print(json.dumps({"cameras": a.cameras, "people": a.people, "frames": len(times),
                      "pose_and_observe_ms_per_frame": round(per_frame_ms, 3)}))


if __name__ == "__main__":
    main()
