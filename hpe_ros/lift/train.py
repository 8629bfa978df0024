"""Training loop for the lifters, readable top to bottom (after nanoGPT / VideoPose3D).

A `TrainConfig` says what to train (architecture, method, steps, seed, where to start from); `TrainData`
holds the normalised inputs and, when there are any, 3D targets (ground truth from the synthetic rig, or
pseudo-labels triangulated by a real rig for EpipolarPose); a method (hpe_ros.lift.methods) turns a batch
into named losses. `train` is the loop; each of its steps is one function here, in the loop's order:

1. data: `prepare_data` (once, by the caller), then per step `next_batch` (`BatchSampler` + `mirror_half`);
2. model and optimiser: `start_run` (`build_model`, the method, AdamW, seeded random streams);
3. one step: `train_step` (the method's own updates, then the lifter's, at `learning_rate`);
4. validation: `validate` every `eval_every` steps (MPJPE / N-MPJPE / P-MPJPE on held-out samples);
5. checkpoint: `save_checkpoint` every `checkpoint_every` steps, `resume_from` one of the same config;
6. outputs: `write_outputs`: the lifter (.pt, .onnx), history.json and loss_curve.png, each written atomically.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hpe_ros.runtime.base import INSTALL_HINTS

try:
    import torch
except ImportError as exc:  # torch is an optional extra of the package; training cannot do without it
    raise ImportError(f"training the lifter needs torch ({exc}); {INSTALL_HINTS['torch']}") from exc

from hpe_ros.io.atomic import atomic_path, write_text_atomic
from hpe_ros.lift.methods import Method, make_method
from hpe_ros.lift.metrics import summary
from hpe_ros.lift.models import LifterConfig, build_lifter, export_lifter_onnx, load_lifter, save_lifter
from hpe_ros.lift.normalize import mirror_index, mirror_input, mirror_shape, normalise, targets_from_3d
from hpe_ros.lift.runtime import lift_batch
from hpe_ros.lift.synthetic import LiftSamples
from hpe_ros.skeleton import Layout, get_layout

LOG_EVERY = 50       # steps between smoothed-loss entries in the history
CLIP_NORM = 5.0      # gradient norm clip of the lifter (and method) parameters


@dataclass
class TrainConfig:
    """What to train and how. Build it from a mapping with `hpe_ros.checks.config_from_mapping(TrainConfig, d)`."""

    method: str = "supervised"      # see hpe_ros.lift.methods.METHODS
    arch: str = "mlp"
    width: int = 512
    blocks: int = 2
    dropout: float = 0.1
    residual_xy: bool = True
    steps: int = 3000
    batch: int = 256
    frames_per_person: int = 4      # batches hold groups of frames of one person (bone-length constancy)
    lr: float = 1e-3
    lr_final: float = 1e-5          # cosine decay to this
    weight_decay: float = 1e-4
    seed: int = 0
    init: str = ""                  # checkpoint to fine-tune from ("" = fresh weights)
    device: str = "auto"
    freeze_norm: bool | None = None  # BatchNorm statistics + dropout fixed (None: when fine-tuning from init)
    mirror_augment: bool = True     # mirror half of every batch (an exact symmetry of the camera): free data
    checkpoint_every: int = 500
    eval_every: int = 250
    layout: str = "coco17"
    options: dict = field(default_factory=dict)   # the method's options (its Options dataclass checks them)

    def lifter_config(self) -> LifterConfig:
        return LifterConfig(self.arch, self.layout, self.width, self.blocks, self.dropout, self.residual_xy)


# --- 1. data ------------------------------------------------------------------------------------------------


@dataclass
class TrainData:
    """Tensors for training. net_input (N, J + 1, 3); spread (N,) the 2D spread s (normalize.py); shape
    (N, J, 3) and log_scale (N,) targets with target_weight (N, J) (0 where no target: 2D-only data has all
    zeros); person (N,) sequence / person id, frame (N,)."""

    net_input: torch.Tensor
    spread: torch.Tensor
    shape: torch.Tensor
    log_scale: torch.Tensor
    target_weight: torch.Tensor
    person: np.ndarray
    frame: np.ndarray

    def __len__(self) -> int:
        return len(self.net_input)

    @property
    def has_targets(self) -> bool:
        return bool((self.target_weight > 0).any())

    def take(self, idx) -> dict:
        idx_t = torch.as_tensor(idx)
        return {"net_input": self.net_input[idx_t], "spread": self.spread[idx_t], "shape": self.shape[idx_t],
                "log_scale": self.log_scale[idx_t], "target_weight": self.target_weight[idx_t],
                "person": torch.as_tensor(self.person[idx])}


def prepare_data(samples: LiftSamples, with_targets: bool = True, target_weight: np.ndarray | None = None) -> TrainData:
    """LiftSamples -> TrainData (drops samples too incomplete to lift). target_weight (N, J) overrides the
    per-joint weight of the 3D targets (EpipolarPose: how well each joint was triangulated)."""
    layout = get_layout(samples.layout)
    norm = normalise(samples.keypoints2d, samples.scores, samples.K, layout)
    ok = norm.ok
    if with_targets:
        Q, lm = targets_from_3d(samples.joints3d, norm, layout)
        w = np.isfinite(Q).all(-1) & np.isfinite(lm)[:, None]
        if target_weight is not None:
            w = w * np.nan_to_num(np.asarray(target_weight, dtype=np.float64))
        ok &= np.isfinite(lm)
    else:
        Q = np.zeros(samples.keypoints2d.shape[:2] + (3,), np.float32)
        lm = np.zeros(len(samples), np.float32)
        w = np.zeros(samples.keypoints2d.shape[:2])
    Q, lm = np.nan_to_num(Q), np.nan_to_num(lm)

    def kept(a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a)[ok], dtype=torch.float32)

    return TrainData(kept(norm.net_input), kept(norm.spread), kept(Q), kept(lm), kept(w),
                     np.asarray(samples.person)[ok], np.asarray(samples.frame)[ok])


class BatchSampler:
    """Random batches made of groups of `k` frames of one person (single frames where a person has one)."""

    def __init__(self, person: np.ndarray, batch: int, k: int, rng: np.random.Generator):
        self.rng, self.batch, self.k = rng, batch, max(1, k)
        order = np.argsort(person, kind="stable")
        _, starts, counts = np.unique(person[order], return_index=True, return_counts=True)
        self.order, self.starts, self.counts = order, starts, counts

    def __call__(self) -> np.ndarray:
        groups = self.rng.integers(0, len(self.starts), self.batch // self.k + 1)
        offs = (self.rng.random((len(groups), self.k)) * self.counts[groups, None]).astype(np.int64)
        idx = self.order[self.starts[groups, None] + offs].reshape(-1)
        return idx[:self.batch]


def mirror_half(batch: dict, mirror: torch.Tensor, generator: torch.Generator) -> dict:
    """Mirror a random half of a batch's samples: inputs, target shapes and per-joint target weights."""
    flip = torch.rand(len(batch["net_input"]), generator=generator) < 0.5
    if not flip.any():
        return batch
    out = dict(batch)
    out["net_input"] = batch["net_input"].clone()
    out["net_input"][flip] = mirror_input(batch["net_input"][flip], mirror)
    out["shape"] = batch["shape"].clone()
    out["shape"][flip] = mirror_shape(batch["shape"][flip], mirror)
    out["target_weight"] = batch["target_weight"].clone()
    out["target_weight"][flip] = batch["target_weight"][flip][:, mirror]
    return out


