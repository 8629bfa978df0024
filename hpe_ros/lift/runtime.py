"""Running a trained lifter: pixels + K -> camera-frame 3D, from a torch module, a .pt checkpoint or ONNX.

`LearnedLifter(path)` has the same `lift(K, points2d, scores)` call as the placeholder, so `lifter_node` and
offline tools take either (hpe_ros.lift.factory.make_lifter picks one by name). ONNX files run through
hpe_ros.runtime's runners (onnxruntime here; TensorRT or CUDA providers on a GPU robot); .pt checkpoints
through torch. The default model is models/lifter.onnx.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hpe_ros.lift.normalize import mirror_index, mirror_input, mirror_shape, normalise, place
from hpe_ros.skeleton import Layout, get_layout

DEFAULT_MODEL = "lifter.onnx"        # what nodes and tools run
DEFAULT_CHECKPOINT = "lifter.pt"     # the same weights for torch: fine-tuning starts here
UNSEEN_CONFIDENCE = 0.5   # a joint the view did not see is placed from context: this much of the person's mean


def default_model_path() -> Path:
    """The shipped default lifter, models/lifter.onnx (source checkout or installed share dir)."""
    from hpe_ros.resources import share_dir

    return share_dir() / "models" / DEFAULT_MODEL


def default_checkpoint_path() -> Path:
    """The shipped default lifter's torch checkpoint, models/lifter.pt."""
    from hpe_ros.resources import share_dir

    return share_dir() / "models" / DEFAULT_CHECKPOINT


def run_mirrored(fn, net_input: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run fn (B, J + 1, 3) -> (shape, log_scale) on the input and its mirror image in one batch, and average
    the two answers (the mirrored one mirrored back). Halves the variance of a lifter's guesses for free."""
    B = len(net_input)
    both = np.concatenate([net_input, mirror_input(net_input, mirror)]).astype(np.float32)
    shape, log_scale = fn(both)
    shape, log_scale = np.asarray(shape), np.asarray(log_scale)
    return 0.5 * (shape[:B] + mirror_shape(shape[B:], mirror)), 0.5 * (log_scale[:B] + log_scale[B:])


def torch_net(model, device=None):
    """A torch lifter as a numpy function (B, J + 1, 3) -> (shape, log_scale), without gradients."""
    import torch

    device = device or next(model.parameters()).device

    def net(x):
        with torch.no_grad():
            s, ls = model(torch.as_tensor(x, device=device))
        return s.cpu().numpy(), ls.cpu().numpy()
    return net


def lift_normalised(net, norm, flip: np.ndarray | None, chunk: int = 8192) -> np.ndarray:
    """Run `net` (numpy (B, J + 1, 3) -> (shape, log_scale)) over normalised skeletons in chunks and place
    them: -> (N, J, 3) camera frame. flip: the layout's mirror_index to average with the mirror image
    (run_mirrored), or None."""
    shapes, scales = [], []
    for i in range(0, len(norm.net_input), chunk):
        x = norm.net_input[i:i + chunk]
        s, ls = run_mirrored(net, x, flip) if flip is not None else net(x)
        shapes.append(s)
        scales.append(ls)
    if not shapes:
        return np.zeros(norm.net_input[:, :-1].shape)
    return place(np.concatenate(shapes), np.concatenate(scales), norm)


def lift_batch(model, points2d, scores, K, layout: Layout, device=None, chunk: int = 8192,
               mirror: bool = True) -> np.ndarray:
    """A torch lifter over many samples: (N, J, 2) px, (N, J), K (3, 3)/(N, 3, 3) -> (N, J, 3) camera frame.
    mirror: average with the mirrored input's answer (see run_mirrored)."""
    norm = normalise(points2d, scores, K, layout)
    return lift_normalised(torch_net(model, device), norm, mirror_index(layout) if mirror else None, chunk)


class LearnedLifter:
    """A trained lifter. points2d (P, J, 2) px + scores (P, J) + K (3, 3) -> points3d (P, J, 3), conf (P, J).

    model: path to .onnx (runs on `runtime`, default onnxruntime) or .pt (torch), or "default".
    mirror: also lift the mirror image and average (one batch of 2P rows; see run_mirrored).
    Joints this view saw keep their 2D confidence; unseen joints of a lifted person are placed from context
    with UNSEEN_CONFIDENCE x the person's mean confidence. People with too few joints come back NaN / 0.
    K may also be (P, 3, 3), one per person: the people of several views lift in one call (lift.batch).
    """

    per_person_K = True

    def __init__(self, model: str | Path = "default", layout: str = "coco17", runtime: str = "onnxruntime",
                 mirror: bool = True, **runner_options):
        self.layout = get_layout(layout)
        self.mirror = bool(mirror)
        self._flip = mirror_index(self.layout)
        path = default_model_path() if str(model) in ("", "default") else Path(str(model)).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"lifter model not found: {path}")
        self.path = path
        self.runtime = "torch" if path.suffix == ".pt" else runtime
        if path.suffix == ".pt":
            from hpe_ros.lift.models import load_lifter

            model, cfg, _ = load_lifter(path)
            if cfg.layout != self.layout.name:
                raise ValueError(f"{path} was trained for layout {cfg.layout}, not {self.layout.name}")
            self._net = torch_net(model)
            self.name = f"learned[{path.name}, torch]"
        else:
            from hpe_ros.runtime import create_runner

            self._runner = create_runner(runtime, str(path), **runner_options)
            shape = tuple(self._runner.input_shape)
            if len(shape) != 3 or shape[1:] not in ((self.layout.num_joints + 1, 3), (None, None)):
                raise ValueError(f"{path} takes input {shape}; a {self.layout.name} lifter takes "
                                 f"(B, {self.layout.num_joints + 1}, 3)")
            self._net = lambda x: self._runner.run(x)
            self.name = f"learned[{path.name}, {self._runner.name}]"

    def lift(self, K: np.ndarray, points2d: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points2d = np.asarray(points2d, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        P, J = scores.shape
        if P == 0:
            return np.zeros((0, J, 3)), np.zeros((0, J))
        norm = normalise(points2d, scores, K, self.layout)
        points3d = lift_normalised(self._net, norm, self._flip if self.mirror else None)
        seen = norm.weights > 0
        mean = norm.weights.sum(1) / np.maximum(seen.sum(1), 1)
        conf = np.where(seen, norm.weights, UNSEEN_CONFIDENCE * mean[:, None])
        ok = np.isfinite(points3d).all(-1) & norm.ok[:, None]
        points3d[~ok] = np.nan
        return points3d, np.where(ok, conf, 0.0)
