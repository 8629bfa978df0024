"""2D pose backends behind one interface: a batch of BGR images in, per-image keypoints out."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class BackendUnavailable(RuntimeError):
    """The backend's runtime is not installed or cannot run here (message says how to get it)."""


class PoseBackend(Protocol):
    name: str
    layout: str  # joint layout of the keypoints it returns

    def infer(self, images: list[np.ndarray], streams: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """images: BGR uint8 (H, W, 3) each; streams: camera names (backends may keep per-stream state).

        Returns per image (points (P, J, 2) px, scores (P, J) in [0, 1]).
        """


def create_backend(name: str, **options) -> PoseBackend:
    if name == "mediapipe":
        from hpe_ros.detect2d.backends.mediapipe_backend import MediaPipeBackend

        return MediaPipeBackend(**options)
    raise BackendUnavailable(f"unknown 2D backend '{name}'; available now: mediapipe "
                             "(tensorrt, onnxruntime and torch come with the 2D inference work)")
