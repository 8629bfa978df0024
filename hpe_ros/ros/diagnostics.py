"""Per-camera, per-stage statistics (rate, latency, drops) and their /diagnostics messages."""
from __future__ import annotations

import collections
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class StageStats:
    """Rolling statistics of one stage for one source (e.g. fusion, or cam0's 2D pose)."""

    def __init__(self, name: str, hardware_id: str = "", window: int = 300):
        self.name = name
        self.hardware_id = hardware_id
        self.latencies_ms: collections.deque = collections.deque(maxlen=window)
        self.times: collections.deque = collections.deque(maxlen=window)
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.last_error = ""
        self.extra: dict[str, str] = {}

    def tick(self, latency_ms: float | None = None, now: float | None = None) -> None:
        self.processed += 1
        self.times.append(time.monotonic() if now is None else now)
        if latency_ms is not None and np.isfinite(latency_ms):
            self.latencies_ms.append(float(latency_ms))

    def drop(self, n: int = 1) -> None:
        self.dropped += n

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def rate_hz(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def latency_percentiles(self) -> tuple[float, float]:
        if not self.latencies_ms:
            return float("nan"), float("nan")
        a = np.asarray(self.latencies_ms)
        return float(np.percentile(a, 50)), float(np.percentile(a, 99))

    def status(self, stale_after_s: float = 2.0) -> DiagnosticStatus:
        p50, p99 = self.latency_percentiles()
        stale = not self.times or time.monotonic() - self.times[-1] > stale_after_s
        if stale:
            level, message = DiagnosticStatus.WARN, "no data"
        elif self.errors and self.last_error:
            level, message = DiagnosticStatus.WARN, self.last_error[:200]
        else:
            level, message = DiagnosticStatus.OK, "ok"
        values = {
            "rate_hz": f"{self.rate_hz():.2f}",
            "latency_ms_p50": f"{p50:.2f}",
            "latency_ms_p99": f"{p99:.2f}",
            "processed": str(self.processed),
            "dropped": str(self.dropped),
            "errors": str(self.errors),
            **self.extra,
        }
        return DiagnosticStatus(level=level, name=self.name, message=message, hardware_id=self.hardware_id,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])


class StampGapCounter:
    """Estimates frames that never reached a node (dropped by DDS or the driver) from gaps in image stamps.

    The frame period is `period_s` when the camera's rate is known, else a low percentile of recent stamp
    intervals; an interval of k periods means k - 1 frames were missed. Reordered or repeated stamps count
    nothing. Without a known rate the estimate is a lower bound when hardly any frames arrive in a row.
    """

    def __init__(self, period_s: float = 0.0, window: int = 100):
        self.period_s = float(period_s)
        self.intervals: collections.deque = collections.deque(maxlen=window)
        self.last: float | None = None
        self.first: float | None = None   # frames before this one never count: nothing shows they existed
        self.missed = 0

    def add(self, stamp: float) -> int:
        """Record a frame's stamp (s); returns the frames estimated missed just before it."""
        missed = 0
        if self.first is None:
            self.first = stamp
        if self.last is not None and stamp > self.last:
            dt = stamp - self.last
            self.intervals.append(dt)
            period = self.period_s
            if period <= 0 and len(self.intervals) >= 5:
                period = float(np.percentile(self.intervals, 10))
            if period > 0:
                missed = max(0, int(round(dt / period)) - 1)
            self.missed += missed
        self.last = stamp if self.last is None else max(self.last, stamp)
        return missed


def diagnostic_array(stats, stamp) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [s.status() for s in stats]
    return msg


def read_status_values(msg: DiagnosticArray) -> dict[str, dict[str, str]]:
    """{status name: {key: value}} — for monitors and tests."""
    return {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}
