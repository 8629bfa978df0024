"""The lifter's figures for the README: held-out accuracy of the default weights, and what each
self-supervised method gains when the default weights are fine-tuned on a new rig's recordings.

    .venv/bin/python benchmarks/bench_lifter.py [--model models/lifter.pt] [--methods epipolar cycle ites]
                                                [--steps 1000] [--threads 2]

1. Held-out motion types: the default lifter on synthetic squat and wave sequences (motion types never
   used for its training), random cameras, 640 x 480, clean 2D and 3 px noise (`hpe-ros lifter-data`).
2. New rig: 3 cameras high up (3.8 m, 5 m out, f = 800 px, 1280 x 720: steeper than most training views),
   people doing all six activities. A 60 s recording (seed 0) is what the methods learn from — epipolar
   from the rig's own triangulations, cycle and ites from its 2D alone; a separate 30 s recording (seed 1)
   with ground truth scores the lifter per camera view, before and after. No ground truth is used for
   training. Baseline and fine-tuned runs use the same data; ratios < 1 are improvements.
Prints one JSON document (and a markdown table on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpe_ros.cli.lifter import make_eval_samples, parse_options  # noqa: E402
from hpe_ros.lift import recordings  # noqa: E402
from hpe_ros.lift.metrics import summary  # noqa: E402
from hpe_ros.lift.models import load_lifter  # noqa: E402
from hpe_ros.lift.runtime import default_checkpoint_path, lift_batch  # noqa: E402
from hpe_ros.lift.synthetic import HELD_OUT_ACTIVITIES  # noqa: E402
from hpe_ros.lift.train import TrainConfig, prepare_data, train  # noqa: E402
from hpe_ros.sim import default_rig  # noqa: E402
from hpe_ros.skeleton import get_layout  # noqa: E402

# Fine-tuning settings per method (lr, method options), chosen on a different seed of the new rig.
FINE_TUNE = {
    "epipolar": dict(lr=1e-3, options={}),
    "cycle": dict(lr=1e-4, options={"axis": 1, "w_scale_anchor": 1.0}),
    "ites": dict(lr=3e-4, options={"keep_weight": 1.0}),
}


def score(model, samples) -> dict:
    layout = get_layout(samples.layout)
    pred = lift_batch(model, samples.keypoints2d, samples.scores, samples.K, layout)
    return summary(pred, samples.joints3d, layout)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(default_checkpoint_path()), help="starting checkpoint (.pt)")
    ap.add_argument("--methods", nargs="+", default=list(FINE_TUNE), choices=list(FINE_TUNE))
    ap.add_argument("--steps", type=int, default=1000, help="fine-tuning steps per method")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the training recording")
    ap.add_argument("--out", default="", help="keep the fine-tuned models here (default: a temp folder)")
    ap.add_argument("--lr", type=float, default=0.0, help="override the fine-tuning lr of every method")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="extra method option for every method (experiments)")
    ap.add_argument("--skip-held-out", action="store_true", help="only the new-rig part")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, _, _ = load_lifter(a.model)
    out: dict = {"benchmark": "lifter", "model": a.model}

    held = {}
    for noise in (() if a.skip_held_out else (0.0, 3.0)):
        samples = make_eval_samples(HELD_OUT_ACTIVITIES, noise)
        held[f"noise_{noise:g}px"] = score(model, samples)
    out["held_out_motion_types"] = {"activities": list(HELD_OUT_ACTIVITIES), **held}

    rig = default_rig(3, radius=5.0, height=3.8, focal=800.0, size=(1280, 720))
    t = time.time()
    train_rec = recordings.simulate_recording(rig, seconds=a.seconds, fps=10.0, n_people=2, seed=0)
    test_rec = recordings.simulate_recording(rig, seconds=30.0, fps=10.0, n_people=2, seed=1)
    test = recordings.views_2d(test_rec, with_truth=True, progress=False)
    before = score(model, test)
    rows = {}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(a.out or tmp)
        for method in a.methods:
            setting = dict(FINE_TUNE[method])
            setting["options"] = {**setting["options"], **parse_options(a.option)}
            if a.lr:
                setting["lr"] = a.lr
            if method == "epipolar":
                samples, weight = recordings.epipolar_samples(train_rec, progress=False)
                data = prepare_data(samples, True, weight)
            else:
                data = prepare_data(recordings.views_2d(train_rec, progress=False), False)
            config = TrainConfig(method=method, init=a.model, steps=a.steps,
                                 lr=setting["lr"], lr_final=setting["lr"] / 10,
                                 eval_every=a.steps, checkpoint_every=a.steps, options=dict(setting["options"]))
            t0 = time.time()
            result = train(config, data, None, out_dir=base / method, progress=False, resume=False)
            after = score(result.model, test)
            rows[method] = {"train_samples": len(data), "seconds": round(time.time() - t0, 1), "after": after,
                            "pmpjpe_ratio": round(after["pmpjpe_mm"] / before["pmpjpe_mm"], 3),
                            "mpjpe_ratio": round(after["mpjpe_mm"] / before["mpjpe_mm"], 3)}
    out["new_rig"] = {"rig": "3 cameras, 3.8 m high, 5 m out, f 800 px, 1280x720", "train_recording_s": a.seconds,
                      "test_views": len(test), "before": before, "fine_tuned": rows, "steps": a.steps,
                      "seconds_total": round(time.time() - t, 1)}
    print(json.dumps(out, indent=1))
    lines = ["| | P-MPJPE mm | MPJPE mm | N-MPJPE mm |", "|---|---|---|---|"]
    for k, v in held.items():
        lines.append(f"| default, held-out squat/wave, {k.replace('noise_', '').replace('px', ' px')} noise | "
                     f"{v['pmpjpe_mm']} | {v['mpjpe_mm']} | {v['nmpjpe_mm']} |")
    lines.append(f"| new rig, default weights | {before['pmpjpe_mm']} | {before['mpjpe_mm']} | {before['nmpjpe_mm']} |")
    for m, r in rows.items():
        v = r["after"]
        lines.append(f"| new rig, + {m} fine-tuning ({a.steps} steps, {r['seconds']} s) | {v['pmpjpe_mm']} | "
                     f"{v['mpjpe_mm']} | {v['nmpjpe_mm']} |")
    print("\n".join(lines), file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
