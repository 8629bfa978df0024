"""Whole-clip tracks (hpe_ros.fusion.offline_tracks) and the offline fusion that uses them (fuse_frames).

Scenes: the simulator (procedural people, 4 cameras, detector noise) for whole trials, the fusion test
scenes (a ring of cameras, template people moved along straight lines) for crossings and planted gaps,
and plain arrays for the smoothing and gap-filling maths.
"""
import numpy as np
import pytest

from hpe_ros.fusion.offline_tracks import ClipConfig, settle_tracks, whole_clip_fusion_config
from hpe_ros.fusion.pipeline import FusionConfig
from hpe_ros.offline import fuse_frames
from hpe_ros.sim import MotionScript, default_rig, simulate_clip

from helpers.fusion_scenes import observe as project_people
from helpers.fusion_scenes import person, ring_rig

FPS = 30.0


def sim_frames(rig, script, frames, seed=0, errors=None):
    """(index, detections per camera) for `frames` frames of the simulator, and the truth (T, P, 17, 3)."""
    return simulate_clip(rig, script, frames, FPS, np.random.default_rng(seed), errors)


def scene_frames(rig, people_by_frame, seed=0):
    """(index, detections per camera) from a list of (P, 17, 3) arrays (P may be 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for f, people in enumerate(people_by_frame):
        px, scores = project_people(rig, people, rng, noise_px=0.5)     # (C, P, 17, 2), (C, P, 17)
        out.append((f, [(px[c], scores[c]) for c in range(len(rig))]))
    return out


def test_twelve_frame_trial_gives_every_frame_for_every_person():
    rig = default_rig(4)
    frames, truth = sim_frames(rig, MotionScript(n_people=2, seed=1), 12)
    live = fuse_frames(rig, "coco17", frames, FPS, progress=False, causal=True)
    clip = fuse_frames(rig, "coco17", frames, FPS, progress=False)
    assert live.present.sum() < 24                        # the live tracker's birth delay drops frames
    assert clip.ids.tolist() == [0, 1] and clip.present.all()
    tracking = clip.report["tracking"]
    assert tracking["frames_in"] == tracking["frames_with_people"] == 12 and tracking["mode"] == "whole clip"
    assert tracking["kept"] == 2 and tracking["dropped"] == 0
    assert live.report["tracking"] == {"frames_in": 12, "frames_with_people": live.present.any(1).sum(),
                                       "mode": "causal"}
    for k in range(2):   # each id is one true person, close to it in every frame
        err = np.linalg.norm(clip.points[:, k, None] - truth, axis=-1)   # (T, P, J)
        mean = np.nanmean(err, axis=-1)
        who = np.argmin(mean, axis=1)
        assert (who == who[0]).all() and mean[np.arange(12), who].max() < 0.05


def test_two_people_crossing_keep_their_ids_and_a_long_absence_is_linked():
    rig = ring_rig(8)
    T = 60
    s = np.linspace(-1.5, 1.5, T)
    a = [person(x, 0.25, 0.0) for x in s]                # walks +x
    b = [person(-x, -0.25, np.pi) for x in s]            # walks -x, passing a half-way
    gone = range(35, 55)                                 # b unseen for 20 frames (0.67 s): past the live death timeout
    hidden = range(10, 14)                               # a unseen for 4 frames: a gap to fill
    people = [np.stack(([] if t in hidden else [a[t]]) + ([] if t in gone else [b[t]])) for t in range(T)]
    frames = scene_frames(rig, people)
    live = fuse_frames(rig, "coco17", frames, FPS, progress=False, causal=True)
    clip = fuse_frames(rig, "coco17", frames, FPS, progress=False)
    assert len(live.ids) == 3                            # the live tracker gives b a new id on return
    assert clip.ids.tolist() == [0, 1] and clip.report["tracking"]["linked"] == 1
    truth = [np.stack(a), np.stack(b)]
    for k in range(2):
        hips = clip.points[:, k, 11:13].mean(1)          # (T, 3)
        seen = np.isfinite(hips).all(-1)
        assert seen.sum() >= 40
        d = [np.linalg.norm(hips[seen] - g[seen, 11:13].mean(1), axis=-1) for g in truth]
        assert min(d[0].max(), d[1].max()) < 0.05       # one true person over the whole clip
    present = clip.present
    assert present[:, 0].all() and (clip.views[10:14, 0] == 0).all() and (clip.views[:10, 0] >= 2).all()
    filled = np.linalg.norm(clip.points[10:14, 0] - truth[0][10:14], axis=-1)
    assert filled.max() < 0.05, filled.max()
    # b: every frame it was seen; the 20-frame absence is longer than the 10 frames gap filling reaches
    assert present[:, 1].tolist() == [t not in gone for t in range(T)]


def test_short_spurious_track_is_dropped():
    T, J = 30, 17
    points = np.full((T, 2, J, 3), np.nan)
    points[:, 0] = person(0, 0)
    points[10:12, 1] = person(2.5, 2.5)                  # a 2-frame ghost far away
    views = np.where(np.isfinite(points).all(-1), 2, 0)
    out = settle_tracks(np.array([4, 9]), points, views.astype(float), views, np.arange(T) / FPS, FPS,
                        ClipConfig(smooth=False))
    assert out.ids.tolist() == [0] and out.points.shape == (T, 1, J, 3)
    assert (out.stats["kept"], out.stats["dropped"], out.stats["dropped_frames"]) == (1, 1, 2)


def _noisy_walk(T=150, seed=0):
    """One joint moving (sinusoid, 1 Hz, 0.3 m) plus 1.5 cm noise: truth, measured (T, 1, 1, 3)."""
    t = np.arange(T) / FPS
    truth = np.stack([0.3 * np.sin(2 * np.pi * t), 0.2 * np.cos(2 * np.pi * 0.7 * t), 1.0 + 0 * t], -1)
    noisy = truth + np.random.default_rng(seed).normal(0, 0.015, truth.shape)
    return t, truth, noisy[:, None, None]


def _settle(points, t, **config):
    ok = np.isfinite(points).all(-1)
    return settle_tracks(np.array([0]), points, ok * 0.9, ok.astype(np.int64), t, FPS, ClipConfig(**config))


def test_smoothing_reduces_jitter_without_lag():
    t, truth, noisy = _noisy_walk()
    smooth = _settle(noisy, t).points[:, 0, 0]
    raw = _settle(noisy, t, smooth=False).points[:, 0, 0]
    np.testing.assert_array_equal(raw, noisy[:, 0, 0])
    err_raw = np.linalg.norm(raw - truth, axis=-1).mean()
    err_smooth = np.linalg.norm(smooth - truth, axis=-1).mean()
    assert err_smooth < 0.6 * err_raw, (err_smooth, err_raw)
    # No lag: the cross-correlation of the smoothed and true motion peaks at 0 shift.
    for d in (0, 1):
        x, y = smooth[:, d] - smooth[:, d].mean(), truth[:, d] - truth[:, d].mean()
        shifts = range(-5, 6)
        corr = [np.dot(x[max(0, s):len(x) + min(0, s)], y[max(0, -s):len(y) + min(0, -s)]) for s in shifts]
        assert list(shifts)[int(np.argmax(corr))] == 0


def test_planted_gap_is_filled_and_a_long_one_is_not():
    t, truth, noisy = _noisy_walk(seed=1)
    points = truth[:, None, None].copy()
    points[40:46] = np.nan                               # 6 frames: filled
    points[90:105] = np.nan                              # 15 frames: longer than max_gap, left empty
    for interpolation in ("cubic", "linear"):
        out = _settle(points, t, smooth=False, interpolation=interpolation)
        p = out.points[:, 0, 0]
        assert np.isfinite(p[40:46]).all() and np.isnan(p[90:105]).all()
        tol = 0.005 if interpolation == "cubic" else 0.05
        assert np.linalg.norm(p[40:46] - truth[40:46], axis=-1).max() < tol
        assert (out.views[40:46] == 0).all() and (out.confidence[40:46] > 0).all()
        assert out.stats["joints_filled"] == 6 and out.stats["person_frames_filled"] == 6
    assert np.isnan(_settle(points, t, max_gap=0).points[40:46]).all()


def test_settings_are_checked_and_the_live_config_is_untouched():
    for bad in ({"cutoff_hz": 0}, {"order": 3}, {"max_gap": -1}, {"min_track_frames": 0},
                {"interpolation": "spline"}, {"link_m": -1}):
        with pytest.raises(ValueError, match="ClipConfig"):
            ClipConfig(**bad)
    live = FusionConfig()
    offline = whole_clip_fusion_config(live)
    assert (offline.tracker.birth_hits, offline.tracker.filter) == (1, "none")
    assert (live.tracker.birth_hits, live.tracker.filter) == (3, "one_euro")


def test_cutoff_above_nyquist_skips_smoothing(caplog):
    t, _, noisy = _noisy_walk(T=40)
    with caplog.at_level("WARNING"):
        out = _settle(noisy, t, cutoff_hz=20.0)
    assert out.stats["smoothing"].startswith("skipped") and "half the frame rate" in caplog.text
    np.testing.assert_array_equal(out.points, noisy)


def test_clips_without_people():
    rig = default_rig(4)
    nobody = [(f, [(np.zeros((0, 17, 2)), np.zeros((0, 17))) for _ in rig]) for f in range(5)]
    for frames, T in (([], 0), (nobody, 5)):
        out = fuse_frames(rig, "coco17", frames, FPS, progress=False)
        assert out.points.shape == (T, 0, 17, 3) and out.ids.size == 0
        assert out.report["tracking"]["frames_in"] == T and out.report["tracking"]["kept"] == 0
