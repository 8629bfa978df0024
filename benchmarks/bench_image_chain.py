"""The image demo's chain offline and deterministic: coded-dot images -> 2D backend -> lifter -> live fusion.

    nice -n 10 .venv/bin/python benchmarks/bench_image_chain.py [--cameras 4] [--people 2] [--frames 300]
        [--seeds 0 1 2] [--rate 30] [--json out.json] [--no-progress]

What `hpe-ros demo --images` runs, without ROS or timing: per seed, `SimStream` (rig_sim_node's people,
SimConfig(num_people, seed, rate_hz)) on the demo's rig (the shipped 4-camera rig, else default_rig(C)),
every frame's images from `render_rig_images` (mono8, as the demo publishes them), the onnxruntime backend
camera_pose_node builds (`create_backend` with the demo's parameters: the coded-dot detector and pose network
exported to ONNX under a temporary folder, one thread, CPU), `keypoints_in_layout` to coco17, the default
lifter through `lift_views`, and `LiveFusion` (FusionConfig / LiveConfig defaults, as fusion_node) fed each
camera's lifted poses and then its 2D at its stamp, every frame complete. The fused skeletons are scored
against the truth with `hpe_ros.metrics.PoseScorer` from frame --skip on (track births).

The error is broken down by where it comes from:

- ``views``: camera-frames; ``merged_views``: those where the backend returned fewer people than the image
  shows (a true person with >= 5 joints in the image); ``mixed_detections``: 2D skeletons whose joints
  belong to different people (>= 2 confident joints nearer another person's same joint than the skeleton's
  own person, by > 10 px); ``false_detections``: 2D skeletons near nobody;
- ``frames_mixed``: scored frames with a mixed detection or a merged view in any camera;
  ``mpjpe_mm_clean_frames`` / ``mpjpe_mm_mixed_frames``: the fused error split by that;
- ``bad_person_frames``: matched people whose mean joint error exceeds 50 mm, and how many of them fall in
  mixed frames; ``share_of_error_in_bad_person_frames``: their share of the summed joint error;
- ``mixed_views_dropped``: 2D skeletons the fusion split off a person as mixing two (max_foreign_share).

Prints one JSON document (stdout) and a short table (stderr); progress on stderr.
"""
from __future__ import annotations

import os

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hpe_ros.detect2d import create_backend  # noqa: E402
from hpe_ros.detect2d.backends import keypoints_in_layout  # noqa: E402
from hpe_ros.fusion import FusionConfig  # noqa: E402
from hpe_ros.fusion.live import LiveConfig, LiveFusion  # noqa: E402
from hpe_ros.io.atomic import write_text_atomic  # noqa: E402
from hpe_ros.io.calibration import load_rig  # noqa: E402
from hpe_ros.lift.batch import lift_views  # noqa: E402
from hpe_ros.lift.factory import make_lifter  # noqa: E402
from hpe_ros.metrics import PoseScorer, match_people  # noqa: E402
from hpe_ros.resources import DEFAULT_RIG, resolve_path  # noqa: E402
from hpe_ros.sim import default_rig  # noqa: E402
from hpe_ros.sim.dot_detector import export_coded_dot_models  # noqa: E402
from hpe_ros.sim.rig_images import SimImageConfig, render_rig_images  # noqa: E402
from hpe_ros.sim.stream import SimConfig, SimStream  # noqa: E402

MIN_SCORE = 0.05                   # camera_pose_node's min_score
VISIBLE_JOINTS = 5                 # a true person with this many joints inside an image is "shown" there
MIX_PX = 10.0
BAD_PERSON_M = 0.05


def demo_rig(cameras: int):
    """The demo's rig: the shipped 4-camera calibration, else default_rig(cameras)."""
    return load_rig(resolve_path("", DEFAULT_RIG)) if cameras == 4 else default_rig(cameras)


def make_backend(folder: Path, people: int):
    """camera_pose_node's onnxruntime backend with the demo's parameters and freshly exported networks."""
    pose, detector = export_coded_dot_models(folder)
    return create_backend("onnxruntime", model=str(pose), detector=str(detector), providers="cpu", threads=1,
                          max_batch=8, topdown=dict(max_people=max(4, 2 * people), box_score_threshold=0.3))


