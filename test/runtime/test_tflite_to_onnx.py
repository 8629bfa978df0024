"""TFLite -> ONNX conversion of BlazePose's detector and landmark networks, checked against the TFLite interpreter.

Needs mediapipe==0.10.14 (the weights), tflite + ai-edge-litert (reading and the reference interpreter),
onnxruntime and scikit-image; skipped where one is missing. Measured max abs differences (ONNX Runtime CPU
vs LiteRT with XNNPACK) on the astronaut photograph: detector boxes 7e-4 (values up to 740), scores 2e-4;
landmarks 7e-4 (crop px, up to 340), presence 8e-6, segmentation logits 0.22 (up to 1.7e3),
heatmap logits 3e-4, world landmarks 7e-6 m.
"""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite", reason="needs the tflite schema package: pip install '.[blazepose]'")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
mediapipe = pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14 (the BlazePose weights)")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert: pip install '.[blazepose]'")

from hpe_ros.runtime.tflite_to_onnx import convert_tflite, converted_onnx  # noqa: E402

MODULES = Path(mediapipe.__file__).parent / "modules"
MODELS = {"detector": (MODULES / "pose_detection" / "pose_detection.tflite", (-1.0, 1.0)),
          "landmark": (MODULES / "pose_landmark" / "pose_landmark_full.tflite", (0.0, 1.0))}
# Largest allowed |onnx - tflite| per output on the real image (float32 kernels differ in summation order).
TOLERANCE = {"detector": {"Identity": 5e-3, "Identity_1": 2e-3},
             "landmark": {"Identity": 5e-3, "Identity_1": 1e-4, "Identity_2": 1.0, "Identity_3": 2e-3,
                          "Identity_4": 1e-4}}


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory):
    cache = tmp_path_factory.mktemp("blazepose_cache")
    return {name: converted_onnx(path, cache) for name, (path, _) in MODELS.items()}


def _tflite_outputs(model: Path, batch_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of the official interpreter, one image at a time (the .tflite has batch 1)."""
    interp = litert.Interpreter(model_path=str(model))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs: dict[str, list] = {}
    for image in batch_nhwc:
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        for detail in interp.get_output_details():
            outs.setdefault(detail["name"], []).append(interp.get_tensor(detail["index"])[0].copy())
    return {k: np.stack(v) for k, v in outs.items()}


def _onnx_outputs(path: Path, batch_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(batch_nhwc.transpose(0, 3, 1, 2))}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def _astronaut_crop(size: int, value_range: tuple) -> np.ndarray:
    """(1, size, size, 3) float32: the astronaut photograph (512 x 512) in the network's size and value range."""
    import cv2
    from skimage.data import astronaut

    crop = cv2.resize(astronaut(), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    lo, hi = value_range
    return (crop * (hi - lo) + lo)[None]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_matches_tflite_on_a_real_image(name, onnx_paths):
    pytest.importorskip("skimage", reason="needs scikit-image for the test photograph")
    model, value_range = MODELS[name]
    size = 224 if name == "detector" else 256
    batch = _astronaut_crop(size, value_range)
    ref, got = _tflite_outputs(model, batch), _onnx_outputs(onnx_paths[name], batch)
    assert set(got) == set(ref)
    for out, expected in ref.items():
        assert got[out].shape == expected.shape, out
        diff = float(np.abs(got[out] - expected).max())
        assert diff <= TOLERANCE[name][out], f"{name}/{out}: max abs diff {diff:.3g}"
    if name == "landmark":  # the person is found, so the comparison covers meaningful values
        assert ref["Identity_1"][0, 0] > 0.5


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_matches_tflite_on_random_inputs(name, onnx_paths):
    model, (lo, hi) = MODELS[name]
    size = 224 if name == "detector" else 256
    batch = np.random.default_rng(7).uniform(lo, hi, (2, size, size, 3)).astype(np.float32)
    ref, got = _tflite_outputs(model, batch), _onnx_outputs(onnx_paths[name], batch)
    for out, expected in ref.items():
        scale = max(1.0, float(np.abs(expected).max()))
        diff = float(np.abs(got[out] - expected).max())
        # The segmentation head is ill-conditioned on noise (logits up to ~1.6e3): LiteRT's own XNNPACK and
        # reference kernels differ by 1.4 there, so it gets a relative bound 20x looser than the rest.
        rel = 2e-3 if (name, out) == ("landmark", "Identity_2") else 1e-4
        assert diff <= rel * scale + 1e-3, f"{name}/{out}: max abs diff {diff:.3g} (values up to {scale:.3g})"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_batch_of_n_equals_n_single_calls(name, onnx_paths):
    _, (lo, hi) = MODELS[name]
    size = 224 if name == "detector" else 256
    batch = np.random.default_rng(3).uniform(lo, hi, (3, size, size, 3)).astype(np.float32)
    together = _onnx_outputs(onnx_paths[name], batch)
    alone = [_onnx_outputs(onnx_paths[name], batch[i:i + 1]) for i in range(3)]
    for out, value in together.items():
        assert value.shape[0] == 3
        np.testing.assert_allclose(value, np.concatenate([a[out] for a in alone]), rtol=1e-5, atol=1e-4)


def test_onnx_graph_is_nchw_with_a_dynamic_batch(onnx_paths):
    import onnx

    model = onnx.load(str(onnx_paths["landmark"]))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 256, 256]
    assert {n.op_type for n in model.graph.node} <= {"Conv", "Add", "Relu", "Clip", "Pad", "Resize", "MaxPool",
                                                      "Reshape", "Transpose", "Sigmoid", "Identity", "Concat",
                                                      "DepthToSpace"}


def test_the_cache_converts_once_per_source_file(tmp_path, onnx_paths):
    src = tmp_path / "pose_detection.tflite"
    src.write_bytes(MODELS["detector"][0].read_bytes())
    first = converted_onnx(src, tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    assert converted_onnx(src, tmp_path / "cache") == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]  # no temp files left behind
    other = tmp_path / "pose_landmark_full.tflite"
    other.write_bytes(MODELS["landmark"][0].read_bytes())
    assert converted_onnx(other, tmp_path / "cache").name != first.name
    with pytest.raises(FileNotFoundError, match="not found"):
        converted_onnx(tmp_path / "missing.tflite", tmp_path / "cache")


def test_a_file_that_is_not_tflite_is_refused(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError):
        convert_tflite(bad)


def test_an_output_subset_leaves_the_other_heads_out(tmp_path, onnx_paths):
    import onnx

    model, (lo, hi) = MODELS["landmark"]
    keep = ("Identity", "Identity_3")
    subset = converted_onnx(model, tmp_path, outputs=keep)
    assert subset.name.endswith("-Identity+Identity_3.onnx")
    assert len(onnx.load(str(subset)).graph.node) < len(onnx.load(str(onnx_paths["landmark"])).graph.node)
    batch = np.random.default_rng(5).uniform(lo, hi, (1, 256, 256, 3)).astype(np.float32)
    full, part = _onnx_outputs(onnx_paths["landmark"], batch), _onnx_outputs(subset, batch)
    assert tuple(part) == keep
    for name in keep:
        np.testing.assert_array_equal(part[name], full[name])
    with pytest.raises(ValueError, match="no output"):
        convert_tflite(model, outputs=("segmentation",))
