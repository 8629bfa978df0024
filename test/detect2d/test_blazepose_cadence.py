"""When the BlazePose backend runs its person detector, and what skipping it costs.

The detector runs on a camera's frame when the camera tracks nobody, when one of its tracked people was
lost on the previous frame, and every `detect_every` frames otherwise; in between, each
person's ROI follows their own landmarks. On real footage (Pose2Sim's two-person demo, marker `realdata`)
a person who walks in is found within `detect_every` frames, and skipping the detector leaves the
landmarks of the people it tracks as they are when the detector runs every frame.
"""
import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14 (the BlazePose weights)")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
pytest.importorskip("tflite", reason="needs the tflite schema package: pip install '.[blazepose]'")
skimage_data = pytest.importorskip("skimage.data", reason="needs scikit-image for the test photograph")

from hpe_ros.detect2d import create_backend  # noqa: E402
from hpe_ros.detect2d.blazepose import BlazePoseConfig, _keep_people  # noqa: E402

DETECT_EVERY = 10
ONE_MAN = "cam03"     # in the demo's first frames its detector finds the man on the treadmill on every frame
BOTH = "cam04"        # and this one's finds both people on most frames

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Converted networks in a temporary model cache, not the user's."""
    folder = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPE_ROS_MODEL_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def astronaut_bgr():
    return np.ascontiguousarray(skimage_data.astronaut()[..., ::-1])


def _counting(backend) -> list[int]:
    """Images per detector call, recorded as they happen."""
    calls: list[int] = []
    run = backend.detector.run
    backend.detector.run = lambda batch: calls.append(len(batch)) or run(batch)
    return calls


@pytest.fixture
def backend(cache):
    b = create_backend("blazepose", runtime="onnxruntime", providers="cpu",
                       blazepose={"detect_every": DETECT_EVERY})
    yield b
    b.close()


def test_a_tracked_camera_runs_the_detector_every_n_frames(backend, astronaut_bgr):
    calls = _counting(backend)
    detected = []
    for _ in range(2 * DETECT_EVERY + 1):
        out = backend.infer([astronaut_bgr, astronaut_bgr], ["a", "b"])
        assert [len(p) for p, _ in out] == [1, 1]
        detected.append(backend.last_timings["detected"])
    assert calls == [2, 2, 2]                      # frames 0, 10 and 20, both cameras in one call
    assert np.flatnonzero(detected).tolist() == [0, DETECT_EVERY, 2 * DETECT_EVERY]


def test_a_lost_person_sends_the_camera_back_to_the_detector_on_the_next_frame(cache, astronaut_bgr):
    # Two astronauts side by side (small in the letterboxed image: detector threshold as MediaPipe's 0.4
    # case); the right one vanishes for a frame, and is found again the frame after, not 10 frames later.
    b = create_backend("blazepose", runtime="onnxruntime", providers="cpu",
                       blazepose={"min_detection_score": 0.4, "detect_every": DETECT_EVERY})
    pair = np.ascontiguousarray(np.concatenate([astronaut_bgr, astronaut_bgr], axis=1))
    half = pair.copy()
    half[:, astronaut_bgr.shape[1]:] = 0
    calls = _counting(b)
    try:
        people = [len(b.infer([image], ["cam"])[0][0]) for image in (pair, pair, half, pair, pair)]
    finally:
        b.close()
    assert people == [2, 2, 1, 2, 2]
    assert len(calls) == 2        # frame 1 (nobody tracked) and frame 4 (someone lost on frame 3)


def test_one_person_followed_by_two_rois_is_reported_once(backend):
    # The benchmark's half-body astronaut: her hips are below the image, so the ROI that follows her
    # landmarks grows, and after a while the detector's tighter ROI overlaps it too little (IoU < 0.5) to
    # be recognised as her; the landmarks of both ROIs coincide, so she stays one person.
    picture = np.zeros((480, 640, 3), np.uint8)
    picture[:, 64:576] = skimage_data.astronaut()[16:496, :, ::-1]
    for k in range(8 * DETECT_EVERY):
        (points, _), = backend.infer([np.roll(picture, 3 * (k % 16), axis=1)], ["cam"])
        assert len(points) == 1, k
        assert backend.last_timings["people"] <= 2


