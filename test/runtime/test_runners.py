"""Network runners: ONNX Runtime and torch agree on a small real conv net; chunking; errors; TensorRT on a GPU."""
import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from hpe_ros.runtime import BackendUnavailable, create_runner  # noqa: E402
from hpe_ros.runtime import tensorrt_runner as trt_runner  # noqa: E402
from hpe_ros.runtime.base import run_chunked  # noqa: E402
from hpe_ros.runtime.cache import sidecar_path  # noqa: E402
from hpe_ros.runtime.onnxruntime_runner import OnnxRuntimeRunner, resolve_providers  # noqa: E402
from hpe_ros.runtime.torch_runner import TorchRunner, export_onnx  # noqa: E402

from helpers.recording_session import RecordingSession  # noqa: E402

W, H = 24, 32  # input_size (w, h)


class TinyPoseNet(torch.nn.Module):
    """A small real conv net with two heads: heatmaps (B, 5, H/4, W/4) and a SimCC-like (B, 5, 2W) output."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.SiLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1, groups=4), torch.nn.ReLU())
        self.heat = torch.nn.Conv2d(16, 5, 1)
        self.simcc = torch.nn.Linear(16 * (H // 4) * (W // 4), 5 * 2 * W)

    def forward(self, x):
        f = self.body(x)
        return self.heat(f), self.simcc(f.flatten(1)).view(x.shape[0], 5, 2 * W)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = TinyPoseNet().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for bn in (m.body[1], m.body[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def onnx_dynamic(net, tmp_path_factory):
    return export_onnx(net, tmp_path_factory.mktemp("onnx") / "tiny.onnx", (W, H), dynamic_batch=True)


@pytest.fixture(scope="module")
def onnx_fixed1(net, tmp_path_factory):
    return export_onnx(net, tmp_path_factory.mktemp("onnx1") / "tiny_b1.onnx", (W, H), dynamic_batch=False)


def batch(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, H, W)).astype(np.float32)


def reference(net, x):
    with torch.no_grad():
        return [o.numpy() for o in net(torch.from_numpy(x))]


def assert_outputs_close(got, want, atol=1e-4):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=atol, rtol=1e-4)


# ------------------------------------------------------------------------------------ export + runners

def test_export_onnx_is_atomic_and_dynamic(onnx_dynamic):
    import onnx

    assert onnx_dynamic.is_file()
    assert not [p for p in onnx_dynamic.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    model = onnx.load(str(onnx_dynamic))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, H, W]
    assert [o.name for o in model.graph.output] == ["output0", "output1"]


@pytest.mark.parametrize("n", [1, 3, 7])
def test_onnxruntime_and_torch_agree(net, onnx_dynamic, n):
    x = batch(n, seed=n)
    want = reference(net, x)
    ort = OnnxRuntimeRunner(str(onnx_dynamic), providers="auto", threads=1)
    tr = TorchRunner(net, device="cpu", input_size=(W, H))
    try:
        assert ort.name == "onnxruntime[CPUExecutionProvider]" and tr.name == "torch[cpu]"
        assert ort.input_name == "input" and ort.input_shape == (None, 3, H, W) and ort.max_batch is None
        assert ort.output_names == tr.output_names == ["output0", "output1"]
        got_ort, got_torch = ort.run(x), tr.run(x)
        assert got_ort[0].shape == (n, 5, H // 4, W // 4) and got_ort[1].shape == (n, 5, 2 * W)
        assert_outputs_close(got_ort, want)
        assert_outputs_close(got_torch, want)
        assert_outputs_close(got_ort, got_torch)
    finally:
        ort.close()
        tr.close()


def test_chunked_batches_match_one_call(net, onnx_dynamic):
    x = batch(7, seed=11)
    want = reference(net, x)
    ort = OnnxRuntimeRunner(str(onnx_dynamic), threads=1, max_batch=3)  # 3 + 3 + 1
    tr = TorchRunner(net, device="cpu", max_batch=2)                    # 2 + 2 + 2 + 1
    assert ort.max_batch == 3
    assert_outputs_close(ort.run(x), want)
    assert_outputs_close(tr.run(x), want)
    assert tr.output_names == ["output0", "output1"]  # named on the first run when no input_size was given


def test_fixed_batch_1_graph_is_chunked(net, onnx_fixed1):
    ort = OnnxRuntimeRunner(str(onnx_fixed1), threads=1, max_batch=8)
    assert ort.input_shape == (1, 3, H, W) and ort.max_batch == 1
    for n in (1, 4):
        x = batch(n, seed=20 + n)
        assert_outputs_close(ort.run(x), reference(net, x))


def test_run_chunked_pads_a_short_chunk_for_a_fixed_batch():
    calls = []

    def fn(chunk):  # a "model" that only takes batch 4
        assert chunk.shape[0] == 4
        calls.append(chunk.shape[0])
        return [chunk.sum(axis=(1, 2, 3)), chunk[:, :1] * 2]

    x = batch(6, seed=3)
    out = run_chunked(fn, x, max_batch=None, fixed_batch=4)
    assert calls == [4, 4]
    np.testing.assert_allclose(out[0], x.sum(axis=(1, 2, 3)), rtol=1e-5)
    assert out[1].shape == (6, 1, H, W)


def test_warm_up_runs_every_shape_the_session_will_see_twice(net, onnx_dynamic, onnx_fixed1):
    """onnxruntime's arena grows on a shape's first two runs (tensor by tensor, then the planned block):
    after warm_up, batches of any size only send the session shapes it has run twice."""
    ort = OnnxRuntimeRunner(str(onnx_dynamic), threads=1, max_batch=3)
    ort.session = warm = RecordingSession(ort.session)
    assert ort.warm_up(7) == [3, 2, 1]
    assert warm.shapes == [(k, 3, H, W) for k in (3, 3, 2, 2, 1, 1)]
    ort.session = later = RecordingSession(warm.session)
    for n in range(1, 12):
        x = batch(n, seed=n)
        assert_outputs_close(ort.run(x), reference(net, x))  # warm-up left no state behind
    assert set(later.shapes) <= set(warm.shapes)
    assert OnnxRuntimeRunner(str(onnx_dynamic), threads=1, max_batch=8).warm_up(2) == [2, 1]
    assert OnnxRuntimeRunner(str(onnx_dynamic), threads=1).warm_up(4) == [4, 3, 2, 1]   # no max_batch
    assert OnnxRuntimeRunner(str(onnx_fixed1), threads=1, max_batch=8).warm_up(5) == [1]


def test_warm_up_runner_skips_runners_without_warm_up(net):
    from hpe_ros.runtime.base import warm_up_runner

    assert warm_up_runner(TorchRunner(net, device="cpu", max_batch=2), 4) == []


def test_run_chunked_pads_outputs_whose_size_varies_per_chunk():
    def detector(chunk):  # like an end2end detector after NMS: N boxes depends on the data
        n = int(chunk[0, 0, 0, 0])
        return [np.ones((1, n, 5), np.float32), np.zeros((1, n), np.int64)]

    x = np.zeros((3, 3, 2, 2), np.float32)
    x[:, 0, 0, 0] = [2, 0, 3]
    dets, labels = run_chunked(detector, x, max_batch=None, fixed_batch=1)
    assert dets.shape == (3, 3, 5) and labels.shape == (3, 3) and labels.dtype == np.float32
    assert dets[0].sum() == 10 and dets[1].sum() == 0 and dets[2].sum() == 15


def test_torchscript_file_through_create_runner(net, tmp_path, onnx_dynamic):
    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():  # torch ≥ 2.10 marks TorchScript deprecated; it still loads and runs
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(net, torch.zeros(1, 3, H, W)).save(str(path))
    x = batch(3, seed=5)
    ts = create_runner("torch", str(path), device="auto")
    ort = create_runner("onnxruntime", str(onnx_dynamic), providers=["cpu"])
    assert ts.name == ("torch[cuda]" if torch.cuda.is_available() else "torch[cpu]")
    assert_outputs_close(ts.run(x), ort.run(x))


def test_wrong_input_shape_is_a_clear_error(onnx_dynamic):
    ort = OnnxRuntimeRunner(str(onnx_dynamic), threads=1)
    with pytest.raises(ValueError, match=r"does not match the model's \(None, 3, 32, 24\)"):
        ort.run(np.zeros((2, 3, H + 1, W), np.float32))
    with pytest.raises(ValueError, match="expected a batch"):
        ort.run(np.zeros((3, H, W), np.float32))


# ------------------------------------------------------------------------------------------------ errors

def test_missing_model_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.onnx"
    for runtime in ("onnxruntime", "tensorrt", "torch"):
        with pytest.raises(FileNotFoundError, match="nope.onnx"):
            create_runner(runtime, str(missing))
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        OnnxRuntimeRunner(str(missing))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        TorchRunner(str(tmp_path / "nope.pt"))


def test_unknown_runtime(onnx_dynamic):
    with pytest.raises(ValueError, match="unknown network runtime 'openvino'.*onnxruntime, tensorrt, torch"):
        create_runner("openvino", str(onnx_dynamic))


def test_unknown_provider_names_the_available_ones(onnx_dynamic):
    with pytest.raises(ValueError, match="'FooExecutionProvider'.*available:.*CPUExecutionProvider"):
        OnnxRuntimeRunner(str(onnx_dynamic), providers=["FooExecutionProvider"])


def test_provider_resolution():
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", cpu_only) == ["CPUExecutionProvider"]
    assert resolve_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == \
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", gpu) == gpu
    assert resolve_providers(["cuda", "cpu"], gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("cuda, cpu", gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # a parameter
    assert resolve_providers("", gpu) == resolve_providers(" Auto ", gpu) == gpu
    assert resolve_providers("CPUExecutionProvider", gpu) == ["CPUExecutionProvider"]
    opts = {"device_id": 0}
    assert resolve_providers([("CUDAExecutionProvider", opts)], gpu) == [("CUDAExecutionProvider", opts)]
    with pytest.raises(ValueError, match="'CUDAExecutionProvider' is not available here; available: CPU"):
        resolve_providers(["cuda"], cpu_only)


def test_tensorrt_unavailable_is_backend_unavailable(onnx_dynamic):
    try:
        import tensorrt  # noqa: F401
        have_trt = True
    except Exception:
        have_trt = False
    if have_trt and torch.cuda.is_available():
        pytest.skip("TensorRT and CUDA are both available here")
    with pytest.raises(BackendUnavailable, match="tensorrt|TensorRT|CUDA"):
        create_runner("tensorrt", str(onnx_dynamic))


# ------------------------------------------------------------- TensorRT: optimization profile, a real engine

def test_profile_shapes():
    prof = [1, 4, 8]
    assert trt_runner._profile_shapes("x", (1, 3, 256, 192), prof, None) is None
    assert trt_runner._profile_shapes("x", (-1, 3, 256, 192), prof, None) == \
        ((1, 3, 256, 192), (4, 3, 256, 192), (8, 3, 256, 192))
    assert trt_runner._profile_shapes("x", (-1, 3, -1, -1), prof, (3, 256, 192))[2] == (8, 3, 256, 192)
    with pytest.raises(ValueError, match="dynamic dim 2"):
        trt_runner._profile_shapes("x", (-1, 3, -1, -1), prof, None)


def _tensorrt_skip_reason():
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:
        return f"tensorrt is not importable ({exc})"
    if not torch.cuda.is_available():
        return "CUDA is not available (torch.cuda.is_available() is False)"
    return None


@pytest.mark.gpu
def test_tensorrt_engine_builds_caches_and_matches_onnxruntime(net, onnx_dynamic, tmp_path, monkeypatch):
    reason = _tensorrt_skip_reason()
    if reason:
        pytest.skip(reason)
    from hpe_ros.runtime.tensorrt_runner import TensorRTRunner

    monkeypatch.setenv("HPE_ROS_ENGINE_DIR", str(tmp_path / "engines"))
    x = batch(11, seed=9)  # > max_batch: chunked 4 + 4 + 3
    want = OnnxRuntimeRunner(str(onnx_dynamic), providers=["cpu"]).run(x)

    fp32 = TensorRTRunner(str(onnx_dynamic), enable_fp16=False, max_batch=4, workspace_mb=256)
    assert fp32.name == "tensorrt[fp32]" and fp32.max_batch == 4 and fp32.input_shape == (None, 3, H, W)
    assert fp32.output_names == ["output0", "output1"]
    assert_outputs_close(fp32.run(x), want, atol=1e-3)
    engine = fp32.engine_path
    assert engine.parent == tmp_path / "engines" and sidecar_path(engine).is_file()
    mtime = engine.stat().st_mtime_ns
    fp32.close()

    again = TensorRTRunner(str(onnx_dynamic), enable_fp16=False, max_batch=4, workspace_mb=256)
    assert again.engine_path == engine and engine.stat().st_mtime_ns == mtime  # cache hit: not rebuilt
    assert_outputs_close(again.run(x[:1]), [w[:1] for w in want], atol=1e-3)
    again.close()

    fp16 = TensorRTRunner(str(onnx_dynamic), enable_fp16=True, max_batch=4, workspace_mb=256)
    assert fp16.name in ("tensorrt[fp16]", "tensorrt[onnx-typed]")  # TensorRT 11 has no FP16 flag
    assert fp16.engine_path != engine
    for g, w in zip(fp16.run(x), want):
        np.testing.assert_allclose(g, w, atol=0.05, rtol=0.05)
    fp16.close()

    forced = TensorRTRunner(str(onnx_dynamic), engine_file_path=str(engine), force_engine_update=True,
                            enable_fp16=False, max_batch=4, workspace_mb=256)
    assert engine.stat().st_mtime_ns != mtime
    forced.close()

    prebuilt = create_runner("tensorrt", str(engine))  # a .engine file runs as is
    assert_outputs_close(prebuilt.run(x), want, atol=1e-3)
    prebuilt.close()
    assert os.path.isfile(engine)
