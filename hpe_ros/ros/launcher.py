"""The in-process / multi-process launcher: the same node graph as launch/multi_camera.launch.py.

`ros2 launch` is not on PyPI, so this is how the graph runs (and is tested) without a ROS install:
    hpe-ros run --config config/multi_camera.yaml --sim
Processes mode starts each node as `python -m hpe_ros.ros.<node> --ros-args --params-file ...`,
exactly what `ros2 run` would do; in-process mode puts every node on one executor.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

NODE_MODULES = {
    "camera_pose_node": ("hpe_ros.ros.camera_pose_node", "CameraPoseNode"),
    "rig_sim_node": ("hpe_ros.ros.rig_sim_node", "RigSimNode"),
    "lifter_node": ("hpe_ros.ros.lifter_node", "LifterNode"),
    "fusion_node": ("hpe_ros.ros.fusion_node", "FusionNode"),
}


def graph(sim: bool) -> list[str]:
    """Nodes of the graph, upstream first."""
    return ["rig_sim_node" if sim else "camera_pose_node", "lifter_node", "fusion_node"]


# What launch/multi_camera.launch.py's arguments accept and give every node.
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
RVIZ_CONFIG = "hpe_ros.rviz"


def launch_flag(name: str, text: str) -> bool:
    """A boolean launch argument: true/false (also 1/0, yes/no); ValueError naming the argument otherwise."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument {name}:={text!r}: expected true or false")


def launch_log_level(text: str) -> str:
    level = str(text).strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level:={text!r}: expected one of {', '.join(LOG_LEVELS)}")
    return level


def launch_parameters(use_sim_time: bool, autostart: bool) -> dict:
    """Parameters every node of the launched graph gets on top of the parameter file."""
    return {"use_sim_time": bool(use_sim_time), "autostart": bool(autostart)}


def load_config(path: str | Path) -> dict:
    """Read a ROS parameter YAML; ValueError with the file name if it is not one."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the parameter file: {exc}") from exc
    if not isinstance(data, dict) or any(not isinstance(v, dict) or "ros__parameters" not in v for v in data.values()):
        raise ValueError(f"{path}: expected '<node or /**>: {{ros__parameters: {{...}}}}' sections")
    return data


def node_parameters(config: dict, node: str) -> dict:
    """Parameters one node gets from the file: the `/**` section overlaid with its own section."""
    params = dict(config.get("/**", {}).get("ros__parameters", {}))
    params.update(config.get(node, {}).get("ros__parameters", {}))
    return params


def node_command(node: str, params_file: str | Path | None, overrides: dict | None = None,
                 name: str | None = None, workdir: str | Path | None = None) -> list[str]:
    """`python -m hpe_ros.ros.<node> --ros-args ...` for node type `node`, named `name` (default: `node`).

    Overrides go into a second parameter file (in `workdir`, a temp folder by default) under the node's
    name: ROS applies later files over earlier ones, whereas `-p` loses against a node's own section of
    the first file. A renamed node also gets its type's section of `params_file` there.
    """
    name = name or node
    module = NODE_MODULES[node][0]
    cmd = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}"]
    extra = {}
    if params_file:
        cmd += ["--params-file", str(params_file)]
        if name != node:
            extra.update(load_config(params_file).get(node, {}).get("ros__parameters", {}))
    extra.update(overrides or {})
    if extra:
        folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="hpe_ros_"))
        path = folder / f"{name}.overrides.yaml"
        path.write_text(yaml.safe_dump({name: {"ros__parameters": extra}}, default_flow_style=False))
        cmd += ["--params-file", str(path)]
    return cmd


@contextlib.contextmanager
def _signals_ignored(signals=(signal.SIGINT, signal.SIGTERM)):
    """`signals` ignored in the block (main thread only: elsewhere Python cannot change handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


RESEND_SIGINT_S = 0.5  # a node still importing ignores SIGINT (see ProcessGraph): it gets another one


class ProcessGraph:
    """Nodes as separate processes over real DDS; stops them all on exit (SIGINT, then SIGKILL).

    The nodes start with SIGINT ignored, which Python keeps until `base.run` installs its handler: a Ctrl-C
    to the process group while a node is still importing is then dropped instead of printing a
    KeyboardInterrupt traceback, and `stop` repeats SIGINT until the node has its handler.
    """

    def __init__(self, nodes: list[str], params_file: str | Path | None, overrides: dict[str, dict] | None = None,
                 env: dict | None = None, log_dir: str | Path | None = None):
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs = []
        self._workdir = tempfile.TemporaryDirectory(prefix="hpe_ros_graph_")  # override files, removed on stop
        overrides = overrides or {}
        for node in nodes:
            out = None
            if log_dir is not None:
                Path(log_dir).mkdir(parents=True, exist_ok=True)
                out = open(Path(log_dir) / f"{node}.log", "w")
                self._logs.append(out)
            command = node_command(node, params_file, overrides.get(node), workdir=self._workdir.name)
            with _signals_ignored((signal.SIGINT,)):  # inherited by the child (for ms here)
                self.procs[node] = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out,
                                                    stderr=subprocess.STDOUT if out else None)

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def stop(self, timeout: float = 5.0) -> dict[str, int]:
        """SIGINT to every node still running, SIGKILL to those not gone after `timeout` s; their exit codes.

        A Ctrl-C or SIGTERM reaching this process meanwhile is ignored (it would leave nodes running):
        the stop is already under way.
        """
        with _signals_ignored():
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                running = [p for p in self.procs.values() if p.poll() is None]
                if not running:
                    break
                for p in running:
                    p.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    running[0].wait(min(RESEND_SIGINT_S, max(0.01, deadline - time.monotonic())))
            for p in self.procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for f in self._logs:
                f.close()
            self._workdir.cleanup()
        return {n: p.returncode for n, p in self.procs.items()}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def make_nodes(nodes: list[str], config: dict, overrides: dict[str, dict] | None = None, context=None,
               namespace: str = "") -> list:
    """Instantiate the graph's nodes in this process with their parameters (in-process mode), in `namespace`."""
    import importlib

    from rclpy.parameter import Parameter

    overrides = overrides or {}
    out = []
    for node in nodes:
        module, cls = NODE_MODULES[node]
        params = {**node_parameters(config, node), **overrides.get(node, {})}
        node_cls = getattr(importlib.import_module(module), cls)
        out.append(node_cls(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()], context=context,
                            namespace=namespace))
    return out


def run_in_process(nodes: list[str], config: dict, duration: float | None = None,
                   overrides: dict[str, dict] | None = None) -> int | None:
    """All nodes on one executor in this process until SIGINT/SIGTERM or `duration` seconds.

    Returns the signal that stopped it (None when `duration` ran out); the nodes and the context are
    shut down either way, a second signal during that included, without a traceback.
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from hpe_ros.ros.base import make_executor

    stop: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    instances = []
    # One thread: Python threads would only contend for the GIL, and rclpy's multi-threaded executor costs more.
    executor = make_executor()
    try:
        instances = make_nodes(nodes, config, overrides)
        for n in instances:
            executor.add_node(n)
            if n.autostart and not stop:
                n.bring_up()
        end = time.monotonic() + duration if duration else None
        while rclpy.ok() and not stop and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.1)
    finally:
        for n in instances:
            n.before_exit()
            n.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stop[0] if stop else None
