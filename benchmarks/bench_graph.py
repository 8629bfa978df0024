"""The live graph rig_sim_node -> lifter_node -> fusion_node over real DDS: CPU, latency, drops and MPJPE.

    .venv/bin/python benchmarks/bench_graph.py [--sizes 4x2 8x6 16x6] [--deployments processes in_process]
        [--variants baseline batched] [--seconds 10]

Per rig size (cameras x people), deployment and variant the graph runs for --seconds of fused output,
watched by hpe_ros.ros.demo's GraphMonitor and scored with hpe_ros.metrics.summarise_stream (the same
figures as `hpe-ros demo`). Deployments: ``processes`` = one process per node (ProcessGraph);
``in_process`` = lifter_node and fusion_node on one executor in one process (launcher.run_in_process).
The simulator always runs in its own process, so its CPU is measured apart from the graph's. The graph runs
on its own DDS domain (--domain-id) so that other graphs on the machine never feed it.

Variants set what the profile pointed at, side by side on the same machine and load:
``baseline`` (SingleThreadedExecutor, one lifter call per camera message), ``events`` (EventsExecutor),
``batched`` (EventsExecutor + one lifter call per frame for every camera: lifter_node.batch_window_s).

Per node: CPU seconds per frame (utime + stime of its process over the window / sim frames), and from
/diagnostics over the same window: messages in (processed), dropped, stage latency p50/p99. End to end:
2D stamp -> /human_pose_3d received p50/p99, dropped frames, MPJPE. CPU time is the figure to compare on
a loaded machine; latencies rise with the load. Prints one JSON document on stdout, progress on stderr.
--profile writes a cProfile (CPU time, not wall time) of every node process to <out>/<case>/<node>.prof.
--images: the simulator publishes raw camera images and camera_pose_node (its own process in both
deployments) finds the people in them, as `hpe-ros demo --images` runs it; latency is then from the image stamp.
"""
from __future__ import annotations

import os

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

VARIANTS = {  # name: (HPE_ROS_EXECUTOR, lifter_node.batch_window_s)
    "baseline": ("single", 0.0),
    "events": ("events", 0.0),
    "batched": ("events", 0.005),
}
DEPLOYMENTS = ("processes", "in_process")
RATE_HZ = 30.0  # simulated frames per second (--rate)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
# The composed process of the in_process deployment: its arguments are one JSON document.
# Loaded through PYTHONPATH into every node process by --profile: CPU-time cProfile dumped at a clean exit.
PROFILE_HOOK = """import os
if os.environ.get("HPE_ROS_PROFILE_DIR"):
    import atexit, cProfile, sys, time
    _profile = cProfile.Profile(time.process_time)
    _profile.enable()
    def _dump():
        _profile.disable()
        name = next((a.split(":=")[1] for a in sys.argv if a.startswith("__node:=")), "lifter_node+fusion_node")
        _profile.dump_stats(os.path.join(os.environ["HPE_ROS_PROFILE_DIR"], name + ".prof"))
    atexit.register(_dump)
"""
COMPOSE = ("import json, sys; from hpe_ros.ros.launcher import load_config, run_in_process; "
           "a = json.loads(sys.argv[1]); "
           "run_in_process(a['nodes'], load_config(a['config']), overrides=a['overrides'])")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


class Deployment:
    """The graph's processes: {label: Popen}, with alive() as ProcessGraph has, and stop()."""

    def __init__(self, deployment: str, overrides: dict, env: dict, log_dir: Path):
        from hpe_ros.resources import DEFAULT_CONFIG, config_path
        from hpe_ros.ros.launcher import ProcessGraph

        config = config_path(DEFAULT_CONFIG)
        sources = ["rig_sim_node"] + (["camera_pose_node"] if "camera_pose_node" in overrides else [])
        composed = ["lifter_node", "fusion_node"]
        graph_nodes = sources + composed if deployment == "processes" else sources
        self.graph = ProcessGraph(graph_nodes, config, overrides, env=env, log_dir=log_dir)
        self.procs = dict(self.graph.procs)
        self.composed = None
        if deployment == "in_process":
            args = json.dumps({"nodes": composed, "config": str(config), "overrides": overrides})
            self._log = open(log_dir / "lifter_node+fusion_node.log", "w")
            self.composed = subprocess.Popen([sys.executable, "-c", COMPOSE, args], env={**os.environ, **env},
                                             stdout=self._log, stderr=subprocess.STDOUT)
            self.procs["lifter_node+fusion_node"] = self.composed

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def cpu(self) -> dict[str, float]:
        return {n: cpu_seconds(p.pid) for n, p in self.procs.items() if p.poll() is None}

    def stop(self) -> dict[str, int]:
        codes = self.graph.stop()
        if self.composed is not None:
            self.composed.send_signal(2)
            try:
                self.composed.wait(5.0)
            except subprocess.TimeoutExpired:
                self.composed.kill()
                self.composed.wait()
            self._log.close()
            codes["lifter_node+fusion_node"] = self.composed.returncode
        return codes