def next_batch(data: TrainData, sampler: BatchSampler, mirror: torch.Tensor | None, flip_gen: torch.Generator,
               device) -> dict:
    """The next training batch on `device`; with `mirror` (the layout's mirror index) half of it mirrored."""
    batch = data.take(sampler())
    if mirror is not None:
        batch = mirror_half(batch, mirror, flip_gen)
    return {k: v.to(device) for k, v in batch.items()}


# --- 2. model and optimiser -----------------------------------------------------------------------------------


@dataclass
class Run:
    """What a run carries from step to step; with the config, this is what a checkpoint holds."""

    model: torch.nn.Module
    method: Method
    opt: torch.optim.Optimizer
    params: list                    # the lifter's and the method's parameters, optimised and clipped together
    rng: np.random.Generator        # which samples make a batch
    flip_gen: torch.Generator       # which samples of a batch are mirrored
    history: list[dict] = field(default_factory=list)
    step: int = 0                   # steps done


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(config: TrainConfig, device) -> torch.nn.Module:
    """A fresh lifter for `config`, or the `config.init` checkpoint, whose architecture then replaces the
    config's (so a checkpoint of this run records what was really trained)."""
    if config.init:
        model, init_cfg, _ = load_lifter(config.init)
        config.arch, config.width, config.blocks = init_cfg.arch, init_cfg.width, init_cfg.blocks
        config.dropout, config.layout, config.residual_xy = init_cfg.dropout, init_cfg.layout, init_cfg.residual_xy
    else:
        model = build_lifter(config.lifter_config())
    return model.to(device)


