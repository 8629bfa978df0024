import numpy as np
import pytest

from hpe_ros.fusion.sync import ClockMonitor, FrameSynchronizer

CAMS = ["cam0", "cam1", "cam2"]


def test_frame_is_handed_on_when_every_live_camera_arrived():
    s = FrameSynchronizer(CAMS, slop_s=0.01, wait_s=0.05)
    # At start-up every configured camera is expected: the first frame waits for all three.
    assert s.add("cam0", 1.000, "a", now=10.0) == []
    assert s.add("cam1", 1.001, "b", now=10.0) == []
    out = s.add("cam2", 1.002, "c", now=10.0)
    assert len(out) == 1 and set(out[0].items) == set(CAMS)
    s.add("cam1", 1.033, "b1", now=10.001)
    s.add("cam2", 1.034, "c1", now=10.002)
    out = s.add("cam0", 1.035, "a1", now=10.003)
    assert len(out) == 1 and set(out[0].items) == set(CAMS)
    assert out[0].stamp == pytest.approx((1.033 + 1.034 + 1.035) / 3)


def _warm(s, t0=1.0, now=10.0):
    for c in CAMS:
        s.add(c, t0, c, now)
    return s


def test_stamps_within_slop_group_and_outside_split():
    s = _warm(FrameSynchronizer(CAMS, slop_s=0.005, wait_s=0.05))
    assert s.add("cam0", 2.000, 0, now=10.1) == []
    assert s.add("cam1", 2.020, 0, now=10.1) == []  # 20 ms apart: a different frame
    assert len(s.pending) == 2


def test_dead_camera_does_not_stall_after_timeout():
    s = _warm(FrameSynchronizer(CAMS, slop_s=0.01, wait_s=0.04, camera_timeout_s=0.3), now=10.0)
    # cam2 dies. While it still counts as live, frames go out after wait_s with two cameras.
    s.add("cam0", 1.1, 0, now=10.1)
    assert s.add("cam1", 1.1, 0, now=10.1) == []
    out = s.poll(now=10.15)
    assert len(out) == 1 and set(out[0].items) == {"cam0", "cam1"}
    # Once cam2 is past camera_timeout_s, frames go out as soon as cam0 and cam1 are in: no waiting.
    assert s.add("cam0", 1.5, 0, now=10.35) == []
    out = s.add("cam1", 1.5, 0, now=10.35)
    assert len(out) == 1 and set(out[0].items) == {"cam0", "cam1"}


def test_late_and_reordered_messages_are_dropped_and_counted():
    s = _warm(FrameSynchronizer(CAMS, slop_s=0.01, wait_s=0.04))
    for c in CAMS:
        out = s.add(c, 1.1, 0, now=10.1)
    assert len(out) == 1
    assert s.add("cam1", 1.05, 0, now=10.11) == []  # older than what went out
    assert s.counters.late == 1


def test_newest_complete_frame_supersedes_unfinished_older_one():
    s = _warm(FrameSynchronizer(CAMS, slop_s=0.01, wait_s=1.0))
    s.add("cam0", 1.1, 0, now=10.1)  # frame 1.1 never completes
    for c in CAMS:
        out = s.add(c, 1.2, 0, now=10.15)
    assert [round(f.stamp, 3) for f in out] == [1.2]
    assert s.counters.superseded == 1 and s.pending == []


def test_unknown_camera_and_bad_settings_are_refused():
    s = FrameSynchronizer(CAMS)
    with pytest.raises(ValueError, match="unknown camera"):
        s.add("camX", 1.0, 0, now=0.0)
    with pytest.raises(ValueError):
        FrameSynchronizer(CAMS, camera_timeout_s=0)


# --- ClockMonitor ---------------------------------------------------------------------------------

def feed(monitor, stamps_ahead, n=10, t0=100.0, latency=0.01):
    """n frames at 30 Hz; camera c's stamps run stamps_ahead[c] s ahead of the node clock. -> last verdicts."""
    verdicts = {}
    for k in range(n):
        now = t0 + k / 30
        for cam, ahead in stamps_ahead.items():
            verdicts[cam] = monitor.judge(cam, now - latency + ahead, now)
    return verdicts


def test_a_stamp_far_in_the_future_is_dropped_and_moves_no_estimate():
    m = ClockMonitor(CAMS, max_future_s=0.5)
    feed(m, {c: 0.0 for c in CAMS})
    assert m.judge("cam1", 100.5 + 3600, 100.5).status == "future"
    assert m.judge("cam1", 100.5 + 10, 100.5).status == "future"
    assert m.judge("cam1", 100.49, 100.5).status == "ok"
    assert abs(m.offset("cam1")) < 1e-3


