"""FusionPipeline end to end: 2D detections of a rig -> tracked 3D persons.

The first tests use a small hand-built rig and rigid walkers (exact control over what each camera sees);
the last ones run the procedural motion of hpe_ros.sim through its virtual cameras.
"""
import time

import numpy as np
import pytest

from hpe_ros.camera import Camera, Rig, look_at
from hpe_ros.checks import config_from_mapping
from hpe_ros.fusion import FusionConfig, FusionPipeline, FusionResult, TrackerConfig
from hpe_ros.fusion.tracking import pose_distance
from hpe_ros.skeleton import COCO17

from helpers.fusion_scenes import person

DT = 1 / 30


def ring_rig(n=4, radius=5.0):
    K = [[600, 0, 320], [0, 600, 240], [0, 0, 1]]
    cams = []
    for k, a in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False) + 0.3):
        R, t = look_at([radius * np.cos(a), radius * np.sin(a), 2.5], [0, 0, 1])
        cams.append(Camera(f"cam{k}", K, R=R, t=t, size=(640, 480)))
    return Rig(cams)


def detections(rig, truth, rng, noise_px=1.0):
    """Project (P, J, 3) truth into every camera, rows shuffled per camera -> points2d, scores, lifted, order."""
    px = rig.project(truth) + rng.normal(0, noise_px, (len(rig),) + truth.shape[:2] + (2,))
    lifted = np.stack([cam.world_to_camera(truth) for cam in rig])
    order = np.stack([rng.permutation(len(truth)) for _ in rig])
    take = lambda a: np.stack([a[c, order[c]] for c in range(len(rig))])
    return take(px), np.full(px.shape[:3], 0.9), take(lifted), order


def mpjpe(truth, result):
    """Mean joint error (m) of the result's persons matched to truth by pose distance."""
    points, _, _, _ = result.as_arrays()
    d = pose_distance(truth, points)
    return np.nanmean(np.linalg.norm(points[d.argmin(1)] - truth, axis=-1))


# --- configuration and validation -------------------------------------------------------------------

def test_config_from_mapping_checks_keys_and_types():
    cfg = config_from_mapping(FusionConfig, {"min_views": 3.0, "tracker": {"gate_m": 1}, "refine": True}, "fusion")
    assert cfg.min_views == 3 and isinstance(cfg.min_views, int) and cfg.tracker.gate_m == 1.0 and cfg.refine
    with pytest.raises(ValueError, match=r"unknown fusion option.*'gate'.*valid: min_views, max_error_px"):
        config_from_mapping(FusionConfig, {"gate": 0.5}, "fusion")
    with pytest.raises(ValueError, match="fusion.tracker option birth_hits must be an integer"):
        config_from_mapping(FusionConfig, {"tracker": {"birth_hits": 2.5}}, "fusion")
    with pytest.raises(ValueError, match="true or false"):
        config_from_mapping(FusionConfig, {"refine": "yes"}, "fusion")
    with pytest.raises(ValueError, match="filter must be one of one_euro, none"):
        config_from_mapping(FusionConfig, {"tracker": {"filter": "yes"}}, "fusion")
    with pytest.raises(ValueError, match="gate_m"):
        FusionConfig(tracker=TrackerConfig(gate_m=-1))


def test_inputs_must_agree_with_rig_and_layout():
    rig = ring_rig(3)
    pipe = FusionPipeline(rig, "coco17")
    ok = np.zeros((3, 1, 17, 2)), np.zeros((3, 1, 17))
    with pytest.raises(ValueError, match=r"points2d must have shape \(3, \?, 17, 2\), got \(4, 1, 17, 2\)"):
        pipe.step(0.0, np.zeros((4, 1, 17, 2)), np.zeros((4, 1, 17)))
    with pytest.raises(ValueError, match=r"points2d must have shape \(3, \?, 17, 2\), got \(3, 1, 25, 2\)"):
        pipe.step(0.0, np.zeros((3, 1, 25, 2)), np.zeros((3, 1, 25)))
    with pytest.raises(ValueError, match=r"scores must have shape \(3, 1, 17\)"):
        pipe.step(0.0, ok[0], np.zeros((3, 2, 17)))
    with pytest.raises(ValueError, match=r"lifted must have shape \(3, 1, 17, 3\)"):
        pipe.step(0.0, *ok, lifted=np.zeros((3, 1, 17, 2)))
    assert pipe.step(0.0, *ok).persons == []                    # all-zero scores: nothing, no error


