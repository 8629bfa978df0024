"""Top-down crop preprocessing: person boxes -> affine crops -> normalised network input; letterboxing.

Coordinate conventions (shared with :mod:`hpe_ros.detect2d.decode`):

- Image, crop and network-input coordinates are pixel coordinates (x right, y down) in which the
  centre of pixel ``(i, j)`` (column i, row j) sits at ``(i, j)``; this is what ``cv2.warpAffine``
  uses, so a point mapped by an affine from here lands on the crop pixel that samples it.
- ``center``/``scale`` follow mmpose: ``center`` (x, y) image px, ``scale`` = (w, h) of the crop region
  in image px. The default (non-UDP) affine maps ``center`` to ``(w/2, h/2)`` of the input and the
  region's size onto the whole input, exactly as mmpose's ``get_warp_matrix`` (the models were trained
  with it). ``udp=True`` follows mmpose's ``get_udp_warp_matrix`` instead (region edges -> pixels 0 and
  w-1), for models trained with UDP; decode those with ``heatmap_to_input(..., udp=True)``.
- To map decoded keypoints (network-input px) back to the image:
  ``apply_affines(points, invert_affines(affines))``.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hpe_ros.checks import check_shape

# mmpose / ImageNet normalisation in 0-255 units, RGB order.
MMPOSE_MEAN = (123.675, 116.28, 103.53)
MMPOSE_STD = (58.395, 57.12, 57.375)


def _size2(size, name: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (width, height); got {size!r}") from None
    if w < 1 or h < 1:
        raise ValueError(f"{name} must be positive (width, height); got {size!r}")
    return w, h


def _check_image(name: str, image) -> None:
    """An (H, W, 3) uint8 numpy image, or ValueError naming what arrived."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8):
        got = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name} must be an (H, W, 3) uint8 array; got {got}")
    check_shape(name, image, ("H", "W", 3))


