"""Multi-person BlazePose, top-down: MediaPipe's detector and landmark networks on our runtimes.

Per batch of camera images: the person detector runs (one batch, images letterboxed to 224) on the cameras
that need it; every person's rotated ROI (hip centre, body scale, upright) is cut to 256 x 256 and the
landmark network runs once on all people of all cameras; landmarks go back to image pixels through the
inverse crop. Each person's next ROI follows their own alignment landmarks, as in MediaPipe, so the detector
is only needed for newcomers: it runs on a camera's frame when that camera tracks nobody, when one of its
tracked people was lost on the previous frame, and otherwise every `detect_every` frames, so a newcomer is
found within `detect_every` frames.
ROIs from elsewhere (`guide`: other cameras' fused 3D projected, hpe_ros.detect2d.guided_crops) join a
camera's next frame like detections do, for the people its detector missed.

The weights are the two .tflite files in mediapipe==0.10.14's wheel (never copied into this repository);
"onnxruntime" and "tensorrt" run their ONNX conversion (hpe_ros.runtime.tflite_to_onnx, cached), "tflite"
runs them on LiteRT directly. Output layout: blazepose33 (points px, scores = landmark visibility).
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from hpe_ros.checks import config_from_mapping
from hpe_ros.detect2d import blazepose_decode as bp
from hpe_ros.detect2d.boxes import box_iou
from hpe_ros.runtime import BackendUnavailable, create_runner
from hpe_ros.runtime.base import warm_up_runner

BLAZEPOSE_RUNTIMES = ("onnxruntime", "tflite", "tensorrt")
# Network outputs by their .tflite names: detector boxes + keypoints, scores; landmarks, pose presence,
# heatmaps (the landmark network's segmentation and world landmarks are left out of the ONNX conversion).
DETECTOR_OUTPUTS = ("Identity", "Identity_1")
LANDMARK_OUTPUTS = ("Identity", "Identity_1", "Identity_3")
_WHEEL_FILES = {"detector": ("pose_detection", "pose_detection.tflite"),
                "landmark": ("pose_landmark", "pose_landmark_full.tflite")}


@dataclass
class BlazePoseConfig:
    min_detection_score: float = 0.5   # MediaPipe's; people small in the letterboxed image can score less
                                       # (0.4 finds them, and the presence check still rejects non-people)
    nms_iou: float = 0.3               # weighted NMS overlap (MediaPipe's)
    min_presence: float = 0.5          # a person whose pose-presence score falls below this is dropped
    detect_every: int = 10             # detector every N frames of a camera (and whenever it tracks nobody or
                                       # lost someone): a newcomer is found within N frames
    max_people: int = 8                # per camera, most present first
    same_person_iou: float = 0.5       # ROI squares overlapping more are one person (newcomers, duplicates)
    same_person_distance: float = 0.02  # so are two whose landmarks (those both see) lie closer (median) than
                                        # this share of the smaller ROI side: one person followed by two ROIs
                                        # (same person: <= 0.011 measured; two people side by side: >= 0.027)
    heatmap_refine: bool = True        # MediaPipe's sub-pixel refinement from the landmark heatmaps (it lowers
                                       # the multi-view reprojection error on Pose2Sim's multi-person demo)

    def __post_init__(self):
        if int(self.detect_every) < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if int(self.max_people) < 1:
            raise ValueError(f"max_people must be >= 1, got {self.max_people}")


@dataclass
class _Stream:
    rois: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (P, 4) where to look next frame
    smoothing: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 2, 2)))  # (P, 3, 2, 2) ROI filter state
    guides: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (G, 4) ROIs handed in for next frame
    frames: int = 0
    lost: bool = False      # a tracked person vanished on the last frame: look for them again


def wheel_model_files() -> dict[str, Path]:
    """The detector and landmark .tflite files inside the installed mediapipe wheel (not imported)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("the blazepose backend uses the weights in mediapipe==0.10.14's wheel: "
                                 "pip install 'hpe_ros[mediapipe,blazepose]' (or set the model file paths)")
    root = Path(list(spec.submodule_search_locations)[0]) / "modules"
    return {role: root / folder / name for role, (folder, name) in _WHEEL_FILES.items()}


def _open_network(tflite_path: Path, runtime: str, options: dict, outputs: tuple[str, ...]):
    if runtime == "tflite":
        return create_runner("tflite", str(tflite_path), threads=options.get("threads", 0))
    from hpe_ros.runtime.tflite_to_onnx import converted_onnx

    try:
        onnx_path = converted_onnx(tflite_path, outputs=outputs)
    except ImportError as exc:
        raise BackendUnavailable(str(exc)) from exc
    return create_runner(runtime, str(onnx_path), **options)


