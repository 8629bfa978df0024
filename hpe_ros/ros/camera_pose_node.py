"""camera_pose_node: camera images -> 2D skeletons on `/<cam>/pose_2d`, for one or several cameras.

Image callbacks only keep the newest frame per camera (counting the ones overwritten as dropped). A
processing timer runs once every served camera has a new frame, or once the oldest waiting frame has
waited `batch_timeout_s`; it takes the newest frame of each camera and makes one batched backend call
(all people of all cameras in one pose-network call). A slow backend therefore never builds a backlog.
Images are read with a history of one (NEWEST_ONLY), so frames that arrive during inference replace each
other in DDS; /diagnostics reports per camera the rate, latency (image stamp -> publish), frames the node
skipped (`dropped`), frames that never reached it (`missed_before_node`, from stamp gaps) and the backend.

Guided crops (blazepose backend, `guided_crops`): the fused skeletons on `guide_topic` (/human_pose_3d),
projected through `calibration_file`'s camera of the same name, give each camera ROIs for the people its
own detector and tracker miss (hpe_ros.detect2d.guided_crops); they join the camera's next frame.
"""
from __future__ import annotations

import math
import time

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from hpe_ros.detect2d import BackendUnavailable, create_backend
from hpe_ros.detect2d.backends import BACKENDS, keypoints_in_layout
from hpe_ros.detect2d.draw import draw_skeletons
from hpe_ros.detect2d.guided_crops import guided_rois
from hpe_ros.detect2d.quiet import native_stderr_filtered, quiet_third_party
from hpe_ros.io.calibration import load_rig
from hpe_ros.resources import resolve_path
from hpe_ros.ros.base import ManagedNode, run
from hpe_ros.ros.diagnostics import StampGapCounter
from hpe_ros.ros.images import ImageError, compressed_to_numpy, image_to_numpy, numpy_to_image, to_bgr
from hpe_ros.ros.params import STRING_ARRAY, declare, value
from hpe_ros.ros.pointcloud import cloud_to_human_pose, pose2d_to_cloud, stamp_to_seconds
from hpe_ros.ros.qos import NEWEST_ONLY, POSES, SENSOR


class CameraPoseNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__("camera_pose_node", **kwargs)
        d = lambda *a, **k: declare(self, *a, **k)
        d("cameras", ["cam0"], "camera names served by this node; topics /<cam>/<image_topic>", type_=STRING_ARRAY)
        d("image_topic", "image_raw", "image topic under each camera namespace")
        d("camera_info_topic", "camera_info", "CameraInfo topic under each camera namespace")
        d("transport", "raw", "'raw' (sensor_msgs/Image) or 'compressed' (sensor_msgs/CompressedImage)")
        d("backend", "blazepose", f"2D pose backend: {', '.join(BACKENDS)} (blazepose: several people per camera, "
          "weights from mediapipe's wheel; mediapipe: one person per camera)")
        d("model", "", "pose model: manifest name (models/NAME.toml, e.g. rtmpose-m) or a manifest .toml path")
        d("model_file_path", "", "weights of the pose model (ONNX; TorchScript for torch); default: from the manifest")
        d("detector", "", "person detector manifest (name or path); empty: the whole image is one person")
        d("detector_file_path", "", "weights of the detector; default: from its manifest")
        d("engine_file_path", "", "tensorrt: serialized engine path (default: cache keyed by GPU, TensorRT, "
          "ONNX, precision)")
        d("detector_engine_file_path", "", "tensorrt: the detector's engine path")
        d("force_engine_update", False, "tensorrt: rebuild the engine even when the cached one matches")
        d("enable_fp16", True, "tensorrt: build the engine with FP16 kernels")
        d("max_batch", 8, "tensorrt: largest batch of the engine's profile; onnxruntime: larger batches are split "
          "(crops per pose-network call; bounds onnxruntime's memory arena)", low=1, high=256)
        d("providers", "auto", "onnxruntime: 'auto' (TensorRT, CUDA, CPU as available) or a comma list")
        d("threads", 1, "onnxruntime / tflite intra-op threads (1: steady on a shared CPU; 0 = the runtime's "
          "default, all cores)", low=0, high=64)
        d("detect_every", 0, "run the person detector every N frames; between, boxes follow the keypoints "
          "(0: the backend's default, blazepose 10, network backends 1)", low=0, high=100)
        d("max_people", 16, "most people per image", low=1, high=100)
        d("box_score_threshold", 0.3, "person detector score threshold", low=0.0, high=1.0)
        d("model_complexity", 1, "mediapipe: BlazePose model 0 (lite), 1 (full), 2 (heavy)", low=0, high=2)
        d("blazepose_runtime", "onnxruntime", "blazepose: runtime of its two networks (onnxruntime, tflite, tensorrt)")
        d("output_layout", "coco17", "joint layout published on /<cam>/pose_2d")
        d("min_score", 0.05, "keypoints below this confidence are published as missing", low=0.0, high=1.0)
        d("max_rate_hz", 100.0, "upper bound on processing rate (the newest frame is always taken)",
          low=1.0, high=1000.0)
        d("batch_timeout_s", 0.01, "wait at most this long for the other cameras' frames before a batch runs",
          low=0.0, high=1.0)
        d("camera_rate_hz", 0.0, "cameras' frame rate, to count frames lost before the node from stamp gaps "
          "(0: estimate it from the stamps)", low=0.0, high=1000.0)
        d("publish_debug_image", False, "publish /<cam>/pose_2d/debug_image with the skeletons drawn")
        d("guided_crops", True, "blazepose: also look where the fused 3D skeletons project (needs calibration_file)")
        d("guide_topic", "human_pose_3d", "fused skeletons (in output_layout) that guide the crops")
        d("guide_max_age_s", 0.5, "ignore fused skeletons older than this (arrival time)", low=0.0, high=10.0)
        d("calibration_file", "", "rig calibration whose cameras are named as `cameras` (guided crops; "
          "empty: no guided crops)")
        self.backend = None
        self.rig = None

    def on_configure(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value
        if g("transport") not in ("raw", "compressed"):
            self.get_logger().error(f"transport must be 'raw' or 'compressed', got '{g('transport')}'")
            return TransitionCallbackReturn.FAILURE
        self.cameras = list(value(self, "cameras"))
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            self.get_logger().error(f"cameras must be a non-empty list of distinct names, got {self.cameras}")
            return TransitionCallbackReturn.FAILURE
        options = dict(model=g("model"), model_file_path=g("model_file_path"), detector=g("detector"),
                       detector_file_path=g("detector_file_path"), engine_file_path=g("engine_file_path"),
                       detector_engine_file_path=g("detector_engine_file_path"),
                       force_engine_update=g("force_engine_update"), enable_fp16=g("enable_fp16"),
                       max_batch=g("max_batch"), providers=g("providers"), threads=g("threads"),
                       topdown=dict(max_people=g("max_people"),
                                    box_score_threshold=g("box_score_threshold")),
                       model_complexity=g("model_complexity"), runtime=g("blazepose_runtime"),
                       blazepose=dict(max_people=g("max_people")))
        if g("detect_every"):
            options["topdown"]["detect_every"] = options["blazepose"]["detect_every"] = g("detect_every")
        if g("backend") == "tensorrt":
            self.get_logger().warning("tensorrt: building an engine the first time takes minutes; it is cached")
        quiet_third_party()
        try:
            with native_stderr_filtered():  # LiteRT's delegate line, absl's start-up warnings
                self.backend = create_backend(g("backend"), **options)
        except (BackendUnavailable, ValueError, OSError) as exc:  # missing runtime, manifest or file
            self.get_logger().error(f"2D backend {g('backend')}: {exc}")
            return TransitionCallbackReturn.FAILURE
        weights = f", {self.backend.weights}" if getattr(self.backend, "weights", "") else ""
        self.get_logger().info(f"2D pose with {self.backend.name} (layout {self.backend.layout}{weights}) "
                               f"for {self.cameras}")
        self._warm_up()
        return self._configure_guides()

    def _warm_up(self) -> None:
        """Every batch size the networks will see, now: their memory reaches its ceiling at start-up
        rather than stepping up when a rare batch first comes minutes later."""
        if not hasattr(self.backend, "warm_up"):
            return
        start = time.monotonic()
        try:
            sizes = self.backend.warm_up(len(self.cameras))
        except Exception as exc:  # onnxruntime raises its own types; the first real frame would say the same
            self.get_logger().warning(f"2D backend warm-up failed: {exc}")
            return
        if any(sizes.values()):
            self.get_logger().info(f"warmed up in {time.monotonic() - start:.1f} s, batch sizes {sizes}")

    def _configure_guides(self) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value
        self.rig = None
        if not g("guided_crops") or not hasattr(self.backend, "guide"):
            return TransitionCallbackReturn.SUCCESS
        if not g("calibration_file"):
            self.get_logger().info("guided crops off: no calibration_file")
            return TransitionCallbackReturn.SUCCESS
        try:
            rig = load_rig(resolve_path(g("calibration_file")))
        except (OSError, ValueError, KeyError) as exc:
            self.get_logger().error(f"guided crops: calibration_file {g('calibration_file')!r}: {exc}")
            return TransitionCallbackReturn.FAILURE
        missing = [c for c in self.cameras if c not in rig.names]
        if missing:
            self.get_logger().error(f"guided crops: cameras {missing} are not in {g('calibration_file')} "
                                    f"({rig.names}); set guided_crops false or fix the names")
            return TransitionCallbackReturn.FAILURE
        self.rig = rig
        self.get_logger().info(f"guided crops from {g('guide_topic')} through {g('calibration_file')}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value
        msg_type = Image if g("transport") == "raw" else CompressedImage
        suffix = g("image_topic") + ("/compressed" if g("transport") == "compressed" else "")
        self.pending: dict[str, tuple[object, float]] = {}   # cam -> (newest message, arrival time)
        self.batches = self.images_inferred = 0
        self.info: dict[str, CameraInfo] = {}
        rate = g("camera_rate_hz")
        self.gaps = {c: StampGapCounter(1.0 / rate if rate > 0 else 0.0) for c in self.cameras}
        self.pubs = {c: self.own_publisher(PointCloud2, f"{c}/pose_2d", POSES) for c in self.cameras}
        self.debug_pubs = ({c: self.own_publisher(Image, f"{c}/pose_2d/debug_image", SENSOR) for c in self.cameras}
                           if g("publish_debug_image") else {})
        for c in self.cameras:
            self.own_subscription(msg_type, f"{c}/{suffix}", lambda m, c=c: self._on_image(c, m), NEWEST_ONLY)
            self.own_subscription(CameraInfo, f"{c}/{g('camera_info_topic')}",
                                  lambda m, c=c: self.info.__setitem__(c, m), SENSOR)
            self.stage(c, c).extra["backend"] = self.backend.name
        self.guide: tuple[np.ndarray, float] | None = None   # newest fused skeletons (P, J, 3), arrival time
        if self.rig is not None:
            self.own_subscription(PointCloud2, g("guide_topic"), self._on_guide, POSES)
        self.own_timer(1.0 / g("max_rate_hz"), self._maybe_process)
        self.start_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        if self.backend is not None and hasattr(self.backend, "close"):
            self.backend.close()
        self.backend = None
        return TransitionCallbackReturn.SUCCESS

    # --- input ------------------------------------------------------------------------------------------
    def _on_image(self, cam: str, msg) -> None:
        stats = self.stage(cam, cam)
        if cam in self.pending:
            stats.drop()  # the previous frame was never processed: newest wins
        self.gaps[cam].add(stamp_to_seconds(msg.header.stamp))
        stats.extra["missed_before_node"] = str(self.gaps[cam].missed)  # replaced in DDS or never sent
        self.pending[cam] = (msg, time.monotonic())

    def _on_guide(self, msg: PointCloud2) -> None:
        try:
            self.guide = (cloud_to_human_pose(msg).points, time.monotonic())
        except ValueError as exc:
            self.problem("guide", f"{self.get_parameter('guide_topic').value}: unreadable skeletons: {exc}")

    def _hand_guides(self, images: list[np.ndarray], cams: list[str]) -> None:
        """Give the backend each camera's guided ROIs from the newest fused skeletons (when fresh)."""
        if self.rig is None or self.guide is None:
            return
        skeletons, arrived = self.guide
        if time.monotonic() - arrived > self.get_parameter("guide_max_age_s").value or not len(skeletons):
            return
        layout = self.get_parameter("output_layout").value
        try:
            for cam, image in zip(cams, images):
                rois = guided_rois(self.rig[cam], skeletons, layout, self.backend.tracked_rois(cam),
                                   (image.shape[1], image.shape[0]))
                self.backend.guide(cam, rois)
        except ValueError as exc:  # skeletons in another layout than output_layout
            self.problem("guide-layout", f"guided crops: {exc}", every_s=math.inf)

    def _maybe_process(self) -> None:
        if not self.pending:
            return
        waited = time.monotonic() - min(t for _, t in self.pending.values())
        if len(self.pending) < len(self.cameras) and waited < self.get_parameter("batch_timeout_s").value:
            return  # the other cameras' frames of this instant are probably on their way
        batch, self.pending = self.pending, {}
        images, cams, headers = [], [], []
        for cam, (msg, _) in batch.items():
            image = self._decode(cam, msg)
            if image is not None:
                images.append(image)
                cams.append(cam)
                headers.append(msg.header)
        if images:
            self._process(images, cams, headers)

    def _decode(self, cam: str, msg) -> np.ndarray | None:
        """BGR image of `msg`, or None (logged once per camera and kind of problem) when it is unusable."""
        try:
            img = image_to_numpy(msg) if isinstance(msg, Image) else compressed_to_numpy(msg)
            img = to_bgr(img)
        except ImageError as exc:
            self.stage(cam, cam).error(str(exc))
            encoding = getattr(msg, "encoding", "") or getattr(msg, "format", "")
            if "unsupported encoding" in str(exc):  # a configuration problem: say it once
                self.problem(f"enc-{cam}-{encoding}", f"{cam}: {exc}; its frames are skipped", every_s=math.inf)
            else:
                self.problem(f"img-{cam}", f"{cam}: dropped an image: {exc}")
            return None
        info = self.info.get(cam)
        if info is not None and info.width and (info.width, info.height) != (img.shape[1], img.shape[0]):
            self.problem(f"size-{cam}", f"{cam}: image is {img.shape[1]}x{img.shape[0]} but camera_info says "
                         f"{info.width}x{info.height}; is the calibration for this stream?", every_s=math.inf)
        return img

    # --- inference and output ----------------------------------------------------------------------------
    def _process(self, images: list[np.ndarray], cams: list[str], headers: list) -> None:
        t0 = time.perf_counter()
        try:
            self._hand_guides(images, cams)
            results = self.backend.infer(images, cams)
        except Exception as exc:  # a broken model or runtime error must not kill the camera stream
            for cam in cams:
                self.stage(cam, cam).error(str(exc))
            self.problem("infer", f"2D inference failed on {cams}: {type(exc).__name__}: {exc}")
            return
        infer_ms = (time.perf_counter() - t0) * 1e3
        self.batches += 1
        self.images_inferred += len(images)
        out_layout = self.get_parameter("output_layout").value
        min_score = self.get_parameter("min_score").value
        for cam, image, header, (points, scores) in zip(cams, images, headers, results):
            points, scores = keypoints_in_layout(points, scores, self.backend.layout, out_layout, min_score)
            if not header.frame_id:
                info = self.info.get(cam)
                header.frame_id = info.header.frame_id if info is not None and info.header.frame_id \
                    else f"{cam}_optical_frame"
            self.pubs[cam].publish(pose2d_to_cloud(points, scores, header))
            if cam in self.debug_pubs and self.debug_pubs[cam].get_subscription_count() > 0:
                drawn = draw_skeletons(image, points, scores, out_layout, min_score=max(min_score, 0.3))
                self.debug_pubs[cam].publish(numpy_to_image(drawn, "bgr8", header))
            stats = self.stage(cam, cam)
            stats.tick(latency_ms=(time.time() - stamp_to_seconds(header.stamp)) * 1e3)
            stats.extra.update(batch=str(len(images)), mean_batch=f"{self.images_inferred / self.batches:.2f}",
                               infer_ms=f"{infer_ms:.1f}", people=str(len(points)))


def main(args=None):
    run(CameraPoseNode, args)


if __name__ == "__main__":
    main()
