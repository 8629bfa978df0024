"""Calibration on the real Pose2Sim demo captures, against their (shared) Qualisys calibration.

* From people: the BlazePose detections of the demos' four videos (100 frames each; detected once and
  cached, `helpers.demo_detections`), `calibrate_from_people` with the Qualisys intrinsics and default
  options, compared with the Qualisys extrinsics after a similarity alignment: Demo_SinglePerson alone,
  and pooled with Demo_MultiPerson (two people, other positions; same rig).
* What limits it: the same clip's geometry with ideal detections plus noise calibrates within 0.3 deg,
  while the real detections sit a constant 22-27 px off where the Qualisys rig puts them in cam01 and cam03.
* Board: each camera's intrinsics from its own checkerboard images (Config.toml: 4 x 7 inner corners,
  60 mm squares), compared with the Qualisys intrinsics.
"""
import numpy as np
import pytest

from hpe_ros.calibration.board import Board
from hpe_ros.calibration.board_calibration import calibrate_board
from hpe_ros.calibration.compare import compare_rigs
from hpe_ros.calibration.from_people import calibrate_from_people, load_keypoint_folders
from hpe_ros.camera import Rig
from hpe_ros.fusion.triangulation import triangulate

pytestmark = pytest.mark.realdata

# Measured (BlazePose, defaults), rotation / centre error per camera cam01..cam04 after a similarity alignment:
#   Demo_SinglePerson (100 frames):           1.53 0.67 1.86 0.73 deg,  40 14 54 72 mm (noise 8.7 px)
#   + Demo_MultiPerson (200 frames, 3 people): 1.20 1.35 2.10 0.80 deg,  34 23 54 62 mm (noise 9.1 px)
# (before the hips were down-weighted: 1.71 0.96 2.07 1.13 deg, 39 37 75 96 mm on the single clip), short of
# the 1 deg / 5 cm aimed at. Not for the clip's geometry: with ideal detections and 8 px of noise it gives
# 0.11 deg / 5 mm (`test_the_clips_geometry_supports_a_tenth_of_a_degree`), and the bundle adjustment started
# at the Qualisys rig ends where it ends from people (1.52 0.68 1.86 0.72 deg). The detections disagree with
# the Qualisys rig in a way no extrinsics of these cameras absorb: constant image offsets of cam01 and cam03
# (about 20 px, the same in both recordings, no time lag: < 0.5 frame), and 11-22 px rms of slowly varying,
# view-dependent error per joint (frame-to-frame jitter only 4-7 px); without the constant offsets the
# pooled figures would still be 1.06 1.22 1.63 0.79 deg. mediapipe's own BlazePose runtime
# gives the same figures (1.64 0.71 2.01 0.78 deg). Robust-loss (Huber, Cauchy, scale 0.5-4 sigma), joint
# weights after COCO's OKS sigmas, focal refinement, bone weight 0-200 and board intrinsics all stay between
# 0.7 and 3.5 deg on some camera.
MAX_ROTATION_DEG = 2.2
MAX_CENTRE_MM = 95.0
POOLED_MAX_ROTATION_DEG = 2.5
POOLED_MAX_CENTRE_MM = 80.0


def _detections(demo):
    from helpers.demo_detections import demo_detections

    return load_keypoint_folders([str(f) for f in demo_detections("blazepose", demo)], "coco17")


def test_rig_from_the_person_in_the_demo_videos_is_near_qualisys(realdata_demo):
    from helpers.demo_detections import demo_rig

    truth = demo_rig()
    points, scores = _detections("Demo_SinglePerson")
    rig, report = calibrate_from_people(truth, points, scores, layout="coco17", progress=False)
    cmp = compare_rigs(rig, truth)
    assert len(report["pair_graph"]) == 6                           # every pair of cameras matched
    assert 5.0 < report["noise_px"] < 20.0                          # measured 8.7 px
    assert np.all(cmp["rotation_error_deg"] < MAX_ROTATION_DEG), cmp["rotation_error_deg"]
    assert np.all(cmp["centre_error_mm"] < MAX_CENTRE_MM), cmp["centre_error_mm"]


