"""Keypoint decoding: heatmap argmax + quarter / DARK refinement, heatmap -> input px, SimCC."""
import time

import cv2
import numpy as np
import pytest

from hpe_ros.detect2d.decode import decode_heatmaps, decode_simcc, heatmap_to_input
from hpe_ros.detect2d.preprocess import apply_affines, boxes_to_center_scale, crop_affines, invert_affines

H, W = 64, 48  # heatmap (h, w) of a 256×192 input


def gaussian_maps(centers, h=H, w=W, sigma=2.0, amplitude=1.0):
    """(..., 2) sub-pixel centres (x, y) -> (..., h, w) Gaussian heatmaps (pixel centres at integers)."""
    centers = np.asarray(centers, dtype=np.float64)
    x = np.arange(w) - centers[..., 0, None]
    y = np.arange(h) - centers[..., 1, None]
    return (amplitude * np.exp(-(y[..., :, None] ** 2 + x[..., None, :] ** 2) / (2 * sigma**2))).astype(np.float32)


def random_centers(rng, n, j, h=H, w=W, border=3.0):
    return np.stack([rng.uniform(border, w - 1 - border, (n, j)), rng.uniform(border, h - 1 - border, (n, j))], -1)


def test_dark_recovers_subpixel_peaks():
    rng = np.random.default_rng(1)
    centers = random_centers(rng, 6, 17)
    centers[0, 0] = (13.37, 7.81)
    maps = gaussian_maps(centers)
    err = {}
    for refine in ("none", "quarter", "dark"):
        pts, scores = decode_heatmaps(maps, refine=refine)
        assert pts.shape == (6, 17, 2) and scores.shape == (6, 17)
        err[refine] = np.linalg.norm(pts - centers, axis=-1)
    np.testing.assert_allclose(decode_heatmaps(maps[:1, :1])[0][0, 0], (13.37, 7.81), atol=0.05)
    assert err["dark"].max() < 0.1, err["dark"].max()
    assert err["dark"].mean() < 0.03
    # Quarter-pixel sits in between: better than the integer argmax, worse than DARK.
    assert err["dark"].mean() < 0.5 * err["quarter"].mean()
    assert err["quarter"].mean() < 0.85 * err["none"].mean()
    assert err["none"].max() <= np.sqrt(0.5) + 1e-9


def test_dark_without_blur_and_with_noise():
    rng = np.random.default_rng(2)
    centers = random_centers(rng, 4, 17)
    maps = gaussian_maps(centers)
    pts, _ = decode_heatmaps(maps, refine="dark", blur_kernel=1)  # log of a Gaussian is exactly quadratic
    np.testing.assert_allclose(pts, centers, atol=1e-3)
    noisy = maps + rng.normal(0, 0.02, maps.shape).astype(np.float32)
    e_dark = np.linalg.norm(decode_heatmaps(noisy, "dark")[0] - centers, axis=-1)
    e_none = np.linalg.norm(decode_heatmaps(noisy, "none")[0] - centers, axis=-1)
    assert e_dark.mean() < 0.5 * e_none.mean() and e_dark.max() < 0.5


def _dark_reference(hm, kernel=11):
    """mmpose-style DARK on one map, written plainly: pad with zeros, blur, keep max, log, Taylor at argmax."""
    h, w = hm.shape
    y, x = np.unravel_index(np.argmax(hm), hm.shape)
    b = kernel // 2
    padded = np.zeros((h + 2 * b, w + 2 * b), np.float64)
    padded[b:-b, b:-b] = hm
    blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[b:-b, b:-b]
    blurred *= hm.max() / blurred.max()
    lg = np.log(np.maximum(blurred, 1e-10))
    if not (0 < x < w - 1 and 0 < y < h - 1):
        return np.array([x, y], float)
    g = np.array([lg[y, x + 1] - lg[y, x - 1], lg[y + 1, x] - lg[y - 1, x]]) / 2
    dxx = lg[y, x + 1] - 2 * lg[y, x] + lg[y, x - 1]
    dyy = lg[y + 1, x] - 2 * lg[y, x] + lg[y - 1, x]
    dxy = (lg[y + 1, x + 1] - lg[y - 1, x + 1] - lg[y + 1, x - 1] + lg[y - 1, x - 1]) / 4
    hess = np.array([[dxx, dxy], [dxy, dyy]])
    if not (dxx < 0 and np.linalg.det(hess) > 0):
        return np.array([x, y], float)
    return np.array([x, y]) + np.clip(-np.linalg.solve(hess, g), -1, 1)


