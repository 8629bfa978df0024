"""rig_sim_node: procedural people seen by virtual calibrated cameras, published as real 2D detections or
as camera images.

Publishes, per camera (`output`), `<cam>/pose_2d` (PointCloud2, schema in README "Interfaces") and/or the
camera's coded-dot image (`<cam>/image_raw` Image or `<cam>/image_raw/compressed` JPEG, for camera_pose_node
with the coded-dot network; hpe_ros.sim.rig_images), and `<cam>/camera_info` (relative: under the node's
namespace), all stamped with the frame's trigger time; the ground truth on `ground_truth_topic` (same schema
as human_pose_3d; `id` = person index) and the camera frames on /tf_static (`publish_camera_frames`, named
`<frame_prefix><frame_id>`).
Wiring only: the simulation (trigger grid, motion, detections) is `hpe_ros.sim.stream.SimStream`, whose
SimConfig declares its parameters (SimImageConfig those of the images). Motion is a pure function of time
since `time_origin`, so two sim processes given the same origin and seed show the same people (the tests run
one camera in its own process and kill it). Frame k+1 is rendered (images drawn and encoded too) in the
middle of frame k's period, so drawing costs CPU but not latency; /diagnostics shows its cost (draw_ms,
encode_ms).
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from hpe_ros.checks import config_from_mapping
from hpe_ros.io.calibration import load_rig
from hpe_ros.resources import resolve_path
from hpe_ros.ros.base import ManagedNode, run
from hpe_ros.ros.camera_info import camera_to_camera_info
from hpe_ros.ros.images import numpy_to_compressed, numpy_to_image
from hpe_ros.ros.params import STRING_ARRAY, config_values, declare, declare_config, read_only_except, value
from hpe_ros.ros.pointcloud import HumanPoses, human_pose_to_cloud, make_header, pose2d_to_cloud
from hpe_ros.ros.qos import POSES, SENSOR
from hpe_ros.ros.tf import TFSender, camera_transforms, declare_frame_parameters, publishes_camera_frames
from hpe_ros.sim import default_rig
from hpe_ros.sim.rig_images import SimImageConfig, render_rig_images
from hpe_ros.sim.stream import SimConfig, SimStream


class RigSimNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__("rig_sim_node", **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)
        p("calibration_file", "", "rig calibration (anipose TOML, rig YAML); empty = default ring of num_cameras")
        p("num_cameras", 4, "cameras of the default ring when calibration_file is empty", low=1, high=64)
        p("cameras", [], "names of the cameras this process publishes (empty = all in the rig)", type_=STRING_ARRAY)
        declare_config(self, SimConfig)
        declare_config(self, SimImageConfig)
        p("time_origin", 0.0, "epoch seconds at which the motion starts (0 = when the node activates)",
          low=0.0, high=1e10)
        p("publish_ground_truth", True, "publish the true 3D joints")
        p("ground_truth_topic", "rig_sim/ground_truth", "topic of the true 3D joints")
        p("world_frame", "world", "frame of the ground truth and the rig", read_only=True)
        declare_frame_parameters(self, read_camera_tf=False)
        read_only_except(self)  # all are read when the node configures or activates
        self.rig = None
        self._frame_timers: dict[str, object] = {}  # the frame clock's timers by role
        self.frames = 0

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # --- lifecycle -----------------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value
        try:
            calib = g("calibration_file")
            self.rig = load_rig(resolve_path(calib)) if calib else default_rig(g("num_cameras"))
            config = config_from_mapping(SimConfig, config_values(self, SimConfig))
            self.image_config = config_from_mapping(SimImageConfig, config_values(self, SimImageConfig))
        except (OSError, ValueError) as exc:
            self.get_logger().error(f"cannot load the rig or bad simulation parameters: {exc}")
            return TransitionCallbackReturn.FAILURE
        wanted = list(value(self, "cameras")) or self.rig.names
        unknown = [c for c in wanted if c not in self.rig.names]
        if unknown:
            self.get_logger().error(f"cameras {unknown} are not in the rig {self.rig.names}")
            return TransitionCallbackReturn.FAILURE
        self.stream = SimStream(self.rig, config, [self.rig.index(c) for c in wanted])
        self.world_frame, self.frame_prefix = g("world_frame"), g("frame_prefix")
        what = {"pose_2d": "2D detections", "images": "images",
                "both": "2D detections and images"}[self.image_config.output]
        self.get_logger().info(f"rig of {len(self.rig)} cameras; publishing {what} of {wanted}, "
                               f"{config.num_people} people at {config.rate_hz} Hz")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value
        self.pose_pubs, self.image_pubs, self.info_pubs = [], [], []
        raw = self.image_config.image_transport == "raw"
        for c in self.stream.cameras:
            name = self.rig[int(c)].name
            if self.image_config.poses:
                self.pose_pubs.append(self.own_publisher(PointCloud2, f"{name}/pose_2d", POSES))
            if self.image_config.images:
                self.image_pubs.append(self.own_publisher(Image, f"{name}/image_raw", SENSOR) if raw else
                                       self.own_publisher(CompressedImage, f"{name}/image_raw/compressed", SENSOR))
            self.info_pubs.append(self.own_publisher(CameraInfo, f"{name}/camera_info", SENSOR))
        self.render_s = {"draw": 0.0, "encode": 0.0}   # s spent drawing and encoding images, over images_made frames
        self.images_made = 0
        self.gt_pub = (self.own_publisher(PointCloud2, g("ground_truth_topic"), POSES)
                       if g("publish_ground_truth") else None)
        origin = g("time_origin")
        self.stream.origin = origin if origin > 0 else self._now()
        self.tf = TFSender(self, static=True)
        if publishes_camera_frames(self):
            self.tf.send(camera_transforms(self.rig.subset([int(c) for c in self.stream.cameras]), self.world_frame,
                                           self.get_clock().now().to_msg(), g("frame_prefix")))
        self.last_frame = None
        self._next = None
        self._arm()
        self.start_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._drop_timers()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.rig = None
        return TransitionCallbackReturn.SUCCESS

    # --- frame clock ---------------------------------------------------------------------------------
    # Two periodic timers for the whole run, made once: "tick" at every trigger, "render" mid-period (the
    # next frame is rendered when the consumers of this one are done with the CPU). A periodic rcl timer
    # keeps its grid (each call is due a period after the previous due time, not after the wake-up), so
    # a late wake-up never shifts the frames that follow. Not a timer per frame: rclpy keeps ~200 bytes
    # of every timer ever made, 0.7 MB a minute at 30 Hz.
    def _arm(self) -> None:
        """Start the frame clock: one-shot timers to the next trigger and to the middle of its period."""
        self._drop_timers()
        wait = self.stream.until_next_frame(self._now())
        self._frame_timers["start_tick"] = self.create_timer(max(wait, 1e-4), self._start_ticks)
        self._frame_timers["start_render"] = self.create_timer(max(wait + 0.5 * self.stream.period, 1e-4),
                                                         self._start_renders)

    def _start_ticks(self) -> None:
        self._drop_timers("start_tick")
        self._frame_timers["tick"] = self.create_timer(self.stream.period, self._tick)
        self._tick()

    def _start_renders(self) -> None:
        self._drop_timers("start_render")
        self._frame_timers["render"] = self.create_timer(self.stream.period, self._prerender)
        self._prerender()

    def _prerender(self) -> None:
        if self.last_frame is not None:
            self._next = self._render(self.last_frame + 1)

    def _drop_timers(self, *names: str) -> None:
        for name in names or list(self._frame_timers):
            timer = self._frame_timers.pop(name, None)
            if timer is not None:
                self.destroy_timer(timer)

    # --- one frame -----------------------------------------------------------------------------------
    def _tick(self) -> None:
        k = self.stream.frame_at(self._now())
        if self.last_frame is not None and k <= self.last_frame:
            return  # timer fired early twice within one frame slot
        if self.last_frame is not None and k > self.last_frame + 1:
            self.stage("sim", "synthetic rig").drop(k - self.last_frame - 1)  # this process fell behind
        self.last_frame = k
        # Like a camera, deliver at the trigger: frame k was rendered ahead, at the end of the previous tick.
        ready = self._next if self._next is not None and self._next[0] == k else self._render(k)
        _, stamp, poses, images, infos, truth = ready
        for pub, msg in zip(self.image_pubs + self.pose_pubs, images + poses):  # first: what the graph waits for
            pub.publish(msg)
        published_ms = (self._now() - stamp) * 1e3  # trigger -> 2D (or images) out
        for pub, msg in zip(self.info_pubs, infos):
            pub.publish(msg)
        if self.gt_pub is not None:
            self.gt_pub.publish(truth)
        self.frames += 1
        self.stage("sim", "synthetic rig").tick(latency_ms=published_ms)

    def _render(self, k: int) -> tuple:
        """Messages of frame k: (k, stamp, pose_2d clouds, images, camera_infos, ground-truth cloud or None);
        clouds or images are empty lists when `output` leaves them out."""
        frame = self.stream.render(k)
        headers = [make_header(s, self.frame_prefix + self.rig[int(c)].frame_id)
                   for s, c in zip(frame.stamps, self.stream.cameras)]
        poses = ([pose2d_to_cloud(p, s, h) for p, s, h in zip(frame.points2d, frame.scores, headers)]
                 if self.image_config.poses else [])
        images = self._image_messages(frame.truth, headers) if self.image_config.images else []
        infos = [camera_to_camera_info(self.rig[int(c)], h) for c, h in zip(self.stream.cameras, headers)]
        truth = None
        if self.gt_pub is not None:
            P, J = frame.truth.shape[:2]
            truth = human_pose_to_cloud(HumanPoses(frame.truth, np.ones((P, J)), np.arange(P, dtype=np.uint32),
                                                   frame.views, frame.stamp, self.world_frame))
        return k, frame.stamp, poses, images, infos, truth

    def _image_messages(self, joints: np.ndarray, headers: list) -> list:
        """Every published camera's image of the people `joints` (P, J, 3) world m, as messages; the time
        spent drawing and encoding goes to the sim stage's diagnostics (draw_ms, encode_ms per frame)."""
        t0 = time.perf_counter()
        pixels = render_rig_images(self.rig, self.stream.cameras, joints, self.image_config)
        t1 = time.perf_counter()
        if self.image_config.image_transport == "raw":
            msgs = [numpy_to_image(p, self.image_config.image_encoding, h) for p, h in zip(pixels, headers)]
        else:
            quality = self.image_config.jpeg_quality
            msgs = [numpy_to_compressed(p, "jpeg", quality, h) for p, h in zip(pixels, headers)]
        self.render_s["draw"] += t1 - t0
        self.render_s["encode"] += time.perf_counter() - t1
        self.images_made += 1
        self.stage("sim", "synthetic rig").extra.update(
            {f"{step}_ms": f"{total / self.images_made * 1e3:.2f}" for step, total in self.render_s.items()})
        return msgs


def main(args=None):
    run(RigSimNode, args)


if __name__ == "__main__":
    main()
