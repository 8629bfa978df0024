"""Top-down crop preprocessing: boxes -> centre/scale -> affines -> crops -> network input; letterbox."""
import numpy as np
import pytest

from hpe_ros.detect2d.preprocess import (
    MMPOSE_MEAN,
    MMPOSE_STD,
    apply_affines,
    boxes_to_center_scale,
    crop_affines,
    invert_affines,
    letterbox,
    to_network_input,
    warp_crops,
)

INPUT = (192, 256)  # (w, h), mmpose's usual top-down input


def test_boxes_to_center_scale_pads_and_fixes_aspect():
    boxes = np.array([[10.0, 20.0, 110.0, 220.0],    # tall: 125 × 250 after padding -> width grows
                      [0.0, 0.0, 200.0, 100.0]])     # wide: 250 × 125 -> height grows
    center, scale = boxes_to_center_scale(boxes, aspect=192 / 256, padding=1.25)
    np.testing.assert_allclose(center, [[60.0, 120.0], [100.0, 50.0]])
    np.testing.assert_allclose(scale, [[187.5, 250.0], [250.0, 250.0 * 256 / 192]])
    np.testing.assert_allclose(scale[:, 0] / scale[:, 1], 0.75)


def test_boxes_to_center_scale_degenerate_and_bad():
    center, scale = boxes_to_center_scale(np.array([[5.0, 5.0, 5.0, 5.0]]), aspect=0.75)
    assert np.all(scale > 0)  # a point box still gives an invertible crop
    assert boxes_to_center_scale(np.zeros((0, 4)), 0.75)[1].shape == (0, 2)
    with pytest.raises(ValueError, match=r"boxes \(x0, y0, x1, y1\) must have shape \(N, 4\), got \(3, 5\)"):
        boxes_to_center_scale(np.zeros((3, 5)), 0.75)
    with pytest.raises(ValueError, match="x1 >= x0"):
        boxes_to_center_scale(np.array([[10.0, 0, 0, 10]]), 0.75)


def test_crop_affines_map_region_onto_input():
    center = np.array([[320.0, 240.0], [100.0, 50.0]])
    scale = np.array([[96.0, 128.0], [384.0, 512.0]])
    A = crop_affines(center, scale, INPUT)
    assert A.shape == (2, 2, 3) and A.dtype == np.float64
    corners = np.stack([center - scale / 2, center, center + scale / 2], axis=1)  # (N, 3, 2)
    np.testing.assert_allclose(apply_affines(corners, A),
                               [[[0, 0], [96, 128], [192, 256]]] * 2, atol=1e-9)
    # UDP: the region's edges land on the first and last pixel centres.
    A_udp = crop_affines(center, scale, INPUT, udp=True)
    np.testing.assert_allclose(apply_affines(corners, A_udp),
                               [[[0, 0], [95.5, 127.5], [191, 255]]] * 2, atol=1e-9)


