"""lifter_node: per-view 3D from each camera's 2D skeletons, published on `/<cam>/pose_3d`.

Until the learned lifter lands (issue 5) it runs `ApparentSizeLifter`, a clearly named placeholder that
places each person flat at the depth matching a reference torso length. Intrinsics come from the
calibration file when given, else from the latest `/<cam>/camera_info`.
"""
from __future__ import annotations

import time

from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, PointCloud2

from hpe_ros.calibration import load_rig
from hpe_ros.lift.placeholder import ApparentSizeLifter
from hpe_ros.resources import resolve_path
from hpe_ros.ros.base import ManagedNode, run
from hpe_ros.ros.camera_info import camera_info_to_intrinsics
from hpe_ros.ros.params import STRING_ARRAY, declare, value
from hpe_ros.ros.pointcloud import cloud_to_pose2d, pose3d_to_cloud, stamp_to_seconds
from hpe_ros.ros.qos import POSES, SENSOR


class LifterNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__("lifter_node", **kwargs)
        declare(self, "cameras", [], "camera names; topics are /<cam>/pose_2d, /<cam>/camera_info, /<cam>/pose_3d",
                type_=STRING_ARRAY)
        declare(self, "calibration_file", "", "rig calibration for intrinsics (empty = use camera_info)")
        declare(self, "layout", "coco17", "joint layout of the incoming 2D skeletons")
        declare(self, "model", "apparent_size_placeholder", "lifter model (only the placeholder until issue 5)")
        declare(self, "torso_m", 0.5, "placeholder: reference shoulder-to-hip length", low=0.2, high=1.0)
        self.intrinsics: dict[str, object] = {}

    def on_configure(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        self.cameras = list(value(self, "cameras"))
        calib = g("calibration_file")
        if calib:
            try:
                rig = load_rig(resolve_path(calib))
            except (OSError, ValueError) as exc:
                self.get_logger().error(f"cannot load calibration: {exc}")
                return TransitionCallbackReturn.FAILURE
            self.cameras = self.cameras or rig.names
            self.intrinsics = {c.name: c.K for c in rig if c.name in self.cameras}
        if not self.cameras:
            self.get_logger().error("no cameras: set the 'cameras' parameter or a calibration_file")
            return TransitionCallbackReturn.FAILURE
        if g("model") != ApparentSizeLifter.name:
            self.get_logger().error(f"unknown lifter model '{g('model')}'; available: {ApparentSizeLifter.name}")
            return TransitionCallbackReturn.FAILURE
        self.lifter = ApparentSizeLifter(g("layout"), torso_m=g("torso_m"))
        self.get_logger().info(f"lifting {self.cameras} with the {self.lifter.name} lifter (placeholder until "
                               "the learned lifter lands)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.pubs = {c: self.own_publisher(PointCloud2, f"/{c}/pose_3d", POSES) for c in self.cameras}
        for c in self.cameras:
            self.own_subscription(PointCloud2, f"/{c}/pose_2d", lambda m, c=c: self._on_pose2d(c, m), SENSOR)
            self.own_subscription(CameraInfo, f"/{c}/camera_info", lambda m, c=c: self._on_info(c, m), SENSOR)
        self.start_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        if self.get_parameter("calibration_file").value:
            return  # the calibration file wins over live camera_info
        try:
            self.intrinsics[cam] = camera_info_to_intrinsics(msg)["K"]
        except ValueError as exc:
            self.problem(f"info-{cam}", f"{cam}: {exc}")

    def _on_pose2d(self, cam: str, msg: PointCloud2) -> None:
        stats = self.stage(cam, cam)
        K = self.intrinsics.get(cam)
        if K is None:
            stats.drop()
            self.problem(f"k-{cam}", f"{cam}: no intrinsics yet (waiting for /{cam}/camera_info)")
            return
        try:
            points2d, scores = cloud_to_pose2d(msg)
        except ValueError as exc:
            stats.error(str(exc))
            self.problem(f"bad-{cam}", f"{cam}: dropped a malformed pose_2d message: {exc}")
            return
        points3d, conf = self.lifter.lift(K, points2d, scores)
        self.pubs[cam].publish(pose3d_to_cloud(points3d, conf, msg.header))
        stats.tick(latency_ms=(time.time() - stamp_to_seconds(msg.header.stamp)) * 1e3)


def main(args=None):
    run(LifterNode, args)


if __name__ == "__main__":
    main()
