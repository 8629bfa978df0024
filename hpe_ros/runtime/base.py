"""What every network runner shares: the NetworkRunner protocol, batch checks, chunking, install hints.

A runner takes a preprocessed batch (an image batch (B, 3, H, W) float32, or another batched tensor such
as the lifter's (B, J + 1, 3)) and returns the network's raw outputs as numpy float32 arrays with leading
dim B. Decoding the outputs is the caller's job, so every runtime is interchangeable behind
`hpe_ros.runtime.create_runner`. The runners import this module; it imports none of them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np


class BackendUnavailable(RuntimeError):
    """A runtime (or a 2D backend's library) is not installed or cannot run here; the message says how to get it."""


RUNTIMES = ("onnxruntime", "tensorrt", "torch")
TFLITE_RUNTIME = "tflite"  # LiteRT, for .tflite files only (MediaPipe's networks): not a runtime for .onnx models

INSTALL_HINTS = {
    "onnxruntime": "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA / TensorRT providers); "
                   "or pip install 'hpe_ros[onnx]'",
    "tensorrt": "pip install tensorrt (needs an NVIDIA GPU, a CUDA driver and torch with CUDA); "
                "or pip install 'hpe_ros[tensorrt,torch]'",
    "torch": "pip install torch (see https://pytorch.org for a CUDA build); or pip install 'hpe_ros[torch]'",
    "tflite": "pip install ai-edge-litert; or pip install 'hpe_ros[blazepose]'",
}


class NetworkRunner(Protocol):
    """A loaded network. Shapes: input (B, ...) float32 (images (B, 3, H, W)); outputs (B, ...) float32 each."""

    name: str                       # e.g. "onnxruntime[CPUExecutionProvider]", "tensorrt[fp16]", "torch[cpu]"
    input_name: str
    input_shape: tuple              # (B, 3, H, W) or the lifter's (B, J + 1, 3); None for a dynamic dim
    output_names: list[str]
    max_batch: int | None           # largest batch one call to the runtime takes (None: unlimited)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, ...) float32 matching input_shape → outputs in `output_names` order, float32, leading dim B.

        Batches larger than `max_batch` (or than a model's fixed batch) are split internally.
        """

    def close(self) -> None:
        """Release the session / engine / device memory. The runner is unusable afterwards."""


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


def warm_up_runner(runner, largest: int) -> list[int]:
    """Batch sizes `runner` ran to reach its memory ceiling for batches of up to `largest` (its `warm_up`;
    runners without one, whose memory does not grow with new shapes, run nothing: [])."""
    warm = getattr(runner, "warm_up", None)
    return list(warm(max(int(largest), 1))) if warm is not None else []


def dim_or_none(d) -> int | None:
    """A static dimension as int; symbolic / unknown / negative dims as None."""
    if isinstance(d, (int, np.integer)) and int(d) > 0:
        return int(d)
    return None