def start_run(config: TrainConfig, data: TrainData, device) -> Run:
    """Seeded random streams, the lifter, the method (checked against `data`) and AdamW over both."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_model(config, device)
    method = make_method(config, get_layout(config.layout), device)
    if method.needs_targets and not data.has_targets:
        raise ValueError(f"method {config.method!r} needs 3D targets (ground truth or triangulations); "
                         "the data has 2D only")
    params = list(model.parameters()) + method.parameters(model)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return Run(model, method, opt, params, rng, torch.Generator().manual_seed(config.seed))


# --- 3. one step ----------------------------------------------------------------------------------------------


def learning_rate(config: TrainConfig, step: int) -> float:
    """Cosine decay from `lr` to `lr_final` over the run."""
    frac = step / max(config.steps, 1)
    return config.lr_final + 0.5 * (config.lr - config.lr_final) * (1 + math.cos(math.pi * frac))


def set_train_mode(model: torch.nn.Module, freeze_norm: bool) -> None:
    """Training mode, with BatchNorm statistics and dropout kept as trained when `freeze_norm`.

    Fine-tuning on a new rig's batches (and on rotated views) must not rewrite the normalisation statistics
    learned from the large synthetic set, and dropout noise drowns the small 2D residuals the 2D-only losses
    work with.
    """
    model.train()
    if freeze_norm:
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Dropout)):
                m.eval()


def train_step(run: Run, batch: dict, step: int, lr: float, freeze_norm: bool) -> dict[str, float]:
    """One step on `batch`: the method's own updates (e.g. a discriminator), then the lifter's. Returns the
    method's named losses as floats."""
    set_train_mode(run.model, freeze_norm)
    for g in run.opt.param_groups:
        g["lr"] = lr
    for update in run.method.optimisers():
        update(run.model, batch, step)
    losses = run.method.losses(run.model, batch, step)
    run.opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(run.params, CLIP_NORM)
    run.opt.step()
    return {k: float(v.detach()) for k, v in losses.items()}


# --- 4. validation --------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, samples: LiftSamples, device=None) -> dict:
    """MPJPE / N-MPJPE / P-MPJPE (mm) of `model` on samples with ground truth."""
    layout = get_layout(samples.layout)
    pred = lift_batch(model, samples.keypoints2d, samples.scores, samples.K, layout, device=device)
    return summary(pred, samples.joints3d, layout)


def validate(run: Run, val: LiftSamples | None, device) -> None:
    """Append the validation errors (mm) after `run.step` steps to the history (nothing without `val`)."""
    if val is None:
        return
    run.model.eval()
    errors = evaluate(run.model, val, device)
    run.history.append({"step": run.step, **{f"val_{k}": v for k, v in errors.items() if k.endswith("_mm")}})


# --- 5. checkpoint --------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, config: TrainConfig, run: Run) -> None:
    """Everything `resume_from` needs to continue the run: model, optimiser, method state, history, RNGs."""
    with atomic_path(path) as tmp:
        torch.save({"config": asdict(config), "model": run.model.state_dict(), "opt": run.opt.state_dict(),
                    "method": run.method.state_dict(), "history": run.history, "step": run.step,
                    "rng": run.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "flip_rng": run.flip_gen.get_state()}, tmp)


def resume_from(path: Path, config: TrainConfig, run: Run, device) -> None:
    """Continue `run` from the checkpoint at `path` if the same config wrote it (else start over)."""
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("config") != asdict(config):
        return
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["opt"])
    run.method.load_state_dict(state["method"])
    run.history, run.step = state["history"], state["step"]
    run.rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    run.flip_gen.set_state(state["flip_rng"])


# --- 6. outputs -----------------------------------------------------------------------------------------------