def test_a_camera_clock_running_ahead_is_named_and_its_stamps_dropped():
    m = ClockMonitor(CAMS + ["cam3"], max_offset_s=0.1)
    verdicts = feed(m, {"cam0": 0.0, "cam1": 0.0, "cam2": 0.2, "cam3": 0.0})
    assert verdicts["cam2"].status == "ahead"
    assert verdicts["cam2"].offset_s == pytest.approx(0.2, abs=1e-6)
    assert all(verdicts[c].status == "ok" and abs(verdicts[c].offset_s) < 1e-6 for c in ("cam0", "cam1", "cam3"))


def test_with_two_cameras_the_node_clock_breaks_the_tie():
    m = ClockMonitor(["a", "b"], max_offset_s=0.1)
    verdicts = feed(m, {"a": 0.2, "b": 0.0})
    assert (verdicts["a"].status, verdicts["b"].status) == ("ahead", "ok")
    m = ClockMonitor(["a", "b"], max_offset_s=0.1)
    verdicts = feed(m, {"a": -0.3, "b": 0.0})  # a behind (or slower): only its own frames suffer
    assert (verdicts["a"].status, verdicts["b"].status) == ("ok", "ok")


def test_a_node_clock_behind_every_camera_drops_nothing_once_the_leads_are_known():
    m = ClockMonitor(CAMS, max_future_s=0.5)
    verdicts = feed(m, {c: 2.0 for c in CAMS}, n=3)
    assert {v.status for v in verdicts.values()} == {"future"}  # nothing known about the cameras yet
    verdicts = feed(m, {c: 2.0 for c in CAMS}, n=10, t0=101.0)
    assert {v.status for v in verdicts.values()} == {"ok"}


def test_a_constant_offset_is_corrected_when_asked():
    m = ClockMonitor(CAMS, max_offset_s=0.1, correct=True)
    verdicts = feed(m, {"cam0": 0.0, "cam1": 0.0, "cam2": 0.2}, n=20)  # medians rest on half a window
    assert verdicts["cam2"].status == "corrected"
    assert verdicts["cam2"].stamp == pytest.approx(verdicts["cam0"].stamp, abs=1e-6)


def test_a_future_message_cannot_move_the_other_cameras_frames():
    """Without the monitor, one future stamp handed on alone makes every later frame 'late'."""
    m, s = ClockMonitor(CAMS), FrameSynchronizer(CAMS, slop_s=0.01, wait_s=0.04)
    fused = []
    for k in range(20):
        now = 10.0 + k / 30
        stamps = {c: now - 0.01 for c in CAMS}
        if k == 5:
            stamps["cam1"] = now + 3600
        for cam, stamp in stamps.items():
            verdict = m.judge(cam, stamp, now)
            if verdict.status == "ok":
                fused += s.add(cam, verdict.stamp, cam, now)
        fused += s.poll(now + 0.02)
    # Only the frame without cam1 may go (superseded by the complete one after it); nothing is late.
    assert s.counters.late == 0 and len(fused) >= 19 and fused[-1].stamp == pytest.approx(10.0 + 19 / 30 - 0.01)


def test_a_frame_ahead_of_most_cameras_waits_for_them_instead_of_making_them_late():
    s = _warm(FrameSynchronizer(CAMS, slop_s=0.005, wait_s=0.04))
    s.add("cam2", 1.2, "ahead", now=10.0)      # cam2's clock runs 0.2 s ahead
    assert s.poll(now=10.1) == []              # its wait is over, but cam0 and cam1 are still at 1.0
    out = []
    for k in range(1, 8):                      # the others go on and are never late
        for cam in ("cam0", "cam1"):
            out += s.add(cam, 1.0 + k / 30, cam, now=10.0 + k / 30)
        out += s.poll(now=10.05 + k / 30)
    assert s.counters.late == 0
    stamps = [f.stamp for f in out]
    # In order; cam2's frame went once the others reached it (here they joined it: 0.2 s is 6 frames).
    assert stamps == sorted(stamps) and any(set(f.items) == set(CAMS) for f in out)


def test_a_camera_ahead_is_found_by_its_median_when_latency_hides_single_stamps():
    """On a busy machine messages arrive 100-300 ms late: a 200 ms lead shows only in the medians."""
    rng = np.random.default_rng(0)
    m = ClockMonitor(CAMS + ["cam3"], max_offset_s=0.1)
    statuses = {c: [] for c in m.offsets()}
    for k in range(120):
        stamp = 100 + k / 30
        latency = 0.2 + 0.1 * np.sin(k / 7)
        for cam in statuses:  # a busy executor may serve one camera's queue first: arrival jitter per camera
            ahead = 0.2 if cam == "cam3" else 0.0
            statuses[cam].append(m.judge(cam, stamp + ahead, stamp + latency + rng.uniform(0, 0.05)).status)
    assert all(s == "ok" for c in CAMS for s in statuses[c])
    assert statuses["cam3"][30:] == ["ahead"] * 90
    assert m.offset("cam3") == pytest.approx(0.2, abs=0.03)
