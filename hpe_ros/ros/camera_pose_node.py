"""camera_pose_node: camera images -> 2D skeletons on `/<cam>/pose_2d`, for one or several cameras.

Image callbacks only keep the newest frame per camera (counting the ones overwritten as dropped); a
processing timer takes the newest frames of all cameras, runs one batched backend call and publishes.
A slow backend therefore never builds a backlog.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from hpe_ros.detect2d import BackendUnavailable, create_backend
from hpe_ros.ros.base import ManagedNode, run
from hpe_ros.ros.images import ImageError, compressed_to_numpy, image_to_numpy, to_bgr
from hpe_ros.ros.params import STRING_ARRAY, declare, value
from hpe_ros.ros.pointcloud import pose2d_to_cloud, stamp_to_seconds
from hpe_ros.ros.qos import POSES, SENSOR
from hpe_ros.skeleton import convert, convert_scores


class CameraPoseNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__("camera_pose_node", **kwargs)
        d = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        d("cameras", ["cam0"], "camera names served by this node; topics /<cam>/<image_topic>", type_=STRING_ARRAY)
        d("image_topic", "image_raw", "image topic under each camera namespace")
        d("transport", "raw", "'raw' (sensor_msgs/Image) or 'compressed' (sensor_msgs/CompressedImage)")
        d("backend", "mediapipe", "2D pose backend: mediapipe (tensorrt/onnxruntime/torch: issue 4)")
        d("output_layout", "coco17", "joint layout published on /<cam>/pose_2d")
        d("model_complexity", 1, "mediapipe: BlazePose model 0 (lite), 1 (full), 2 (heavy)", low=0, high=2)
        d("min_score", 0.05, "keypoints below this confidence are published as missing", low=0.0, high=1.0)
        d("max_rate_hz", 100.0, "upper bound on processing rate (the newest frame is always taken)",
          low=1.0, high=1000.0)
        self.backend = None

    def on_configure(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        if g("transport") not in ("raw", "compressed"):
            self.get_logger().error(f"transport must be 'raw' or 'compressed', got '{g('transport')}'")
            return TransitionCallbackReturn.FAILURE
        try:
            self.backend = create_backend(g("backend"), model_complexity=g("model_complexity"))
        except BackendUnavailable as exc:
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        self.cameras = list(value(self, "cameras"))
        self.get_logger().info(f"2D pose with {self.backend.name} for {self.cameras}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        msg_type = Image if g("transport") == "raw" else CompressedImage
        suffix = g("image_topic") + ("/compressed" if g("transport") == "compressed" else "")
        self.latest: dict[str, object] = {}
        self.info: dict[str, CameraInfo] = {}
        self.pubs = {c: self.own_publisher(PointCloud2, f"/{c}/pose_2d", POSES) for c in self.cameras}
        for c in self.cameras:
            self.own_subscription(msg_type, f"/{c}/{suffix}", lambda m, c=c: self._on_image(c, m), SENSOR)
            self.own_subscription(CameraInfo, f"/{c}/camera_info", lambda m, c=c: self.info.__setitem__(c, m), SENSOR)
        self.own_timer(1.0 / g("max_rate_hz"), self._process)
        self.start_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        if self.backend is not None and hasattr(self.backend, "close"):
            self.backend.close()
        self.backend = None
        return TransitionCallbackReturn.SUCCESS

    def _on_image(self, cam: str, msg) -> None:
        if cam in self.latest:
            self.stage(cam, cam).drop()  # the previous frame was never processed: newest wins
        self.latest[cam] = msg

    def _process(self) -> None:
        if not self.latest:
            return
        batch, self.latest = self.latest, {}
        images, cams, headers = [], [], []
        for cam, msg in batch.items():
            try:
                img = image_to_numpy(msg) if isinstance(msg, Image) else compressed_to_numpy(msg)
                images.append(to_bgr(img) if img.ndim == 2 else img)
            except ImageError as exc:
                self.stage(cam, cam).error(str(exc))
                self.problem(f"img-{cam}", f"{cam}: dropped an image: {exc}")
                continue
            cams.append(cam)
            headers.append(msg.header)
        if not images:
            return
        results = self.backend.infer(images, cams)
        out_layout = self.get_parameter("output_layout").value
        min_score = self.get_parameter("min_score").value
        for cam, header, (points, scores) in zip(cams, headers, results):
            points = convert(points, self.backend.layout, out_layout)
            scores = convert_scores(scores, self.backend.layout, out_layout)
            scores = np.where(scores >= min_score, scores, 0.0)
            self.pubs[cam].publish(pose2d_to_cloud(points, scores, header))
            self.stage(cam, cam).tick(latency_ms=(time.time() - stamp_to_seconds(header.stamp)) * 1e3)


def main(args=None):
    run(CameraPoseNode, args)


if __name__ == "__main__":
    main()