def true_pixels(rig, cams, truth: np.ndarray) -> list[np.ndarray]:
    """Per camera (P, J, 2) px of the true joints in the image (NaN outside it or behind the camera)."""
    out = []
    for c in cams:
        cam = rig[int(c)]
        depth = cam.world_to_camera(truth)[..., 2]
        px = cam.project(truth)
        w, h = cam.size
        inside = (depth > 0.05) & (px[..., 0] >= 0) & (px[..., 0] < w) & (px[..., 1] >= 0) & (px[..., 1] < h)
        out.append(np.where(inside[..., None], px, np.nan))
    return out


def view_breakdown(points: np.ndarray, scores: np.ndarray, truth_px: np.ndarray) -> dict[str, int]:
    """One camera-frame: detections (P, J, 2), scores (P, J) against true pixels (G, J, 2) -> counts."""
    shown = int((np.isfinite(truth_px).all(-1).sum(-1) >= VISIBLE_JOINTS).sum())
    mixed = false = 0
    for p, s in zip(points, scores):
        ok = s >= MIN_SCORE
        d = np.linalg.norm(p[None] - truth_px, axis=-1)                       # (G, J) px
        d = np.where(ok[None] & np.isfinite(d), d, np.nan)
        counts = np.isfinite(d).sum(-1)
        if not counts.any():
            false += 1
            continue
        with np.errstate(all="ignore"):
            own = int(np.nanargmin(np.where(counts > 0, np.nanmedian(d, axis=-1), np.inf)))
            others = np.delete(d, own, axis=0)
            nearer = (others + MIX_PX < d[own][None]).any(0) if len(others) else np.zeros(d.shape[1], bool)
        if np.nanmedian(d[own]) > 50.0:
            false += 1
        elif int(nearer.sum()) >= 2:
            mixed += 1
    return {"shown": shown, "detected": len(points), "merged": int(len(points) < shown), "mixed": mixed,
            "false": false}


class _Breakdown:
    """Accumulates the per-frame attribution (see the module docstring)."""

    def __init__(self):
        self.counts = {"views": 0, "merged_views": 0, "mixed_detections": 0, "false_detections": 0,
                       "frames_mixed": 0, "bad_person_frames": 0, "bad_person_frames_in_mixed_frames": 0}
        self.err_clean: list[np.ndarray] = []
        self.err_mixed: list[np.ndarray] = []
        self.bad_error = 0.0
        self.all_error = 0.0

    def add(self, views: list[dict], pred: np.ndarray, gt: np.ndarray, scored: bool) -> None:
        c = self.counts
        for v in views:
            c["views"] += 1
            c["merged_views"] += v["merged"]
            c["mixed_detections"] += v["mixed"]
            c["false_detections"] += v["false"]
        if not scored:
            return
        mixed = any(v["mixed"] or v["merged"] for v in views)
        c["frames_mixed"] += int(mixed)
        for p, g in match_people(pred, gt):
            e = np.linalg.norm(pred[p] - gt[g], axis=-1)
            e = e[np.isfinite(e)]
            (self.err_mixed if mixed else self.err_clean).append(e)
            self.all_error += float(e.sum())
            if e.size and e.mean() > BAD_PERSON_M:
                c["bad_person_frames"] += 1
                c["bad_person_frames_in_mixed_frames"] += int(mixed)
                self.bad_error += float(e.sum())

    def summary(self) -> dict:
        mean = lambda parts: float(np.concatenate(parts).mean() * 1e3) if parts else float("nan")
        return {**self.counts, "mpjpe_mm_clean_frames": mean(self.err_clean),
                "mpjpe_mm_mixed_frames": mean(self.err_mixed),
                "share_of_error_in_bad_person_frames": self.bad_error / self.all_error if self.all_error else 0.0}


