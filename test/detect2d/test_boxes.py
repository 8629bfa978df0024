"""Person-detector decoding: NMS, raw YOLOX heads, mmdeploy end2end outputs, boxes from keypoints."""
import numpy as np
import pytest

from hpe_ros.detect2d.boxes import boxes_from_keypoints, decode_end2end, decode_yolox, nms

INPUT = (640, 480)      # detector input (w, h)
STRIDES = (8, 16, 32)   # grids 80×60, 40×30, 20×15


def test_nms_suppresses_overlaps_in_score_order():
    boxes = np.array([[50, 50, 60, 60], [1, 1, 11, 11], [0, 0, 10, 10], [100, 0, 110, 10]], float)
    scores = np.array([0.7, 0.8, 0.9, np.nan])  # NaN score dropped
    # IoU([0,0,10,10], [1,1,11,11]) = 81 / 119 = 0.68
    np.testing.assert_array_equal(nms(boxes, scores, 0.45), [2, 0])
    np.testing.assert_array_equal(nms(boxes, scores, 0.7), [2, 1, 0])
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\), got \(4, 3\)"):
        nms(boxes[:, :3], scores, 0.5)


def _anchor(stride, gx, gy):
    """Index of grid cell (gx, gy) at `stride` in the YOLOX anchor order (strides in order, row-major)."""
    w, h = INPUT
    offset = 0
    for s in STRIDES:
        if s == stride:
            return offset + gy * (w // s) + gx
        offset += (h // s) * (w // s)
    raise ValueError(stride)


def _encode(raw, stride, center, size, obj, cls):
    """Write one box (centre, size in letterbox px) into the raw YOLOX tensor row of its cell."""
    gx, gy = int(center[0] // stride), int(center[1] // stride)
    a = _anchor(stride, gx, gy)
    raw[a, 0:2] = np.asarray(center) / stride - (gx, gy)
    raw[a, 2:4] = np.log(np.asarray(size) / stride)
    raw[a, 4] = obj
    raw[a, 5:] = cls
    return a


def _raw_yolox():
    raw = np.zeros((6300, 5 + 3), np.float32)
    raw[:, 4] = 0.01  # background objectness
    _encode(raw, 8, (162.4, 84.8), (40, 100), 0.9, (0.95, 0.02, 0.0))   # person, score 0.855
    _encode(raw, 16, (165.0, 88.0), (44, 96), 0.8, (0.9, 0.0, 0.0))     # overlapping person, 0.72
    _encode(raw, 32, (500.0, 400.0), (120, 200), 0.7, (0.8, 0.1, 0.0))  # far person, 0.56
    _encode(raw, 8, (300.0, 300.0), (60, 40), 0.9, (0.1, 0.9, 0.0))    # a class-1 object, person 0.09
    return raw


def test_decode_yolox_boxes_scores_and_nms():
    raw = np.stack([_raw_yolox(), np.zeros((6300, 8), np.float32)])
    out = decode_yolox(raw, INPUT, scales=np.array([0.5, 1.0]), strides=STRIDES)
    assert len(out) == 2
    boxes, scores = out[0]
    # Overlapping box suppressed; image px = letterbox px / 0.5.
    np.testing.assert_allclose(scores, [0.9 * 0.95, 0.7 * 0.8], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[2 * (162.4 - 20), 2 * (84.8 - 50), 2 * (162.4 + 20), 2 * (84.8 + 50)],
                                       [2 * 440.0, 2 * 300.0, 2 * 560.0, 2 * 500.0]], rtol=1e-5)
    assert out[1][0].shape == (0, 4) and out[1][1].shape == (0,)
    # Without NMS pressure both overlapping people come back, in score order.
    boxes, scores = decode_yolox(raw[:1], INPUT, [0.5], nms_threshold=0.95)[0]
    np.testing.assert_allclose(scores, [0.855, 0.72, 0.56], rtol=1e-6)
    np.testing.assert_allclose(boxes[1], 2 * np.array([165 - 22, 88 - 48, 165 + 22, 88 + 48]), rtol=1e-5)


def test_decode_yolox_class_selection_threshold_and_clipping():
    raw = _raw_yolox()[None]
    boxes, scores = decode_yolox(raw, INPUT, [0.5], class_id=1)[0]
    np.testing.assert_allclose(scores, [0.81], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[540, 560, 660, 640]], rtol=1e-5)
    boxes, scores = decode_yolox(raw, INPUT, [0.5], class_id=None)[0]  # best class, class-agnostic NMS
    np.testing.assert_allclose(np.sort(scores)[::-1], [0.855, 0.81, 0.56], rtol=1e-6)
    _, scores = decode_yolox(raw, INPUT, [0.5], score_threshold=0.6)[0]
    np.testing.assert_allclose(scores, [0.855], rtol=1e-6)
    # Far person reaches y = 1000 in image px; clipped to a 1280×960 image.
    boxes, _ = decode_yolox(raw, INPUT, [0.5], image_sizes=[(1280, 960)])[0]
    np.testing.assert_allclose(boxes[1], [880, 600, 1120, 960], rtol=1e-5)


def test_decode_yolox_rejects_wrong_anchor_count():
    with pytest.raises(ValueError, match="anchors"):
        decode_yolox(np.zeros((1, 8400, 85), np.float32), INPUT, [1.0])
    with pytest.raises(ValueError, match="scales"):
        decode_yolox(np.zeros((2, 6300, 85), np.float32), INPUT, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="class_id"):
        decode_yolox(np.zeros((1, 6300, 8), np.float32), INPUT, [1.0], class_id=5)


def test_decode_end2end():
    dets = np.zeros((2, 5, 5), np.float32)  # zero rows = padding
    labels = np.full((2, 5), -1, np.int64)
    dets[0, 0], labels[0, 0] = (10, 20, 50, 120, 0.6), 0
    dets[0, 1], labels[0, 1] = (200, 100, 260, 300, 0.9), 0
    dets[0, 2], labels[0, 2] = (300, 300, 330, 320, 0.95), 2   # not a person
    dets[0, 3], labels[0, 3] = (0, 0, 5, 5, 0.2), 0            # below threshold
    dets[1, 0], labels[1, 0] = (600, 400, 700, 500, 0.8), 0
    out = decode_end2end(dets, labels, scales=[0.5, 0.8], image_sizes=[(2000, 2000), (800, 600)])
    np.testing.assert_allclose(out[0][1], [0.9, 0.6], rtol=1e-6)
    np.testing.assert_allclose(out[0][0], [[400, 200, 520, 600], [20, 40, 100, 240]])
    np.testing.assert_allclose(out[1][0], [[750, 500, 800, 600]])  # 875 × 625 clipped to 800 × 600
    boxes, scores = decode_end2end(dets, labels, [0.5, 0.8], class_id=2)[0]
    np.testing.assert_allclose(boxes, [[600, 600, 660, 640]])
    with pytest.raises(ValueError, match=r"dets must have shape \(B, N, 5\), got \(2, 5, 4\)"):
        decode_end2end(dets[..., :4], labels, [1.0, 1.0])


def test_boxes_from_keypoints():
    pts = np.full((3, 4, 2), np.nan)
    sc = np.zeros((3, 4))
    pts[0, :3] = [[10, 20], [30, 60], [100, 5]]
    sc[0, :4] = [0.9, 0.5, 0.1, 0.9]   # third is not confident, fourth is NaN
    pts[1, 0], sc[1, 0] = (5, 5), 1.0  # only one confident keypoint
    with np.errstate(all="raise"):
        boxes = boxes_from_keypoints(pts, sc, min_score=0.3, margin=0.1)
        assert np.isnan(boxes_from_keypoints(pts, sc, margin=0.0)[1:]).all()
    np.testing.assert_allclose(boxes[0], [8, 16, 32, 64])  # 20 × 40 box grown by 10 % per side
    assert np.isnan(boxes[1:]).all()
    assert boxes_from_keypoints(np.zeros((0, 17, 2)), np.zeros((0, 17))).shape == (0, 4)
    with pytest.raises(ValueError, match=r"scores must have shape \(3, 4\), got \(3, 3\)"):
        boxes_from_keypoints(pts, sc[:, :3])
