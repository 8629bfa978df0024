"""Robust weighted triangulation: accuracy, outliers, weights, confidence, refinement, speed."""
import time

import numpy as np
import pytest

from hpe_ros.fusion.triangulation import Triangulation, triangulate, triangulate_normalized

from helpers.fusion_scenes import observe, random_people, ring_rig


def _frame(rng, cameras=8, people=6, noise_px=0.0, dist=None):
    rig = ring_rig(cameras, dist=dist)
    X = random_people(rng, people).reshape(-1, 3)
    px, sc = observe(rig, X, rng, noise_px)
    return rig, X, px, sc


def _plain_dlt(rig, px, sc):
    xy = rig.undistort_points(np.nan_to_num(px))
    return triangulate_normalized(rig.projection_matrices, xy, sc)


def _mpjpe(points, X):
    return float(np.nanmean(np.linalg.norm(points - X, axis=1)))


def _add_outliers(rng, px, sc, fraction):
    m = (rng.random(sc.shape) < fraction) & (sc > 0)
    angle = rng.uniform(0, 2 * np.pi, m.sum())
    px = px.copy()
    px[m] += rng.uniform(40, 200, (m.sum(), 1)) * np.stack([np.cos(angle), np.sin(angle)], 1)
    return px, m


def test_noise_free_is_exact():
    rig, X, px, sc = _frame(np.random.default_rng(0))
    tri = triangulate(rig, px, sc)
    assert isinstance(tri, Triangulation)
    assert tri.points.shape == (102, 3) and tri.inliers.shape == (8, 102)
    assert np.max(np.linalg.norm(tri.points - X, axis=1)) < 1e-6
    assert np.all(tri.reprojection_error < 1e-6)
    np.testing.assert_array_equal(tri.views, (sc > 0).sum(0))
    assert np.all(tri.confidence > 0.5) and np.all(tri.confidence <= 1)
    np.testing.assert_allclose(_plain_dlt(rig, px, sc), X, atol=1e-6)


def test_small_noise_small_error():
    rng = np.random.default_rng(1)
    rig, X, px, sc = _frame(rng, noise_px=1.5)
    tri = triangulate(rig, px, sc)
    err = _mpjpe(tri.points, X)
    print(f"1.5 px noise, 8 views: MPJPE {err * 1000:.1f} mm, reprojection {np.nanmean(tri.reprojection_error):.2f} px")
    assert err < 0.015
    assert not np.isnan(tri.points).any()
    assert 0.5 < np.nanmean(tri.reprojection_error) < 3.0


def test_distortion_is_handled():
    rng = np.random.default_rng(2)
    rig, X, px, sc = _frame(rng, dist=[-0.25, 0.08, 0.001, -0.001, -0.01])
    tri = triangulate(rig, px, sc)
    assert np.max(np.linalg.norm(tri.points - X, axis=1)) < 1e-5
    # Ignoring the distortion would be clearly wrong: the same pixels through undistorted cameras.
    flat = ring_rig(8)
    assert _mpjpe(triangulate(flat, px, sc, max_error_px=np.inf).points, X) > 0.01


def test_one_gross_outlier_in_six_views_is_removed():
    rng = np.random.default_rng(3)
    rig, X, px, sc = _frame(rng, cameras=6, noise_px=1.0)
    px = px.copy()
    px[2] += [90.0, -60.0]  # camera 2 sees every joint in the wrong place
    tri = triangulate(rig, px, sc)
    assert not tri.inliers[2].any()
    assert tri.inliers[[0, 1, 3, 4, 5]][sc[[0, 1, 3, 4, 5]] > 0].all()
    robust, plain = _mpjpe(tri.points, X), _mpjpe(_plain_dlt(rig, px, sc), X)
    print(f"outlier view: robust {robust * 1000:.1f} mm, plain DLT {plain * 1000:.1f} mm")
    assert robust < 0.015
    assert plain > 5 * robust


@pytest.mark.parametrize("fraction", [0.1, 0.2])
def test_random_gross_outliers_over_eight_views(fraction):
    rng = np.random.default_rng(4)
    clean, robust, plain = [], [], []
    for _ in range(6):
        rig, X, px, sc = _frame(rng, noise_px=1.5)
        clean.append(_mpjpe(triangulate(rig, px, sc).points, X))
        px_o, m = _add_outliers(rng, px, sc, fraction)
        tri = triangulate(rig, px_o, sc)
        robust.append(_mpjpe(tri.points, X))
        plain.append(_mpjpe(_plain_dlt(rig, px_o, sc), X))
        assert np.isnan(tri.points).mean() < 0.02
        # Most injected outliers are flagged.
        assert (~tri.inliers[m]).mean() > 0.9
    c, r, p = (1000 * np.mean(v) for v in (clean, robust, plain))
    print(f"{fraction:.0%} outliers: MPJPE clean {c:.1f} mm, robust {r:.1f} mm, plain DLT {p:.1f} mm")
    assert r < 1.5 * c + 2.0
    assert p > 5 * r


