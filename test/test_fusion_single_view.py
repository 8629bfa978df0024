"""People seen by one camera come from its lifted pose (views = 1); a stray single-view copy of someone the
other cameras triangulate does not become a second track."""
import numpy as np

from fusion_scenes import observe, person, ring_rig
from hpe_ros.fusion import FusionPipeline

DT = 1 / 30


def frames(rig, rng, n=20, duplicate_row=False):
    """Person A seen by every camera, person B by cam0 only; lifted = exact camera-frame joints."""
    for k in range(n):
        truth = np.stack([person(-0.8 + 0.01 * k, 0.0), person(0.9, 0.6 + 0.01 * k, yaw=1.0)])
        px, sc = observe(rig, truth, rng, noise_px=1.0)                   # (C, 2, J, 2), (C, 2, J)
        sc[1:, 1] = 0.0                                                    # B only in cam0
        px[1:, 1] = np.nan
        lifted = np.stack([cam.world_to_camera(truth) for cam in rig])     # (C, 2, J, 3)
        if duplicate_row:  # a detector reporting A twice in cam0, the copy a few pixels off
            px = np.concatenate([px, px[:, :1] + 4.0], axis=1)
            sc = np.concatenate([sc, np.where(np.arange(len(rig))[:, None, None] == 0, sc[:, :1], 0.0)], axis=1)
            lifted = np.concatenate([lifted, lifted[:, :1] * 1.3], axis=1)  # and its lifted depth is off
        yield k * DT, truth, px, sc, lifted


def test_single_camera_person_is_kept_from_the_lifted_pose():
    rig = ring_rig(4)
    pipe = FusionPipeline(rig)
    for t, truth, px, sc, lifted in frames(rig, np.random.default_rng(0)):
        result = pipe.step(t, px, sc, lifted, sc)
    points, conf, ids, views = result.as_arrays()
    assert len(ids) == 2
    b = int(np.argmin(np.linalg.norm(points.mean(1) - truth[1].mean(0), axis=-1)))
    assert np.median(views[b]) == 1                                        # flagged as single-view
    assert np.nanmean(np.linalg.norm(points[b] - truth[1], axis=-1)) < 0.05
    a = 1 - b
    assert np.median(views[a]) >= 3


def test_single_camera_person_is_dropped_without_a_lifter():
    rig = ring_rig(4)
    pipe = FusionPipeline(rig)
    for t, truth, px, sc, lifted in frames(rig, np.random.default_rng(1)):
        result = pipe.step(t, px, sc)
    assert len(result.persons) == 1


def test_duplicate_single_view_detection_does_not_make_a_second_track():
    rig = ring_rig(4)
    pipe = FusionPipeline(rig)
    seen = set()
    for t, truth, px, sc, lifted in frames(rig, np.random.default_rng(2), n=30, duplicate_row=True):
        seen |= {p.id for p in pipe.step(t, px, sc, lifted, sc).persons}
    assert len(seen) == 2, seen


def test_prepare_flags_single_view_people_and_leaves_tracks_alone():
    rig = ring_rig(4)
    pipe = FusionPipeline(rig)
    frame_list = list(frames(rig, np.random.default_rng(3), n=6))
    for t, truth, px, sc, lifted in frame_list[:5]:
        pipe.step(t, px, sc, lifted, sc)
    t, truth, px, sc, lifted = frame_list[5]
    before = pipe.tracker.predict(t)
    prepared = pipe.prepare(t, px, sc)
    assert prepared.needs_lifted                     # person B is in cam0 only
    after = pipe.tracker.predict(t)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1])
    result = pipe.finish(prepared, lifted, sc)
    assert len(result.persons) == 2
    both_seen = pipe.prepare(t + DT, px[:, :1], sc[:, :1])  # only A, seen by every camera
    assert not both_seen.needs_lifted
