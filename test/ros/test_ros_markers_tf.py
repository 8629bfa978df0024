"""RViz markers and TF frames for skeletons and cameras."""
import importlib.util
import os

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from scipy.spatial.transform import Rotation
from visualization_msgs.msg import Marker

from hpe_ros.camera import Camera, Rig, look_at
from hpe_ros.ros.markers import delete_all_markers, id_color, skeleton_markers
from hpe_ros.ros.pointcloud import make_header
from hpe_ros.ros.tf import TFSender, camera_transforms, rotation_matrix_to_quaternion, skeleton_transforms
from hpe_ros.skeleton import COCO17

J = COCO17.num_joints
B = len(COCO17.bones)


def standing_people(persons, rng=None):
    """(P, 17, 3) rough standing skeletons, z up, spread along x."""
    rng = rng or np.random.default_rng(0)
    base = rng.uniform(-0.3, 0.3, (J, 3)) + np.array([0, 0, 1.0])
    return base[None] + np.arange(persons)[:, None, None] * np.array([1.5, 0, 0])


# --- markers -----------------------------------------------------------------------------------------

def test_markers_points_lines_and_labels():
    pts = standing_people(2)
    conf = np.ones((2, J))
    header = make_header(3.0, "world")
    arr = skeleton_markers(pts, conf, [4, 9], COCO17, header, lifetime_s=0.5)
    assert len(arr.markers) == 6
    spheres, lines, label = arr.markers[:3]
    assert (spheres.id, lines.id, label.id) == (12, 13, 14)
    assert [m.id for m in arr.markers[3:]] == [27, 28, 29]
    assert spheres.type == Marker.SPHERE_LIST and len(spheres.points) == J
    assert lines.type == Marker.LINE_LIST and len(lines.points) == 2 * B
    assert label.type == Marker.TEXT_VIEW_FACING and label.text == "id 4"
    assert label.pose.position.z > pts[0, :, 2].max()
    assert all(m.header.frame_id == "world" and m.ns == "human_pose" for m in arr.markers)
    assert (lines.lifetime.sec, lines.lifetime.nanosec) == (0, 500_000_000)
    assert spheres.scale.x == pytest.approx(0.05) and lines.scale.x == pytest.approx(0.03)
    assert (spheres.color.r, spheres.color.g, spheres.color.b) == pytest.approx(id_color(4))
    # the first bone's endpoints are the bone's joints
    a, b = COCO17.bones[0]
    assert (lines.points[0].x, lines.points[1].z) == pytest.approx((pts[0, a, 0], pts[0, b, 2]))


def test_markers_skip_missing_and_unsure_joints():
    pts = standing_people(1)
    conf = np.ones((1, J))
    lw = COCO17.index("left_wrist")
    ls = COCO17.index("left_shoulder")
    pts[0, lw] = np.nan                  # missing: drops bone left_elbow-left_wrist
    conf[0, ls] = 0.01                   # below min_confidence: drops 4 bones at the shoulder
    arr = skeleton_markers(pts, conf, [0], COCO17, make_header(0.0, "world"))
    spheres, lines, _ = arr.markers
    bones_without = [bone for bone in COCO17.bones if lw not in bone and ls not in bone]
    assert len(spheres.points) == J - 2
    assert len(lines.points) == 2 * len(bones_without)
    assert all(np.isfinite([p.x, p.y, p.z]).all() for p in spheres.points + lines.points)


def test_person_without_valid_joints_is_deleted():
    pts = standing_people(2)
    pts[1] = np.nan
    arr = skeleton_markers(pts, np.ones((2, J)), [0, 5], COCO17, make_header(0.0, "world"))
    assert [m.action for m in arr.markers[3:]] == [Marker.DELETE] * 3
    assert [m.id for m in arr.markers[3:]] == [15, 16, 17]


