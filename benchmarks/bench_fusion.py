"""Fusion: hpe_ros vs aniposelib (CameraGroup.triangulate and .triangulate_ransac), side by side.

    make bench                                   # creates .venv-bench (aniposelib) and runs this
    .venv-bench/bin/python benchmarks/bench_fusion.py [--frames 60] [--ransac-frames 3] [--markdown]

Same synthetic input for every method (hpe_ros.sim: default_rig(C), MotionScript, observe with pixel
noise, misses, occlusion and gross outliers). Methods:

- ``hpe_triangulate``: hpe_ros.fusion.triangulate with known identities (rows unshuffled with the
  simulator's person_ids), the like-for-like comparison with aniposelib's triangulation;
- ``hpe_pipeline``: FusionPipeline.step(orientations=False) on the shuffled detections, i.e. association
  + triangulation + tracking with no identities given (ids from the tracker, people matched to the truth
  per frame); the first 10 frames (track birth) are not scored;
- ``anipose_triangulate``: CameraGroup.triangulate (plain DLT over every view that has the joint);
- ``anipose_ransac``: CameraGroup.triangulate_ransac, which tries every subset of cameras per joint
  (2^C) until one reprojects within 0.5 px: seconds per frame at 8 cameras, so it runs on a few frames
  (``--ransac-frames``, evenly spread over the scored frames) and is skipped above ``--ransac-max-cameras``.

aniposelib sees the same 2D points as hpe_ros, with joints below ``--min-score`` set to NaN (hpe_ros
gets the scores and the same threshold). Metrics per method: ``mpjpe_mm`` over the joints it returned,
``pck50_pct`` share of the observable joints (score >= min-score in >= 2 cameras) within 50 mm (a joint
not returned counts as a miss), ``returned_pct``, ``ms_per_frame`` (median). Ratios are hpe_ros /
aniposelib on the same frames (``*_ransac`` ratios on the ransac frames only). Everything runs on one
thread (BLAS, XLA, numba); time per frame excludes JAX's first-call compilation (one warm-up call).

Prints one JSON document: rows by camera count, a one-factor sweep (people, noise, outliers), the
pipeline's 8 -> 32 camera scaling, and the project's acceptance check (8 cameras, 2 px, 10 % outliers:
hpe_ros MPJPE <= 0.7 x ransac's, hpe_ros pipeline >= 50 x faster than ransac per frame). Without
aniposelib installed (e.g. run from .venv) the aniposelib columns are null and the JSON says so.
benchmarks/bench_fusion_oracle.py compares the pipeline with an oracle inlier-only DLT on clean and
realistic detector errors.
"""
from __future__ import annotations

import os