def test_empty_frames_and_as_arrays_shapes():
    pipe = FusionPipeline(ring_rig(4))
    result = pipe.step(1.0, np.zeros((4, 0, 17, 2)), np.zeros((4, 0, 17)))
    points, conf, ids, views = result.as_arrays()
    assert points.shape == (0, 17, 3) and conf.shape == (0, 17) and ids.shape == (0,) and views.shape == (0, 17)
    assert ids.dtype == np.int64 and set(result.timing_ms) >= {"associate", "triangulate", "track", "total"}
    assert isinstance(result, FusionResult) and result.stamp == 1.0


def test_backwards_stamp_raises_and_leaves_state_untouched():
    rig, rng = ring_rig(4), np.random.default_rng(0)
    frames = [detections(rig, person(0.03 * k, 0)[None], rng)[:2] for k in range(8)]
    a, b = FusionPipeline(rig), FusionPipeline(rig)
    for k in range(6):
        a.step(k * DT, *frames[k])
        b.step(k * DT, *frames[k])
    with pytest.raises(ValueError, match="stamp went backwards"):
        a.step(2 * DT, *frames[6])
    with pytest.raises(ValueError, match="stamp went backwards"):
        a.step(5 * DT, *frames[6])                                # repeated stamp too
    ra, rb = a.step(6 * DT, *frames[6]), b.step(6 * DT, *frames[6])
    assert np.array_equal(ra.as_arrays()[0], rb.as_arrays()[0], equal_nan=True)
    assert [p.id for p in ra.persons] == [p.id for p in rb.persons] == [0]
    a.reset()
    assert a.step(0.0, *frames[0]).persons == []                  # reset: time may restart, tracks gone


# --- geometry of the fused persons ---------------------------------------------------------------

def test_two_walkers_are_tracked_with_orientations():
    rig, rng = ring_rig(4), np.random.default_rng(1)
    pipe = FusionPipeline(rig)
    errors, ids = [], set()
    for k in range(60):
        truth = np.stack([person(-1.5 + 1.2 * k * DT, 0.0), person(1.5 - 1.2 * k * DT, 0.7, np.pi)])
        result = pipe.step(k * DT, *detections(rig, truth, rng)[:2])
        if k >= 3:
            assert len(result.persons) == 2
            errors.append(mpjpe(truth, result))
            ids |= {p.id for p in result.persons}
    assert ids == {0, 1}
    assert np.mean(errors) < 0.03, np.mean(errors)
    first = result.persons[np.argmin([p.body_pose[1, 3] for p in result.persons])]  # the one walking +x (y = 0)
    assert first.body_pose[:3, 0] @ [1, 0, 0] > 0.95                 # body x faces the walking direction
    assert first.joint_rotations.shape == (17, 3, 3) and np.isfinite(first.joint_rotations).all()
    assert (first.views == 4).mean() > 0.9


def test_single_view_person_needs_lifted_pose():
    rig, rng = ring_rig(4), np.random.default_rng(2)
    plain, lifting = FusionPipeline(rig), FusionPipeline(rig)
    for k in range(6):
        truth = person(0.5, 0.5)[None]
        points2d, scores, lifted, _ = detections(rig, truth, rng)
        scores[1:] = 0                                             # only cam0 sees the person
        lifted = lifted + rng.normal(0, 0.01, lifted.shape)
        assert plain.step(k * DT, points2d, scores).persons == []
        result = lifting.step(k * DT, points2d, scores, lifted)
    (p,) = result.persons
    assert (p.views == 1).all() and (p.confidence <= 0.5).all() and (p.confidence > 0).all()
    assert mpjpe(truth, result) < 0.03


def test_joints_missing_from_triangulation_come_from_aligned_lifted_pose():
    rig, rng = ring_rig(4), np.random.default_rng(3)
    pipe = FusionPipeline(rig, config=FusionConfig(tracker=TrackerConfig(filter="none")))
    wrist = COCO17.index("left_wrist")
    for k in range(6):
        truth = person(0.2, -0.3)[None]
        points2d, scores, lifted, _ = detections(rig, truth, rng)
        scores[1:, :, wrist] = 0                                   # the wrist is seen by cam0 only
        lifted[..., 2] += 0.4                                      # lifter depth is off by 40 cm ...
        result = pipe.step(k * DT, points2d, scores, lifted)
    (p,) = result.persons
    assert p.views[wrist] == 1 and (np.delete(p.views, wrist) == 4).all()
    assert np.linalg.norm(p.joints[wrist] - truth[0, wrist]) < 0.03  # ... the translation fit removes it
    assert p.confidence[wrist] <= 0.5


