"""Messages for a node's slow callbacks: bounded, oldest shed first, run in batches off the executor's events.

rclpy's EventsExecutor queues one event (about 140 bytes) for every message that arrives and runs one
callback per event. When a node's callbacks take longer than its messages take to arrive, that queue
grows for as long as the node stays behind: 1 MB a minute at 240 messages/s (measured; a wait-set
executor in the same place stays flat, because DDS's keep-last history drops the old messages instead).
A node behind for hours would grow without bound, and nothing says it is behind.

An Inbox puts a cheap callback in front of a slow one: the executor's callback only appends the message
(microseconds), so the executor's events never pile up; the messages wait in one deque in arrival order,
bounded (the oldest is shed and counted when it is full, as a keep-last history would), and one task
scheduled on the node's executor runs the slow callbacks for everything waiting.

    inbox = Inbox(schedule=lambda fn: node.executor.create_task(fn), on_error=log)
    node.create_subscription(PointCloud2, "cam0/pose_2d", inbox.wrap(on_pose2d, depth=5), qos)
    inbox.shed, inbox.ran, inbox.wait_ms    # messages dropped as the oldest, messages run, last wait (ms)

For single-threaded executors (what every node here spins): the wrapped callback and the batch run on
the executor's thread, never at once.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any


class Inbox:
    """A bounded FIFO of (callback, message) pairs and the task that runs them.

    schedule(fn): run fn soon on the node's executor (executor.create_task); on_error(exc, callback): one
    callback raised (the batch goes on with the next message). Capacity: the sum of the `depth` of every
    wrapped subscription.
    """

    def __init__(self, schedule: Callable[[Callable[[], None]], Any],
                 on_error: Callable[[Exception, Callable], None] | None = None):
        self._schedule = schedule
        self._on_error = on_error
        self._items: collections.deque[tuple[Callable, Any, float]] = collections.deque()
        self.capacity = 0
        self.shed = 0        # messages dropped unrun because the inbox was full (the oldest first)
        self.ran = 0         # messages handed to their callbacks
        self.wait_ms = 0.0   # how long the last message run had waited
        self._scheduled = False

    def wrap(self, callback: Callable[[Any], None], depth: int) -> Callable[[Any], None]:
        """The subscription callback to register in place of `callback`; adds `depth` to the capacity."""
        self.capacity += max(int(depth), 1)

        def enqueue(msg) -> None:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.shed += 1
            self._items.append((callback, msg, time.monotonic()))
            if not self._scheduled:
                self._scheduled = True
                self._schedule(self.run)
        return enqueue

    def __len__(self) -> int:
        return len(self._items)

    def run(self) -> None:
        """Run the callbacks of everything waiting, oldest first (also what the scheduled task calls)."""
        self._scheduled = False
        for _ in range(len(self._items)):  # what waits now; later arrivals schedule the next batch
            if not self._items:
                break
            callback, msg, queued = self._items.popleft()
            self.wait_ms = (time.monotonic() - queued) * 1e3
            self.ran += 1
            try:
                callback(msg)
            except Exception as exc:  # one bad message costs itself, not the rest of the batch
                if self._on_error is None:
                    raise
                self._on_error(exc, callback)

    def clear(self) -> None:
        """Forget what waits and the capacity (on deactivate: those callbacks belong to subscriptions that
        are gone; the next activation wraps its subscriptions again)."""
        self._items.clear()
        self.capacity = 0
        self._scheduled = False
