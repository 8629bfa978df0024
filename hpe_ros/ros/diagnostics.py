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
        self.last_drop = ""     # why the last message was dropped
        self.warning = ""       # a standing problem (e.g. a clock running ahead): WARN while set
        self.notice = ""        # a passing problem (e.g. people over a cap): WARN in the next status only
        self.extra: dict[str, str] = {}
        self._dropped_reported = 0

    def tick(self, latency_ms: float | None = None, now: float | None = None) -> None:
        self.processed += 1
        self.times.append(time.monotonic() if now is None else now)
        if latency_ms is not None and np.isfinite(latency_ms):
            self.latencies_ms.append(float(latency_ms))

    def drop(self, n: int = 1, reason: str = "") -> None:
        self.dropped += n
        if reason:
            self.last_drop = reason

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    # Readers may run on another thread (the diagnostics thread): they copy the deques first (list() of a
    # deque is one C call, so it cannot see one half-appended).
    def rate_hz(self) -> float:
        times = list(self.times)
        if len(times) < 2:
            return 0.0
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else 0.0

    def latency_percentiles(self) -> tuple[float, float]:
        latencies = list(self.latencies_ms)
        if not latencies:
            return float("nan"), float("nan")
        return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))

    def status(self, stale_after_s: float = 2.0) -> DiagnosticStatus:
        """This stage's DiagnosticStatus: WARN for no data, a standing warning, drops since the last status
        (with the last reason) or an error; else OK."""
        p50, p99 = self.latency_percentiles()
        times = list(self.times)
        stale = not times or time.monotonic() - times[-1] > stale_after_s
        dropped, self._dropped_reported = self.dropped - self._dropped_reported, self.dropped
        if stale:
            level, message = DiagnosticStatus.WARN, "no data"
        elif self.warning:
            level, message = DiagnosticStatus.WARN, self.warning[:200]
        elif self.notice:
            level, message = DiagnosticStatus.WARN, self.notice[:200]
        elif dropped > 0:
            reason = f": {self.last_drop}" if self.last_drop else ""
            level, message = DiagnosticStatus.WARN, f"dropped {dropped} since the last report{reason}"[:200]
        elif self.errors and self.last_error:
            level, message = DiagnosticStatus.WARN, self.last_error[:200]
        else:
            level, message = DiagnosticStatus.OK, "ok"
        self.notice = ""
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


def inbox_status(node_name: str, inbox, shed_since_last: int) -> DiagnosticStatus:
    """"<node>: inbox" (hpe_ros.ros.inbox.Inbox): WARN when messages were shed since the last report."""
    values = {"waiting": len(inbox), "capacity": inbox.capacity, "ran": inbox.ran, "shed": inbox.shed,
              "wait_ms": f"{inbox.wait_ms:.1f}"}
    level, message = ((DiagnosticStatus.WARN, f"behind: shed the {shed_since_last} oldest messages since the "
                       "last report") if shed_since_last else (DiagnosticStatus.OK, f"{len(inbox)} waiting"))
    return DiagnosticStatus(level=level, name=f"{node_name}: inbox", hardware_id=node_name, message=message,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def memory_status(node_name: str, usage: dict[str, float]) -> DiagnosticStatus:
    """OK status "<node>: memory" with hpe_ros.heap.heap_usage()'s figures (MB to 0.01, blocks as a count)."""
    values = [KeyValue(key=k, value=str(int(v)) if k == "python_blocks" else f"{v:.2f}") for k, v in usage.items()]
    rss = usage.get("rss_mb")
    return DiagnosticStatus(level=DiagnosticStatus.OK, name=f"{node_name}: memory", hardware_id=node_name,
                            message=f"rss {rss:.1f} MB" if rss is not None else "", values=values)


def diagnostic_array(stats, stamp) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [s.status() for s in stats]
    return msg


def read_status_values(msg: DiagnosticArray) -> dict[str, dict[str, str]]:
    """{status name: {key: value}} — for monitors and tests."""
    return {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}
