import cv2
import numpy as np
import pytest

from hpe_ros.camera import Camera, Rig, look_at, rodrigues, rotation_to_rvec


def make_camera(name="cam0", dist=(0.1, -0.05, 0.001, 0.002, 0.01), eye=(4, 0.5, 2)):
    R, t = look_at(eye, (0, 0, 1))
    return Camera(name, [[600, 0, 320], [0, 610, 240], [0, 0, 1]], dist, R, t, (640, 480))


def test_projection_matches_opencv():
    cam = make_camera()
    X = np.random.default_rng(0).normal(size=(200, 3)) * 0.5 + [0, 0, 1]
    rvec, _ = cv2.Rodrigues(cam.R)
    ref, _ = cv2.projectPoints(X, rvec, cam.t, cam.K, cam.dist[:5])
    np.testing.assert_allclose(cam.project(X), ref[:, 0], atol=1e-9)


def test_undistort_inverts_distortion_and_matches_opencv():
    cam = make_camera()
    X = np.random.default_rng(1).normal(size=(100, 3)) * 0.5 + [0, 0, 1]
    px = cam.project(X)
    xy = cam.undistort_points(px)
    pc = cam.world_to_camera(X)
    np.testing.assert_allclose(xy, pc[:, :2] / pc[:, 2:], atol=1e-9)
    ref = cv2.undistortPoints(px[:, None], cam.K, cam.dist[:5])[:, 0]
    np.testing.assert_allclose(xy, ref, atol=1e-6)


def test_look_at_points_optical_axis_at_target_and_keeps_image_upright():
    R, t = look_at((3, 3, 2), (0, 0, 1))
    cam = Camera("c", np.eye(3), None, R, t)
    np.testing.assert_allclose(cam.center, [3, 3, 2])
    z = R[2]
    np.testing.assert_allclose(z, -np.array([3, 3, 1]) / np.sqrt(19))
    # World up appears upward in the image (negative image y).
    assert (cam.world_to_camera([0, 0, 2]) - cam.world_to_camera([0, 0, 1]))[1] < 0
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_rays_pass_through_points_and_behind_camera_is_nan():
    cam = make_camera()
    X = np.random.default_rng(2).normal(size=(50, 3)) * 0.3 + [0, 0, 1]
    origin, d = cam.rays(cam.project(X))
    v = X - origin
    np.testing.assert_allclose(np.cross(d, v / np.linalg.norm(v, axis=1, keepdims=True)), 0, atol=1e-9)
    assert np.isnan(cam.project(np.array([8.0, 1.0, 2.0]))).all()


def test_rig_batched_equals_per_camera():
    rig = Rig([make_camera("a"), make_camera("b", eye=(-4, 1, 2.5)), make_camera("c", dist=None, eye=(0, 4, 3))])
    X = np.random.default_rng(3).normal(size=(5, 7, 3)) * 0.4 + [0, 0, 1]
    px = rig.project(X)
    assert px.shape == (3, 5, 7, 2)
    for i, cam in enumerate(rig):
        np.testing.assert_allclose(px[i], cam.project(X))
    origins, dirs = rig.rays(px)
    np.testing.assert_allclose(origins, np.stack([c.center for c in rig]))
    for i, cam in enumerate(rig):
        np.testing.assert_allclose(dirs[i], cam.rays(px[i])[1], atol=1e-12)
    assert rig["b"].name == "b" and rig.index("c") == 2
    with pytest.raises(KeyError, match="no camera named"):
        rig["zz"]
    with pytest.raises(ValueError, match="unique"):
        Rig([make_camera("a"), make_camera("a")])


def test_rodrigues_round_trip():
    rv = np.random.default_rng(4).normal(size=(20, 3))
    R = rodrigues(rv)
    for r, m in zip(rv, R):
        ref, _ = cv2.Rodrigues(r)
        np.testing.assert_allclose(m, ref, atol=1e-12)
        np.testing.assert_allclose(rodrigues(rotation_to_rvec(m)), m, atol=1e-12)


def test_undistort_pixels_gives_the_ideal_pinhole_pixels():
    R, t = look_at([3.0, 0.5, 1.5], [0.0, 0.0, 1.0])
    K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])
    distorted = Camera("c", K, [-0.2, 0.05, 0.001, -0.001, 0.0], R, t, (640, 480))
    ideal = Camera("c", K, None, R, t, (640, 480))
    pts = np.random.default_rng(0).uniform([-0.5, -0.5, 0.2], [0.5, 0.5, 1.8], (50, 3))
    np.testing.assert_allclose(distorted.undistort_pixels(distorted.project(pts)), ideal.project(pts), atol=1e-6)
    px = ideal.project(pts)
    assert ideal.undistort_pixels(px) is px               # nothing to do without distortion
