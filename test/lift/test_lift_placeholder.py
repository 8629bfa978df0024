import numpy as np

from hpe_ros.camera import Camera
from hpe_ros.lift.placeholder import ApparentSizeLifter
from hpe_ros.skeleton import get_layout


def test_placeholder_recovers_depth_of_a_person_with_the_reference_torso():
    L = get_layout("coco17")
    joints = np.zeros((17, 3))
    joints[:, 2] = 5.0  # 5 m in front of the camera, facing it
    joints[L.index("left_shoulder")] = [0.2, -0.25, 5.0]
    joints[L.index("right_shoulder")] = [-0.2, -0.25, 5.0]
    joints[L.index("left_hip")] = [0.15, 0.25, 5.0]
    joints[L.index("right_hip")] = [-0.15, 0.25, 5.0]
    cam = Camera("c", [[500, 0, 320], [0, 500, 240], [0, 0, 1]])
    px = cam.project(joints)[None]
    torso = np.mean([np.linalg.norm(joints[5] - joints[11]), np.linalg.norm(joints[6] - joints[12])])
    lifter = ApparentSizeLifter(torso_m=torso)
    pts, conf = lifter.lift(cam.K, px, np.ones((1, 17)))
    np.testing.assert_allclose(pts[0, :, 2], 5.0, rtol=1e-9)
    np.testing.assert_allclose(pts[0, 5], joints[5], atol=1e-9)
    assert (conf == 1).all()


def test_placeholder_marks_people_without_torso_missing():
    lifter = ApparentSizeLifter()
    px = np.random.default_rng(0).uniform(0, 400, size=(2, 17, 2))
    scores = np.ones((2, 17))
    scores[1, [5, 6, 11, 12]] = 0  # no shoulders/hips visible
    pts, conf = lifter.lift(np.diag([500.0, 500.0, 1.0]), px, scores)
    assert np.isfinite(pts[0]).all() and np.isnan(pts[1]).all() and (conf[1] == 0).all()
    empty, c = lifter.lift(np.eye(3), np.zeros((0, 17, 2)), np.zeros((0, 17)))
    assert empty.shape == (0, 17, 3) and c.shape == (0, 17)
