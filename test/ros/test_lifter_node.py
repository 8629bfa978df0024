"""lifter_node with a real ONNX lifter (a small untrained network exported here), real rclpy, real DDS."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(60)]

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import (  # noqa: E402
    CameraInfo,
    PointCloud2,
    PointField,
)

from hpe_ros.camera import Camera  # noqa: E402
from hpe_ros.io.calibration import load_rig  # noqa: E402
from hpe_ros.lift.models import LifterConfig, build_lifter, export_lifter_onnx  # noqa: E402
from hpe_ros.lift.runtime import LearnedLifter  # noqa: E402
from hpe_ros.resources import DEFAULT_RIG, resolve_path  # noqa: E402
from hpe_ros.ros.camera_info import camera_to_camera_info  # noqa: E402
from hpe_ros.ros.lifter_node import LifterNode  # noqa: E402
from hpe_ros.ros.pointcloud import cloud_to_pose3d, make_header, pose2d_to_cloud  # noqa: E402
from hpe_ros.ros.qos import POSES  # noqa: E402
from hpe_ros.sim import MotionScript, observe  # noqa: E402

from helpers.ros_spin import spin  # noqa: E402


@pytest.fixture(scope="module")
def lifter_onnx(tmp_path_factory):
    """A small residual-MLP lifter, untrained (fixed seed), exported to ONNX: the shipped file's interface."""
    torch.manual_seed(0)
    model = build_lifter(LifterConfig(arch="mlp", width=32, blocks=1))
    path = tmp_path_factory.mktemp("lifter") / "tiny_lifter.onnx"
    export_lifter_onnx(model, path, num_joints=17)
    return path


