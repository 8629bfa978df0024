"""Calibration from people: how close `calibrate_from_people` gets to the true rig, and how fast.

    .venv/bin/python benchmarks/bench_calibration.py [--errors clean realistic] [--cameras 4 6 8] [--people 1 2]
                                                     [--fps 10] [--markdown]

Synthetic input (hpe_ros.sim): MotionScript with people walking (activities=["walk"]) for ``--seconds``
(20) seen at ``--fps`` (10), rows shuffled per camera, so identities across cameras are unknown to the
calibration. Two error modes (``--errors``, both by default):

* clean: default_rig(C) (640 x 480, f = 500 px, cameras on a 4 m circle, 2.5 m up), observe with 2 px
  noise, 5 % gross outliers (jumps and left/right swaps), 3 % misses and occlusion;
* realistic: the same circle with the Pose2Sim demo cameras' portrait HD sensor (1080 x 1920,
  f = 1680 px), observe(errors="realistic") (hpe_ros.sim.detector_errors: per-joint noise after COCO's
  OKS sigmas, joint-definition offsets, swaps, truncation, false people, missed frames).

The intrinsics are the true ones; R, t are found from the people alone, with ``person_height`` = the
simulated people's mean height, and default options (thresholds estimated from the data).

Per case (one JSON row): per camera rotation error (deg) and centre error (mm) after a similarity
alignment to the truth (``hpe_ros.calibration.compare``), the scale error (%) of the metric scale,
per camera reprojection RMS (px) of the bundle adjustment, MPJPE (mm) of hpe_ros triangulation of
held-out frames (between the calibration frames, known identities) with the true rig and with the
estimated rig expressed in the truth frame, their ratio, and the runtime (s). ``targets_met`` checks
the bar of both modes: every camera within 0.5 deg and 20 mm, MPJPE ratio <= 1.10, |scale error| < 2 %.
``estimated_noise_px`` is the detection noise the calibration measured and scaled its gates with.
Everything runs on one thread (BLAS), as the other benchmarks do.
"""
from __future__ import annotations

import os

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from hpe_ros.calibration.compare import compare_rigs  # noqa: E402
from hpe_ros.calibration.from_people import calibrate_from_people  # noqa: E402
from hpe_ros.fusion import triangulate  # noqa: E402
from hpe_ros.sim import MotionScript, default_rig, observe  # noqa: E402

NOISE_PX = 2.0
OUTLIERS = 0.05


def scene(C: int, people: int, seconds: float, fps: float, seed: int, errors: str = "clean"):
    """(true rig, motion script, points (C, F, P, 17, 2) px, scores (C, F, P, 17)) of people walking."""
    rig = make_rig(C, errors)
    script = MotionScript(n_people=people, seed=seed, activities=["walk"])
    rng = np.random.default_rng(seed)
    times = np.arange(0.0, seconds, 1.0 / fps)
    points = np.full((C, len(times), people, 17, 2), np.nan)
    scores = np.zeros((C, len(times), people, 17))
    for k, t in enumerate(times):
        obs = observe(rig, script.pose(t), rng, **_noise(errors))
        if obs.num_rows > points.shape[2]:  # false people: widen the row axis
            grow = obs.num_rows - points.shape[2]
            points = np.concatenate([points, np.full(points.shape[:2] + (grow, 17, 2), np.nan)], axis=2)
            scores = np.concatenate([scores, np.zeros(scores.shape[:2] + (grow, 17))], axis=2)
        points[:, k, : obs.num_rows], scores[:, k, : obs.num_rows] = obs.points2d, obs.scores
    return rig, script, points, scores


def make_rig(C: int, errors: str):
    """The clean mode's rig is default_rig(C) (640 x 480, f = 500 px); the realistic mode's has the
    Pose2Sim demo cameras' portrait HD sensor and focal length, where fixed pixel thresholds fail."""
    return default_rig(C) if errors == "clean" else default_rig(C, size=(1080, 1920), focal=1680.0)


def _noise(errors: str) -> dict:
    """observe()'s error settings of a mode: "clean" (NOISE_PX Gaussian, OUTLIERS gross) or "realistic"."""
    return {"errors": "realistic"} if errors == "realistic" else {"noise_px": NOISE_PX, "outlier_rate": OUTLIERS}


def held_out_mpjpe(truth, aligned, script, seconds: float, frames: int, seed: int, errors: str
                   ) -> tuple[float, float]:
    rng = np.random.default_rng(seed + 1000)
    C = len(truth)
    e_true, e_est = [], []
    for t in np.linspace(0.05, seconds - 0.05, frames):
        joints = script.pose(t)
        pts, sc = observe(truth, joints, rng, **_noise(errors)).by_person(len(joints))
        for rig, out in ((truth, e_true), (aligned, e_est)):
            X = triangulate(rig, pts.reshape(C, -1, 2), sc.reshape(C, -1)).points.reshape(joints.shape)
            out.append(np.linalg.norm(X - joints, axis=-1).ravel())
    a, b = np.concatenate(e_true), np.concatenate(e_est)
    both = np.isfinite(a) & np.isfinite(b)
    return float(a[both].mean() * 1e3), float(b[both].mean() * 1e3)


