"""The top-down 2D pipeline on real ONNX networks: planted keypoints come back at their pixels.

Images hold coded dots (hpe_ros.sim.keypoint_images) at known coordinates; the coded-dot network
(heatmap and SimCC heads) and a bright-pixel box detector (test/helpers/detect2d_nets.py) run through
onnxruntime (and torch), and the decoded keypoints must land on the planted coordinates.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
torch = pytest.importorskip("torch", reason="the test networks are built with torch: pip install '.[torch]'")

from hpe_ros.detect2d import create_backend  # noqa: E402
from hpe_ros.sim.keypoint_net import export_keypoint_net  # noqa: E402

from helpers.detect2d_nets import dot_image, export_half_box_detector, person_pixels  # noqa: E402
from helpers.recording_session import RecordingSession  # noqa: E402


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("nets")
    return {
        "heatmap": export_keypoint_net(d / "dots-heatmap", output="heatmap", input_size=(192, 256)),
        "simcc": export_keypoint_net(d / "dots-simcc", output="simcc", input_size=(192, 256)),
        "wide": export_keypoint_net(d / "dots-wide", output="heatmap", input_size=(320, 240)),
        "detector": export_half_box_detector(d / "halfbox", input_size=(320, 240)),
    }


def _matched_error(points, truth):
    """Max error (px) after matching people by their mean position (detector order is not fixed)."""
    truth = np.asarray(truth)
    order = np.argsort([np.nanmean(p[:, 0]) for p in points])
    return np.abs(points[order] - truth[np.argsort(truth[:, :, 0].mean(1))]).max()


@pytest.mark.parametrize("head", ["heatmap", "simcc"])
def test_whole_image_crop_recovers_planted_keypoints(nets, head):
    """No detector: the image is one person's box, cropped to the 192x256 input with padding."""
    rng = np.random.default_rng(1)
    truth = person_pixels(rng, centre=(96, 128), scale=1.1)
    image = dot_image([truth], size=(192, 256), radius=4)
    backend = create_backend("onnxruntime", model=str(nets[head]))
    assert backend.layout == "coco17"
    (points, scores), = backend.infer([image], ["cam0"])
    assert points.shape == (1, 17, 2) and scores.shape == (1, 17)
    err = np.linalg.norm(points[0] - truth, axis=-1)
    # The 1.25 padding shrinks the image by 1.25 into the crop: heatmap cells are 5 image px, DARK refines.
    assert err.max() < 1.6, err.round(2)
    assert np.median(err) < 0.8
    assert scores.min() > 0.3  # dots of 3 crop px cover part of a 5-px pooling cell


def test_detector_crops_two_people_and_maps_back_to_image_pixels(nets):
    rng = np.random.default_rng(2)
    left, right = person_pixels(rng, (170, 250)), person_pixels(rng, (470, 230), scale=0.9)
    image = dot_image([left, right], size=(640, 480), radius=4)
    backend = create_backend("onnxruntime", model=str(nets["heatmap"]), detector=str(nets["detector"]))
    (points, scores), = backend.infer([image], ["cam0"])
    assert points.shape == (2, 17, 2)
    assert _matched_error(points, [left, right]) < 1.6
    assert backend.last_timings["people"] == 2


def test_all_people_of_all_cameras_go_through_one_pose_call(nets):
    rng = np.random.default_rng(3)
    truths = [[person_pixels(rng, (170, 250)), person_pixels(rng, (470, 230))],
              [person_pixels(rng, (200, 240))],
              [person_pixels(rng, (150, 260)), person_pixels(rng, (500, 200), scale=0.8)]]
    images = [dot_image(t, size=(640, 480)) for t in truths]
    backend = create_backend("onnxruntime", model=str(nets["simcc"]), detector=str(nets["detector"]))
    calls = []
    run = backend.pose_runner.run
    backend.pose_runner.run = lambda batch: calls.append(len(batch)) or run(batch)
    results = backend.infer(images, ["a", "b", "c"])
    assert calls == [5]  # 2 + 1 + 2 crops in a single network call
    for (points, _), truth in zip(results, truths):
        assert len(points) == len(truth)
        assert _matched_error(points, truth) < 1.6