def test_marker_ids_and_colours_stable_across_frames():
    header = make_header(0.0, "world")
    a = skeleton_markers(standing_people(2), np.ones((2, J)), [7, 2], COCO17, header)
    b = skeleton_markers(standing_people(2)[::-1] + 0.1, np.ones((2, J)), [2, 7], COCO17, header)
    ids_a = {m.id: (m.color.r, m.color.g, m.color.b) for m in a.markers}
    ids_b = {m.id: (m.color.r, m.color.g, m.color.b) for m in b.markers}
    assert ids_a == ids_b and set(ids_a) == {21, 22, 23, 6, 7, 8}
    assert len({id_color(i) for i in range(12)}) == 12
    big = skeleton_markers(standing_people(1), np.ones((1, J)), [2**32 - 1], COCO17, header)
    assert all(0 <= m.id < 2**31 for m in big.markers)


def test_marker_validation_and_delete_all():
    with pytest.raises(ValueError, match=r"points must be \(P, 17, 3\)"):
        skeleton_markers(np.zeros((1, 5, 3)), np.ones((1, 5)), [0], COCO17, make_header(0.0, "world"))
    arr = delete_all_markers(make_header(1.0, "world"))
    assert len(arr.markers) == 1 and arr.markers[0].action == Marker.DELETEALL
    assert len(skeleton_markers(np.zeros((0, J, 3)), np.zeros((0, J)), [], COCO17, make_header(0, "w")).markers) == 0


# --- quaternions ---------------------------------------------------------------------------------------

def assert_same_rotation(q, R):
    expected = Rotation.from_matrix(R).as_quat()  # x, y, z, w
    dots = np.abs(np.sum(q * expected, axis=-1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    assert np.all(q[..., 3] >= 0)


def test_quaternion_matches_scipy_for_random_rotations():
    R = Rotation.random(500, random_state=1).as_matrix()
    q = rotation_matrix_to_quaternion(R)
    assert q.shape == (500, 4)
    assert_same_rotation(q, R)
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), R, atol=1e-12)


def test_quaternion_180_degree_and_batched_shapes():
    axes = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3], [0, 1, 1e-9]], dtype=float)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    R = Rotation.from_rotvec(np.pi * axes).as_matrix()
    R_near = Rotation.from_rotvec((np.pi - 1e-7) * axes).as_matrix()
    for mats in (R, R_near, np.eye(3)[None]):
        assert_same_rotation(rotation_matrix_to_quaternion(mats), mats)
    q = rotation_matrix_to_quaternion(R.reshape(2, 3, 3, 3))
    assert q.shape == (2, 3, 4)


def test_quaternion_of_nan_is_identity():
    R = np.stack([np.full((3, 3), np.nan), np.eye(3)])
    np.testing.assert_array_equal(rotation_matrix_to_quaternion(R), [[0, 0, 0, 1], [0, 0, 0, 1]])
    with pytest.raises(ValueError):
        rotation_matrix_to_quaternion(np.eye(4))


# --- TF --------------------------------------------------------------------------------------------------

def test_skeleton_transforms_default_frames():
    pts = standing_people(2)
    pts[1, COCO17.index("nose")] = np.nan
    tfs = skeleton_transforms(pts, [3, 8], COCO17, make_header(5.0, "world"))
    names = [t.child_frame_id for t in tfs]
    assert len(tfs) == 2 * (1 + J) - 1
    assert names[0] == "body_3" and names[1] == "nose_3" and "nose_8" not in names and "l_ankle_8" in names
    assert all(t.header.stamp.sec == 5 for t in tfs)
    # REP-155: bodies under the world, each joint (REP-155 name) under its own body.
    assert [t.header.frame_id for t in tfs if t.child_frame_id.startswith("body_")] == ["world", "world"]
    assert all(t.header.frame_id == f"body_{t.child_frame_id.rsplit('_', 1)[1]}" for t in tfs
               if not t.child_frame_id.startswith("body_"))
    hip = 0.5 * (pts[0, COCO17.index("left_hip")] + pts[0, COCO17.index("right_hip")])
    tr = tfs[0].transform.translation
    np.testing.assert_allclose([tr.x, tr.y, tr.z], hip)
    assert tfs[0].transform.rotation.w == 1.0
    wrist = tfs[names.index("l_wrist_8")].transform.translation  # body frame: at the hips, world-aligned
    hip8 = 0.5 * (pts[1, COCO17.index("left_hip")] + pts[1, COCO17.index("right_hip")])
    np.testing.assert_allclose([wrist.x, wrist.y, wrist.z], pts[1, COCO17.index("left_wrist")] - hip8)


