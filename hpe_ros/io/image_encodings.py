"""ROS image encodings <-> numpy, on plain fields and bytes (no ROS): what a sensor_msgs Image or
CompressedImage carries, whoever built the message (rclpy live, rosbags from a bag file).

Decoding gives what the 2D pose stage consumes: BGR uint8 (H, W, 3) for colour encodings (alpha
dropped, YUV converted and Bayer mosaics demosaiced with OpenCV; 16-bit Bayer scaled by 1/257),
(H, W) uint8 for mono8/8UC1 and (H, W) uint16 for mono16/16UC1. Row padding (`step`) and 16-bit byte
order are honoured; anything malformed raises ImageError (a ValueError).

    >>> bgr = decode_image("bayer_rggb8", height, width, step, False, data)
    >>> bgr = decode_compressed("jpeg", data)
"""
from __future__ import annotations

import cv2
import numpy as np


class ImageError(ValueError):
    """An image that cannot be converted (unknown encoding, wrong size, undecodable data)."""


# encoding -> (channels in the message, bytes per channel)
LAYOUT = {
    "bgr8": (3, 1), "rgb8": (3, 1), "bgra8": (4, 1), "rgba8": (4, 1), "8UC3": (3, 1), "8UC4": (4, 1),
    "mono8": (1, 1), "8UC1": (1, 1), "mono16": (1, 2), "16UC1": (1, 2),
    "yuv422": (2, 1), "uyvy": (2, 1), "yuv422_yuy2": (2, 1), "yuyv": (2, 1),
    "bayer_rggb8": (1, 1), "bayer_bggr8": (1, 1), "bayer_gbrg8": (1, 1), "bayer_grbg8": (1, 1),
    "bayer_rggb16": (1, 2), "bayer_bggr16": (1, 2), "bayer_gbrg16": (1, 2), "bayer_grbg16": (1, 2),
}
# colour encodings -> OpenCV conversion to BGR (None: already BGR)
_TO_BGR = {
    "bgr8": None, "8UC3": None, "rgb8": cv2.COLOR_RGB2BGR, "bgra8": cv2.COLOR_BGRA2BGR,
    "rgba8": cv2.COLOR_RGBA2BGR, "8UC4": cv2.COLOR_BGRA2BGR,
    "yuv422": cv2.COLOR_YUV2BGR_UYVY, "uyvy": cv2.COLOR_YUV2BGR_UYVY,  # ROS's yuv422 is UYVY byte order
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUY2, "yuyv": cv2.COLOR_YUV2BGR_YUY2,
}
# OpenCV names a Bayer pattern by the second row's 2nd and 3rd pixels, ROS by the top-left 2x2 (as cv_bridge).
_BAYER_TO_BGR = {"rggb": cv2.COLOR_BayerBG2BGR, "bggr": cv2.COLOR_BayerRG2BGR,
                 "gbrg": cv2.COLOR_BayerGR2BGR, "grbg": cv2.COLOR_BayerGB2BGR}
_YUV = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
SUPPORTED_ENCODINGS = tuple(LAYOUT)


def is_bayer(encoding: str) -> bool:
    return encoding.startswith("bayer_")


def encoding_layout(encoding: str) -> tuple[int, int]:
    """(channels, bytes per channel) of a ROS encoding; ImageError naming the supported ones otherwise."""
    try:
        return LAYOUT[encoding]
    except KeyError:
        raise ImageError(f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}") from None


def check_pixel_pairs(encoding: str, width: int, height: int) -> None:
    """4:2:2 needs an even width and a Bayer mosaic even sides (whole 2x2 cells)."""
    if encoding in _YUV and width % 2:
        raise ImageError(f"image {encoding}: width {width} is odd; 4:2:2 needs pixel pairs")
    if is_bayer(encoding) and (width % 2 or height % 2):
        raise ImageError(f"image {encoding}: size {width}x{height} is odd; a Bayer mosaic needs whole 2x2 cells")


def raw_pixels(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data) -> np.ndarray:
    """Pixels in the message's own layout: (H, W, C) uint8 or (H, W) uint16 (a view of `data` for uint8)."""
    channels, depth = encoding_layout(encoding)
    if height == 0 or width == 0:
        raise ImageError(f"image {encoding}: zero size ({width}x{height})")
    check_pixel_pairs(encoding, width, height)
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageError(f"image {encoding} {width}x{height}: step {step} < {row_bytes} bytes per row")
    if len(data) != height * step:
        raise ImageError(f"image {encoding} {width}x{height}: data has {len(data)} bytes; "
                         f"expected height * step = {height} * {step} = {height * step}")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]  # drop padding
    if depth == 2:
        order = ">" if is_bigendian else "<"
        return rows.view(order + "u2").astype(np.uint16)  # native order, owned copy
    return rows.reshape(height, width, channels)


def decode_image(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data) -> np.ndarray:
    """An Image's fields -> BGR uint8 (H, W, 3), or (H, W) uint8 / uint16 for mono encodings.

    The result owns its memory (never aliases `data`).
    """
    pixels = raw_pixels(encoding, height, width, step, is_bigendian, data)
    if is_bayer(encoding):
        return _demosaic(encoding, pixels)
    if pixels.dtype == np.uint16:
        return pixels
    if pixels.shape[2] == 1:
        return pixels[:, :, 0].copy()
    code = _TO_BGR[encoding]
    if code is None:
        return pixels.copy()
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def _demosaic(encoding: str, mosaic: np.ndarray) -> np.ndarray:
    """(H, W) Bayer mosaic (uint8, or uint16 scaled to 8 bits) -> BGR uint8 (H, W, 3), OpenCV's bilinear demosaic."""
    mosaic = mosaic[:, :, 0] if mosaic.ndim == 3 else mosaic
    code = _BAYER_TO_BGR[encoding[len("bayer_"):len("bayer_") + 4]]
    bgr = cv2.cvtColor(np.ascontiguousarray(mosaic), code)
    return (bgr // 257).astype(np.uint8) if bgr.dtype == np.uint16 else bgr


def decode_compressed(fmt: str, data) -> np.ndarray:
    """A CompressedImage's format and data (jpeg, png, ...) -> BGR uint8 (H, W, 3)."""
    if "compresseddepth" in fmt.lower():
        raise ImageError(f"compressed image format {fmt!r} (compressedDepth) is not supported")
    if len(data) == 0:
        raise ImageError(f"compressed image ({fmt or 'no format'}): no data")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"compressed image ({fmt or 'no format'}, {len(data)} bytes): could not be decoded")
    return image


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Any decoded image -> BGR uint8 (H, W, 3).

    (H, W) / (H, W, 1) mono -> grey BGR; uint16 is scaled by 1/257 (0..65535 -> 0..255);
    (H, W, 4) BGRA drops alpha; (H, W, 3) uint8 is returned as is.
    """
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"to_bgr: expected uint8 or uint16, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    raise ImageError(f"to_bgr: expected (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")


__all__ = ["ImageError", "SUPPORTED_ENCODINGS", "LAYOUT", "encoding_layout", "check_pixel_pairs", "raw_pixels",
           "decode_image", "decode_compressed", "is_bayer", "to_bgr"]
