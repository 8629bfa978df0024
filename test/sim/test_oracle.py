"""The oracle inlier-only DLT: the views it keeps and what it reaches."""
import numpy as np

from hpe_ros.sim import MotionScript, default_rig, observe
from hpe_ros.sim.oracle import detector_joints, inlier_detections, oracle_triangulate


def test_inliers_leave_out_every_wrong_view():
    rig, truth = default_rig(4), MotionScript(3, seed=2).pose(1.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs = observe(rig, truth, rng, errors="realistic")
        points, scores = inlier_detections(rig, obs, truth, "realistic")
        assert points.shape == (4, 3, 17, 2) and scores.shape == (4, 3, 17)
        cam, row = np.nonzero(obs.person_ids >= 0)
        person = obs.person_ids[cam, row]
        wrong = obs.is_outlier[cam, row] | obs.is_occluded[cam, row]
        assert not (scores[cam, person] > 0)[wrong].any()
        kept = (scores[cam, person] > 0) & ~wrong
        np.testing.assert_array_equal(points[cam, person][kept], obs.points2d[cam, row][kept])
        assert np.isnan(points[scores == 0]).all()
        # Border-piled joints (ideal projection outside the image) never count.
        inside = (points >= 0) & (points < np.array(rig[0].size))
        assert inside[scores > 0].all()


def test_oracle_recovers_noise_free_joints_and_matches_the_detector_definition():
    rig, truth = default_rig(4), MotionScript(2, seed=1).pose(0.5)
    obs = observe(rig, truth, np.random.default_rng(1), noise_px=0.0, outlier_rate=0.3, miss_rate=0.0)
    X = oracle_triangulate(rig, obs, truth, None)
    ok = np.isfinite(X).all(-1)
    assert ok.mean() > 0.6
    np.testing.assert_allclose(X[ok], truth[ok], atol=1e-6)             # 30 % of the views were gross outliers
    offset = detector_joints(truth, "realistic") - truth
    assert 0.001 < np.abs(offset).mean() < 0.03                          # centimetres, fixed per person
