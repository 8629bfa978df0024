"""make_lifter: a lifter by name, as hpe_ros.detect2d.create_backend gives a 2D backend.

`model` picks the lifter:
- "default" (or ""): the shipped learned lifter, models/lifter.onnx (`default_model_path()`); when that
  file is missing (a broken install), a warning and the apparent-size lifter instead;
- a path to a lifter .onnx, run on `runtime` (onnxruntime or tensorrt; a serialized TensorRT engine also
  works there), or to a .pt training checkpoint, run on torch; a bare file name is also looked up in the
  package's config/;
- "apparent_size_placeholder": ApparentSizeLifter, every joint of a person at the depth where a `torso_m`
  torso looks as long as the observed one (no limb depth).

Every lifter has `name` and `lift(K, points2d, scores) -> (points3d, conf)`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from hpe_ros.lift.placeholder import ApparentSizeLifter
from hpe_ros.lift.runtime import LearnedLifter, default_model_path
from hpe_ros.resources import resolve_path
from hpe_ros.runtime import RUNTIMES, BackendUnavailable
from hpe_ros.runtime.runner import ENGINE_SUFFIXES

log = logging.getLogger("hpe_ros.lift")

PLACEHOLDER = ApparentSizeLifter.name
MODEL_SUFFIXES = (".onnx", ".pt") + ENGINE_SUFFIXES


class Lifter(Protocol):
    name: str

    def lift(self, K: np.ndarray, points2d: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """K (3, 3), points2d (P, J, 2) ideal pinhole px, scores (P, J) -> points3d (P, J, 3) m, conf (P, J)."""


def make_lifter(model: str = "default", *, layout: str = "coco17", runtime: str = "onnxruntime",
                torso_m: float = 0.5, providers="auto", threads: int = 0, enable_fp16: bool = True,
                engine_file_path: str = "", force_engine_update: bool = False, max_batch: int = 32,
                warn: Callable[[str], None] = log.warning) -> Lifter:
    """The lifter named by `model` (see the module docstring) for skeletons in `layout`.

    onnxruntime takes `providers` ("auto", a name, a comma list or a list) and `threads`; tensorrt takes
    `enable_fp16`, `engine_file_path`, `force_engine_update`, `max_batch`. `warn` receives the one warning
    (the default model is missing). Raises ValueError for an unknown runtime or a file that is not a lifter
    model, FileNotFoundError for a missing file, BackendUnavailable when the runtime cannot run here and
    RuntimeError when the file cannot be loaded; each message is one line naming the file.
    """
    model, runtime = str(model).strip(), str(runtime).strip().lower()
    if model == PLACEHOLDER:
        return ApparentSizeLifter(layout, torso_m=torso_m)
    if model in ("", "default"):
        path = default_model_path()
        if not path.is_file():
            warn(f"model 'default': the learned lifter {path} is not installed; running the {PLACEHOLDER} "
                 f"lifter instead (set model to a lifter .onnx / .pt path, or to '{PLACEHOLDER}' to silence this)")
            return ApparentSizeLifter(layout, torso_m=torso_m)
    else:
        path = _model_path(model)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ValueError(f"lifter model {path}: expected a .onnx file or a .pt checkpoint "
                         f"(or '{PLACEHOLDER}', 'default')")
    if runtime == "torch" and suffix != ".pt":
        raise ValueError(f"lifter model {path}: the torch runtime takes .pt checkpoints; run .onnx files on "
                         "onnxruntime or tensorrt")
    if not path.exists():
        raise FileNotFoundError(f"lifter model not found: {path} (model {model!r})")
    options: dict = {}
    if runtime == "onnxruntime":
        options = dict(providers=providers, threads=threads)
    elif runtime == "tensorrt":
        options = dict(enable_fp16=enable_fp16, force_engine_update=force_engine_update, max_batch=max_batch)
        if engine_file_path:
            options["engine_file_path"] = engine_file_path
    try:
        return LearnedLifter(path, layout=layout, runtime=runtime, **options)
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"runtime unavailable: {path} on {runtime}: {exc}") from exc
    except Exception as exc:  # a broken file, a network for another layout
        raise RuntimeError(f"cannot load lifter model {path} on {runtime}: {type(exc).__name__}: {exc}") from exc


def _model_path(model: str) -> Path:
    """A model path as given, else a file of that name in the package's config/ (else as given)."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    try:
        return Path(resolve_path(model))
    except FileNotFoundError:
        return path  # reported by the caller, with the path as given
