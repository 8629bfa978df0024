"""camera_pose_node over real DDS with a real ONNX network (the coded-dot net through onnxruntime).

A flood of frames on two cameras: the node must keep up without a backlog, always take the newest frame,
count what it drops, and publish keypoints that belong to the very frame whose stamp they carry. Every
supported encoding gives the same keypoints; bad images are skipped with one clear error.
"""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
pytest.importorskip("torch", reason="the test network is built with torch: pip install '.[torch]'")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, PointCloud2  # noqa: E402

from hpe_ros.ros.camera_pose_node import CameraPoseNode  # noqa: E402
from hpe_ros.ros.diagnostics import read_status_values  # noqa: E402
from hpe_ros.ros.images import numpy_to_compressed, numpy_to_image  # noqa: E402
from hpe_ros.ros.pointcloud import cloud_to_pose2d, make_header, stamp_to_seconds  # noqa: E402
from hpe_ros.ros.qos import POSES, SENSOR  # noqa: E402
from hpe_ros.sim.keypoint_net import export_keypoint_net  # noqa: E402

from helpers.detect2d_nets import dot_image, person_pixels  # noqa: E402

SIZE = (320, 240)
CAMS = ["camA", "camB"]
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_keypoint_net(tmp_path_factory.mktemp("net") / "dots", output="heatmap", input_size=SIZE)


def frame_truth(cam: str, k: int) -> np.ndarray:
    """(17, 2) px: the person of frame k in camera `cam` moves 5 px right per frame (wrapping)."""
    rng = np.random.default_rng(7)
    x = 80 + (5 * k) % 160 + (10 if cam == "camB" else 0)
    return person_pixels(rng, (x, 120), scale=0.9)


class Graph:
    """The node under test and a tester node, spun by one executor in a background thread."""

    def __init__(self, ctx, model, **params):
        overrides = [Parameter("cameras", value=CAMS), Parameter("backend", value="onnxruntime"),
                     Parameter("model", value=str(model)), Parameter("batch_timeout_s", value=0.005),
                     Parameter("max_rate_hz", value=500.0), Parameter("diagnostics_period_s", value=0.2)]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.node = CameraPoseNode(context=ctx, parameter_overrides=overrides)
        assert self.node.bring_up()
        self.tester = Node("tester", context=ctx)
        transport = params.get("transport", "raw")
        raw = transport == "raw"
        self.pubs = {c: self.tester.create_publisher(Image if raw else CompressedImage,
                                                     f"/{c}/image_raw" + ("" if raw else "/compressed"), SENSOR)
                     for c in CAMS}
        self.out = {c: [] for c in CAMS}
        self.debug = {c: [] for c in CAMS}
        self.diag = []
        for c in CAMS:
            self.tester.create_subscription(PointCloud2, f"/{c}/pose_2d",
                                            lambda m, c=c: self.out[c].append((stamp_to_seconds(m.header.stamp),
                                                                               *cloud_to_pose2d(m), time.monotonic())),
                                            POSES)
            self.tester.create_subscription(Image, f"/{c}/pose_2d/debug_image", self.debug[c].append, SENSOR)
        self.tester.create_subscription(DiagnosticArray, "/diagnostics", self.diag.append, 10)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        time.sleep(0.5)  # discovery

    def _spin(self):
        while self.running:
            self.executor.spin_once(timeout_sec=0.01)

    def wait(self, until, seconds=10.0):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until():
                return True
            time.sleep(0.01)
        return False

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.tester.destroy_node()
        self.node.destroy_node()


def image_msg(cam, k, encoding="bgr8"):
    bgr = dot_image([frame_truth(cam, k)], size=SIZE, radius=4)
    header = make_header(T0 + k / 1000.0, f"{cam}_optical_frame")
    if encoding == "bgr8":
        return numpy_to_image(bgr, "bgr8", header)
    if encoding == "rgb8":
        return numpy_to_image(np.ascontiguousarray(bgr[..., ::-1]), "rgb8", header)
    if encoding == "bgra8":
        return numpy_to_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), "bgra8", header)
    if encoding == "mono8":
        return numpy_to_image(bgr[..., 0].copy(), "mono8", header)
    if encoding == "yuv422":
        return numpy_to_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY), "yuv422", header)
    if encoding == "jpeg":
        return numpy_to_compressed(bgr, "jpeg", quality=95, header=header)
    raise ValueError(encoding)


def frame_of(stamp: float) -> int:
    return int(round((stamp - T0) * 1000.0))


