"""blazepose_decode's constants are those of the pose graphs compiled into mediapipe 0.10.14's wheel.

The wheel ships no .pbtxt files: its subgraphs (PoseDetectionCpu, PoseDetectionToRoi, ...) are serialized
CalculatorGraphConfig protos inside _framework_bindings*.so. Each is found by its `type` field and parsed.
"""
from pathlib import Path

import numpy as np
import pytest

mediapipe = pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14 (its compiled-in pose graphs)")

from hpe_ros.detect2d import blazepose_decode as bp  # noqa: E402
from hpe_ros.detect2d.blazepose import BlazePoseConfig  # noqa: E402


@pytest.fixture(scope="module")
def graphs():
    from mediapipe.framework import calculator_pb2

    library = next((Path(mediapipe.__file__).parent / "python").glob("_framework_bindings*.so")).read_bytes()

    def graph(type_name: str):
        """The CalculatorGraphConfig whose serialized bytes end with its `type` field (field 20)."""
        tag = b"\xa2\x01" + bytes([len(type_name)]) + type_name.encode()
        end = library.index(tag) + len(tag)
        found = None
        for start in range(end - 1, max(end - 30000, 0), -1):   # the earliest start that parses is the graph's
            if library[start] != 0x0A:                          # a graph starts with its first node (field 1)
                continue
            config = calculator_pb2.CalculatorGraphConfig()
            try:
                config.ParseFromString(library[start:end])
            except Exception:
                continue
            if config.type == type_name and config.node:
                found = config
        assert found is not None, f"{type_name} not found in {len(library)} bytes"
        return found

    return graph


def _options(graph, calculator: str, extension):
    node, = [n for n in graph.node if n.calculator == calculator]
    return node.options.Extensions[extension.ext]


def test_detector_anchors_scores_and_nms(graphs):
    from mediapipe.calculators.tensor import image_to_tensor_calculator_pb2 as image_to_tensor
    from mediapipe.calculators.tensor import tensors_to_detections_calculator_pb2 as to_detections
    from mediapipe.calculators.tflite import ssd_anchors_calculator_pb2 as ssd
    from mediapipe.calculators.util import non_max_suppression_calculator_pb2 as nms

    g = graphs("PoseDetectionCpu")
    anchors = _options(g, "SsdAnchorsCalculator", ssd.SsdAnchorsCalculatorOptions)
    assert tuple(anchors.strides) == bp.ANCHOR_STRIDES and anchors.num_layers == len(bp.ANCHOR_STRIDES)
    assert anchors.input_size_width == anchors.input_size_height == bp.DETECTOR_SIZE
    assert anchors.fixed_anchor_size and list(anchors.aspect_ratios) == [1.0]
    assert anchors.anchor_offset_x == anchors.anchor_offset_y == 0.5
    decode = _options(g, "TensorsToDetectionsCalculator", to_detections.TensorsToDetectionsCalculatorOptions)
    assert decode.num_boxes == len(bp.ssd_anchors()) and decode.num_keypoints == bp.DETECTION_KEYPOINTS
    assert decode.x_scale == decode.w_scale == bp.DETECTOR_SIZE and decode.reverse_output_order
    assert decode.score_clipping_thresh == bp.SCORE_CLIP and decode.sigmoid_score
    assert decode.min_score_thresh == pytest.approx(BlazePoseConfig.min_detection_score)
    suppression = _options(g, "NonMaxSuppressionCalculator", nms.NonMaxSuppressionCalculatorOptions)
    assert suppression.min_suppression_threshold == pytest.approx(BlazePoseConfig.nms_iou)
    assert suppression.algorithm == nms.NonMaxSuppressionCalculatorOptions.WEIGHTED
    letterbox = _options(g, "ImageToTensorCalculator", image_to_tensor.ImageToTensorCalculatorOptions)
    assert letterbox.keep_aspect_ratio and (letterbox.output_tensor_float_range.min,
                                            letterbox.output_tensor_float_range.max) == (-1.0, 1.0)


def test_rois_landmarks_and_smoothing(graphs):
    from mediapipe.calculators.tensor import image_to_tensor_calculator_pb2 as image_to_tensor
    from mediapipe.calculators.util import detections_to_rects_calculator_pb2 as to_rects
    from mediapipe.calculators.util import landmarks_smoothing_calculator_pb2 as smoothing
    from mediapipe.calculators.util import rect_transformation_calculator_pb2 as transform
    from mediapipe.calculators.util import refine_landmarks_from_heatmap_calculator_pb2 as refine

    for name in ("PoseDetectionToRoi", "PoseLandmarksToRoi"):
        g = graphs(name)
        rect = _options(g, "RectTransformationCalculator", transform.RectTransformationCalculatorOptions)
        assert rect.scale_x == rect.scale_y == bp.ROI_SCALE and rect.square_long
        align = _options(g, "AlignmentPointsRectsCalculator", to_rects.DetectionsToRectsCalculatorOptions)
        assert (align.rotation_vector_start_keypoint_index, align.rotation_vector_end_keypoint_index) == (0, 1)
        assert align.rotation_vector_target_angle_degrees == 90
    crop = _options(graphs("PoseLandmarkByRoiCpu"), "ImageToTensorCalculator",
                    image_to_tensor.ImageToTensorCalculatorOptions)
    assert crop.output_tensor_width == crop.output_tensor_height == bp.LANDMARK_SIZE
    assert crop.border_mode == image_to_tensor.ImageToTensorCalculatorOptions.BORDER_UNSPECIFIED  # OpenCV: replicate
    heat = _options(graphs("TensorsToPoseLandmarksAndSegmentation"), "RefineLandmarksFromHeatmapCalculator",
                    refine.RefineLandmarksFromHeatmapCalculatorOptions)
    assert heat.kernel_size == bp.HEATMAP_KERNEL and heat.min_confidence_to_refine == bp.HEATMAP_MIN_CONFIDENCE
    filters = [n for n in graphs("PoseLandmarkFiltering").node if n.calculator == "LandmarksSmoothingCalculator"
               and any(s.endswith(":filtered_aux_visibility") for s in n.input_stream)]
    euro = filters[0].options.Extensions[smoothing.LandmarksSmoothingCalculatorOptions.ext].one_euro_filter
    np.testing.assert_allclose([euro.min_cutoff, euro.beta, euro.derivate_cutoff],
                               [bp.ROI_FILTER["min_cutoff"], bp.ROI_FILTER["beta"],
                                bp.ROI_FILTER["derivative_cutoff"]], rtol=1e-6)