@pytest.mark.parametrize("kernel", [11, 17, 3])
def test_dark_matches_full_map_reference(kernel):
    # The implementation blurs only a window around each peak; it must equal blurring the whole map.
    rng = np.random.default_rng(3)
    centers = random_centers(rng, 2, 17, border=0.0)  # includes peaks near the border (zero padding matters)
    maps = gaussian_maps(centers, sigma=2.5) + rng.uniform(0, 0.05, (2, 17, H, W)).astype(np.float32)
    pts, _ = decode_heatmaps(maps, "dark", blur_kernel=kernel)
    ref = np.array([[_dark_reference(m.astype(np.float64), kernel) for m in row] for row in maps])
    np.testing.assert_allclose(pts, ref, atol=1e-6)


def test_border_peaks_empty_and_nan_maps():
    maps = np.zeros((1, 6, H, W), np.float32)
    maps[0, 0] = gaussian_maps([0.2, 30.6])        # peak on the left border
    maps[0, 1] = gaussian_maps([W - 1.0, H - 1.0])  # corner
    # maps[0, 2] stays all zero
    maps[0, 3] = np.nan
    maps[0, 4] = gaussian_maps([20.3, 40.2], amplitude=0.6)
    maps[0, 4, :5, :5] = np.nan                     # NaN away from the peak: still decodes
    maps[0, 5] = -1.0                               # all negative: no detection
    for refine in ("none", "quarter", "dark"):
        pts, scores = decode_heatmaps(maps, refine=refine)
        assert pts[0, 0, 0] == 0.0 and abs(pts[0, 0, 1] - 30.6) <= 0.5  # not refined off the border in x
        np.testing.assert_array_equal(pts[0, 1], [W - 1, H - 1])
        assert np.isnan(pts[0, [2, 3, 5]]).all() and (scores[0, [2, 3, 5]] == 0).all()
        assert np.linalg.norm(pts[0, 4] - [20.3, 40.2]) < (0.1 if refine == "dark" else 0.75)
        assert scores[0, 4] == pytest.approx(0.6 * np.exp(-(0.3**2 + 0.2**2) / 8), rel=1e-5)
    assert decode_heatmaps(np.zeros((0, 17, H, W)))[0].shape == (0, 17, 2)


def test_scores_are_peak_values_clipped():
    centers = np.array([[[10.0, 10.0], [20.0, 30.0], [30.0, 50.0]]])
    maps = np.concatenate([gaussian_maps(centers[:, :1], amplitude=0.42),
                           gaussian_maps(centers[:, 1:2], amplitude=1.7),
                           gaussian_maps(centers[:, 2:], amplitude=0.9)], axis=1)
    _, scores = decode_heatmaps(maps)
    np.testing.assert_allclose(scores, [[0.42, 1.0, 0.9]], rtol=1e-6)


def test_decode_heatmaps_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, J, h, w\)"):
        decode_heatmaps(np.zeros((17, H, W)))
    with pytest.raises(ValueError, match="refine"):
        decode_heatmaps(np.zeros((1, 1, H, W)), refine="udp")
    with pytest.raises(ValueError, match="blur_kernel"):
        decode_heatmaps(np.zeros((1, 1, H, W)), blur_kernel=4)


def test_decode_heatmaps_dark_speed():
    rng = np.random.default_rng(4)
    maps = gaussian_maps(random_centers(rng, 64, 17)) + rng.uniform(0, 0.01, (64, 17, H, W)).astype(np.float32)
    decode_heatmaps(maps)  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        decode_heatmaps(maps, refine="dark")
        times.append(time.perf_counter() - t0)
    print(f"\ndecode_heatmaps(dark) on {maps.shape}: best {1e3 * min(times):.2f} ms, "
          f"median {1e3 * sorted(times)[2]:.2f} ms")


def test_heatmap_to_input():
    pts = np.array([[[10.0, 20.0], [np.nan, np.nan]]])
    out = heatmap_to_input(pts, (48, 64), (192, 256))
    np.testing.assert_allclose(out[0, 0], [40.0, 80.0])
    assert np.isnan(out[0, 1]).all()
    np.testing.assert_allclose(heatmap_to_input(pts, (48, 64), (192, 256), udp=True)[0, 0],
                               [10 * 191 / 47, 20 * 255 / 63])
    with pytest.raises(ValueError, match=r"\(N, J, 2\)"):
        heatmap_to_input(pts[0], (48, 64), (192, 256))


