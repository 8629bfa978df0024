"""Lifter networks (torch): a residual MLP and a graph-convolutional student.

Both take `net_input` (B, J + 1, 3) from `hpe_ros.lift.normalize` (J joints (p_x, p_y, confidence) + the
root ray row) and return (shape (B, J, 3), log_scale (B, 1)): the scale-free root-relative 3D shape and
log m, the metric scale (see normalize.py). With `residual_xy` the shape's x, y are the input's p plus
what the network adds (a perspective correction, or the whole guess for an unseen joint, whose p is 0):
as in Chen et al., the network's real job is depth, and fitting the 2D well never has to move it. One input
tensor and two outputs make them exportable to ONNX and runnable by the same runners as the 2D networks.

- ResidualMLP: Martinez et al. 2017 ("a simple yet effective baseline"): linear -> [BN, ReLU, dropout]x2
  residual blocks -> linear.
- GCNStudent: the ITES student (Xu et al. AAAI 2021 after Zou et al. 2021 "modulated GCN"): graph
  convolutions over the skeleton whose edge weights are learned per output channel (adaptive, masked to
  bones + self loops + a learned dense residual), with a pooled global feature per layer so hands still
  hear about feet after a few layers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from hpe_ros.skeleton import Layout, get_layout

ARCHITECTURES = ("mlp", "gcn")


@dataclass
class LifterConfig:
    """What is needed to rebuild a lifter: architecture, layout and sizes."""

    arch: str = "mlp"
    layout: str = "coco17"
    width: int = 512        # mlp: hidden units; gcn: channels per joint
    blocks: int = 2         # residual blocks (mlp) / graph layers (gcn)
    dropout: float = 0.1
    residual_xy: bool = True  # answer x, y as the input's p plus a correction (depth is what is unknown)

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown lifter architecture {self.arch!r}; choose one of {ARCHITECTURES}")


class _Block(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x):
        return x + self.net(x)


class ResidualMLP(nn.Module):
    """(B, J + 1, 3) -> shape (B, J, 3), log_scale (B, 1)."""

    def __init__(self, num_joints: int, width: int = 512, blocks: int = 2, dropout: float = 0.1,
                 residual_xy: bool = True):
        super().__init__()
        self.num_joints = J = num_joints
        self.residual_xy = residual_xy
        self.inp = nn.Sequential(nn.Linear(3 * J + 2, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[_Block(width, dropout) for _ in range(blocks)])
        self.out = nn.Linear(width, 3 * J + 1)

    def forward(self, x):
        J = self.num_joints
        flat = torch.cat([x[:, :J].reshape(x.shape[0], 3 * J), x[:, J, :2]], 1)
        y = self.out(self.blocks(self.inp(flat)))
        return _with_input_xy(y[:, :3 * J].reshape(-1, J, 3), x, self.residual_xy), y[:, 3 * J:]


def _with_input_xy(shape, x, residual: bool):
    """shape (B, J, 3) + (p_x, p_y, 0) of the input x (B, J + 1, 3) when residual."""
    if not residual:
        return shape
    J = shape.shape[1]
    return shape + torch.nn.functional.pad(x[:, :J, :2], (0, 1))


def skeleton_adjacency(layout: Layout) -> np.ndarray:
    """(J, J) 0/1 adjacency of the layout's bones with self loops."""
    J = layout.num_joints
    A = np.eye(J, dtype=np.float32)
    for a, b in layout.bones:
        A[a, b] = A[b, a] = 1.0
    return A