# One thread everywhere, set before numpy / jax / numba load: the comparison is per core.
for _k, _v in (("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
               ("NUMBA_NUM_THREADS", "1"),
               ("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")):
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from hpe_ros.camera import rotation_to_rvec  # noqa: E402
from hpe_ros.fusion import FusionConfig, FusionPipeline, triangulate  # noqa: E402
from hpe_ros.metrics import match_people  # noqa: E402
from hpe_ros.sim import MotionScript, default_rig, observe  # noqa: E402

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from aniposelib.cameras import Camera as AniposeCamera
        from aniposelib.cameras import CameraGroup
    import aniposelib
    ANIPOSE = getattr(aniposelib, "__version__", None) or "installed"
except ImportError as exc:  # run from .venv: hpe_ros columns only
    CameraGroup = None
    ANIPOSE = None
    _ANIPOSE_ERROR = str(exc)

FPS = 30.0
SKIP = 10  # pipeline frames before tracks are confirmed (birth_hits) are not scored


def camera_group(rig):
    """aniposelib CameraGroup of the same cameras: K, OpenCV distortion (8 coefficients, same order),
    Rodrigues rvec and tvec world -> camera (aniposelib's make_M: x_cam = R X + t, as hpe_ros)."""
    return CameraGroup([AniposeCamera(matrix=c.K, dist=c.dist, size=c.size, rvec=rotation_to_rvec(c.R),
                                      tvec=c.t, name=c.name) for c in rig])


def scene(C, people, frames, noise_px, outlier_rate, seed):
    rig = default_rig(C)
    script = MotionScript(n_people=people, seed=seed, area=(4.0, 4.0))
    rng = np.random.default_rng(seed)
    out = []
    for k in range(frames):
        truth = script.pose(k / FPS)
        out.append((k / FPS, truth, observe(rig, truth, rng, noise_px=noise_px, outlier_rate=outlier_rate)))
    return rig, out


def joint_errors(pred, truth):
    """pred (P, J, 3) in truth order (NaN = not returned) -> (P, J) m."""
    return np.linalg.norm(pred - truth, axis=-1)


def summarise(errors, observable, times, frames):
    """errors / observable: lists per frame of (P, J); times: per frame s; frames: indices to use."""
    frames = [k for k in frames if errors[k] is not None]
    if not frames:
        return None
    e = np.concatenate([errors[k].ravel() for k in frames])
    obs = np.concatenate([observable[k].ravel() for k in frames])
    got = np.isfinite(e)
    return {"frames": len(frames),
            "mpjpe_mm": float(np.mean(e[got]) * 1e3) if got.any() else None,
            "pck50_pct": float(np.mean(e[obs] < 0.05) * 100) if obs.any() else None,
            "returned_pct": float(np.mean(got[obs]) * 100) if obs.any() else None,
            "ms_per_frame": float(np.median([times[k] for k in frames]) * 1e3)}


def run_case(C, people, noise_px, outlier_rate, n_frames, ransac_frames, ransac_max_cameras, min_score, seed=0):
    rig, frames = scene(C, people, n_frames, noise_px, outlier_rate, seed)
    cfg = FusionConfig(min_score=min_score)
    pipe = FusionPipeline(rig, "coco17", cfg)
    cg = camera_group(rig) if CameraGroup is not None else None
    n = len(frames)
    methods = ("hpe_triangulate", "hpe_pipeline", "anipose_triangulate", "anipose_ransac")
    res = {m: ([None] * n, [None] * n) for m in methods}
    observable = [None] * n
    scored = list(range(min(SKIP, n - 1), n))
    ransac_at = sorted(set(np.linspace(scored[0], scored[-1], max(ransac_frames, 1)).round().astype(int).tolist()))
    if ransac_frames <= 0 or C > ransac_max_cameras or cg is None:
        ransac_at = []
    warm = False
    for k, (t, truth, obs) in enumerate(frames):
        P, J = truth.shape[:2]
        pts, sc = obs.by_person(P)                                   # known identities, truth order
        observable[k] = (sc >= min_score).sum(0) >= 2                # (P, J)
        flat_pts, flat_sc = pts.reshape(C, P * J, 2), sc.reshape(C, P * J)

        t0 = time.perf_counter()
        result = pipe.step(t, obs.points2d, obs.scores, orientations=False)
        dt = time.perf_counter() - t0
        if k >= SKIP:
            points, _, _, _ = result.as_arrays()
            pred = np.full((P, J, 3), np.nan)
            for r, g in match_people(points, truth):
                pred[g] = points[r]
            res["hpe_pipeline"][0][k] = joint_errors(pred, truth)
        res["hpe_pipeline"][1][k] = dt

        t0 = time.perf_counter()
        X = triangulate(rig, flat_pts, flat_sc, min_score=min_score).points
        res["hpe_triangulate"][1][k] = time.perf_counter() - t0
        res["hpe_triangulate"][0][k] = joint_errors(X.reshape(P, J, 3), truth)

        if cg is None:
            continue
        a_pts = np.where((flat_sc >= min_score)[..., None], flat_pts, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not warm:
                cg.triangulate(a_pts)                                # JAX compiles on the first call
                warm = True
            t0 = time.perf_counter()
            X = cg.triangulate(a_pts)
            res["anipose_triangulate"][1][k] = time.perf_counter() - t0
            res["anipose_triangulate"][0][k] = joint_errors(X.reshape(P, J, 3), truth)
            if k in ransac_at:
                t0 = time.perf_counter()
                X = cg.triangulate_ransac(a_pts)[0]
                res["anipose_ransac"][1][k] = time.perf_counter() - t0
                res["anipose_ransac"][0][k] = joint_errors(X.reshape(P, J, 3), truth)

    row = {"cameras": C, "people": people, "noise_px": noise_px, "outlier_rate": outlier_rate,
           "frames": n, "ransac_frames": len(ransac_at)}
    for m, (errs, times) in res.items():
        row[m] = summarise(errs, observable, times, scored)
    # Same-frame comparisons with ransac.
    if ransac_at:
        row["on_ransac_frames"] = {m: summarise(res[m][0], observable, res[m][1], ransac_at) for m in res}
    row["ratios"] = ratios(row)
    return row


def _ratio(a, b, key):
    if a is None or b is None or a.get(key) in (None, 0) or b.get(key) in (None, 0):
        return None
    return a[key] / b[key]


def ratios(row):
    """hpe_ros / aniposelib for mpjpe, pck50 and time (speed-up = 1 / time ratio)."""
    out = {}
    keys = ("mpjpe_mm", "pck50_pct", "ms_per_frame")
    for ours in ("hpe_triangulate", "hpe_pipeline"):
        base = row.get("anipose_triangulate")
        out[f"{ours}_vs_triangulate"] = {k: _ratio(row[ours], base, k) for k in keys}
        same = row.get("on_ransac_frames")
        if same:
            out[f"{ours}_vs_ransac"] = {k: _ratio(same[ours], same["anipose_ransac"], k) for k in keys}
    return out


def markdown(doc) -> str:
    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    lines = ["| cams | people | noise px | outliers | method | MPJPE mm | PCK@50 mm % | returned % | ms / frame | "
             "MPJPE ratio vs anipose | PCK ratio | speed-up vs anipose |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in doc["by_cameras"] + doc["sweep"]:
        head = f"| {row['cameras']} | {row['people']} | {row['noise_px']:g} | {row['outlier_rate'] * 100:.0f} % "
        for m, label in (("anipose_triangulate", "aniposelib triangulate"),
                         ("anipose_ransac", "aniposelib triangulate_ransac"),
                         ("hpe_triangulate", "hpe_ros triangulate"),
                         ("hpe_pipeline", "hpe_ros pipeline")):
            s = row.get(m)
            if s is None:
                if m == "anipose_ransac":
                    lines.append(head + f"| {label} | skipped (2^{row['cameras']} subsets / joint) | | | | | | |")
                continue
            extra = ""
            if m.startswith("hpe"):
                rt = row["ratios"].get(f"{m}_vs_triangulate", {})
                rr = row["ratios"].get(f"{m}_vs_ransac", {})
                fr = (lambda k: f"{f(rt.get(k), '.2f')} / {f(rr.get(k), '.2f') if rr else '–'}")
                sp = (lambda d: "–" if not d or not d.get("ms_per_frame") else
                      f"{1 / d['ms_per_frame']:{'.0f' if d['ms_per_frame'] < 0.1 else '.1f'}}×")
                extra = f"| {fr('mpjpe_mm')} | {fr('pck50_pct')} | {sp(rt)} / {sp(rr)} |"
            else:
                extra = "| | | |"
            n = f" ({s['frames']} frames)" if m == "anipose_ransac" else ""
            lines.append(head + f"| {label}{n} | {f(s['mpjpe_mm'], '.1f')} | {f(s['pck50_pct'], '.1f')} | "
                         f"{f(s['returned_pct'], '.1f')} | {f(s['ms_per_frame'], '.2f')} " + extra)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--noise", type=float, default=2.0)
    ap.add_argument("--outliers", type=float, default=0.1)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--ransac-frames", type=int, default=3, help="frames for triangulate_ransac (slow)")
    ap.add_argument("--ransac-max-cameras", type=int, default=8, help="skip ransac above this many cameras")
    ap.add_argument("--sweep-cameras", type=int, default=4, help="camera count of the one-factor sweep")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--min-score", type=float, default=0.1)
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table to stderr")
    a = ap.parse_args()
    t_start = time.perf_counter()

    kw = dict(n_frames=a.frames, ransac_frames=a.ransac_frames, ransac_max_cameras=a.ransac_max_cameras,
              min_score=a.min_score)
    by_cameras = [run_case(C, a.people, a.noise, a.outliers, **kw) for C in a.cameras]
    sweep = []
    if not a.no_sweep:
        base = dict(people=a.people, noise_px=a.noise, outlier_rate=a.outliers)
        for change in ({"people": 1}, {"people": 3}, {"noise_px": 1.0}, {"outlier_rate": 0.0}, {"outlier_rate": 0.2}):
            case = {**base, **change}
            sweep.append(run_case(a.sweep_cameras, case["people"], case["noise_px"], case["outlier_rate"], **kw))

    pipe_ms = {r["cameras"]: r["hpe_pipeline"]["ms_per_frame"] for r in by_cameras}
    scaling = None
    if 8 in pipe_ms and 32 in pipe_ms:
        scaling = {"pipeline_ms_per_frame": pipe_ms, "ratio_32_to_8": pipe_ms[32] / pipe_ms[8],
                   "linear_would_be": 4.0, "no_worse_than_linear": pipe_ms[32] / pipe_ms[8] <= 4.0}

    acceptance = None
    bar = [r for r in by_cameras if r["cameras"] == 8 and r["people"] == a.people]
    if bar and a.noise == 2.0 and a.outliers == 0.1 and bar[0].get("on_ransac_frames"):
        same = bar[0]["on_ransac_frames"]
        mp = _ratio(same["hpe_pipeline"], same["anipose_ransac"], "mpjpe_mm")
        mt = _ratio(same["hpe_triangulate"], same["anipose_ransac"], "mpjpe_mm")
        speed = same["anipose_ransac"]["ms_per_frame"] / bar[0]["hpe_pipeline"]["ms_per_frame"]
        acceptance = {"case": "8 cameras, 2 px noise, 10 % gross outliers",
                      "mpjpe_ratio_pipeline_to_ransac": mp, "mpjpe_ratio_triangulate_to_ransac": mt,
                      "pipeline_speedup_vs_ransac": speed,
                      "mpjpe_bar_0.7": mp is not None and mp <= 0.7 and mt is not None and mt <= 0.7,
                      "speed_bar_50x": speed >= 50}

    doc = {"benchmark": "fusion: hpe_ros vs aniposelib", "aniposelib": ANIPOSE,
           "numpy": np.__version__, "python": sys.version.split()[0],
           "notes": [f"aniposelib triangulate_ransac runs on {a.ransac_frames} frame(s) per case (evenly spread "
                     f"over the scored frames) and only up to {a.ransac_max_cameras} cameras: it enumerates 2^C "
                     "camera subsets per joint (about 13 s per frame at 8 cameras x 6 people); its ratios use the "
                     "same frames for every method",
                     f"pipeline frames 0-{SKIP - 1} (track birth) are not scored; every method is scored on the "
                     "same frames",
                     "single-threaded: OPENBLAS/OMP/MKL/NUMBA threads = 1, XLA without intra-op parallelism",
                     f"aniposelib gets NaN for joints with score < {a.min_score}; hpe_ros gets the scores "
                     "(same threshold)"]
           + ([] if ANIPOSE else
              [f"aniposelib not importable ({_ANIPOSE_ERROR}): run with .venv-bench (make bench)"]),
           "by_cameras": by_cameras, "sweep": sweep, "pipeline_scaling_8_to_32": scaling, "acceptance": acceptance,
           "wall_s": None}
    doc["wall_s"] = time.perf_counter() - t_start
    print(json.dumps(doc, indent=1))
    if a.markdown:
        print(markdown(doc), file=sys.stderr)


if __name__ == "__main__":
    main()
