"""`hpe-ros demo`'s ROS client: the real node graph (rig_sim_node -> lifter_node -> fusion_node, one process
each, real DDS) on a synthetic rig, watched by an independent subscriber that scores it against the ground
truth (`hpe_ros.metrics.summarise_stream`).

With images=True the simulator publishes camera images instead of 2D detections and the image half of the
chain runs too: rig_sim_node (coded-dot images) -> camera_pose_node (one node for all cameras, batched: the
coded-dot person detector and pose network, exported to ONNX under <out>/models, on onnxruntime) ->
lifter_node -> fusion_node.

Writes <out>/summary.json (frames, mpjpe_mm, latency_ms_p50/p99, dropped, the frames through each stage
from the nodes' /diagnostics counters, ...) and <out>/skeletons.png.
"""
from __future__ import annotations

import copy
import gc
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2

from hpe_ros.io.atomic import write_text_atomic
from hpe_ros.metrics import nearest_by_stamp, stage_flow, summarise_stream
from hpe_ros.resources import DEFAULT_CONFIG, DEFAULT_RIG, config_path, resolve_path
from hpe_ros.ros.diagnostics import read_status_values
from hpe_ros.ros.launcher import ProcessGraph, graph
from hpe_ros.ros.pointcloud import cloud_to_human_pose, cloud_to_pose2d, stamp_to_seconds
from hpe_ros.ros.qos import SENSOR

GT_TOPIC = "rig_sim/ground_truth"
DIAGNOSTICS_PERIOD_S = 0.2   # the stage counters are read from /diagnostics: often, so snapshots line up
FASTDDS_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor><transport_id>shm</transport_id><type>SHM</type>
        <segment_size>{segment}</segment_size></transport_descriptor>
      <transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type></transport_descriptor>
    </transport_descriptors>
    <participant profile_name="hpe_ros_demo_large_images" is_default_profile="true">
      <rtps>
        <userTransports><transport_id>shm</transport_id><transport_id>udp</transport_id></userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


class GraphMonitor:
    """An independent subscriber: fused skeletons, ground truth, one camera's 2D, diagnostics."""

    def __init__(self, context, view_camera: str):
        self.node = Node("hpe_ros_demo_monitor", context=context)
        self.fused: list[tuple[float, object]] = []  # (arrival wall time, HumanPoses)
        self.truth: dict[int, object] = {}  # stamp in ns -> HumanPoses
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.diagnostics_at_start: dict[str, dict[str, str]] = {}  # snapshot when measuring starts
        self.cpu_at_start: dict[str, float] = {}                    # node -> CPU s when measuring starts
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

    def summarise(self, t_start: float, cameras: Sequence[str] = ()) -> dict:
        """Score the fused frames acquired after t_start against the nearest ground-truth frame; the frames
        through each stage since measuring started (`stages`, per camera for `cameras`)."""
        summary = summarise_stream(self.fused, self.truth, t_start, self.diagnostics)
        summary["stages"] = stage_flow(self.diagnostics_at_start, self.diagnostics, cameras)
        sim = self.diagnostics.get("rig_sim_node: sim", {})
        pose = self.diagnostics.get(f"camera_pose_node: {cameras[0]}", {}) if cameras else {}
        # What making the images costs the simulator (mean per frame, all cameras; off the latency path:
        # rendered ahead), and the 2D node's last batched inference (all cameras).
        summary["sim_images_ms"] = {k.removesuffix("_ms"): float(sim[k]) for k in ("draw_ms", "encode_ms") if k in sim}
        summary["pose_2d_batch_ms"] = float(pose.get("infer_ms", "nan"))
        return summary


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


def _cpu_seconds(procs: ProcessGraph) -> dict[str, float]:
    """User + system CPU seconds of each node process so far (Linux /proc; empty elsewhere)."""
    out = {}
    for name, proc in procs.procs.items():
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _cpu_per_frame(before: dict[str, float], after: dict[str, float], frames: int | None) -> dict[str, float]:
    """CPU ms each node spent per simulated frame (all cameras) while measuring: steadier than rates on a
    shared machine. Resolution: the kernel's clock tick (10 ms) over the whole window."""
    if not frames:
        return {}
    return {name: (after[name] - before[name]) * 1e3 / frames for name in after if name in before}


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
    monitor.diagnostics_at_start = copy.deepcopy(monitor.diagnostics)
    monitor.cpu_at_start = _cpu_seconds(procs)
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


def _export_dot_models(folder: Path) -> tuple[Path, Path]:
    """(pose manifest, detector manifest): the coded-dot pose network and person detector as ONNX files."""
    from hpe_ros.sim.dot_detector import export_coded_dot_models

    try:
        return export_coded_dot_models(folder)
    except ImportError as exc:
        raise RuntimeError(f"demo --images builds its ONNX networks with torch: {exc} (pip install '.[torch]')") \
            from exc


def _graph_parameters(out: Path, rig, rig_file: Path, people: int, seed: int, rate_hz: float | None,
                      images: bool, transport: str) -> tuple[list[str], dict[str, dict]]:
    """(nodes upstream first, per-node parameter overrides) of the demo graph."""
    common = {"calibration_file": str(rig_file), "cameras": rig.names, "diagnostics_period_s": DIAGNOSTICS_PERIOD_S}
    sim = {**common, "num_people": people, "seed": seed, **({"rate_hz": rate_hz} if rate_hz else {})}
    overrides = {"rig_sim_node": sim, "lifter_node": common, "fusion_node": common}
    if not images:
        return graph(sim=True), overrides
    sim_images, overrides["camera_pose_node"] = image_stage_parameters(out / "models", common, people, rate_hz,
                                                                       transport)
    sim.update(sim_images)
    return ["rig_sim_node", "camera_pose_node", "lifter_node", "fusion_node"], overrides


