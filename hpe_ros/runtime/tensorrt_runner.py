"""TensorRT 10 runner: ONNX → engine build (cached, see hpe_ros.runtime.cache), inference through
IExecutionContext.

tensorrt and torch are imported inside the functions, so this module imports on CPU-only machines.
Device buffers are torch CUDA tensors (torch is the one CUDA allocator hpe_ros can count on); the stream
is a torch.cuda.Stream.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from hpe_ros.runtime.base import INSTALL_HINTS, BackendUnavailable, check_batch, run_chunked
from hpe_ros.runtime.cache import (
    batch_profile,
    default_engine_path,
    engine_cache_key,
    read_sidecar,
    rebuild_reason,
    write_engine,
)

log = logging.getLogger("hpe_ros.tensorrt")


def import_tensorrt():
    """The tensorrt module (≥ 10), or BackendUnavailable saying why not."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"the tensorrt runtime is not installed ({exc}); {INSTALL_HINTS['tensorrt']}") from exc
    except Exception as exc:  # e.g. libnvinfer / CUDA libraries missing behind an installed wheel
        raise BackendUnavailable(f"tensorrt is installed but cannot load ({type(exc).__name__}: {exc}); "
                                 "check the NVIDIA driver and CUDA libraries") from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailable(f"hpe_ros needs TensorRT ≥ 10 (named-tensor API, execute_async_v3); "
                                 f"found {trt.__version__}: pip install -U tensorrt")
    return trt


def cuda_device(device=0):
    """(torch, torch.device, GPU name) for a CUDA device, or BackendUnavailable saying why not."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable("the tensorrt runner allocates its GPU buffers with torch, which is not "
                                 f"installed ({exc}); {INSTALL_HINTS['torch']}") from exc
    if not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES?)")
        raise BackendUnavailable(f"TensorRT needs a CUDA GPU, but torch.cuda.is_available() is False: {why} "
                                 f"(torch {torch.__version__})")
    if isinstance(device, str) and device.startswith("cuda"):
        dev = torch.device(device)
        index = dev.index or 0
    else:
        index = int(device)
    if not 0 <= index < torch.cuda.device_count():
        raise BackendUnavailable(f"CUDA device {index} requested, {torch.cuda.device_count()} visible")
    dev = torch.device("cuda", index)
    return torch, dev, torch.cuda.get_device_name(index)


_TRT_LOGGER = None


def trt_logger(trt):
    """One TensorRT ILogger for the process, forwarding to python logging ("hpe_ros.tensorrt")."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        sev = trt.ILogger.Severity
        levels = {sev.INTERNAL_ERROR: logging.CRITICAL, sev.ERROR: logging.ERROR, sev.WARNING: logging.WARNING,
                  sev.INFO: logging.DEBUG, sev.VERBOSE: logging.DEBUG}

        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                log.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

        _TRT_LOGGER = _Logger()
    return _TRT_LOGGER


def _profile_shapes(name: str, shape: tuple, prof: list[int], input_shape) -> tuple | None:
    """(min, opt, max) shapes for an input with dynamic dims, or None when it is fully static.

    Dim 0 (batch) follows the batch profile; other dynamic dims come from `input_shape` ((C, H, W) or
    (B, C, H, W)) or raise ValueError.
    """
    if all(d >= 0 for d in shape):
        return None
    override = list(input_shape) if input_shape is not None else None
    if override is not None and len(override) == len(shape) - 1:
        override = [None] + override
    mins, opts, maxs = [], [], []
    for axis, d in enumerate(shape):
        if d >= 0:
            mins.append(d), opts.append(d), maxs.append(d)
        elif axis == 0:
            mins.append(prof[0]), opts.append(prof[1]), maxs.append(prof[2])
        elif override is not None and override[axis]:
            v = int(override[axis])
            mins.append(v), opts.append(v), maxs.append(v)
        else:
            raise ValueError(f"input {name!r} has a dynamic dim {axis} (shape {shape}); pass input_shape=(C, H, W)")
    return tuple(mins), tuple(opts), tuple(maxs)


