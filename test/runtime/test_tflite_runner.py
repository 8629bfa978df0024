"""LiteRT runner: MediaPipe's .tflite networks behind the NetworkRunner interface, agreeing with ONNX Runtime."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert: pip install '.[blazepose]'")
mediapipe = pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14 (the BlazePose weights)")

from hpe_ros.runtime import create_runner  # noqa: E402

MODULES = Path(mediapipe.__file__).parent / "modules"
DETECTOR = MODULES / "pose_detection" / "pose_detection.tflite"
LANDMARK = MODULES / "pose_landmark" / "pose_landmark_full.tflite"


def test_runner_protocol_and_batches_run_image_by_image():
    runner = create_runner("tflite", str(DETECTOR), threads=1)
    assert runner.name == "tflite[xnnpack]" and runner.input_shape == (None, 3, 224, 224)
    assert runner.output_names == ["Identity", "Identity_1"] and runner.max_batch == 1
    batch = np.random.default_rng(0).uniform(-1, 1, (3, 3, 224, 224)).astype(np.float32)
    boxes, scores = runner.run(batch)
    assert boxes.shape == (3, 2254, 12) and scores.shape == (3, 2254, 1) and boxes.dtype == np.float32
    single = runner.run(batch[1:2])
    np.testing.assert_array_equal(single[0][0], boxes[1])
    with pytest.raises(ValueError, match="does not match"):
        runner.run(np.zeros((1, 3, 256, 256), np.float32))
    runner.close()
    with pytest.raises(RuntimeError, match="after close"):
        runner.run(batch)


def test_tflite_and_onnxruntime_runners_agree(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tflite")
    from hpe_ros.runtime.tflite_to_onnx import converted_onnx

    batch = np.random.default_rng(1).uniform(0, 1, (2, 3, 256, 256)).astype(np.float32)
    lite = create_runner("tflite", str(LANDMARK))
    ort = create_runner("onnxruntime", str(converted_onnx(LANDMARK, tmp_path)), providers="cpu")
    assert lite.output_names == ort.output_names
    for name, a, b in zip(lite.output_names, lite.run(batch), ort.run(batch)):
        assert a.shape == b.shape, name
        assert np.abs(a - b).max() <= 2e-3 * max(1.0, np.abs(a).max()) + 1e-3, name


def test_missing_tflite_file_is_named():
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        create_runner("tflite", "/nonexistent/nope.tflite")