def image_stage_parameters(models: Path, common: dict, people: int, rate_hz: float | None,
                           transport: str) -> tuple[dict, dict]:
    """(rig_sim_node's parameters for images, camera_pose_node's parameters) of a graph fed by simulated
    images; exports the coded-dot networks into `models`. common: parameters every node gets."""
    pose, detector = _export_dot_models(models)
    camera_pose = {**common, "backend": "onnxruntime", "model": str(pose), "detector": str(detector),
                   "transport": transport, "providers": "cpu", "threads": 1, "max_people": max(4, 2 * people),
                   "camera_rate_hz": rate_hz or 0.0}
    return {"output": "images", "image_transport": transport, "image_encoding": "mono8"}, camera_pose


def raw_image_transport_env(out: Path, rig) -> dict[str, str]:
    """Environment for graphs that move raw images: a Fast DDS shared-memory segment that holds a few bursts.

    The default segment (512 KB per process) holds fewer raw images than the simulator publishes at once
    (one per camera, 300 KB each in mono8), so the oldest of a burst is overwritten before it is read and
    that camera loses frames at any rate. Nothing is changed when Fast DDS is not the middleware or the
    user gave it a profile.
    """
    if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or \
            os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return {}
    burst = sum(c.size[0] * c.size[1] for c in rig)  # bytes of one mono8 image per camera
    path = out / "fastdds_large_images.xml"
    write_text_atomic(path, FASTDDS_PROFILE.format(segment=max(8 << 20, 8 * burst)))
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(path)}


def run_demo(out_dir: str | Path = "demo_out", duration: float = 10.0, cameras: int = 4, people: int = 2,
             seed: int = 0, startup_timeout: float = 60.0, quiet: bool = False, images: bool = False,
             transport: str = "raw", rate_hz: float | None = None) -> dict:
    """Start the graph, watch it for `duration` seconds of fused output, score, render, write files.

    images: the simulator publishes camera images (`transport` raw or compressed) that camera_pose_node
    turns into 2D; rate_hz: the cameras' frame rate (None: the parameter file's).
    """
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rig, rig_file = _demo_rig(out, cameras)
    nodes, overrides = _graph_parameters(out, rig, rig_file, people, seed, rate_hz, images, transport)

    say(f"hpe-ros demo: {len(rig)} cameras, {people} people, {duration:.0f} s "
        f"({' -> '.join(nodes)}, one process each{f'; {transport} images' if images else ''})")
    context = rclpy.context.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    monitor = GraphMonitor(context, rig.names[0])
    executor.add_node(monitor.node)
    env = raw_image_transport_env(out, rig) if images and transport == "raw" else {}
    procs = ProcessGraph(nodes, config_path(DEFAULT_CONFIG), overrides, env=env, log_dir=out / "logs")
    try:
        t_start = _watch(executor, monitor, procs, duration, startup_timeout, out / "logs", say)
        cpu_at_end = _cpu_seconds(procs)
    finally:
        gc.enable()
        codes = procs.stop()
    summary = monitor.summarise(t_start, rig.names)
    summary["cpu_ms_per_frame"] = _cpu_per_frame(monitor.cpu_at_start, cpu_at_end, summary["stages"]["sim_frames"])
    summary.update({"cameras": len(rig), "people": people, "duration_s": duration, "node_exit_codes": codes,
                    "input": f"{transport} images" if images else "2D detections",
                    "rate_hz": rate_hz or _config_rate()})
    _render(out / "skeletons.png", rig, monitor,
            f"hpe_ros demo: {len(rig)} cameras, {people} people; MPJPE {summary['mpjpe_mm']:.1f} mm")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    monitor.node.destroy_node()
    executor.shutdown()
    rclpy.try_shutdown(context=context)
    _say_summary(summary, images, say)
    say(f"wrote {out / 'summary.json'} and {out / 'skeletons.png'}")
    return summary


def _config_rate() -> float:
    """The simulator's frame rate in the package's parameter file."""
    from hpe_ros.ros.launcher import load_config, node_parameters

    return float(node_parameters(load_config(config_path(DEFAULT_CONFIG)), "rig_sim_node").get("rate_hz", 30.0))


def _say_summary(summary: dict, images: bool, say) -> None:
    stages = summary["stages"]
    say(f"frames fused          {summary['frames']}")
    say(f"MPJPE                 {summary['mpjpe_mm']:.1f} mm  (PCK@50mm {summary['pck50_pct']:.1f} %, "
        f"missing joints {summary['missing_joints_pct']:.1f} %, id switches {summary['id_switches']})")
    say(f"latency {'image' if images else '2D'} stamp -> /human_pose_3d received: "
        f"p50 {summary['latency_ms_p50']:.1f} ms, p99 {summary['latency_ms_p99']:.1f} ms")
    say(f"dropped frames        {summary['dropped']}")
    say(f"per stage (/diagnostics counters while measuring): simulator {stages['sim_frames']} frames "
        f"({stages['sim_fell_behind']} behind), fused {stages['fused']}")
    for cam, counts in stages["cameras"].items():
        say(f"  {cam}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    say("CPU per frame (all cameras): " + ", ".join(f"{k} {v:.1f} ms" for k, v in summary["cpu_ms_per_frame"].items()))
    if images:
        say(f"image making (simulator, rendered ahead): {summary['sim_images_ms']} ms per frame; "
            f"2D batch inference {summary['pose_2d_batch_ms']:.1f} ms")


__all__ = ["run_demo", "GraphMonitor", "GT_TOPIC", "image_stage_parameters", "raw_image_transport_env"]
