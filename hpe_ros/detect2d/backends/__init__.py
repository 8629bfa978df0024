"""2D pose backends behind one interface: a batch of BGR images in, per-image keypoints out.

- "mediapipe": BlazePose from mediapipe==0.10.14's wheel (one person per camera, CPU, no model files).
- "blazepose": the same BlazePose networks, several people per camera, on onnxruntime | tflite | tensorrt
  (`runtime`; hpe_ros.detect2d.blazepose).
- "onnxruntime", "tensorrt", "torch": the top-down pipeline (hpe_ros.detect2d.topdown) around a pose
  network described by a model manifest (models/*.toml), optionally with a person detector; the runtime
  runs both networks (hpe_ros.runtime).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from hpe_ros.runtime import RUNTIMES, BackendUnavailable
from hpe_ros.skeleton import convert, convert_scores


class PoseBackend(Protocol):
    name: str
    layout: str  # joint layout of the keypoints it returns

    def infer(self, images: list[np.ndarray], streams: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """images: BGR uint8 (H, W, 3) each; streams: camera names (backends may keep per-stream state).

        Returns per image (points (P, J, 2) px, scores (P, J) in [0, 1]).
        """


NETWORK_BACKENDS = RUNTIMES
BACKENDS = ("mediapipe", "blazepose") + NETWORK_BACKENDS


def _network(runtime: str, manifest_ref: str, file_override: str, role: str, options: dict):
    """(runner, manifest) for one network: the manifest says how to feed it, the file is the weights."""
    from hpe_ros.detect2d.manifest import load_manifest, resolve_model_file
    from hpe_ros.runtime import create_runner

    manifest = load_manifest(manifest_ref)
    path = file_override or resolve_model_file(manifest)
    if not path:
        raise BackendUnavailable(f"{role} model {manifest.name}: no local file; run `hpe-ros models fetch "
                                 f"{manifest.name}` or set the file path parameter")
    return create_runner(runtime, str(path), **options), manifest


def create_backend(name: str, *, model: str = "", model_file_path: str = "", detector: str = "",
                   detector_file_path: str = "", engine_file_path: str = "", detector_engine_file_path: str = "",
                   force_engine_update: bool = False, enable_fp16: bool = True, max_batch: int = 8,
                   providers: str = "auto", threads: int = 0, device: str = "auto", topdown: dict | None = None,
                   runtime: str = "onnxruntime", blazepose: dict | None = None, **mediapipe_options) -> PoseBackend:
    """A 2D pose backend by name (see the module docstring).

    Network backends: `model` = manifest name (models/NAME.toml) or path to a manifest .toml;
    `model_file_path` overrides where its weights are (ONNX; TorchScript for "torch"); `detector` likewise
    ("" = no detector: the whole image is one person); TensorRT takes Isaac ROS's `engine_file_path`,
    `force_engine_update`, `enable_fp16`; `topdown`: TopDownConfig fields. `max_batch`: TensorRT's profile;
    onnxruntime splits larger batches (also blazepose's), which bounds the shapes its memory arena sees.
    "blazepose": `runtime` (onnxruntime | tflite | tensorrt), `blazepose`: BlazePoseConfig fields; the
    file paths override the .tflite files taken from mediapipe's wheel.
    """
    if name == "mediapipe":
        from hpe_ros.detect2d.backends.mediapipe_backend import MediaPipeBackend

        return MediaPipeBackend(**mediapipe_options)
    if name == "blazepose":
        from hpe_ros.detect2d.blazepose import create_blazepose_backend

        runtime_options = {
            "onnxruntime": dict(providers=providers, threads=threads, max_batch=max_batch),
            "tflite": dict(threads=threads),
            "tensorrt": dict(engine_file_path=engine_file_path, detector_engine_file_path=detector_engine_file_path,
                             force_engine_update=force_engine_update, enable_fp16=enable_fp16, max_batch=max_batch)}
        return create_blazepose_backend(runtime, detector_file_path=detector_file_path,
                                        model_file_path=model_file_path, config=blazepose,
                                        **runtime_options.get(str(runtime).strip().lower(), {}))
    if name not in NETWORK_BACKENDS:
        raise BackendUnavailable(f"unknown 2D backend {name!r}; available: {', '.join(BACKENDS)}")
    if not model:
        raise BackendUnavailable(f"the {name} backend needs a pose model: set `model` to a manifest name "
                                 "(see `hpe-ros models list`) or a manifest .toml path")
    from hpe_ros.detect2d.topdown import TopDownConfig, TopDownPoseBackend

    def runtime_options(engine_path: str) -> dict:
        if name == "onnxruntime":  # max_batch bounds the shapes one run sees, so its memory arena settles early
            return {"providers": providers, "threads": threads, "max_batch": max_batch}
        if name == "tensorrt":
            return {"engine_file_path": engine_path, "force_engine_update": force_engine_update,
                    "enable_fp16": enable_fp16, "max_batch": max_batch}
        return {"device": device}

    pose = _network(name, model, model_file_path, "pose", runtime_options(engine_file_path))
    det = (None, None)
    if detector:
        det = _network(name, detector, detector_file_path, "detector", runtime_options(detector_engine_file_path))
    return TopDownPoseBackend(pose[0], pose[1], det[0], det[1], TopDownConfig(**(topdown or {})))


def keypoints_in_layout(points: np.ndarray, scores: np.ndarray, layout: str, out_layout: str,
                        min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """A backend's keypoints in `out_layout`, with missing joints marked by score 0.

    points: (P, J, 2) px and scores: (P, J) in the backend's `layout` → (P, J', 2), (P, J') in `out_layout`;
    a joint scores 0 when it is below `min_score`, NaN or not finite; other scores are clipped to [0, 1].
    """
    points = convert(points, layout, out_layout)
    scores = np.nan_to_num(convert_scores(scores, layout, out_layout), nan=0.0)
    scores = np.where((scores >= min_score) & np.isfinite(points).all(axis=-1), np.clip(scores, 0, 1), 0.0)
    return points, scores
