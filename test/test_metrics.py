from types import SimpleNamespace

import numpy as np

from hpe_ros.metrics import PoseScorer, match_people, nearest_by_stamp, stage_flow, summarise_stream


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
                                           "associate_ms": "0.25"},
                   "fusion_node: memory": {"rss_mb": "130.50", "malloc_live_mb": "40.00"}}
    out = summarise_stream(fused, truth, t_start=0.95, diagnostics=diagnostics)
    assert out["frames"] == 3 and out["scored_frames"] == 3 and out["dropped"] == 1
    assert abs(out["mpjpe_mm"] - 10.0) < 1e-9 and abs(out["latency_ms_p50"] - 50.0) < 1e-6
    assert out["fusion_node_dropped"] == 3 and out["fusion_node_latency_ms_p99"] == 9.5
    assert out["stage_latency_ms"] == {"fusion_node: fusion": {"p50": 4.0, "p99": 9.5}}
    assert out["fusion_step_ms"] == {"associate": 0.25}
    assert out["rss_mb"] == {"fusion_node": 130.5}
    assert nearest_by_stamp(truth, 1.104) is truth[round(1.1e9)] and nearest_by_stamp(truth, 1.15) is None
    assert nearest_by_stamp({}, 1.0) is None


def test_stage_flow_counts_frames_through_each_stage_between_two_snapshots():
    before = {"rig_sim_node: sim": {"processed": "100", "dropped": "2"},
              "camera_pose_node: cam0": {"processed": "90", "dropped": "1", "missed_before_node": "3"},
              "lifter_node: cam0": {"processed": "88"}, "fusion_node: cam0": {"processed": "88"},
              "fusion_node: fusion": {"processed": "80", "dropped": "0"}}
    after = {"rig_sim_node: sim": {"processed": "130", "dropped": "2"},
             "camera_pose_node: cam0": {"processed": "115", "dropped": "4", "missed_before_node": "5"},
             "camera_pose_node: cam1": {"processed": "20", "dropped": "0", "missed_before_node": "0"},
             "lifter_node: cam0": {"processed": "113"}, "fusion_node: cam0": {"processed": "112"},
             "fusion_node: fusion": {"processed": "104", "dropped": "1"}}
    flow = stage_flow(before, after, ["cam0", "cam1"])
    assert flow["sim_frames"] == 30 and flow["sim_fell_behind"] == 0
    assert flow["fused"] == 24 and flow["fusion_sync_dropped"] == 1
    assert flow["cameras"]["cam0"] == {"published": 30, "pose_2d": 25, "pose_2d_dropped_in_node": 3,
                                       "missed_before_node": 2, "lifted": 25, "fusion_in": 24}
    # A stage first seen after the start counts from zero; a stage never seen is left out.
    assert flow["cameras"]["cam1"] == {"published": 30, "pose_2d": 20, "pose_2d_dropped_in_node": 0,
                                       "missed_before_node": 0}
    assert stage_flow({}, {}, ["cam0"]) == {"sim_frames": None, "sim_fell_behind": None, "fused": None,
                                            "fusion_sync_dropped": None, "cameras": {"cam0": {}}}
