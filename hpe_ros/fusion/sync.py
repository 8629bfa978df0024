"""Time synchronisation of per-camera messages into frames, without letting a dead camera stall anything
or one camera's clock move the others' frames.

A ClockMonitor judges every stamp before it reaches the FrameSynchronizer: a stamp further than
`max_future_s` ahead of the node clock (or of that camera's usual lead on it, for a node whose own clock
lags) is dropped, and so is one further than `max_offset_s` ahead of the other cameras' stamps; each
camera's clock offset (the median of its stamp - arrival over recent messages, less the other cameras'
median) is estimated all along and may be corrected.

Messages whose stamps agree within `slop_s` form one frame. A frame is handed on as soon as every *live*
camera (one heard from within `camera_timeout_s`) has contributed, or `wait_s` after its first message
arrived, with whatever it has, unless most live cameras have not reached its stamp yet (a camera whose
clock runs ahead cannot make every other camera's frames late). Messages older than the last frame handed
on are late (reordered or stale) and dropped; when a newer frame is handed on, older unfinished frames
are dropped too: a real-time consumer wants the newest frame, not a backlog.
"""
from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Frame:
    """One synchronised frame: `items[camera] = payload`, `stamps[camera] = stamp` (seconds)."""

    stamp: float  # mean of the members' stamps
    items: dict[str, Any] = field(default_factory=dict)
    stamps: dict[str, float] = field(default_factory=dict)
    first_arrival: float = 0.0


@dataclass
class SyncCounters:
    late: int = 0           # stamp not newer than a frame already handed on (reordered / stale)
    superseded: int = 0     # unfinished frame dropped because a newer one was complete
    overflow: int = 0       # too many unfinished frames at once
    duplicate: int = 0      # second message of one camera for the same frame (the newer one is kept)

    @property
    def dropped(self) -> int:
        return self.late + self.superseded + self.overflow


class FrameSynchronizer:
    def __init__(self, cameras: list[str], slop_s: float = 0.010, wait_s: float = 0.040,
                 camera_timeout_s: float = 0.5, max_pending: int = 8):
        if slop_s < 0 or wait_s < 0 or camera_timeout_s <= 0:
            raise ValueError("slop_s and wait_s must be >= 0 and camera_timeout_s > 0")
        self.cameras = list(cameras)
        self.slop_s, self.wait_s, self.camera_timeout_s = slop_s, wait_s, camera_timeout_s
        self.max_pending = max_pending
        self.pending: list[Frame] = []
        self.last_heard: dict[str, float] = {}
        self.newest: dict[str, float] = {}  # newest stamp each camera contributed
        self.last_emitted = float("-inf")
        self.started: float | None = None
        self.counters = SyncCounters()

    def alive(self, now: float) -> set[str]:
        """Cameras heard from within camera_timeout_s of `now` (arrival clock); during the first
        camera_timeout_s every configured camera is expected, so start-up does not split frames."""
        if self.started is not None and now - self.started <= self.camera_timeout_s:
            return set(self.cameras)
        return {c for c, t in self.last_heard.items() if now - t <= self.camera_timeout_s}

    def add(self, camera: str, stamp: float, payload: Any, now: float) -> list[Frame]:
        """Add one message (`now`: arrival time, same clock as poll); return the frames ready to fuse."""
        if camera not in self.cameras:
            raise ValueError(f"unknown camera {camera!r}; expected one of {self.cameras}")
        self.last_heard[camera] = now
        if self.started is None:
            self.started = now
        if stamp <= self.last_emitted + 1e-9:
            self.counters.late += 1
            return []
        self.newest[camera] = max(stamp, self.newest.get(camera, stamp))
        frame = min((f for f in self.pending if abs(f.stamp - stamp) <= self.slop_s),
                    key=lambda f: abs(f.stamp - stamp), default=None)
        if frame is None:
            frame = Frame(stamp=stamp, first_arrival=now)
            self.pending.append(frame)
            self.pending.sort(key=lambda f: f.stamp)
        elif camera in frame.items:
            self.counters.duplicate += 1
        elif now - frame.first_arrival >= self.wait_s:  # held while ahead: the cameras now catching up get a wait
            frame.first_arrival = now
        frame.items[camera] = payload
        frame.stamps[camera] = stamp
        frame.stamp = sum(frame.stamps.values()) / len(frame.stamps)
        while len(self.pending) > self.max_pending:
            self.pending.pop(0)
            self.counters.overflow += 1
        return self._ready(now)

    def _ahead(self, frame: Frame, live: set[str]) -> bool:
        """Most live cameras have not reached the frame's stamp yet: it waits for them (it would make all
        their frames late), however long its own wait; they join it or pass it, and then it goes in order."""
        behind = [c for c in live - frame.items.keys() if self.newest.get(c, float("-inf")) < frame.stamp - self.slop_s]
        return 2 * len(behind) > len(live)

    def poll(self, now: float) -> list[Frame]:
        """Frames whose wait has expired (call from a timer) or that became complete as cameras died."""
        return self._ready(now)

    def _ready(self, now: float) -> list[Frame]:
        live = self.alive(now)
        out: list[Frame] = []
        # The newest frame that is complete or timed out wins; everything older goes with it.
        for i in range(len(self.pending) - 1, -1, -1):
            f = self.pending[i]
            if live.issubset(f.items) or (now - f.first_arrival >= self.wait_s and not self._ahead(f, live)):
                older_timed_out = [g for g in self.pending[:i] if now - g.first_arrival >= self.wait_s]
                # Timed-out older frames are still handed on in order (they are complete as far as they go);
                # unfinished ones that are still waiting are superseded.
                self.counters.superseded += i - len(older_timed_out)
                out = older_timed_out + [f]
                self.pending = self.pending[i + 1:]
                self.last_emitted = f.stamp
                break
        return out


