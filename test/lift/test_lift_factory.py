"""make_lifter: the model by name (default, path, placeholder), the runtime by name, one-line errors."""
from pathlib import Path

import numpy as np
import pytest

from hpe_ros.lift import factory
from hpe_ros.lift.factory import PLACEHOLDER, make_lifter
from hpe_ros.lift.placeholder import ApparentSizeLifter


def test_placeholder_by_name_whatever_the_runtime():
    lifter = make_lifter(PLACEHOLDER, runtime="tensorrt", torso_m=0.4)
    assert isinstance(lifter, ApparentSizeLifter) and lifter.torso_m == 0.4 and lifter.name == PLACEHOLDER


def test_missing_default_model_warns_once_and_runs_the_placeholder(monkeypatch, tmp_path):
    monkeypatch.setattr(factory, "default_model_path", lambda: tmp_path / "lifter.onnx")
    warnings = []
    lifter = make_lifter("default", warn=warnings.append)
    assert isinstance(lifter, ApparentSizeLifter)
    assert len(warnings) == 1 and "is not installed" in warnings[0] and str(tmp_path) in warnings[0]


def test_default_is_the_shipped_onnx_lifter_on_onnxruntime():
    pytest.importorskip("onnxruntime")
    lifter = make_lifter("default", providers="cpu", threads=1)
    assert lifter.name == "learned[lifter.onnx, onnxruntime[CPUExecutionProvider]]"
    points3d, conf = lifter.lift(np.diag([500.0, 500.0, 1.0]), np.zeros((0, 17, 2)), np.zeros((0, 17)))
    assert points3d.shape == (0, 17, 3) and conf.shape == (0, 17)


@pytest.mark.parametrize("name, runtime, error, message", [
    ("lifter.onnx", "tflite", ValueError, "unknown runtime 'tflite'; choose one of onnxruntime, tensorrt, torch"),
    ("lifter.onnx", "torch", ValueError, "the torch runtime takes .pt checkpoints"),
    ("lifter.txt", "onnxruntime", ValueError, "expected a .onnx file or a .pt checkpoint"),
    ("missing.onnx", "onnxruntime", FileNotFoundError, "lifter model not found: "),
])
def test_bad_requests_are_one_line_errors(tmp_path, name, runtime, error, message):
    for existing in ("lifter.onnx", "lifter.txt"):
        (tmp_path / existing).write_bytes(b"x")
    with pytest.raises(error, match=message) as info:
        make_lifter(str(tmp_path / name), runtime=runtime)
    assert "\n" not in str(info.value)


def test_a_broken_model_file_is_a_runtime_error_naming_it(tmp_path):
    pytest.importorskip("onnxruntime")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx file")
    with pytest.raises(RuntimeError, match=f"cannot load lifter model {broken} on onnxruntime"):
        make_lifter(str(broken), providers="cpu")


def test_a_file_name_is_also_looked_up_in_config(monkeypatch, tmp_path):
    found = tmp_path / "config" / "mine.txt"
    monkeypatch.setattr(factory, "resolve_path", lambda name: found if name == "mine.txt" else Path(name))
    with pytest.raises(ValueError, match=f"lifter model {found}: expected"):
        make_lifter("mine.txt")
