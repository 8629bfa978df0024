"""Calibration on the real Pose2Sim Demo_SinglePerson capture, against its Qualisys calibration.

* From people: the BlazePose detections of the demo's four videos (100 frames, one person; detected once
  and cached, `helpers.demo_detections`), `calibrate_from_people` with the Qualisys intrinsics and default
  options, compared with the Qualisys extrinsics after a similarity alignment.
* Board: each camera's intrinsics from its own checkerboard images (Config.toml: 4 x 7 inner corners,
  60 mm squares), compared with the Qualisys intrinsics.
"""
import numpy as np
import pytest

from hpe_ros.calibration.board import Board
from hpe_ros.calibration.board_calibration import calibrate_board
from hpe_ros.calibration.compare import compare_rigs
from hpe_ros.calibration.from_people import calibrate_from_people, load_keypoint_folders

pytestmark = pytest.mark.realdata

# Measured (BlazePose, defaults): rotation 0.96-2.07 deg, centre 37-96 mm per camera (estimated noise
# 8.7 px), short of the 1 deg / 5 cm aimed at. The clip holds 100 frames (1.7 s) of one person whose
# positions span 0.8 m (fewer frames are worse: 75 frames give up to 3 deg), and the detections disagree
# with the Qualisys rig by 17-30 px (median, each camera against the other three's triangulation; cam03
# worst, and worst again on Demo_MultiPerson), more than the noise the calibration itself sees.
MAX_ROTATION_DEG = 2.5
MAX_CENTRE_MM = 130.0


def test_rig_from_the_person_in_the_demo_videos_is_near_qualisys(realdata_demo):
    from helpers.demo_detections import demo_detections, demo_rig

    truth = demo_rig()
    points, scores = load_keypoint_folders([str(f) for f in demo_detections("blazepose")], "coco17")
    rig, report = calibrate_from_people(truth, points, scores, layout="coco17", progress=False)
    cmp = compare_rigs(rig, truth)
    assert len(report["pair_graph"]) == 6                           # every pair of cameras matched
    assert 5.0 < report["noise_px"] < 20.0                          # measured 8.7 px
    assert np.all(cmp["rotation_error_deg"] < MAX_ROTATION_DEG), cmp["rotation_error_deg"]
    assert np.all(cmp["centre_error_mm"] < MAX_CENTRE_MM), cmp["centre_error_mm"]


@pytest.mark.parametrize("camera", ["cam01", "cam02", "cam03", "cam04"])
def test_board_intrinsics_match_qualisys(realdata_demo, camera):
    from helpers.demo_detections import demo_rig

    images = realdata_demo("Demo_SinglePerson") / "calibration" / "intrinsics" / f"int_{camera}_img"
    rig, _ = calibrate_board({camera: str(images)}, Board.checkerboard(4, 7, 0.06), progress=False)
    K, K_qualisys = rig[0].K, demo_rig()[camera].K
    assert abs(K[0, 0] / K_qualisys[0, 0] - 1) < 0.01
    assert abs(K[1, 1] / K_qualisys[1, 1] - 1) < 0.01
