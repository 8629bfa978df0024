"""Image / CompressedImage <-> numpy without cv_bridge."""
import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from hpe_ros.ros.images import (
    ImageError,
    compressed_to_numpy,
    image_to_numpy,
    numpy_to_compressed,
    numpy_to_image,
    to_bgr,
)
from hpe_ros.ros.pointcloud import make_header

H, W = 6, 8


@pytest.fixture
def bgr():
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def smooth_bgr(h=32, w=48):
    """A smooth colour image: 4:2:2 chroma subsampling barely changes it."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([40 + 3 * x, 60 + 4 * y, 200 - 2 * x - y], axis=-1).clip(0, 255).astype(np.uint8)


def pack_422(bgr_img, uyvy=True):
    """Independent BT.601 video-range packing (the coefficients OpenCV's YUV422 decoders assume)."""
    b, g, r = (bgr_img[..., k].astype(np.float64) for k in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u = 0.5 * (u[:, 0::2] + u[:, 1::2])  # one chroma sample per pixel pair
    v = 0.5 * (v[:, 0::2] + v[:, 1::2])
    chroma = np.empty_like(y)
    chroma[:, 0::2], chroma[:, 1::2] = u, v
    packed = np.stack([chroma, y] if uyvy else [y, chroma], axis=-1)
    return np.round(packed).clip(0, 255).astype(np.uint8)


# --- raw images ------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding,make", [
    ("bgr8", lambda b: b),
    ("8UC3", lambda b: b),
    ("rgb8", lambda b: b[..., ::-1]),
    ("bgra8", lambda b: np.dstack([b, np.full(b.shape[:2], 77, np.uint8)])),
    ("rgba8", lambda b: np.dstack([b[..., ::-1], np.full(b.shape[:2], 77, np.uint8)])),
])
def test_colour_round_trip_gives_bgr(bgr, encoding, make):
    msg = numpy_to_image(make(bgr), encoding, make_header(1.0, "cam0_optical_frame"))
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (H, W, encoding, "cam0_optical_frame")
    assert msg.step == W * make(bgr).shape[2]
    out = image_to_numpy(msg)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, bgr)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_round_trip(bgr, encoding):
    mono = bgr[..., 0]
    out = image_to_numpy(numpy_to_image(mono, encoding))
    assert out.shape == (H, W) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, mono)


def test_mono16_round_trip_and_big_endian():
    mono = np.random.default_rng(1).integers(0, 65536, (H, W), dtype=np.uint16)
    msg = numpy_to_image(mono, "mono16")
    assert msg.step == 2 * W and msg.is_bigendian is False
    out = image_to_numpy(msg)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, mono)
    big = Image(height=H, width=W, encoding="mono16", is_bigendian=True, step=2 * W)
    big.data = array.array("B", mono.astype(">u2").tobytes())
    np.testing.assert_array_equal(image_to_numpy(big), mono)


def test_output_does_not_alias_message(bgr):
    msg = numpy_to_image(bgr, "bgr8")
    out = image_to_numpy(msg)
    out[:] = 0
    np.testing.assert_array_equal(image_to_numpy(msg), bgr)


@pytest.mark.parametrize("encoding,uyvy,code", [
    ("yuv422", True, cv2.COLOR_YUV2BGR_UYVY),
    ("yuv422_yuy2", False, cv2.COLOR_YUV2BGR_YUY2),
    ("yuyv", False, cv2.COLOR_YUV2BGR_YUY2),
])
def test_yuv422_decodes_like_opencv_and_close_to_source(encoding, uyvy, code):
    src = smooth_bgr()
    packed = pack_422(src, uyvy=uyvy)
    out = image_to_numpy(numpy_to_image(packed, encoding))
    assert out.shape == src.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, cv2.cvtColor(packed, code))
    assert np.abs(out.astype(int) - src).max() <= 6  # rounding + chroma subsampling
    if uyvy and hasattr(cv2, "COLOR_BGR2YUV_UYVY"):  # OpenCV's own encoder agrees with our packing
        assert np.abs(cv2.cvtColor(src, cv2.COLOR_BGR2YUV_UYVY).astype(int) - packed).max() <= 2