def test_two_recordings_of_the_rig_pooled(realdata_demo):
    from helpers.demo_detections import demo_rig

    truth = demo_rig()
    recordings = [_detections(demo) for demo in ("Demo_SinglePerson", "Demo_MultiPerson")]
    rig, report = calibrate_from_people(truth, [r[0] for r in recordings], [r[1] for r in recordings],
                                        layout="coco17", progress=False)
    cmp = compare_rigs(rig, truth)
    assert report["frames"]["recordings"] == [100, 100]
    assert report["people"]["tracks"] >= 3                          # the multi-person clip's two are told apart
    assert report["data"]["position_spread_m"] > 1.5                # measured 1.83 m (one clip: 0.81 m)
    assert np.all(cmp["rotation_error_deg"] < POOLED_MAX_ROTATION_DEG), cmp["rotation_error_deg"]
    assert np.all(cmp["centre_error_mm"] < POOLED_MAX_CENTRE_MM), cmp["centre_error_mm"]


def test_the_clips_geometry_supports_a_tenth_of_a_degree(realdata_demo):
    """The detections replaced by the projection of their Qualisys triangulation plus 8 px of Gaussian noise
    (same frames, same visibility): the calibration then lands within 0.3 deg / 15 mm (measured 0.11 deg,
    5 mm), so the real figures' limit is the detections' systematic disagreement with the rig."""
    from helpers.demo_detections import demo_rig

    truth = demo_rig()
    points, scores = _detections("Demo_SinglePerson")
    C = len(truth)
    X = triangulate(truth, points.reshape(C, -1, 2), scores.reshape(C, -1), min_views=2, min_score=0.4,
                    max_error_px=40.0).points
    ideal = np.stack([cam.project(X) for cam in truth]).reshape(points.shape)
    ideal = np.where(np.isfinite(points), ideal + np.random.default_rng(0).normal(0, 8.0, points.shape), np.nan)
    rig, _ = calibrate_from_people(truth, ideal, np.where(np.isfinite(ideal).all(-1), scores, 0.0), layout="coco17",
                                   progress=False)
    cmp = compare_rigs(rig, truth)
    assert np.all(cmp["rotation_error_deg"] < 0.3), cmp["rotation_error_deg"]
    assert np.all(cmp["centre_error_mm"] < 15.0), cmp["centre_error_mm"]


def test_detections_sit_offset_from_the_qualisys_rig_in_cam01_and_cam03(realdata_demo):
    """Median of each camera's detections minus the projection of the other three's triangulation (Qualisys
    rig): cam01 (21, 5) px and cam03 (23, 15) px, a constant shift (about 0.8 deg of camera rotation)
    that self-calibration takes into the rig; cam02 and cam04 within 8 px."""
    from helpers.demo_detections import demo_rig

    truth = demo_rig()
    points, scores = _detections("Demo_SinglePerson")
    C = len(truth)
    shift = []
    for c in range(C):
        others = [k for k in range(C) if k != c]
        X = triangulate(Rig([truth[k] for k in others]), points[others].reshape(C - 1, -1, 2),
                        scores[others].reshape(C - 1, -1), min_views=2, min_score=0.4).points
        error = points[c].reshape(-1, 2) - truth[c].project(X)
        used = (scores[c].reshape(-1) >= 0.4) & np.isfinite(error).all(axis=-1)
        shift.append(np.linalg.norm(np.median(error[used], axis=0)))
    assert shift[0] > 15 and shift[2] > 15, shift                  # measured 21.7, 27.1 px
    assert shift[1] < 10 and shift[3] < 10, shift                  # measured 6.0, 7.2 px


@pytest.mark.parametrize("camera", ["cam01", "cam02", "cam03", "cam04"])
def test_board_intrinsics_match_qualisys(realdata_demo, camera):
    from helpers.demo_detections import demo_rig

    images = realdata_demo("Demo_SinglePerson") / "calibration" / "intrinsics" / f"int_{camera}_img"
    rig, _ = calibrate_board({camera: str(images)}, Board.checkerboard(4, 7, 0.06), progress=False)
    K, K_qualisys = rig[0].K, demo_rig()[camera].K
    assert abs(K[0, 0] / K_qualisys[0, 0] - 1) < 0.01
    assert abs(K[1, 1] / K_qualisys[1, 1] - 1) < 0.01
