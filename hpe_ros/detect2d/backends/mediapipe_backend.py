"""MediaPipe BlazePose (the models bundled in mediapipe==0.10.14's wheel; runs offline on the CPU).

Single person per image (BlazePose tracks one person per stream); output layout blazepose33.
The wheel bundles only the "full" landmark model (model_complexity 1); lite (0) and heavy (2) are
downloaded by mediapipe on first use, which needs the network: without their files they are refused here
with a clear message instead of failing inside mediapipe.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hpe_ros.detect2d.quiet import native_stderr_filtered
from hpe_ros.runtime import BackendUnavailable

_LANDMARK_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


class MediaPipeBackend:
    name = "mediapipe"
    layout = "blazepose33"

    def __init__(self, model_complexity: int = 1, min_detection_confidence: float = 0.5, **_ignored):
        try:
            import mediapipe as mp
        except ImportError as exc:
            raise BackendUnavailable(
                "the mediapipe backend needs mediapipe==0.10.14 (its wheel bundles the BlazePose weights): "
                "pip install 'hpe_ros[mediapipe]'") from exc
        self._mp = mp
        self.model_complexity = int(model_complexity)
        if self.model_complexity not in _LANDMARK_MODELS:
            raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity}")
        landmark = Path(mp.__file__).parent / "modules" / "pose_landmark" / _LANDMARK_MODELS[self.model_complexity]
        if not landmark.is_file():
            raise BackendUnavailable(
                f"mediapipe model_complexity {self.model_complexity} needs {landmark.name}, which mediapipe's wheel "
                f"does not bundle (only complexity 1 is) and would download from the internet; place the file at "
                f"{landmark} or use model_complexity 1")
        self.min_detection_confidence = float(min_detection_confidence)
        self._trackers: dict[str, object] = {}

    def _tracker(self, stream: str):
        if stream not in self._trackers:  # one tracker per camera: BlazePose keeps state between frames
            self._trackers[stream] = self._mp.solutions.pose.Pose(
                static_image_mode=False, model_complexity=self.model_complexity,
                min_detection_confidence=self.min_detection_confidence)
        return self._trackers[stream]

    def infer(self, images, streams):
        out = []
        for image, stream in zip(images, streams):
            h, w = image.shape[:2]
            rgb = np.ascontiguousarray(image[..., ::-1])
            if stream in self._trackers:
                result = self._trackers[stream].process(rgb)
            else:
                with native_stderr_filtered():  # a graph's first frame: LiteRT and absl start-up chatter
                    result = self._tracker(stream).process(rgb)
            if result.pose_landmarks is None:
                out.append((np.zeros((0, 33, 2)), np.zeros((0, 33))))
                continue
            lm = np.array([[p.x * w, p.y * h, p.visibility] for p in result.pose_landmarks.landmark])
            out.append((lm[None, :, :2], np.clip(lm[None, :, 2], 0.0, 1.0)))
        return out

    def close(self):
        for t in self._trackers.values():
            t.close()
        self._trackers.clear()
