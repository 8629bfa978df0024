"""`hpe-ros models`: list the shipped manifests, and fail clearly (exit 2) where a file or runtime is missing."""
from __future__ import annotations

import pytest

from hpe_ros.cli import main


def test_models_list_shows_every_manifest(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("rtmpose-t", "rtmpose-s", "rtmpose-m", "hrnet-w32", "vitpose-b", "rtmdet-nano"):
        assert name in out
    assert "no published download" in out  # hrnet-w32 / vitpose-b ship no ONNX


def test_models_fetch_without_a_published_file_says_how_to_export(capsys):
    assert main(["models", "fetch", "vitpose-b"]) == 2
    err = capsys.readouterr().err
    assert "no download URL is published" in err and "export" in err.lower()


def test_models_fetch_needs_a_name(capsys):
    assert main(["models", "fetch"]) == 2
    assert "give a model name" in capsys.readouterr().err


def test_build_engine_without_tensorrt_fails_clearly(tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed; this test covers its absence")
    except ImportError:
        pass
    from hpe_ros.detect2d.manifest import load_manifest
    from hpe_ros.runtime.torch_runner import export_onnx

    monkeypatch.setenv("HPE_ROS_MODEL_DIR", str(tmp_path))
    m = load_manifest("rtmpose-t")
    export_onnx(torch.nn.Conv2d(3, 17, 3, padding=1), tmp_path / m.file, tuple(m.input_size))
    assert main(["models", "build-engine", "rtmpose-t"]) == 2
    assert "tensorrt" in capsys.readouterr().err.lower()
    assert not list(tmp_path.rglob("*.engine"))  # nothing half-built left behind
