"""`hpe-ros`: the package's command line.

    hpe-ros demo [--out demo_out]                      node graph on a synthetic rig, scored, with a picture
    hpe-ros run --config config/multi_camera.yaml [--sim] [--in-process] [--duration S]
                                                       the same graph as `ros2 launch hpe_ros multi_camera.launch.py`
    hpe-ros triangulate --calib CALIB.toml --keypoints DIR_CAM1 DIR_CAM2 ... --out OUT
                        [--layout body25|body25b|coco17|halpe26] [--fps 30] [--format trc|json|auto] [--y-up]
                                                       OpenPose JSON folders -> OUT.trc or OUT.json + OUT.report.json
"""
from __future__ import annotations

import argparse
import sys
import time

from hpe_ros.resources import DEFAULT_CONFIG, resolve_path


def _cmd_demo(a) -> int:
    from hpe_ros.demo import run_demo

    run_demo(a.out, a.duration, a.cameras, a.people, a.seed)
    return 0


def _cmd_run(a) -> int:
    from hpe_ros.ros.launcher import ProcessGraph, graph, load_config, run_in_process

    path = resolve_path(a.config, DEFAULT_CONFIG)
    config = load_config(path)
    nodes = graph(a.sim)
    print(f"hpe-ros run: {' -> '.join(nodes)} with {path} ({'one process' if a.in_process else 'a process per node'})",
          flush=True)
    if a.in_process:
        run_in_process(nodes, config, a.duration)
        return 0
    procs = ProcessGraph(nodes, path)
    try:
        end = time.monotonic() + a.duration if a.duration else None
        while end is None or time.monotonic() < end:
            dead = [n for n, ok in procs.alive().items() if not ok]
            if dead:
                print(f"hpe-ros run: {', '.join(dead)} exited; stopping the graph", file=sys.stderr)
                procs.stop()
                return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    procs.stop()
    return 0


def _cmd_triangulate(a) -> int:
    import logging

    from hpe_ros.offline import format_report, output_paths, triangulate_folders, write_outputs

    logging.basicConfig(level=logging.WARNING, format="hpe-ros triangulate: %(message)s")
    try:
        output_paths(a.out, a.format)  # a contradictory --out / --format fails before the work
        result = triangulate_folders(a.calib, a.keypoints, a.layout, a.fps, progress=not a.no_progress)
        print(format_report(result.report), flush=True)
        written = write_outputs(result, a.out, a.format, a.y_up)
    except (ValueError, OSError) as exc:  # CalibrationError is a ValueError; nothing was written
        print(f"hpe-ros triangulate: error: {exc}", file=sys.stderr)
        return 2
    who = f"person {written['person_id']}" if written["format"] == "trc" else f"{len(result.ids)} person id(s)"
    print(f"wrote {written['output']} ({who}, {written['up_axis']}-up) and {written['report']}", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hpe-ros", description="multi-camera 3D human pose estimation for ROS 2")
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the node graph on a synthetic rig and score it")
    d.add_argument("--out", default="demo_out", help="folder for summary.json, skeletons.png and logs")
    d.add_argument("--duration", type=float, default=10.0, help="seconds of fused output to score")
    d.add_argument("--cameras", type=int, default=4)
    d.add_argument("--people", type=int, default=2)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("run", help="start the node graph from a parameter file")
    r.add_argument("--config", default="", help=f"ROS parameter YAML (default: the package's {DEFAULT_CONFIG})")
    r.add_argument("--sim", action="store_true", help="synthetic rig instead of camera_pose_node")
    r.add_argument("--in-process", action="store_true", help="all nodes on one executor in this process")
    r.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    r.set_defaults(func=_cmd_run)

    t = sub.add_parser("triangulate", help="fuse OpenPose JSON folders (one per camera) into a TRC or skeleton JSON")
    t.add_argument("--calib", required=True, help="calibration file (anipose/Pose2Sim TOML, rig YAML, OpenCV)")
    t.add_argument("--keypoints", required=True, nargs="+", metavar="DIR",
                   help="one OpenPose JSON folder per camera, in the calibration file's camera order")
    t.add_argument("--out", required=True,
                   help="output path without suffix (or ending in .trc / .json); the report goes to OUT.report.json")
    t.add_argument("--layout", default="body25", choices=["body25", "body25b", "coco17", "halpe26"],
                   help="keypoint layout of the JSON files (default: OpenPose's body25)")
    t.add_argument("--fps", type=float, default=30.0, help="frame rate of the videos (frame i is at i / fps s)")
    t.add_argument("--format", default="auto", choices=["auto", "trc", "json"],
                   help="auto: TRC when exactly one person id appears, else JSON; trc: the longest-lived id")
    t.add_argument("--y-up", action="store_true", help="write y-up coordinates as Pose2Sim does for OpenSim "
                                                      "((x, y, z) -> (y, z, x)); default keeps the z-up world")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_triangulate)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
