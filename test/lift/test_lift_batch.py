"""lift_views: the people of several camera views in one lifter call give what one call per view gives."""
import numpy as np
import pytest

from hpe_ros.lift.batch import lift_views
from hpe_ros.lift.placeholder import ApparentSizeLifter
from hpe_ros.lift.runtime import LearnedLifter, default_model_path
from hpe_ros.sim import MotionScript, default_rig, observe


def _views(cameras=3, people=4, seed=0):
    """[(K, points2d (P_i, 17, 2), scores (P_i, 17))] of a simulated rig, each camera with its own K."""
    rig = default_rig(cameras)
    obs = observe(rig, MotionScript(n_people=people, seed=seed).pose(1.0), np.random.default_rng(seed), noise_px=1.0)
    views = []
    for c in range(cameras):
        rows = obs.person_ids[c] >= 0
        views.append((rig[c].K * (1.0 + 0.1 * c), obs.points2d[c][rows], obs.scores[c][rows]))
    views.append((rig[0].K, np.zeros((0, 17, 2)), np.zeros((0, 17))))  # a camera that sees nobody
    return views


@pytest.mark.skipif(not default_model_path().exists(), reason="models/lifter.onnx not shipped here")
def test_learned_lifter_batches_views_with_their_own_K():
    lifter = LearnedLifter("default", providers="cpu")
    views = _views()
    batched = lift_views(lifter, views)
    assert len(batched) == len(views)
    for (K, points2d, scores), (points3d, conf) in zip(views, batched):
        alone, alone_conf = lifter.lift(K, points2d, scores)
        assert points3d.shape == alone.shape and conf.shape == alone_conf.shape
        np.testing.assert_allclose(points3d, alone, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(conf, alone_conf)


def test_single_K_lifter_is_called_per_view():
    lifter = ApparentSizeLifter()
    views = _views()
    for (K, points2d, scores), (points3d, conf) in zip(views, lift_views(lifter, views)):
        alone, alone_conf = lifter.lift(K, points2d, scores)
        np.testing.assert_array_equal(points3d, alone)
        np.testing.assert_array_equal(conf, alone_conf)
