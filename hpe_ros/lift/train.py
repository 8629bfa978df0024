"""Training loop for the lifters, readable top to bottom (after nanoGPT / VideoPose3D).

A `TrainConfig` says what to train (architecture, method, steps, seed, where to start from); `TrainData`
holds the normalised inputs and, when there are any, 3D targets (ground truth from the synthetic rig, or
pseudo-labels triangulated by a real rig for EpipolarPose); a method (hpe_ros.lift.methods) turns a batch
into named losses. `train` runs the steps with a progress bar, writes a resumable checkpoint every
`checkpoint_every` steps, and at the end the lifter (.pt, .onnx), history.json and loss_curve.png, each
written atomically into `out_dir`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from hpe_ros.lift.models import LifterConfig, build_lifter, export_lifter_onnx, load_lifter, save_lifter
from hpe_ros.lift.normalize import mirror_index, mirror_input, mirror_shape, normalise, targets_from_3d
from hpe_ros.lift.synthetic import LiftSamples
from hpe_ros.skeleton import get_layout


@dataclass
class TrainConfig:
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
    options: dict = field(default_factory=dict)   # method-specific weights (see each method)

    def lifter_config(self) -> LifterConfig:
        return LifterConfig(self.arch, self.layout, self.width, self.blocks, self.dropout, self.residual_xy)


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
        return {"net_input": self.net_input[idx_t], "spread": self.spread[idx_t], "shape": self.shape[idx_t], "log_scale": self.log_scale[idx_t],
                "target_weight": self.target_weight[idx_t], "person": torch.as_tensor(self.person[idx])}


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
    f32 = lambda a: torch.as_tensor(np.asarray(a)[ok], dtype=torch.float32)  # noqa: E731
    return TrainData(f32(norm.net_input), f32(norm.spread), f32(Q), f32(lm), f32(w), np.asarray(samples.person)[ok],
                     np.asarray(samples.frame)[ok])


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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model, samples: LiftSamples, device=None) -> dict:
    """MPJPE / N-MPJPE / P-MPJPE (mm) of `model` on samples with ground truth."""
    from hpe_ros.lift.metrics import summary
    from hpe_ros.lift.runtime import lift_batch

    layout = get_layout(samples.layout)
    pred = lift_batch(model, samples.keypoints2d, samples.scores, samples.K, layout, device=device)
    return summary(pred, samples.joints3d, layout)


def save_loss_curve(history: list[dict], path, title: str = "") -> None:
    """Loss terms (log scale) and validation P-MPJPE against step, as a PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hpe_ros.io.atomic import atomic_path

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


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list
    out_dir: Path | None
    final_eval: dict | None


def train(config: TrainConfig, data: TrainData, val: LiftSamples | None = None, out_dir=None,
          progress: bool = True, resume: bool = True) -> TrainResult:
    """Train a lifter with `config.method` on `data`; evaluate on `val` (if given) every `eval_every` steps.

    out_dir: where checkpoint.pt (resumable: model, optimiser, method state, step, RNG), lifter.pt,
    lifter.onnx, history.json and loss_curve.png go (None: nothing written). With resume, an existing
    checkpoint.pt there of the same config continues where it stopped.
    """
    from tqdm import tqdm

    from hpe_ros.lift.methods import make_method

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = pick_device(config.device)
    if config.init:
        model, init_cfg, _ = load_lifter(config.init)
        config.arch, config.width, config.blocks = init_cfg.arch, init_cfg.width, init_cfg.blocks
        config.dropout, config.layout, config.residual_xy = init_cfg.dropout, init_cfg.layout, init_cfg.residual_xy
    else:
        model = build_lifter(config.lifter_config())
    model.to(device)
    layout = get_layout(config.layout)
    method = make_method(config, layout, device)
    if method.needs_targets and not data.has_targets:
        raise ValueError(f"method {config.method!r} needs 3D targets (ground truth or triangulations); "
                         "the data has 2D only")
    params = list(model.parameters()) + method.parameters(model)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    extra_opts = method.optimisers()
    sampler = BatchSampler(data.person, config.batch, config.frames_per_person, rng)
    mirror = torch.as_tensor(mirror_index(layout))
    flip_gen = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    start = 0
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and ckpt_path.exists():
            state = torch.load(ckpt_path, map_location=device, weights_only=False)
            if state.get("config") == asdict(config):
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["opt"])
                method.load_state_dict(state["method"])
                history, start = state["history"], state["step"]
                rng.bit_generator.state = state["rng"]
                torch.set_rng_state(state["torch_rng"])
                flip_gen.set_state(state["flip_rng"])

    def lr_at(step):
        frac = step / max(config.steps, 1)
        return config.lr_final + 0.5 * (config.lr - config.lr_final) * (1 + math.cos(math.pi * frac))

    def log_eval(step):
        if val is None:
            return
        model.eval()
        res = evaluate(model, val, device)
        history.append({"step": step, **{f"val_{k}": v for k, v in res.items() if k.endswith("_mm")}})

    t0 = time.time()
    if start == 0:
        log_eval(0)
    bar = tqdm(range(start, config.steps), desc=f"train-lifter {config.method}/{config.arch}", disable=not progress,
               initial=start, total=config.steps, unit="step")
    running: dict[str, float] = {}
    # Fine-tuning on a new rig's batches (and on rotated views) must not rewrite the normalisation statistics
    # learned from the large synthetic set, and dropout noise drowns the small 2D residuals the 2D-only losses
    # work with: keep both as trained.
    freeze = bool(config.init) if config.freeze_norm is None else config.freeze_norm

    def train_mode():
        model.train()
        if freeze:
            for m in model.modules():
                if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Dropout)):
                    m.eval()

    for step in bar:
        train_mode()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        batch = data.take(sampler())
        if config.mirror_augment:
            batch = mirror_half(batch, mirror, flip_gen)
        batch = _to(batch, device)
        for extra in extra_opts:            # e.g. the discriminator's own update
            extra(model, batch, step)
        losses = method.losses(model, batch, step)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        for k, v in losses.items():
            v = float(v.detach())
            running[k] = 0.9 * running.get(k, v) + 0.1 * v
        if (step + 1) % 50 == 0 or step + 1 == config.steps:
            history.append({"step": step + 1, **{k: round(v, 6) for k, v in running.items()}})
            bar.set_postfix(loss=f"{running['loss']:.4f}")
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            log_eval(step + 1)
        if ckpt_path is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            from hpe_ros.io.atomic import atomic_path

            with atomic_path(ckpt_path) as tmp:
                torch.save({"config": asdict(config), "model": model.state_dict(), "opt": opt.state_dict(),
                            "method": method.state_dict(), "history": history, "step": step + 1,
                            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                            "flip_rng": flip_gen.get_state()}, tmp)
    bar.close()
    model.eval()
    final = next((h for h in reversed(history) if "val_pmpjpe_mm" in h), None)
    if out is not None:
        meta = {"train_config": asdict(config), "seconds": round(time.time() - t0, 1), "final_eval": final}
        save_lifter(out / "lifter.pt", model.cpu(), config.lifter_config(), meta)
        export_lifter_onnx(model, out / "lifter.onnx", layout.num_joints)
        model.to(device)
        from hpe_ros.io.atomic import write_text_atomic

        write_text_atomic(out / "history.json", json.dumps(history, indent=1))
        save_loss_curve(history, out / "loss_curve.png", f"({config.method}, {config.arch})")
    return TrainResult(model, history, out, final)


def config_from_dict(d: dict) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
    return TrainConfig(**d)
