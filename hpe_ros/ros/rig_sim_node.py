"""rig_sim_node: procedural people seen by virtual calibrated cameras, published as real 2D detections.

Publishes, per camera, `/<cam>/pose_2d` (PointCloud2, schema in DESIGN.md) and `/<cam>/camera_info`,
and the ground truth on `ground_truth_topic` (same schema as /human_pose_3d; `id` = person index).
Motion is a pure function of time since `time_origin`, so two sim processes given the same origin and
seed show the same people (the tests run one camera in its own process and kill it).
"""
from __future__ import annotations

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, PointCloud2

from hpe_ros.calibration import load_rig
from hpe_ros.resources import resolve_path
from hpe_ros.ros.base import ManagedNode, run
from hpe_ros.ros.camera_info import camera_to_camera_info
from hpe_ros.ros.params import STRING_ARRAY, declare, value
from hpe_ros.ros.pointcloud import human_pose_to_cloud, make_header, pose2d_to_cloud
from hpe_ros.ros.qos import POSES, SENSOR
from hpe_ros.ros.tf import TFSender, camera_transforms
from hpe_ros.sim import MotionScript, default_rig, observe


class RigSimNode(ManagedNode):
    def __init__(self, **kwargs):
        super().__init__("rig_sim_node", **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        p("calibration_file", "", "rig calibration (anipose TOML, rig YAML); empty = default ring of num_cameras")
        p("num_cameras", 4, "cameras of the default ring when calibration_file is empty", low=1, high=64)
        p("cameras", [], "names of the cameras this process publishes (empty = all in the rig)", type_=STRING_ARRAY)
        p("num_people", 2, "number of simulated people", low=0, high=16)
        p("seed", 0, "seed of the motion script and the detection noise", low=0, high=2**31 - 1)
        p("rate_hz", 30.0, "camera frame rate", low=0.5, high=240.0)
        p("noise_px", 2.0, "Gaussian pixel noise (sigma) of detected joints", low=0.0, high=50.0)
        p("miss_rate", 0.03, "share of joints the detector misses", low=0.0, high=1.0)
        p("outlier_rate", 0.02, "share of joints detected far off (gross outliers)", low=0.0, high=1.0)
        p("occlusion", True, "hide or corrupt joints occluded by other people")
        p("stamp_jitter_ms", 0.5, "random per-camera offset of header stamps (unsynchronised triggers)",
          low=0.0, high=100.0)
        p("time_origin", 0.0, "epoch seconds at which the motion starts (0 = when the node activates)",
          low=0.0, high=1e10)
        p("publish_ground_truth", True, "publish the true 3D joints")
        p("ground_truth_topic", "/rig_sim/ground_truth", "topic of the true 3D joints")
        p("world_frame", "world", "frame of the ground truth and the rig")
        self.rig = None
        self._timer = None
        self.frames = 0

    # --- lifecycle -----------------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        try:
            calib = g("calibration_file")
            self.rig = load_rig(resolve_path(calib)) if calib else default_rig(g("num_cameras"))
        except (OSError, ValueError) as exc:
            self.get_logger().error(f"cannot load the rig: {exc}")
            return TransitionCallbackReturn.FAILURE
        wanted = list(value(self, "cameras")) or self.rig.names
        unknown = [c for c in wanted if c not in self.rig.names]
        if unknown:
            self.get_logger().error(f"cameras {unknown} are not in the rig {self.rig.names}")
            return TransitionCallbackReturn.FAILURE
        self.cam_idx = np.array([self.rig.index(c) for c in wanted])
        self.script = MotionScript(n_people=g("num_people"), seed=g("seed"))
        self.rng = np.random.default_rng(g("seed") + 1)
        self.world_frame = g("world_frame")
        self.get_logger().info(f"rig of {len(self.rig)} cameras; publishing {wanted}, {g('num_people')} people "
                               f"at {g('rate_hz')} Hz")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        self.pose_pubs, self.info_pubs = [], []
        for c in self.cam_idx:
            name = self.rig[int(c)].name
            self.pose_pubs.append(self.own_publisher(PointCloud2, f"/{name}/pose_2d", POSES))
            self.info_pubs.append(self.own_publisher(CameraInfo, f"/{name}/camera_info", SENSOR))
        self.gt_pub = (self.own_publisher(PointCloud2, g("ground_truth_topic"), POSES)
                       if g("publish_ground_truth") else None)
        origin = g("time_origin")
        self.origin = origin if origin > 0 else self.get_clock().now().nanoseconds * 1e-9
        self.tf = TFSender(self, static=True)
        self.tf.send(camera_transforms(self.rig.subset([int(c) for c in self.cam_idx]), self.world_frame,
                                       self.get_clock().now().to_msg()))
        # Frames sit on a trigger grid origin + k / rate_hz (like a hardware-triggered rig), so sim processes
        # sharing time_origin publish identical stamps. Each tick arms a timer for the next grid point, so a
        # late wake-up never shifts the frames that follow.
        self.period = 1.0 / g("rate_hz")
        self.last_frame = None
        self._next = None
        self._timer = self._render_timer = None
        self._arm()
        self.start_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.destroy_timer(self._timer)
        self._timer = None
        self._drop_render_timer()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.rig = None
        return TransitionCallbackReturn.SUCCESS

    def _arm(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
        now = self.get_clock().now().nanoseconds * 1e-9
        delay = self.period - ((now - self.origin) % self.period)
        self._timer = self.create_timer(max(delay, 1e-4), self._on_timer)

    def _on_timer(self) -> None:
        self._tick()
        self._arm()
        # Render the next frame mid-period, when the consumers of this one are done with the CPU.
        self._drop_render_timer()
        self._render_timer = self.create_timer(0.5 * self.period, self._prerender)

    def _prerender(self) -> None:
        self._drop_render_timer()
        self._next = self._render(self.last_frame + 1)

    def _drop_render_timer(self) -> None:
        if self._render_timer is not None:
            self.destroy_timer(self._render_timer)
            self._render_timer = None

    # --- one frame -----------------------------------------------------------------------------------
    def _tick(self) -> None:
        k = round((self.get_clock().now().nanoseconds * 1e-9 - self.origin) / self.period)
        if self.last_frame is not None and k <= self.last_frame:
            return  # timer fired early twice within one frame slot
        if self.last_frame is not None and k > self.last_frame + 1:
            self.stage("sim", "synthetic rig").drop(k - self.last_frame - 1)  # this process fell behind
        self.last_frame = k
        # Like a camera, deliver at the trigger: frame k was rendered ahead, at the end of the previous tick.
        ready = self._next if self._next is not None and self._next[0] == k else self._render(k)
        _, stamp, poses, infos, truth = ready
        for pub, msg in zip(self.pose_pubs, poses):  # poses first: they are what the graph waits for
            pub.publish(msg)
        published_ms = (self.get_clock().now().nanoseconds * 1e-9 - stamp) * 1e3  # trigger -> 2D out
        for pub, msg in zip(self.info_pubs, infos):
            pub.publish(msg)
        if self.gt_pub is not None:
            self.gt_pub.publish(truth)
        self.frames += 1
        self.stage("sim", "synthetic rig").tick(latency_ms=published_ms)

    def _render(self, k: int) -> tuple:
        """Messages of frame k: (k, stamp, pose_2d clouds, camera_infos, ground-truth cloud)."""
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        stamp = self.origin + k * self.period  # the trigger time of frame k: every camera's acquisition stamp
        joints = self.script.pose(max(0.0, stamp - self.origin))  # (P, J, 3)
        obs = observe(self.rig, joints, self.rng, noise_px=g("noise_px"), miss_rate=g("miss_rate"),
                      outlier_rate=g("outlier_rate"), occlusion=g("occlusion"))
        jitter = self.rng.normal(0.0, g("stamp_jitter_ms") * 1e-3, size=len(self.cam_idx))
        headers = [make_header(stamp + float(j), self.rig[int(c)].frame_id) for j, c in zip(jitter, self.cam_idx)]
        poses, infos = [], []
        for h, c in zip(headers, self.cam_idx):
            rows = obs.person_ids[c] >= 0
            poses.append(pose2d_to_cloud(obs.points2d[c][rows], obs.scores[c][rows], h))
            infos.append(camera_to_camera_info(self.rig[int(c)], h))
        truth = None
        if self.gt_pub is not None:
            P, J = joints.shape[:2]
            views = np.zeros((P, J), dtype=np.int32)
            for c in range(len(self.rig)):  # count the cameras that detected each true joint
                ids = obs.person_ids[c]
                rows = ids >= 0
                np.add.at(views, ids[rows], (obs.scores[c][rows] > 0).astype(np.int32))
            truth = human_pose_to_cloud(joints, np.ones((P, J)), np.arange(P, dtype=np.uint32), views,
                                        make_header(stamp, self.world_frame))
        return k, stamp, poses, infos, truth


def main(args=None):
    run(RigSimNode, args)


if __name__ == "__main__":
    main()
