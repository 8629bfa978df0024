"""A person "detector" for coded-dot images (`hpe_ros.sim.keypoint_images`), exported to ONNX.

Together with the coded-dot pose network (`hpe_ros.sim.keypoint_net`) it makes a real top-down 2D pipeline
(detector -> crops -> pose network) for images of several people, run through onnxruntime, without
downloading weights. It computes its boxes from the pixels: bright columns, widened by `gap_px` so one
person's dots join, split into separate runs from left to right; each run's box spans its bright pixels.
People that overlap left to right share one box, as real detectors merge crowded people.
Output: mmdeploy's end2end format, dets (B, K, 5) letterbox px + score and labels (B, K) (0 = person;
empty slots score 0). Needs torch to build and export.

    >>> detector = export_dot_detector("/tmp/dots-detector", input_size=(320, 240))   # .onnx + .toml
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from hpe_ros.io.atomic import write_text_atomic

BRIGHT = 12.0        # grey level above which a pixel is a dot (the darkest joint code is 24)


def build_dot_detector(input_size=(320, 240), max_people: int = 8, gap_px: int = 15, threshold: float = BRIGHT):
    """torch.nn.Module: BGR 0-255 (B, 3, h, w) -> dets (B, max_people, 5), labels (B, max_people).

    gap_px: columns closer than this (input px, odd) belong to the same person.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    w = int(input_size[0])
    gap = int(gap_px) | 1   # odd: the widened column mask keeps its length
    k = min(int(max_people), w)

    def first_and_last(mask):
        """(..., n) 0/1 -> index of the first and the last 1 along the last axis (floats)."""
        n = mask.shape[-1]
        index = torch.arange(n, dtype=torch.float32)
        return torch.argmax(mask * (n - index), dim=-1).float(), torch.argmax(mask * (index + 1), dim=-1).float()

    class DotPersonDetector(nn.Module):
        def forward(self, x):
            mask = (x.mean(dim=1) > threshold).float()                                 # (B, h, w)
            cols = mask.amax(dim=1)                                                    # (B, w)
            joined = F.max_pool1d(cols[:, None], gap, stride=1, padding=gap // 2)[:, 0]
            before = F.pad(joined, (1, 0))[:, :-1]
            after = F.pad(joined, (0, 1))[:, 1:]
            xs = torch.arange(w, dtype=torch.float32)
            # The i-th run from the left: top-k of its start (end) marks weighted to favour the left.
            start_score, starts = torch.topk(joined * (1 - before) * (w - xs), k, dim=1)  # (B, K)
            _, ends = torch.topk(joined * (1 - after) * (w - xs), k, dim=1)
            in_run = ((xs >= starts[..., None].float()) & (xs <= ends[..., None].float())).float()  # (B, K, w)
            x0, x1 = first_and_last(cols[:, None] * in_run)
            rows = (mask[:, None] * in_run[:, :, None]).amax(dim=-1)                 # (B, K, h)
            y0, y1 = first_and_last(rows)
            score = 0.9 * (start_score > 0).float() * rows.amax(dim=-1)
            dets = torch.stack([x0, y0, x1, y1, score], dim=-1)
            return dets, torch.zeros(score.shape, dtype=torch.int64)

    return DotPersonDetector().eval()


def detector_manifest_text(name: str, onnx_file: str, input_size) -> str:
    """Model manifest (models/*.toml format) of an exported dot detector."""
    w, h = (int(v) for v in input_size)
    return "\n".join([
        f'name = "{name}"', 'kind = "detector"',
        'description = "person boxes in coded-dot images (hpe_ros.sim.dot_detector); not a real detector"',
        'url = ""', 'sha256 = ""', f'file = "{onnx_file}"', f"input_size = [{w}, {h}]",
        "mean = [0.0, 0.0, 0.0]", "std = [1.0, 1.0, 1.0]", 'color = "bgr"', 'layout = ""', 'output = "end2end"',
        'license = "Apache-2.0"', 'source = "hpe_ros.sim.dot_detector"',
        'note = "made locally by hpe_ros.sim.dot_detector.export_dot_detector"', "",
    ])


def export_dot_detector(path: str | os.PathLike, input_size=(320, 240), max_people: int = 8,
                        gap_px: int = 15) -> Path:
    """Export the detector to `<path>.onnx` (dynamic batch) with a manifest `<path>.toml`; returns the .toml."""
    from hpe_ros.runtime.torch_runner import export_onnx

    path = Path(path)
    if path.suffix in (".onnx", ".toml"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = path.with_suffix(".onnx")
    with warnings.catch_warnings():  # the one-column shifts are slices torch cannot constant-fold; harmless
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        export_onnx(build_dot_detector(input_size, max_people, gap_px), onnx_path, input_size,
                    output_names=["dets", "labels"])
    toml_path = path.with_suffix(".toml")
    write_text_atomic(toml_path, detector_manifest_text(path.name, onnx_path.name, input_size))
    return toml_path
