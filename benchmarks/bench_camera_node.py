"""camera_pose_node at camera rate, as its own process over DDS: output rate, latency and drops per camera.

    .venv/bin/python benchmarks/bench_camera_node.py --backend mediapipe --cameras 1 --cpus 0
    .venv/bin/python benchmarks/bench_camera_node.py --backend onnxruntime --cameras 2
    .venv/bin/python benchmarks/bench_camera_node.py --backend blazepose --cameras 2 --threads 1

This process publishes 640x480 bgr8 images at --rate Hz on every camera (MediaPipe: scikit-image's
astronaut, moving a few pixels a frame; onnxruntime: the same picture through an RTMPose-t-sized network
with random weights, whole image as the person box; blazepose: the astronaut through its detector every
10 frames and landmark network) and listens to /<cam>/pose_2d. The node runs under
`taskset -c CPUS` when --cpus is given (e.g. one core for "MediaPipe on one CPU core"). Prints JSON:
per camera the output rate (Hz), share of published frames processed, latency image stamp -> pose_2d
received (p50/p99 ms), and the node's own drop counters from /diagnostics; for the node process its CPU
time (user + system) per processed batch (one frame of every camera) over the measured seconds, which on a
shared machine says more than rates do.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

RTMPOSE_T_LIKE_MANIFEST = """name = "rtmpose-t-like"
kind = "pose"
file = "rtmpose-t-like.onnx"
input_size = [192, 256]
mean = [123.675, 116.28, 103.53]
std = [58.395, 57.12, 57.375]
color = "rgb"
layout = "coco17"
output = "simcc"
simcc_split_ratio = 2.0
note = "benchmark network: RTMPose-t shapes, random weights"
"""


def _picture() -> np.ndarray:
    from skimage import data

    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[:, 64:576] = np.asarray(data.astronaut()[16:496, :, ::-1])
    return canvas


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="onnxruntime", choices=["mediapipe", "onnxruntime", "blazepose"])
    ap.add_argument("--blazepose-runtime", default="onnxruntime", choices=["onnxruntime", "tflite"])
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cpus", default="", help="taskset CPU list for the node process, e.g. 0")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime / tflite intra-op threads (0: the runtime's)")
    ap.add_argument("--transport", default="raw", choices=["raw", "compressed"],
                    help="raw: 921 kB bgr8 Image messages; compressed: JPEG CompressedImage (~60 kB)")
    ap.add_argument("--dds-profile", default="", help="Fast DDS XML profile for both processes, e.g. "
                    "config/fastdds_large_images.xml (raw 640x480 frames exceed the default shared-memory segment)")
    a = ap.parse_args(argv)
    if a.dds_profile:  # before rclpy loads: read when the participant is created
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(Path(a.dds_profile).resolve())

    import rclpy
    from bench_inference import _nets
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage, Image, PointCloud2

    from hpe_ros.ros.diagnostics import read_status_values
    from hpe_ros.ros.images import numpy_to_compressed, numpy_to_image
    from hpe_ros.ros.launcher import node_command
    from hpe_ros.ros.pointcloud import make_header, stamp_to_seconds
    from hpe_ros.ros.qos import POSES, SENSOR
    from hpe_ros.runtime.torch_runner import export_onnx

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(50 + os.getpid() % 40))
    cams = [f"cam{i}" for i in range(a.cameras)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    params = {"cameras": cams, "backend": a.backend, "camera_rate_hz": a.rate, "diagnostics_period_s": 1.0,
              "transport": a.transport}
    if a.backend == "onnxruntime":
        net, outputs = _nets()["rtmpose_t_like"]
        export_onnx(net, tmp / "rtmpose-t-like.onnx", (192, 256), output_names=outputs)
        (tmp / "rtmpose-t-like.toml").write_text(RTMPOSE_T_LIKE_MANIFEST)
        params.update(model=str(tmp / "rtmpose-t-like.toml"), threads=a.threads)
    if a.backend == "blazepose":
        params.update(blazepose_runtime=a.blazepose_runtime, threads=a.threads, guided_crops=False)
    cmd = node_command("camera_pose_node", None, params, workdir=tmp)
    if a.cpus:
        if shutil.which("taskset") is None:
            raise SystemExit("taskset not found (util-linux); drop --cpus")
        cmd = ["taskset", "-c", a.cpus] + cmd
    node = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / "node.log", "w"))

    rclpy.init()
    tester = rclpy.create_node("bench_camera_node")
    raw = a.transport == "raw"
    pubs = {c: tester.create_publisher(Image if raw else CompressedImage,
                                       f"/{c}/image_raw" + ("" if raw else "/compressed"), SENSOR) for c in cams}
    received = {c: [] for c in cams}
    diag = {}
    for c in cams:
        tester.create_subscription(PointCloud2, f"/{c}/pose_2d",
                                   lambda m, c=c: received[c].append((time.time(), stamp_to_seconds(m.header.stamp))),
                                   POSES)
    tester.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.update(read_status_values(m)), 10)
    executor = SingleThreadedExecutor()
    executor.add_node(tester)
    picture = _picture()
    frames = [np.roll(picture, 3 * k, axis=1) for k in range(16)]
    jpegs = [numpy_to_compressed(f, "jpeg", 90) for f in frames]

    def message(k, header):
        if raw:
            return numpy_to_image(frames[k % len(frames)], "bgr8", header)
        msg = jpegs[k % len(jpegs)]
        msg.header = header
        return msg

    try:
        deadline = time.monotonic() + 60  # model load and discovery
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in pubs.values()):
            executor.spin_once(timeout_sec=0.05)
        warmup, published, cpu_start = 3.0, 0, None
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < warmup + a.seconds:
            stamp = time.time()
            if time.monotonic() - start >= warmup:
                published += 1
                cpu_start = _cpu_seconds(node.pid) if cpu_start is None else cpu_start
            for c in cams:
                pubs[c].publish(message(k, make_header(stamp, f"{c}_optical_frame")))
            k += 1
            next_t = start + k / a.rate
            while time.monotonic() < next_t:
                executor.spin_once(timeout_sec=max(0.0, next_t - time.monotonic()))
        end_wall = time.time()
        node_cpu_s = _cpu_seconds(node.pid) - cpu_start
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        node.terminate()
        node.wait(timeout=10)
    result = {"backend": a.backend, "transport": a.transport, "dds_profile": a.dds_profile or None,
              "cameras": a.cameras, "rate_hz": a.rate, "seconds": a.seconds, "node_cpus": a.cpus or "all",
              "threads": a.threads, "per_camera": {}}
    batches = max(len([s for _, s in received[c] if end_wall - a.seconds <= s <= end_wall]) for c in cams)
    result["node_cpu_s"] = round(node_cpu_s, 2)
    result["node_cpu_ms_per_batch"] = round(node_cpu_s * 1e3 / max(batches, 1), 1)
    result["node_cpu_ms_per_image"] = round(node_cpu_s * 1e3 / max(batches * len(cams), 1), 1)
    for c in cams:
        rows = [(r, s) for r, s in received[c] if s >= end_wall - a.seconds and s <= end_wall]
        lat = np.array([(r - s) * 1e3 for r, s in rows])
        d = diag.get(f"camera_pose_node: {c}", {})
        result["per_camera"][c] = {
            "output_hz": round(len(rows) / a.seconds, 2),
            "processed_share": round(len(rows) / max(published, 1), 3),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "node_dropped": d.get("dropped"), "node_missed_before_node": d.get("missed_before_node"),
            "node_mean_batch": d.get("mean_batch"), "node_infer_ms": d.get("infer_ms"), "backend": d.get("backend"),
        }
    print(json.dumps(result, indent=2))
    tester.destroy_node()
    rclpy.try_shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
