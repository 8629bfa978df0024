"""Spinning an rclpy executor in tests: for a while, or until a condition holds."""
import time


def spin(executor, seconds, until=None):
    """Spin `executor` for up to `seconds`; with `until`, stop as soon as it returns True (-> True).
    Without `until`, spin the whole time (-> True); with it and a timeout, -> False."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
        if until is not None and until():
            return True
    return until is None
