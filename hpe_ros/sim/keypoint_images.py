"""Synthetic camera images in which every joint is a dot of its own grey level ("coded dots").

They exercise the image half of the pipeline (video files, image topics, crops, a real network, decoding)
with ground truth, without a pretrained model: `hpe_ros.sim.keypoint_net` is the small convolutional
network that finds these dots again. Joint j of a layout with J joints is drawn with grey level
`dot_codes(J)[j]`; nearer joints are drawn last so they hide farther ones as a body would.

    >>> image = render_keypoint_dots(pixels, depth, size=(640, 480))   # pixels (P, J, 2), depth (P, J)
"""
from __future__ import annotations

import cv2
import numpy as np

from hpe_ros.checks import check_shape

FIRST_CODE = 24.0
CODE_STEP = 13.0   # grey levels between joints: survives lossy video codecs (measured shifts of about 4)


def dot_codes(num_joints: int) -> np.ndarray:
    """(J,) grey level of each joint's dot (24, 37, 50, ...; 17 joints stay below 255)."""
    codes = FIRST_CODE + CODE_STEP * np.arange(num_joints)
    if codes[-1] > 250:
        raise ValueError(f"{num_joints} joints do not fit in 8-bit grey levels {CODE_STEP} apart")
    return codes


def render_keypoint_dots(pixels: np.ndarray, depth: np.ndarray | None = None, size: tuple[int, int] = (640, 480),
                         radius: float = 5.0, background: int = 0) -> np.ndarray:
    """Draw people's joints as coded dots; returns a BGR uint8 (H, W, 3) image.

    pixels: (P, J, 2) px (NaN = not visible); depth: (P, J) metres along the optical axis (larger is
    farther; None draws in index order); radius in px. Dots are drawn without anti-aliasing so their
    grey levels stay exact.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    check_shape("pixels", pixels, ("P", "J", 2))
    P, J, _ = pixels.shape
    codes = dot_codes(J)
    w, h = (int(v) for v in size)
    image = np.full((h, w, 3), background, dtype=np.uint8)
    order_key = np.zeros((P, J)) if depth is None else -np.asarray(depth, dtype=np.float64)
    flat = pixels.reshape(-1, 2)
    keys = np.nan_to_num(order_key.reshape(-1), nan=np.inf)
    # Shift 4 bits of sub-pixel precision into cv2.circle so dot centres are not rounded to whole pixels.
    shift = 4
    for k in np.argsort(keys, kind="stable"):  # farthest first; a loop over ~100 dots per image
        x, y = flat[k]
        if not (np.isfinite(x) and np.isfinite(y)) or not (-radius <= x < w + radius and -radius <= y < h + radius):
            continue
        centre = (int(round(x * (1 << shift))), int(round(y * (1 << shift))))
        grey = int(codes[k % J])
        cv2.circle(image, centre, int(round(radius * (1 << shift))), (grey, grey, grey), -1, cv2.LINE_8, shift)
    return image
