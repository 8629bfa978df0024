"""SimStream: the synthetic rig as a live camera system (trigger grid, replay, per-camera detections)."""
import numpy as np
import pytest

from hpe_ros.sim import MotionScript, default_rig
from hpe_ros.sim.stream import SimConfig, SimStream


def test_frames_sit_on_the_trigger_grid_and_replay_the_same_people():
    rig = default_rig(4)
    a, b = (SimStream(rig, SimConfig(num_people=2, seed=3, rate_hz=30.0), origin=100.0) for _ in range(2))
    now = 100.0 + 5 / 30 + 0.004
    assert a.frame_at(now) == 5
    assert a.until_next_frame(now) == pytest.approx(1 / 30 - 0.004)
    fa, fb = a.render(5), b.render(5)
    assert fa.index == 5 and fa.stamp == pytest.approx(100.0 + 5 / 30)
    assert fa.stamps.shape == (4,) and np.abs(fa.stamps - fa.stamp).max() < 0.005   # 0.5 ms jitter
    np.testing.assert_allclose(fa.truth, MotionScript(n_people=2, seed=3).pose(5 / 30), atol=1e-9)
    assert len(fa.points2d) == len(fa.scores) == 4
    for pa, pb, sa in zip(fa.points2d, fb.points2d, fa.scores):
        np.testing.assert_array_equal(pa, pb)
        assert pa.shape[1:] == (17, 2) and sa.shape == pa.shape[:2]


def test_a_subset_of_cameras_is_published_and_views_count_every_camera():
    clean = SimConfig(num_people=1, noise_px=0.0, miss_rate=0.0, outlier_rate=0.0, occlusion=False)
    frame = SimStream(default_rig(4), clean, cameras=[1, 3]).render(0)
    assert len(frame.points2d) == 2 and frame.stamps.shape == (2,)
    assert frame.views.shape == (1, 17) and frame.views.max() == 4
    seen = frame.points2d[0][0]
    np.testing.assert_allclose(seen, default_rig(4)[1].project(frame.truth[0]), atol=1e-9)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="rate_hz"):
        SimConfig(rate_hz=0.0)
    with pytest.raises(ValueError, match="stamp_jitter_ms"):
        SimConfig(stamp_jitter_ms=-1.0)
