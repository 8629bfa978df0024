"""Calibration from people with a real detector's pixel errors: the gates follow the data's noise.

An HD portrait rig (1080 x 1920, f = 1680 px, as the Pose2Sim demo cameras) and detections 8 px off
per coordinate (a real detector errs by 10-20 px on hips at that size), plus 5 % gross outliers: a fixed 4 px
epipolar threshold finds no camera pair there, the estimated one does and lands near the truth.
"""
from __future__ import annotations

import numpy as np
import pytest

from hpe_ros.calibration.compare import compare_rigs
from hpe_ros.calibration.from_people import calibrate_from_people
from hpe_ros.io.calibration import CalibrationError
from hpe_ros.sim import MotionScript, default_rig, observe
from hpe_ros.skeleton import COCO17

NOISE_PX = 8.0


def hd_scene(seconds: float = 20.0, fps: float = 10.0):
    rig = default_rig(4, size=(1080, 1920), focal=1680.0)
    script = MotionScript(n_people=1, seed=3, activities=["walk"])
    rng = np.random.default_rng(3)
    times = np.arange(0.0, seconds, 1.0 / fps)
    points = np.full((4, len(times), 1, COCO17.num_joints, 2), np.nan)
    scores = np.zeros((4, len(times), 1, COCO17.num_joints))
    for k, t in enumerate(times):
        obs = observe(rig, script.pose(t), rng, noise_px=NOISE_PX, outlier_rate=0.05)
        points[:, k, : obs.num_rows], scores[:, k, : obs.num_rows] = obs.points2d, obs.scores
    return rig, script, points, scores


def test_noisy_hd_detections_calibrate_with_estimated_gates():
    truth, script, points, scores = hd_scene()
    with pytest.raises(CalibrationError, match="no person could be matched"):
        calibrate_from_people(truth, points, scores, person_height=float(script.heights.mean()), progress=False,
                              epipolar_px=4.0)
    rig, report = calibrate_from_people(truth, points, scores, person_height=float(script.heights.mean()),
                                        progress=False)
    assert 0.6 * NOISE_PX < report["noise_px"] < 1.5 * NOISE_PX
    assert len(report["pair_graph"]) == 6
    cmp = compare_rigs(rig, truth)
    assert cmp["rotation_error_deg"].max() < 0.5, cmp["rotation_error_deg"]
    assert cmp["centre_error_mm"].max() < 20.0, cmp["centre_error_mm"]