def test_yuv_byte_orders_differ():
    src = smooth_bgr()
    packed = pack_422(src, uyvy=True)
    wrong = image_to_numpy(numpy_to_image(packed, "yuyv"))  # UYVY bytes read as YUYV: wrong colours
    assert np.abs(wrong.astype(int) - src).mean() > 20


@pytest.mark.parametrize("encoding,pixel_bytes",
                         [("bgr8", 3), ("rgba8", 4), ("mono8", 1), ("mono16", 2), ("yuv422", 2)])
def test_padded_step(encoding, pixel_bytes):
    rng = np.random.default_rng(2)
    channels = {1: 1, 2: 2, 3: 3, 4: 4}[pixel_bytes]
    if encoding == "mono16":
        img = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    elif encoding == "yuv422":
        img = pack_422(smooth_bgr(H, W))
    else:
        img = rng.integers(0, 256, (H, W, channels) if channels > 1 else (H, W), dtype=np.uint8)
    tight = numpy_to_image(img, encoding)
    step = W * pixel_bytes + 13
    rows = np.frombuffer(tight.data, np.uint8).reshape(H, W * pixel_bytes)
    padded = np.concatenate([rows, np.full((H, 13), 0xEE, np.uint8)], axis=1)
    msg = Image(height=H, width=W, encoding=encoding, step=step, is_bigendian=False)
    msg.data = array.array("B", padded.tobytes())
    np.testing.assert_array_equal(image_to_numpy(msg), image_to_numpy(tight))


# --- Bayer mosaics ------------------------------------------------------------------------------------

BAYER_CELLS = {"rggb": "RGGB", "bggr": "BGGR", "gbrg": "GBRG", "grbg": "GRBG"}


def mosaic(bgr_img, pattern: str) -> np.ndarray:
    """(H, W) Bayer mosaic of a BGR image: the top-left 2x2 cell's colours are `pattern` in row order."""
    channel = {"B": 0, "G": 1, "R": 2}
    out = np.empty(bgr_img.shape[:2], bgr_img.dtype)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        out[dy::2, dx::2] = bgr_img[dy::2, dx::2, channel[pattern[k]]]
    return out


@pytest.mark.parametrize("pattern", list(BAYER_CELLS))
def test_bayer8_demosaics_back_to_the_colours(pattern):
    src = smooth_bgr(32, 48)
    out = image_to_numpy(numpy_to_image(mosaic(src, BAYER_CELLS[pattern]), f"bayer_{pattern}8"))
    assert out.shape == src.shape and out.dtype == np.uint8
    error = np.abs(out.astype(int) - src)[2:-2, 2:-2]  # borders are extrapolated
    assert error.max() <= 2, error.max()              # a smooth image: demosaicing is nearly exact


@pytest.mark.parametrize("pattern", list(BAYER_CELLS))
def test_bayer16_demosaics_to_8_bit_bgr(pattern):
    src = smooth_bgr(32, 48)
    mosaic16 = mosaic(src.astype(np.uint16) * 257, BAYER_CELLS[pattern])
    msg = numpy_to_image(mosaic16, f"bayer_{pattern}16")
    out = image_to_numpy(msg)
    assert out.dtype == np.uint8 and out.shape == src.shape
    assert np.abs(out.astype(int) - src)[2:-2, 2:-2].max() <= 2


def test_a_wrong_bayer_pattern_gives_wrong_colours():
    src = smooth_bgr(32, 48)
    wrong = image_to_numpy(numpy_to_image(mosaic(src, "RGGB"), "bayer_bggr8"))  # red and blue swapped
    assert np.abs(wrong.astype(int) - src).mean() > 20


def test_bayer_mosaic_needs_even_sides():
    with pytest.raises(ImageError, match="Bayer mosaic needs whole 2x2 cells"):
        numpy_to_image(np.zeros((4, 7), np.uint8), "bayer_grbg8")


# --- malformed inputs --------------------------------------------------------------------------------

def raw(encoding="bgr8", height=H, width=W, step=W * 3, size=None):
    msg = Image(height=height, width=width, encoding=encoding, step=step)
    msg.data = array.array("B", bytes(height * step if size is None else size))
    return msg


