"""The fusion hot path's shortcuts give the same answers as the plain computations they replace."""
import numpy as np

from hpe_ros.fusion import FusionPipeline, triangulate
from hpe_ros.fusion.association import _affinity_from, associate, epipolar_affinity
from hpe_ros.fusion.geometry import rig_constants

from helpers.fusion_scenes import observe, random_people, ring_rig


def test_rig_constants_match_rig_geometry_with_distortion():
    rig = ring_rig(5, dist=[0.08, -0.03, 0.001, -0.002, 0.01])
    rc = rig_constants(rig)
    rng = np.random.default_rng(0)
    px = rng.uniform(0, 640, (5, 3, 17, 2))
    px[0, 0, 0] = np.nan
    np.testing.assert_allclose(rc.undistort(px), rig.undistort_points(px), atol=1e-12, equal_nan=True)
    X = rng.normal(0, 1, (3, 17, 3)) + [0, 0, 1]
    np.testing.assert_allclose(rc.project(X), rig.project(X), atol=1e-9, equal_nan=True)
    assert rig_constants(rig) is rc                                   # cached per rig
    rig.cameras[1].t = rig.cameras[1].t + 0.1                          # a replaced array is noticed
    rc = rig_constants(rig)
    assert rig_constants(rig) is rc
    rig.cameras[2] = rig.cameras[2].copy()                              # a replaced camera is noticed
    rc = rig_constants(rig)
    assert rc is not rig_constants(ring_rig(5)) and rig_constants(rig) is rc
    rig.cameras.pop()                                                   # so is a removed one
    assert rig_constants(rig).C == 4


def test_essential_matrices_hold_for_true_correspondences():
    rig = ring_rig(4)
    rc = rig_constants(rig)
    X = np.array([0.3, -0.2, 1.1])
    x = [(c.R @ X + c.t) / (c.R @ X + c.t)[2] for c in rig]
    for a in range(4):
        for b in range(4):
            assert abs(x[b] @ rc.E[a, b] @ x[a]) < 1e-12


def test_sparse_affinity_equals_dense_on_the_pairs_it_computes():
    rng = np.random.default_rng(1)
    rig = ring_rig(6)
    people = random_people(rng, 4)
    px, sc = observe(rig, people, rng, noise_px=1.0)
    confident = np.isfinite(px).all(-1) & (sc >= 0.1)
    active = confident.sum(-1) >= 3
    rc = rig_constants(rig)
    xy = rc.undistort(np.where(confident[..., None], px, 0.0))
    dense = epipolar_affinity(rig, xy, confident).reshape(24, 24)
    source = np.zeros((6, 4), dtype=bool)
    source[2, 1] = source[4, 3] = True                                  # two "new" detections
    sparse = _affinity_from(rc, xy, confident, active, source)
    s = np.flatnonzero((source & active).ravel())
    act = np.flatnonzero(active.ravel())
    np.testing.assert_allclose(sparse[np.ix_(s, act)], dense[np.ix_(s, act)], rtol=1e-9)
    other = np.setdiff1d(np.arange(24), s)
    assert np.isinf(sparse[np.ix_(other, other)]).all()


def test_association_triangulation_is_the_triangulation_of_its_groups():
    rng = np.random.default_rng(2)
    rig = ring_rig(6)
    people = random_people(rng, 3)
    px, sc = observe(rig, people, rng, noise_px=2.0)
    assoc = associate(rig, px, sc, max_error_px=12.0)
    assert assoc.triangulated.any()
    C, J = 6, 17
    for g in np.flatnonzero(assoc.triangulated):
        rows = assoc.groups[g]
        pts = np.full((C, J, 2), np.nan)
        s = np.zeros((C, J))
        for c in np.flatnonzero(rows >= 0):
            pts[c], s[c] = px[c, rows[c]], sc[c, rows[c]]
        tri = triangulate(rig, pts, s, min_score=0.1, max_error_px=12.0)
        np.testing.assert_allclose(assoc.points[g], tri.points, atol=1e-9, equal_nan=True)
        np.testing.assert_allclose(assoc.confidence[g], tri.confidence, atol=1e-12)
        np.testing.assert_array_equal(assoc.joint_views[g], tri.views)


def test_pipeline_reuse_matches_triangulating_every_group():
    from hpe_ros.sim import MotionScript, default_rig
    from hpe_ros.sim import observe as sim_observe

    rig, script = default_rig(6), MotionScript(3, seed=4)
    rng = np.random.default_rng(4)
    fast = FusionPipeline(rig)
    slow = FusionPipeline(rig)
    slow._triangulate_groups = lambda p, s, g, assoc=None, max_error_px=None: FusionPipeline._triangulate_groups(
        slow, p, s, g, None, max_error_px)
    for k in range(20):
        obs = sim_observe(rig, script.pose(k / 30), rng, noise_px=2.0, outlier_rate=0.1)
        a = fast.step(k / 30, obs.points2d, obs.scores, orientations=False).as_arrays()
        b = slow.step(k / 30, obs.points2d, obs.scores, orientations=False).as_arrays()
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-9, equal_nan=True)