def build_engine(onnx_path, engine_path, enable_fp16: bool = True, max_batch: int = 8,
                 opt_batch: int | None = None, workspace_mb: int = 1024, input_shape=None, logger=None,
                 device=0, key: dict | None = None) -> Path:
    """Build a TensorRT engine from an ONNX file and write it (and its `<engine>.json` key) atomically.

    One optimization profile covers batch 1..max_batch (opt: opt_batch, default max_batch) when the ONNX
    batch dim is dynamic; other dims are the ONNX input's static ones (or `input_shape` for dynamic
    ones). Raises BackendUnavailable without TensorRT / CUDA, RuntimeError when parsing or building fails.
    """
    trt = import_tensorrt()
    torch, dev, gpu_name = cuda_device(device)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"tensorrt: ONNX file {str(onnx_path)!r} not found")
    prof = batch_profile(max_batch, opt_batch)
    if key is None:
        key = engine_cache_key(onnx_path, enable_fp16, max_batch, gpu_name, trt.__version__, opt_batch, input_shape)
    logger = logger or trt_logger(trt)
    log.warning("building a TensorRT engine for %s on %s (%s, batch %d..%d): a first build takes minutes; "
                "it is cached at %s", onnx_path.name, gpu_name, key["precision"], prof[0], prof[2], engine_path)
    t0 = time.monotonic()
    with torch.cuda.device(dev):
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n  " + "\n  ".join(errors or ["(no details)"]))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        built_precision = "fp32"
        if enable_fp16 and hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)
            built_precision = "fp16"
        elif enable_fp16:  # TensorRT 11 removed weak typing: precision comes from the ONNX graph's types
            log.warning("TensorRT %s has no FP16 builder flag (networks are strongly typed); building %s with "
                        "the ONNX file's own precision (convert it to fp16 first, e.g. with ModelOpt AutoCast, "
                        "for an fp16 engine)", trt.__version__, onnx_path.name)
            built_precision = "onnx-typed"
        profile = None
        for i in range(network.num_inputs):
            inp = network.get_input(i)
            shapes = _profile_shapes(inp.name, tuple(inp.shape), prof, input_shape)
            if shapes is not None:
                profile = profile or builder.create_optimization_profile()
                profile.set_shape(inp.name, *shapes)
        if profile is not None:
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} (errors above, logger "
                           "'hpe_ros.tensorrt'); try enable_fp16=False or a larger workspace_mb")
    write_engine(engine_path, serialized, key, {"onnx": str(onnx_path), "workspace_mb": int(workspace_mb),
                                                "built_precision": built_precision,
                                                "build_seconds": round(time.monotonic() - t0, 1)})
    log.warning("TensorRT engine for %s built in %.0f s: %s", onnx_path.name, time.monotonic() - t0, engine_path)
    return engine_path


def ensure_engine(onnx_path, engine_file_path: str = "", force_engine_update: bool = False,
                  enable_fp16: bool = True, max_batch: int = 8, opt_batch: int | None = None,
                  workspace_mb: int = 1024, device=0, input_shape=None) -> Path:
    """The engine for `onnx_path`, built only when the cache says so (see rebuild_reason)."""
    trt = import_tensorrt()
    _, _, gpu_name = cuda_device(device)
    if not Path(onnx_path).is_file():
        raise FileNotFoundError(f"tensorrt: ONNX file {str(onnx_path)!r} not found")
    key = engine_cache_key(onnx_path, enable_fp16, max_batch, gpu_name, trt.__version__, opt_batch, input_shape)
    engine_path = Path(engine_file_path).expanduser() if engine_file_path else default_engine_path(onnx_path, key)
    reason = rebuild_reason(engine_path, key, force_engine_update)
    if reason is None:
        log.info("TensorRT engine cache hit: %s", engine_path)
        return engine_path
    log.warning("TensorRT engine %s needs a build: %s", engine_path, reason)
    return build_engine(onnx_path, engine_path, enable_fp16=enable_fp16, max_batch=max_batch, opt_batch=opt_batch,
                        workspace_mb=workspace_mb, input_shape=input_shape, device=device, key=key)


