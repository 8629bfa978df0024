"""`hpe-ros lifter-data`, `hpe-ros eval-lifter` and `hpe-ros train-lifter`: the 2D->3D lifter's commands.

    hpe-ros lifter-data --out FILE.npz [--activities squat,wave] [--noise-px 3] [--sequences 8] [--seed 100]
                                       synthetic single-view evaluation data (held-out motion types by default)
    hpe-ros train-lifter --out DIR [--method supervised|epipolar|cycle|ites] [--arch mlp|gcn] [--steps N]
                         [--init default|PATH.pt] [data: synthetic (default) | --sim-rig CALIB | --calib CALIB
                         --keypoints DIR ... or CAM=DIR ... | --calib CALIB --jsonl FILE | --data FILE.npz]
                         [--val FILE.npz] [--option KEY=VALUE ...]
    hpe-ros eval-lifter --data FILE.npz [--model PATH]   prints {"frames", "mpjpe_mm", "pmpjpe_mm", "nmpjpe_mm"}
"""
from __future__ import annotations

import json
from pathlib import Path

from hpe_ros.cli.common import (
    LAYOUT_CHOICES,
    add_progress_flag,
    camera_paths,
    image_size,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)


def _activities(text: str) -> tuple:
    from hpe_ros.sim.motion import MOTION_TYPES

    names = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = sorted(set(names) - set(MOTION_TYPES))
    if bad or not names:
        raise ValueError(f"--activities: unknown {bad or 'empty list'}; choose from {', '.join(MOTION_TYPES)}")
    return names


def load_samples(path: str, flag: str = "--data"):
    """The lifter's single-view .npz, or ValueError in one line naming `flag` and the file: a file that is not
    an .npz (empty, truncated, another format), one without the arrays, or an unknown layout."""
    import zipfile

    from hpe_ros.lift.synthetic import load_npz

    try:
        return load_npz(path)
    except FileNotFoundError:
        raise ValueError(f"{flag} {path}: no such file") from None
    except (EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{flag} {path}: not a readable .npz file ({e or type(e).__name__})") from None
    except KeyError as e:  # an unknown layout name (get_layout)
        raise ValueError(f"{flag} {path}: {e.args[0] if e.args else e}") from None


def load_lifter(model: str, layout: str, runtime: str):
    """LearnedLifter(model, layout, runtime), or ValueError in one line for a model file its runtime cannot
    load (empty, truncated, not a network: ONNX protobuf and torch pickle errors come in many types)."""
    from hpe_ros.lift.runtime import LearnedLifter

    try:
        return LearnedLifter(model, layout=layout, runtime=runtime)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as e:  # the model loaders' own error types: one line, not a traceback
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"--model {model}: cannot load this lifter ({text})") from None


def _check_checkpoint(path: str) -> None:
    """ValueError in one line when --init is not a lifter checkpoint torch can load (before any training)."""
    from hpe_ros.lift.models import load_lifter

    if not Path(path).is_file():
        raise ValueError(f"--init {path}: no such checkpoint file")
    try:
        load_lifter(path)
    except Exception as e:  # torch.load's own error types (pickle, zip, struct): one line, not a traceback
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"--init {path}: not a lifter checkpoint ({text})") from None


def eval_cameras(noise_px: float, size=(640, 480)):
    """The evaluation camera sampling: one image size, a fixed noise level, no missed joints."""
    from hpe_ros.lift.synthetic import CameraSampling

    return CameraSampling(sizes=(tuple(size),), noise_px=(noise_px, noise_px), miss_rate=(0.0, 0.0))


def make_eval_samples(activities, noise_px: float, sequences: int = 8, seconds: float = 20.0, seed: int = 100,
                      size=(640, 480)):
    """Held-out synthetic single-view samples (the README's evaluation sets)."""
    from hpe_ros.lift.synthetic import SyntheticSpec, make_samples

    spec = SyntheticSpec(n_random=0, n_sequences=sequences, seconds=seconds, activities=tuple(activities),
                         cameras=eval_cameras(noise_px, size))
    return make_samples(spec, seed=seed)


def _cmd_lifter_data(a) -> int:
    samples = make_eval_samples(_activities(a.activities), a.noise_px, a.sequences, a.seconds, a.seed, a.size)
    samples.save_npz(a.out)
    print(f"wrote {a.out}: {len(samples)} single-view samples ({a.activities}, {a.noise_px} px noise)", flush=True)
    return 0


def _cmd_eval_lifter(a) -> int:
    from hpe_ros.lift.metrics import summary
    from hpe_ros.skeleton import get_layout

    samples = load_samples(a.data)
    lifter = load_lifter(a.model, samples.layout, a.runtime)
    pred, _ = lifter.lift(samples.K, samples.keypoints2d, samples.scores)
    out = summary(pred, samples.joints3d, get_layout(samples.layout))
    out["model"] = str(lifter.path)
    print(json.dumps(out), flush=True)
    return 0