class Rig2D:
    """The node under test plus a tester node publishing /<cam>/pose_2d and recording /<cam>/pose_3d."""

    def __init__(self, context, overrides, cams=("cam0",)):
        self.node = LifterNode(context=context, parameter_overrides=overrides)
        self.tester = Node("lifter_tester", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.out = {c: [] for c in cams}
        self.pubs = {c: self.tester.create_publisher(PointCloud2, f"/{c}/pose_2d", POSES) for c in cams}
        for c in cams:
            self.tester.create_subscription(PointCloud2, f"/{c}/pose_3d", self.out[c].append, POSES)

    def send(self, cam, msg, count=None, timeout=5.0):
        """Publish one message (again every 0.5 s until it is answered: discovery takes a moment)."""
        want = len(self.out[cam]) + 1 if count is None else count
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pubs[cam].publish(msg)
            if spin(self.executor, 0.5, until=lambda: len(self.out[cam]) >= want):
                return True
        return False

    def close(self):
        self.executor.shutdown()
        self.tester.destroy_node()
        self.node.destroy_node()


def sim_people(n=3, seed=0):
    """Three simulated people as cam0 of the example rig sees them: points (P, 17, 2), scores (P, 17)."""
    rig = load_rig(resolve_path("", DEFAULT_RIG))
    obs = observe(rig, MotionScript(n_people=n, seed=seed).pose(1.0), np.random.default_rng(seed), noise_px=1.0)
    rows = obs.person_ids[0] >= 0
    return rig, obs.points2d[0][rows], obs.scores[0][rows]


def test_publishes_camera_frame_3d_for_every_person_in_one_network_call(ros_context, lifter_onnx):
    graph = Rig2D(ros_context, [Parameter("model", value=str(lifter_onnx)),
                                Parameter("calibration_file", value=DEFAULT_RIG),
                                Parameter("providers", value="cpu")])
    try:
        assert graph.node.bring_up()
        assert graph.node.lifter.name.startswith("learned[tiny_lifter.onnx, onnxruntime")
        calls = []
        runner = graph.node.lifter._runner
        run = runner.run
        runner.run = lambda batch: calls.append(batch.shape) or run(batch)
        rig, points2d, scores = sim_people()
        assert len(points2d) >= 2
        header = make_header(1234.5678, rig["cam0"].frame_id)
        assert graph.send("cam0", pose2d_to_cloud(points2d, scores, header))
        msg = graph.out["cam0"][-1]
        assert msg.header.frame_id == "cam0_optical_frame"
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (header.stamp.sec, header.stamp.nanosec)
        assert (msg.height, msg.width) == (len(points2d), 17)
        points3d, conf, person = cloud_to_pose3d(msg)
        np.testing.assert_array_equal(person, np.arange(len(points2d)))
        # What the node publishes is the lifter's answer for the whole message (float32 on the wire).
        expected, expected_conf = LearnedLifter(lifter_onnx, runtime="onnxruntime", providers="cpu").lift(
            rig["cam0"].K, points2d, scores)
        np.testing.assert_allclose(points3d, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(conf, expected_conf, atol=1e-6)
        assert np.isfinite(points3d).all() and (points3d[..., 2] > 0).all()  # in front of the camera
        # all people of the message (and their mirror images, averaged) in one network call
        assert calls == [(2 * len(points2d), 18, 3)]
        stats = graph.node.stats["cam0"]
        assert stats.processed == 1 and stats.extra["lifter"] == graph.node.lifter.name
    finally:
        graph.close()


def test_cameras_of_one_frame_are_lifted_in_one_network_call(ros_context, lifter_onnx):
    cams = ("cam0", "cam1")
    graph = Rig2D(ros_context, [Parameter("model", value=str(lifter_onnx)), Parameter("providers", value="cpu"),
                                Parameter("calibration_file", value=DEFAULT_RIG),
                                Parameter("cameras", value=list(cams)), Parameter("batch_window_s", value=0.05)],
                  cams=cams)
    try:
        assert graph.node.bring_up()
        rig, points2d, scores = sim_people()
        for c in cams:  # discovery: each topic answered once (alone, after the batch window)
            assert graph.send(c, pose2d_to_cloud(points2d, scores, make_header(1.0, rig[c].frame_id)))
        calls = []
        runner = graph.node.lifter._runner
        run = runner.run
        runner.run = lambda batch: calls.append(batch.shape) or run(batch)
        views = {"cam0": (points2d, scores), "cam1": (points2d[:2] + 5.0, scores[:2])}
        for c, (p, s) in views.items():
            graph.pubs[c].publish(pose2d_to_cloud(p, s, make_header(2.0, rig[c].frame_id)))
        assert spin(graph.executor, 5.0, until=lambda: all(len(graph.out[c]) == 2 for c in cams))
        assert calls == [(2 * (len(points2d) + 2), 18, 3)]  # both cameras' people, and their mirror images
        alone = LearnedLifter(lifter_onnx, runtime="onnxruntime", providers="cpu")
        for c, (p, s) in views.items():
            points3d, conf, _ = cloud_to_pose3d(graph.out[c][-1])
            expected, expected_conf = alone.lift(rig[c].K, p, s)
            np.testing.assert_allclose(points3d, expected, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(conf, expected_conf, atol=1e-6)
        assert graph.node.stats["cam1"].extra["batch"] == "2"
    finally:
        graph.close()


def test_intrinsics_from_camera_info_with_distortion(ros_context, lifter_onnx):
    graph = Rig2D(ros_context, [Parameter("model", value=str(lifter_onnx)), Parameter("cameras", value=["camA"])],
                  cams=("camA",))
    try:
        assert graph.node.bring_up()
        rig, points2d, scores = sim_people(seed=1)
        header = make_header(99.0, "camA_optical_frame")
        msg = pose2d_to_cloud(points2d, scores, header)
        graph.pubs["camA"].publish(msg)
        spin(graph.executor, 0.5)
        assert graph.out["camA"] == [] and graph.node.stats["camA"].dropped >= 1  # no intrinsics yet: dropped
        camera = Camera("camA", rig[0].K, [-0.2, 0.05, 0.0, 0.0, 0.0], size=rig[0].size)
        info_pub = graph.tester.create_publisher(CameraInfo, "/camA/camera_info", POSES)
        assert spin(graph.executor, 5.0, until=lambda: info_pub.publish(camera_to_camera_info(camera, header))
                    or "camA" in graph.node.intrinsics)
        assert graph.send("camA", msg)
        points3d, _, _ = cloud_to_pose3d(graph.out["camA"][-1])
        undistorted = camera.normalized_to_pixels(camera.undistort_points(points2d))
        expected, _ = LearnedLifter(lifter_onnx, providers="cpu").lift(camera.K, undistorted, scores)
        np.testing.assert_allclose(points3d, expected, rtol=1e-4, atol=1e-4)
    finally:
        graph.close()


@pytest.mark.parametrize("model, message", [
    ("/nonexistent/lifter.onnx", "lifter model not found: /nonexistent/lifter.onnx"),
    ("BROKEN", "cannot load lifter model"),
    ("lifter.txt", "expected a .onnx file or a .pt checkpoint"),
])
def test_configure_fails_with_one_clear_error_for_a_missing_or_bad_model(ros_context, tmp_path, capfd, model,
                                                                         message):
    if model == "BROKEN":
        model = tmp_path / "broken.onnx"
        model.write_bytes(b"this is not an onnx file")
    elif model == "lifter.txt":
        model = tmp_path / "lifter.txt"
        model.write_text("x")
    node = LifterNode(context=ros_context, parameter_overrides=[Parameter("model", value=str(model)),
                                                                Parameter("calibration_file", value=DEFAULT_RIG)])
    try:
        assert node.bring_up() is False
        assert node.lifter is None
        err = capfd.readouterr().err
        assert message in err, err
        assert "Traceback" not in err
    finally:
        node.destroy_node()


def test_unknown_runtime_and_torch_with_onnx_are_refused(ros_context, lifter_onnx, capfd):
    for runtime, message in (("tflite", "unknown runtime 'tflite'"), ("torch", "the torch runtime takes .pt")):
        node = LifterNode(context=ros_context, parameter_overrides=[
            Parameter("model", value=str(lifter_onnx)), Parameter("runtime", value=runtime),
            Parameter("calibration_file", value=DEFAULT_RIG)])
        try:
            assert node.bring_up() is False
            assert message in capfd.readouterr().err
        finally:
            node.destroy_node()


def test_survives_nan_garbage_and_malformed_clouds(ros_context, lifter_onnx):
    graph = Rig2D(ros_context, [Parameter("model", value=str(lifter_onnx)), Parameter("providers", value="cpu"),
                                Parameter("calibration_file", value=DEFAULT_RIG)])
    try:
        assert graph.node.bring_up()
        rig, points2d, scores = sim_people()
        frame = rig["cam0"].frame_id
        # A good message first, so DDS discovery is done and every later message arrives.
        assert graph.send("cam0", pose2d_to_cloud(points2d, scores, make_header(time.time(), frame)))
        stats = graph.node.stats["cam0"]

        # Malformed: a missing field, truncated data, the wrong joint count. Dropped, counted, no output.
        bad = PointCloud2(height=1, width=17, point_step=4, row_step=68, data=bytes(68),
                          fields=[PointField(name="u", offset=0, datatype=PointField.FLOAT32, count=1)])
        truncated = pose2d_to_cloud(points2d, scores, make_header(time.time(), frame))
        truncated.data = bytes(truncated.data)[:-7]
        five_joints = pose2d_to_cloud(points2d[:, :5], scores[:, :5], make_header(time.time(), frame))
        for k, msg in enumerate((bad, truncated, five_joints)):
            graph.pubs["cam0"].publish(msg)
            assert spin(graph.executor, 5.0, until=lambda k=k: stats.errors >= k + 1)
        assert len(graph.out["cam0"]) == 1

        # NaN everywhere, absurd pixels, inf / negative scores: published, every joint missing or finite.
        nan = np.full_like(points2d, np.nan)
        huge = np.where(np.arange(17)[:, None] % 2, 1e30, -1e30) * np.ones_like(points2d)
        weird_scores = np.where(np.arange(17) % 3 == 0, np.inf, -5.0) * np.ones_like(scores)
        for pts, sc in ((nan, scores), (huge, scores), (points2d, weird_scores)):
            assert graph.send("cam0", pose2d_to_cloud(pts, sc, make_header(time.time(), frame)))
            p3, c3, _ = cloud_to_pose3d(graph.out["cam0"][-1])
            assert p3.shape == (len(points2d), 17, 3)
            assert np.isfinite(p3[c3 > 0]).all() and (c3[~np.isfinite(p3).all(-1)] == 0).all()
        assert (cloud_to_pose3d(graph.out["cam0"][1])[1] == 0).all()     # all-NaN input: nobody lifted

        # Nobody in view: an empty cloud with the stamp, so fusion knows the frame was lifted.
        assert graph.send("cam0", pose2d_to_cloud(np.zeros((0, 17, 2)), np.zeros((0, 17)),
                                                  make_header(time.time(), frame)))
        assert graph.out["cam0"][-1].height == 0

        # Still alive and lifting.
        assert graph.send("cam0", pose2d_to_cloud(points2d, scores, make_header(time.time(), frame)))
        p3, c3, _ = cloud_to_pose3d(graph.out["cam0"][-1])
        assert np.isfinite(p3).all()
        assert stats.errors == 3
    finally:
        graph.close()