def _torch_dtype(torch, trt, dt):
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool}
    for name, tdt in (("int64", torch.int64), ("bf16", torch.bfloat16), ("uint8", torch.uint8)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = tdt
    if dt not in table:
        raise RuntimeError(f"TensorRT tensor type {dt} is not supported by the runner")
    return table[dt]


def _output_allocator(trt, torch, device):
    """An IOutputAllocator backed by torch CUDA memory, for outputs whose shape depends on the data
    (e.g. the boxes left after NMS in an end2end detector)."""

    class _TorchOutputAllocator(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict = {}
            self.shapes: dict = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            buf = self.buffers.get(tensor_name)
            if buf is None or buf.numel() < size:  # torch's allocator aligns to ≥ 256 bytes
                buf = self.buffers[tensor_name] = torch.empty(max(int(size), 1), dtype=torch.uint8, device=device)
            return buf.data_ptr()

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

    return _TorchOutputAllocator()


class TensorRTRunner:
    """A TensorRT engine behind the NetworkRunner interface (parameter names as in Isaac ROS).

    model_file_path: the ONNX file ("" to run a prebuilt engine_file_path as is, unchecked).
    engine_file_path: where the engine lives ("" → <engine cache dir>/<onnx stem>-<key digest>.engine).
    force_engine_update: rebuild even when the cache matches. enable_fp16, max_batch, workspace_mb,
    opt_batch, input_shape: build options (see build_engine). device: CUDA device index or "cuda:N".
    """

    def __init__(self, model_file_path: str, engine_file_path: str = "", force_engine_update: bool = False,
                 enable_fp16: bool = True, max_batch: int = 8, workspace_mb: int = 1024, device=0,
                 opt_batch: int | None = None, input_shape=None, **_ignored):
        trt = import_tensorrt()
        torch, dev, gpu_name = cuda_device(device)
        self._trt, self._torch, self.device = trt, torch, dev
        build = dict(enable_fp16=enable_fp16, max_batch=max_batch, opt_batch=opt_batch,
                     workspace_mb=workspace_mb, device=device, input_shape=input_shape)
        if model_file_path:
            if not Path(model_file_path).is_file():
                raise FileNotFoundError(f"tensorrt: ONNX file {str(model_file_path)!r} not found")
            engine_path = ensure_engine(model_file_path, engine_file_path, force_engine_update, **build)
        else:
            engine_path = Path(engine_file_path).expanduser()
            if not engine_file_path or not engine_path.is_file():
                raise FileNotFoundError(f"tensorrt: engine file {str(engine_file_path)!r} not found "
                                        "(and no model_file_path to build it from)")
            log.warning("TensorRT: running prebuilt engine %s as is (no ONNX given, so it cannot be checked "
                        "against this GPU and TensorRT version)", engine_path)
        self.engine_path = Path(engine_path)
        self._runtime = trt.Runtime(trt_logger(trt))
        with torch.cuda.device(dev):
            engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is None and model_file_path:
                log.warning("TensorRT could not load %s; rebuilding it once", self.engine_path)
                ensure_engine(model_file_path, str(self.engine_path), True, **build)
                engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {self.engine_path} (built by another "
                                   f"TensorRT version or for another GPU?); rebuild it (force_engine_update)")
            self.engine = engine
            self.context = engine.create_execution_context()
            self.stream = torch.cuda.Stream(device=dev)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ValueError(f"{self.engine_path}: expected one image input, the engine has {inputs}")
        self.input_name: str = inputs[0]
        self.output_names: list[str] = [n for n in names if n not in inputs]
        shape = tuple(engine.get_tensor_shape(self.input_name))
        self.input_shape: tuple = tuple(None if d < 0 else int(d) for d in shape)
        if self.input_shape[0] is None:
            self._fixed_batch = None
            self.max_batch: int | None = int(engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        else:
            self._fixed_batch = self.max_batch = self.input_shape[0]
        self._dtypes = {n: _torch_dtype(torch, trt, engine.get_tensor_dtype(n)) for n in names}
        self._allocator = None          # IOutputAllocator for data-dependent output shapes, made on demand
        self._allocated: set[str] = set()
        record = read_sidecar(self.engine_path) or {}
        precision = record.get("built_precision") or (record.get("key") or {}).get("precision", "engine")
        self.name = f"tensorrt[{precision}]"
        self.gpu_name = gpu_name

    def _run_once(self, chunk: np.ndarray) -> list[np.ndarray]:
        torch, ctx = self._torch, self.context
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            x = torch.from_numpy(chunk).to(self.device, dtype=self._dtypes[self.input_name])
            if not ctx.set_input_shape(self.input_name, tuple(chunk.shape)):
                raise ValueError(f"{self.name}: input shape {chunk.shape} is outside the engine's profile")
            ctx.set_tensor_address(self.input_name, x.data_ptr())
            outputs: list = []
            for name in self.output_names:
                shape = tuple(ctx.get_tensor_shape(name))
                if any(d < 0 for d in shape):  # known only after the run: TensorRT asks the allocator
                    if self._allocator is None:
                        self._allocator = _output_allocator(self._trt, torch, self.device)
                    if name not in self._allocated:
                        ctx.set_output_allocator(name, self._allocator)
                        self._allocated.add(name)
                    outputs.append(None)
                    continue
                out = torch.empty(shape, dtype=self._dtypes[name], device=self.device)
                ctx.set_tensor_address(name, out.data_ptr())
                outputs.append(out)
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"{self.name}: execute_async_v3 failed (see the 'hpe_ros.tensorrt' log)")
            self.stream.synchronize()
            for i, name in enumerate(self.output_names):
                if outputs[i] is None:
                    shape = self._allocator.shapes[name]
                    dtype = self._dtypes[name]
                    nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
                    buf = self._allocator.buffers.get(name)
                    outputs[i] = (torch.zeros(shape, dtype=dtype) if nbytes == 0 or buf is None
                                  else buf[:nbytes].view(dtype).reshape(shape))
            host = [o.float().cpu() for o in outputs]
        return [h.numpy() for h in host]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """batch: (B, 3, H, W) float32 → outputs (B, ...) float32 in output_names order."""
        if self.context is None:
            raise RuntimeError(f"{self.name}: run() after close()")
        batch = check_batch(batch, self.input_shape, self.name)
        return run_chunked(self._run_once, batch, self.max_batch, self._fixed_batch)

    def close(self) -> None:
        self.context = None
        self.engine = None
        self._runtime = None
        self._allocator = None

    def __repr__(self) -> str:
        return f"TensorRTRunner({str(self.engine_path)!r}, {self.name}, input {self.input_shape})"