def parse_options(items) -> dict:
    """--option KEY=VALUE ... -> {key: value}, each value read as JSON where it parses (1, 0.5, true), else text."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _recording_from_args(a):
    """A multi-view recording from --sim-rig, --calib/--keypoints or --calib/--jsonl, else None."""
    from hpe_ros.lift import recordings

    if a.jsonl:
        if a.sim_rig or a.keypoints:
            raise ValueError("--jsonl is one recording source: give it without --sim-rig / --keypoints")
        if not a.calib:
            raise ValueError("--jsonl needs --calib (the rig's calibration)")
        return recordings.load_recording_jsonl(a.calib, a.jsonl)

    if a.sim_rig:
        from hpe_ros.io.calibration import load_rig
        from hpe_ros.resources import resolve_path

        rig = load_rig(resolve_path(a.sim_rig))
        acts = list(_activities(a.activities)) if a.activities else None
        return recordings.simulate_recording(rig, seconds=a.seconds, fps=a.fps, n_people=a.people, seed=a.data_seed,
                                             activities=acts, noise_px=a.noise_px)
    if a.keypoints:
        if not a.calib:
            raise ValueError("--keypoints needs --calib (the rig's calibration)")
        folders = camera_paths(a.keypoints, "--keypoints")
        return recordings.load_recording(a.calib, folders, fps=a.fps, layout=a.layout)
    return None


def training_data(a, method: str):
    """(TrainData, description) for the method from the arguments."""
    from hpe_ros.lift.synthetic import SyntheticSpec, make_samples
    from hpe_ros.lift.train import prepare_data

    needs_3d = method in ("supervised", "epipolar")
    rec = _recording_from_args(a)
    if rec is not None:
        from hpe_ros.lift import recordings

        if method == "epipolar":
            samples, weight = recordings.epipolar_samples(rec)
            return prepare_data(samples, True, weight), f"{len(samples)} triangulated views of a recording"
        if method == "supervised":
            raise ValueError("supervised training needs ground-truth 3D: use synthetic data or --data with joints3d; "
                             "for a rig's recordings use --method epipolar")
        samples = recordings.views_2d(rec)
        return prepare_data(samples, False), f"{len(samples)} 2D views of a recording"
    if a.data:
        samples = load_samples(a.data)
        return prepare_data(samples, needs_3d), f"{len(samples)} samples from {a.data}"
    if method == "epipolar":
        raise ValueError("--method epipolar learns from a multi-view recording: give --sim-rig CALIB or "
                         "--calib CALIB --keypoints DIR ... (or CAM=DIR ...) or --calib CALIB --jsonl FILE")
    from hpe_ros.lift.synthetic import TRAIN_ACTIVITIES, CameraSampling

    acts = _activities(a.activities) if a.activities else TRAIN_ACTIVITIES
    spec = SyntheticSpec(n_random=a.random, n_sequences=a.sequences, activities=acts,
                         cameras=CameraSampling(noise_px=(0.0, a.noise_px)))
    samples = make_samples(spec, seed=a.data_seed)
    return prepare_data(samples, needs_3d), (f"{len(samples)} synthetic samples ({a.random} joint-limit poses, "
                                             f"{a.sequences} sequences of {', '.join(acts)})")


def _cmd_train_lifter(a) -> int:
    import torch

    from hpe_ros.lift.runtime import default_checkpoint_path
    from hpe_ros.lift.synthetic import HELD_OUT_ACTIVITIES
    from hpe_ros.lift.train import TrainConfig, train

    if a.threads:
        torch.set_num_threads(a.threads)
    init = str(default_checkpoint_path()) if a.init == "default" else a.init
    if init:
        _check_checkpoint(init)
    config = TrainConfig(method=a.method, arch=a.arch, width=a.width or (512 if a.arch == "mlp" else 96),
                         blocks=a.blocks or (2 if a.arch == "mlp" else 4), steps=a.steps, batch=a.batch, lr=a.lr,
                         seed=a.seed, init=init or "", device=a.device, checkpoint_every=a.checkpoint_every,
                         eval_every=a.eval_every, options=parse_options(a.option))
    data, what = training_data(a, a.method)
    val = (load_samples(a.val, "--val") if a.val
           else make_eval_samples(HELD_OUT_ACTIVITIES, 0.0, sequences=4, seconds=15.0))
    print(f"train-lifter: {a.method} / {config.arch} on {what}; {config.steps} steps; out {a.out}", flush=True)
    result = train(config, data, val, out_dir=a.out, progress=not a.no_progress)
    out = Path(a.out)
    print(json.dumps({"out": str(out), "checkpoint": str(out / "lifter.pt"), "onnx": str(out / "lifter.onnx"),
                      "loss_curve": str(out / "loss_curve.png"), "final_eval": result.final_eval}), flush=True)
    return 0


def _add_lifter_data(sub) -> None:
    d = sub.add_parser("lifter-data", help="write synthetic single-view evaluation data (.npz) for eval-lifter")
    d.add_argument("--out", required=True)
    d.add_argument("--activities", default="squat,wave", help="motion types (default: the held-out ones)")
    d.add_argument("--noise-px", type=non_negative_float, default=0.0, help="2D noise std (px)")
    d.add_argument("--sequences", type=positive_int, default=8)
    d.add_argument("--seconds", type=positive_float, default=20.0)
    d.add_argument("--size", type=image_size, default=(640, 480), help="image size WIDTHxHEIGHT")
    d.add_argument("--seed", type=non_negative_int, default=100)
    d.set_defaults(func=_cmd_lifter_data)


def _add_eval_lifter(sub) -> None:
    e = sub.add_parser("eval-lifter", help="MPJPE / P-MPJPE / N-MPJPE of a lifter on an .npz (JSON on stdout)")
    e.add_argument("--data", required=True, help=".npz with keypoints2d, [scores], K, joints3d, layout")
    e.add_argument("--model", default="default", help="lifter .onnx or .pt (default: models/lifter.onnx)")
    e.add_argument("--runtime", default="onnxruntime", help="runtime for .onnx models")
    e.set_defaults(func=_cmd_eval_lifter)


def _add_training_data(t) -> None:
    g = t.add_argument_group("data (default: synthetic)")
    g.add_argument("--random", type=non_negative_int, default=40000, help="synthetic: joint-limit poses")
    g.add_argument("--sequences", type=non_negative_int, default=32,
                   help="synthetic: motion sequences (30 s at 10 Hz each)")
    g.add_argument("--activities", default="",
                   help="synthetic / --sim-rig motion types (default: walk,turn,reach,stand)")
    g.add_argument("--noise-px", type=non_negative_float, default=4.0,
                   help="synthetic: 2D noise up to this std (px at 640 wide)")
    g.add_argument("--data-seed", type=non_negative_int, default=0)
    g.add_argument("--data", default="", help="single-view .npz (2D only unless it has joints3d)")
    g.add_argument("--sim-rig", default="", help="simulate a recording of this calibrated rig (multi-view)")
    g.add_argument("--seconds", type=positive_float, default=60.0, help="--sim-rig: recording length")
    g.add_argument("--people", type=positive_int, default=2, help="--sim-rig: people in the scene")
    g.add_argument("--fps", type=positive_float, default=10.0, help="recording frame rate")
    g.add_argument("--calib", default="", help="recorded rig: calibration file")
    g.add_argument("--keypoints", nargs="+", default=[], metavar="DIR|CAM=DIR",
                   help="recorded rig: one OpenPose folder per camera, in the calibration's order or CAM=DIR; "
                        "cameras' files are paired by the frame number in their names")
    g.add_argument("--jsonl", default="", metavar="FILE",
                   help="recorded rig: 2D keypoints as hpe_ros.pose2d.v1 JSON lines (with --calib; stamps and "
                        "layout from the file)")
    g.add_argument("--layout", default="coco17", choices=LAYOUT_CHOICES, help="layout of the --keypoints files")


def _add_train_lifter(sub) -> None:
    t = sub.add_parser("train-lifter", help="train or fine-tune the 2D->3D lifter (progress, checkpoints, loss curve)")
    t.add_argument("--out", required=True, help="folder for checkpoint.pt, lifter.pt, lifter.onnx, loss_curve.png")
    t.add_argument("--method", default="supervised", choices=["supervised", "epipolar", "cycle", "ites"])
    t.add_argument("--arch", default="mlp", choices=["mlp", "gcn"])  # = models.ARCHITECTURES (no torch import here)
    t.add_argument("--width", type=non_negative_int, default=0, help="hidden width (default 512 mlp / 96 gcn)")
    t.add_argument("--blocks", type=non_negative_int, default=0,
                   help="residual blocks / graph layers (default 2 mlp / 4 gcn)")
    t.add_argument("--steps", type=positive_int, default=3000)
    t.add_argument("--batch", type=positive_int, default=256)
    t.add_argument("--lr", type=positive_float, default=1e-3)
    t.add_argument("--seed", type=non_negative_int, default=0)
    t.add_argument("--init", default="", help="start from a checkpoint: 'default' (models/lifter.pt) or a .pt path")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda")
    t.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0 = torch's default)")
    t.add_argument("--checkpoint-every", type=positive_int, default=500)
    t.add_argument("--eval-every", type=positive_int, default=500)
    t.add_argument("--val", default="", help="validation .npz (default: synthetic held-out squat/wave, clean)")
    t.add_argument("--option", action="append", metavar="KEY=VALUE", help="method option (repeatable)")
    add_progress_flag(t)
    _add_training_data(t)
    t.set_defaults(func=_cmd_train_lifter)


def add_parsers(sub) -> None:
    _add_lifter_data(sub)
    _add_eval_lifter(sub)
    _add_train_lifter(sub)
