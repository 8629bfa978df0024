"""2D inference speed per backend and batch size, printed as JSON.

    .venv/bin/python benchmarks/bench_inference.py [--repeats 30] [--threads 0] [--markdown]

Networks (random weights, real shapes; no download needed):
- ``rtmpose_t_like``: a conv backbone (5 stride-2 stages, ~0.3 GFLOP at 256x192) with SimCC heads giving
  (B, 17, 384) and (B, 17, 512), the input/output shapes of RTMPose-t;
- ``heatmap_w32_like``: a wider backbone at 256x192 with a (B, 17, 64, 48) heatmap head, like HRNet-W32's output.
Each is exported to ONNX and timed per call for batch 1, 2, 4, 8 (median of ``--repeats`` calls after a
warm-up) with: onnxruntime (CPU, and CUDA / TensorRT providers when present), torch eager (CPU, CUDA when
present), and TensorRT engines (FP16 and FP32) when tensorrt and a GPU are present. Also timed: the whole
top-down pipeline per frame on a 640x480 image (detector, crops, pose call, decoding) with the coded-dot
networks, and MediaPipe BlazePose (full; the only model its wheel bundles) per 640x480 frame.
BlazePose (section "blazepose"): our multi-person backend on onnxruntime / tflite (and onnxruntime CUDA,
TensorRT where present) against MediaPipe's own solution, for 1..4 cameras of a 640x480 frame each, per
frame and per camera, once with the detector on every frame and once tracking (detector every 10th frame).
``--only blazepose`` runs just that section.
What could not run here is listed under "not_measured" with the reason; ratios are against onnxruntime CPU
at the same batch size.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))  # the test networks (detector)


def _nets():
    import torch
    from torch import nn

    def stage(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU(),
                             nn.Conv2d(cout, cout, 3, 1, 1, groups=cout, bias=False), nn.BatchNorm2d(cout), nn.SiLU(),
                             nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

    class SimCCNet(nn.Module):
        def __init__(self, widths=(24, 48, 96, 192, 384), joints=17, size=(192, 256)):
            super().__init__()
            chans = (3,) + widths
            self.backbone = nn.Sequential(*[stage(a, b) for a, b in zip(chans[:-1], chans[1:])])
            fw, fh = size[0] // 32, size[1] // 32
            self.to_joints = nn.Conv2d(widths[-1], joints, 1)
            self.hidden = nn.Linear(fw * fh, 256)
            self.x = nn.Linear(256, size[0] * 2)
            self.y = nn.Linear(256, size[1] * 2)

        def forward(self, img):
            f = self.to_joints(self.backbone(img)).flatten(2)         # (B, J, fh*fw)
            h = torch.relu(self.hidden(f))
            return self.x(h), self.y(h)

    class HeatmapNet(nn.Module):
        def __init__(self, widths=(32, 64, 128, 256), joints=17):
            super().__init__()
            chans = (3,) + widths
            self.backbone = nn.Sequential(*[stage(a, b) for a, b in zip(chans[:-1], chans[1:])])
            self.up = nn.Sequential(nn.ConvTranspose2d(widths[-1], 128, 4, 2, 1), nn.SiLU(),
                                    nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.SiLU())
            self.head = nn.Conv2d(64, joints, 1)

        def forward(self, img):
            return self.head(self.up(self.backbone(img)))              # (B, J, H/4, W/4)

    return {"rtmpose_t_like": (SimCCNet().eval(), ["simcc_x", "simcc_y"]),
            "heatmap_w32_like": (HeatmapNet().eval(), ["heatmaps"])}


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def bench_networks(workdir: Path, repeats: int, threads: int, batches=(1, 2, 4, 8)) -> tuple[list, dict]:
    import onnxruntime as ort
    import torch

    from hpe_ros.runtime import BackendUnavailable, create_runner
    from hpe_ros.runtime.torch_runner import TorchRunner, export_onnx

    rows, skipped = [], {}
    for name, (net, outputs) in _nets().items():
        onnx_path = export_onnx(net, workdir / f"{name}.onnx", (192, 256), output_names=outputs)
        runners = {"onnxruntime-cpu": lambda: create_runner("onnxruntime", str(onnx_path), providers="cpu",
                                                            threads=threads),
                   "torch-cpu": lambda: TorchRunner(net, device="cpu")}
        if "CUDAExecutionProvider" in ort.get_available_providers():
            runners["onnxruntime-cuda"] = lambda: create_runner("onnxruntime", str(onnx_path), providers="cuda")
        else:
            skipped["onnxruntime-cuda"] = "onnxruntime has no CUDAExecutionProvider here"
        if torch.cuda.is_available():
            runners["torch-cuda"] = lambda: TorchRunner(net, device="cuda")
        else:
            skipped["torch-cuda"] = "no CUDA device"
        for fp16 in (True, False):
            key = f"tensorrt-{'fp16' if fp16 else 'fp32'}"
            runners[key] = lambda fp16=fp16: create_runner("tensorrt", str(onnx_path), enable_fp16=fp16, max_batch=8,
                                                           engine_file_path=str(workdir / f"{name}-{fp16}.engine"))
        for runtime, make in runners.items():
            try:
                runner = make()
            except (BackendUnavailable, RuntimeError, ImportError) as exc:
                skipped[runtime] = str(exc).splitlines()[0][:200]
                continue
            for b in batches:
                x = np.random.default_rng(0).standard_normal((b, 3, 256, 192)).astype(np.float32)
                ms = _time(lambda: runner.run(x), repeats)
                rows.append({"network": name, "runtime": runtime, "batch": b, "ms_per_call": round(ms, 2),
                             "crops_per_s": round(1e3 * b / ms, 1)})
            if hasattr(runner, "close"):
                runner.close()
    base = {(r["network"], r["batch"]): r["ms_per_call"] for r in rows if r["runtime"] == "onnxruntime-cpu"}
    for r in rows:
        r["ratio_vs_onnxruntime_cpu"] = round(r["ms_per_call"] / base[(r["network"], r["batch"])], 3)
    return rows, skipped


def bench_pipeline(workdir: Path, repeats: int) -> dict:
    """Top-down per frame: 640x480, two people, bright-pixel detector + coded-dot pose net (onnxruntime CPU)."""
    from detect2d_nets import dot_image, export_half_box_detector, person_pixels

    from hpe_ros.detect2d import create_backend
    from hpe_ros.sim.keypoint_net import export_keypoint_net

    pose = export_keypoint_net(workdir / "dots", output="simcc", input_size=(192, 256))
    det = export_half_box_detector(workdir / "halfbox", input_size=(320, 240))
    rng = np.random.default_rng(0)
    images = [dot_image([person_pixels(rng, (170, 250)), person_pixels(rng, (470, 230))]) for _ in range(2)]
    out = {}
    for cams in (1, 2):
        backend = create_backend("onnxruntime", model=str(pose), detector=str(det))
        ms = _time(lambda: backend.infer(images[:cams], [f"cam{i}" for i in range(cams)]), repeats)
        out[f"{cams}_camera"] = {"ms_per_frame": round(ms, 2), "people": 2 * cams,
                                 "stages_ms": {k: round(v, 2) for k, v in backend.last_timings.items()
                                               if k.endswith("_ms")}}
    return out


def bench_mediapipe(repeats: int) -> dict:
    try:
        from skimage import data

        from hpe_ros.detect2d import create_backend
        backend = create_backend("mediapipe", model_complexity=1)
    except Exception as exc:
        return {"not_measured": f"{type(exc).__name__}: {exc}"}
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[:, 64:576] = np.asarray(data.astronaut()[16:496, :, ::-1])
    ms = _time(lambda: backend.infer([canvas], ["cam0"]), repeats)
    (points, _), = backend.infer([canvas], ["cam0"])
    backend.close()
    return {"complexity_1": {"ms_per_frame": round(ms, 2), "frames_per_s": round(1e3 / ms, 1),
                             "person_found": bool(len(points))},
            "complexity_0_and_2": "not bundled in mediapipe 0.10.14's wheel (downloaded at run time): not measured"}


def _blazepose_backends(threads: int) -> tuple[dict, dict]:
    """name -> (backend factory, supports config) for what can run here, and name -> reason for the rest."""
    import onnxruntime as ort

    from hpe_ros.detect2d import create_backend

    makers = {"blazepose-onnxruntime-cpu": lambda cfg: create_backend("blazepose", runtime="onnxruntime",
                                                                      providers="cpu", threads=threads, blazepose=cfg),
              "blazepose-tflite": lambda cfg: create_backend("blazepose", runtime="tflite", threads=threads,
                                                             blazepose=cfg),
              "mediapipe-solution": lambda cfg: create_backend("mediapipe", model_complexity=1)}
    skipped = {}
    if "CUDAExecutionProvider" in ort.get_available_providers():
        makers["blazepose-onnxruntime-cuda"] = lambda cfg: create_backend("blazepose", providers="cuda", blazepose=cfg)
    else:
        skipped["blazepose-onnxruntime-cuda"] = "onnxruntime has no CUDAExecutionProvider here"
    makers["blazepose-tensorrt-fp16"] = lambda cfg: create_backend("blazepose", runtime="tensorrt", blazepose=cfg)
    return makers, skipped


def bench_blazepose(repeats: int, threads: int, cameras=(1, 2, 3, 4)) -> dict:
    """Per-frame and per-camera latency of BlazePose for 1..4 cameras, detector every frame or tracking."""
    from skimage import data

    from hpe_ros.runtime import BackendUnavailable

    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[:, 64:576] = np.asarray(data.astronaut()[16:496, :, ::-1])
    makers, skipped = _blazepose_backends(threads)
    rows = []
    for name, make in makers.items():
        modes = {"detect_every_frame": {"detect_every": 1}, "tracking": {"detect_every": 10}}
        if name == "mediapipe-solution":   # MediaPipe's tracker re-detects only when it loses the person
            modes = {"tracking": None}
        for mode, cfg in modes.items():
            try:
                backend = make(cfg)
            except (BackendUnavailable, RuntimeError, ImportError, OSError) as exc:
                skipped[name] = str(exc).splitlines()[0][:200]
                break
            for n in cameras:
                images, streams = [canvas] * n, [f"cam{i}" for i in range(n)]
                cpu0 = time.process_time()   # CPU time of all threads: steadier than wall time on a busy machine
                ms = _time(lambda: backend.infer(images, streams), repeats)
                cpu_ms = (time.process_time() - cpu0) * 1e3 / (repeats + 1)   # _time's calls and its warm-up
                people = sum(len(p) for p, _ in backend.infer(images, streams))
                rows.append({"backend": name, "mode": mode, "cameras": n, "ms_per_frame": round(ms, 2),
                             "ms_per_camera": round(ms / n, 2), "cpu_ms_per_frame": round(cpu_ms, 2),
                             "people_found": people,
                             "stages_ms": {k: round(v, 2) for k, v in getattr(backend, "last_timings", {}).items()
                                           if k.endswith("_ms")}})
            backend.close()
    base = {(r["mode"], r["cameras"]): r["ms_per_frame"] for r in rows if r["backend"] == "blazepose-onnxruntime-cpu"}
    for r in rows:
        if (r["mode"], r["cameras"]) in base:
            r["ratio_vs_onnxruntime_cpu"] = round(r["ms_per_frame"] / base[(r["mode"], r["cameras"])], 3)
    return {"rows": rows, "not_measured": skipped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--markdown", action="store_true", help="also print a table to stderr")
    ap.add_argument("--only", choices=["blazepose"], help="run one section only")
    a = ap.parse_args(argv)
    import platform

    if a.only == "blazepose":
        result = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                  "blazepose": bench_blazepose(a.repeats, a.threads)}
        print(json.dumps(result, indent=2))
        if a.markdown:
            _blazepose_table(result["blazepose"]["rows"])
        return 0
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        rows, skipped = bench_networks(Path(tmp), a.repeats, a.threads)
        result = {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
            "networks": rows,
            "pipeline_onnxruntime_cpu": bench_pipeline(Path(tmp), a.repeats),
            "mediapipe": bench_mediapipe(a.repeats),
            "blazepose": bench_blazepose(a.repeats, a.threads),
            "not_measured": skipped,
        }
    print(json.dumps(result, indent=2))
    if a.markdown:
        print("| network | runtime | batch | ms/call | crops/s | vs ORT CPU |\n"
              "|---|---|---|---|---|---|", file=sys.stderr)
        for r in rows:
            print(f"| {r['network']} | {r['runtime']} | {r['batch']} | {r['ms_per_call']} | {r['crops_per_s']} | "
                  f"{r['ratio_vs_onnxruntime_cpu']} |", file=sys.stderr)
        _blazepose_table(result["blazepose"]["rows"])
    return 0


def _blazepose_table(rows: list) -> None:
    print("| backend | mode | cameras | ms/frame | ms/camera | CPU ms/frame | vs ORT CPU |\n"
          "|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        print(f"| {r['backend']} | {r['mode']} | {r['cameras']} | {r['ms_per_frame']} | {r['ms_per_camera']} | "
              f"{r['cpu_ms_per_frame']} | {r.get('ratio_vs_onnxruntime_cpu', '')} |", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
