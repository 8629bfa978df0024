"""Soak test of the live sim graph: memory per node and output rate over minutes (not part of `make test`).

    .venv/bin/python benchmarks/bench_soak.py [--minutes 10] [--sample-s 10] [--nodes rig_sim_node ...]
        [--warmup-s 30] [--no-listener]

Runs rig_sim_node, lifter_node and fusion_node (default config/multi_camera.yaml, simulator on) as one
process each (ProcessGraph), samples every node's resident memory (VmRSS from /proc) every --sample-s
seconds, and counts the /human_pose_3d messages received in each interval. `--nodes rig_sim_node
--no-listener` runs the simulator alone with nobody subscribed.

Prints one JSON document on stdout (progress on stderr): per node the RSS samples (MB), the slope of a
least-squares line through the samples after --warmup-s (MB/min; start-up allocations excluded) and
its exit code; the /human_pose_3d rate (Hz) per interval. A slope well above the noise
(~0.05 MB/min on an idle machine) over >= 5 min is a leak.
"""
from __future__ import annotations

import os

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

GRAPH = ("rig_sim_node", "lifter_node", "fusion_node")


def rss_mb(pid: int) -> float | None:
    """Resident memory of a live process in MB (VmRSS), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def slope_mb_per_min(times_s: list[float], rss: list[float], warmup_s: float) -> float | None:
    """Least-squares slope of RSS over time after the warm-up, MB/min (None with < 3 samples)."""
    t = np.asarray(times_s, dtype=float)
    m = np.asarray(rss, dtype=float)
    keep = (t >= warmup_s) & np.isfinite(m)
    if keep.sum() < 3:
        return None
    return float(np.polyfit(t[keep] / 60.0, m[keep], 1)[0])


class OutputCounter:
    """Counts /human_pose_3d messages on its own node (no decoding: the count is the rate)."""

    def __init__(self, context):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import PointCloud2

        from hpe_ros.ros.qos import SENSOR

        self.count = 0
        self.node = Node("hpe_ros_soak_listener", context=context)
        self.node.create_subscription(PointCloud2, "/human_pose_3d", self._on_message, SENSOR)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on_message(self, _msg) -> None:
        self.count += 1

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def soak(nodes: list[str], minutes: float, sample_s: float, warmup_s: float, listen: bool, log_dir: Path) -> dict:
    from hpe_ros.resources import DEFAULT_CONFIG, config_path
    from hpe_ros.ros.launcher import ProcessGraph

    counter = context = None
    if listen:
        import rclpy

        context = rclpy.context.Context()
        rclpy.init(context=context)
        counter = OutputCounter(context)
    wait = counter.spin_for if counter else time.sleep
    graph = ProcessGraph(nodes, config_path(DEFAULT_CONFIG), log_dir=log_dir)
    times: list[float] = []
    rss: dict[str, list[float]] = {n: [] for n in nodes}
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
            for name, proc in graph.procs.items():
                value = rss_mb(proc.pid)
                rss[name].append(round(value, 2) if value is not None else float("nan"))
            dead = [n for n, ok in graph.alive().items() if not ok]
            print(f"{times[-1]:7.1f} s  " + "  ".join(f"{n} {rss[n][-1]:.1f} MB" for n in nodes)
                  + (f"  /human_pose_3d {rates[-1]:.1f} Hz" if rates else ""), file=sys.stderr, flush=True)
            if dead:
                print(f"died: {', '.join(dead)}; see {log_dir}", file=sys.stderr)
                break
    except KeyboardInterrupt:
        print("interrupted: the figures so far", file=sys.stderr)
    finally:
        codes = graph.stop()
        if counter:
            import rclpy

            counter.close()
            rclpy.try_shutdown(context=context)
    return {
        "minutes": round((times[-1] if times else 0.0) / 60.0, 2), "sample_s": sample_s, "warmup_s": warmup_s,
        "nodes": {n: {"rss_mb": rss[n], "slope_mb_per_min": slope_mb_per_min(times, rss[n], warmup_s),
                      "exit_code": codes.get(n)} for n in nodes},
        "times_s": times,
        "human_pose_3d_hz": rates,
        "logs": str(log_dir),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the graph runs")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--warmup-s", type=float, default=30.0, help="samples before this are left out of the slope")
    ap.add_argument("--nodes", nargs="+", choices=GRAPH, default=list(GRAPH), help="nodes to run")
    ap.add_argument("--no-listener", action="store_true", help="nobody subscribes to /human_pose_3d")
    ap.add_argument("--log-dir", default=None, help="node logs (default: a temp folder)")
    a = ap.parse_args(argv)
    log_dir = Path(a.log_dir or tempfile.mkdtemp(prefix="hpe_ros_soak_"))
    print(json.dumps(soak(a.nodes, a.minutes, a.sample_s, a.warmup_s, not a.no_listener, log_dir), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