def test_output_keeps_flowing_when_a_camera_goes_silent():
    rig, rng = ring_rig(4), np.random.default_rng(4)
    pipe = FusionPipeline(rig)
    for k in range(60):
        truth = np.stack([person(-1 + k * DT, 0.0), person(1, 1 - k * DT, -np.pi / 2)])
        points2d, scores, _, order = detections(rig, truth, rng)
        if k >= 40:                                                # person 1 leaves: P changes to 1
            rows = np.argmax(order == 0, axis=1)
            points2d, scores = points2d[np.arange(4), rows][:, None], scores[np.arange(4), rows][:, None]
        if k >= 20:
            scores[2] = 0                                          # cam2 stops sending
        result = pipe.step(k * DT, points2d, scores)
        if k >= 3:
            assert len(result.persons) >= 1 and mpjpe(truth[:1] if k >= 40 else truth, result) < 0.05
    assert {p.id for p in result.persons} <= {0, 1}


# --- procedural motion through the simulated rig -------------------------------------------------

def run_sim(n_cameras, n_people, seconds, seed=0, drop_camera=None, **observe_kw):
    """Run the pipeline on hpe_ros.sim; returns per-frame MPJPE (m, NaN before output), id switches, ids,
    per-frame ms. drop_camera = (camera, from_s): that camera sends nothing from then on."""
    from hpe_ros.sim import MotionScript, default_rig, observe

    rig, script = default_rig(n_cameras), MotionScript(n_people, seed=seed)
    rng = np.random.default_rng(seed)
    pipe = FusionPipeline(rig)
    errors, ms, last, switches, ids_seen = [], [], {}, 0, set()
    for k in range(int(round(seconds / DT))):
        t = k * DT
        truth = script.pose(t)
        obs = observe(rig, truth, rng, **observe_kw)
        scores = obs.scores.copy()
        if drop_camera and t >= drop_camera[1]:
            scores[drop_camera[0]] = 0
        t0 = time.perf_counter()
        result = pipe.step(t, obs.points2d, scores)
        ms.append(1e3 * (time.perf_counter() - t0))
        points, _, ids, _ = result.as_arrays()
        if len(ids) == 0:
            errors.append(np.nan)
            continue
        nearest = pose_distance(truth, points).argmin(1)            # truth person -> result row
        errors.append(np.nanmean(np.linalg.norm(points[nearest] - truth, axis=-1)))
        for p, row in enumerate(nearest):
            switches += p in last and last[p] != ids[row]
            last[p] = ids[row]
            ids_seen.add(int(ids[row]))
    return np.array(errors), switches, ids_seen, np.array(ms)


def test_sim_four_cameras_two_people_accuracy_and_ids():
    errors, switches, ids, ms = run_sim(4, 2, 3.0, noise_px=2.0, outlier_rate=0.02, occlusion=True)
    settled = errors[10:]                                            # tracks confirmed after birth_hits
    print(f"\n4 cams x 2 people: MPJPE {1e3 * np.nanmean(settled):.1f} mm, id switches {switches}, "
          f"{np.median(ms):.2f} ms/frame")
    assert np.isfinite(settled).all()
    assert np.nanmean(settled) < 0.030
    assert switches == 0 and len(ids) == 2


def test_sim_camera_removed_mid_run_keeps_output_flowing():
    errors, switches, _, _ = run_sim(4, 2, 2.0, seed=1, drop_camera=(1, 1.0), noise_px=2.0)
    after = errors[31:]
    assert np.isfinite(after).all() and np.nanmean(after) < 0.04
    assert switches == 0


def test_sim_eight_cameras_six_people_time_per_frame():
    errors, switches, _, ms = run_sim(8, 6, 1.0, seed=2, noise_px=2.0)
    print(f"\n8 cams x 6 people: {np.median(ms):.2f} ms/frame (median), MPJPE {1e3 * np.nanmean(errors[10:]):.1f} mm, "
          f"id switches {switches}")
    assert np.nanmean(errors[10:]) < 0.04
