"""create_runner: open a network file on a runtime by name ("onnxruntime", "tensorrt" or "torch").

The runtime modules are imported only when asked for, so a machine without TensorRT (or torch) opens
ONNX models all the same.
"""
from __future__ import annotations

from pathlib import Path

from hpe_ros.runtime.base import RUNTIMES, TFLITE_RUNTIME, NetworkRunner

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def create_runner(runtime: str, model_path: str, **options) -> NetworkRunner:
    """Open `model_path` with `runtime` ("onnxruntime", "tensorrt" or "torch").

    onnxruntime: an .onnx file; options providers ("auto" | list), threads.
    tensorrt: an .onnx file (the engine is built and cached) or a serialized .engine/.plan file;
      options as TensorRTRunner (engine_file_path, force_engine_update, enable_fp16, max_batch, ...).
    torch: a TorchScript file (torch.jit.save); options device ("auto" | "cpu" | "cuda[:N]").
    tflite: a .tflite file on LiteRT with XNNPACK; option threads.

    Raises FileNotFoundError naming the path when the model file is missing, BackendUnavailable (with an
    install hint) when the runtime is not installed or cannot run here, ValueError for an unknown runtime.
    """
    runtime = str(runtime).strip().lower()
    known = RUNTIMES + (TFLITE_RUNTIME,)
    if runtime not in known:
        raise ValueError(f"unknown network runtime {runtime!r}; choose one of {', '.join(known)}")
    path = Path(str(model_path)).expanduser()
    if not str(model_path) or not path.is_file():
        raise FileNotFoundError(f"{runtime}: model file {str(model_path)!r} not found "
                                "(hpe-ros models fetch NAME downloads the published ones)")
    if runtime == TFLITE_RUNTIME:
        from hpe_ros.runtime.tflite_runner import TfliteRunner

        return TfliteRunner(str(path), **options)
    if runtime == "onnxruntime":
        from hpe_ros.runtime.onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(str(path), **options)
    if runtime == "tensorrt":
        from hpe_ros.runtime.tensorrt_runner import TensorRTRunner

        if path.suffix.lower() in ENGINE_SUFFIXES:
            options.setdefault("engine_file_path", str(path))
            return TensorRTRunner("", **options)
        return TensorRTRunner(str(path), **options)
    from hpe_ros.runtime.torch_runner import TorchRunner

    return TorchRunner(str(path), **options)
