"""`hpe-ros demo`'s ROS client: the real node graph (rig_sim_node -> lifter_node -> fusion_node, one process
each, real DDS) on a synthetic rig, watched by an independent subscriber that scores it against the ground
truth (`hpe_ros.metrics.summarise_stream`).

Writes <out>/summary.json (frames, mpjpe_mm, latency_ms_p50/p99, dropped, ...) and <out>/skeletons.png.
"""
from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2

from hpe_ros.io.atomic import write_text_atomic
from hpe_ros.metrics import nearest_by_stamp, summarise_stream
from hpe_ros.resources import DEFAULT_CONFIG, DEFAULT_RIG, config_path, resolve_path
from hpe_ros.ros.diagnostics import read_status_values
from hpe_ros.ros.launcher import ProcessGraph, graph
from hpe_ros.ros.pointcloud import cloud_to_human_pose, cloud_to_pose2d, stamp_to_seconds
from hpe_ros.ros.qos import SENSOR

GT_TOPIC = "rig_sim/ground_truth"


class GraphMonitor:
    """An independent subscriber: fused skeletons, ground truth, one camera's 2D, diagnostics."""

    def __init__(self, context, view_camera: str):
        self.node = Node("hpe_ros_demo_monitor", context=context)
        self.fused: list[tuple[float, object]] = []  # (arrival wall time, HumanPoses)
        self.truth: dict[int, object] = {}  # stamp in ns -> HumanPoses
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.node.create_subscription(PointCloud2, "human_pose_3d",
                                      lambda m: self.fused.append((time.time(), cloud_to_human_pose(m))), SENSOR)
        # Best effort, as a controller would subscribe: a lost sample is a drop, never a late retransmit.
        self.node.create_subscription(PointCloud2, GT_TOPIC, self._on_truth, SENSOR)
        self.view2d: dict[int, tuple] = {}  # stamp in ns -> (points2d, scores) of the view camera
        self.node.create_subscription(PointCloud2, f"{view_camera}/pose_2d",
                                      lambda m: self.view2d.__setitem__(round(stamp_to_seconds(m.header.stamp) * 1e9),
                                                                        cloud_to_pose2d(m)), SENSOR)
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      lambda m: self.diagnostics.update(read_status_values(m)), 10)

    def _on_truth(self, msg) -> None:
        poses = cloud_to_human_pose(msg)
        self.truth[round(poses.stamp * 1e9)] = poses

    def truth_near(self, stamp: float, tolerance_s: float = 0.008):
        return nearest_by_stamp(self.truth, stamp, tolerance_s)

    def view_near(self, stamp: float, tolerance_s: float = 0.008):
        return nearest_by_stamp(self.view2d, stamp, tolerance_s)

    def summarise(self, t_start: float) -> dict:
        """Score the fused frames acquired after t_start against the nearest ground-truth frame."""
        return summarise_stream(self.fused, self.truth, t_start, self.diagnostics)


def _demo_rig(out: Path, cameras: int):
    """(rig, calibration file): the shipped 4-camera rig, or `default_rig(cameras)` written under `out`."""
    from hpe_ros.io.calibration import load_rig, save_toml_rig
    from hpe_ros.sim import default_rig

    if cameras == 4:
        rig_file = resolve_path("", DEFAULT_RIG)
        return load_rig(rig_file), rig_file
    rig = default_rig(cameras)
    rig_file = out / f"rig_{cameras}_cameras.toml"
    save_toml_rig(rig, rig_file)
    return rig, rig_file


