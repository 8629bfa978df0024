"""Soak test of the live graph: memory per node and output rate over minutes, with a verdict per node.

    .venv/bin/python benchmarks/bench_soak.py [--minutes 10] [--images] [--nodes rig_sim_node ... control]
        [--sample-s 10] [--warmup-s 60] [--threshold-mb-min 0.02] [--rate-hz 30] [--no-listener]

Runs rig_sim_node, lifter_node and fusion_node (default config/multi_camera.yaml, simulator on) as one
process each (ProcessGraph). `--images`: the simulator publishes coded-dot camera images instead of 2D
detections and camera_pose_node finds the people in them with the coded-dot ONNX networks (the graph of
`hpe-ros demo --images`; needs torch to export the networks). `control` is a reference process, not a node of
the graph: a ManagedNode run by the same entry point (`base.run`: executor, spin loop, diagnostics thread)
that publishes what rig_sim_node publishes (four pose_2d clouds, four CameraInfo, a ground-truth cloud: the
same types and sizes, built anew every frame) at the same rate from one periodic timer, without any
simulation. Its slope is what rclpy, Fast DDS and the allocator do on their own: the noise floor.
The processes run in their own ROS domain (`--domain-id`, default 200 + pid mod 30), away from tests.

Samples every process's resident memory (VmRSS) every --sample-s seconds and counts the /human_pose_3d
messages received in each interval. Prints one JSON document on stdout (progress and a table on stderr):
per process the RSS samples (MB) and, over the samples after --warmup-s (start-up allocations excluded):
the least-squares slope (MB/min) with its standard error, the slopes of the first and second half, the
growth (MB) and a verdict against --threshold-mb-min: "flat" (slope <= threshold), "settling" (above it
over the whole run but not in the second half) or "growing" (above it in both: a leak, or an allocator that
has not reached its ceiling yet). The default threshold, 0.02 MB/min (1.2 MB an hour; 11 bytes a frame at
30 Hz), is a stated choice: the control measures 0.0000-0.0003 MB/min over 10 minutes, and RSS moves in page
and allocator steps, so a slope over a few minutes needs that margin. The machine's load average comes with
the figures: a starved node falls behind and allocates differently.
"""
from __future__ import annotations

import os

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hpe_ros.heap import rss_mb  # noqa: E402  (VmRSS of a process; None once it is gone)

GRAPH = ("rig_sim_node", "lifter_node", "fusion_node")
IMAGE_GRAPH = ("rig_sim_node", "camera_pose_node", "lifter_node", "fusion_node")
CONTROL = "control"
DEFAULT_THRESHOLD_MB_MIN = 0.02
HEAP_PARTS = ("malloc_live_mb", "malloc_free_mb", "python_blocks")  # from each node's "<node>: memory" status


