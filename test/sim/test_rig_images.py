"""The simulator's camera images and the coded-dot person detector: dots where the joints project, boxes around
each person, and the two through the real top-down backend give back the projected joints."""
from __future__ import annotations

import numpy as np
import pytest

from hpe_ros.sim import default_rig
from hpe_ros.sim.keypoint_images import dot_codes
from hpe_ros.sim.rig_images import SimImageConfig, render_rig_images
from hpe_ros.sim.stream import SimConfig, SimStream


@pytest.fixture(scope="module")
def scene():
    rig = default_rig(4)
    frame = SimStream(rig, SimConfig(num_people=2, seed=1)).render(45)
    return rig, frame.truth


def test_images_show_each_joint_code_at_its_projection(scene):
    rig, truth = scene
    images = render_rig_images(rig, [0, 2], truth, SimImageConfig(output="images", image_encoding="mono8"))
    assert [im.shape for im in images] == [(480, 640), (480, 640)] and images[0].dtype == np.uint8
    codes = dot_codes(17)
    for image, c in zip(images, [0, 2]):
        pixels = rig[c].project(truth)                                       # (P, J, 2)
        u, v = np.round(pixels).astype(int).reshape(-1, 2).T
        inside = (u >= 0) & (u < 640) & (v >= 0) & (v < 480)
        found = image[v[inside], u[inside]]
        expected = np.tile(codes, len(truth))[inside]
        assert np.mean(found == expected) > 0.8    # the rest hidden by a nearer joint's dot


def test_bgr_images_are_the_mono_dots_in_three_channels(scene):
    rig, truth = scene
    mono, = render_rig_images(rig, [1], truth, SimImageConfig(image_encoding="mono8"))
    bgr, = render_rig_images(rig, [1], truth, SimImageConfig(image_encoding="bgr8"))
    assert bgr.shape == (480, 640, 3) and all(np.array_equal(bgr[..., k], mono) for k in range(3))


def test_joints_behind_a_camera_are_not_drawn(scene):
    rig, truth = scene
    behind = rig[0].camera_to_world(np.array([[[0.1, 0.0, -2.0]] * 17]))    # (1, 17, 3): 2 m behind camera 0
    image, = render_rig_images(rig, [0], behind, SimImageConfig())
    assert not image.any()


@pytest.mark.parametrize("name, value", [("output", "video"), ("image_transport", "theora"),
                                         ("image_encoding", "rgb16")])
def test_bad_image_settings_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=name):
        SimImageConfig(**{name: value})


def test_detector_and_pose_net_find_the_simulated_people(scene, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
    pytest.importorskip("torch", reason="the networks are built with torch: pip install '.[torch]'")
    from hpe_ros.detect2d import create_backend
    from hpe_ros.sim.dot_detector import export_dot_detector
    from hpe_ros.sim.keypoint_net import export_keypoint_net

    rig, truth = scene
    backend = create_backend("onnxruntime", providers="cpu", threads=1,
                             model=str(export_keypoint_net(tmp_path / "pose", input_size=(192, 256))),
                             detector=str(export_dot_detector(tmp_path / "detector", input_size=(320, 240))))
    images = render_rig_images(rig, range(4), truth, SimImageConfig(image_encoding="bgr8"))
    results = backend.infer(images, rig.names)
    separated = 0
    for c, (points, _scores) in enumerate(results):
        projected = rig[c].project(truth)                                    # (P, J, 2)
        if len(points) != len(truth):
            continue   # people overlapping left to right share one box in this view
        separated += 1
        for person in points:
            err = np.linalg.norm(person[None] - projected, axis=-1)          # (P, J) against each true person
            assert np.median(err[np.argmin(np.nanmedian(err, axis=1))]) < 1.5
    assert separated >= 2


def test_detector_boxes_each_run_of_bright_columns(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
    pytest.importorskip("torch", reason="the detector is built with torch: pip install '.[torch]'")
    from hpe_ros.sim.dot_detector import export_dot_detector

    manifest = export_dot_detector(tmp_path / "detector", input_size=(320, 240), max_people=4)
    session = ort.InferenceSession(str(manifest.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    image = np.zeros((2, 3, 240, 320), np.float32)                # (B, 3, h, w) BGR 0-255
    image[0, :, 50:120, 30:60] = 100.0                             # two people far apart
    image[0, :, 80:200, 200:230] = 30.0
    image[0, :, 100:104, 236:240] = 60.0                           # a hand 6 px off the second: same person
    dets, labels = session.run(None, {"input": image})
    assert dets.shape == (2, 4, 5) and labels.shape == (2, 4) and not labels.any()
    found = dets[0][dets[0][:, 4] > 0.3]
    np.testing.assert_allclose(found[np.argsort(found[:, 0]), :4], [[30, 50, 59, 119], [200, 80, 239, 199]])
    assert not (dets[1][:, 4] > 0).any()                          # an empty image has no people


@pytest.mark.parametrize("split_codes, boxes", [(2, 2), (0, 1)])
def test_two_people_overlapping_left_to_right_are_two_detections(scene, tmp_path, split_codes, boxes):
    """Every joint has its own grey code, so a run of columns with two dots of the same codes holds two
    people: the detector splits it, and each crop gives back its own person (split_codes=0: one merged box)."""
    pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
    pytest.importorskip("torch", reason="the networks are built with torch: pip install '.[torch]'")
    from hpe_ros.detect2d import create_backend
    from hpe_ros.sim.dot_detector import export_dot_detector
    from hpe_ros.sim.keypoint_net import export_keypoint_net

    rig, truth = scene
    cam = rig[0]
    people = np.stack([truth[0], truth[0] + cam.R.T @ [0.35, 0.0, 0.6]])   # 0.35 m to the right, 0.6 m behind
    projected = cam.project(people)                                           # (2, J, 2)
    assert projected[1, :, 0].min() < projected[0, :, 0].max() - 30         # they overlap left to right
    detector = export_dot_detector(tmp_path / "detector", input_size=(320, 240), split_codes=split_codes)
    backend = create_backend("onnxruntime", providers="cpu", threads=1, detector=str(detector),
                             model=str(export_keypoint_net(tmp_path / "pose", input_size=(192, 256))))
    image, = render_rig_images(rig, [0], people, SimImageConfig(image_encoding="bgr8"))
    (points, _scores), = backend.infer([image], ["cam0"])
    assert len(points) == boxes
    if boxes == 2:
        err = np.linalg.norm(points[:, None] - projected[None], axis=-1)      # (detection, person, J) px
        own = np.argmin(np.median(err, axis=-1), axis=1)
        assert sorted(own) == [0, 1]
        for d, p in enumerate(own):
            assert np.median(err[d, p]) < 1.0 and np.mean(err[d, p] < 3.0) >= 0.8
