"""Real networks the 2D-inference tests make: the coded-dot pose net (hpe_ros.sim.keypoint_net) and a tiny
person "detector" that boxes the bright pixels of each image half, exported to ONNX in mmdeploy's end2end
format (dets (B, 2, 5) letterbox px + score, labels (B, 2)). Both compute their outputs from the pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hpe_ros.runtime.torch_runner import export_onnx
from hpe_ros.sim.keypoint_images import render_keypoint_dots
from hpe_ros.sim.keypoint_net import MMPOSE_MEAN, MMPOSE_STD

DETECTOR_MEAN = (0.0, 0.0, 0.0)
DETECTOR_STD = (1.0, 1.0, 1.0)


def export_half_box_detector(path: Path, input_size=(320, 240), threshold: float = 12.0) -> Path:
    """ONNX detector: one box per image half around pixels brighter than `threshold`; returns the manifest path."""
    import torch
    from torch import nn

    w, h = input_size

    class HalfBoxDetector(nn.Module):
        def forward(self, x):                                         # (B, 3, h, w), 0-255 (mean 0, std 1)
            mask = (x.mean(dim=1) > threshold).float()               # (B, h, w)
            dets = []
            for half in (mask[:, :, : w // 2], mask[:, :, w // 2:]):
                offset = 0.0 if len(dets) == 0 else float(w // 2)
                cols = half.amax(dim=1)                               # (B, w/2)
                rows = half.amax(dim=2)                               # (B, h)
                x0 = torch.argmax(cols, dim=1).float()
                x1 = (cols.shape[1] - 1) - torch.argmax(torch.flip(cols, dims=[1]), dim=1).float()
                y0 = torch.argmax(rows, dim=1).float()
                y1 = (rows.shape[1] - 1) - torch.argmax(torch.flip(rows, dims=[1]), dim=1).float()
                score = cols.amax(dim=1) * 0.9
                dets.append(torch.stack([x0 + offset, y0, x1 + offset, y1, score], dim=1))
            dets = torch.stack(dets, dim=1)                           # (B, 2, 5)
            labels = torch.zeros(dets.shape[:2], dtype=torch.int64)
            return dets, labels

    path = Path(path).with_suffix("")
    export_onnx(HalfBoxDetector(), path.with_suffix(".onnx"), (w, h), output_names=["dets", "labels"])
    toml = path.with_suffix(".toml")
    toml.write_text("\n".join([
        f'name = "{path.name}"', 'kind = "detector"', 'description = "test detector: bright pixels per image half"',
        'url = ""', 'sha256 = ""', f'file = "{path.with_suffix(".onnx").name}"', f"input_size = [{w}, {h}]",
        f"mean = {list(DETECTOR_MEAN)}", f"std = {list(DETECTOR_STD)}", 'color = "bgr"', 'layout = ""',
        'output = "end2end"', 'note = "made by test/detect2d_nets.py"', "",
    ]))
    return toml


def person_pixels(rng: np.random.Generator, centre, scale: float = 1.0) -> np.ndarray:
    """(17, 2) px of a stick figure (COCO-17 order) around `centre`, dots at least ~12 px apart."""
    base = np.array([[0, -70], [-6, -76], [6, -76], [-14, -72], [14, -72],       # face
                     [-22, -50], [22, -50], [-34, -22], [34, -22], [-40, 6], [40, 6],  # arms
                     [-14, 6], [14, 6], [-16, 46], [16, 46], [-18, 84], [18, 84]], dtype=np.float64)
    base[1:5] *= (2.0, 1.0)   # spread the face so its dots do not touch
    return np.asarray(centre) + scale * base + rng.uniform(-1.5, 1.5, base.shape)


def dot_image(people: list[np.ndarray], size=(640, 480), radius: float = 4.0) -> np.ndarray:
    return render_keypoint_dots(np.stack(people), size=size, radius=radius)


__all__ = ["export_half_box_detector", "person_pixels", "dot_image", "MMPOSE_MEAN", "MMPOSE_STD"]