def _fit(t_min: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """(slope, its standard error) of a least-squares line through (t_min, m), MB/min."""
    (slope, intercept), residuals = np.polyfit(t_min, m, 1), None
    residuals = m - (slope * t_min + intercept)
    spread = ((t_min - t_min.mean()) ** 2).sum()
    se = np.sqrt((residuals ** 2).sum() / max(len(m) - 2, 1) / spread) if spread > 0 else float("nan")
    return float(slope), float(se)


def memory_trend(times_s: list[float], rss: list[float], warmup_s: float, threshold: float) -> dict:
    """Slope (MB/min) and its standard error, first- and second-half slopes, growth (MB) and verdict of the
    samples after the warm-up; Nones with fewer than 6 samples."""
    t = np.asarray(times_s, dtype=float)
    m = np.asarray(rss, dtype=float)
    keep = (t >= warmup_s) & np.isfinite(m)
    t, m = t[keep] / 60.0, m[keep]
    if len(t) < 6:
        return {"slope_mb_per_min": None, "slope_se": None, "first_half": None, "second_half": None,
                "growth_mb": None, "verdict": "too few samples"}
    slope, se = _fit(t, m)
    half = len(t) // 2
    first, second = _fit(t[:half], m[:half])[0], _fit(t[half:], m[half:])[0]
    verdict = "flat" if slope <= threshold else "settling" if second <= threshold else "growing"
    return {"slope_mb_per_min": round(slope, 4), "slope_se": round(se, 4), "first_half": round(first, 4),
            "second_half": round(second, 4), "growth_mb": round(float(m[-1] - m[0]), 2), "verdict": verdict}


# --- the control process ---------------------------------------------------------------------------------
def serve_control(rate_hz: float, cameras: int = 4, people: int = 2) -> None:
    """Run the control node until SIGINT/SIGTERM (this file with --serve-control)."""
    from diagnostic_msgs.msg import DiagnosticStatus  # noqa: F401  (diagnostics as the nodes load them)
    from sensor_msgs.msg import CameraInfo, PointCloud2

    from hpe_ros.ros.base import ManagedNode, run
    from hpe_ros.ros.camera_info import camera_to_camera_info
    from hpe_ros.ros.pointcloud import HumanPoses, human_pose_to_cloud, make_header, pose2d_to_cloud
    from hpe_ros.ros.qos import POSES, SENSOR
    from hpe_ros.sim import default_rig

    rig = default_rig(cameras)
    rng = np.random.default_rng(0)
    points2d = rng.uniform(100, 500, (people, 17, 2))
    scores = rng.uniform(0.5, 1.0, (people, 17))
    truth = rng.uniform(-1, 1, (people, 17, 3))

    class SoakControl(ManagedNode):
        def on_activate(self, state):
            self.pose_pubs = [self.own_publisher(PointCloud2, f"soak_control/{c.name}/pose_2d", POSES) for c in rig]
            self.info_pubs = [self.own_publisher(CameraInfo, f"soak_control/{c.name}/camera_info", SENSOR) for c in rig]
            self.gt_pub = self.own_publisher(PointCloud2, "soak_control/ground_truth", POSES)
            self.own_timer(1.0 / rate_hz, self._tick)
            self.start_diagnostics()
            return super().on_activate(state)

        def _now(self) -> float:
            return self.get_clock().now().nanoseconds * 1e-9

        def _tick(self):
            stamp = self._now()
            headers = [make_header(stamp, c.frame_id) for c in rig]
            for pub, header in zip(self.pose_pubs, headers):
                pub.publish(pose2d_to_cloud(points2d, scores, header))
            for pub, camera, header in zip(self.info_pubs, rig, headers):
                pub.publish(camera_to_camera_info(camera, header))
            self.gt_pub.publish(human_pose_to_cloud(HumanPoses(truth, np.ones((people, 17)), np.arange(
                people, dtype=np.uint32), np.full((people, 17), cameras), stamp, "world")))
            self.stage("control", "publisher").tick(latency_ms=(self._now() - stamp) * 1e3)

    run(lambda: SoakControl("hpe_ros_soak_control"))


def start_control(rate_hz: float, log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"{CONTROL}.log", "w")
    return subprocess.Popen([sys.executable, __file__, "--serve-control", "--rate-hz", str(rate_hz)],
                            stdout=log, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# --- the graph -----------------------------------------------------------------------------------------------
def graph_overrides(nodes: list[str], images: bool, rate_hz: float | None, model_dir: Path) -> dict[str, dict]:
    """Per-node parameter overrides: the simulator's rate, and with images the demo --images wiring."""
    sim: dict = {"rate_hz": rate_hz} if rate_hz else {}
    overrides = {"rig_sim_node": sim}
    if images:
        from hpe_ros.sim.dot_detector import export_coded_dot_models

        sim.update(output="images", image_transport="raw", image_encoding="mono8")
        if "camera_pose_node" in nodes:
            pose, detector = export_coded_dot_models(model_dir)
            overrides["camera_pose_node"] = {
                "backend": "onnxruntime", "model": str(pose), "detector": str(detector), "transport": "raw",
                "providers": "cpu", "threads": 1, "max_people": 4, "camera_rate_hz": rate_hz or 0.0}
    return overrides


class OutputCounter:
    """Counts /human_pose_3d messages on its own node (no decoding: the count is the rate) and keeps each
    node's last "<node>: memory" status from /diagnostics (hpe_ros.heap.heap_usage: where its memory sits)."""

    def __init__(self, context):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import PointCloud2

        from hpe_ros.ros.qos import SENSOR

        self.count = 0
        self.memory: dict[str, dict[str, float]] = {}  # node -> heap_usage() figures
        self.node = Node("hpe_ros_soak_listener", context=context)
        self.node.create_subscription(PointCloud2, "/human_pose_3d", self._on_message, SENSOR)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on_message(self, _msg) -> None:
        self.count += 1

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith(": memory"):
                with contextlib.suppress(ValueError):
                    self.memory[status.hardware_id] = {kv.key: float(kv.value) for kv in status.values}

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@contextlib.contextmanager
def listener(listen: bool):
    """An OutputCounter on a context of its own (None when nobody should listen)."""
    if not listen:
        yield None
        return
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    counter = OutputCounter(context)
    try:
        yield counter
    finally:
        counter.close()
        rclpy.try_shutdown(context=context)


def sample_loop(procs: dict[str, subprocess.Popen], counter, minutes: float, sample_s: float) -> tuple:
    """(times s, RSS MB per process, /human_pose_3d Hz per interval, {process: {HEAP_PARTS key: values}})
    until `minutes` pass or a process dies."""
    wait = counter.spin_for if counter else time.sleep
    times: list[float] = []
    rss: dict[str, list[float]] = {n: [] for n in procs}
    parts: dict[str, dict[str, list[float]]] = {n: {k: [] for k in HEAP_PARTS} for n in procs}
    rates: list[float] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < minutes * 60.0:
            before = counter.count if counter else 0
            start = time.monotonic()
            wait(sample_s)
            if counter:
                rates.append(round((counter.count - before) / (time.monotonic() - start), 2))
            times.append(round(time.monotonic() - t0, 1))
            for name, proc in procs.items():
                value = rss_mb(proc.pid)
                rss[name].append(round(value, 3) if value is not None else float("nan"))
                memory = counter.memory.get(name, {}) if counter else {}
                for key in HEAP_PARTS:
                    parts[name][key].append(memory.get(key, float("nan")))
            print(f"{times[-1]:7.1f} s  " + "  ".join(f"{n} {v[-1]:.2f} MB" for n, v in rss.items())
                  + (f"  /human_pose_3d {rates[-1]:.1f} Hz" if rates else ""), file=sys.stderr, flush=True)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                print(f"died: {', '.join(dead)}", file=sys.stderr)
                break
    except KeyboardInterrupt:
        print("interrupted: the figures so far", file=sys.stderr)
    return times, rss, rates, parts


def soak(nodes: list[str], minutes: float, sample_s: float, warmup_s: float, listen: bool, log_dir: Path,
         images: bool = False, rate_hz: float | None = None, threshold: float = DEFAULT_THRESHOLD_MB_MIN) -> dict:
    from hpe_ros.resources import DEFAULT_CONFIG, config_path
    from hpe_ros.ros.launcher import ProcessGraph

    graph_nodes = [n for n in nodes if n != CONTROL]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hpe_ros_soak_models_") as models, listener(listen) as counter:
        overrides = graph_overrides(graph_nodes, images, rate_hz, Path(models))
        graph = ProcessGraph(graph_nodes, config_path(DEFAULT_CONFIG), overrides, log_dir=log_dir)
        control = start_control(rate_hz or 30.0, log_dir) if CONTROL in nodes else None
        procs = {**graph.procs, **({CONTROL: control} if control else {})}
        try:
            times, rss, rates, parts = sample_loop(procs, counter, minutes, sample_s)
        finally:
            codes = graph.stop()
            if control:
                codes[CONTROL] = stop_process(control)
    return {
        "minutes": round((times[-1] if times else 0.0) / 60.0, 2), "sample_s": sample_s, "warmup_s": warmup_s,
        "images": images, "rate_hz": rate_hz, "threshold_mb_per_min": threshold,
        "load_average_1_5_15": {"start": [round(v, 2) for v in load_before],
                                "end": [round(v, 2) for v in os.getloadavg()]},
        "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]),
        "nodes": {n: {**memory_trend(times, rss[n], warmup_s, threshold), "exit_code": codes.get(n),
                      "rss_mb": rss[n], "heap": heap_trends(times, parts[n], warmup_s)} for n in procs},
        "times_s": times,
        "human_pose_3d_hz": rates,
        "logs": str(log_dir),
    }


def heap_trends(times: list[float], parts: dict[str, list[float]], warmup_s: float) -> dict:
    """Per HEAP_PARTS key: the slope per minute after the warm-up and the samples (None where the node
    published no memory status)."""
    out = {}
    for key, values in parts.items():
        slope = memory_trend(times, values, warmup_s, float("inf"))["slope_mb_per_min"]
        out[key] = {"slope_per_min": slope, "samples": [None if not np.isfinite(v) else v for v in values]}
    return out


def print_table(result: dict) -> None:
    print(f"\n{'process':18} {'slope MB/min':>14} {'1st half':>9} {'2nd half':>9} {'growth MB':>10}  verdict "
          f"(threshold {result['threshold_mb_per_min']} MB/min)", file=sys.stderr)
    for name, r in result["nodes"].items():
        if r["slope_mb_per_min"] is None:
            print(f"{name:18} {r['verdict']}", file=sys.stderr)
            continue
        slope = f"{r['slope_mb_per_min']:.4f}±{r['slope_se']:.4f}"
        print(f"{name:18} {slope:>14} {r['first_half']:9.4f} {r['second_half']:9.4f} {r['growth_mb']:10.2f}  "
              f"{r['verdict']}", file=sys.stderr)
    print("\nwhere it sits (slope per minute from /diagnostics; '-': no memory status): "
          + ", ".join(HEAP_PARTS), file=sys.stderr)
    for name, r in result["nodes"].items():
        slopes = [r["heap"][k]["slope_per_min"] for k in HEAP_PARTS]
        print(f"{name:18} " + " ".join(f"{v:>14.4f}" if v is not None else f"{'-':>14}" for v in slopes),
              file=sys.stderr)
    rates = result["human_pose_3d_hz"]
    if rates:
        print(f"/human_pose_3d: median {np.median(rates):.1f} Hz, min {min(rates):.1f} Hz; load average "
              f"{result['load_average_1_5_15']}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the graph runs")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="samples before this are left out of the trend")
    ap.add_argument("--images", action="store_true", help="camera images through camera_pose_node (demo --images)")
    ap.add_argument("--nodes", nargs="+", choices=(*IMAGE_GRAPH, CONTROL), default=None,
                    help=f"processes to run (default: the graph and {CONTROL})")
    ap.add_argument("--rate-hz", type=float, default=None, help="simulator frame rate (default: the config's)")
    ap.add_argument("--threshold-mb-min", type=float, default=DEFAULT_THRESHOLD_MB_MIN,
                    help="slope above which memory counts as growing")
    ap.add_argument("--no-listener", action="store_true", help="nobody subscribes to /human_pose_3d")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: 200 + pid mod 30)")
    ap.add_argument("--log-dir", default=None, help="node logs (default: a temp folder)")
    ap.add_argument("--serve-control", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve_control:
        serve_control(a.rate_hz or 30.0)
        return 0
    nodes = a.nodes or [*(IMAGE_GRAPH if a.images else GRAPH), CONTROL]
    if "camera_pose_node" in nodes and not a.images:
        ap.error("camera_pose_node needs --images (the simulator's camera images)")
    os.environ["ROS_DOMAIN_ID"] = str(a.domain_id if a.domain_id is not None else 200 + os.getpid() % 30)
    log_dir = Path(a.log_dir or tempfile.mkdtemp(prefix="hpe_ros_soak_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    result = soak(nodes, a.minutes, a.sample_s, a.warmup_s, not a.no_listener, log_dir, a.images, a.rate_hz,
                  a.threshold_mb_min)
    print(json.dumps(result, indent=1))
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
