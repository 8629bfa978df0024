"""Fusion on a real detector's errors (hpe_ros.sim, errors="realistic") against the oracle inlier-only DLT,
and the data-driven thresholds that keep it there (benchmarks/bench_fusion_oracle.py is the long version)."""
import numpy as np
import pytest

from hpe_ros.fusion import FusionConfig, FusionPipeline, Tracker, TrackerConfig
from hpe_ros.fusion.filters import OneEuroFilter
from hpe_ros.fusion.robust_scale import RobustScale
from hpe_ros.metrics import match_people
from hpe_ros.sim import MotionScript, default_rig, observe
from hpe_ros.sim.oracle import detector_joints, oracle_triangulate

FIXED = FusionConfig(error_scale_k=0.0, tracker=TrackerConfig(one_euro_noise_ref=0.0, innovation_gate_k=0.0))


def fusion_vs_oracle(config: FusionConfig, errors="realistic", cameras=4, people=2, frames=90, seed=1, skip=10):
    """Mean error (m) of the fusion and of the oracle over the joints both return, against the detector's
    joints; and the pipeline after the run."""
    rig, rng = default_rig(cameras), np.random.default_rng(seed)
    script = MotionScript(people, seed=seed, area=(4.0, 4.0))
    pipe = FusionPipeline(rig, "coco17", config)
    ours_err, oracle_err = [], []
    for k in range(frames):
        truth = script.pose(k / 30)
        obs = observe(rig, truth, rng, errors=errors)
        points = pipe.step(k / 30, obs.points2d, obs.scores, orientations=False).as_arrays()[0]
        if k < skip:
            continue
        target = detector_joints(truth, errors)
        ours = np.full_like(truth, np.nan)
        for r, g in match_people(points, target):
            ours[g] = points[r]
        oracle = oracle_triangulate(rig, obs, truth, errors)
        both = np.isfinite(ours).all(-1) & np.isfinite(oracle).all(-1)
        ours_err.append(np.linalg.norm(ours - target, axis=-1)[both])
        oracle_err.append(np.linalg.norm(oracle - target, axis=-1)[both])
    return np.concatenate(ours_err).mean(), np.concatenate(oracle_err).mean(), pipe


def test_realistic_fusion_stays_within_1_3x_of_the_oracle():
    ours, oracle, pipe = fusion_vs_oracle(FusionConfig())
    # The goal is 1.3; measured 0.92 (with the fixed thresholds of FIXED: 1.38).
    assert ours / oracle <= 1.1
    # The outlier threshold followed the detector's precision: a few px, not the 12 px cap.
    assert 2.0 <= pipe.error_threshold_px < 5.0
    fixed, _, _ = fusion_vs_oracle(FIXED)
    assert ours < 0.8 * fixed


def test_clean_detections_keep_the_capped_threshold():
    ours, oracle, pipe = fusion_vs_oracle(FusionConfig(), errors=None, frames=40)
    assert pipe.error_threshold_px > 9.0          # 2 px noise: residual median ~1.7 px -> 6 x that, near the cap
    assert ours < oracle                           # tracking smooths the 2 px noise below a per-frame DLT


def test_robust_scale_follows_the_median():
    scale = RobustScale(initial=12.0, tau_s=1.0, min_samples=5)
    assert not scale.measured and scale.threshold(6.0, floor=2.0, cap=12.0) == 12.0
    scale.update(0.0, np.array([1.0, 1.0, 1.0, 500.0, np.nan, 1.0]))   # one outlier, one missing
    assert scale.measured and scale.scale == 1.0                        # the first frame replaces the initial value
    scale.update(0.5, np.full(10, 3.0))                                  # half a time constant later: half way
    assert scale.scale == pytest.approx(2.0)
    scale.update(0.6, np.full(4, 100.0))                                 # too few samples: skipped
    assert scale.scale == pytest.approx(2.0)
    assert scale.threshold(6.0, floor=2.0, cap=10.0) == 10.0 and scale.threshold(0.5, floor=2.0) == 2.0
    scale.reset()
    assert not scale.measured and scale.scale == 12.0
    with pytest.raises(ValueError, match="initial > 0"):
        RobustScale(initial=0.0)


def test_one_euro_smooths_less_when_measurements_are_cleaner_than_its_setting():
    rng = np.random.default_rng(0)
    truth = np.linspace(0, 1, 60)[:, None, None] * np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.5, (1, 20, 3))
    lag = {}
    for name, ref, noise in (("fixed", 0.0, 0.002), ("noisy", 0.03, 0.02), ("clean", 0.03, 0.002)):
        f = OneEuroFilter(1.0, 20.0, noise_ref=ref)
        for k, x in enumerate(truth):
            out = f(k / 30, x + rng.normal(0, noise, x.shape))
        lag[name] = np.linalg.norm(out - truth[-1], axis=-1).mean()
        if name == "noisy":
            assert f.cutoff_scale == 1.0          # as noisy as the setting or noisier: the set cutoffs
        if name == "clean":
            assert f.cutoff_scale == OneEuroFilter.MAX_SCALE and f.noise < 0.015
    assert lag["clean"] < 0.5 * lag["fixed"]


def test_innovation_gate_rejects_a_jump_the_speed_gate_lets_through():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.3, (17, 3)) + [0.0, 0.0, 1.0]
    for k_gate, rejected in ((10.0, True), (0.0, False)):
        tracker = Tracker(TrackerConfig(innovation_gate_k=k_gate, filter="none", bone_gain=0.0))
        for k in range(30):
            pose = base + [0.03 * k, 0.0, 0.0] + rng.normal(0, 0.005, base.shape)   # 0.9 m/s, 5 mm noise
            if k == 29:
                pose[9] += [0.0, 0.3, 0.0]                    # 0.3 m off in one frame: under 10 m/s x 1/30 s
            tracks = tracker.update(k / 30, pose[None], np.ones((1, 17)))
        assert (abs(tracks[0].joints[9, 1] - base[9, 1]) < 0.05) == rejected


def test_innovation_gate_costs_a_sudden_real_move_one_update():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 0.3, (17, 3)) + [0.0, 0.0, 1.0]
    tracker = Tracker(TrackerConfig(filter="none", bone_gain=0.0))
    for k in range(40):
        shift = max(k - 29, 0) * 0.1                          # still, then 3 m/s from frame 30 on
        pose = base + [shift, 0.0, 0.0] + rng.normal(0, 0.002, base.shape)
        tracks = tracker.update(k / 30, pose[None], np.ones((1, 17)))
        if k < 30:
            continue
        error = np.linalg.norm(tracks[0].joints - pose, axis=-1).max()
        if k == 30:
            assert error > 0.05                               # far off the still prediction: held once
        elif k > 30:
            assert error < 0.01                               # then followed, not stuck behind the gate
