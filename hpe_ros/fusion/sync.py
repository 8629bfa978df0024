"""Time synchronisation of per-camera messages into frames, without letting a dead camera stall anything.

Messages whose stamps agree within `slop_s` form one frame. A frame is handed on as soon as every *live*
camera (one heard from within `camera_timeout_s`) has contributed, or `wait_s` after its first message
arrived, with whatever it has. Messages older than the last frame handed on are late (reordered or
stale) and dropped; when a newer frame is handed on, older unfinished frames are dropped too: a real-time
consumer wants the newest frame, not a backlog.
"""
from __future__ import annotations

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
        frame = min((f for f in self.pending if abs(f.stamp - stamp) <= self.slop_s),
                    key=lambda f: abs(f.stamp - stamp), default=None)
        if frame is None:
            frame = Frame(stamp=stamp, first_arrival=now)
            self.pending.append(frame)
            self.pending.sort(key=lambda f: f.stamp)
        elif camera in frame.items:
            self.counters.duplicate += 1
        frame.items[camera] = payload
        frame.stamps[camera] = stamp
        frame.stamp = sum(frame.stamps.values()) / len(frame.stamps)
        while len(self.pending) > self.max_pending:
            self.pending.pop(0)
            self.counters.overflow += 1
        return self._ready(now)

    def poll(self, now: float) -> list[Frame]:
        """Frames whose wait has expired (call from a timer) or that became complete as cameras died."""
        return self._ready(now)

    def _ready(self, now: float) -> list[Frame]:
        live = self.alive(now)
        out: list[Frame] = []
        # The newest frame that is complete or timed out wins; everything older goes with it.
        for i in range(len(self.pending) - 1, -1, -1):
            f = self.pending[i]
            if live.issubset(f.items) or now - f.first_arrival >= self.wait_s:
                older_timed_out = [g for g in self.pending[:i] if now - g.first_arrival >= self.wait_s]
                # Timed-out older frames are still handed on in order (they are complete as far as they go);
                # unfinished ones that are still waiting are superseded.
                self.counters.superseded += i - len(older_timed_out)
                out = older_timed_out + [f]
                self.pending = self.pending[i + 1:]
                self.last_emitted = f.stamp
                break
        return out
