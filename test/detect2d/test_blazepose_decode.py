"""BlazePose maths without the networks: anchors, detection decoding, weighted NMS, ROIs, refinement, smoothing."""
import numpy as np
import pytest

from hpe_ros.detect2d import blazepose_decode as bp


def test_anchors_follow_mediapipes_ssd_layout():
    anchors = bp.ssd_anchors()
    assert anchors.shape == (2254, 2)                        # 28x28x2 + 14x14x2 + 7x7x6
    np.testing.assert_allclose(anchors[:2], [[0.5 / 28, 0.5 / 28]] * 2)
    np.testing.assert_allclose(anchors[1568], [0.5 / 14, 0.5 / 14])
    np.testing.assert_allclose(anchors[-6:], [[6.5 / 7, 6.5 / 7]] * 6)


def test_detections_decode_relative_to_their_anchor_and_respect_the_score():
    anchors = bp.ssd_anchors()
    raw = np.zeros((1, 2254, 12), np.float32)
    scores = np.full((1, 2254, 1), -10.0, np.float32)
    raw[0, 100, :4] = [3.0, -2.0, 40.0, 60.0]
    raw[0, 100, 4:6] = [1.0, 50.0]                           # hip centre below the anchor
    scores[0, 100] = 2.0
    scores[0, 7] = 1000.0                                    # clipped to 100 before the sigmoid: still kept
    (s, boxes, kps), = bp.decode_detections(raw, scores, anchors, min_score=0.5)
    assert len(s) == 2
    i = int(np.argmin(s))
    centre = anchors[100] * 224 + [3.0, -2.0]
    np.testing.assert_allclose(boxes[i], [*(centre - [20, 30]), *(centre + [20, 30])], atol=1e-4)
    np.testing.assert_allclose(kps[i, 0], anchors[100] * 224 + [1.0, 50.0], atol=1e-4)
    assert s[i] == pytest.approx(1 / (1 + np.exp(-2.0)))
    with pytest.raises(ValueError, match="raw_scores"):
        bp.decode_detections(raw, scores[:, :10], anchors, 0.5)


def test_weighted_nms_averages_overlapping_detections_by_score():
    scores = np.array([0.9, 0.6, 0.8])
    boxes = np.array([[0, 0, 10, 10], [100, 100, 110, 110], [1, 1, 11, 11]], float)
    kps = np.stack([boxes[:, :2], boxes[:, 2:]], axis=1)
    s, b, k = bp.weighted_nms(scores, boxes, kps, 0.3)
    assert s.tolist() == [0.9, 0.6]
    np.testing.assert_allclose(b[0], (0.9 * boxes[0] + 0.8 * boxes[2]) / 1.7)
    np.testing.assert_allclose(k[1], kps[1])
    assert bp.weighted_nms(scores[:0], boxes[:0], kps[:0], 0.3)[1].shape == (0, 4)


def test_upright_person_gets_an_unrotated_square_roi():
    roi, = bp.rois_from_alignment(np.array([[100.0, 200.0]]), np.array([[100.0, 120.0]]))
    np.testing.assert_allclose(roi, [100, 200, 2 * 80 * 1.25, 0], atol=1e-9)
    lying, = bp.rois_from_alignment(np.array([[100.0, 200.0]]), np.array([[180.0, 200.0]]))
    assert lying[3] == pytest.approx(np.pi / 2)             # head to the right: turn a quarter clockwise


def test_crop_affine_and_projection_back_are_inverse():
    rng = np.random.default_rng(0)
    rois = np.column_stack([rng.uniform(0, 500, 4), rng.uniform(0, 500, 4), rng.uniform(50, 900, 4),
                            rng.uniform(-np.pi, np.pi, 4)])
    points = rng.uniform(-100, 600, (4, 7, 2))
    affines = bp.roi_affines(rois)
    crop = points @ affines[:, :, :2].transpose(0, 2, 1) + affines[:, None, :, 2]
    np.testing.assert_allclose(bp.crop_to_image(crop / bp.LANDMARK_SIZE, rois), points, atol=1e-9)
    centre = bp.crop_to_image(np.full((4, 1, 2), 0.5), rois)[:, 0]
    np.testing.assert_allclose(centre, rois[:, :2])


def test_letterbox_centres_the_image_in_a_square():
    a = bp.letterbox_affine((640, 480))
    np.testing.assert_allclose(a @ [0, 0, 1], [0, 0.5 * (640 - 480) * 224 / 640])
    np.testing.assert_allclose(a @ [640, 480, 1], [224, 224 - 0.5 * (640 - 480) * 224 / 640])


def test_heatmap_refinement_moves_to_a_confident_peak_only():
    yy, xx = np.mgrid[0:64, 0:64]
    blob = 8.0 - ((xx - 20.0) ** 2 + (yy - 30.0) ** 2)     # logits, peak at cell (20, 30)
    heatmaps = np.stack([blob, blob - 20.0], axis=-1)[None].astype(np.float32)  # landmark 1: never confident
    xy = np.array([[[21.7 / 64, 30.4 / 64], [21.7 / 64, 30.4 / 64]]])
    refined = bp.refine_with_heatmap(xy, heatmaps)
    np.testing.assert_allclose(refined[0, 0] * 64, [20, 30], atol=0.1)  # window centred on cell 21: slight pull
    np.testing.assert_array_equal(refined[0, 1], xy[0, 1])
    outside = bp.refine_with_heatmap(np.array([[[1.2, 0.5], [-0.5, 0.5]]]), heatmaps)
    np.testing.assert_array_equal(outside, [[[1.2, 0.5], [-0.5, 0.5]]])


def test_landmarks_decode_crop_units_and_sigmoid_scores():
    raw = np.zeros((2, 39 * 5), np.float32)
    raw[:, :5] = [128, 64, 0, 0, 100]
    xy, vis, pres = bp.decode_landmarks(raw)
    np.testing.assert_allclose(xy[:, 0], [[0.5, 0.25]] * 2)
    assert vis[0, 0] == pytest.approx(0.5) and pres[0, 0] == pytest.approx(1.0)


def test_alignment_smoothing_passes_newcomers_and_holds_a_still_person():
    raw = np.array([[[100.0, 200.0], [100.0, 100.0]]])
    state = np.full((1, 3, 2, 2), np.nan)
    out, state = bp.smooth_alignment(raw, state)
    np.testing.assert_array_equal(out, raw)
    jitter = raw + [[[1.0, -1.0], [0.0, 1.0]]]
    out, state = bp.smooth_alignment(jitter, state)
    assert np.abs(out - raw).max() < 0.5                     # small jitter barely moves the ROI
    jump = raw + 80.0
    for _ in range(5):
        out, state = bp.smooth_alignment(jump, state)
    assert np.abs(out - jump).max() < 10.0                   # a real move is followed within a few frames
