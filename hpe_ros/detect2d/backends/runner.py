"""Network runners: one small interface over ONNX Runtime, TensorRT and torch.

A runner takes a preprocessed batch (B, 3, H, W) float32 (or another batched tensor: the lifter's
(B, J + 1, 3)) and returns the network's raw outputs as
numpy float32 arrays with leading dim B. Decoding (heatmap / SimCC / detector boxes) lives elsewhere
(hpe_ros.detect2d.topdown), so every runtime is interchangeable behind `create_runner`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from hpe_ros.detect2d.backends import BackendUnavailable

RUNTIMES = ("onnxruntime", "tensorrt", "torch")

INSTALL_HINTS = {
    "onnxruntime": "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA / TensorRT providers); "
                   "or pip install 'hpe_ros[onnx]'",
    "tensorrt": "pip install tensorrt (needs an NVIDIA GPU, a CUDA driver and torch with CUDA); "
                "or pip install 'hpe_ros[tensorrt,torch]'",
    "torch": "pip install torch (see https://pytorch.org for a CUDA build); or pip install 'hpe_ros[torch]'",
}


class NetworkRunner(Protocol):
    """A loaded network. Shapes: input (B, 3, H, W) float32; outputs (B, ...) float32 each."""

    name: str                       # e.g. "onnxruntime[CPUExecutionProvider]", "tensorrt[fp16]", "torch[cpu]"
    input_name: str
    input_shape: tuple              # (B, 3, H, W); None for a dynamic dim
    output_names: list[str]
    max_batch: int | None           # largest batch one call to the runtime takes (None: unlimited)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, 3, H, W) float32 → outputs in `output_names` order, float32, leading dim B.

        Batches larger than `max_batch` (or than a model's fixed batch) are split internally.
        """

    def close(self) -> None:
        """Release the session / engine / device memory. The runner is unusable afterwards."""


def create_runner(runtime: str, model_path: str, **options) -> NetworkRunner:
    """Open `model_path` with `runtime` ("onnxruntime", "tensorrt" or "torch").

    onnxruntime: an .onnx file; options providers ("auto" | list), threads.
    tensorrt: an .onnx file (the engine is built and cached) or a serialized .engine/.plan file;
      options as TensorRTRunner (engine_file_path, force_engine_update, enable_fp16, max_batch, ...).
    torch: a TorchScript file (torch.jit.save); options device ("auto" | "cpu" | "cuda[:N]").

    Raises FileNotFoundError naming the path when the model file is missing, BackendUnavailable (with an
    install hint) when the runtime is not installed or cannot run here, ValueError for an unknown runtime.
    """
    runtime = str(runtime).strip().lower()
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown network runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    path = Path(str(model_path)).expanduser()
    if not str(model_path) or not path.is_file():
        raise FileNotFoundError(f"{runtime}: model file {str(model_path)!r} not found "
                                "(hpe-ros models fetch NAME downloads the published ones)")
    if runtime == "onnxruntime":
        from hpe_ros.detect2d.backends.onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(str(path), **options)
    if runtime == "tensorrt":
        from hpe_ros.detect2d.backends.tensorrt_runner import TensorRTRunner

        if path.suffix.lower() in (".engine", ".plan", ".trt"):
            options.setdefault("engine_file_path", str(path))
            return TensorRTRunner("", **options)
        return TensorRTRunner(str(path), **options)
    from hpe_ros.detect2d.backends.torch_runner import TorchRunner

    return TorchRunner(str(path), **options)


def require(module: str, runtime: str):
    """Import `module` or raise BackendUnavailable with the runtime's install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"the {runtime} runtime is not installed ({exc}); {INSTALL_HINTS[runtime]}") from exc


def check_batch(batch: np.ndarray, input_shape: Sequence, who: str) -> np.ndarray:
    """Validate a batch against a model's input shape (rank and static dims); returns C-contiguous float32.

    Images come as (B, 3, H, W); other networks (the lifter's (B, J + 1, 3)) use their own rank.
    """
    batch = np.asarray(batch)
    rank = len(tuple(input_shape)) if input_shape is not None and len(tuple(input_shape)) else 4
    if batch.ndim != rank:
        want = "(B, 3, H, W)" if rank == 4 else f"of rank {rank} {tuple(input_shape)}"
        raise ValueError(f"{who}: expected a batch {want}, got an array of shape {batch.shape}")
    for axis, (got, want) in enumerate(zip(batch.shape[1:], tuple(input_shape)[1:]), start=1):
        if want is not None and got != want:
            raise ValueError(f"{who}: input shape {batch.shape} does not match the model's "
                             f"{tuple(input_shape)} (dim {axis}: {got} != {want})")
    return np.ascontiguousarray(batch, dtype=np.float32)


def run_chunked(fn: Callable[[np.ndarray], list[np.ndarray]], batch: np.ndarray,
                max_batch: int | None, fixed_batch: int | None = None) -> list[np.ndarray]:
    """Run `fn` over `batch` (B, ...) in chunks and concatenate the outputs along dim 0.

    max_batch: largest chunk (None: one call). fixed_batch: the model only takes exactly this batch; a
    short last chunk is zero-padded and its padded rows dropped from the outputs. Outputs whose trailing
    dims vary between chunks (an end2end detector's N boxes after NMS) are zero-padded to the largest.
    """
    n = batch.shape[0]
    step = fixed_batch or max_batch or max(n, 1)
    if n == 0:
        raise ValueError("empty batch (B = 0): nothing to run")
    if n == step and (fixed_batch is None or n == fixed_batch):
        return [np.asarray(o, dtype=np.float32) for o in fn(batch)]
    parts: list[list[np.ndarray]] = []
    for start in range(0, n, step):
        chunk = batch[start:start + step]
        k = chunk.shape[0]
        if fixed_batch is not None and k < fixed_batch:
            pad = np.zeros((fixed_batch - k,) + chunk.shape[1:], dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad], axis=0)
        parts.append([np.asarray(o, dtype=np.float32)[:k] for o in fn(chunk)])
    return [_concat_padded([p[i] for p in parts]) for i in range(len(parts[0]))]


def _concat_padded(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate along dim 0, zero-padding trailing dims to the largest (a no-op when they agree)."""
    if len({a.shape[1:] for a in arrays}) > 1:
        if len({a.ndim for a in arrays}) > 1:
            raise ValueError(f"chunk outputs differ in rank: {[a.shape for a in arrays]}")
        top = np.max([a.shape[1:] for a in arrays], axis=0)
        arrays = [np.pad(a, [(0, 0)] + [(0, int(t - d)) for t, d in zip(top, a.shape[1:])]) for a in arrays]
    return np.concatenate(arrays, axis=0)


def dim_or_none(d) -> int | None:
    """A static dimension as int; symbolic / unknown / negative dims as None."""
    if isinstance(d, (int, np.integer)) and int(d) > 0:
        return int(d)
    return None
