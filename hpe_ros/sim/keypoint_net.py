"""A small convolutional 2D pose network that finds the coded dots of `hpe_ros.sim.keypoint_images`.

It is a real network with the same interface as a heatmap or SimCC pose model (normalised NCHW image
in; heatmaps (N, J, H/4, W/4) or SimCC vectors (N, J, 2W) and (N, J, 2H) out), built from fixed weights
instead of training: undo the input normalisation, average the colour channels to grey, score every
pixel against each joint's grey code with a Gaussian, and pool. Tests, benchmarks and `hpe-ros process`
demos use it so the whole image pipeline runs with ground truth and without downloading weights.
Needs torch (to build and export); the exported ONNX file runs anywhere onnxruntime does.

    >>> path = export_keypoint_net("/tmp/dots", output="heatmap", input_size=(192, 256))   # .onnx + .toml
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hpe_ros.io.atomic import write_text_atomic
from hpe_ros.sim.keypoint_images import CODE_STEP, dot_codes

MMPOSE_MEAN = (123.675, 116.28, 103.53)   # RGB, 0-255 units: what RTMPose / HRNet expect
MMPOSE_STD = (58.395, 57.12, 57.375)
STRIDE = 4
SIMCC_SPLIT = 2.0
CENTRE_PREFERENCE = 0.05   # likelihood lost at the crop's left / right edge: ties go to the centred person


def build_keypoint_net(num_joints: int = 17, output: str = "heatmap", mean=MMPOSE_MEAN, std=MMPOSE_STD,
                       width: float = CODE_STEP / 2.5, centre_preference: float = CENTRE_PREFERENCE):
    """torch.nn.Module finding coded dots. output: "heatmap" or "simcc". Input: RGB normalised with mean/std.

    centre_preference: every pixel's likelihood is scaled by 1 - centre_preference * (x offset from the
    crop's centre line / half width)^2, so of two equal dots of one joint (two people in one crop) the one
    nearer the centre line wins, as a trained top-down network returns the person its crop is centred on.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    if output not in ("heatmap", "simcc"):
        raise ValueError(f"output must be 'heatmap' or 'simcc', got {output!r}")
    codes = torch.as_tensor(dot_codes(num_joints), dtype=torch.float32)

    class KeypointDotNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.output = output
            # grey = mean over channels of (x * std + mean): one 1x1 convolution
            self.to_grey = nn.Conv2d(3, 1, 1)
            # z_j = (grey - code_j) / width: one 1x1 convolution with J outputs
            self.match = nn.Conv2d(1, num_joints, 1)
            with torch.no_grad():
                self.to_grey.weight.copy_(torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1) / 3.0)
                self.to_grey.bias.fill_(float(np.sum(mean)) / 3.0)
                self.match.weight.fill_(1.0 / width)
                self.match.bias.copy_(-codes / width)
            # Heatmap cell k is centred on input pixel STRIDE * k (mmpose's convention), hence kernel 5, pad 2.
            self.pool = nn.AvgPool2d(kernel_size=STRIDE + 1, stride=STRIDE, padding=STRIDE // 2,
                                     count_include_pad=False)

        def forward(self, x):
            z = self.match(self.to_grey(x))
            w = x.shape[-1]
            offset = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2) / (w / 2)
            likelihood = torch.exp(-z * z) * (1 - centre_preference * offset * offset)   # (N, J, H, W)
            if self.output == "heatmap":
                return self.pool(likelihood)
            # SimCC: per-axis marginals of the map smoothed twice by a 5x5 box (a pixelated disc alone has a
            # flat-topped profile), scaled so a dot of radius ~4 px scores ~1, at SIMCC_SPLIT bins per pixel.
            smooth = F.avg_pool2d(likelihood, 5, stride=1, padding=2, count_include_pad=False)
            smooth = F.avg_pool2d(smooth, 5, stride=1, padding=2, count_include_pad=False)
            sx = smooth.sum(dim=2) / 8.0                                     # (N, J, W)
            sy = smooth.sum(dim=3) / 8.0                                     # (N, J, H)
            sx = F.interpolate(sx, scale_factor=SIMCC_SPLIT, mode="linear", align_corners=False)
            sy = F.interpolate(sy, scale_factor=SIMCC_SPLIT, mode="linear", align_corners=False)
            return sx, sy

    return KeypointDotNet().eval()


def manifest_text(name: str, onnx_file: str, output: str, input_size, layout: str = "coco17",
                  mean=MMPOSE_MEAN, std=MMPOSE_STD) -> str:
    """Model manifest (models/*.toml format) describing an exported keypoint net."""
    w, h = (int(v) for v in input_size)
    return "\n".join([
        f'name = "{name}"',
        'kind = "pose"',
        'description = "coded-dot finder for synthetic images (hpe_ros.sim.keypoint_net); not a human pose model"',
        'url = ""',
        'sha256 = ""',
        f'file = "{onnx_file}"',
        f"input_size = [{w}, {h}]",
        f"mean = [{', '.join(str(float(v)) for v in mean)}]",
        f"std = [{', '.join(str(float(v)) for v in std)}]",
        'color = "rgb"',
        f'layout = "{layout}"',
        f'output = "{output}"',
        f"simcc_split_ratio = {SIMCC_SPLIT}",
        'license = "Apache-2.0"',
        'source = "hpe_ros.sim.keypoint_net"',
        'note = "made locally by hpe_ros.sim.keypoint_net.export_keypoint_net"',
        "",
    ])


def export_keypoint_net(path: str | os.PathLike, output: str = "heatmap", input_size=(192, 256),
                        layout: str = "coco17", num_joints: int = 17) -> Path:
    """Export the net to `<path>.onnx` (dynamic batch) with a manifest `<path>.toml` beside it.

    Returns the .toml path.
    """
    from hpe_ros.runtime.torch_runner import export_onnx

    path = Path(path)
    if path.suffix in (".onnx", ".toml"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = (int(v) for v in input_size)
    onnx_path = path.with_suffix(".onnx")
    names = ["heatmaps"] if output == "heatmap" else ["simcc_x", "simcc_y"]
    export_onnx(build_keypoint_net(num_joints, output), onnx_path, (w, h), output_names=names)
    toml_path = path.with_suffix(".toml")
    write_text_atomic(toml_path, manifest_text(path.name, onnx_path.name, output, (w, h), layout))
    return toml_path
