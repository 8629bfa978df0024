"""The in-process / multi-process launcher: the same node graph as launch/multi_camera.launch.py.

`ros2 launch` is not on PyPI, so this is how the graph runs (and is tested) without a ROS install:
    hpe-ros run --config config/multi_camera.yaml --sim
Processes mode starts each node as `python -m hpe_ros.ros.<node> --ros-args --params-file ...`,
exactly what `ros2 run` would do; in-process mode puts every node on one executor.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
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


class ProcessGraph:
    """Nodes as separate processes over real DDS; stops them all on exit (SIGINT, then SIGKILL)."""

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
            self.procs[node] = subprocess.Popen(node_command(node, params_file, overrides.get(node),
                                                             workdir=self._workdir.name),
                                                env={**os.environ, **(env or {})}, stdout=out,
                                                stderr=subprocess.STDOUT if out else None)

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def stop(self, timeout: float = 5.0) -> dict[str, int]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
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
                   overrides: dict[str, dict] | None = None) -> None:
    """All nodes on one executor in this process until Ctrl-C or `duration` seconds."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    instances = make_nodes(nodes, config, overrides)
    # One thread: Python threads would only contend for the GIL, and rclpy's multi-threaded executor costs more.
    executor = SingleThreadedExecutor()
    for n in instances:
        executor.add_node(n)
        if n.autostart:
            n.bring_up()
    end = time.monotonic() + duration if duration else None
    try:
        while rclpy.ok() and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        for n in instances:
            n.before_exit()
            n.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