@pytest.mark.parametrize("udp", [False, True])
def test_heatmap_pipeline_round_trip_to_image(udp):
    """Image keypoint -> crop px -> heatmap px (as a network trained that way would place it) -> decode -> image."""
    rng = np.random.default_rng(5)
    boxes = np.array([[100.0, 50.0, 260.0, 420.0], [500.0, 200.0, 620.0, 470.0]])
    center, scale = boxes_to_center_scale(boxes, 192 / 256)
    A = crop_affines(center, scale, (192, 256), udp=udp)
    kp = np.stack([rng.uniform(boxes[:, None, 0], boxes[:, None, 2], (2, 17)),
                   rng.uniform(boxes[:, None, 1], boxes[:, None, 3], (2, 17))], -1)
    crop_px = apply_affines(kp, A)
    hm_px = crop_px * ((47 / 191, 63 / 255) if udp else (48 / 192, 64 / 256))
    pts, _ = decode_heatmaps(gaussian_maps(hm_px), "dark")
    back = apply_affines(heatmap_to_input(pts, (48, 64), (192, 256), udp=udp), invert_affines(A))
    # 0.1 heatmap px at a 4x stride and a crop ~1.5x the input: well under a pixel in the image.
    assert np.linalg.norm(back - kp, axis=-1).max() < 0.1 * 4 * scale[:, 0].max() / 192


def simcc_vectors(rng, bins_x, bins_y, vals_x, vals_y, wx=384, hy=512):
    sx = rng.uniform(0, 0.05, bins_x.shape + (wx,))
    sy = rng.uniform(0, 0.05, bins_y.shape + (hy,))
    np.put_along_axis(sx, bins_x[..., None], vals_x[..., None], axis=-1)
    np.put_along_axis(sy, bins_y[..., None], vals_y[..., None], axis=-1)
    return sx.astype(np.float32), sy.astype(np.float32)


def test_decode_simcc_bins_and_scores():
    rng = np.random.default_rng(6)
    n, j = 3, 17
    bx, by = rng.integers(0, 384, (n, j)), rng.integers(0, 512, (n, j))
    vx, vy = rng.uniform(0.2, 1.0, (n, j)), rng.uniform(0.2, 1.0, (n, j))
    vx[0, 0], vy[0, 0] = 1.4, 1.2            # clipped to 1
    vx[1, 2], vy[1, 2] = -0.3, 0.9           # x max <= 0 -> missing
    sx, sy = simcc_vectors(rng, bx, by, vx, vy)
    sx[1, 2] = np.minimum(sx[1, 2], -0.3)
    sx[2, 3] = np.nan                         # all-NaN axis -> missing
    pts, scores = decode_simcc(sx, sy, split_ratio=2.0)
    ok = np.ones((n, j), bool)
    ok[1, 2] = ok[2, 3] = False
    np.testing.assert_allclose(pts[ok], np.stack([bx, by], -1)[ok] / 2.0)
    np.testing.assert_allclose(scores[ok], np.clip(0.5 * (vx + vy), 0, 1)[ok], rtol=1e-6)
    assert scores[0, 0] == 1.0
    assert np.isnan(pts[~ok]).all() and (scores[~ok] == 0).all()
    _, smin = decode_simcc(sx, sy, score_mode="min")
    np.testing.assert_allclose(smin[ok], np.clip(np.minimum(vx, vy), 0, 1)[ok], rtol=1e-6)


def test_decode_simcc_normalize_softmax():
    rng = np.random.default_rng(7)
    bx, by = np.array([[100, 7]]), np.array([[300, 511]])
    sx, sy = simcc_vectors(rng, bx, by, np.array([[9.0, 6.0]]), np.array([[8.0, 7.0]]), wx=384, hy=512)
    pts, scores = decode_simcc(sx, sy, split_ratio=2.0, normalize=True)
    np.testing.assert_allclose(pts[0], [[50.0, 150.0], [3.5, 255.5]])
    sm = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()
    expected = [0.5 * (sm(sx[0, k].astype(float)).max() + sm(sy[0, k].astype(float)).max()) for k in range(2)]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)
    assert 0.9 < scores[0, 0] < 1.0 and scores[0, 1] < scores[0, 0]
    # A sharper softmax (beta) pushes the confident joint to ~1.
    assert decode_simcc(sx, sy, normalize=True, beta=10.0)[1][0, 0] > 0.999


def test_decode_simcc_rejects_bad_shapes():
    wrong_y = r"simcc_y \(same N, J as simcc_x\) must have shape \(2, 17, Hy\), got \(2, 16, 512\)"
    with pytest.raises(ValueError, match=wrong_y):
        decode_simcc(np.zeros((2, 17, 384)), np.zeros((2, 16, 512)))
    with pytest.raises(ValueError, match="split_ratio"):
        decode_simcc(np.zeros((2, 17, 384)), np.zeros((2, 17, 512)), split_ratio=0)
    assert decode_simcc(np.zeros((0, 17, 384)), np.zeros((0, 17, 512)))[0].shape == (0, 17, 2)
