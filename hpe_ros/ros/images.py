"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge.

Decoding (hpe_ros.io.image_encodings, shared with bag files) gives what the 2D pose stage consumes:
BGR uint8 (H, W, 3) for colour encodings (alpha dropped, YUV converted and Bayer mosaics
bayer_{rggb,bggr,gbrg,grbg}{8,16} demosaiced with OpenCV), (H, W) uint8 for mono8/8UC1 and (H, W)
uint16 for mono16/16UC1. Row padding (`step`) and 16-bit byte order are honoured; anything malformed
raises ImageError, which is a ValueError, so a node can log one line and drop the frame.

Encoding is the reverse and does no colour conversion: the array must already be laid out as the
encoding says (as cv_bridge's cv2_to_imgmsg), e.g. (H, W, 2) packed bytes for yuv422, (H, W) for a
Bayer mosaic.

    >>> bgr = image_to_numpy(msg)                       # any supported encoding
    >>> msg = numpy_to_image(bgr, "bgr8", header)
    >>> jpeg = numpy_to_compressed(bgr, "jpeg", quality=90, header=header)
"""
from __future__ import annotations

import array

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from hpe_ros.io.image_encodings import (
    SUPPORTED_ENCODINGS,
    ImageError,
    check_pixel_pairs,
    decode_compressed,
    decode_image,
    encoding_layout,
    to_bgr,
)
from hpe_ros.ros.pointcloud import copy_header


def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs Image -> BGR uint8 (H, W, 3), or (H, W) uint8 / uint16 for mono encodings.

    The result owns its memory (never aliases msg.data).
    """
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)


def numpy_to_image(array_in: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """numpy -> sensor_msgs Image, little-endian, no row padding.

    array_in: laid out as `encoding` says: (H, W, 3) uint8 for bgr8/rgb8/8UC3, (H, W, 4) for
    bgra8/rgba8/8UC4, (H, W) or (H, W, 1) uint8 for mono8/8UC1 and bayer_*8, uint16 for mono16/16UC1
    and bayer_*16 (even sides),
    (H, W, 2) uint8 packed bytes for yuv422 (UYVY) and yuv422_yuy2/yuyv (YUYV).
    """
    channels, depth = encoding_layout(encoding)
    img = np.asarray(array_in)
    if img.ndim == 3 and img.shape[2] == 1 and channels == 1:
        img = img[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    expected_dtype = np.uint16 if depth == 2 else np.uint8
    if img.ndim != expected_ndim or (channels > 1 and img.shape[2] != channels):
        shape = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ImageError(f"encoding {encoding!r} needs an array of shape {shape}, got {img.shape}")
    if img.dtype != expected_dtype:
        raise ImageError(f"encoding {encoding!r} needs dtype {np.dtype(expected_dtype).name}, got {img.dtype}")
    height, width = img.shape[:2]
    if height == 0 or width == 0:
        raise ImageError(f"encoding {encoding!r}: zero-size array {img.shape}")
    check_pixel_pairs(encoding, width, height)
    msg = Image()
    msg.header = copy_header(header)
    msg.height, msg.width = height, width
    msg.encoding = encoding
    msg.is_bigendian = False
    msg.step = width * channels * depth
    msg.data = array.array("B", np.ascontiguousarray(img, dtype=img.dtype.newbyteorder("<")).tobytes())
    return msg


def compressed_to_numpy(msg: CompressedImage) -> np.ndarray:
    """CompressedImage (jpeg, png, ...) -> BGR uint8 (H, W, 3)."""
    return decode_compressed(msg.format, msg.data)


_EXTENSIONS = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}


def numpy_to_compressed(image: np.ndarray, fmt: str = "jpeg", quality: int = 90,
                        header: Header | None = None) -> CompressedImage:
    """BGR uint8 (H, W, 3) or mono (H, W) -> CompressedImage.

    fmt: "jpeg" (quality 0-100) or "png" (lossless; quality ignored). `format` is written the way
    image_transport's compressed publisher does, e.g. "bgr8; jpeg compressed bgr8".
    """
    fmt = fmt.lower()
    if fmt not in _EXTENSIONS:
        raise ImageError(f"unsupported compressed format {fmt!r}; supported: jpeg, png")
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
        raise ImageError(f"numpy_to_compressed: expected uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageError(f"numpy_to_compressed: zero-size image {img.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(np.clip(quality, 0, 100))] if _EXTENSIONS[fmt] == ".jpg" else []
    ok, buffer = cv2.imencode(_EXTENSIONS[fmt], img, params)
    if not ok:
        raise ImageError(f"numpy_to_compressed: OpenCV could not encode {img.shape} as {fmt}")
    encoding = "bgr8" if img.ndim == 3 and img.shape[2] == 3 else "mono8"
    msg = CompressedImage()
    msg.header = copy_header(header)
    msg.format = f"{encoding}; {'jpeg' if fmt == 'jpg' else fmt} compressed {encoding}"
    msg.data = array.array("B", buffer.tobytes())
    return msg


__all__ = ["ImageError", "SUPPORTED_ENCODINGS", "image_to_numpy", "numpy_to_image", "to_bgr",
           "compressed_to_numpy", "numpy_to_compressed"]
