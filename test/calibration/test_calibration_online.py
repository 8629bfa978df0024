"""Online extrinsics refinement: the core refiner on a simulated rig, and the fusion node applying it live."""
from __future__ import annotations

import time

import numpy as np
import pytest

from hpe_ros.calibration.compare import rotation_angle_deg
from hpe_ros.calibration.online import OnlineRefiner
from hpe_ros.camera import Rig, rodrigues
from hpe_ros.fusion.triangulation import triangulate
from hpe_ros.io.calibration import load_rig, save_rig
from hpe_ros.sim import MotionScript, default_rig, observe


def perturbed(rig: Rig, cam: int = 2, deg: float = 1.5, metres: float = 0.05) -> Rig:
    """`rig` with camera `cam` rotated by `deg` (about a tilted axis) and its centre moved by `metres`."""
    axis = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    shift = np.array([1.0, -1.0, 0.5]) / np.linalg.norm([1.0, -1.0, 0.5])
    cams = list(rig)
    c = cams[cam]
    R = rodrigues(np.deg2rad(deg) * axis) @ c.R
    cams[cam] = c.copy(R=R, t=-R @ (c.center + metres * shift))
    return Rig(cams)


def camera_error(rig: Rig, truth: Rig, cam: int) -> tuple[float, float]:
    """(rotation deg, centre m) of camera `cam` against the truth."""
    return (float(rotation_angle_deg(rig[cam].R, truth[cam].R)),
            float(np.linalg.norm(rig[cam].center - truth[cam].center)))


def feed(refiner: OnlineRefiner, start: Rig, truth: Rig, frames: int = 90, seed: int = 3) -> None:
    """Sim 2D from the true rig; the "fused" people are their triangulation with the refiner's rig."""
    rng = np.random.default_rng(seed)
    script = MotionScript(2, seed=seed)
    for k in range(frames):
        obs = observe(truth, script.pose(0.1 * k), rng, noise_px=1.5, outlier_rate=0.02)
        pts, sc = obs.by_person(2)
        C, P, J, _ = pts.shape
        tri = triangulate(start, pts.reshape(C, P * J, 2), sc.reshape(C, P * J))
        fused = tri.points.reshape(P, J, 3)[(tri.views.reshape(P, J) >= 3).mean(1) > 0.5]
        refiner.add(0.1 * k, obs.points2d, obs.scores, fused)  # rows in the sim's shuffled order


def test_refiner_recovers_a_moved_camera_and_keeps_a_good_rig():
    truth = default_rig(4)
    start = perturbed(truth)
    before = [c.R.copy() for c in start], [c.t.copy() for c in start]
    refiner = OnlineRefiner(start)
    assert not refiner.ready()
    feed(refiner, start, truth)
    assert refiner.ready()
    result = refiner.refine()
    assert result.accepted, result.reason
    rot, centre = camera_error(result.rig, truth, 2)
    assert rot < 0.3 and centre < 0.02, (rot, centre)
    assert result.new_error_px < 0.9 * result.old_error_px
    assert result.rotation_change_deg[0] == 0.0 and result.translation_change_m[0] < 1e-9  # the gauge
    assert result.rotation_change_deg.shape == (4,) and result.rotation_change_deg[2] > 1.0
    # The input rig is untouched.
    assert all(np.array_equal(c.R, R) and np.array_equal(c.t, t) for c, R, t in zip(start, *before))

    good = OnlineRefiner(truth)
    feed(good, truth, truth)
    kept = good.refine()
    assert not kept.accepted and kept.reason.startswith("no clear improvement"), kept.reason
    assert kept.rig is truth


def test_refiner_rejects_changes_beyond_the_limits_and_waits_for_frames():
    truth = default_rig(4)
    start = perturbed(truth)
    refiner = OnlineRefiner(start, min_frames=60, max_rotation_deg=1.0)
    assert not refiner.refine().accepted  # empty buffer
    feed(refiner, start, truth, frames=60)
    result = refiner.refine()
    assert not result.accepted and result.reason.startswith("change too large"), result.reason
    assert result.rig is start


# --- the live node -----------------------------------------------------------------------------------

@pytest.mark.ros
@pytest.mark.timeout(60)
def test_fusion_node_refines_online_and_saves_the_calibration(ros_context, tmp_path):
    pytest.importorskip("std_srvs")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2
    from std_srvs.srv import Trigger

    from hpe_ros.ros.fusion_node import FusionNode
    from hpe_ros.ros.pointcloud import make_header, pose2d_to_cloud
    from hpe_ros.ros.qos import POSES

    truth = default_rig(4)
    bad_file, out_file = tmp_path / "perturbed.toml", tmp_path / "refined.toml"
    save_rig(perturbed(truth), bad_file)
    start = load_rig(bad_file)
    fusion = FusionNode(context=ros_context, parameter_overrides=[
        Parameter("calibration_file", value=str(bad_file)), Parameter("refine_extrinsics", value=True),
        Parameter("refine_period_s", value=0.5), Parameter("calibration_output_file", value=str(out_file)),
        Parameter("use_lifter", value=False), Parameter("publish_markers", value=False),
        Parameter("publish_tf", value=False), Parameter("fusion.tracker.birth_hits", value=2)])
    assert fusion.bring_up()
    tester = Node("calib_tester", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(fusion)
    executor.add_node(tester)
    try:
        pubs = {c: tester.create_publisher(PointCloud2, f"/{c}/pose_2d", POSES) for c in truth.names}
        client = tester.create_client(Trigger, "/fusion_node/save_calibration")
        rng = np.random.default_rng(0)
        script = MotionScript(2, seed=3)
        t0 = time.time()
        deadline = time.monotonic() + 40.0
        while fusion.live.refinements == 0 and time.monotonic() < deadline:
            stamp = time.time()
            obs = observe(truth, script.pose(stamp - t0), rng, noise_px=1.0, outlier_rate=0.02)
            for c, name in enumerate(truth.names):
                rows = obs.person_ids[c] >= 0
                pubs[name].publish(pose2d_to_cloud(obs.points2d[c][rows], obs.scores[c][rows],
                                                   make_header(stamp, truth[c].frame_id)))
            end = time.monotonic() + 1 / 20
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.005)
        assert fusion.live.refinements >= 1, fusion.stats.get("calibration") and fusion.stats["calibration"].extra
        extra = fusion.stats["calibration"].extra
        assert float(extra["new_error_px"]) < float(extra["old_error_px"])
        assert fusion.live.refiner.rig is fusion.rig  # pipeline and refiner both took the refined rig

        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(Trigger.Request())
        end = time.monotonic() + 10.0
        while not future.done() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)
        response = future.result()
        assert response is not None and response.success, response
        assert response.message == str(out_file)
        saved = load_rig(out_file)
        assert saved.names == truth.names
        assert camera_error(saved, truth, 2)[0] < camera_error(start, truth, 2)[0]
        assert camera_error(saved, truth, 2)[1] < camera_error(start, truth, 2)[1]
        np.testing.assert_allclose(saved[0].R, truth[0].R, atol=1e-9)  # camera 0 is the gauge

        # A file that cannot be written: failure with the reason, the node keeps running.
        fusion.set_parameters([Parameter("calibration_output_file", value=str(tmp_path / "rig.txt"))])
        future = client.call_async(Trigger.Request())
        end = time.monotonic() + 10.0
        while not future.done() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)
        assert future.result() is not None and not future.result().success
        assert "rig.txt" in future.result().message and not (tmp_path / "rig.txt").exists()
    finally:
        executor.shutdown()
        tester.destroy_node()
        fusion.destroy_node()