@dataclass
class StampVerdict:
    """What a ClockMonitor made of one stamp: status "ok", "corrected" (stamp shifted by the camera's
    offset), "future" (ahead of the node clock) or "ahead" (ahead of the other cameras); stamp: the one to
    use; offset_s: the camera's estimated offset from the other cameras (NaN until known)."""

    status: str
    stamp: float
    offset_s: float


class ClockMonitor:
    """Per-camera running estimate of stamp - arrival time and judgement of each new stamp against it.

    skew = stamp - arrival (about -latency for a camera whose clock agrees with the node's). A camera's
    skew is the median of its last `window` messages, so a single wild stamp moves nothing; its offset is
    that skew less the median of the other cameras' skews (the reference), known from their first messages
    so that a camera ahead is caught from the start. A camera's own lead on the node clock (which excuses
    stamps "in the future") needs `min_samples` of its messages.
    A stamp is *ahead* when it alone exceeds both the reference and the node clock (skew 0) by more than
    `max_offset_s`, or when its camera's median exceeds the other cameras' by that much (each resting on
    half a window of messages; with one other camera, the node clock breaks the tie). Only stamps ahead
    are dropped: a camera behind only makes its own messages late, and a slower pipeline looks the same as
    a clock behind. With `correct`, a camera whose median is ahead is shifted back by its offset instead.
    Until the medians know, FrameSynchronizer keeps such a camera's frames from making the others late.
    """

    def __init__(self, cameras: list[str], max_future_s: float = 0.5, max_offset_s: float = 0.1,
                 correct: bool = False, window: int = 30, min_samples: int = 5):
        if max_future_s <= 0 or max_offset_s <= 0 or min_samples < 1 or window < min_samples:
            raise ValueError("max_future_s and max_offset_s must be > 0 and 1 <= min_samples <= window")
        self.max_future_s, self.max_offset_s, self.correct = max_future_s, max_offset_s, correct
        self.min_samples = min_samples
        self._skews = {c: collections.deque(maxlen=window) for c in cameras}
        self._median = {c: math.nan for c in cameras}

    def skew(self, camera: str) -> float:
        """Median stamp - arrival of the camera's recent messages (s), NaN before its first."""
        return self._median[camera]

    def offset(self, camera: str) -> float:
        """The camera's skew less the median of the other cameras' (s); NaN while either is unknown."""
        return self._median[camera] - self._reference(camera)

    def offsets(self) -> dict[str, float]:
        return {c: self.offset(c) for c in self._skews}

    def _reference(self, camera: str) -> float:
        """Median of the other cameras' skews (NaN = unknown)."""
        others = [m for c, m in self._median.items() if c != camera and not math.isnan(m)]
        return statistics.median(others) if others else math.nan

    def judge(self, camera: str, stamp: float, now: float) -> StampVerdict:
        """Record one message (`now`: arrival, node clock) and say what to do with its stamp."""
        skew = stamp - now
        history = self._skews[camera]
        history.append(skew)
        self._median[camera] = own = statistics.median(history)  # ~30 floats: cheaper than numpy
        reference = self._reference(camera)
        offset = own - reference
        # A node clock behind every camera by a constant must not drop them all: the camera's own lead counts.
        lead = max(0.0, own) if len(history) >= self.min_samples else 0.0
        if skew - lead > self.max_future_s:
            return StampVerdict("future", stamp, offset)
        if math.isnan(reference):  # nothing to compare with yet
            return StampVerdict("ok", stamp, offset)
        # The camera's median against the other cameras' once both rest on half a window of messages: a clock
        # offset lasts, a burst of deliveries (a busy executor serving one camera's queue first) does not.
        # With one other camera, the node clock breaks the tie.
        half = history.maxlen // 2
        known = [m for c, m in self._median.items() if c != camera and len(self._skews[c]) >= half]
        if len(history) >= half and known:
            settled_reference = statistics.median(known)
            floor = settled_reference if len(known) >= 2 else max(0.0, settled_reference)
            if own > floor + self.max_offset_s:
                if self.correct:
                    return StampVerdict("corrected", stamp - (own - settled_reference), offset)
                return StampVerdict("ahead", stamp, offset)
        # One message on its own: ahead of the node clock as well as of the others (latency cannot explain it).
        if skew > max(0.0, reference) + self.max_offset_s:
            return StampVerdict("ahead", stamp, offset)
        return StampVerdict("ok", stamp, offset)
