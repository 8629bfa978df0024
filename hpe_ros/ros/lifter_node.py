"""lifter_node: per-view 3D from each camera's 2D skeletons, published on `/<cam>/pose_3d`.

Every `/<cam>/pose_2d` message's people are lifted to 3D joints in that camera's optical frame (metres)
and published on `/<cam>/pose_3d` with the same header (stamp, frame_id) and the same rows, so the fusion
node can pair them with the 2D detections of that stamp. The cameras of one frame arrive together, so
messages are batched: the people of every camera go through the lifter in one call once each camera has
sent a message, or `batch_window_s` after the first one of the batch (0 = one call per message).

`model` and `runtime` pick the lifter (hpe_ros.lift.factory.make_lifter): "default" (the shipped
learned lifter, models/lifter.onnx), a lifter .onnx or .pt path, or "apparent_size_placeholder".

The model is loaded in on_configure: a missing or unusable model file (or runtime) is one error line and
configure fails; the node stays up unconfigured. Intrinsics (K and distortion; distorted pixels are
undistorted before lifting) come from `calibration_file` when given, else from the latest
`/<cam>/camera_info`. Malformed clouds, wrong joint counts and NaN/garbage keypoints never stop the node:
they are counted as errors in /diagnostics and logged once per kind of problem.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, PointCloud2

from hpe_ros.camera import Camera
from hpe_ros.fusion.live import most_confident
from hpe_ros.io.calibration import load_rig
from hpe_ros.lift.batch import lift_views
from hpe_ros.lift.factory import PLACEHOLDER, make_lifter
from hpe_ros.resources import resolve_path
from hpe_ros.ros.base import ManagedNode, run
from hpe_ros.ros.camera_info import camera_info_to_intrinsics
from hpe_ros.ros.params import STRING_ARRAY, declare, value
from hpe_ros.ros.pointcloud import cloud_to_pose2d, pose3d_to_cloud, stamp_to_seconds
from hpe_ros.ros.qos import POSES, SENSOR
from hpe_ros.runtime import RUNTIMES
from hpe_ros.skeleton import get_layout


class LifterNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__("lifter_node", **kwargs)
        d = lambda *a, **k: declare(self, *a, **k)
        d("cameras", [], "camera names; topics are /<cam>/pose_2d, /<cam>/camera_info, /<cam>/pose_3d",
          type_=STRING_ARRAY)
        d("calibration_file", "", "rig calibration for intrinsics (empty = use camera_info)")
        d("layout", "coco17", "joint layout of the incoming 2D skeletons")
        d("model", "default", "lifter: 'default' (the shipped learned lifter, models/lifter.onnx), a path to a "
          f"lifter .onnx or .pt checkpoint, or '{PLACEHOLDER}'")
        d("runtime", "onnxruntime", f"runtime of an .onnx lifter: {', '.join(RUNTIMES)} (.pt checkpoints run on torch)")
        d("providers", "auto", "onnxruntime: 'auto' (TensorRT, CUDA, CPU as available) or a comma list")
        d("threads", 1, "onnxruntime: intra-op threads (0 = onnxruntime's default)", low=0, high=64)
        d("enable_fp16", True, "tensorrt: build the engine with FP16 kernels")
        d("engine_file_path", "", "tensorrt: serialized engine path (default: the engine cache)")
        d("force_engine_update", False, "tensorrt: rebuild the engine even when the cached one matches")
        d("max_batch", 32, "tensorrt: largest batch (people per call) of the engine's profile", low=1, high=1024)
        d("torso_m", 0.5, "placeholder: reference shoulder-to-hip length", low=0.2, high=1.0)
        d("batch_window_s", 0.005, "longest wait for the other cameras' messages before lifting the ones "
          "received (0 = lift each message on its own)", low=0.0, high=0.1)
        d("max_persons", 10, "people lifted per message, the most confident (the others go out as missing "
          "rows, so rows still match the 2D): a flood of detections cannot stall the node", low=1, high=10000)
        self.intrinsics: dict[str, Camera] = {}
        self.lifter = None
        self._pending: dict[str, tuple] = {}  # camera -> (header, camera, points2d, scores) waiting to be lifted
        self._batch_timer = None

    # --- lifecycle -----------------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value
        self.cameras = list(value(self, "cameras"))
        self.intrinsics = {}
        calib = g("calibration_file")
        if calib:
            try:
                rig = load_rig(resolve_path(calib))
            except (OSError, ValueError) as exc:
                self.get_logger().error(f"cannot load calibration: {exc}")
                return TransitionCallbackReturn.FAILURE
            self.cameras = self.cameras or rig.names
            self.intrinsics = {c.name: Camera(c.name, c.K, c.dist, size=c.size) for c in rig if c.name in self.cameras}
        if not self.cameras:
            self.get_logger().error("no cameras: set the 'cameras' parameter or a calibration_file")
            return TransitionCallbackReturn.FAILURE
        try:
            self.layout = get_layout(g("layout"))
        except (KeyError, ValueError) as exc:
            self.get_logger().error(f"unknown layout {g('layout')!r}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.lifter = self._load_lifter()
        if self.lifter is None:
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"lifting {self.cameras} with the {self.lifter.name} lifter")
        return TransitionCallbackReturn.SUCCESS

    def _load_lifter(self):
        """The lifter named by `model` / `runtime`, or None after logging one clear error."""
        g = lambda n: self.get_parameter(n).value
        try:
            return make_lifter(g("model"), layout=self.layout.name, runtime=g("runtime"), torso_m=g("torso_m"),
                               providers=g("providers"), threads=g("threads"), enable_fp16=g("enable_fp16"),
                               engine_file_path=g("engine_file_path"),
                               force_engine_update=g("force_engine_update"), max_batch=g("max_batch"),
                               warn=self.get_logger().warning)
        except (ValueError, OSError, RuntimeError) as exc:  # a missing or broken model, a runtime not here
            self.get_logger().error(str(exc))
        return None

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.pubs = {c: self.own_publisher(PointCloud2, f"{c}/pose_3d", POSES) for c in self.cameras}
        for c in self.cameras:
            # inbox: the message that completes a frame lifts the whole batch inside its callback
            self.own_subscription(PointCloud2, f"{c}/pose_2d", lambda m, c=c: self._on_pose2d(c, m), SENSOR,
                                  inbox=True)
            self.own_subscription(CameraInfo, f"{c}/camera_info", lambda m, c=c: self._on_info(c, m), SENSOR)
            self.stage(c, c).extra["lifter"] = self.lifter.name
        self._pending = {}
        self.batch_window = self.get_parameter("batch_window_s").value
        self._batch_timer = None
        if self.batch_window > 0:
            self._batch_timer = self.own_timer(self.batch_window, self._flush)
            self._batch_timer.cancel()  # armed by the first message of a batch
        self.start_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.lifter = None
        return TransitionCallbackReturn.SUCCESS

    # --- inputs --------------------------------------------------------------------------------------
    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        if self.get_parameter("calibration_file").value:
            return  # the calibration file wins over live camera_info
        try:
            info = camera_info_to_intrinsics(msg)
            self.intrinsics[cam] = Camera(cam, info["K"], info["dist"], size=info["size"])
        except ValueError as exc:
            self.problem(f"info-{cam}", f"{cam}: {exc}")

    def _on_pose2d(self, cam: str, msg: PointCloud2) -> None:
        stats = self.stage(cam, cam)
        camera = self.intrinsics.get(cam)
        if camera is None:
            stats.drop()
            self.problem(f"k-{cam}", f"{cam}: no intrinsics yet (waiting for /{cam}/camera_info)")
            return
        try:
            points2d, scores = cloud_to_pose2d(msg)
            J = self.layout.num_joints
            if points2d.shape[0] and points2d.shape[1] != J:
                raise ValueError(f"{points2d.shape[1]} joints, expected {J} ({self.layout.name})")
        except ValueError as exc:
            stats.error(str(exc))
            self.problem(f"bad-{cam}", f"{cam}: dropped a malformed pose_2d message: {exc}")
            return
        points2d, scores = points2d.reshape(-1, J, 2), scores.reshape(-1, J)
        rows = most_confident(scores, self.get_parameter("max_persons").value)
        if len(rows) < len(scores):
            stats.notice = f"{cam}: pose_2d had {len(scores) - len(rows)} people over max_persons; not lifted"
            self.problem(f"crowd-{cam}", stats.notice)
        if cam in self._pending:  # this camera's next frame: the batch is as complete as it gets
            self._flush()
        self._pending[cam] = (msg.header, camera, points2d[rows], scores[rows], rows, len(scores))
        if self._batch_timer is None or len(self._pending) == len(self.cameras):
            self._flush()
        elif len(self._pending) == 1:
            self._batch_timer.reset()

    def _flush(self) -> None:
        """Lift every pending message in one lifter call and publish each camera's pose_3d."""
        if self._batch_timer is not None:
            self._batch_timer.cancel()
        pending, self._pending = self._pending, {}
        if not pending:
            return
        t0 = time.perf_counter()
        try:
            with np.errstate(all="ignore"):  # garbage pixels make NaN / inf, which come out as missing joints
                lifted = lift_views(self.lifter, [(camera.K, camera.undistort_pixels(points2d), scores)
                                                  for _, camera, points2d, scores, _, _ in pending.values()])
        except Exception as exc:  # a lifter that chokes on one batch must not stop the node
            for cam in pending:
                self.stage(cam, cam).error(str(exc))
                self.problem(f"lift-{cam}", f"{cam}: lifting failed, message dropped: {type(exc).__name__}: {exc}")
            return
        lift_ms = f"{(time.perf_counter() - t0) * 1e3:.2f}"
        for (cam, (header, _, _, _, rows, persons)), (points3d, conf) in zip(pending.items(), lifted):
            if len(rows) < persons:  # the rows not lifted go out missing
                all_points = np.full((persons, *points3d.shape[1:]), np.nan)
                all_conf = np.zeros((persons, *conf.shape[1:]))
                all_points[rows], all_conf[rows] = points3d, conf
                points3d, conf = all_points, all_conf
            self.pubs[cam].publish(pose3d_to_cloud(points3d, conf, header))
            stats = self.stage(cam, cam)
            stats.extra.update({"lift_ms": lift_ms, "people": str(len(points3d)), "batch": str(len(pending))})
            stats.tick(latency_ms=(time.time() - stamp_to_seconds(header.stamp)) * 1e3)


def main(args=None):
    run(LifterNode, args)


if __name__ == "__main__":
    main()
