"""What a subscriber that falls behind costs in memory, per executor: events, events + Inbox, single-threaded.

    .venv/bin/python benchmarks/bench_executor_backlog.py [--minutes 3] [--slow-ms 8] [--rate-hz 30]
        [--topics 8] [--variants events inbox single]

Each variant is two processes on a DDS domain of its own: a publisher of --topics PointCloud2 topics at
--rate-hz (pose_2d-sized clouds, 2 people x 17 joints), and a subscriber whose callback takes --slow-ms
(a sleep: the node is behind whenever topics x rate x slow-ms > 1 s). Subscriber variants:
- `events`: rclpy's EventsExecutor, the slow callback registered directly (every node's executor here);
- `inbox`: the same executor, the callback behind `hpe_ros.ros.inbox.Inbox` (what fusion_node does);
- `single`: rclpy's SingleThreadedExecutor (wait sets), the callback registered directly.
Every 10 s each subscriber trims its heap and reads `hpe_ros.heap.heap_usage()`. Prints one JSON document:
per variant the messages handled per second, the live C heap's samples and its slope (MB/min, after the
first minute), and the ratio of each slope to `events`'. The subscribers run for --minutes, then stop.
"""
from __future__ import annotations

import os

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_soak import memory_trend  # the soak's slope fit and its sample rules

VARIANTS = ("events", "inbox", "single")


def _cloud(people: int):
    from sensor_msgs.msg import PointCloud2, PointField

    msg = PointCloud2()
    msg.height, msg.width = people, 17
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(("u", "v", "confidence", "person", "joint"))]
    msg.point_step, msg.row_step = 20, 20 * 17
    msg.data = bytes(people * 17 * 20)
    return msg


def publish(topics: int, rate_hz: float, seconds: float) -> None:
    import rclpy
    from sensor_msgs.msg import PointCloud2

    from hpe_ros.ros.qos import POSES

    rclpy.init()
    node = rclpy.create_node("backlog_publisher")
    pubs = [node.create_publisher(PointCloud2, f"cam{i}/pose_2d", POSES) for i in range(topics)]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        for pub in pubs:
            pub.publish(_cloud(2))
        time.sleep(max(0.0, 1.0 / rate_hz - (time.monotonic() - started)))
    rclpy.shutdown()


def subscribe(variant: str, topics: int, slow_ms: float, seconds: float, out: Path) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.experimental import EventsExecutor
    from sensor_msgs.msg import PointCloud2

    from hpe_ros.heap import heap_usage, release_free_memory
    from hpe_ros.ros.inbox import Inbox
    from hpe_ros.ros.qos import SENSOR

    rclpy.init()
    node = rclpy.create_node("backlog_subscriber")
    executor = SingleThreadedExecutor() if variant == "single" else EventsExecutor()
    handled = [0]

    def slow(msg) -> None:
        handled[0] += 1
        time.sleep(slow_ms / 1e3)

    inbox = Inbox(lambda fn: executor.create_task(fn))
    for i in range(topics):
        callback = inbox.wrap(slow, SENSOR.depth) if variant == "inbox" else slow
        node.create_subscription(PointCloud2, f"cam{i}/pose_2d", callback, SENSOR)
    executor.add_node(node)
    rows, start = [], time.monotonic()
    last = start
    while time.monotonic() - start < seconds:
        executor.spin_once(timeout_sec=0.1)
        if time.monotonic() - last >= 10.0:
            last = time.monotonic()
            release_free_memory()
            rows.append({"t_s": round(last - start, 1), "handled": handled[0], **heap_usage()})
    out.write_text(json.dumps(rows))
    rclpy.shutdown()


def slope_mb_per_min(rows: list[dict], key: str = "malloc_live_mb", after_s: float = 60.0) -> float | None:
    """bench_soak's least-squares slope (MB/min) of `key` over the samples after `after_s`; None with too few."""
    trend = memory_trend([r["t_s"] for r in rows], [r[key] for r in rows], after_s, float("inf"))
    return trend["slope_mb_per_min"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--slow-ms", type=float, default=8.0, help="how long the subscriber's callback takes")
    ap.add_argument("--rate-hz", type=float, default=30.0)
    ap.add_argument("--topics", type=int, default=8)
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    seconds = a.minutes * 60.0
    if a.role == "pub":
        publish(a.topics, a.rate_hz, seconds + 15.0)
        return 0
    if a.role == "sub":
        subscribe(a.variant, a.topics, a.slow_ms, seconds, Path(a.out))
        return 0
    common = ["--minutes", str(a.minutes), "--slow-ms", str(a.slow_ms), "--rate-hz", str(a.rate_hz),
              "--topics", str(a.topics)]
    folder = Path(tempfile.mkdtemp(prefix="hpe_ros_backlog_"))
    procs = []
    for k, variant in enumerate(a.variants):
        env = {**os.environ, "ROS_DOMAIN_ID": str(170 + (os.getpid() + k) % 30)}
        me = [sys.executable, __file__, *common]
        procs.append(subprocess.Popen([*me, "--role", "pub"], env=env))
        procs.append(subprocess.Popen([*me, "--role", "sub", "--variant", variant, "--out",
                                       str(folder / f"{variant}.json")], env=env))
    print(f"{len(a.variants)} variants for {a.minutes} min; samples in {folder}", file=sys.stderr)
    for p in procs:
        p.wait()
    result: dict = {"minutes": a.minutes, "slow_ms": a.slow_ms, "rate_hz": a.rate_hz, "topics": a.topics,
                    "offered_per_s": a.topics * a.rate_hz, "capacity_per_s": round(1e3 / a.slow_ms, 1),
                    "variants": {}}
    for variant in a.variants:
        path = folder / f"{variant}.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        result["variants"][variant] = {
            "handled_per_s": round(rows[-1]["handled"] / rows[-1]["t_s"], 1) if rows else None,
            "malloc_live_mb_per_min": slope_mb_per_min(rows),
            "rss_mb_per_min": slope_mb_per_min(rows, "rss_mb"),
            "malloc_live_mb": [round(r["malloc_live_mb"], 3) for r in rows]}
    base = result["variants"].get("events", {}).get("malloc_live_mb_per_min")
    if base:
        result["slope_ratio_to_events"] = {v: round(r["malloc_live_mb_per_min"] / base, 4)
                                           for v, r in result["variants"].items()
                                           if r["malloc_live_mb_per_min"] is not None}
    print(json.dumps(result, indent=1))
    for variant, r in result["variants"].items():
        print(f"{variant:8} handled {r['handled_per_s']}/s  live C heap {r['malloc_live_mb_per_min']:+.4f} MB/min  "
              f"RSS {r['rss_mb_per_min']:+.4f} MB/min" if r["malloc_live_mb_per_min"] is not None
              else f"{variant:8} too few samples", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