def _spin_for(executor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)


def _stage_figures(before: dict, after: dict) -> dict:
    """Per /diagnostics stage over the window: messages processed and dropped, latency p50/p99 (ms)."""
    out = {}
    for name, values in sorted(after.items()):
        prev = before.get(name, {})
        delta = {k: int(values.get(k, 0)) - int(prev.get(k, 0)) for k in ("processed", "dropped", "errors")}
        out[name] = {"messages": delta["processed"], "dropped": delta["dropped"], "errors": delta["errors"],
                     "latency_ms_p50": float(values.get("latency_ms_p50", "nan")),
                     "latency_ms_p99": float(values.get("latency_ms_p99", "nan")),
                     **{k: values[k] for k in ("lift_ms", "batch") if k in values}}
    return out


def _per_node(stages: dict) -> dict:
    """Stages summed per node ("lifter_node: cam3" -> lifter_node): messages in, dropped, worst p50/p99."""
    nodes: dict[str, dict] = {}
    for name, s in stages.items():
        node = name.split(":")[0]
        n = nodes.setdefault(node, {"messages_in": 0, "dropped": 0, "stage_latency_ms_p50": 0.0,
                                    "stage_latency_ms_p99": 0.0})
        n["messages_in"] += s["messages"]
        n["dropped"] += s["dropped"]
        for q in ("p50", "p99"):
            if s[f"latency_ms_{q}"] == s[f"latency_ms_{q}"]:  # not NaN
                n[f"stage_latency_ms_{q}"] = max(n[f"stage_latency_ms_{q}"], s[f"latency_ms_{q}"])
    return nodes


def profile_env(case_dir: Path) -> dict:
    """Environment that makes every node process profile itself into case_dir (see PROFILE_HOOK)."""
    hook = case_dir / "profile_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PROFILE_HOOK)
    return {"HPE_ROS_PROFILE_DIR": str(case_dir),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}


def _frames_handled(stages: dict, cameras: int) -> dict:
    """Frames each process handled in the window: the sim's published frames, the lifter's messages / cameras,
    the fusion's fused frames. CPU is divided by these, so a node that falls behind and drops work on a loaded
    machine is not flattered by it."""
    def count(prefix):
        return sum(s["messages"] for n, s in stages.items() if n.startswith(prefix))

    fused = stages.get("fusion_node: fusion", {}).get("messages", 0)
    return {"rig_sim_node": count("rig_sim_node: "), "camera_pose_node": count("camera_pose_node: ") / cameras,
            "lifter_node": count("lifter_node: ") / cameras, "fusion_node": fused, "lifter_node+fusion_node": fused}


def run_case(cameras: int, people: int, deployment: str, variant: str, seconds: float, out: Path,
             startup_timeout: float = 120.0, profile: bool = False, images: bool = False) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from hpe_ros.ros.demo import GraphMonitor, _demo_rig, image_stage_parameters, raw_image_transport_env

    rate_hz = RATE_HZ
    executor_name, window = VARIANTS[variant]
    case_dir = out / f"{cameras}x{people}_{deployment}_{variant}"
    case_dir.mkdir(parents=True, exist_ok=True)
    rig, rig_file = _demo_rig(case_dir, cameras)
    common = {"calibration_file": str(rig_file), "cameras": rig.names}
    overrides = {"rig_sim_node": {**common, "num_people": people, "seed": 0, "rate_hz": rate_hz},
                 "lifter_node": {**common, "batch_window_s": window}, "fusion_node": common}
    if images:
        sim_images, overrides["camera_pose_node"] = image_stage_parameters(out / "models", common, people, rate_hz,
                                                                           "raw")
        overrides["rig_sim_node"].update(sim_images)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    monitor = GraphMonitor(context, rig.names[0])
    executor.add_node(monitor.node)
    env = {"HPE_ROS_EXECUTOR": executor_name, **(profile_env(case_dir) if profile else {}),
           **(raw_image_transport_env(case_dir, rig) if images else {})}
    graph = Deployment(deployment, overrides, env, case_dir)
    try:
        deadline = time.monotonic() + startup_timeout
        while not any(len(p.ids) for _, p in monitor.fused):
            executor.spin_once(timeout_sec=0.05)
            dead = [n for n, ok in graph.alive().items() if not ok]
            if dead or time.monotonic() > deadline:
                why = "died: " + ", ".join(dead) if dead else "timeout"
                raise RuntimeError(f"graph did not produce skeletons ({why}); see {case_dir}")
        _spin_for(executor, 1.5)  # a diagnostics message from every node before the window opens
        gc.collect()
        gc.disable()  # as hpe-ros demo: no collector pauses in the monitor while measuring
        diag_before = {k: dict(v) for k, v in monitor.diagnostics.items()}
        cpu_before, t_start, wall0 = graph.cpu(), time.time(), time.monotonic()
        _spin_for(executor, seconds)
        cpu_after, wall = graph.cpu(), time.monotonic() - wall0
        n_window = len(monitor.fused)
        _spin_for(executor, 1.2)  # the last in-flight frames and a diagnostics message
        monitor.fused = monitor.fused[:n_window]
    finally:
        gc.enable()
        codes = graph.stop()
    summary = monitor.summarise(t_start)
    monitor.node.destroy_node()
    executor.shutdown()
    rclpy.try_shutdown(context=context)

    stages = _stage_figures(diag_before, monitor.diagnostics)
    nodes = _per_node(stages)
    handled = _frames_handled(stages, cameras)
    for name in cpu_after:
        node = nodes.setdefault(name, {})
        cpu = cpu_after[name] - cpu_before.get(name, cpu_after[name])
        node.update({"frames": handled[name], "cpu_ms_per_frame": 1e3 * cpu / max(handled[name], 1),
                     "cpu_share_of_one_core": cpu / wall})
    return {
        "cameras": cameras, "people": people, "deployment": deployment, "variant": variant, "images": images,
        "executor": executor_name, "batch_window_s": window, "rate_hz": rate_hz, "seconds": round(wall, 2),
        "frames_published": handled["rig_sim_node"],
        "graph_cpu_ms_per_frame": sum(v.get("cpu_ms_per_frame", 0.0) for k, v in nodes.items() if k != "rig_sim_node"),
        "end_to_end": {k: summary[k] for k in ("frames", "dropped", "latency_ms_p50", "latency_ms_p99",
                                               "latency_ms_max", "mpjpe_mm", "pck50_pct", "missing_joints_pct",
                                               "id_switches") if k in summary},
        "fusion_step_ms": summary.get("fusion_step_ms", {}),
        "nodes": nodes, "stages": stages, "exit_codes": codes,
    }


