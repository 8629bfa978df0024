"""What the lifter brings to fusion: people and joints that fewer than two cameras see.

    .venv/bin/python benchmarks/bench_lifter_fusion.py [--model models/lifter.onnx] [--frames 450] [--seeds 0 1]

A simulated rig where people are often seen by only one or two cameras: hpe_ros.sim.default_rig(3) with
a narrow field of view (focal 1000 px on 640 x 480 images, ~35 degrees across), 4 people walking in a
5 m x 5 m area (larger than what the cameras cover together), with the simulator's pixel noise, misses,
outliers and occlusion between people. The same detections go through FusionPipeline.step side by side:

- ``no_lifter``: triangulation only (people seen by one camera are dropped, joints seen by one camera
  are missing);
- ``placeholder``: lifted poses from ApparentSizeLifter (flat, depth from the torso's apparent size);
- ``learned``: lifted poses from LearnedLifter(--model) (default: the shipped models/lifter.onnx);
- ``learned_scale_fit`` (unless --no-ablation): the learned lifter with the fusion's lifted-pose alignment
  fitting scale + translation (`FusionConfig.lifted_scale_fit`) instead of the default translation only.

Every camera's detections are lifted once per frame (all people of a camera in one call) and the time
is reported per camera-frame. Scoring per frame and true person, by how many cameras reported them
(the simulator's row identities): 1, 2, >= 3 cameras, and overall. Fused people are paired with the
truth (Hungarian on mean joint distance, gate --gate-m). ``missing_joint_fraction``: of the person's 17
joints, the share not returned (an unpaired person counts 17 missing); ``mpjpe_m``: mean error of the
returned joints, split into ``mpjpe_triangulated_joints_m`` (views >= 2) and ``mpjpe_lifted_joints_m``
(views <= 1: lifted, or held by the tracker); ``false_positives_per_frame``: fused people with at least
one joint paired with nobody. The first --skip frames
(tracks being born) are not scored. ``ratio_vs_no_lifter`` divides each method's figures by no_lifter's.
Prints one JSON document.
"""
from __future__ import annotations

import os

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from hpe_ros.fusion import FusionConfig, FusionPipeline  # noqa: E402
from hpe_ros.lift.placeholder import ApparentSizeLifter  # noqa: E402
from hpe_ros.lift.runtime import LearnedLifter, default_model_path  # noqa: E402
from hpe_ros.metrics import match_people  # noqa: E402
from hpe_ros.sim import MotionScript, default_rig, observe  # noqa: E402

FPS = 30.0
CLASSES = ("1", "2", "3+")


def scene(n_frames: int, seed: int, people: int, focal: float, area: float):
    rig = default_rig(3, radius=4.0, focal=focal)
    script = MotionScript(n_people=people, seed=seed, area=(area, area))
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        truth = script.pose(k / FPS)
        frames.append((k / FPS, truth, observe(rig, truth, rng)))
    return rig, frames


def lift_frame(lifter, rig, obs):
    """Every camera's rows lifted: (C, P, J, 3) camera frames, (C, P, J) scores; s per camera call."""
    C, P, J = obs.scores.shape
    lifted, scores = np.full((C, P, J, 3), np.nan), np.zeros((C, P, J))
    times = []
    for c, cam in enumerate(rig):
        rows = obs.person_ids[c] >= 0
        if not rows.any():
            continue
        t0 = time.perf_counter()
        lifted[c, rows], scores[c, rows] = lifter.lift(cam.K, obs.points2d[c, rows], obs.scores[c, rows])
        times.append(time.perf_counter() - t0)
    return lifted, scores, times


class Scores:
    """Per-class accumulators of missing joints, joint errors and false positives."""

    def __init__(self):
        self.missing = {c: [] for c in CLASSES}
        self.errors = {c: [] for c in CLASSES}
        self.lifted = {c: [] for c in CLASSES}   # per returned joint: True where views <= 1 (lifted or held)
        self.false_positives = 0
        self.frames = 0

    def add(self, points: np.ndarray, views: np.ndarray, truth: np.ndarray, cams_seen: np.ndarray,
            gate_m: float) -> None:
        P, J = truth.shape[:2]
        keep = np.isfinite(points).all(-1).any(-1)     # tracks with no joint left are not output people
        points, views = points[keep], views[keep]
        pred, pred_views = np.full((P, J, 3), np.nan), np.zeros((P, J), dtype=np.int64)
        pairs = match_people(points, truth, gate_m)
        for r, g in pairs:
            pred[g], pred_views[g] = points[r], views[r]
        self.false_positives += len(points) - len(pairs)
        self.frames += 1
        err = np.linalg.norm(pred - truth, axis=-1)                           # (P, J), NaN = missing
        for p in range(P):
            if cams_seen[p] == 0:
                continue
            c = CLASSES[min(int(cams_seen[p]), 3) - 1]
            got = np.isfinite(err[p])
            self.missing[c].append(~got)
            self.errors[c].append(err[p][got])
            self.lifted[c].append(pred_views[p][got] <= 1)

    def summary(self) -> dict:
        out = {}
        for name, keys in [(f"seen_by_{c}", [c]) for c in CLASSES] + [("overall", list(CLASSES))]:
            miss = [m for c in keys for m in self.missing[c]]
            errs = [e for c in keys for e in self.errors[c]]
            e = np.concatenate(errs) if errs else np.zeros(0)
            lifted = np.concatenate([m for c in keys for m in self.lifted[c]]) if errs else np.zeros(0, bool)

            def mean(x):
                return float(x.mean()) if x.size else None

            out[name] = {"person_frames": len(miss),
                         "missing_joint_fraction": float(np.mean(np.concatenate(miss))) if miss else None,
                         "mpjpe_m": mean(e),
                         "median_joint_error_m": float(np.median(e)) if e.size else None,
                         "mpjpe_triangulated_joints_m": mean(e[~lifted]),
                         "mpjpe_lifted_joints_m": mean(e[lifted])}
        out["false_positives_per_frame"] = self.false_positives / max(self.frames, 1)
        return out


