"""A subscriber in its own process, for graphs whose output is only reachable from elsewhere (another namespace).

    python test/helpers/pose_monitor.py OUT.jsonl --duration 30

Appends one JSON line per /human_pose_3d message, {"t": arrival epoch s, "people": rows}, and one per
/diagnostics message, {"t": ..., "stamp": its header stamp (the publisher's epoch s), "diag": {status name:
{key: value}}}; each line is
flushed at once so a test can follow the file while the graph runs. Stops after --duration or on SIGINT.
"""
from __future__ import annotations

import argparse
import json
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="JSON-lines file to append to")
    parser.add_argument("--duration", type=float, required=True, help="seconds to listen")
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("pose_monitor")
    with open(args.out, "a") as out:
        def write(record: dict) -> None:
            out.write(json.dumps({"t": time.time(), **record}) + "\n")
            out.flush()

        def on_diagnostics(msg: DiagnosticArray) -> None:
            write({"stamp": msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
                   "diag": {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}})

        node.create_subscription(PointCloud2, "/human_pose_3d", lambda m: write({"people": m.height}),
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        end = time.monotonic() + args.duration
        try:
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass  # SIGINT is how a test stops it early
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