def parse_size(text: str) -> tuple[int, int]:
    try:
        cameras, people = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected CAMERASxPEOPLE, e.g. 8x6") from None
    if cameras < 2 or people < 1:
        raise argparse.ArgumentTypeError(f"size {text!r}: at least 2 cameras and 1 person")
    return cameras, people


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=[(4, 2), (8, 6), (16, 6)],
                    help="CAMERASxPEOPLE (default: 4x2 8x6 16x6)")
    ap.add_argument("--deployments", nargs="+", choices=DEPLOYMENTS, default=list(DEPLOYMENTS))
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["baseline", "batched"])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per case (default 10)")
    ap.add_argument("--rate", type=float, default=30.0, help="simulated frame rate, Hz (default 30; lower it on a "
                    "machine too loaded to keep up: CPU per frame stays comparable)")
    ap.add_argument("--domain-id", type=int, default=None,
                    help="ROS_DOMAIN_ID of the measured graph (default: 100 + this process id mod 100)")
    ap.add_argument("--repeats", type=int, default=1, help="run the case list this many times, interleaved")
    ap.add_argument("--profile", action="store_true", help="cProfile (CPU time) every node process into --out")
    ap.add_argument("--out", default=None, help="folder for rig files and node logs (default: a temp folder)")
    ap.add_argument("--images", action="store_true", help="camera images -> camera_pose_node (coded-dot networks on "
                    "onnxruntime) in front of the lifter, as `hpe-ros demo --images`")
    a = ap.parse_args(argv)
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench_graph_"))
    os.environ["ROS_DOMAIN_ID"] = str(a.domain_id if a.domain_id is not None else 100 + os.getpid() % 100)
    global RATE_HZ
    RATE_HZ = a.rate
    results = []
    for _ in range(a.repeats):
        for cameras, people in a.sizes:
            for deployment in a.deployments:
                for variant in a.variants:  # variants back to back: same load, side by side
                    print(f"{cameras}x{people} {deployment} {variant} ...", file=sys.stderr, flush=True)
                    try:
                        r = run_case(cameras, people, deployment, variant, a.seconds, out, profile=a.profile,
                                     images=a.images)
                    except RuntimeError as exc:  # e.g. a machine too loaded to produce skeletons: say so, go on
                        print(f"  failed: {exc}", file=sys.stderr, flush=True)
                        results.append({"cameras": cameras, "people": people, "deployment": deployment,
                                        "variant": variant, "error": str(exc)})
                        continue
                    e = r["end_to_end"]
                    print(f"  graph CPU {r['graph_cpu_ms_per_frame']:.1f} ms/frame, p50 {e['latency_ms_p50']:.1f} ms, "
                          f"p99 {e['latency_ms_p99']:.1f} ms, dropped {e['dropped']}/{r['frames_published']}, "
                          f"MPJPE {e.get('mpjpe_mm', float('nan')):.1f} mm", file=sys.stderr, flush=True)
                    results.append(r)
    load = os.getloadavg()
    json.dump({"cpus": os.cpu_count(), "load_average_1_5_15": load, "rate_hz": RATE_HZ,
               "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]), "logs": str(out),
               "results": results}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