def test_one_person_in_two_rois_is_one_by_landmarks_and_a_neighbour_stays_two():
    cfg = BlazePoseConfig()
    rng = np.random.default_rng(0)
    person = rng.uniform(100, 500, (33, 2))
    neighbour = person + [150.0, 0.0]                     # same pose, a shoulder width aside
    presence = np.array([0.9, 0.95, 0.9])
    rois = np.array([[300, 300, 1000, 0], [300, 250, 600, 0], [400, 300, 1000, 0]], float)
    points = np.stack([person, person + 3.0, neighbour])  # 0 and 1: one person, ROI squares with IoU 0.36
    visibility = np.ones((3, 33))
    assert _keep_people(presence, rois, points, visibility, cfg).tolist() == [1, 2]
    visibility[:, 3:] = 0.1                               # too few landmarks to compare: ROI overlap alone,
    assert _keep_people(presence, rois, points, visibility, cfg).tolist() == [0, 1]  # 2 overlaps 0 by 0.82


def _demo_frames(realdata_demo, camera: str, count: int) -> list[np.ndarray]:
    """The first `count` frames (1088 x 1920 BGR) of the two-person demo's `camera`."""
    import cv2

    capture = cv2.VideoCapture(str(realdata_demo("Demo_MultiPerson") / "videos" / f"{camera}.mp4"))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok, f"could not read {camera} frame {len(frames)}"
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.realdata
def test_a_newcomer_is_found_within_detect_every_frames(backend, realdata_demo):
    # Two copies of the camera side by side; the right copy is grey until frame `appears`, when a second
    # man walks in there (the detector finds him where it looks; the left man is tracked meanwhile).
    appears = 3
    frames = _demo_frames(realdata_demo, ONE_MAN, appears + DETECT_EVERY + 1)
    width = frames[0].shape[1]
    calls = _counting(backend)
    found_at = None
    for k, frame in enumerate(frames):
        canvas = np.concatenate([frame, frame], axis=1)
        if k < appears:
            canvas[:, width:] = 128
        (points, _), = backend.infer([canvas], [ONE_MAN])
        newcomer = np.nanmedian(points[..., 0], axis=1) > width
        if k < appears:
            assert len(points) == 1 and not newcomer.any(), k
        elif found_at is None and newcomer.any():
            found_at = k
    assert found_at is not None and found_at - appears < DETECT_EVERY, found_at
    assert found_at == DETECT_EVERY                       # on the camera's next detector frame, not before
    assert len(calls) == 2                                # frames 0 and 10: the tracked man needs no detector
    assert len(points) == 2


@pytest.mark.realdata
def test_skipping_the_detector_keeps_the_tracked_landmarks(cache, backend, realdata_demo):
    frames = _demo_frames(realdata_demo, BOTH, 2 * DETECT_EVERY + 5)
    every = create_backend("blazepose", runtime="onnxruntime", providers="cpu", blazepose={"detect_every": 1})
    try:
        for k, frame in enumerate(frames):
            (points, scores), = backend.infer([frame], [BOTH])
            (want, want_scores), = every.infer([frame], [BOTH])
            assert points.shape == want.shape == (2, 33, 2), k
            order = np.argsort(np.nanmedian(points[..., 0], axis=1))
            want_order = np.argsort(np.nanmedian(want[..., 0], axis=1))
            seen = want_scores[want_order] > 0.5
            err = np.linalg.norm(points[order] - want[want_order], axis=-1)[seen]
            assert np.median(err) < 1.0 and err.max() < 8.0, (k, np.median(err), err.max())
            np.testing.assert_allclose(scores[order], want_scores[want_order], atol=0.05)
    finally:
        every.close()
