"""fusion_node: every camera's 2D skeletons -> tracked 3D skeletons on /human_pose_3d.

Wiring only. The live policy (time sync, staleness, waiting for lifted poses, online calibration) is
`hpe_ros.fusion.live.LiveFusion`, fed with the node clock; the fusion itself is `FusionPipeline`. This
node declares the parameters (LiveConfig and FusionConfig declare theirs: `sync_wait_s`, ...,
`fusion.min_views`, `fusion.tracker.gate_m`, ...), converts <cam>/pose_2d and <cam>/pose_3d clouds
for it, and publishes what it finishes: human_pose_3d (PointCloud2), human_pose_3d/markers
(MarkerArray), TF (`body_<id>`, joints under it, camera frames; hpe_ros.ros.tf), humans/bodies/tracked
(`publish_hri`), /diagnostics, one log line per problem. Topics are relative (a namespace moves the rig).
With `camera_extrinsics_from_tf` the cameras' poses come from TF instead of the calibration file.

With `refine_extrinsics`, LiveFusion feeds an `OnlineRefiner` and applies the rigs it accepts; the node
then re-sends the camera TF. `~/save_calibration` (std_srvs/Trigger) writes the current rig to
`calibration_output_file` (atomically).
"""
from __future__ import annotations

import json
import os

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from hpe_ros.calibration.online import OnlineRefiner
from hpe_ros.checks import config_from_mapping
from hpe_ros.fusion import FusionConfig
from hpe_ros.fusion.live import LiveConfig, LiveEvent, LiveFusion, LiveOutput
from hpe_ros.io.calibration import load_rig, save_rig
from hpe_ros.resources import DEFAULT_RIG, resolve_path
from hpe_ros.ros.base import ManagedNode, run
from hpe_ros.ros.hri import HRIPublisher
from hpe_ros.ros.markers import delete_all_markers, skeleton_markers
from hpe_ros.ros.params import STRING_ARRAY, config_values, declare, declare_config, read_only_except, value
from hpe_ros.ros.pointcloud import (
    HumanPoses,
    cloud_to_pose2d,
    cloud_to_pose3d,
    human_pose_to_cloud,
    make_header,
    stamp_to_seconds,
)
from hpe_ros.ros.qos import LATCHED, POSES, SENSOR
from hpe_ros.ros.tf import (
    CameraPosesFromTF,
    TFSender,
    camera_transforms,
    declare_frame_parameters,
    publishes_camera_frames,
    skeleton_transforms,
)
from hpe_ros.skeleton import get_layout


class FusionNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__("fusion_node", **kwargs)
        d = lambda *a, **k: declare(self, *a, **k)
        d("calibration_file", DEFAULT_RIG, "rig calibration (anipose/Pose2Sim TOML or rig YAML)")
        d("cameras", [], "camera names to fuse (empty = every camera in the calibration)", type_=STRING_ARRAY)
        d("layout", "coco17", "joint layout of the incoming 2D skeletons")
        d("world_frame", "world", "frame of /human_pose_3d, markers and TF")
        d("output_topic", "human_pose_3d", "fused skeletons (markers and skeleton description use sub-topics)")
        d("publish_markers", True, "publish RViz markers")
        d("publish_tf", True, "broadcast body_<id> and <joint>_<id> frames (needs tf2_ros or tf2_msgs)")
        declare_frame_parameters(self)
        d("publish_hri", False, "ROS4HRI: also publish the track ids on humans/bodies/tracked (hri_msgs/IdsList); "
          "the body_<id> frames are the TF ones", read_only=True)
        d("marker_lifetime_s", 0.5, "RViz marker lifetime", low=0.0, high=60.0)
        declare_config(self, LiveConfig)
        declare_config(self, FusionConfig, "fusion")
        d("refine_extrinsics", False, "refine camera extrinsics online from the people seen (slowly, only "
          "when the held-out reprojection error clearly drops)")
        d("refine_min_improvement", 0.10, "relative drop of the held-out error a refinement needs to be applied",
          low=0.0, high=0.99)
        d("calibration_output_file", "calibration_refined.toml",
          "where ~/save_calibration writes the current rig (.toml or .yaml; relative = working directory)")
        # Everything else is read when the node configures or activates (deactivate, cleanup, then set).
        read_only_except(self, runtime=("marker_lifetime_s", "calibration_output_file"))
        self.live: LiveFusion | None = None
        self.create_service(Trigger, "~/save_calibration", self._on_save_calibration)

    @property
    def rig(self):
        """The rig being fused (refined ones included), None while unconfigured."""
        return self.live.rig if self.live is not None else None

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # --- lifecycle -----------------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value
        try:
            path = resolve_path(g("calibration_file"), DEFAULT_RIG)
            rig = load_rig(path)
        except (OSError, ValueError) as exc:
            self.get_logger().error(f"missing or bad calibration, not configured: {exc}")
            return TransitionCallbackReturn.FAILURE
        cams = list(value(self, "cameras")) or rig.names
        unknown = [c for c in cams if c not in rig.names]
        if unknown:
            self.get_logger().error(f"cameras {unknown} are not in {path} (it has {rig.names})")
            return TransitionCallbackReturn.FAILURE
        try:
            self.layout = get_layout(g("layout"))
            config = config_from_mapping(FusionConfig, config_values(self, FusionConfig, "fusion"), "fusion")
            live_config = config_from_mapping(LiveConfig, config_values(self, LiveConfig))
        except (KeyError, ValueError) as exc:
            self.get_logger().error(f"bad fusion parameters: {exc}")
            return TransitionCallbackReturn.FAILURE
        rig = rig.subset(cams)
        refiner = None
        if g("refine_extrinsics"):
            try:
                refiner = OnlineRefiner(rig, min_improvement=g("refine_min_improvement"))
            except ValueError as exc:
                self.get_logger().error(f"online extrinsics refinement is off: {exc}")
        self.live = LiveFusion(rig, self.layout, config, live_config, refiner)
        self.world_frame = g("world_frame")
        self.get_logger().info(f"fusing {cams} from {path}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value
        self.live.clear_inputs()
        out = g("output_topic")
        self.pose_pub = self.own_publisher(PointCloud2, out, POSES)
        self.marker_pub = self.own_publisher(MarkerArray, out + "/markers", POSES) if g("publish_markers") else None
        skeleton_pub = self.own_publisher(String, out + "/skeleton", LATCHED)
        skeleton_pub.publish(String(data=json.dumps({**self.layout.to_dict(), "world_frame": self.world_frame})))
        self.tf = TFSender(self) if g("publish_tf") else None
        self.static_tf = TFSender(self, static=True)
        self.frame_prefix = g("frame_prefix")
        self.camera_tf = self.camera_poses_from_tf()
        self.hri = HRIPublisher(self) if g("publish_hri") else None
        self._send_camera_tf()
        for c in self.live.rig.names:
            self.own_subscription(PointCloud2, f"{c}/pose_2d", lambda m, c=c: self._on_pose2d(c, m), SENSOR,
                                  inbox=True)
            if self.live.live_config.use_lifter:
                self.own_subscription(PointCloud2, f"{c}/pose_3d", lambda m, c=c: self._on_pose3d(c, m), SENSOR,
                                      inbox=True)
        self.own_timer(0.005, self._poll)  # hands on frames still waiting for a slow camera or the lifter
        self.start_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._clear_markers()
        self.marker_pub = None
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.live = None
        return TransitionCallbackReturn.SUCCESS

    def before_exit(self) -> None:
        self._clear_markers()

    def _clear_markers(self) -> None:
        if getattr(self, "marker_pub", None) is not None:
            self.marker_pub.publish(delete_all_markers(make_header(self._now(), self.world_frame)))

    def _send_camera_tf(self) -> None:
        if publishes_camera_frames(self):
            self.static_tf.send(camera_transforms(self.live.rig, self.world_frame, self.get_clock().now().to_msg(),
                                                  self.frame_prefix))

    def camera_poses_from_tf(self) -> CameraPosesFromTF | None:
        """With camera_extrinsics_from_tf: read the cameras' poses from TF now and every camera_tf_period_s."""
        if not self.get_parameter("camera_extrinsics_from_tf").value:
            return None
        reader = CameraPosesFromTF(self, self.world_frame, self.frame_prefix)
        if self.live.refiner is not None:
            self.get_logger().warning("camera_extrinsics_from_tf with refine_extrinsics: every re-read of the "
                                      "TF poses replaces the refined extrinsics")

        def reread():
            rig = reader.poll(self.live.rig)
            if rig is None:
                self.problem("camera-tf", f"waiting for camera poses on TF: no {reader.missing} in {self.world_frame}")
            else:
                self.live.pipeline.set_rig(rig)
        self.own_timer(self.get_parameter("camera_tf_period_s").value, reread)
        return reader

    # --- inputs --------------------------------------------------------------------------------------
    def _on_pose2d(self, cam: str, msg: PointCloud2) -> None:
        with self.busy():
            now = self._now()
            stamp = stamp_to_seconds(msg.header.stamp)
            stats = self.stage(cam, cam)
            if self.camera_tf is not None and not self.camera_tf.ready:
                stats.drop(reason="camera poses not on TF yet")
                return
            try:
                points2d, scores = cloud_to_pose2d(msg)
                arrival = self.live.add_2d(cam, stamp, points2d, scores, now)
            except ValueError as exc:
                stats.error(str(exc))
                self.problem(f"bad-{cam}", f"{cam}: dropped a malformed pose_2d message: {exc}")
                return
            self._note_arrival(cam, stamp, arrival, stats)
            if arrival.status in ("accepted", "late"):
                self._publish_all(self.live.finished())

    def _note_arrival(self, cam: str, stamp: float, arrival, stats) -> None:
        """Statistics, diagnostics and one rate-limited log line naming the camera for what became of a message."""
        offset = arrival.clock_offset_s
        limit = self.live.live_config.max_clock_offset_s
        stats.extra["clock_offset_ms"] = f"{offset * 1e3:.1f}"
        stats.warning = (f"stamps {offset * 1e3:+.0f} ms off the other cameras' (clock or pipeline offset)"
                         if abs(offset) > limit else "")
        if arrival.persons_dropped:
            stats.extra["persons_dropped"] = str(int(stats.extra.get("persons_dropped", "0")) + arrival.persons_dropped)
            stats.notice = (f"{cam}: pose_2d message had {arrival.persons_dropped} people over "
                            "max_persons_per_camera; kept the most confident")
            self.problem(f"crowd-{cam}", stats.notice)
        reason = {
            "stale": f"stale pose_2d ({arrival.age_s * 1e3:.0f} ms old; clocks in sync?)",
            "future": f"pose_2d stamped {stamp:.3f}, {-arrival.age_s:.3f} s ahead of this node's clock "
                      f"(more than max_future_s)",
            "ahead": f"pose_2d stamped {stamp:.3f}, ahead of the other cameras by about {offset * 1e3:.0f} ms "
                     "(its clock runs ahead? correct_clock_offset shifts it back)",
            "late": f"a late or reordered pose_2d (stamp {stamp:.3f}, older than the last fused frame)",
        }.get(arrival.status)
        if arrival.status != "late" and reason is not None:
            stats.drop(reason=reason)
            self.problem(f"{arrival.status}-{cam}", f"{cam}: dropped {reason}")
            return
        stats.tick(latency_ms=arrival.age_s * 1e3)
        if reason is not None:
            stats.drop(reason=reason)
            self.problem(f"late-{cam}", f"{cam}: dropped {reason}")

    def _on_pose3d(self, cam: str, msg: PointCloud2) -> None:
        with self.busy():
            try:
                points3d, scores, _ = cloud_to_pose3d(msg)
                self.live.add_lifted(cam, stamp_to_seconds(msg.header.stamp), points3d, scores, self._now())
            except ValueError as exc:
                self.problem(f"bad3d-{cam}", f"{cam}: dropped a malformed pose_3d message: {exc}")
                return
            self._publish_all(self.live.finished())

    def _poll(self) -> None:
        """Timer: frames whose wait for a slow camera or the lifter ran out, online calibration."""
        with self.busy():
            self._publish_all(self.live.poll(self._now()))

    # --- outputs -------------------------------------------------------------------------------------
    def _publish_all(self, outputs: list[LiveOutput]) -> None:
        for out in outputs:
            self._publish(out)
        for event in self.live.take_events():
            self._report(event)

    def _publish(self, out: LiveOutput) -> None:
        result = out.result
        header = make_header(result.stamp, self.world_frame)
        points, confidence, ids, views = result.as_arrays()
        if self.hri is not None:
            self.hri.publish(ids, header)
        self.pose_pub.publish(human_pose_to_cloud(HumanPoses(points, confidence, ids, views, result.stamp,
                                                             self.world_frame), header))
        latency_ms = (self._now() - result.stamp) * 1e3
        if self.marker_pub is not None:
            self.marker_pub.publish(skeleton_markers(points, confidence, ids, self.layout, header,
                                                     lifetime_s=self.get_parameter("marker_lifetime_s").value))
        if self.tf is not None and len(ids):
            self.live.pipeline.orient(result)  # after the skeletons went out: orientations only feed TF
            rotations = np.stack([p.joint_rotations for p in result.persons])
            bodies = np.stack([p.body_pose for p in result.persons])
            self.tf.send(skeleton_transforms(points, ids, self.layout, header, rotations, bodies,
                                               self.frame_prefix))
        stats = self.stage("fusion")
        stats.tick(latency_ms=latency_ms)
        stats.dropped = self.live.sync.counters.dropped
        stats.extra.update({"people": str(len(ids)), "cameras_in_frame": str(out.cameras),
                            "mixed_views_dropped": str(self.live.pipeline.mixed_views_dropped),
                            "input_wait_ms": f"{out.input_wait_s * 1e3:.2f}",
                            **{f"{k}_ms": f"{v:.2f}" for k, v in result.timing_ms.items()}})

    def _report(self, event: LiveEvent) -> None:
        """One log line (and diagnostics) per LiveFusion event."""
        if event.kind == "frame_dropped":
            self.stage("fusion").error(event.message)
            self.problem("fuse", event.message)
            return
        if event.kind == "persons_capped":
            self.stage("fusion").extra["persons_dropped"] = str(self.live.frame_persons_dropped)
            self.problem("crowd-frame", event.message)
            return
        if event.kind == "refine_frame_skipped":
            self.problem("refine-add", event.message)
            return
        stats = self.stage("calibration")
        if event.kind == "refine_failed":
            stats.error(event.message)
            self.problem("refine", event.message)
            return
        stats.extra.update(event.refinement.summary())
        stats.extra["refinements"] = str(self.live.refinements)
        if event.kind == "refine_applied":
            self._send_camera_tf()
        self.get_logger().info(event.message)

    def _on_save_calibration(self, request, response):
        path = os.path.abspath(self.get_parameter("calibration_output_file").value)
        rig = self.rig
        if rig is None:
            response.success, response.message = False, "no calibration loaded (node not configured)"
            return response
        try:
            save_rig(rig, path)
        except Exception as exc:  # bad extension, unwritable folder...: say so, keep running
            response.success, response.message = False, f"could not save calibration to {path}: {exc}"
            self.get_logger().warning(response.message)
            return response
        response.success, response.message = True, path
        self.get_logger().info(f"saved the current calibration to {path}")
        return response


def main(args=None):
    run(FusionNode, args)


if __name__ == "__main__":
    main()