def test_too_few_views_is_nan():
    rng = np.random.default_rng(5)
    rig, X, px, sc = _frame(rng, cameras=4, people=1)
    sc = sc.copy()
    sc[1:, 0] = 0.0          # joint 0: one view
    sc[2:, 1] = 0.0          # joint 1: two views
    sc[:, 2] = 0.0           # joint 2: none
    px = px.copy()
    px[0, 3] = np.nan        # joint 3: a NaN pixel is missing whatever its score
    sc[:, 4] = 0.01          # joint 4: all below min_score
    tri = triangulate(rig, px, sc, min_views=2)
    assert np.isnan(tri.points[[0, 2, 4]]).all()
    assert np.isfinite(tri.points[[1, 3]]).all()
    assert (tri.views[[0, 2, 4]] == 0).all() and tri.views[1] == 2 and tri.views[3] == 3
    assert (tri.confidence[[0, 2, 4]] == 0).all() and np.isnan(tri.reprojection_error[[0, 2, 4]]).all()
    tri3 = triangulate(rig, px, sc, min_views=3)
    assert np.isnan(tri3.points[1]).all() and np.isfinite(tri3.points[3]).all()


def test_weights_matter():
    rng = np.random.default_rng(6)
    rig, X, px, sc = _frame(rng, cameras=4)
    px = px.copy()
    px[0] += rng.normal(0, 6.0, px[0].shape)   # one noisy view, within the outlier gate
    sc = np.where(sc > 0, 1.0, 0.0)
    even = triangulate(rig, px, sc, max_error_px=np.inf)
    low = sc.copy()
    low[0] *= 0.1
    weighted = triangulate(rig, px, low, max_error_px=np.inf)
    e_even, e_low = _mpjpe(even.points, X), _mpjpe(weighted.points, X)
    print(f"noisy view weight 1: {e_even * 1000:.1f} mm, weight 0.1: {e_low * 1000:.1f} mm")
    assert e_low < 0.6 * e_even


def test_confidence_drops_with_error():
    rng = np.random.default_rng(7)
    rig, X, px, sc = _frame(rng, cameras=3, people=2)
    sc = np.where(sc > 0, 0.9, 0.0)
    conf = []
    for noise in (0.0, 3.0, 8.0):
        noisy = px + rng.normal(0, noise, px.shape)
        tri = triangulate(rig, noisy, sc, max_error_px=np.inf)
        conf.append(np.mean(tri.confidence))
    assert conf[0] == pytest.approx(0.9, abs=1e-6)
    assert conf[0] > conf[1] > conf[2]
    # Per point too: larger reprojection error, lower confidence (same scores).
    order = np.argsort(tri.reprojection_error)
    assert np.all(np.diff(tri.confidence[order]) <= 1e-12)


def test_refine_does_not_hurt_and_lowers_reprojection_cost():
    rng = np.random.default_rng(8)
    rig, X, px, sc = _frame(rng, noise_px=2.0)
    # Varied scores make the weighted DLT and the reprojection objective differ.
    sc = np.where(sc > 0, rng.uniform(0.2, 1.0, sc.shape), 0.0)
    a = triangulate(rig, px, sc)
    b = triangulate(rig, px, sc, refine=True)
    np.testing.assert_array_equal(a.inliers, b.inliers)

    def cost(tri):  # weighted squared pixel reprojection error per point, what refine minimises
        proj = rig.project(tri.points)
        r2 = np.nansum((proj - px) ** 2, axis=-1)
        return np.where(tri.inliers, sc ** 2 * r2, 0.0).sum(0)

    assert np.all(cost(b) <= cost(a) * (1 + 1e-6) + 1e-9)
    assert cost(b).sum() < cost(a).sum()
    assert _mpjpe(b.points, X) < _mpjpe(a.points, X) * 1.05


def test_empty_and_bad_input():
    rig = ring_rig(3)
    tri = triangulate(rig, np.zeros((3, 0, 2)), np.zeros((3, 0)))
    assert tri.points.shape == (0, 3) and tri.inliers.shape == (3, 0) and tri.views.shape == (0,)
    with pytest.raises(ValueError, match=r"points2d must have shape \(3, N, 2\), got \(2, 5, 2\)"):
        triangulate(rig, np.zeros((2, 5, 2)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="scores"):
        triangulate(rig, np.zeros((3, 5, 2)), np.zeros((3, 4)))
    assert triangulate_normalized(rig.projection_matrices, np.zeros((3, 0, 2)), np.zeros((3, 0))).shape == (0, 3)


def test_speed():
    rng = np.random.default_rng(9)
    for cameras, bound_ms in ((8, 15.0), (32, 40.0)):
        rig, X, px, sc = _frame(rng, cameras=cameras, noise_px=1.0)
        triangulate(rig, px, sc)
        runs = 20
        t0 = time.perf_counter()
        for _ in range(runs):
            triangulate(rig, px, sc)
        ms = (time.perf_counter() - t0) / runs * 1e3
        px_o, _ = _add_outliers(rng, px, sc, 0.15)
        t0 = time.perf_counter()
        for _ in range(runs):
            triangulate(rig, px_o, sc)
        ms_o = (time.perf_counter() - t0) / runs * 1e3
        print(f"{cameras} cameras x 102 points: {ms:.2f} ms clean, {ms_o:.2f} ms with 15% outliers")
        assert ms < bound_ms and ms_o < 2 * bound_ms
