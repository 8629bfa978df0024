"""The node graph end to end: separate processes over real DDS, checked by an independent subscriber.

The subscriber here decodes /human_pose_3d with plain numpy from the message's own field table (not with
hpe_ros's decoder), so a schema slip on the publishing side shows up as a failure.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from hpe_ros.metrics import PoseScorer  # noqa: E402
from hpe_ros.resources import DEFAULT_CONFIG, config_path  # noqa: E402
from hpe_ros.ros.launcher import node_command  # noqa: E402

_NP = {PointField.FLOAT32: "<f4", PointField.FLOAT64: "<f8", PointField.INT32: "<i4", PointField.UINT32: "<u4"}


def decode_independently(msg: PointCloud2) -> dict[str, np.ndarray]:
    """Field name -> (height, width) array, straight from the message's field table."""
    assert not msg.is_bigendian
    dtype = np.dtype({"names": [f.name for f in msg.fields], "formats": [_NP[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.row_step)
    cloud = rows[:, : msg.point_step * msg.width].copy().view(dtype).reshape(msg.height, msg.width)
    return {name: cloud[name] for name in dtype.names}


class Listener:
    """Independent subscriber for the graph's outputs."""

    def __init__(self, context):
        self.node = Node("integration_listener", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.poses: list[tuple[float, PointCloud2]] = []
        self.truth: dict[int, PointCloud2] = {}
        self.markers: list[MarkerArray] = []
        self.skeleton: list[str] = []
        self.diagnostics: dict[str, dict[str, str]] = {}
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(PointCloud2, "/human_pose_3d", lambda m: self.poses.append((time.time(), m)),
                                      reliable)
        self.node.create_subscription(PointCloud2, "/rig_sim/ground_truth", self._truth, reliable)
        self.node.create_subscription(MarkerArray, "/human_pose_3d/markers", self.markers.append, reliable)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(String, "/human_pose_3d/skeleton", lambda m: self.skeleton.append(m.data),
                                      latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 10)

    def _truth(self, msg):
        self.truth[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = msg

    def _diag(self, msg):
        for s in msg.status:
            self.diagnostics[s.name] = {kv.key: kv.value for kv in s.values}

    def spin(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)
            if until is not None and until():
                return True
        return until is None

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


def start(node: str, name: str, overrides: dict, log_path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen(node_command(node, config_path(DEFAULT_CONFIG), overrides, name=name,
                                         workdir=log_path.parent),
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def score(listener: Listener, since: float) -> dict:
    scorer = PoseScorer()
    truth_stamps = np.array(sorted(listener.truth))
    for arrival, msg in listener.poses:
        if arrival < since or not len(truth_stamps):
            continue
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        k = truth_stamps[np.argmin(np.abs(truth_stamps - stamp))]
        if abs(k - stamp) > 8e6:
            continue
        f = decode_independently(msg)
        g = decode_independently(listener.truth[int(k)])
        pred = np.stack([f["x"], f["y"], f["z"]], -1)
        gt = np.stack([g["x"], g["y"], g["z"]], -1)
        scorer.add(pred, f["id"][:, 0] if msg.height else np.zeros(0), gt)
    return scorer.summary()


def test_graph_fuses_people_and_survives_a_camera_dying(ros_context, tmp_path):
    origin = time.time() + 1.0  # both sim processes replay the same motion from this instant
    sim = {"num_people": 2, "seed": 3, "time_origin": origin}
    procs = {
        "sim_main": start("rig_sim_node", "rig_sim_node", {**sim, "cameras": ["cam0", "cam1", "cam2"]},
                          tmp_path / "sim_main.log"),
        "sim_cam3": start("rig_sim_node", "rig_sim_cam3",
                          {**sim, "cameras": ["cam3"], "publish_ground_truth": False}, tmp_path / "sim_cam3.log"),
        "lifter": start("lifter_node", "lifter_node", {}, tmp_path / "lifter.log"),
        "fusion": start("fusion_node", "fusion_node", {}, tmp_path / "fusion.log"),
    }
    listener = Listener(ros_context)
    try:
        got_people = listener.spin(60.0, until=lambda: any(m.height >= 2 for _, m in listener.poses))
        logs = {k: (tmp_path / f"{k}.log").read_text()[-2000:] for k in procs}
        assert got_people, f"no fused people within 60 s; logs: {logs}"
        listener.spin(2.0)  # warm-up: first calls, late joiners, tracks being confirmed
        t0 = time.time()
        listener.spin(4.0)

        # --- schema -------------------------------------------------------------------------------
        _, msg = listener.poses[-1]
        fields = {f.name: f.datatype for f in msg.fields}
        assert fields == {"x": PointField.FLOAT32, "y": PointField.FLOAT32, "z": PointField.FLOAT32,
                          "confidence": PointField.FLOAT32, "id": PointField.UINT32, "joint": PointField.INT32,
                          "views": PointField.INT32}
        assert msg.header.frame_id == "world" and msg.width == 17 and not msg.is_dense
        f = decode_independently(msg)
        assert (f["joint"] == np.arange(17)).all()
        assert (f["id"] == f["id"][:, :1]).all()  # one id per row
        missing = ~np.isfinite(f["x"])
        assert (f["confidence"][missing] == 0).all()
        # views: 0 for joints the tracker predicts through a short gap, else the cameras that supported it.
        assert ((f["views"] >= 0) & (f["views"] <= 4)).all() and np.mean(f["views"][~missing] >= 2) > 0.8
        skeleton = json.loads(listener.skeleton[-1])
        assert skeleton["layout"] == "coco17" and len(skeleton["joint_names"]) == 17
        assert any(len(m.markers) for m in listener.markers)

        # --- accuracy and ids with all four cameras --------------------------------------------------
        before = score(listener, t0)
        assert before["scored_frames"] > 60, before
        assert before["mpjpe_mm"] < 40.0, before
        assert before["id_switches"] == 0, before
        # All four cameras agree on the people (the two sim processes replay the same motion).
        views = np.concatenate([decode_independently(m)["views"].ravel() for t, m in listener.poses if t >= t0])
        assert np.mean(views == 4) > 0.3, np.bincount(views)
        rate_before = sum(1 for t, _ in listener.poses if t >= t0) / 4.0
        assert rate_before > 20.0

        # --- one camera's stream dies ------------------------------------------------------------------
        procs["sim_cam3"].send_signal(signal.SIGKILL)
        procs["sim_cam3"].wait(5)
        t_kill = time.time()
        listener.spin(4.0)
        after_kill = [m for t, m in listener.poses if t >= t_kill + 1.0]  # after the camera timeout
        assert len(after_kill) / 3.0 > 20.0, f"output rate fell to {len(after_kill) / 3.0:.1f} Hz"
        assert all(procs[k].poll() is None for k in ("sim_main", "lifter", "fusion"))
        after = score(listener, t_kill + 1.0)
        assert after["mpjpe_mm"] < 60.0, after
        fusion_diag = next(v for k, v in listener.diagnostics.items() if k.endswith(": fusion"))
        assert fusion_diag["cameras_in_frame"] == "3"
        assert any(k.endswith(": cam3") for k in listener.diagnostics)

        # --- the fusion node stops cleanly and clears its RViz markers -------------------------------
        procs["fusion"].send_signal(signal.SIGINT)
        cleared = listener.spin(5.0, until=lambda: any(m.action == Marker.DELETEALL
                                                        for ma in listener.markers for m in ma.markers))
        assert cleared, "no DELETEALL marker after the fusion node was stopped"
        assert procs["fusion"].wait(5) == 0
    finally:
        listener.close()
        stop(procs.values())


def test_in_process_launcher_runs_the_sim_graph(ros_context, tmp_path):
    """`hpe-ros run --sim --in-process` starts the same graph on one executor."""
    cmd = [os.path.join(os.path.dirname(os.sys.executable), "hpe-ros"), "run", "--sim", "--in-process",
           "--duration", "25"]
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    listener = Listener(ros_context)
    try:
        ok = listener.spin(40.0, until=lambda: sum(m.height >= 1 for _, m in listener.poses) > 30)
        assert ok, (tmp_path / "run.log").read_text()[-3000:]
        assert proc.poll() is None
    finally:
        listener.close()
        stop([proc])