def test_unknown_encoding_message():
    with pytest.raises(ImageError, match=r"unsupported encoding 'nv21'; supported: bgr8, rgb8"):
        image_to_numpy(raw("nv21"))
    assert issubclass(ImageError, ValueError)


@pytest.mark.parametrize("msg,pattern", [
    (raw(size=H * W * 3 - 1), r"data has 143 bytes; expected height \* step = 6 \* 24 = 144"),
    (raw(size=H * W * 3 + 5), "data has 149 bytes"),
    (raw(step=W * 3 - 1), "step 23 < 24 bytes per row"),
    (raw(height=0, size=0), "zero size"),
    (raw(width=0, step=0), "zero size"),
    (raw("yuv422", width=7, step=14), "width 7 is odd"),
    (raw("bayer_rggb8", height=5, step=W), "size 8x5 is odd; a Bayer mosaic needs whole 2x2 cells"),
])
def test_malformed_images_raise(msg, pattern):
    with pytest.raises(ImageError, match=pattern):
        image_to_numpy(msg)


def test_numpy_to_image_rejects_mismatched_arrays(bgr):
    with pytest.raises(ImageError, match=r"needs an array of shape \(H, W, 4\)"):
        numpy_to_image(bgr, "bgra8")
    with pytest.raises(ImageError, match="needs dtype uint16"):
        numpy_to_image(bgr[..., 0], "mono16")
    with pytest.raises(ImageError, match="unsupported encoding"):
        numpy_to_image(bgr, "hsv8")
    with pytest.raises(ImageError, match="odd"):
        numpy_to_image(np.zeros((2, 3, 2), np.uint8), "yuv422")


# --- to_bgr ------------------------------------------------------------------------------------------

def test_to_bgr():
    mono = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    out = to_bgr(mono)
    assert out.shape == (H, W, 3) and np.all(out == mono[..., None])
    np.testing.assert_array_equal(to_bgr(np.full((2, 2), 65535, np.uint16)), np.full((2, 2, 3), 255))
    bgra = np.dstack([np.full((2, 2, 3), 9, np.uint8), np.zeros((2, 2), np.uint8)])
    np.testing.assert_array_equal(to_bgr(bgra), np.full((2, 2, 3), 9))
    with pytest.raises(ImageError):
        to_bgr(np.zeros((2, 2, 5), np.uint8))


# --- compressed --------------------------------------------------------------------------------------

def test_jpeg_round_trip_is_close():
    src = smooth_bgr(64, 96)
    msg = numpy_to_compressed(src, "jpeg", quality=95, header=make_header(2.5, "cam0_optical_frame"))
    assert isinstance(msg, CompressedImage) and msg.format == "bgr8; jpeg compressed bgr8"
    assert msg.header.stamp.sec == 2 and bytes(msg.data[:2]) == b"\xff\xd8"  # JPEG SOI marker
    out = compressed_to_numpy(msg)
    assert out.shape == src.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - src).mean() < 3


def test_png_is_lossless_and_mono_decodes_to_bgr():
    src = np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)
    np.testing.assert_array_equal(compressed_to_numpy(numpy_to_compressed(src, "png")), src)
    mono = src[..., 1]
    msg = numpy_to_compressed(mono, "png")
    assert msg.format == "mono8; png compressed mono8"
    np.testing.assert_array_equal(compressed_to_numpy(msg), np.repeat(mono[..., None], 3, axis=2))


def test_undecodable_compressed_raises():
    msg = CompressedImage(format="jpeg")
    with pytest.raises(ImageError, match="no data"):
        compressed_to_numpy(msg)
    msg.data = array.array("B", b"definitely not a jpeg")
    with pytest.raises(ImageError, match="could not be decoded"):
        compressed_to_numpy(msg)
    msg.format = "16UC1; compressedDepth png"
    with pytest.raises(ImageError, match="compressedDepth"):
        compressed_to_numpy(msg)
    with pytest.raises(ImageError, match="unsupported compressed format"):
        numpy_to_compressed(np.zeros((4, 4, 3), np.uint8), "webpx")
