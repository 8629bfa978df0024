"""Running networks for any stage (2D pose, person detection, lifting): one NetworkRunner interface over
ONNX Runtime, TensorRT and torch (and LiteRT for .tflite files).

- base.py: the NetworkRunner protocol, BackendUnavailable, batch checks, chunking, install hints;
- runner.py: create_runner(runtime, model_path, **options), which imports a runtime only when asked for;
- onnxruntime_runner.py, tensorrt_runner.py, torch_runner.py: the runners (torch_runner also exports
  torch modules to ONNX);
- cache.py: the model cache folder and the TensorRT engine cache (when a built engine can be reused).
- tflite_runner.py: LiteRT (XNNPACK) for MediaPipe's .tflite networks; tflite_to_onnx.py converts those
  networks to ONNX (no TensorFlow) into the model cache, so the other runtimes run them too.
"""
from hpe_ros.runtime.base import RUNTIMES, BackendUnavailable, NetworkRunner
from hpe_ros.runtime.runner import create_runner

__all__ = ["RUNTIMES", "BackendUnavailable", "NetworkRunner", "create_runner"]
