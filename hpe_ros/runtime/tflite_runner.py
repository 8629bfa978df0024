"""LiteRT (TFLite) runner: a .tflite network on the CPU with XNNPACK, behind the NetworkRunner interface.

Takes the same (B, 3, H, W) float32 batch as the other runners and feeds the interpreter NHWC. MediaPipe's
.tflite graphs have batch 1 and reshapes that fix it, so a batch runs image by image (max_batch 1).
Outputs keep the .tflite layout, which is also what `hpe_ros.runtime.tflite_to_onnx` produces.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hpe_ros.runtime.base import check_batch, require, run_chunked


class TfliteRunner:
    """One ai_edge_litert Interpreter (XNNPACK delegate on by default). threads: 0 = LiteRT's default."""

    def __init__(self, model_path: str, threads: int = 0, **_ignored):
        litert = require("ai_edge_litert.interpreter", "tflite")
        path = Path(str(model_path)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"tflite: model file {str(model_path)!r} not found")
        try:
            self.interpreter = litert.Interpreter(model_path=str(path), num_threads=int(threads) or None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RuntimeError(f"LiteRT could not load {path}: {exc}") from exc
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise ValueError(f"{path}: expected one NHWC image input, the model has "
                             f"{[tuple(i['shape']) for i in inputs]}")
        _, h, w, c = (int(d) for d in inputs[0]["shape"])
        self.model_path = str(path)
        self._input_index = inputs[0]["index"]
        self._outputs = self.interpreter.get_output_details()
        self.input_name: str = inputs[0]["name"]
        self.input_shape: tuple = (None, c, h, w)
        self.output_names: list[str] = [o["name"] for o in self._outputs]
        self.name = "tflite[xnnpack]"
        self.max_batch: int | None = 1

    def _run_once(self, chunk: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self._input_index, np.ascontiguousarray(chunk.transpose(0, 2, 3, 1)))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(o["index"]).copy() for o in self._outputs]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, 3, H, W) float32 → outputs (B, ...) float32 in output_names order (.tflite layout)."""
        if self.interpreter is None:
            raise RuntimeError(f"{self.name}: run() after close()")
        batch = check_batch(batch, self.input_shape, self.name)
        return run_chunked(self._run_once, batch, self.max_batch)

    def close(self) -> None:
        self.interpreter = None

    def __repr__(self) -> str:
        return f"TfliteRunner({self.model_path!r}, input {self.input_shape})"
