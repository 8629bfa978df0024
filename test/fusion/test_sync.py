import pytest

from hpe_ros.fusion.sync import FrameSynchronizer

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
