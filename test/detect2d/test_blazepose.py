"""The multi-person BlazePose backend on real images, against MediaPipe's own graph.

Needs mediapipe==0.10.14 (the weights and the reference), onnxruntime + tflite (the converted networks),
ai-edge-litert (the tflite runtime) and scikit-image (the photograph); skipped where one is missing.
Measured on the astronaut (512 x 512; her ROI is 1255 px, one heatmap cell = 20 px): our detector ROI is
within 0.2 px / 0.001 rad of MediaPipe's; on MediaPipe's ROI our landmarks are within 0.5 px of its own
on the face and shoulders and within 5 px elsewhere (the difference is where the heatmap refinement's
7 x 7 window or its 0.5 confidence gate flips); end to end, max 7.1 px, median 1.7 px.
"""
import numpy as np
import pytest

mediapipe = pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14 (the BlazePose weights)")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
pytest.importorskip("tflite", reason="needs the tflite schema package: pip install '.[blazepose]'")
skimage_data = pytest.importorskip("skimage.data", reason="needs scikit-image for the test photograph")

from hpe_ros.detect2d import create_backend  # noqa: E402
from hpe_ros.skeleton import convert, get_layout  # noqa: E402

from helpers.recording_session import RecordingSession  # noqa: E402

FACE_AND_SHOULDERS = list(range(13))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Converted networks in a temporary model cache, not the user's."""
    folder = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPE_ROS_MODEL_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skimage_data.astronaut())  # RGB


@pytest.fixture(scope="module")
def mediapipe_reference(astronaut):
    """MediaPipe's own graph on the astronaut: its detection ROI (cx, cy, size, angle px) and landmarks (33, 2) px."""
    from pathlib import Path

    from mediapipe.python.solution_base import SolutionBase

    graph = Path(mediapipe.__file__).parent / "modules" / "pose_landmark" / "pose_landmark_cpu.binarypb"
    side = {"model_complexity": 1, "smooth_landmarks": False, "enable_segmentation": False,
            "smooth_segmentation": False, "use_prev_landmarks": False}
    with SolutionBase(binary_graph_path=str(graph), side_inputs=side,
                      outputs=["pose_rect_from_detection", "pose_landmarks"]) as solution:
        result = solution.process({"image": astronaut})
    h, w = astronaut.shape[:2]
    r = result.pose_rect_from_detection
    roi = np.array([r.x_center * w, r.y_center * h, r.width * w, r.rotation])
    landmarks = np.array([[p.x * w, p.y * h] for p in result.pose_landmarks.landmark])
    return roi, landmarks


@pytest.fixture(scope="module")
def backend(cache):
    b = create_backend("blazepose", runtime="onnxruntime", providers="cpu")
    yield b
    b.close()


def test_detector_roi_matches_mediapipes(backend, astronaut, mediapipe_reference):
    roi, _ = mediapipe_reference
    (ours,), = backend.detect_people([astronaut])
    assert np.abs(ours[:2] - roi[:2]).max() < 0.5
    assert abs(ours[2] - roi[2]) < 2.0 and abs(ours[3] - roi[3]) < 0.005


def test_landmarks_in_mediapipes_roi_match_its_own(backend, astronaut, mediapipe_reference):
    roi, expected = mediapipe_reference
    points, visibility, presence, _ = backend.landmarks_in_rois([astronaut], [roi[None]])
    err = np.linalg.norm(points[0][0] - expected, axis=1)
    assert presence[0][0] > 0.9
    assert err[FACE_AND_SHOULDERS].max() < 0.6, err.round(2)
    in_image = (expected >= 0).all(axis=1) & (expected < astronaut.shape[1::-1]).all(axis=1)
    assert err[in_image].max() < 5.0 and np.median(err) < 0.5, err.round(2)


def test_one_person_end_to_end_matches_mediapipe(backend, astronaut, mediapipe_reference):
    _, expected = mediapipe_reference
    backend.reset()
    (points, scores), = backend.infer([astronaut[..., ::-1]], ["photo"])
    assert points.shape == (1, 33, 2) and scores.shape == (1, 33)
    err = np.linalg.norm(points[0] - expected, axis=1)
    assert err[FACE_AND_SHOULDERS].max() < 2.0, err.round(1)
    assert err.max() < 10.0 and np.median(err) < 3.0, err.round(1)
    coco = convert(points, "blazepose33", "coco17")[0]
    left, right = (coco[get_layout("coco17").index(n)] for n in ("left_shoulder", "right_shoulder"))
    assert left[0] > right[0] and coco[0][1] < min(left[1], right[1])   # she faces the camera, nose on top


