from types import SimpleNamespace

import numpy as np

from hpe_ros.metrics import PoseScorer, match_people, nearest_by_stamp, summarise_stream


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


def test_stream_summary_scores_latency_drops_and_diagnostics():
    gt = np.stack([np.zeros((17, 3)), np.full((17, 3), 2.0)])
    truth = {round(t * 1e9): SimpleNamespace(stamp=t, points=gt) for t in (1.0, 1.1, 1.2, 1.3)}
    fused = [(t + 0.05, SimpleNamespace(stamp=t, points=gt + [0.01, 0, 0], ids=np.array([1, 2])))
             for t in (0.9, 1.0, 1.1, 1.3)]                          # 0.9: before the start; 1.2: dropped
    diagnostics = {"fusion_node: fusion": {"dropped": "3", "latency_ms_p50": "4.0", "latency_ms_p99": "9.5",
                                           "associate_ms": "0.25"}}
    out = summarise_stream(fused, truth, t_start=0.95, diagnostics=diagnostics)
    assert out["frames"] == 3 and out["scored_frames"] == 3 and out["dropped"] == 1
    assert abs(out["mpjpe_mm"] - 10.0) < 1e-9 and abs(out["latency_ms_p50"] - 50.0) < 1e-6
    assert out["fusion_node_dropped"] == 3 and out["fusion_node_latency_ms_p99"] == 9.5
    assert out["stage_latency_ms"] == {"fusion_node: fusion": {"p50": 4.0, "p99": 9.5}}
    assert out["fusion_step_ms"] == {"associate": 0.25}
    assert nearest_by_stamp(truth, 1.104) is truth[round(1.1e9)] and nearest_by_stamp(truth, 1.15) is None
    assert nearest_by_stamp({}, 1.0) is None