def create_blazepose_backend(runtime: str = "onnxruntime", detector_file_path: str = "", model_file_path: str = "",
                             config: dict | None = None, **runtime_options) -> BlazePoseBackend:
    """A BlazePoseBackend on `runtime` (onnxruntime | tflite | tensorrt).

    detector_file_path / model_file_path: the .tflite files (default: mediapipe's wheel); config:
    BlazePoseConfig fields; runtime_options go to the runner (providers, threads; engine options, or
    engine_file_path / detector_engine_file_path for TensorRT).
    """
    runtime = str(runtime).strip().lower()
    if runtime not in BLAZEPOSE_RUNTIMES:
        raise ValueError(f"blazepose runtime must be one of {', '.join(BLAZEPOSE_RUNTIMES)}, got {runtime!r}")
    files = wheel_model_files() if not (detector_file_path and model_file_path) else {}
    detector = Path(detector_file_path or files["detector"])
    landmark = Path(model_file_path or files["landmark"])
    for path in (detector, landmark):
        if not path.is_file():
            raise FileNotFoundError(f"blazepose: model file {str(path)!r} not found")
    det_options, lm_options = dict(runtime_options), dict(runtime_options)
    det_options["engine_file_path"] = det_options.pop("detector_engine_file_path", "")
    lm_options.pop("detector_engine_file_path", None)
    if runtime != "tensorrt":
        for opts in (det_options, lm_options):
            opts.pop("engine_file_path", None)
    cfg = config_from_mapping(BlazePoseConfig, config or {}, "blazepose")
    backend = BlazePoseBackend(_open_network(detector, runtime, det_options, DETECTOR_OUTPUTS),
                               _open_network(landmark, runtime, lm_options, LANDMARK_OUTPUTS), cfg)
    backend.weights = f"{detector.name} + {landmark.name}" + (" (mediapipe's wheel)" if files else "")
    return backend