def test_warm_up_covers_every_batch_the_cameras_can_send(nets):
    """warm_up(cameras) runs each network on every batch size the node's frames can bring (detector: up to
    the cameras; pose: up to cameras x max_people crops, split at max_batch), so a frame's shapes were seen."""
    rng = np.random.default_rng(3)
    truths = [[person_pixels(rng, (170, 250)), person_pixels(rng, (470, 230))],
              [person_pixels(rng, (200, 240))],
              [person_pixels(rng, (150, 260)), person_pixels(rng, (500, 200), scale=0.8)]]
    images = [dot_image(t, size=(640, 480)) for t in truths]
    backend = create_backend("onnxruntime", model=str(nets["simcc"]), detector=str(nets["detector"]), max_batch=4,
                             topdown={"max_people": 3})
    runners = {"pose": backend.pose_runner, "detector": backend.detector_runner}
    warm = {net: RecordingSession(r.session) for net, r in runners.items()}
    for net, r in runners.items():
        r.session = warm[net]
    assert backend.warm_up(3) == {"pose": [4, 3, 2, 1], "detector": [3, 2, 1]}
    later = {net: RecordingSession(r.session) for net, r in warm.items()}
    for net, r in runners.items():
        r.session = later[net]
    results = backend.infer(images, ["a", "b", "c"])
    assert [len(points) for points, _ in results] == [2, 1, 2]
    assert [s[0] for s in later["pose"].shapes] == [4, 1]          # 5 crops split at max_batch 4
    for net in later:
        assert set(later[net].shapes) <= set(warm[net].shapes), net
    assert create_backend("onnxruntime", model=str(nets["heatmap"])).warm_up(2) == {"pose": [2, 1]}


def test_boxes_follow_keypoints_between_detector_runs(nets):
    rng = np.random.default_rng(4)
    backend = create_backend("onnxruntime", model=str(nets["heatmap"]), detector=str(nets["detector"]),
                             topdown={"detect_every": 3})
    det_calls = []
    run = backend.detector_runner.run
    backend.detector_runner.run = lambda batch: det_calls.append(len(batch)) or run(batch)
    for k in range(6):  # a person walking right by 6 px a frame
        truth = person_pixels(rng, (150 + 6 * k, 240))
        (points, _), = backend.infer([dot_image([truth])], ["cam0"])
        assert len(points) == 1
        assert np.abs(points[0] - truth).max() < 1.6, k
    assert len(det_calls) == 2  # frames 0 and 3


def test_torch_runtime_matches_onnxruntime(nets, tmp_path):
    """The same network through torch (TorchScript) and onnxruntime gives the same keypoints."""
    from hpe_ros.sim.keypoint_net import build_keypoint_net

    scripted = torch.jit.trace(build_keypoint_net(17, "simcc"), torch.zeros(1, 3, 256, 192))
    pt = tmp_path / "dots.pt"
    scripted.save(str(pt))
    rng = np.random.default_rng(5)
    image = dot_image([person_pixels(rng, (96, 128))], size=(192, 256))
    a = create_backend("onnxruntime", model=str(nets["simcc"])).infer([image], ["c"])[0]
    torch_backend = create_backend("torch", model=str(nets["simcc"]), model_file_path=str(pt), device="cpu")
    b = torch_backend.infer([image], ["c"])[0]
    np.testing.assert_allclose(a[0], b[0], atol=1e-3)
    np.testing.assert_allclose(a[1], b[1], atol=1e-4)


def test_an_empty_image_gives_no_people(nets):
    backend = create_backend("onnxruntime", model=str(nets["heatmap"]), detector=str(nets["detector"]))
    (points, scores), = backend.infer([np.zeros((480, 640, 3), np.uint8)], ["cam0"])
    assert points.shape == (0, 17, 2) and scores.shape == (0, 17)


def test_bad_configuration_is_refused_clearly(nets, tmp_path):
    from hpe_ros.detect2d import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="needs a pose model"):
        create_backend("onnxruntime")
    with pytest.raises(BackendUnavailable, match="unknown 2D backend 'caffe'"):
        create_backend("caffe", model="x")
    with pytest.raises(FileNotFoundError, match="unknown model 'no-such-model'"):
        create_backend("onnxruntime", model="no-such-model")
    with pytest.raises(ValueError, match="not a detector output"):
        create_backend("onnxruntime", model=str(nets["heatmap"]), detector=str(nets["simcc"]))
    lonely = tmp_path / "lonely.toml"
    lonely.write_text(nets["heatmap"].read_text().replace('file = "dots-heatmap.onnx"', 'file = "gone.onnx"'))
    with pytest.raises(BackendUnavailable, match="hpe-ros models fetch"):
        create_backend("onnxruntime", model=str(lonely))