def run_seed(backend, lifter, cameras: int, people: int, frames: int, seed: int, rate: float, skip: int,
             progress, config: FusionConfig | None = None) -> dict:
    """One seed's stream through the chain, scored and broken down."""
    rig = demo_rig(cameras)
    stream = SimStream(rig, SimConfig(num_people=people, seed=seed, rate_hz=rate))
    image_config = SimImageConfig(output="images", image_encoding="mono8")
    live = LiveFusion(rig, "coco17", config, live_config=LiveConfig())
    backend.reset()
    scorer, breakdown = PoseScorer(), _Breakdown()
    for k in range(frames):
        frame = stream.render(k)
        images = render_rig_images(rig, stream.cameras, frame.truth, image_config)
        results = backend.infer([np.repeat(im[..., None], 3, axis=2) for im in images], rig.names)
        views2d = [keypoints_in_layout(p, s, backend.layout, "coco17", MIN_SCORE) for p, s in results]
        lifted = lift_views(lifter, [(rig[c].K, rig[c].undistort_pixels(p), s) for c, (p, s) in enumerate(views2d)])
        now = frame.stamp + 0.05
        for c, name in enumerate(rig.names):
            live.add_lifted(name, float(frame.stamps[c]), *lifted[c], now)
        outputs = []
        for c, name in enumerate(rig.names):
            live.add_2d(name, float(frame.stamps[c]), *views2d[c], now)
            outputs += live.finished()
        outputs += live.poll(now + 1.0)
        truth_px = true_pixels(rig, stream.cameras, frame.truth)
        breakdown_views = [view_breakdown(p, s, t) for (p, s), t in zip(views2d, truth_px)]
        pred = np.zeros((0, 17, 3))
        ids = np.zeros(0, dtype=np.int64)
        if outputs:
            pred, _, ids, _ = outputs[-1].result.as_arrays()
        if k >= skip:
            scorer.add(pred, ids, frame.truth)
        breakdown.add(breakdown_views, pred, frame.truth, k >= skip)
        progress.update(1)
    return {"seed": seed, **scorer.summary(), "breakdown": breakdown.summary(),
            "mixed_views_dropped": live.pipeline.mixed_views_dropped}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--skip", type=int, default=10, help="first frames not scored (track births)")
    ap.add_argument("--max-foreign-share", type=float, default=None,
                    help="FusionConfig.max_foreign_share (default: FusionConfig's; 1 = no mixed-view check)")
    ap.add_argument("--json", default="", help="also write the JSON document here")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    from tqdm import tqdm

    rows = []
    with tempfile.TemporaryDirectory() as tmp, \
            tqdm(total=a.frames * len(a.seeds), file=sys.stderr, disable=a.no_progress, unit="frame") as bar:
        backend = make_backend(Path(tmp), a.people)
        lifter = make_lifter("default", layout="coco17", runtime="onnxruntime", providers="cpu", threads=1)
        for seed in a.seeds:
            config = FusionConfig() if a.max_foreign_share is None else FusionConfig(
                max_foreign_share=a.max_foreign_share)
            rows.append(run_seed(backend, lifter, a.cameras, a.people, a.frames, seed, a.rate, a.skip, bar, config))
    mp = [r["mpjpe_mm"] for r in rows]
    doc = {"cameras": a.cameras, "people": a.people, "frames": a.frames, "rate_hz": a.rate, "skip": a.skip,
           "seeds": rows, "mpjpe_mm_mean_over_seeds": float(np.mean(mp)),
           "mpjpe_mm_range": [float(np.min(mp)), float(np.max(mp))]}
    text = json.dumps(doc, indent=2)
    print(text)
    if a.json:
        write_text_atomic(a.json, text + "\n")
    for r in rows:
        b = r["breakdown"]
        print(f"seed {r['seed']}: MPJPE {r['mpjpe_mm']:.1f} mm (clean frames {b['mpjpe_mm_clean_frames']:.1f}, mixed "
              f"{b['mpjpe_mm_mixed_frames']:.1f}), median {r['median_joint_error_mm']:.1f}, PCK50 "
              f"{r['pck50_pct']:.1f} %, merged views {b['merged_views']}/{b['views']}, mixed 2D "
              f"{b['mixed_detections']}, false 2D {b['false_detections']}, FP {r['false_positives']}, missed "
              f"{r['missed_people']}, id switches {r['id_switches']}, mixed views dropped {r['mixed_views_dropped']}",
              file=sys.stderr)
    return doc


if __name__ == "__main__":
    main()
