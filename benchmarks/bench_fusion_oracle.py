"""Fusion vs an oracle inlier-only DLT on the same detections, clean and realistic detector errors.

    nice -n 10 .venv/bin/python benchmarks/bench_fusion_oracle.py [--noise clean realistic]
        [--sizes 4x2 8x6] [--frames 150] [--seeds 0 1] [--errors swap_rate=0.03 ...] [--json out.json]

Per case (cameras x people, `hpe_ros.sim`: default_rig(C), MotionScript in 4 m x 4 m, `observe` with
errors=None (clean: 2 px noise, 2 % gross outliers, misses, occlusion) or "realistic" (DetectorErrors:
size-dependent noise, definition offsets, swaps, truncation, occluders, false people, missed frames;
``--errors`` changes its fields)):

- ``ours``: FusionPipeline.step(orientations=False) with FusionConfig() defaults on the shuffled rows,
  what LiveFusion runs per synchronised frame without a lifter (association + robust triangulation +
  tracking, identities unknown); people matched to the truth per frame (mean joint distance <= 0.5 m);
- ``oracle``: `hpe_ros.sim.oracle.oracle_triangulate`: per true person and joint, a score-weighted DLT
  (the fusion's own solver, outlier rejection off) over exactly the views where the joint is right (not
  swapped or jumped, not guessed behind an occluder, not piled on the border, not a false person, rows
  assigned by the simulator's ids); ``oracle_unweighted`` the same with equal weights.

Errors are measured against the points the detector reports for each joint (true joints plus the
realistic model's per-person definition offsets, which no fusion can see) -- ``mpjpe_mm`` -- and against
the true joints -- ``mpjpe_true_mm``. Scored joints: those the oracle triangulates (>= 2 inlier views),
frames from SKIP on (track birth). ``ratio`` = ours / oracle on the joints both return (mean and median);
``pck50_pct`` = share of scored joints within 50 mm (not returned = miss); ``missing_pct`` = scored joints
ours did not return; ``extra_joints_pct`` = joints ours returns that the oracle cannot; ``false_people``
= returned people matching no true person, per frame; ``missed_people`` likewise. Prints one JSON document
and a short table (stderr). ``--fixed-thresholds`` runs the fusion as it was before its thresholds followed
the data (12 px outlier threshold, fixed One-Euro cutoffs, the tracker's speed gate only), for a before /
after comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from hpe_ros.fusion import FusionConfig, FusionPipeline, TrackerConfig
from hpe_ros.io.atomic import write_text_atomic
from hpe_ros.metrics import match_people
from hpe_ros.sim import DetectorErrors, MotionScript, default_rig, observe
from hpe_ros.sim.oracle import detector_joints, oracle_triangulate

FPS = 30.0
SKIP = 10          # frames before tracks are confirmed (birth_hits) are not scored
PCK_M = 0.05
# The fusion before its thresholds followed the data: a fixed 12 px outlier threshold, fixed One-Euro cutoffs,
# the tracker's speed gate only.
FIXED = FusionConfig(error_scale_k=0.0, tracker=TrackerConfig(one_euro_noise_ref=0.0, innovation_gate_k=0.0))


def run_case(C: int, people: int, noise: str, frames: int, seed: int, config: FusionConfig | None = None,
             model: DetectorErrors | None = None) -> dict:
    """One scene -> ours and the oracles scored on the same frames, summarised. model: the realistic
    error model (default DetectorErrors())."""
    errors = None if noise == "clean" else model or DetectorErrors()
    rig = default_rig(C)
    script = MotionScript(n_people=people, seed=seed, area=(4.0, 4.0))
    rng = np.random.default_rng(seed)
    pipe = FusionPipeline(rig, "coco17", config or FusionConfig())
    score = _Score(people)
    cpu = 0.0
    for k in range(frames):
        truth = script.pose(k / FPS)
        obs = observe(rig, truth, rng, errors=errors)
        t0 = time.process_time()
        points, _, _, _ = pipe.step(k / FPS, obs.points2d, obs.scores, orientations=False).as_arrays()
        cpu += time.process_time() - t0
        if k >= SKIP:
            score.add(points, truth, detector_joints(truth, errors), oracle_triangulate(rig, obs, truth, errors),
                      oracle_triangulate(rig, obs, truth, errors, weighted=False))
    row = {"cameras": C, "people": people, "noise": noise, "seed": seed, **score.summary()}
    row["ours"]["cpu_ms_per_frame"] = cpu / frames * 1e3
    row["ours"]["error_threshold_px"] = pipe.error_threshold_px
    return row


def _distance(X: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.linalg.norm(X - ref, axis=-1)


class _Score:
    """Per-frame errors and counts of ours and the oracles (see the module docstring for the metrics)."""

    def __init__(self, people: int):
        self.people = people
        self.errors: dict[str, list[np.ndarray]] = {k: [] for k in (
            "ours", "oracle", "oracle_unweighted", "ours_true", "oracle_true")}
        self.n = dict(frames=0, scored=0, pck=0, oracle_pck=0, missing=0, extra=0, false_people=0, missed_people=0)

    def add(self, points, truth, target, oracle, unweighted):
        """points (R, J, 3) ours; truth / target / oracle / unweighted (P, J, 3)."""
        ours = np.full_like(truth, np.nan)
        pairs = match_people(points, target)
        for r, g in pairs:
            ours[g] = points[r]
        scored, got = np.isfinite(oracle).all(-1), np.isfinite(ours).all(-1)
        both = scored & got
        e = self.errors
        e["ours"].append(_distance(ours, target)[both])
        e["oracle"].append(_distance(oracle, target)[both])
        e["oracle_unweighted"].append(_distance(unweighted, target)[both & np.isfinite(unweighted).all(-1)])
        e["ours_true"].append(_distance(ours, truth)[both])
        e["oracle_true"].append(_distance(oracle, truth)[both])
        n = self.n
        n["frames"] += 1
        n["scored"] += int(scored.sum())
        n["pck"] += int(np.sum(_distance(ours, target)[scored & got] < PCK_M))
        n["oracle_pck"] += int(np.sum(_distance(oracle, target)[scored] < PCK_M))
        n["missing"] += int((scored & ~got).sum())
        n["extra"] += int((got & ~scored).sum())
        n["false_people"] += len(points) - len(pairs)
        n["missed_people"] += self.people - len(pairs)

    def summary(self) -> dict:
        s = {k: _stats(np.concatenate(v) if v else np.zeros(0)) for k, v in self.errors.items()}
        n, scored, frames = self.n, max(self.n["scored"], 1), max(self.n["frames"], 1)
        return {
            "frames_scored": n["frames"],
            "ours": {"mpjpe_mm": s["ours"], "mpjpe_true_mm": s["ours_true"],
                     "pck50_pct": 100.0 * n["pck"] / scored, "missing_pct": 100.0 * n["missing"] / scored,
                     "extra_joints_pct": 100.0 * n["extra"] / scored,
                     "false_people_per_frame": n["false_people"] / frames,
                     "missed_people_per_frame": n["missed_people"] / frames},
            "oracle": {"mpjpe_mm": s["oracle"], "mpjpe_true_mm": s["oracle_true"],
                       "pck50_pct": 100.0 * n["oracle_pck"] / scored, "missing_pct": 0.0},
            "oracle_unweighted": {"mpjpe_mm": s["oracle_unweighted"]},
            "ratio": {m: s["ours"][m] / s["oracle"][m] for m in ("mean", "median")} if s["oracle"] else {},
        }


def _stats(e: np.ndarray) -> dict:
    return {"mean": float(e.mean() * 1e3), "median": float(np.median(e) * 1e3)} if e.size else {}


def table(rows: list[dict]) -> str:
    head = ("| noise | cams x people | seed | MPJPE mm ours / oracle (mean) | median | ratio mean / median | "
            "PCK@50 % ours / oracle | missing % | false people / frame |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        o, q = r["ours"], r["oracle"]
        lines.append(
            f"| {r['noise']} | {r['cameras']}x{r['people']} | {r['seed']} | {o['mpjpe_mm']['mean']:.1f} / "
            f"{q['mpjpe_mm']['mean']:.1f} | {o['mpjpe_mm']['median']:.1f} / {q['mpjpe_mm']['median']:.1f} | "
            f"{r['ratio']['mean']:.2f} / {r['ratio']['median']:.2f} | {o['pck50_pct']:.1f} / {q['pck50_pct']:.1f} | "
            f"{o['missing_pct']:.1f} | {o['false_people_per_frame']:.2f} |")
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    try:
        cams, people = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be CAMERASxPEOPLE (e.g. 8x6), got {text!r}") from None
    return cams, people


def parse_errors(ap: argparse.ArgumentParser, items: list[str]) -> dict[str, float]:
    """["swap_rate=0.03", ...] -> {"swap_rate": 0.03, ...} (integers stay integers), checked against
    DetectorErrors' fields."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name] = int(value) if value.lstrip("-").isdigit() else float(value)
            DetectorErrors(**out)
        except (TypeError, ValueError) as exc:
            ap.error(f"--errors {item}: {exc}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--noise", nargs="+", choices=("clean", "realistic"), default=["clean", "realistic"])
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=[(4, 2), (8, 6)])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--fixed-thresholds", action="store_true",
                    help="fusion with fixed thresholds (12 px outliers, fixed One-Euro cutoffs, speed gate only)")
    ap.add_argument("--errors", nargs="+", default=[], metavar="FIELD=VALUE",
                    help="DetectorErrors fields of the realistic mode, e.g. swap_rate=0.03 noise=0.15")
    ap.add_argument("--json", help="also write the JSON document here")
    a = ap.parse_args()
    config = FIXED if a.fixed_thresholds else FusionConfig()
    overrides = parse_errors(ap, a.errors)
    model = DetectorErrors(**overrides)
    rows = [run_case(C, P, noise, a.frames, seed, config, model)
            for noise in a.noise for C, P in a.sizes for seed in a.seeds]
    doc = {"benchmark": "fusion vs oracle inlier-only DLT", "frames": a.frames, "skip": SKIP,
           "realistic_errors": overrides,
           "thresholds": "fixed" if a.fixed_thresholds else "from the data",
           "target": "mpjpe_mm against the detector's joints (truth + definition offsets); "
                     "mpjpe_true_mm against the true joints", "rows": rows,
           "worst_ratio": {n: max(r["ratio"]["mean"] for r in rows if r["noise"] == n) for n in a.noise}}
    text = json.dumps(doc, indent=1)
    print(text)
    if a.json:
        write_text_atomic(a.json, text + "\n")
    print(table(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
