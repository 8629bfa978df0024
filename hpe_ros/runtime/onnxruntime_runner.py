"""ONNX Runtime runner: CPU, CUDA or TensorRT execution providers behind the NetworkRunner interface."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hpe_ros.runtime.base import check_batch, dim_or_none, require, run_chunked
from hpe_ros.runtime.cache import engine_cache_dir

log = logging.getLogger("hpe_ros.onnxruntime")

# Preference order for providers="auto" (CPU is always appended as the fallback).
AUTO_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
           "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}


def resolve_providers(providers, available: Sequence[str]) -> list:
    """The provider list to open a session with.

    providers: "auto" (or "") → TensorRT and CUDA when `available` lists them, then CPU; a name, a comma
    list ("cuda, cpu") or a list of names / (name, options) pairs is honoured in order ("cpu", "cuda",
    "tensorrt" accepted as short names). Unknown names raise ValueError naming the available ones.
    """
    available = list(available)
    if isinstance(providers, str):
        providers = [name.strip() for name in providers.split(",") if name.strip()] or ["auto"]
        if [name.lower() for name in providers] == ["auto"]:
            providers = None
    if providers is None:
        chosen: list = [p for p in AUTO_PROVIDERS if p in available]
        return chosen + ["CPUExecutionProvider"]
    if isinstance(providers, tuple):
        providers = [providers]
    out: list = []
    for entry in providers:
        name, opts = (entry[0], dict(entry[1])) if isinstance(entry, (tuple, list)) else (entry, None)
        name = ALIASES.get(str(name).strip().lower(), str(name).strip())
        if name not in available:
            raise ValueError(f"onnxruntime execution provider {name!r} is not available here; "
                             f"available: {', '.join(available)}")
        out.append((name, opts) if opts else name)
    if not out:
        raise ValueError(f"empty provider list; available: {', '.join(available)}")
    return out


def _tensorrt_provider_options(cache_dir: Path, fp16: bool) -> dict:
    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
            "trt_fp16_enable": bool(fp16), "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache_dir)}


class OnnxRuntimeRunner:
    """An onnxruntime.InferenceSession over one batched input: an image (B, 3, H, W) or the lifter's (B, J + 1, 3).

    model_path: .onnx file. providers: "auto" | name | list (see resolve_providers). threads: intra-op
    threads (0 = onnxruntime's default). max_batch: split larger batches (None: the model's fixed batch
    when it has one, else unlimited). fp16: for the TensorRT provider only (its engines are cached under
    the TensorRT engine cache dir).
    """

    def __init__(self, model_path: str, providers="auto", threads: int = 0, max_batch: int | None = None,
                 fp16: bool = True, **_ignored):
        ort = require("onnxruntime", "onnxruntime")
        path = Path(str(model_path)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"onnxruntime: model file {str(model_path)!r} not found")
        chosen = resolve_providers(providers, ort.get_available_providers())
        chosen = [("TensorrtExecutionProvider", _tensorrt_provider_options(_trt_cache_dir(), fp16))
                  if p == "TensorrtExecutionProvider" else p for p in chosen]
        so = ort.SessionOptions()
        if threads and int(threads) > 0:
            so.intra_op_num_threads = int(threads)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if any(p == "TensorrtExecutionProvider" or (isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider")
               for p in chosen):
            log.warning("onnxruntime TensorRT provider: the first session for %s builds an engine, which can "
                        "take minutes; later runs load it from the cache", path.name)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeError(f"onnxruntime could not load {path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one image input, the model has {len(inputs)}: "
                             f"{', '.join(i.name for i in inputs)}")
        inp = inputs[0]
        if len(inp.shape) < 2:  # images (B, 3, H, W); the lifter (B, J + 1, 3)
            raise ValueError(f"{path}: expected a batched input (B, ...), the model's {inp.name!r} is {inp.shape}")
        self.model_path = str(path)
        self.input_name: str = inp.name
        self.input_shape: tuple = tuple(dim_or_none(d) for d in inp.shape)
        self._input_dtype = np.float16 if "float16" in inp.type else np.float32
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]
        self.providers: list[str] = list(self.session.get_providers())
        self.name = f"onnxruntime[{self.providers[0]}]"
        self._fixed_batch = self.input_shape[0]  # None when the batch dim is dynamic
        if self._fixed_batch is not None:
            self.max_batch: int | None = self._fixed_batch
        else:
            self.max_batch = int(max_batch) if max_batch else None

    def _run_once(self, chunk: np.ndarray) -> list[np.ndarray]:
        feed = {self.input_name: chunk.astype(self._input_dtype, copy=False)}
        return self.session.run(self.output_names, feed)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, 3, H, W) float32 → outputs (B, ...) float32 in output_names order."""
        if self.session is None:
            raise RuntimeError(f"{self.name}: run() after close()")
        batch = check_batch(batch, self.input_shape, self.name)
        return run_chunked(self._run_once, batch, self.max_batch, self._fixed_batch)

    def warm_up(self, largest: int) -> list[int]:
        """Run zero batches of every size the runner will send onnxruntime for batches of up to `largest`
        (1..min(largest, max_batch); the fixed batch only for a fixed-batch model), largest first, twice each.

        onnxruntime's CPU arena grows whenever no free block fits a run: the first run at a new shape
        allocates tensor by tensor and plans a memory pattern, the second takes the pattern as one block. At
        start-up these steps reach the arena's ceiling; later, rare shapes would step it up after minutes.
        Returns the batch sizes run; none when a non-batch input dim is dynamic (unknown shape).
        """
        if self.session is None:
            raise RuntimeError(f"{self.name}: warm_up() after close()")
        dims = self.input_shape[1:]
        if any(d is None for d in dims):
            return []
        top = min(int(largest), self.max_batch or int(largest))
        sizes = [self._fixed_batch] if self._fixed_batch else list(range(max(top, 1), 0, -1))
        for size in sizes:
            batch = np.zeros((size, *dims), dtype=self._input_dtype)
            for _ in range(2):
                self.session.run(self.output_names, {self.input_name: batch})
        return sizes

    def close(self) -> None:
        self.session = None

    def __repr__(self) -> str:
        return f"OnnxRuntimeRunner({self.model_path!r}, {self.name}, input {self.input_shape})"


def _trt_cache_dir() -> Path:
    d = engine_cache_dir() / "onnxruntime-trt"
    d.mkdir(parents=True, exist_ok=True)
    return d