def test_skeleton_transforms_with_rotations_and_body_poses():
    pts = standing_people(1)
    rots = Rotation.random(J, random_state=3).as_matrix()[None]
    body = np.eye(4)[None].copy()
    body[0, :3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    body[0, :3, 3] = [1, 2, 0.9]
    tfs = skeleton_transforms(pts, [1], COCO17, make_header(0.0, "world"), joint_rotations=rots, body_poses=body)
    b = tfs[0].transform
    assert tfs[0].child_frame_id == "body_1"
    np.testing.assert_allclose([b.translation.x, b.translation.y, b.translation.z], [1, 2, 0.9])
    np.testing.assert_allclose([b.rotation.z, b.rotation.w], [np.sqrt(0.5), np.sqrt(0.5)])
    r, p = tfs[1 + 5].transform.rotation, tfs[1 + 5].transform.translation  # joint 5 in body_1
    assert tfs[1 + 5].header.frame_id == "body_1"
    assert_same_rotation(np.array([r.x, r.y, r.z, r.w]), body[0, :3, :3].T @ rots[0, 5])
    np.testing.assert_allclose(body[0, :3, :3] @ [p.x, p.y, p.z] + body[0, :3, 3], pts[0, 5], atol=1e-12)
    body[0, :3, 3] = np.nan  # a body pose without a position: nothing to hang the joints from
    assert skeleton_transforms(pts, [1], COCO17, make_header(0.0, "world"), body_poses=body) == []


def test_camera_transforms_place_camera_at_centre():
    K = np.array([[500, 0, 320], [0, 500, 240], [0, 0, 1.0]])
    R0, t0 = look_at([3, 0, 2], [0, 0, 1])
    R1, t1 = look_at([0, -4, 1.5], [0, 0, 1])
    rig = Rig([Camera("cam0", K, R=R0, t=t0), Camera("cam1", K, R=R1, t=t1, frame_id="cam1_link_optical")])
    tfs = camera_transforms(rig, "world", Time(sec=10, nanosec=1))
    assert [t.child_frame_id for t in tfs] == ["cam0_optical_frame", "cam1_link_optical"]
    for t, cam in zip(tfs, rig):
        assert t.header.frame_id == "world" and (t.header.stamp.sec, t.header.stamp.nanosec) == (10, 1)
        tr, q = t.transform.translation, t.transform.rotation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], cam.center, atol=1e-12)
        world_from_cam = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
        # the optical axis (camera z) points from the centre at the target (0, 0, 1)
        to_target = np.array([0, 0, 1.0]) - cam.center
        np.testing.assert_allclose(world_from_cam[:, 2], to_target / np.linalg.norm(to_target), atol=1e-9)
        # mapping a camera-frame point back to the world agrees with Camera.camera_to_world
        p_cam = np.array([0.1, -0.2, 2.0])
        np.testing.assert_allclose(world_from_cam @ p_cam + cam.center, cam.camera_to_world(p_cam), atol=1e-9)
    assert camera_transforms(Rig([]), "world", 0.0) == []


# --- TFSender with a real node --------------------------------------------------------------------------

@pytest.fixture
def ros_node():
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("test_tf_sender", context=context)
    try:
        yield node
    finally:
        node.destroy_node()
        context.try_shutdown()


@pytest.mark.ros
@pytest.mark.parametrize("static", [False, True])
def test_tf_sender_keeps_last_sent(ros_node, static, capfd):
    sender = TFSender(ros_node, static=static)
    can_send = any(importlib.util.find_spec(m) is not None for m in ("tf2_ros", "tf2_msgs"))
    assert sender.available is can_send
    assert sender.last_sent == []
    tfs = skeleton_transforms(standing_people(1), [0], COCO17, make_header(1.0, "world"))
    sender.send(tfs)
    assert len(sender.last_sent) == J + 1 and all(isinstance(t, TransformStamped) for t in sender.last_sent)
    sender.send([])
    assert sender.last_sent == []
    if not can_send:  # one info line through the node's logger, however often send() runs
        captured = capfd.readouterr()
        assert (captured.out + captured.err).count(
            "TF frames are built but not sent: neither tf2_ros nor tf2_msgs is installed") == 1
