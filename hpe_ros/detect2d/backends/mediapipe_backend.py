"""MediaPipe BlazePose (the models bundled in mediapipe==0.10.14's wheel; runs offline on the CPU).

Single person per image (BlazePose tracks one person per stream); output layout blazepose33.
"""
from __future__ import annotations

import numpy as np

from hpe_ros.detect2d.backends import BackendUnavailable


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
            result = self._tracker(stream).process(np.ascontiguousarray(image[..., ::-1]))  # BGR -> RGB
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
