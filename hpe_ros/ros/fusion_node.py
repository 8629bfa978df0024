"""fusion_node: every camera's 2D skeletons -> tracked 3D skeletons on /human_pose_3d.

Per frame: time sync (slop + wait, dead cameras never stall it) -> `FusionPipeline.step` (association,
robust triangulation, single-view lifting, tracking, filtering, orientations) -> /human_pose_3d
(PointCloud2), /human_pose_3d/markers (MarkerArray), TF (`body_<id>`, `<joint>_<id>`), /diagnostics.

With `refine_extrinsics`, every fused frame also feeds an `OnlineRefiner` (people seen by >= 3 cameras
on most joints); at most once per `refine_period_s` a refinement runs in a background thread, and the
executor thread (the `_poll` timer) applies an accepted rig with `FusionPipeline.set_rig` (tracks are
kept) and re-sends the camera TF. `~/save_calibration` (std_srvs/Trigger) writes the current rig to
`calibration_output_file` (atomically).
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from hpe_ros.calibration import load_rig, save_rig
from hpe_ros.calibration.online import OnlineRefiner, RefineResult
from hpe_ros.fusion import FusionConfig, FusionPipeline
from hpe_ros.fusion.pipeline import stack_views
from hpe_ros.fusion.sync import FrameSynchronizer
from hpe_ros.resources import DEFAULT_RIG, resolve_path
from hpe_ros.ros.base import ManagedNode, run
from hpe_ros.ros.markers import delete_all_markers, skeleton_markers
from hpe_ros.ros.params import STRING_ARRAY, declare, value
from hpe_ros.ros.pointcloud import (cloud_to_pose2d, cloud_to_pose3d, human_pose_to_cloud, make_header,
                                    stamp_to_seconds)
from hpe_ros.ros.qos import LATCHED, POSES, SENSOR
from hpe_ros.ros.tf import TFSender, camera_transforms, skeleton_transforms
from hpe_ros.skeleton import get_layout

_CONFIG_HELP = {
    "min_views": "cameras needed to triangulate a joint",
    "max_error_px": "reprojection error above which a view is rejected as an outlier",
    "min_score": "2D confidence below which a joint counts as missing",
    "max_epipolar_px": "epipolar distance gate of cross-view association",
    "prior_gate_px": "pixel gate when matching detections to tracked people",
    "refine": "Gauss-Newton refinement of triangulated joints",
    "use_single_view": "use lifted 3D for people or joints seen by fewer than min_views cameras",
    "lifted_track_depth": "single-view people: fraction (log depth) of the way their lifted depth moves to the "
                          "depth their track predicts (0 = off)",
    "lifted_scale_fit": "align lifted poses to the triangulated joints with scale + translation (else translation)",
    "gate_m": "3D gate when assigning people to tracks",
    "birth_hits": "frames a new person must be seen before it gets a published id",
    "death_timeout_s": "a track unseen this long is dropped",
    "joint_hold_s": "a joint unseen this long stops being predicted",
    "max_joint_speed": "joint speed (m/s) above which an update is rejected",
    "one_euro_min_cutoff": "One-Euro filter minimum cutoff (Hz)",
    "one_euro_beta": "One-Euro filter speed coefficient",
    "filter": "smooth joints with the One-Euro filter",
}


class FusionNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__("fusion_node", **kwargs)
        d = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        d("calibration_file", DEFAULT_RIG, "rig calibration (anipose/Pose2Sim TOML or rig YAML)")
        d("cameras", [], "camera names to fuse (empty = every camera in the calibration)", type_=STRING_ARRAY)
        d("layout", "coco17", "joint layout of the incoming 2D skeletons")
        d("world_frame", "world", "frame of /human_pose_3d, markers and TF")
        d("output_topic", "/human_pose_3d", "fused skeletons (markers and skeleton description use sub-topics)")
        d("sync_slop_s", 0.010, "stamps closer than this belong to one frame", low=0.0, high=1.0)
        d("sync_wait_s", 0.040, "longest wait for the slowest camera of a frame", low=0.0, high=2.0)
        d("camera_timeout_s", 0.5, "a camera silent this long is not waited for", low=0.01, high=60.0)
        d("max_age_s", 0.5, "frames older than this when they arrive are dropped as stale", low=0.01, high=60.0)
        d("use_lifter", True, "subscribe to /<cam>/pose_3d and use lifted poses where views are missing")
        d("lifter_wait_s", 0.010, "how long a complete frame may wait for its lifted poses (0 = never wait)",
          low=0.0, high=1.0)
        d("publish_markers", True, "publish RViz markers")
        d("publish_tf", True, "broadcast body_<id> and <joint>_<id> frames (needs tf2_ros)")
        d("marker_lifetime_s", 0.5, "RViz marker lifetime", low=0.0, high=60.0)
        for f in dataclasses.fields(FusionConfig):
            d(f"fusion.{f.name}", f.default, _CONFIG_HELP.get(f.name, f"fusion setting {f.name}"))
        d("refine_extrinsics", False, "refine camera extrinsics online from the people seen (slowly, only "
          "when the held-out reprojection error clearly drops)")
        d("refine_period_s", 30.0, "how often an online refinement may start", low=0.01, high=86400.0)
        d("refine_min_improvement", 0.10, "relative drop of the held-out error a refinement needs to be applied",
          low=0.0, high=0.99)
        d("calibration_output_file", "calibration_refined.toml",
          "where ~/save_calibration writes the current rig (.toml or .yaml; relative = working directory)")
        self.pipeline = None
        self.rig = None
        self.refiner: OnlineRefiner | None = None
        self.refinements = 0  # accepted and applied refinements
        self._refine_thread: threading.Thread | None = None
        self._refine_result: RefineResult | BaseException | None = None
        self._last_refine = float("-inf")
        self.create_service(Trigger, "~/save_calibration", self._on_save_calibration)

    # --- lifecycle -----------------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value  # noqa: E731
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
            config = FusionConfig.from_dict({f.name: g(f"fusion.{f.name}") for f in dataclasses.fields(FusionConfig)})
        except (KeyError, ValueError) as exc:
            self.get_logger().error(f"bad fusion parameters: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.rig = rig.subset(cams)
        self.cam_index = {c: i for i, c in enumerate(cams)}
        self.pipeline = FusionPipeline(self.rig, self.layout, config)
        self.world_frame = g("world_frame")
        self.refiner = None
        if g("refine_extrinsics"):
            try:
                self.refiner = OnlineRefiner(self.rig, min_improvement=g("refine_min_improvement"))
            except ValueError as exc:
                self.get_logger().error(f"online extrinsics refinement is off: {exc}")
        self.get_logger().info(f"fusing {cams} from {path}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        cams = self.rig.names
        self.sync = FrameSynchronizer(cams, g("sync_slop_s"), g("sync_wait_s"), g("camera_timeout_s"))
        self.lifted: dict[str, dict[float, tuple]] = {c: {} for c in cams}
        out = g("output_topic")
        self.pose_pub = self.own_publisher(PointCloud2, out, POSES)
        self.marker_pub = self.own_publisher(MarkerArray, out + "/markers", POSES) if g("publish_markers") else None
        skeleton_pub = self.own_publisher(String, out + "/skeleton", LATCHED)
        skeleton_pub.publish(String(data=json.dumps({**self.layout.to_dict(), "world_frame": self.world_frame})))
        self.tf = TFSender(self) if g("publish_tf") else None
        self.static_tf = TFSender(self, static=True)
        self.static_tf.send(camera_transforms(self.rig, self.world_frame, self.get_clock().now().to_msg()))
        for c in cams:
            self.own_subscription(PointCloud2, f"/{c}/pose_2d", lambda m, c=c: self._on_pose2d(c, m), SENSOR)
            if g("use_lifter"):
                self.own_subscription(PointCloud2, f"/{c}/pose_3d", lambda m, c=c: self._on_pose3d(c, m), SENSOR)
        self.own_timer(0.005, self._poll)  # hands on frames still waiting for a slow camera or the lifter
        self.fused = 0
        self._held = None  # (frame, prepared, deadline): a frame waiting for its lifted poses
        self._last_lift = float("-inf")
        self.start_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._clear_markers()
        self.marker_pub = None
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.pipeline = None
        self.refiner = None
        return TransitionCallbackReturn.SUCCESS

    def before_exit(self) -> None:
        self._clear_markers()

    def _clear_markers(self) -> None:
        if getattr(self, "marker_pub", None) is not None:
            self.marker_pub.publish(delete_all_markers(make_header(time.time(), self.world_frame)))

    # --- inputs --------------------------------------------------------------------------------------
    def _on_pose2d(self, cam: str, msg: PointCloud2) -> None:
        now = time.time()
        stamp = stamp_to_seconds(msg.header.stamp)
        stats = self.stage(cam, cam)
        try:
            points2d, scores = cloud_to_pose2d(msg)
            if points2d.shape[1:] != (self.layout.num_joints, 2) and points2d.shape[0] > 0:
                raise ValueError(f"{points2d.shape[1]} joints, expected {self.layout.num_joints} ({self.layout.name})")
        except ValueError as exc:
            stats.error(str(exc))
            self.problem(f"bad-{cam}", f"{cam}: dropped a malformed pose_2d message: {exc}")
            return
        age = now - stamp
        if age > self.get_parameter("max_age_s").value:
            stats.drop()
            self.problem(f"stale-{cam}", f"{cam}: dropping stale pose_2d ({age * 1e3:.0f} ms old; clocks in sync?)")
            return
        stats.tick(latency_ms=age * 1e3)
        late_before = self.sync.counters.late
        frames = self.sync.add(cam, stamp, (points2d, scores), now)
        if self.sync.counters.late > late_before:
            stats.drop()
            self.problem(f"late-{cam}", f"{cam}: dropped a late or reordered frame (stamp {stamp:.3f})")
        self._fuse(frames)

    def _on_pose3d(self, cam: str, msg: PointCloud2) -> None:
        try:
            points3d, scores, _ = cloud_to_pose3d(msg)
        except ValueError as exc:
            self.problem(f"bad3d-{cam}", f"{cam}: dropped a malformed pose_3d message: {exc}")
            return
        store = self.lifted[cam]
        store[stamp_to_seconds(msg.header.stamp)] = (points3d, scores)
        while len(store) > 10:  # keep a few frames: the lifter may run behind the 2D stream
            store.pop(next(iter(store)))
        self._last_lift = time.time()
        if self._held is not None and self._lifts_complete(self._held[0]):
            self._release_held()

    def _poll(self) -> None:
        now = time.time()
        if self._held is not None and now >= self._held[2]:
            self._release_held()
        self._fuse(self.sync.poll(now))
        if self.refiner is not None or self._refine_result is not None:
            self._refine_tick()

    # --- online calibration --------------------------------------------------------------------------
    def _feed_refiner(self, frame, points, views) -> None:
        """Give the refiner this frame's detections and the people seen by >= 3 cameras on most joints."""
        well_seen = (views >= 3).mean(axis=1) > 0.5 if len(views) else np.zeros(0, dtype=bool)
        if not well_seen.any():
            return
        try:
            self.refiner.add(frame.stamp, *self._arrays_2d(frame), points[well_seen])
        except ValueError as exc:
            self.problem("refine-add", f"online calibration skipped a frame: {exc}")

    def _refine_tick(self) -> None:
        """Executor thread: apply a finished refinement, or start one when due (one at a time)."""
        if self._refine_thread is not None and not self._refine_thread.is_alive():
            self._refine_thread = None
            result, self._refine_result = self._refine_result, None
            self._apply_refinement(result)
        refiner = self.refiner
        if (refiner is None or self._refine_thread is not None or not refiner.ready()
                or time.monotonic() - self._last_refine < self.get_parameter("refine_period_s").value):
            return
        self._last_refine = time.monotonic()

        def work():
            try:
                self._refine_result = refiner.refine()
            except Exception as exc:  # reported on the executor thread
                self._refine_result = exc

        self._refine_thread = threading.Thread(target=work, name="extrinsics_refinement", daemon=True)
        self._refine_thread.start()

    def _apply_refinement(self, result) -> None:
        stats = self.stage("calibration")
        if isinstance(result, BaseException) or result is None:
            stats.error(str(result))
            self.problem("refine", f"online calibration failed: {result!r}")
            return
        stats.extra.update(result.summary())
        stats.extra["refinements"] = str(self.refinements)
        if not result.accepted:
            self.get_logger().info(f"online calibration: kept the current rig: {result.reason}")
            return
        if self.pipeline is None or result.rig.names != self.rig.names:
            return  # cleaned up or reconfigured meanwhile
        self.pipeline.set_rig(result.rig)
        self.rig = result.rig
        if self.refiner is not None:
            self.refiner.set_rig(result.rig)
        if getattr(self, "static_tf", None) is not None:
            self.static_tf.send(camera_transforms(self.rig, self.world_frame, self.get_clock().now().to_msg()))
        self.refinements += 1
        stats.extra["refinements"] = str(self.refinements)
        moved = ", ".join(f"{n} {r:.2f} deg / {t * 100:.1f} cm" for n, r, t in
                          zip(self.rig.names, result.rotation_change_deg, result.translation_change_m))
        self.get_logger().info(f"online calibration applied: held-out reprojection error "
                               f"{result.old_error_px:.2f} -> {result.new_error_px:.2f} px ({moved})")

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

    # --- fusion --------------------------------------------------------------------------------------
    def _lifts_complete(self, frame) -> bool:
        """Every camera of `frame` that saw someone has its lifted poses for that stamp."""
        return all(frame.stamps[c] in self.lifted[c] for c, (pts, _) in frame.items.items() if len(pts))

    def _fuse(self, frames) -> None:
        """Fuse frames in order. Association and triangulation run at once; a frame with someone seen by
        one camera only may wait up to lifter_wait_s (while the lifter is alive) for its lifted poses."""
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        for frame in frames:
            if self._held is not None:  # a newer frame is ready: the held one goes with what it has
                self._release_held()
            try:
                self.stage("fusion").extra["input_wait_ms"] = f"{(time.time() - frame.stamp) * 1e3:.2f}"
                prepared = self.pipeline.prepare(frame.stamp, *self._arrays_2d(frame))
            except ValueError as exc:  # e.g. a stamp that went backwards: drop the frame, keep running
                self._dropped_frame(exc)
                continue
            now = time.time()
            wait = g("lifter_wait_s") if g("use_lifter") else 0.0
            if (wait > 0 and prepared.needs_lifted and now - self._last_lift <= g("camera_timeout_s")
                    and not self._lifts_complete(frame)):
                self._held = (frame, prepared, now + wait)
            else:
                self._finish(frame, prepared)

    def _release_held(self) -> None:
        (frame, prepared, _), self._held = self._held, None
        self._finish(frame, prepared)

    def _dropped_frame(self, exc: Exception) -> None:
        self.stage("fusion").error(str(exc))
        self.problem("fuse", f"dropped a frame: {exc}")

    def _arrays_2d(self, frame) -> tuple[np.ndarray, np.ndarray]:
        """The frame's detections as points2d (C, P, J, 2), scores (C, P, J) in rig order (zeros = no data)."""
        return stack_views([frame.items.get(cam) for cam in self.rig.names], self.layout.num_joints)

    def _arrays_lifted(self, frame, shape) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Lifted poses (C, P, J, 3) and scores for the frame's stamps, or (None, None) if none arrived."""
        C, P, J = shape
        lifted, lifted_scores = np.full((C, P, J, 3), np.nan), np.zeros((C, P, J))
        have = False
        for cam, (pts, _) in frame.items.items():
            lift = self.lifted[cam].get(frame.stamps[cam])
            if lift is not None and lift[0].shape[0] == pts.shape[0]:
                c, n = self.cam_index[cam], pts.shape[0]
                lifted[c, :n], lifted_scores[c, :n] = lift
                have = True
        return (lifted, lifted_scores) if have else (None, None)

    def _finish(self, frame, prepared) -> None:
        try:
            lifted, lifted_scores = self._arrays_lifted(frame, prepared.scores.shape)
            result = self.pipeline.finish(prepared, lifted, lifted_scores, orientations=False)
        except ValueError as exc:
            self._dropped_frame(exc)
            return
        self._publish(frame, result)

    def _publish(self, frame, result) -> None:
        header = make_header(frame.stamp, self.world_frame)
        points, confidence, ids, views = result.as_arrays()
        self.pose_pub.publish(human_pose_to_cloud(points, confidence, ids, views, header))
        if self.refiner is not None:
            self._feed_refiner(frame, points, views)
        latency_ms = (time.time() - frame.stamp) * 1e3
        if self.marker_pub is not None:
            self.marker_pub.publish(skeleton_markers(points, confidence, ids, self.layout, header,
                                                     lifetime_s=self.get_parameter("marker_lifetime_s").value))
        if self.tf is not None and len(ids):
            self.pipeline.orient(result)  # after the skeletons went out: orientations only feed TF
            rotations = np.stack([p.joint_rotations for p in result.persons])
            bodies = np.stack([p.body_pose for p in result.persons])
            self.tf.send(skeleton_transforms(points, ids, self.layout, header, rotations, bodies))
        self.fused += 1
        stats = self.stage("fusion")
        stats.tick(latency_ms=latency_ms)
        stats.dropped = self.sync.counters.dropped
        stats.extra.update({"people": str(len(ids)), "cameras_in_frame": str(len(frame.items)),
                            **{f"{k}_ms": f"{v:.2f}" for k, v in result.timing_ms.items()}})


def main(args=None):
    run(FusionNode, args)


if __name__ == "__main__":
    main()
