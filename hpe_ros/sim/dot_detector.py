"""A person "detector" for coded-dot images (`hpe_ros.sim.keypoint_images`), exported to ONNX.

Together with the coded-dot pose network (`hpe_ros.sim.keypoint_net`) it makes a real top-down 2D pipeline
(detector -> crops -> pose network) for images of several people, run through onnxruntime, without
downloading weights. It computes its boxes from the pixels: bright columns, widened by `gap_px` so one
person's dots join, split into separate runs from left to right; each run's box spans its bright pixels.
People that overlap left to right share a run, but every joint has its own grey code: a run in which
several codes each show two separate dots holds two people, and is split into a left person (each code's
leftmost dot) and a right one (its rightmost), each box centred on its side of the gaps between the
pairs, so the pose network (which prefers the dots nearest its crop's centre line) keeps to one person.
Two people who overlap almost entirely (few codes with separate dots) still share one box, and a joint
hidden behind the other person's same joint is taken from that person, as real top-down networks do.
Output: mmdeploy's end2end format, dets (B, K, 5) letterbox px + score and labels (B, K) (0 = person;
empty slots score 0). Needs torch to build and export.

    >>> detector = export_dot_detector("/tmp/dots-detector", input_size=(320, 240))   # .onnx + .toml
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from hpe_ros.io.atomic import write_text_atomic
from hpe_ros.sim.keypoint_images import CODE_STEP, dot_codes

POSE_INPUT_SIZE = (192, 256)      # the image demo's coded-dot pose network input (w, h): RTMPose's
DETECTOR_INPUT_SIZE = (320, 240)  # and its person detector's
BRIGHT = 12.0        # grey level above which a pixel is a dot (the darkest joint code is 24)
SPLIT_CODES = 2      # a run of columns with two separate dots of this many joint codes holds two people


def build_dot_detector(input_size=(320, 240), max_people: int = 8, gap_px: int = 15, threshold: float = BRIGHT,
                       num_joints: int = 17, split_codes: int = SPLIT_CODES):
    """torch.nn.Module: BGR 0-255 (B, 3, h, w) -> dets (B, max_people, 5), labels (B, max_people).

    gap_px: columns closer than this (input px, odd) belong to the same person. split_codes: a run in which
    this many joint codes each show two separate dots is split into a left and a right person (0 = never).
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    w = int(input_size[0])
    gap = int(gap_px) | 1   # odd: the widened column mask keeps its length
    k = min(int(max_people), w)
    codes = torch.as_tensor(dot_codes(num_joints), dtype=torch.float32).view(1, -1, 1, 1)
    xs = torch.arange(w, dtype=torch.float32)

    class DotPersonDetector(nn.Module):
        def forward(self, x):
            grey = x.mean(dim=1)                                                    # (B, h, w)
            mask = (grey > threshold).float()
            cols = mask.amax(dim=1)                                                 # (B, w)
            joined = F.max_pool1d(cols[:, None], gap, stride=1, padding=gap // 2)[:, 0]
            rise, fall = _edges(joined)
            # The i-th run from the left: top-k of its start (end) marks weighted to favour the left.
            start_score, starts = torch.topk(rise * (w - xs), k, dim=1)             # (B, K)
            _, ends = torch.topk(fall * (w - xs), k, dim=1)
            in_run = _window(xs, starts.float(), ends.float())                      # (B, K, w)
            # Each joint code's pixels, eroded so the blend at dot edges (resizing, JPEG) is not a dot.
            near = ((grey[:, None] - codes).abs() < CODE_STEP / 2).float() * mask[:, None]
            code_mask = -F.max_pool2d(-near, 3, stride=1, padding=1)               # (B, J, h, w)
            whole = _box(cols[:, None] * in_run, mask[:, None], in_run[:, :, None])
            left, right, split = _split_run(xs, w, code_mask, in_run, split_codes)
            found = 0.9 * (start_score > 0).float() * (cols[:, None] * in_run).amax(dim=-1)   # (B, K)
            score = torch.cat([found * (1 - split), found * split, found * split], dim=1)     # (B, 3K)
            candidates = torch.cat([torch.stack([*b, score[:, i * k:(i + 1) * k]], dim=-1)
                                    for i, b in enumerate((whole, left, right))], dim=1)      # (B, 3K, 5)
            _, best = torch.topk(score, k, dim=1)
            dets = torch.gather(candidates, 1, best[..., None].expand(-1, -1, 5))
            return dets, torch.zeros(best.shape, dtype=torch.int64)

    return DotPersonDetector().eval()


def _first_and_last(mask):
    """(..., n) 0/1 -> index of the first and the last 1 along the last axis (floats)."""
    import torch

    n = mask.shape[-1]
    index = torch.arange(n, dtype=torch.float32)
    return torch.argmax(mask * (n - index), dim=-1).float(), torch.argmax(mask * (index + 1), dim=-1).float()


def _edges(cols):
    """(..., w) 0/1 -> rising and falling edges (1 at each run's first / last column)."""
    import torch

    zero = torch.zeros_like(cols[..., :1])
    before = torch.cat([zero, cols[..., :-1]], dim=-1)
    after = torch.cat([cols[..., 1:], zero], dim=-1)
    return cols * (1 - before), cols * (1 - after)


def _window(xs, lo, hi):
    """Column bounds (...) -> (..., w) 0/1: the columns in [lo, hi]."""
    return ((xs >= lo[..., None]) & (xs <= hi[..., None])).float()


def _box(columns, pixels, pixel_columns):
    """Box (x0, y0, x1, y1), each (B, K): columns (B, K, w) it spans; its rows are those where `pixels`
    (B, M, h, w) is lit inside `pixel_columns` (B, K, M, w) (M: one mask, or one per joint code)."""
    import torch

    x0, x1 = _first_and_last(columns)
    hits = torch.matmul(pixels, pixel_columns.permute(0, 2, 3, 1))               # (B, M, h, K)
    y0, y1 = _first_and_last((hits.amax(dim=1) > 0).float().permute(0, 2, 1))
    return x0, y0, x1, y1


def _recentre(box, centre):
    """A box (x0, y0, x1, y1) widened so its centre column is `centre` (B, K)."""
    import torch

    x0, y0, x1, y1 = box
    half = torch.maximum(centre - x0, x1 - centre)
    return centre - half, y0, centre + half, y1


def _split_run(xs, w: int, code_mask, in_run, split_codes: int):
    """Each run's left and right person (boxes as `_box`) and whether it holds two (B, K) 0/1.

    xs: (w,) column indices; code_mask: (B, J, h, w) each joint code's pixels; in_run: (B, K, w). A code
    with two separate dots in a run gives its leftmost dot to the left person and its rightmost to the
    right one; a code with one dot goes to both. Each box is centred on its side of every gap between two
    dots of one code, so the pose network, which prefers the dot nearest its crop's centre line, keeps to
    that box's person.
    """
    import torch

    code_cols = code_mask.amax(dim=2)[:, None] * in_run[:, :, None]               # (B, K, J, w)
    rise, fall = _edges(code_cols)
    first, last = _first_and_last(code_cols)                                        # (B, K, J)
    first_end, _ = _first_and_last(fall)
    _, last_start = _first_and_last(rise)
    two = rise.sum(dim=-1) >= 2
    split = (two.float().sum(dim=-1) >= max(split_codes, 1)).float() * float(split_codes > 0)
    whole = _window(xs, first, last) * code_cols.amax(dim=-1, keepdim=True)
    left_cols = torch.where(two[..., None], _window(xs, first, first_end), whole)
    right_cols = torch.where(two[..., None], _window(xs, last_start, last), whole)
    left = _box(left_cols.amax(dim=2), code_mask, left_cols)
    right = _box(right_cols.amax(dim=2), code_mask, right_cols)
    gap_mid = (first_end + last_start) / 2
    far = float(w)
    left_of_gaps = torch.where(two, gap_mid, torch.full_like(gap_mid, far)).amin(dim=-1) - 1
    right_of_gaps = torch.where(two, gap_mid, torch.full_like(gap_mid, -far)).amax(dim=-1) + 1
    left = _recentre(left, torch.minimum((left[0] + left[2]) / 2, left_of_gaps))
    right = _recentre(right, torch.maximum((right[0] + right[2]) / 2, right_of_gaps))
    return left, right, split


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
                        gap_px: int = 15, split_codes: int = SPLIT_CODES) -> Path:
    """Export the detector to `<path>.onnx` (dynamic batch) with a manifest `<path>.toml`; returns the .toml."""
    from hpe_ros.runtime.torch_runner import export_onnx

    path = Path(path)
    if path.suffix in (".onnx", ".toml"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = path.with_suffix(".onnx")
    with warnings.catch_warnings():  # the one-column shifts are slices torch cannot constant-fold; harmless
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        export_onnx(build_dot_detector(input_size, max_people, gap_px, split_codes=split_codes), onnx_path, input_size,
                    output_names=["dets", "labels"])
    toml_path = path.with_suffix(".toml")
    write_text_atomic(toml_path, detector_manifest_text(path.name, onnx_path.name, input_size))
    return toml_path


def export_coded_dot_models(folder: str | os.PathLike) -> tuple[Path, Path]:
    """(pose manifest, detector manifest): the image demo's coded-dot pose network (heatmaps) and person
    detector, exported as ONNX into `folder` at POSE_INPUT_SIZE / DETECTOR_INPUT_SIZE. Needs torch."""
    from hpe_ros.sim.keypoint_net import export_keypoint_net

    folder = Path(folder)
    return (export_keypoint_net(folder / "dots-pose", output="heatmap", input_size=POSE_INPUT_SIZE),
            export_dot_detector(folder / "dots-detector", input_size=DETECTOR_INPUT_SIZE))
