import numpy as np

from hpe_ros.metrics import PoseScorer, match_people


def test_match_people_pairs_by_distance_and_gates():
    gt = np.stack([np.zeros((17, 3)), np.full((17, 3), 2.0)])
    pred = gt[::-1] + 0.01
    assert sorted(match_people(pred, gt)) == [(0, 1), (1, 0)]
    assert match_people(pred + 5.0, gt) == []
    assert match_people(np.zeros((0, 17, 3)), gt) == []


def test_scorer_mpjpe_missing_and_id_switches():
    gt = np.stack([np.zeros((17, 3)), np.full((17, 3), 2.0)])
    s = PoseScorer()
    pred = gt.copy()
    pred[0, :, 0] += 0.02  # 20 mm off
    pred[1, 3] = np.nan  # one missing joint
    s.add(pred, np.array([7, 8]), gt)
    s.add(pred, np.array([7, 9]), gt)  # person 1 changes track id -> one switch
    out = s.summary()
    assert abs(out["mpjpe_mm"] - (17 * 20.0) / 33 * 1) < 1e-6
    assert abs(out["missing_joints_pct"] - 100 * 2 / 68) < 1e-9
    assert out["id_switches"] == 1
    assert out["pck50_pct"] == 100.0