class BlazePoseBackend:
    """PoseBackend over two runners whose outputs carry the .tflite names: detector DETECTOR_OUTPUTS
    (boxes (B, 2254, 12), scores (B, 2254, 1)), landmarks LANDMARK_OUTPUTS (landmarks (B, 195), presence
    (B, 1), heatmaps (B, 64, 64, 39)); other outputs are ignored."""

    layout = "blazepose33"

    def __init__(self, detector_runner, landmark_runner, config: BlazePoseConfig | None = None):
        self.detector, self.landmarks = detector_runner, landmark_runner
        self.config = config or BlazePoseConfig()
        self.name = f"blazepose[{landmark_runner.name}]"
        self.weights = ""                          # which model files run, for the user (set by the factory)
        self.anchors = bp.ssd_anchors()
        self._streams: dict[str, _Stream] = {}
        self.last_timings: dict[str, float] = {}   # the last infer(): detect_ms, landmarks_ms, people (crops),
                                                   # guided (ROIs), detected (cameras that ran the detector)

    def infer(self, images: list[np.ndarray], streams: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """images: BGR uint8 (H, W, 3); streams: camera names -> per image (points (P, 33, 2) px, scores (P, 33))."""
        if len(images) != len(streams):
            raise ValueError(f"{len(images)} images but {len(streams)} stream names")
        images = [_check_image(im, k) for k, im in enumerate(images)]
        state = [self._streams.setdefault(s, _Stream()) for s in streams]
        detect = [self._detector_due(st) for st in state]
        t0 = time.perf_counter()
        found = self.detect_people([im for im, d in zip(images, detect) if d], order="bgr")
        t1 = time.perf_counter()
        rois, smoothing, tracked = [], [], []
        guided = 0
        for st, d in zip(state, detect):
            new = _newcomers(st.rois, found.pop(0) if d else np.zeros((0, 4)), self.config.same_person_iou)
            known = np.concatenate([st.rois, new])
            guides = _newcomers(known, st.guides, self.config.same_person_iou)
            st.guides, guided = np.zeros((0, 4)), guided + len(guides)
            rois.append(np.concatenate([known, guides]))
            smoothing.append(np.concatenate([st.smoothing, np.full((len(new) + len(guides), 3, 2, 2), np.nan)]))
            tracked.append(len(st.rois))
        points, visibility, presence, aux = self.landmarks_in_rois(images, rois, order="bgr")
        self.last_timings = {"detect_ms": (t1 - t0) * 1e3, "landmarks_ms": (time.perf_counter() - t1) * 1e3,
                             "people": float(sum(len(r) for r in rois)), "guided": float(guided),
                             "detected": float(sum(detect))}
        out = []
        for k, st in enumerate(state):
            aux_smooth, smooth_state = bp.smooth_alignment(aux[k], smoothing[k])
            next_rois = bp.rois_from_alignment(aux_smooth[:, 0], aux_smooth[:, 1])
            keep = _keep_people(presence[k], next_rois, points[k], visibility[k], self.config)
            st.lost = bool((presence[k][:tracked[k]] < self.config.min_presence).any())
            st.rois, st.smoothing, st.frames = next_rois[keep], smooth_state[keep], st.frames + 1
            out.append((points[k][keep].astype(np.float64), visibility[k][keep].astype(np.float64)))
        return out

    def _detector_due(self, st: _Stream) -> bool:
        return not len(st.rois) or st.lost or st.frames % self.config.detect_every == 0

    def detect_people(self, images: list[np.ndarray], order: str = "rgb") -> list[np.ndarray]:
        """Images (H, W, 3) uint8 in channel `order` ("rgb" or "bgr") -> per image the detected people's
        ROIs (P, 4) image px, best first."""
        if not images:
            return []
        affines = np.stack([bp.letterbox_affine((im.shape[1], im.shape[0])) for im in images])
        crops = _warp(images, affines, bp.DETECTOR_SIZE, cv2.BORDER_CONSTANT)
        batch = _network_input(crops, order, scale=2 / 255, offset=-1.0)
        raw_boxes, raw_scores = _named(self.detector, batch, DETECTOR_OUTPUTS)
        per_image = bp.decode_detections(raw_boxes, raw_scores, self.anchors, self.config.min_detection_score)
        out = []
        for (scores, boxes, keypoints), affine in zip(per_image, affines):
            scores, boxes, keypoints = bp.weighted_nms(scores, boxes, keypoints, self.config.nms_iou)
            inverse = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2]
            kp = keypoints @ inverse[:, :2].T + inverse[:, 2]
            out.append(bp.rois_from_alignment(kp[:, 0], kp[:, 1])[: self.config.max_people])
        return out

    def landmarks_in_rois(self, images: list[np.ndarray], rois: list[np.ndarray], order: str = "rgb"):
        """Landmarks of every ROI (P, 4) of every image ((H, W, 3) uint8 in channel `order`) in one network call.

        Returns per image: points (P, 33, 2) px, visibility (P, 33), pose presence (P,), and the alignment
        points (P, 2, 2) px (hip centre, body-scale point) that place the next ROI.
        """
        counts = [len(r) for r in rois]
        if not sum(counts):
            nobody = (np.zeros((0, bp.NUM_LANDMARKS, 2)), np.zeros((0, bp.NUM_LANDMARKS)), np.zeros(0),
                      np.zeros((0, 2, 2)))
            return tuple([part] * len(images) for part in nobody)
        all_rois = np.concatenate(rois)
        affines = bp.roi_affines(all_rois)
        index = np.repeat(np.arange(len(images)), counts)
        crops = _warp([images[i] for i in index], affines, bp.LANDMARK_SIZE, cv2.BORDER_REPLICATE)
        raw, pose_presence, heatmaps = _named(self.landmarks, _network_input(crops, order, scale=1 / 255),
                                              LANDMARK_OUTPUTS)
        xy, visibility, _ = bp.decode_landmarks(raw, heatmaps if self.config.heatmap_refine else None)
        px = bp.crop_to_image(xy, all_rois)
        split = np.cumsum(counts)[:-1]
        return (np.split(px[:, :bp.NUM_LANDMARKS], split), np.split(visibility[:, :bp.NUM_LANDMARKS], split),
                np.split(pose_presence.reshape(-1), split), np.split(px[:, [bp.HIP_CENTER, bp.SCALE_POINT]], split))

    def warm_up(self, cameras: int) -> dict[str, list[int]]:
        """Run both networks at start-up on every batch size they will see for `cameras` images per call
        (detector: up to `cameras`; landmarks: up to cameras x max_people ROIs), so the runtimes' memory
        reaches its ceiling now (OnnxRuntimeRunner.warm_up). Returns the batch sizes run per network."""
        return {"detector": warm_up_runner(self.detector, cameras),
                "landmarks": warm_up_runner(self.landmarks, cameras * self.config.max_people)}

    def guide(self, stream: str, rois: np.ndarray) -> None:
        """ROIs (G, 4) cx, cy, size, angle image px where `stream`'s next frame should also look (replacing
        earlier ones not yet used); those not overlapping a tracked or detected person are landmarked and kept
        like detections (dropped when the pose-presence score says nobody is there)."""
        rois = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
        self._streams.setdefault(stream, _Stream()).guides = rois[np.isfinite(rois).all(1) & (rois[:, 2] > 0)]

    def tracked_rois(self, stream: str) -> np.ndarray:
        """(P, 4) the ROIs `stream`'s next frame will look at for the people it tracks."""
        st = self._streams.get(stream)
        return np.zeros((0, 4)) if st is None else st.rois.copy()

    def reset(self, stream: str | None = None) -> None:
        """Forget tracked people (of one stream, or all)."""
        if stream is None:
            self._streams.clear()
        else:
            self._streams.pop(stream, None)

    def close(self) -> None:
        for runner in (self.detector, self.landmarks):
            runner.close()
        self._streams.clear()