class AdaptiveGraphConv(nn.Module):
    """out[b, i, c] = sum_j A_c[i, j] (x W)[b, j, c] + (x W_self)[b, i, c], with A_c = softmax-free learned
    per-channel weights on the skeleton's edges plus a small learned dense correction (shared over channels)."""

    def __init__(self, cin: int, cout: int, adjacency: np.ndarray):
        super().__init__()
        J = adjacency.shape[0]
        self.register_buffer("mask", torch.as_tensor(adjacency, dtype=torch.float32))
        deg = adjacency.sum(1, keepdims=True)
        self.edge = nn.Parameter(torch.as_tensor(adjacency / deg, dtype=torch.float32)[None].repeat(cout, 1, 1))
        self.dense = nn.Parameter(torch.zeros(J, J))
        self.weight = nn.Linear(cin, cout, bias=False)
        self.self_weight = nn.Linear(cin, cout)

    def forward(self, x):                              # x (B, J, cin)
        h = self.weight(x)                             # (B, J, cout)
        A = self.edge * self.mask                      # (cout, J, J)
        out = torch.einsum("cij,bjc->bic", A, h) + torch.einsum("ij,bjc->bic", self.dense, h)
        return out + self.self_weight(x)


class _GraphBlock(nn.Module):
    def __init__(self, width: int, adjacency: np.ndarray, dropout: float):
        super().__init__()
        self.conv = AdaptiveGraphConv(width, width, adjacency)
        self.glob = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        h = self.conv(x) + self.glob(x.mean(1, keepdim=True))
        return x + self.drop(torch.relu(self.norm(h)))


class GCNStudent(nn.Module):
    """(B, J + 1, 3) -> shape (B, J, 3), log_scale (B, 1). Each joint node gets (p_x, p_y, conf, c_x, c_y)."""

    def __init__(self, layout: Layout, width: int = 96, blocks: int = 4, dropout: float = 0.05,
                 residual_xy: bool = True):
        super().__init__()
        self.residual_xy = residual_xy
        A = skeleton_adjacency(layout)
        self.num_joints = layout.num_joints
        self.embed = AdaptiveGraphConv(5, width, A)
        self.blocks = nn.ModuleList([_GraphBlock(width, A, dropout) for _ in range(blocks)])
        self.head = AdaptiveGraphConv(width, 3, A)
        self.scale = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, x):
        J = self.num_joints
        ray = x[:, J:J + 1, :2].expand(-1, J, 2)
        h = torch.relu(self.embed(torch.cat([x[:, :J], ray], -1)))
        for block in self.blocks:
            h = block(h)
        return _with_input_xy(self.head(h), x, self.residual_xy), self.scale(h.mean(1))


def build_lifter(config: LifterConfig) -> nn.Module:
    layout = get_layout(config.layout)
    if config.arch == "mlp":
        return ResidualMLP(layout.num_joints, config.width, config.blocks, config.dropout, config.residual_xy)
    return GCNStudent(layout, config.width, config.blocks, config.dropout, config.residual_xy)


def save_lifter(path, model: nn.Module, config: LifterConfig, meta: dict | None = None) -> None:
    """Write a checkpoint {config, state_dict, meta} atomically (meta: how it was trained, figures)."""
    from hpe_ros.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"config": asdict(config), "state_dict": model.state_dict(), "meta": dict(meta or {})}, tmp)


def load_lifter(path, map_location="cpu") -> tuple[nn.Module, LifterConfig, dict]:
    """Checkpoint -> (model in eval mode, config, meta). Raises ValueError for a file that is not one."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        config = LifterConfig(**{"residual_xy": False, **ckpt["config"]})  # older checkpoints: plain output
        model = build_lifter(config)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path} is not a lifter checkpoint: {exc}") from exc
    return model.eval(), config, dict(ckpt.get("meta", {}))


def export_lifter_onnx(model: nn.Module, path, num_joints: int, opset: int = 17) -> None:
    """Export to ONNX: input "pose2d" (B, J + 1, 3), outputs "shape" (B, J, 3) and "log_scale" (B, 1)."""
    import warnings

    from hpe_ros.io.atomic import atomic_path

    model = model.eval().cpu()
    dummy = torch.zeros(2, num_joints + 1, 3)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # the TorchScript exporter needs only onnx
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, input_names=["pose2d"],
                          output_names=["shape", "log_scale"], opset_version=opset, do_constant_folding=True,
                          dynamic_axes={"pose2d": {0: "batch"}, "shape": {0: "batch"}, "log_scale": {0: "batch"}})