def test_the_tracked_frame_skips_the_detector_and_keeps_the_person(cache, astronaut):
    b = create_backend("blazepose", blazepose={"detect_every": 5})
    calls = []
    run = b.detector.run
    b.detector.run = lambda batch: calls.append(len(batch)) or run(batch)
    image = np.ascontiguousarray(astronaut[..., ::-1])
    first, = b.infer([image], ["cam"])
    second, = b.infer([image], ["cam"])
    assert calls == [1]                                   # frame 2 follows the landmarks' ROI
    assert len(second[0]) == 1
    # The ROI now comes from the landmarks, not the detector: the face stays put within a few pixels
    # (MediaPipe's own second frame moves too: its ROI changes the same way).
    face = np.linalg.norm(second[0][0, :11] - first[0][0, :11], axis=1)
    assert face.max() < 15.0
    b.close()


def test_runtimes_agree(cache, backend, astronaut):
    lite = create_backend("blazepose", runtime="tflite")
    backend.reset()
    image = np.ascontiguousarray(astronaut[..., ::-1])
    (a, sa), = backend.infer([image], ["x"])
    (b, sb), = lite.infer([image], ["x"])
    assert a.shape == b.shape == (1, 33, 2)
    assert np.abs(a - b).max() < 1.0 and np.abs(sa - sb).max() < 0.01
    assert lite.name == "blazepose[tflite[xnnpack]]"
    lite.close()


@pytest.mark.gpu
def test_tensorrt_agrees_with_onnxruntime(cache, backend, astronaut, tmp_path, monkeypatch):
    try:
        import tensorrt  # noqa: F401
        import torch
    except Exception as exc:
        pytest.skip(f"tensorrt / torch not importable ({exc})")
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    monkeypatch.setenv("HPE_ROS_ENGINE_DIR", str(tmp_path / "engines"))
    image = np.ascontiguousarray(astronaut[..., ::-1])
    backend.reset()
    (want, _), = backend.infer([image, image], ["a", "b"])[:1]
    for fp16, tolerance in ((False, 1.0), (True, 4.0)):
        trt = create_backend("blazepose", runtime="tensorrt", enable_fp16=fp16, max_batch=4)
        (got, scores), (other, _) = trt.infer([image, image], ["a", "b"])
        assert got.shape == want.shape == other.shape == (1, 33, 2)
        err = np.linalg.norm(got[0] - want[0], axis=1)
        assert err[FACE_AND_SHOULDERS].max() < tolerance, (fp16, err.round(2))
        trt.close()


def _inside(points: np.ndarray, box) -> bool:
    x0, y0, x1, y1 = box
    return bool(((points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)).all())


def _one_skeleton_per_box(points: np.ndarray, boxes: list) -> None:
    """Each box holds exactly one skeleton entirely, and each skeleton lies in exactly one box."""
    inside = np.array([[_inside(p, box) for box in boxes] for p in points])
    assert inside.sum(axis=0).tolist() == [1] * len(boxes), inside
    assert inside.sum(axis=1).tolist() == [1] * len(points), inside


def test_two_astronauts_side_by_side_give_two_skeletons(cache, astronaut):
    # Letterboxed to 224 px, each copy is a small person: the left one scores 0.49, under MediaPipe's 0.5.
    b = create_backend("blazepose", blazepose={"min_detection_score": 0.4})
    pair = np.ascontiguousarray(np.concatenate([astronaut, astronaut], axis=1)[..., ::-1])
    (points, scores), = b.infer([pair], ["pair"])
    assert points.shape == (2, 33, 2)
    _one_skeleton_per_box(points[:, FACE_AND_SHOULDERS], [(0, 0, 512, 512), (512, 0, 1024, 512)])
    assert abs(points[0, 0, 1] - points[1, 0, 1]) < 10.0     # about the same nose height in both copies
    b.close()


def test_a_batch_of_cameras_equals_one_camera_at_a_time(backend, astronaut):
    backend.reset()
    images = [np.ascontiguousarray(astronaut[..., ::-1]), np.ascontiguousarray(astronaut[::-1, ::-1, ::-1])]
    together = backend.infer(images, ["a", "b"])
    backend.reset()
    alone = [backend.infer([im], [name])[0] for im, name in zip(images, ["a", "b"])]
    for (p, s), (q, t) in zip(together, alone):
        assert p.shape == q.shape
        np.testing.assert_allclose(p, q, atol=1e-2)
        np.testing.assert_allclose(s, t, atol=1e-4)