def _named(runner, batch: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
    """The runner's outputs `names`, in that order."""
    outputs = dict(zip(runner.output_names, runner.run(batch)))
    return [outputs[n] for n in names]


def _check_image(image, k: int) -> np.ndarray:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            and min(image.shape[:2]) > 0):
        raise ValueError(f"images[{k}] must be a BGR (H, W, 3) uint8 array; got "
                         f"{getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}")
    return image


def _warp(images: list[np.ndarray], affines: np.ndarray, size: int, border: int) -> np.ndarray:
    """(N, size, size, 3) uint8 crops, one cv2.warpAffine (bilinear) per image/affine pair."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for k, (image, affine) in enumerate(zip(images, affines)):
        cv2.warpAffine(image, affine, (size, size), dst=out[k], flags=cv2.INTER_LINEAR, borderMode=border,
                       borderValue=(0, 0, 0))
    return out


def _network_input(crops: np.ndarray, order: str, scale: float, offset: float = 0.0) -> np.ndarray:
    """(N, S, S, 3) uint8 crops in channel `order` -> (N, 3, S, S) float32 RGB, value * scale + offset,
    written in one pass (no full-image channel swap, no intermediate copies)."""
    if order not in ("rgb", "bgr"):
        raise ValueError(f"channel order must be 'rgb' or 'bgr', got {order!r}")
    planes = crops.transpose(0, 3, 1, 2)
    out = np.empty(planes.shape, dtype=np.float32)
    np.multiply(planes[:, ::-1] if order == "bgr" else planes, np.float32(scale), out=out)
    if offset:
        out += np.float32(offset)
    return out


def _newcomers(tracked: np.ndarray, detected: np.ndarray, same_iou: float) -> np.ndarray:
    """The detected ROIs (D, 4) whose squares overlap no tracked person's (P, 4) by more than `same_iou`."""
    if not len(tracked) or not len(detected):
        return detected
    boxes = bp.roi_boxes(tracked)
    new = [roi for roi, box in zip(detected, bp.roi_boxes(detected)) if box_iou(box, boxes).max() <= same_iou]
    return np.reshape(new, (-1, 4))


def _keep_people(presence: np.ndarray, rois: np.ndarray, points: np.ndarray, visibility: np.ndarray,
                 cfg: BlazePoseConfig) -> np.ndarray:
    """Indices of the people to report and track: present, not duplicates of a more present one, capped.

    presence (P,); rois (P, 4) next ROIs; points (P, 33, 2) px, visibility (P, 33) this frame's landmarks.
    """
    keep: list[int] = []
    boxes = bp.roi_boxes(rois)
    for i in np.argsort(-presence, kind="stable"):
        if presence[i] < cfg.min_presence or len(keep) >= cfg.max_people or not np.isfinite(rois[i]).all():
            continue
        if any(_same_person(i, j, boxes, rois, points, visibility, cfg) for j in keep):
            continue
        keep.append(int(i))
    return np.array(sorted(keep), dtype=np.int64)


def _same_person(i: int, j: int, boxes: np.ndarray, rois: np.ndarray, points: np.ndarray, visibility: np.ndarray,
                 cfg: BlazePoseConfig, min_shared: int = 4) -> bool:
    """People i and j are one: their ROI squares overlap more than `same_person_iou`, or their landmarks (at
    least `min_shared` that both see) lie closer (median) than `same_person_distance` of the smaller ROI side
    (one person followed by two ROIs of different sizes, whose squares overlap little)."""
    if box_iou(boxes[i], boxes[j:j + 1])[0] > cfg.same_person_iou:
        return True
    shared = (visibility[i] >= 0.5) & (visibility[j] >= 0.5)
    if shared.sum() < min_shared:
        return False
    distance = np.median(np.linalg.norm(points[i][shared] - points[j][shared], axis=1))
    return bool(distance < cfg.same_person_distance * min(rois[i, 2], rois[j, 2]))