def run_case(C: int, people: int, seconds: float, fps: float, held_out: int, seed: int, errors: str) -> dict:
    truth, script, points, scores = scene(C, people, seconds, fps, seed, errors)
    t0 = time.perf_counter()
    estimated, report = calibrate_from_people(make_rig(C, errors), points, scores,
                                              person_height=float(script.heights.mean()), progress=False, seed=seed)
    runtime = time.perf_counter() - t0
    cmp = compare_rigs(estimated, truth)
    mpjpe_true, mpjpe_est = held_out_mpjpe(truth, cmp["aligned"], script, seconds, held_out, seed, errors)
    rms = [report["per_camera"][n]["reprojection_rms_px"] for n in truth.names]
    row = {
        "errors": errors, "cameras": C, "people": people,
        **({"noise_px": NOISE_PX, "outlier_rate": OUTLIERS} if errors == "clean" else {}),
        "seconds": seconds, "fps": fps, "frames": int(points.shape[1]),
        "rotation_error_deg": [round(float(v), 4) for v in cmp["rotation_error_deg"]],
        "centre_error_mm": [round(float(v), 2) for v in cmp["centre_error_mm"]],
        "max_rotation_error_deg": round(cmp["max_rotation_error_deg"], 4),
        "max_centre_error_mm": round(cmp["max_centre_error_mm"], 2),
        "scale_error_pct": round(cmp["scale_error_pct"], 3),
        "reprojection_rms_px": rms,
        "mpjpe_true_rig_mm": round(mpjpe_true, 2), "mpjpe_estimated_rig_mm": round(mpjpe_est, 2),
        "mpjpe_ratio": round(mpjpe_est / mpjpe_true, 4),
        "person_tracks": report["people"]["tracks"], "people_found": len(report["people"]["distinct"]),
        "floor_method": report["floor"]["method"], "estimated_noise_px": report["noise_px"],
        "runtime_s": round(runtime, 2), "timings_s": report["timings_s"],
    }
    row["targets_met"] = bool(row["max_rotation_error_deg"] < 0.5 and row["max_centre_error_mm"] < 20.0
                              and row["mpjpe_ratio"] <= 1.10 and abs(row["scale_error_pct"]) < 2.0)
    return row


def markdown(doc) -> str:
    lines = ["| errors | cams | people | max rot err deg | max centre err mm | scale err % | reproj RMS px (max) | "
             "MPJPE mm true / est rig | ratio | runtime s | targets |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["cases"]:
        lines.append(f"| {r['errors']} | {r['cameras']} | {r['people']} | {r['max_rotation_error_deg']:.3f} | "
                     f"{r['max_centre_error_mm']:.1f} | {r['scale_error_pct']:+.2f} | "
                     f"{max(v for v in r['reprojection_rms_px'] if v is not None):.2f} | "
                     f"{r['mpjpe_true_rig_mm']:.1f} / {r['mpjpe_estimated_rig_mm']:.1f} | {r['mpjpe_ratio']:.3f} | "
                     f"{r['runtime_s']:.1f} | {'met' if r['targets_met'] else 'MISSED'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--people", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=10.0, help="frames per second given to the calibration")
    ap.add_argument("--held-out", type=int, default=60, help="frames triangulated for the MPJPE comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--errors", nargs="+", choices=["clean", "realistic"], default=["clean", "realistic"],
                    help="detection errors: clean (2 px Gaussian, 5 %% outliers) and/or realistic "
                         "(hpe_ros.sim.detector_errors)")
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table to stderr")
    a = ap.parse_args()
    t_start = time.perf_counter()
    cases = [run_case(C, P, a.seconds, a.fps, a.held_out, a.seed, e) for e in a.errors for C in a.cameras
             for P in a.people]
    doc = {"benchmark": "calibration from people walking (hpe_ros.calibration.from_people)",
           "numpy": np.__version__, "python": sys.version.split()[0],
           "notes": ["errors after a similarity alignment of the estimated rig to the truth (scale reported apart)",
                     "person_height = the simulated people's mean height; intrinsics known",
                     "MPJPE: hpe_ros.fusion.triangulate on held-out frames, known identities, same detections "
                     "for both rigs", "single-threaded BLAS"],
           "cases": cases, "all_targets_met": all(c["targets_met"] for c in cases),
           "wall_s": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(doc, indent=1))
    if a.markdown:
        print(markdown(doc), file=sys.stderr)


if __name__ == "__main__":
    main()