def test_flooded_node_keeps_the_newest_frame_and_builds_no_backlog(ros_context, model):
    g = Graph(ros_context, model, camera_rate_hz=1000.0)  # the stamps are 1 ms apart
    try:
        n = 200
        msgs = {c: [image_msg(c, k) for k in range(n)] for c in CAMS}  # rendered before the clock starts
        start = time.monotonic()
        for k in range(n):  # ~1 kHz per camera: far faster than any network
            for c in CAMS:
                g.pubs[c].publish(msgs[c][k])
            time.sleep(0.001)
        publish_s = time.monotonic() - start
        assert g.wait(lambda: all(o and frame_of(o[-1][0]) == n - 1 for o in g.out.values()), 5.0), \
            {c: frame_of(o[-1][0]) if o else None for c, o in g.out.items()}
        settled = {c: len(o) for c, o in g.out.items()}
        time.sleep(1.0)
        assert {c: len(o) for c, o in g.out.items()} == settled  # nothing queued behind the newest frame
        for c in CAMS:
            frames = [frame_of(s) for s, *_ in g.out[c]]
            assert frames == sorted(set(frames))              # in order, never twice
            assert 3 <= len(frames) < n                       # kept up, and skipped frames instead of queueing
            for stamp, points, _scores, _ in g.out[c]:        # each output is its own frame's person
                assert points.shape == (1, 17, 2)
                assert np.abs(points[0] - frame_truth(c, frame_of(stamp))).max() < 2.0
            stats = g.node.stats[c]
            skipped = stats.dropped + g.node.gaps[c].missed   # by the node, and before it (DDS history of one)
            # Every frame is accounted for; frames lost before the first that arrived leave no gap to count.
            assert stats.processed + skipped + frame_of(g.node.gaps[c].first) == n
        print(f"published {n} frames/camera in {publish_s:.2f} s; processed {settled}; "
              f"dropped {[g.node.stats[c].dropped for c in CAMS]}; missed {[g.node.gaps[c].missed for c in CAMS]}")
        # Per camera in /diagnostics: rate, latency, drops, backend.
        assert g.wait(lambda: g.diag and all(f"camera_pose_node: {c}" in read_status_values(g.diag[-1])
                                             for c in CAMS), 3.0)
        values = read_status_values(g.diag[-1])["camera_pose_node: camA"]
        assert int(values["dropped"]) + int(values["missed_before_node"]) > 0
        assert values["backend"].startswith("onnxruntime")
        assert float(values["latency_ms_p50"]) > 0 and values["batch"] in ("1", "2")
    finally:
        g.close()


def test_two_cameras_at_camera_rate_are_processed_in_step(ros_context, model):
    """30 Hz on two cameras: frames are accounted for, and both cameras' frames share network calls."""
    g = Graph(ros_context, model, camera_rate_hz=1000.0)
    try:
        n = 45
        msgs = {c: [image_msg(c, k) for k in range(n)] for c in CAMS}
        for k in range(n):
            for c in CAMS:
                g.pubs[c].publish(msgs[c][k])
            time.sleep(1 / 30)
        assert g.wait(lambda: all(o and frame_of(o[-1][0]) == n - 1 for o in g.out.values()), 3.0)
        for c in CAMS:
            stats = g.node.stats[c]
            assert stats.processed + stats.dropped + g.node.gaps[c].missed + frame_of(g.node.gaps[c].first) == n
            # Speed is measured by benchmarks/bench_camera_node.py; here only: most frames, not a few.
            assert stats.processed >= n // 2, {c: len(o) for c, o in g.out.items()}
        assert g.node.images_inferred / g.node.batches > 1.5  # cameras batched together
    finally:
        g.close()


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono8", "yuv422"])
def test_every_encoding_gives_the_same_keypoints(ros_context, model, encoding):
    g = Graph(ros_context, model, publish_debug_image=True)
    try:
        g.pubs["camA"].publish(image_msg("camA", 3, encoding))
        assert g.wait(lambda: len(g.out["camA"]) == 1)
        _, points, scores, _ = g.out["camA"][0]
        assert np.abs(points[0] - frame_truth("camA", 3)).max() < 2.0
        assert g.node.stats["camA"].errors == 0
    finally:
        g.close()


def test_compressed_transport_and_debug_image(ros_context, model):
    g = Graph(ros_context, model, transport="compressed", publish_debug_image=True)
    try:
        g.wait(lambda: g.node.debug_pubs["camA"].get_subscription_count() > 0, 3.0)
        g.pubs["camA"].publish(image_msg("camA", 5, "jpeg"))
        assert g.wait(lambda: len(g.out["camA"]) == 1 and len(g.debug["camA"]) == 1)
        _, points, _, _ = g.out["camA"][0]
        assert np.abs(points[0] - frame_truth("camA", 5)).max() < 2.0
        debug = g.debug["camA"][0]
        assert (debug.width, debug.height, debug.encoding) == (*SIZE, "bgr8")
        assert debug.header.frame_id == "camA_optical_frame"
    finally:
        g.close()


def test_bad_images_are_skipped_with_one_clear_error(ros_context, model):
    g = Graph(ros_context, model)
    try:
        unsupported = Image(height=4, width=4, encoding="32FC1", step=16, data=bytes(64))
        for _ in range(3):  # said once, counted each time
            g.pubs["camA"].publish(unsupported)
            assert g.wait(lambda: g.node.stats["camA"].errors >= 1)
            time.sleep(0.05)
        truncated = image_msg("camA", 1)
        truncated.data = truncated.data[:100]
        g.pubs["camA"].publish(truncated)
        assert g.wait(lambda: g.node.stats["camA"].errors >= 3)
        assert "unsupported encoding '32FC1'" in g.node.stats["camA"].last_error or \
            "data has 100 bytes" in g.node.stats["camA"].last_error
        assert sum(k.startswith("enc-camA") for k in g.node._said) == 1
        g.pubs["camA"].publish(image_msg("camA", 2))  # and the next good frame is processed
        assert g.wait(lambda: len(g.out["camA"]) == 1)
    finally:
        g.close()