def run(args) -> dict:
    methods = {"no_lifter": None, "placeholder": ApparentSizeLifter()}
    model = args.model or str(default_model_path())
    try:
        methods["learned"] = LearnedLifter(model, runtime=args.runtime, **({"providers": args.providers, "threads": 1}
                                                                           if args.runtime == "onnxruntime" else {}))
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"learned lifter unavailable ({exc}); its columns are null", file=sys.stderr)
        methods["learned"] = None
        learned_error = str(exc)
    else:
        learned_error = None
        if not args.no_ablation:
            methods["learned_scale_fit"] = methods["learned"]
    config = FusionConfig()
    scores = {m: Scores() for m in methods}
    lift_ms = {m: [] for m in methods}
    fuse_ms = {m: [] for m in methods}
    for seed in args.seeds:
        rig, frames = scene(args.frames, seed, args.people, args.focal, args.area)
        for method, lifter in methods.items():
            if method == "learned" and lifter is None:
                continue
            cfg = dataclasses.replace(config, lifted_scale_fit=(method == "learned_scale_fit"))
            pipe = FusionPipeline(rig, "coco17", cfg)
            for k, (t, truth, obs) in enumerate(frames):
                lifted = lifted_scores = None
                if lifter is not None:
                    lifted, lifted_scores, times = lift_frame(lifter, rig, obs)
                    lift_ms[method] += times
                t0 = time.perf_counter()
                result = pipe.step(t, obs.points2d, obs.scores, lifted, lifted_scores, orientations=False)
                fuse_ms[method].append(time.perf_counter() - t0)
                if k < args.skip:
                    continue
                cams_seen = np.array([(obs.person_ids == p).any(1).sum() for p in range(len(truth))])
                points, _, _, views = result.as_arrays()
                scores[method].add(points, views, truth, cams_seen, args.gate_m)

    doc = {"benchmark": "lifter_fusion",
           "scene": {"cameras": 3, "focal_px": args.focal, "image": [640, 480], "people": args.people,
                     "area_m": [args.area, args.area], "frames_per_seed": args.frames, "seeds": args.seeds,
                     "scored_from_frame": args.skip, "gate_m": args.gate_m},
           "learned_model": model, "learned_error": learned_error,
           "methods": {}}
    for method in methods:
        if method == "learned" and learned_error:
            doc["methods"][method] = None
            continue
        s = scores[method].summary()
        s["lift_ms_per_camera_frame"] = float(np.median(lift_ms[method]) * 1e3) if lift_ms[method] else 0.0
        s["fusion_ms_per_frame"] = float(np.median(fuse_ms[method]) * 1e3)
        doc["methods"][method] = s
    base = doc["methods"]["no_lifter"]
    doc["ratio_vs_no_lifter"] = {m: ratios(s, base) for m, s in doc["methods"].items()
                                 if m != "no_lifter" and s is not None}
    doc["seen_by_share"] = {k: base[k]["person_frames"] / max(base["overall"]["person_frames"], 1)
                            for k in base if k.startswith("seen_by_")}
    return doc


def ratios(s: dict, base: dict) -> dict:
    def r(a, b):
        return None if a is None or b in (None, 0) else a / b

    return {k: {"missing_joint_fraction": r(s[k]["missing_joint_fraction"], base[k]["missing_joint_fraction"]),
                "mpjpe_m": r(s[k]["mpjpe_m"], base[k]["mpjpe_m"])}
            for k in s if k.startswith("seen_by_") or k == "overall"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="learned lifter .onnx / .pt (default: the shipped models/lifter.onnx)")
    ap.add_argument("--runtime", default="onnxruntime", help="runtime of an .onnx lifter (onnxruntime | tensorrt)")
    ap.add_argument("--providers", default="cpu", help="onnxruntime providers (auto | cpu | cuda | ...)")
    ap.add_argument("--frames", type=int, default=450, help="frames per seed (30 fps)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--focal", type=float, default=1000.0, help="px, on 640 x 480 images")
    ap.add_argument("--area", type=float, default=5.0, help="side of the square area people walk in (m)")
    ap.add_argument("--skip", type=int, default=10, help="frames not scored at the start (track birth)")
    ap.add_argument("--gate-m", type=float, default=1.0,
                    help="mean joint distance to pair a fused person with the truth")
    ap.add_argument("--no-ablation", action="store_true", help="skip the translation-only alignment row")
    args = ap.parse_args(argv)
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
