"""`hpe-ros demo` and `hpe-ros run`: the ROS 2 node graph, scored on a synthetic rig or started from a config."""
from __future__ import annotations

import signal
import sys
import time

from hpe_ros.cli.common import Terminated, at_least, non_negative_int, positive_float, positive_int
from hpe_ros.resources import DEFAULT_CONFIG, resolve_path


def _cmd_demo(a) -> int:
    from hpe_ros.ros.demo import run_demo

    run_demo(a.out, a.duration, a.cameras, a.people, a.seed, images=a.images, transport=a.transport, rate_hz=a.rate)
    return 0


def _cmd_run(a) -> int:
    from hpe_ros.ros.launcher import ProcessGraph, graph, load_config, run_in_process

    path = resolve_path(a.config, DEFAULT_CONFIG)
    config = load_config(path)
    nodes = graph(a.sim)
    print(f"hpe-ros run: {' -> '.join(nodes)} with {path} ({'one process' if a.in_process else 'a process per node'})",
          flush=True)
    if a.in_process:
        stopped_by = run_in_process(nodes, config, a.duration)
        if stopped_by is not None:  # the graph is down; the command reports the signal as every command does
            raise Terminated if stopped_by == signal.SIGTERM else KeyboardInterrupt
        return 0
    procs = ProcessGraph(nodes, path)
    try:
        end = time.monotonic() + a.duration if a.duration else None
        while end is None or time.monotonic() < end:
            dead = [n for n, ok in procs.alive().items() if not ok]
            if dead:
                print(f"hpe-ros run: {', '.join(dead)} exited; stopping the graph", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:  # Ctrl-C / SIGTERM: the graph is stopped here, the command's status says which signal
        procs.stop()
    return 0


def add_parsers(sub) -> None:
    d = sub.add_parser("demo", help="run the node graph on a synthetic rig and score it")
    d.add_argument("--out", default="demo_out", help="folder for summary.json, skeletons.png and logs")
    d.add_argument("--duration", "--seconds", type=positive_float, default=10.0,
                   help="seconds of fused output to score")
    d.add_argument("--cameras", type=at_least(2), default=4)
    d.add_argument("--people", type=positive_int, default=2)
    d.add_argument("--seed", type=non_negative_int, default=0)
    d.add_argument("--rate", type=positive_float, default=None, help="camera frame rate in Hz (default: the "
                   "parameter file's, 30)")
    d.add_argument("--images", action="store_true", help="the simulator publishes camera images; camera_pose_node "
                   "finds the people in them (coded-dot detector and pose network, ONNX on onnxruntime; needs torch "
                   "to build them)")
    d.add_argument("--transport", choices=("raw", "compressed"), default="raw",
                   help="with --images: raw sensor_msgs/Image (mono8) or JPEG CompressedImage")
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("run", help="start the node graph from a parameter file")
    r.add_argument("--config", default="", help=f"ROS parameter YAML (default: the package's {DEFAULT_CONFIG})")
    r.add_argument("--sim", action="store_true", help="synthetic rig instead of camera_pose_node")
    r.add_argument("--in-process", action="store_true", help="all nodes on one executor in this process")
    r.add_argument("--duration", type=positive_float, default=None, help="stop after this many seconds")
    r.set_defaults(func=_cmd_run)