def boxes_to_center_scale(boxes: np.ndarray, aspect: float, padding: float = 1.25,
                          min_size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes -> crop centre and size with the network's aspect ratio (mmpose ``bbox_xyxy2cs``).

    Args:
        boxes: (N, 4) x0, y0, x1, y1 in image px (x1 >= x0, y1 >= y0; NaN rows propagate).
        aspect: network input width / height (e.g. 192/256).
        padding: box size is multiplied by this (context around the person).
        min_size: floor on each side of the region in px, so degenerate boxes still give an invertible crop.

    Returns:
        center: (N, 2) image px; scale: (N, 2) region (w, h) in image px with w / h == aspect.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    check_shape("boxes (x0, y0, x1, y1)", boxes, ("N", 4))
    if not (np.isfinite(aspect) and aspect > 0):
        raise ValueError(f"aspect (input width / height) must be positive; got {aspect}")
    center = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    wh = (boxes[:, 2:] - boxes[:, :2]) * padding
    if np.any(wh < 0):
        raise ValueError("boxes must be x0, y0, x1, y1 with x1 >= x0 and y1 >= y0")
    wh = np.maximum(wh, min_size)  # NaN stays NaN
    w, h = wh[:, 0], wh[:, 1]
    # Grow the shorter side (relative to the aspect) so the region has the network's aspect ratio.
    wider = w > h * aspect
    scale = np.stack([np.where(wider, w, h * aspect), np.where(wider, w / aspect, h)], axis=1)
    return center, scale


def crop_affines(center: np.ndarray, scale: np.ndarray, input_size: Sequence[int],
                 rotation_deg: np.ndarray | None = None, udp: bool = False) -> np.ndarray:
    """Affine transforms image px -> network-input px, one per crop.

    The region of size ``scale`` around ``center`` fills the whole input. With ``rotation_deg`` the
    region is rotated about its centre in mmpose's sense: the crop's "up" direction is
    ``R(rot) @ (0, -1)`` in the image, with ``R`` the usual rotation matrix in (x right, y down) px.

    Args:
        center: (N, 2) image px.
        scale: (N, 2) region (w, h) in image px, > 0.
        input_size: (w, h) of the network input.
        rotation_deg: optional (N,) degrees.
        udp: mmpose's unbiased data processing: region edges map to pixel centres 0 and w-1.

    Returns:
        (N, 2, 3) float64 affines A with ``crop = A[:, :, :2] @ p + A[:, :, 2]``.
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    dims = check_shape("center", center, ("N", 2))
    check_shape("scale", scale, ("N", 2), dims)
    if np.any(scale <= 0):
        raise ValueError("scale (crop region w, h) must be positive")
    w, h = _size2(input_size, "input_size")
    n = len(center)
    if udp:
        s = np.array([w - 1.0, h - 1.0]) / scale
        dst_center = np.array([w - 1.0, h - 1.0]) / 2.0
    else:
        s = np.array([w, h], dtype=np.float64) / scale
        dst_center = np.array([w / 2.0, h / 2.0])
    if rotation_deg is None:
        lin = np.zeros((n, 2, 2))
        lin[:, 0, 0], lin[:, 1, 1] = s[:, 0], s[:, 1]
    else:
        rot = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
        check_shape("rotation_deg", rot, ("N",), dims)
        c, sn = np.cos(rot), np.sin(rot)
        # diag(s) @ R(-rot): undo the region's rotation, then scale to the input.
        lin = np.stack([np.stack([c, sn], -1), np.stack([-sn, c], -1)], axis=1) * s[:, :, None]
    affines = np.empty((n, 2, 3))
    affines[:, :, :2] = lin
    affines[:, :, 2] = dst_center - np.einsum("nij,nj->ni", lin, center)
    return affines


def invert_affines(affines: np.ndarray) -> np.ndarray:
    """Invert affine transforms. affines: (N, 2, 3) -> (N, 2, 3)."""
    affines = np.asarray(affines, dtype=np.float64)
    check_shape("affines", affines, ("N", 2, 3))
    a, b, c, d = affines[:, 0, 0], affines[:, 0, 1], affines[:, 1, 0], affines[:, 1, 1]
    det = a * d - b * c
    bad = ~(np.abs(det) > 1e-300)
    if np.any(bad):
        raise ValueError(f"affines {np.flatnonzero(bad).tolist()} are singular and cannot be inverted")
    inv = np.empty_like(affines)
    inv[:, 0, 0], inv[:, 0, 1] = d / det, -b / det
    inv[:, 1, 0], inv[:, 1, 1] = -c / det, a / det
    inv[:, :, 2] = -np.einsum("nij,nj->ni", inv[:, :, :2], affines[:, :, 2])
    return inv


def apply_affines(points: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Map points through per-crop affines. points: (N, J, 2), affines: (N, 2, 3) -> (N, J, 2); NaN stays NaN."""
    points = np.asarray(points, dtype=np.float64)
    affines = np.asarray(affines, dtype=np.float64)
    dims = check_shape("points", points, ("N", "J", 2))
    check_shape("affines (one per row of points)", affines, ("N", 2, 3), dims)
    return points @ affines[:, :, :2].transpose(0, 2, 1) + affines[:, None, :, 2]


def warp_crops(images: Sequence[np.ndarray], image_index: np.ndarray, affines: np.ndarray,
               input_size: Sequence[int]) -> np.ndarray:
    """Cut one crop per person with ``cv2.warpAffine`` (bilinear, black border).

    Args:
        images: list of (H, W, 3) uint8 images (any channel order; it is kept).
        image_index: (N,) int, which image each crop comes from.
        affines: (N, 2, 3) image px -> crop px (from :func:`crop_affines`).
        input_size: (w, h) of the crops.

    Returns:
        (N, h, w, 3) uint8; (0, h, w, 3) when N == 0.
    """
    w, h = _size2(input_size, "input_size")
    image_index = np.asarray(image_index).reshape(-1)
    affines = np.asarray(affines, dtype=np.float64)
    check_shape("affines (one per image_index)", affines, ("N", 2, 3), {"N": len(image_index)})
    if len(image_index) and (image_index.min() < 0 or image_index.max() >= len(images)):
        raise ValueError(f"image_index must lie in [0, {len(images)}); got {image_index.min()}..{image_index.max()}")
    for k, im in enumerate(images):
        _check_image(f"images[{k}]", im)
    images = [np.ascontiguousarray(im) for im in images]  # OpenCV rejects e.g. channel-reversed views
    out = np.empty((len(image_index), h, w, 3), dtype=np.uint8)
    # One warpAffine per crop: OpenCV has no batched warp, and each call is a few tens of microseconds.
    for k, (i, a) in enumerate(zip(image_index, affines)):
        cv2.warpAffine(images[int(i)], a, (w, h), dst=out[k], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out


def to_network_input(crops: np.ndarray, mean: Sequence[float] = MMPOSE_MEAN, std: Sequence[float] = MMPOSE_STD,
                     color: str = "rgb") -> np.ndarray:
    """BGR uint8 crops -> normalised NCHW float32 network input.

    Args:
        crops: (N, h, w, 3) uint8, BGR (OpenCV order).
        mean, std: 3-vectors in 0-255 units, in the model's colour order (mmpose: RGB, see MMPOSE_MEAN/STD).
        color: "rgb" when the network expects RGB (channels are swapped), "bgr" when it expects BGR.

    Returns:
        (N, 3, h, w) float32, C-contiguous: ``(crop[..., c] - mean[c]) / std[c]`` in the model's order.
    """
    crops = np.asarray(crops)
    check_shape("crops", crops, ("N", "h", "w", 3))
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    if mean.shape != (3,) or std.shape != (3,) or np.any(std == 0):
        raise ValueError(f"mean and std must be 3-vectors with std != 0; got {mean.tolist()}, {std.tolist()}")
    color = color.lower()
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr'; got {color!r}")
    src = (2, 1, 0) if color == "rgb" else (0, 1, 2)
    n, h, w, _ = crops.shape
    out = np.empty((n, 3, h, w), dtype=np.float32)
    inv_std = 1.0 / std
    # Per channel: one strided read, two in-place float32 ops; no full-size temporaries.
    for c in range(3):
        np.subtract(crops[..., src[c]], mean[c], out=out[:, c], dtype=np.float32)
        out[:, c] *= inv_std[c]
    return out


def letterbox(image: np.ndarray, input_size: Sequence[int], pad_value: int = 114) -> tuple[np.ndarray, float]:
    """YOLOX-style resize keeping aspect ratio, image at the top-left, the rest filled with ``pad_value``.

    Args:
        image: (H, W, 3) uint8.
        input_size: (w, h) of the detector input.

    Returns:
        padded: (h, w, 3) uint8; scale: float, with image px = letterbox px / scale.
    """
    _check_image("image", image)
    w, h = _size2(input_size, "input_size")
    ih, iw = image.shape[:2]
    if ih < 1 or iw < 1:
        raise ValueError(f"image is empty: {image.shape}")
    scale = min(w / iw, h / ih)
    # Floor like YOLOX's preproc (the epsilon only absorbs float error in e.g. 640 / 1280 * 1280).
    rw, rh = max(1, min(w, int(iw * scale + 1e-6))), max(1, min(h, int(ih * scale + 1e-6)))
    padded = np.full((h, w, 3), pad_value, dtype=np.uint8)
    if (rw, rh) == (iw, ih):
        padded[:ih, :iw] = image
    else:
        padded[:rh, :rw] = cv2.resize(np.ascontiguousarray(image), (rw, rh), interpolation=cv2.INTER_LINEAR)
    return padded, float(scale)