def _watch(executor, monitor: GraphMonitor, procs: ProcessGraph, duration: float, startup_timeout: float,
           log_dir: Path, say) -> float:
    """Spin until the first skeletons arrive, then for `duration` s; returns the measuring start (wall time)."""
    deadline = time.monotonic() + startup_timeout
    while not any(len(p.ids) for _, p in monitor.fused):
        executor.spin_once(timeout_sec=0.05)
        dead = [n for n, ok in procs.alive().items() if not ok]
        if dead or time.monotonic() > deadline:
            why = ("died: " + ", ".join(dead)) if dead else "timeout"
            raise RuntimeError(f"graph did not produce skeletons ({why}); see {log_dir}")
    say("first skeletons received; measuring ...")
    # The monitor keeps every message it receives; a full garbage-collector pass over them would stall
    # it and show up as latency that is not the graph's. Collect once now, then not while measuring.
    gc.collect()
    gc.disable()
    t_start = time.time()
    end = time.monotonic() + duration
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    # Let the last in-flight frames and a diagnostics message arrive before scoring.
    settle = time.monotonic() + 1.2
    n_window = len(monitor.fused)
    while time.monotonic() < settle:
        executor.spin_once(timeout_sec=0.05)
    monitor.fused = monitor.fused[:n_window]
    return t_start


def _render(path: Path, rig, monitor: GraphMonitor, title: str) -> None:
    """The last fused frame with its ground truth and the view camera's 2D detections."""
    from hpe_ros.render import render_scene
    from hpe_ros.skeleton import get_layout

    layout = get_layout("coco17")
    last = monitor.fused[-1][1] if monitor.fused else None
    gt = monitor.truth_near(last.stamp) if last is not None else None
    view = (monitor.view_near(last.stamp) if last is not None else None) or \
        (np.zeros((0, layout.num_joints, 2)), np.zeros((0, layout.num_joints)))
    render_scene(path, rig, layout,
                 last.points if last is not None else np.zeros((0, layout.num_joints, 3)),
                 last.ids if last is not None else np.zeros(0, int), gt.points if gt is not None else None,
                 0, view[0], view[1], title=title)


def run_demo(out_dir: str | Path = "demo_out", duration: float = 10.0, cameras: int = 4, people: int = 2,
             seed: int = 0, startup_timeout: float = 60.0, quiet: bool = False) -> dict:
    """Start the graph, watch it for `duration` seconds of fused output, score, render, write files."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rig, rig_file = _demo_rig(out, cameras)
    common = {"calibration_file": str(rig_file), "cameras": rig.names}
    overrides = {"rig_sim_node": {**common, "num_people": people, "seed": seed},
                 "lifter_node": common, "fusion_node": common}

    say(f"hpe-ros demo: {len(rig)} cameras, {people} people, {duration:.0f} s "
        f"(rig_sim_node -> lifter_node -> fusion_node, one process each)")
    context = rclpy.context.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    monitor = GraphMonitor(context, rig.names[0])
    executor.add_node(monitor.node)
    procs = ProcessGraph(graph(sim=True), config_path(DEFAULT_CONFIG), overrides, log_dir=out / "logs")
    try:
        t_start = _watch(executor, monitor, procs, duration, startup_timeout, out / "logs", say)
    finally:
        gc.enable()
        codes = procs.stop()
    summary = monitor.summarise(t_start)
    summary.update({"cameras": len(rig), "people": people, "duration_s": duration, "node_exit_codes": codes})
    _render(out / "skeletons.png", rig, monitor,
            f"hpe_ros demo: {len(rig)} cameras, {people} people; MPJPE {summary['mpjpe_mm']:.1f} mm")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    monitor.node.destroy_node()
    executor.shutdown()
    rclpy.try_shutdown(context=context)

    say(f"frames fused          {summary['frames']}")
    say(f"MPJPE                 {summary['mpjpe_mm']:.1f} mm  (PCK@50mm {summary['pck50_pct']:.1f} %, "
        f"missing joints {summary['missing_joints_pct']:.1f} %, id switches {summary['id_switches']})")
    say(f"latency 2D stamp -> /human_pose_3d received: p50 {summary['latency_ms_p50']:.1f} ms, "
        f"p99 {summary['latency_ms_p99']:.1f} ms")
    say(f"dropped frames        {summary['dropped']}")
    say(f"wrote {out / 'summary.json'} and {out / 'skeletons.png'}")
    return summary


__all__ = ["run_demo", "GraphMonitor", "GT_TOPIC"]