def save_loss_curve(history: list[dict], path, title: str = "") -> None:
    """Loss terms (log scale) and validation P-MPJPE against step, as a PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "loss" in h]
    val = [h for h in history if "val_pmpjpe_mm" in h]
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(11 if val else 6, 4), squeeze=False)
    ax = axes[0, 0]
    keys = [k for k in train[0] if k.startswith("loss")] if train else []
    for k in keys:
        ax.plot([h["step"] for h in train], [max(h[k], 1e-8) for h in train], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(f"training losses {title}".strip())
    ax.legend(fontsize=7)
    if val:
        ax = axes[0, 1]
        for k in ("val_mpjpe_mm", "val_nmpjpe_mm", "val_pmpjpe_mm"):
            ax.plot([h["step"] for h in val], [h[k] for h in val], marker="o", label=k.replace("val_", ""))
        ax.set_xlabel("step")
        ax.set_ylabel("mm")
        ax.set_yscale("log")  # the untrained step-0 error would flatten everything after it
        ax.set_title("validation")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_outputs(out: Path, config: TrainConfig, run: Run, layout: Layout, meta: dict, device) -> None:
    """lifter.pt (with `meta`), lifter.onnx, history.json and loss_curve.png in `out`."""
    save_lifter(out / "lifter.pt", run.model.cpu(), config.lifter_config(), meta)
    export_lifter_onnx(run.model, out / "lifter.onnx", layout.num_joints)
    run.model.to(device)
    write_text_atomic(out / "history.json", json.dumps(run.history, indent=1))
    save_loss_curve(run.history, out / "loss_curve.png", f"({config.method}, {config.arch})")


# --- the loop -------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list
    out_dir: Path | None
    final_eval: dict | None


def _due(done: int, every: int, steps: int) -> bool:
    return done % every == 0 or done == steps


def train(config: TrainConfig, data: TrainData, val: LiftSamples | None = None, out_dir=None,
          progress: bool = True, resume: bool = True) -> TrainResult:
    """Train a lifter with `config.method` on `data`; evaluate on `val` (if given) every `eval_every` steps.

    out_dir: where checkpoint.pt (resumable: model, optimiser, method state, step, RNG), lifter.pt,
    lifter.onnx, history.json and loss_curve.png go (None: nothing written). With `resume`, an existing
    checkpoint.pt there of the same config continues where it stopped.
    """
    from tqdm import tqdm

    device = pick_device(config.device)
    run = start_run(config, data, device)
    layout = get_layout(config.layout)
    sampler = BatchSampler(data.person, config.batch, config.frames_per_person, run.rng)
    mirror = torch.as_tensor(mirror_index(layout)) if config.mirror_augment else None
    freeze_norm = bool(config.init) if config.freeze_norm is None else config.freeze_norm
    out = Path(out_dir) if out_dir is not None else None
    checkpoint = out / "checkpoint.pt" if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and checkpoint.exists():
            resume_from(checkpoint, config, run, device)

    t0 = time.time()
    if run.step == 0:
        validate(run, val, device)
    bar = tqdm(range(run.step, config.steps), desc=f"train-lifter {config.method}/{config.arch}",
               disable=not progress, initial=run.step, total=config.steps, unit="step")
    smoothed: dict[str, float] = {}
    for step in bar:
        batch = next_batch(data, sampler, mirror, run.flip_gen, device)
        losses = train_step(run, batch, step, learning_rate(config, step), freeze_norm)
        run.step = step + 1
        for k, v in losses.items():
            smoothed[k] = 0.9 * smoothed.get(k, v) + 0.1 * v
        if _due(run.step, LOG_EVERY, config.steps):
            run.history.append({"step": run.step, **{k: round(v, 6) for k, v in smoothed.items()}})
            bar.set_postfix(loss=f"{smoothed['loss']:.4f}")
        if _due(run.step, config.eval_every, config.steps):
            validate(run, val, device)
        if checkpoint is not None and _due(run.step, config.checkpoint_every, config.steps):
            save_checkpoint(checkpoint, config, run)
    bar.close()

    run.model.eval()
    final = next((h for h in reversed(run.history) if "val_pmpjpe_mm" in h), None)
    if out is not None:
        meta = {"train_config": asdict(config), "seconds": round(time.time() - t0, 1), "final_eval": final}
        write_outputs(out, config, run, layout, meta, device)
    return TrainResult(run.model, run.history, out, final)
