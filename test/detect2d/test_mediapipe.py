"""MediaPipe BlazePose on a real photograph (skipped where mediapipe==0.10.14 / scikit-image are absent)."""
import numpy as np
import pytest

from hpe_ros.skeleton import convert, convert_scores, get_layout


def test_mediapipe_finds_the_astronauts_shoulders():
    pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14: pip install '.[mediapipe]'")
    data = pytest.importorskip("skimage.data", reason="needs scikit-image for the test photograph")
    from hpe_ros.detect2d import create_backend

    image = np.ascontiguousarray(data.astronaut()[..., ::-1])  # RGB -> BGR, 512 x 512
    backend = create_backend("mediapipe", model_complexity=1)
    (points, scores), = backend.infer([image], ["photo"])
    assert points.shape == (1, 33, 2)
    coco = convert(points, "blazepose33", "coco17")[0]
    conf = convert_scores(scores, "blazepose33", "coco17")[0]
    L = get_layout("coco17")
    left, right = coco[L.index("left_shoulder")], coco[L.index("right_shoulder")]
    # The astronaut faces the camera: her left shoulder is on the image's right, both at chest height,
    # below the nose, roughly 190 px apart in this 512 px portrait.
    assert conf[L.index("left_shoulder")] > 0.5 and conf[L.index("right_shoulder")] > 0.5
    assert 260 < left[0] < 360 and 60 < right[0] < 170
    assert 200 < left[1] < 310 and 200 < right[1] < 310
    assert coco[0][1] < min(left[1], right[1])
    backend.close()


def test_mediapipe_models_the_wheel_lacks_are_refused_clearly():
    pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14: pip install '.[mediapipe]'")
    from pathlib import Path

    import mediapipe

    from hpe_ros.detect2d import BackendUnavailable, create_backend

    heavy = Path(mediapipe.__file__).parent / "modules" / "pose_landmark" / "pose_landmark_heavy.tflite"
    if heavy.is_file():
        pytest.skip("this mediapipe install has the heavy model")
    with pytest.raises(BackendUnavailable, match="does not bundle"):
        create_backend("mediapipe", model_complexity=2)
    with pytest.raises(ValueError, match="0, 1 or 2"):
        create_backend("mediapipe", model_complexity=5)