def test_warm_up_covers_the_batches_a_frame_sends_and_max_batch_splits_them(cache, astronaut):
    """Three cameras of two astronauts each: six ROIs, split at max_batch 4; warm_up(3) ran every shape the
    frame sends (the detector's 3 images, landmark batches of 4 and 2), twice each, before it came."""
    b = create_backend("blazepose", runtime="onnxruntime", providers="cpu", max_batch=4,
                       blazepose={"min_detection_score": 0.4, "max_people": 2})
    assert b.landmarks.max_batch == b.detector.max_batch == 4
    warm = {net: RecordingSession(getattr(b, net).session) for net in ("detector", "landmarks")}
    for net, recorder in warm.items():
        getattr(b, net).session = recorder
    assert b.warm_up(3) == {"detector": [3, 2, 1], "landmarks": [4, 3, 2, 1]}
    assert [s[0] for s in warm["landmarks"].shapes] == [4, 4, 3, 3, 2, 2, 1, 1]
    later = {net: RecordingSession(r.session) for net, r in warm.items()}
    for net, recorder in later.items():
        getattr(b, net).session = recorder
    pair = np.ascontiguousarray(np.concatenate([astronaut, astronaut], axis=1)[..., ::-1])
    results = b.infer([pair] * 3, ["a", "b", "c"])
    assert [len(points) for points, _ in results] == [2, 2, 2]
    assert [s[0] for s in later["landmarks"].shapes] == [4, 2]
    for net in later:
        assert set(later[net].shapes) <= set(warm[net].shapes), net
    b.close()


@pytest.mark.realdata
def test_pose2sim_multi_person_frame(backend, realdata_demo):
    import cv2

    video = realdata_demo("Demo_MultiPerson") / "videos" / "cam01.mp4"
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, frame = capture.read()
    capture.release()
    assert ok, f"could not read frame 30 of {video}"
    backend.reset()
    (points, scores), = backend.infer([frame], ["cam01"])
    # Person boxes drawn by hand on this frame (1088 x 1920 portrait): the man on the treadmill, the woman
    # in front of it (the person far in the background at the left is too small for the detector).
    man, woman = (150, 380, 800, 1230), (460, 800, 1010, 1760)
    assert points.shape == (2, 33, 2)
    _one_skeleton_per_box(points, [man, woman])
    assert (scores.mean(axis=1) > 0.6).all()


def test_bad_input_is_refused_clearly(backend):
    with pytest.raises(ValueError, match="images\\[0\\] must be a BGR"):
        backend.infer([np.zeros((10, 10), np.uint8)], ["a"])
    with pytest.raises(ValueError, match="2 images but 1 stream"):
        backend.infer([np.zeros((8, 8, 3), np.uint8)] * 2, ["a"])
    with pytest.raises(ValueError, match="runtime must be one of"):
        create_backend("blazepose", runtime="torch")
    with pytest.raises(ValueError, match="unknown blazepose option"):
        create_backend("blazepose", blazepose={"nope": 1})
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        create_backend("blazepose", detector_file_path="/x/missing.tflite", model_file_path="/x/missing.tflite")


def test_a_guided_roi_finds_a_person_the_detector_misses_and_tracking_keeps_them(backend, astronaut):
    image = np.ascontiguousarray(astronaut[..., ::-1])
    roi = backend.detect_people([astronaut])[0][:1]
    blind = create_backend("blazepose", runtime="onnxruntime", providers="cpu")
    blind.detect_people = lambda images, order="rgb": [np.zeros((0, 4)) for _ in images]  # never sees her
    try:
        (points, _), = blind.infer([image], ["cam"])
        assert len(points) == 0 and len(blind.tracked_rois("cam")) == 0
        blind.guide("cam", roi + np.array([8.0, -6.0, 20.0, 0.1]))          # a rough projection is enough
        (points, _), = blind.infer([image], ["cam"])
        assert len(points) == 1 and blind.last_timings["guided"] == 1
        assert len(blind.tracked_rois("cam")) == 1
        blind.guide("cam", blind.tracked_rois("cam"))                      # already tracked: not a second person
        (points, _), = blind.infer([image], ["cam"])
        assert len(points) == 1 and blind.last_timings["guided"] == 0
    finally:
        blind.close()
