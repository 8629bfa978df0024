"""Where a node's memory goes over minutes: tracemalloc snapshots of one node of the live graph, diffed.

    .venv/bin/python benchmarks/soak_trace.py --node fusion_node [--minutes 6] [--first-s 90] [--images]
        [--frames 12] [--top 12]

Runs the graph of bench_soak.py (rig_sim_node, lifter_node, fusion_node; with --images camera_pose_node too),
each node a process of its own on a DDS domain of its own, but `--node` runs under tracemalloc (`--frames`
frames per allocation): it takes a snapshot at --first-s and at the end, and this prints what the Python
heap gained between them (by line, and the largest by traceback) beside the node's RSS growth over the same
interval. Python's growth much smaller than RSS's says the rest is native (the allocator, onnxruntime, DDS).
tracemalloc slows the node's allocations (about 2x), so its rate can fall behind: a diagnostic, not a soak.
"""
from __future__ import annotations

import os

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import argparse  # noqa: E402
import json  # noqa: E402
import runpy  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_soak import GRAPH, IMAGE_GRAPH, graph_overrides, rss_mb, stop_process  # noqa: E402


def serve_traced(module: str, out: Path, first_s: float, frames: int, ros_args: list[str]) -> None:
    """Run node `module` (as `python -m`) under tracemalloc: snapshot `first` at first_s, `last` on SIGUSR1."""
    tracemalloc.start(frames)
    start = time.monotonic()

    def snapshot(name: str) -> None:
        traced, rss = tracemalloc.get_traced_memory()[0], rss_mb(os.getpid())  # before the snapshot's own memory
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        snap.dump(str(out / f"{name}.snapshot"))
        del snap
        (out / f"{name}.json").write_text(json.dumps({"t_s": time.monotonic() - start, "traced_mb": traced / 2**20,
                                                      "rss_mb": rss}))

    def first() -> None:
        time.sleep(first_s)
        snapshot("first")

    threading.Thread(target=first, daemon=True).start()
    signal.signal(signal.SIGUSR1, lambda *_: snapshot("last"))
    sys.argv = [module, *ros_args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def start_traced(node: str, overrides: dict, out: Path, first_s: float, frames: int, log: Path) -> subprocess.Popen:
    from hpe_ros.resources import DEFAULT_CONFIG, config_path
    from hpe_ros.ros.launcher import NODE_MODULES, node_command

    command = node_command(node, config_path(DEFAULT_CONFIG), overrides.get(node), workdir=out)
    ros_args = command[command.index("--ros-args"):]
    return subprocess.Popen([sys.executable, __file__, "--serve", NODE_MODULES[node][0], "--out", str(out),
                             "--first-s", str(first_s), "--frames", str(frames), *ros_args],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def report(out: Path, top: int) -> dict:
    """The Python heap's growth between the snapshots, by line and by traceback, and RSS over the same span."""
    first, last = (tracemalloc.Snapshot.load(str(out / f"{n}.snapshot")) for n in ("first", "last"))
    meta = {n: json.loads((out / f"{n}.json").read_text()) for n in ("first", "last")}
    minutes = (meta["last"]["t_s"] - meta["first"]["t_s"]) / 60.0
    by_line = [{"where": str(s.traceback[0]), "size_kb": round(s.size_diff / 1024, 1), "count": s.count_diff}
               for s in last.compare_to(first, "lineno")[:top]]
    by_trace = [{"size_kb": round(s.size_diff / 1024, 1), "count": s.count_diff, "traceback": s.traceback.format()}
                for s in last.compare_to(first, "traceback")[:3]]
    return {"minutes": round(minutes, 2),
            "rss_mb": [meta["first"]["rss_mb"], meta["last"]["rss_mb"]],
            "traced_mb": [round(meta["first"]["traced_mb"], 3), round(meta["last"]["traced_mb"], 3)],
            "top_by_line": by_line, "top_by_traceback": by_trace}


def trace(node: str, minutes: float, first_s: float, images: bool, frames: int, top: int, out: Path) -> dict:
    from hpe_ros.resources import DEFAULT_CONFIG, config_path
    from hpe_ros.ros.launcher import ProcessGraph

    nodes = list(IMAGE_GRAPH if images else GRAPH)
    if node not in nodes:
        raise SystemExit(f"{node} is not in the graph {nodes} (camera_pose_node needs --images)")
    overrides = graph_overrides(nodes, images, None, out)
    graph = ProcessGraph([n for n in nodes if n != node], config_path(DEFAULT_CONFIG), overrides, log_dir=out)
    traced = start_traced(node, overrides, out, first_s, frames, out / f"{node}.traced.log")
    try:
        end = time.monotonic() + minutes * 60.0
        while time.monotonic() < end and traced.poll() is None:
            time.sleep(1.0)
        if traced.poll() is not None:
            raise SystemExit(f"{node} exited ({traced.returncode}); see {out / (node + '.traced.log')}")
        traced.send_signal(signal.SIGUSR1)
        while not (out / "last.json").exists() and traced.poll() is None:
            time.sleep(0.5)
    finally:
        stop_process(traced)
        graph.stop()
    return {"node": node, "images": images, **report(out, top)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--node", default="fusion_node", choices=IMAGE_GRAPH, help="the node run under tracemalloc")
    ap.add_argument("--minutes", type=float, default=6.0, help="how long the graph runs")
    ap.add_argument("--first-s", type=float, default=90.0, help="when the first snapshot is taken (s)")
    ap.add_argument("--images", action="store_true", help="the image graph (camera_pose_node)")
    ap.add_argument("--frames", type=int, default=12, help="traceback depth tracemalloc keeps")
    ap.add_argument("--top", type=int, default=12, help="lines listed")
    ap.add_argument("--domain-id", type=int, default=None,
                    help="ROS_DOMAIN_ID (default: 230 + pid mod 3, which the other benchmarks leave free)")
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="snapshots and logs (default: a temp folder)")
    a, rest = ap.parse_known_args(argv)
    if a.serve:
        serve_traced(a.serve, Path(a.out), a.first_s, a.frames, rest)
        return 0
    os.environ["ROS_DOMAIN_ID"] = str(a.domain_id if a.domain_id is not None else 230 + os.getpid() % 3)
    out = Path(a.out or tempfile.mkdtemp(prefix="hpe_ros_soak_trace_"))
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(trace(a.node, a.minutes, a.first_s, a.images, a.frames, a.top, out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
