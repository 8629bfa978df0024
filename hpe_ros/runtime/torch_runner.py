"""torch runner (nn.Module or TorchScript file) and the ONNX export used by tests and tools."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from hpe_ros.runtime.base import BackendUnavailable, check_batch, require, run_chunked


def _output_names(outputs, given: list[str] | None) -> list[str]:
    """Names for a module's outputs: the given ones, a dict's keys, else "output" / "output0..N-1"."""
    if given:
        return list(given)
    if isinstance(outputs, dict):
        return [str(k) for k in outputs]
    if isinstance(outputs, (list, tuple)):
        return ["output"] if len(outputs) == 1 else [f"output{i}" for i in range(len(outputs))]
    return ["output"]


def _as_list(outputs) -> list:
    if isinstance(outputs, dict):
        return list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def _pick_device(torch, device: str):
    device = str(device or "auto").strip().lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"torch device {device!r} requested but CUDA is not available "
                                 f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
    return dev


class TorchRunner:
    """Runs an nn.Module (or a TorchScript file) under torch.inference_mode.

    model: nn.Module or path to a TorchScript file (torch.jit.load). device: "auto" (cuda when
    available) | "cpu" | "cuda[:N]". input_size (w, h): optional, fixes input_shape and lets the runner
    name its outputs up front (otherwise they are named on the first run). output_names: optional names
    (default: "output" for one output, "output0..N-1" for several, a dict output's keys), the same rule
    export_onnx uses, so both runners agree. max_batch: split larger batches (None: one call).
    """

    def __init__(self, model, device: str = "auto", input_size: tuple[int, int] | None = None,
                 output_names: list[str] | None = None, max_batch: int | None = None,
                 input_name: str = "input", **_ignored):
        torch = require("torch", "torch")
        self._torch = torch
        self.device = _pick_device(torch, device)
        if isinstance(model, (str, os.PathLike)):
            path = Path(model).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"torch: model file {str(model)!r} not found")
            try:
                with warnings.catch_warnings():  # torch ≥ 2.10 marks TorchScript deprecated; it still works
                    warnings.simplefilter("ignore", DeprecationWarning)
                    model = torch.jit.load(str(path), map_location=self.device)
            except Exception as exc:
                raise RuntimeError(f"torch could not load {path} as TorchScript (torch.jit.save): {exc}") from exc
            self.model_path = str(path)
        else:
            if not isinstance(model, torch.nn.Module):
                raise TypeError(f"TorchRunner: model must be an nn.Module or a TorchScript path, got {type(model)}")
            self.model_path = ""
        self.model = model.to(self.device).eval()
        self.name = f"torch[{self.device}]"
        self.input_name = input_name
        self.max_batch = int(max_batch) if max_batch else None
        self._given_names = list(output_names) if output_names else None
        self.output_names: list[str] = list(output_names) if output_names else []
        if input_size is not None:
            w, h = (int(v) for v in input_size)
            self.input_shape: tuple = (None, 3, h, w)
            if not self.output_names:  # one probe run names the outputs
                probe = self._forward(np.zeros((1, 3, h, w), dtype=np.float32), keep_raw=True)
                self.output_names = _output_names(probe, None)
        else:
            self.input_shape = (None, 3, None, None)

    def _forward(self, chunk: np.ndarray, keep_raw: bool = False):
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(chunk).to(self.device)
            out = self.model(x)
        if keep_raw:
            return out
        if not self.output_names:
            self.output_names = _output_names(out, self._given_names)
        return [o.detach().float().cpu().numpy() for o in _as_list(out)]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, 3, H, W) float32 → outputs (B, ...) float32 in output_names order."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: run() after close()")
        batch = check_batch(batch, self.input_shape, self.name)
        return run_chunked(self._forward, batch, self.max_batch)

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"TorchRunner({self.model_path or 'nn.Module'}, {self.name})"


def export_onnx(module, path, input_size: tuple[int, int], dynamic_batch: bool = True, opset: int = 17,
                output_names: list[str] | None = None, input_name: str = "input", batch: int = 1) -> Path:
    """Export an nn.Module taking (B, 3, H, W) to ONNX at `path` (written atomically). Returns the path.

    input_size: (w, h). dynamic_batch: the batch dim is symbolic ("batch") on the input and every output;
    otherwise it is fixed to `batch`. Uses the TorchScript-based exporter (torch.onnx.export(dynamo=False)),
    which needs only the onnx package. Output names default to "output" / "output0..N-1" (or a dict
    output's keys), matching TorchRunner.
    """
    torch = require("torch", "torch")
    from hpe_ros.io.atomic import atomic_path

    w, h = (int(v) for v in input_size)
    path = Path(path)
    module = module.eval().cpu()
    dummy = torch.zeros(int(batch), 3, h, w)
    with torch.inference_mode():
        probe = module(dummy)
    names = _output_names(probe, output_names)
    if len(names) != len(_as_list(probe)):
        raise ValueError(f"export_onnx: {len(names)} output names for {len(_as_list(probe))} outputs")
    dynamic_axes = ({name: {0: "batch"} for name in [input_name] + names} if dynamic_batch else None)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # torch ≥ 2.9 warns that the TorchScript exporter is legacy; it is the one that needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(module, (dummy,), str(tmp), dynamo=False, input_names=[input_name],
                          output_names=names, dynamic_axes=dynamic_axes, opset_version=int(opset),
                          do_constant_folding=True)
    return path
