"""Where models and built engines are kept, and when a cached TensorRT engine can be reused.

Pure file logic (no GPU, no TensorRT import), so it is testable anywhere. An engine is specific to the GPU
model, the TensorRT version, the ONNX bytes, the precision and the batch profile. Each engine file
`<name>.engine` has a sidecar `<name>.engine.json` holding that key; a missing engine, a missing or
different key, or force_engine_update rebuilds it (hpe_ros.runtime.tensorrt_runner.ensure_engine).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

KEY_FORMAT = 1
ENGINE_SUFFIX = ".engine"


def model_cache_dir() -> Path:
    """Where fetched models and built engines live: $HPE_ROS_MODEL_DIR, else ~/.cache/hpe_ros/models.

    ($XDG_CACHE_HOME replaces ~/.cache when it is set.) The folder is not created here.
    """
    env = os.environ.get("HPE_ROS_MODEL_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
    return Path(base).expanduser() / "hpe_ros" / "models"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def engine_cache_dir() -> Path:
    """Built engines: $HPE_ROS_ENGINE_DIR, else <model cache dir>/engines (not created here)."""
    env = os.environ.get("HPE_ROS_ENGINE_DIR", "").strip()
    return Path(env).expanduser() if env else model_cache_dir() / "engines"


def batch_profile(max_batch: int, opt_batch: int | None = None) -> list[int]:
    """[min, opt, max] of the batch dim's optimization profile (opt defaults to max)."""
    max_batch = int(max_batch)
    if max_batch < 1:
        raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
    opt = max_batch if opt_batch is None else int(opt_batch)
    if not 1 <= opt <= max_batch:
        raise ValueError(f"opt_batch must be in 1..max_batch ({max_batch}), got {opt}")
    return [1, opt, max_batch]


def engine_cache_key(onnx_path, enable_fp16: bool, max_batch: int, gpu_name: str, trt_version: str,
                     opt_batch: int | None = None, input_shape=None) -> dict:
    """What an engine depends on: GPU name, TensorRT version, ONNX sha256, precision, batch profile.

    input_shape: the (C, H, W) / (B, C, H, W) override given to build_engine, if any (None otherwise).
    """
    return {
        "format": KEY_FORMAT,
        "gpu_name": str(gpu_name),
        "tensorrt_version": str(trt_version),
        "onnx_sha256": sha256_file(onnx_path),
        "precision": "fp16" if enable_fp16 else "fp32",
        "batch_profile": batch_profile(max_batch, opt_batch),
        "input_shape": None if input_shape is None else [None if d is None else int(d) for d in input_shape],
    }


def key_digest(key: dict) -> str:
    """First 12 hex digits of the sha256 of the key's canonical JSON."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_engine_path(onnx_path, key: dict) -> Path:
    """<engine cache dir>/<onnx stem>-<key digest>.engine"""
    return engine_cache_dir() / f"{Path(onnx_path).stem}-{key_digest(key)}{ENGINE_SUFFIX}"


def sidecar_path(engine_path) -> Path:
    """The cache record beside an engine: `<engine>.json`."""
    return Path(str(engine_path) + ".json")


def read_sidecar(engine_path) -> dict | None:
    try:
        data = json.loads(sidecar_path(engine_path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def rebuild_reason(engine_path, key: dict, force: bool = False) -> str | None:
    """Why the engine at `engine_path` must be (re)built for `key`, or None when it can be reused."""
    engine_path = Path(engine_path)
    if force:
        return "force_engine_update is set"
    if not engine_path.is_file():
        return f"no engine at {engine_path}"
    record = read_sidecar(engine_path)
    if record is None:
        return f"no readable cache record {sidecar_path(engine_path).name} beside the engine"
    stored = record.get("key", record)
    changed = [f"{k}: {stored.get(k)!r} → {key[k]!r}" for k in key if stored.get(k) != key[k]]
    changed += [f"{k}: {stored[k]!r} → (absent)" for k in stored if k not in key]
    if changed:
        return "built for a different configuration (" + "; ".join(changed) + ")"
    return None


def needs_rebuild(engine_path, key: dict, force: bool = False) -> bool:
    """True when the engine is missing, force is set, or its recorded key differs from `key`."""
    return rebuild_reason(engine_path, key, force) is not None


def write_engine(engine_path, data, key: dict, extra: dict | None = None) -> Path:
    """Write serialized engine bytes and the `<engine>.json` key record, each atomically.

    The old record is removed first, so a crash between the two writes leaves an engine without a record
    (rebuilt next time), never a new engine described by an old key.
    """
    from hpe_ros.io.atomic import atomic_path, write_text_atomic

    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        sidecar_path(engine_path).unlink()
    with atomic_path(engine_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    record = {"key": key, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}
    write_text_atomic(sidecar_path(engine_path), json.dumps(record, indent=2, sort_keys=True) + "\n")
    return engine_path
