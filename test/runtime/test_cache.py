"""Model cache folder and TensorRT engine cache: the key an engine depends on, where it lives, when to rebuild.

Pure file logic: no GPU, TensorRT or torch needed (the ONNX file is only hashed, so any bytes do).
"""
import json

import pytest

from hpe_ros.runtime import cache


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "model" / "tiny.onnx"
    path.parent.mkdir()
    path.write_bytes(b"\x08\x07stand-in ONNX bytes" * 100)
    return path


def key_for(onnx, **kw):
    args = dict(enable_fp16=True, max_batch=8, gpu_name="NVIDIA H100", trt_version="10.3.0")
    args.update(kw)
    return cache.engine_cache_key(onnx, **args)


def test_engine_cache_key_fields(onnx_file):
    import hashlib

    key = key_for(onnx_file)
    assert key["gpu_name"] == "NVIDIA H100" and key["tensorrt_version"] == "10.3.0"
    assert key["onnx_sha256"] == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert key["precision"] == "fp16" and key["batch_profile"] == [1, 8, 8]
    assert key_for(onnx_file, opt_batch=2)["batch_profile"] == [1, 2, 8]
    json.dumps(key)  # serialisable as the sidecar
    with pytest.raises(ValueError):
        key_for(onnx_file, max_batch=0)
    with pytest.raises(ValueError):
        key_for(onnx_file, opt_batch=9)


def test_default_engine_path_uses_stem_and_key_digest(onnx_file, monkeypatch, tmp_path):
    monkeypatch.setenv("HPE_ROS_ENGINE_DIR", str(tmp_path / "engines"))
    key = key_for(onnx_file)
    path = cache.default_engine_path(onnx_file, key)
    assert path.parent == tmp_path / "engines"
    assert path.name == f"tiny-{cache.key_digest(key)}.engine" and len(cache.key_digest(key)) == 12
    assert cache.default_engine_path(onnx_file, key_for(onnx_file, enable_fp16=False)) != path
    monkeypatch.delenv("HPE_ROS_ENGINE_DIR")
    monkeypatch.setenv("HPE_ROS_MODEL_DIR", str(tmp_path / "models"))
    assert cache.engine_cache_dir() == tmp_path / "models" / "engines"


def test_needs_rebuild_decisions(onnx_file, tmp_path):
    onnx = tmp_path / "net.onnx"
    onnx.write_bytes(onnx_file.read_bytes())
    engine = tmp_path / "net.engine"
    key = key_for(onnx)

    assert cache.needs_rebuild(engine, key)  # no engine yet
    assert "no engine" in cache.rebuild_reason(engine, key)
    cache.write_engine(engine, b"serialized-engine", key)
    assert engine.read_bytes() == b"serialized-engine"
    assert json.loads(cache.sidecar_path(engine).read_text())["key"] == key
    assert cache.sidecar_path(engine).name == "net.engine.json"

    assert not cache.needs_rebuild(engine, key)  # identical → reuse
    assert not cache.needs_rebuild(engine, key_for(onnx))  # recomputed from the same bytes → reuse
    assert cache.needs_rebuild(engine, key, force=True)  # force → rebuild
    assert cache.needs_rebuild(engine, key_for(onnx, enable_fp16=False))  # precision
    assert cache.needs_rebuild(engine, key_for(onnx, gpu_name="NVIDIA GeForce RTX 4090"))  # GPU
    assert cache.needs_rebuild(engine, key_for(onnx, trt_version="10.4.0"))  # TensorRT version
    assert cache.needs_rebuild(engine, key_for(onnx, max_batch=16))  # batch profile
    reason = cache.rebuild_reason(engine, key_for(onnx, enable_fp16=False))
    assert "precision" in reason and "'fp16' → 'fp32'" in reason

    onnx.write_bytes(onnx.read_bytes() + b"\0")  # ONNX bytes change → rebuild
    assert cache.needs_rebuild(engine, key_for(onnx))
    assert "onnx_sha256" in cache.rebuild_reason(engine, key_for(onnx))

    cache.sidecar_path(engine).unlink()  # an engine without its record is not trusted
    assert cache.needs_rebuild(engine, key)
    cache.sidecar_path(engine).write_text("{not json")
    assert cache.needs_rebuild(engine, key)


def test_write_engine_replaces_the_old_record_first(tmp_path, onnx_file):
    engine = tmp_path / "sub" / "m.engine"
    old, new = key_for(onnx_file), key_for(onnx_file, enable_fp16=False)
    cache.write_engine(engine, b"old", old)
    cache.write_engine(engine, b"new", new)
    assert engine.read_bytes() == b"new"
    assert not cache.needs_rebuild(engine, new) and cache.needs_rebuild(engine, old)
    assert sorted(p.name for p in engine.parent.iterdir()) == ["m.engine", "m.engine.json"]