def test_rotation_follows_mmpose_sense():
    center, scale = np.array([[200.0, 150.0]]), np.array([[96.0, 128.0]])
    A = crop_affines(center, scale, INPUT, rotation_deg=np.array([90.0]))
    # mmpose: the crop's up direction is R(rot) @ (0, -1) in the image, i.e. +x for 90 degrees.
    up_in_image = center + np.array([[scale[0, 1] / 2, 0.0]])
    np.testing.assert_allclose(apply_affines(up_in_image[:, None], A)[0, 0], [96.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(apply_affines(center[:, None], A)[0, 0], [96.0, 128.0], atol=1e-9)
    with pytest.raises(ValueError, match="rotation_deg"):
        crop_affines(center, scale, INPUT, rotation_deg=np.zeros(3))


def test_invert_apply_round_trip_keeps_nan():
    rng = np.random.default_rng(0)
    n = 7
    center = rng.uniform(0, 1000, (n, 2))
    scale = rng.uniform(20, 600, (n, 2))
    A = crop_affines(center, scale, INPUT, rotation_deg=rng.uniform(-180, 180, n))
    pts = rng.uniform(-500, 1500, (n, 17, 2))
    pts[2, 5] = np.nan
    back = apply_affines(apply_affines(pts, A), invert_affines(A))
    np.testing.assert_allclose(back, pts, atol=1e-6)
    assert np.isnan(back[2, 5]).all() and np.isfinite(np.delete(back.reshape(-1, 2), 2 * 17 + 5, 0)).all()
    # Composition with the inverse is the identity.
    Ai = invert_affines(A)
    np.testing.assert_allclose(Ai[:, :, :2] @ A[:, :, :2], np.broadcast_to(np.eye(2), (n, 2, 2)), atol=1e-12)
    with pytest.raises(ValueError, match="singular"):
        invert_affines(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"\(N, J, 2\)"):
        apply_affines(np.zeros((2, 3)), A[:2])


def _blob(shape, x, y, sigma=3.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("rotation", [None, 30.0])
def test_warp_crops_puts_image_point_on_crop_pixel(rotation):
    # Two images, three crops; a bright blob at a known image point in each image.
    kp = [(301.0, 187.0), (95.0, 402.0)]
    images = []
    for x, y in kp:
        img = np.zeros((480, 640, 3), np.uint8)
        img[..., 1] = np.round(250 * _blob(img.shape[:2], x, y)).astype(np.uint8)
        images.append(img)
    image_index = np.array([1, 0, 0])
    boxes = np.array([[40.0, 330.0, 150.0, 470.0], [250.0, 120.0, 350.0, 260.0], [280.0, 170.0, 330.0, 230.0]])
    center, scale = boxes_to_center_scale(boxes, INPUT[0] / INPUT[1])
    rot = None if rotation is None else np.full(3, rotation)
    A = crop_affines(center, scale, INPUT, rotation_deg=rot)
    crops = warp_crops(images, image_index, A, INPUT)
    assert crops.shape == (3, 256, 192, 3) and crops.dtype == np.uint8
    assert crops[..., 0].max() == 0 and crops[..., 2].max() == 0

    expected = apply_affines(np.array([kp[i] for i in image_index])[:, None], A)[:, 0]  # crop px
    g = crops[..., 1].astype(np.float64)
    nearest = np.round(expected).astype(int)
    # The crop pixel nearest to the mapped point is the brightest (uint8 rounding may tie a neighbour),
    # and nothing bright lies more than 1.5 px away from it.
    np.testing.assert_array_equal(g[np.arange(3), nearest[:, 1], nearest[:, 0]], g.max(axis=(1, 2)))
    yy, xx = np.mgrid[:256, :192]
    far = np.hypot(xx - expected[:, 0, None, None], yy - expected[:, 1, None, None]) > 1.5
    assert np.all(np.where(far, g, 0).max(axis=(1, 2)) < g.max(axis=(1, 2)))
    # The blob's intensity centroid maps back to the image point within half a pixel.
    w = np.where(g > 0.2 * g.max(axis=(1, 2), keepdims=True), g, 0.0)
    centroid = np.stack([(w * xx).sum((1, 2)), (w * yy).sum((1, 2))], axis=1) / w.sum((1, 2))[:, None]
    back = apply_affines(centroid[:, None], invert_affines(A))[:, 0]
    err = np.linalg.norm(back - np.array([kp[i] for i in image_index]), axis=1)
    assert np.all(err < 0.5), err


def test_warp_crops_border_empty_and_errors():
    img = np.full((100, 100, 3), 200, np.uint8)
    center, scale = np.array([[0.0, 0.0]]), np.array([[100.0, 100.0]])
    crop = warp_crops([img], [0], crop_affines(center, scale, (64, 64)), (64, 64))[0]
    assert crop[:30, :30].max() == 0 and crop[34:, 34:].min() == 200  # outside the image is black
    empty = warp_crops([img], np.zeros(0, int), np.zeros((0, 2, 3)), (48, 64))
    assert empty.shape == (0, 64, 48, 3) and empty.dtype == np.uint8
    with pytest.raises(ValueError, match="image_index"):
        warp_crops([img], [1], crop_affines(center, scale, (64, 64)), (64, 64))
    with pytest.raises(ValueError, match="uint8"):
        warp_crops([img.astype(np.float32)], [0], crop_affines(center, scale, (64, 64)), (64, 64))


def test_to_network_input_channel_order_and_values():
    crops = np.zeros((2, 4, 3, 3), np.uint8)
    crops[..., 0], crops[..., 1], crops[..., 2] = 10, 20, 30  # B, G, R
    crops[1, 2, 1] = (200, 100, 50)
    x = to_network_input(crops, MMPOSE_MEAN, MMPOSE_STD, color="rgb")
    assert x.shape == (2, 3, 4, 3) and x.dtype == np.float32 and x.flags.c_contiguous
    mean, std = np.array(MMPOSE_MEAN), np.array(MMPOSE_STD)
    np.testing.assert_allclose(x[0, :, 0, 0], (np.array([30, 20, 10]) - mean) / std, rtol=1e-6)  # R, G, B
    np.testing.assert_allclose(x[1, :, 2, 1], (np.array([50, 100, 200]) - mean) / std, rtol=1e-6)
    xb = to_network_input(crops, (1, 2, 3), (2, 4, 8), color="bgr")
    np.testing.assert_allclose(xb[0, :, 3, 2], [(10 - 1) / 2, (20 - 2) / 4, (30 - 3) / 8], rtol=1e-6)
    assert to_network_input(np.zeros((0, 8, 6, 3), np.uint8)).shape == (0, 3, 8, 6)
    with pytest.raises(ValueError, match="color"):
        to_network_input(crops, color="hsv")
    with pytest.raises(ValueError, match=r"\(N, h, w, 3\)"):
        to_network_input(crops[0])


def test_letterbox_scale_and_placement():
    img = np.zeros((720, 1280, 3), np.uint8)
    img[:, :640] = (255, 0, 0)
    img[600:, 1000:] = (0, 0, 255)
    padded, scale = letterbox(img, (640, 640))
    assert padded.shape == (640, 640, 3) and scale == 0.5
    assert (padded[360:] == 114).all()                        # padding below the image
    assert (padded[:360, :310] == (255, 0, 0)).all()          # left half, resized
    np.testing.assert_array_equal(padded[320, 560], (0, 0, 255))  # image (1120, 640) * 0.5
    # Portrait image into a non-square input: height limits, padding on the right.
    tall = np.full((1280, 720, 3), 7, np.uint8)
    padded, scale = letterbox(tall, (416, 320), pad_value=0)
    assert padded.shape == (320, 416, 3) and scale == pytest.approx(0.25)
    assert (padded[:, :180] == 7).all() and (padded[:, 180:] == 0).all()
    # Letterbox px / scale = image px.
    assert 180 / scale == 720
    with pytest.raises(ValueError, match="uint8"):
        letterbox(np.zeros((10, 10)), (32, 32))
