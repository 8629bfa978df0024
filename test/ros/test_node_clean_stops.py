"""Node processes stop without a traceback whatever signals arrive, in whatever order and at whatever moment:
SIGINT or SIGTERM during start-up (configure/activate), while spinning, in bursts (SIGINT then SIGTERM,
a process group's Ctrl-C followed by the launcher's own SIGINT), for every node and for a ProcessGraph.

A node is signalled once `base.run` has installed its handlers (SigCgt in /proc/<pid>/status): before
that the process is still importing, where ProcessGraph starts it with SIGINT ignored.
"""
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hpe_ros.resources import DEFAULT_CONFIG, config_path
from hpe_ros.ros.launcher import NODE_MODULES, ProcessGraph, node_command

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

INT, TERM = signal.SIGINT, signal.SIGTERM
# (seconds to wait, signal) steps, from the moment the node's handlers are in place.
PLANS = [
    [(0.0, INT)],                                # during rclpy.init / construction / configure
    [(0.0, TERM)],
    [(0.3, TERM), (0.1, TERM)],                  # during activate, then again while exiting
    [(2.0, INT)],                                # spinning
    [(2.0, TERM), (0.05, INT)],                  # SIGTERM, then SIGINT during the exit
    [(1.0, INT), (0.0, TERM), (0.02, INT)],      # a burst
]


def handlers_installed(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(caught, 16) >> (TERM - 1) & 1)


def wait_for_handlers(proc, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not handlers_installed(proc.pid) and proc.poll() is None:
        assert time.monotonic() < deadline, "the node did not start"
        time.sleep(0.02)


def signal_node(node: str, plan) -> tuple[int | None, str]:
    """Start `node` with the package config, run `plan`; (exit code, stderr + stdout)."""
    proc = subprocess.Popen(node_command(node, config_path(DEFAULT_CONFIG)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_handlers(proc)
        for delay, sig in plan:
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            out, _ = proc.communicate()
    return proc.returncode, out


def test_every_node_stops_without_a_traceback_whatever_the_signals():
    trials = [(node, PLANS[(i + k) % len(PLANS)]) for i, node in enumerate(NODE_MODULES) for k in range(3)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: signal_node(*t), trials))
    for (node, plan), (code, out) in zip(trials, results):
        assert "Traceback" not in out, (node, plan, out)
        assert code == 0, (node, plan, code, out)


@pytest.mark.parametrize("first", [INT, TERM])
def test_graph_stops_without_a_traceback_after_a_group_signal(tmp_path, first):
    """Every node signalled at once (a terminal's Ctrl-C reaches the whole group), then ProcessGraph.stop."""
    graph = ProcessGraph(["rig_sim_node", "lifter_node", "fusion_node"], config_path(DEFAULT_CONFIG),
                         log_dir=tmp_path)
    try:
        for p in graph.procs.values():
            wait_for_handlers(p)
        time.sleep(1.5)
        for p in graph.procs.values():
            p.send_signal(first)
    finally:
        codes = graph.stop(timeout=20.0)
    for node in graph.procs:
        log = (tmp_path / f"{node}.log").read_text()
        assert "Traceback" not in log, (node, log)
        assert codes[node] == 0, (node, codes, log)


def test_graph_stop_while_nodes_still_import(tmp_path):
    """stop() right after the start: the nodes ignore SIGINT until their handlers are in, then stop."""
    graph = ProcessGraph(["rig_sim_node", "fusion_node"], config_path(DEFAULT_CONFIG), log_dir=tmp_path)
    time.sleep(0.3)
    codes = graph.stop(timeout=30.0)
    for node in graph.procs:
        log = (tmp_path / f"{node}.log").read_text()
        assert "Traceback" not in log, (node, log)
        assert codes[node] == 0, (node, codes, log)
