"""Shared node plumbing: lifecycle start-up, one-line problem logging, diagnostics, process entry point.

/diagnostics go out from a thread of their own, not an executor timer, so they keep coming (and say WARN
"busy") while a callback runs long, whatever executor spins the node.
"""
from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from rclpy.timer import Timer

from hpe_ros.heap import heap_usage, release_free_memory
from hpe_ros.ros.diagnostics import StageStats, diagnostic_array, inbox_status, memory_status
from hpe_ros.ros.inbox import Inbox
from hpe_ros.ros.params import declare

BUSY_WARN_S = 0.5  # a callback running longer than this shows in /diagnostics
TRIM_EVERY_S = 10.0  # the diagnostics thread gives freed C-heap pages back (and measures memory) this often


class ManagedNode(LifecycleNode):
    """A lifecycle node that can configure+activate itself (`autostart`) and reports /diagnostics."""

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        self.autostart = declare(self, "autostart", True,
                                 "configure and activate on start-up (no lifecycle manager needed)")
        self.diagnostics_period = declare(self, "diagnostics_period_s", 1.0,
                                          "period of /diagnostics messages", low=0.05, high=60.0)
        self.stats: dict[str, StageStats] = {}
        self._diag_pub = None
        self._diag_stop: threading.Event | None = None
        self._diag_thread: threading.Thread | None = None
        self._busy_since: float | None = None
        self._memory: dict[str, float] = {}  # heap_usage() after the last trim, in every /diagnostics
        self._said: dict[str, float] = {}
        self._owned: list = []
        # Slow subscription callbacks (own_subscription(..., inbox=True)) run from here, in batches.
        self.inbox = Inbox(self._run_soon, self._callback_failed)
        self._shed_reported = 0

    # --- logging ---------------------------------------------------------------------------------
    def problem(self, key: str, message: str, every_s: float = 5.0) -> None:
        """Log one clear warning per kind of problem, at most every `every_s` seconds."""
        now = time.monotonic()
        if key not in self._said or now - self._said[key] >= every_s:  # every_s = inf: say it once
            self._said[key] = now
            self.get_logger().warning(message)

    # --- entities that live while the node is active ------------------------------------------------
    def own_publisher(self, *args, **kwargs):
        return self._own(self.create_publisher(*args, **kwargs))

    def own_subscription(self, msg_type, topic: str, callback, qos, *, inbox: bool = False, **kwargs):
        """create_subscription, released on deactivate. inbox=True for a callback that can take longer than
        its messages take to arrive: it then runs from the node's Inbox (bounded, oldest shed first), so a
        node that falls behind drops messages instead of queueing executor events without bound."""
        if inbox:
            callback = self.inbox.wrap(callback, qos.depth)
        return self._own(self.create_subscription(msg_type, topic, callback, qos, **kwargs))

    def own_timer(self, *args, **kwargs):
        return self._own(self.create_timer(*args, **kwargs))

    def _own(self, entity):
        self._owned.append(entity)
        return entity

    def release_owned(self) -> None:
        """Destroy every publisher, subscription and timer made with own_* (on deactivate)."""
        destroy = {Publisher: self.destroy_publisher, Subscription: self.destroy_subscription,
                   Timer: self.destroy_timer}
        for entity in reversed(self._owned):
            next(f for cls, f in destroy.items() if isinstance(entity, cls))(entity)
        self._owned = []
        self.inbox.clear()

    def _run_soon(self, fn) -> None:
        """Run fn on this node's executor after the events queued before it (now when it has none)."""
        executor = self.executor
        if executor is None:
            fn()
        else:
            executor.create_task(fn)

    def _callback_failed(self, exc: Exception, callback) -> None:
        self.problem(f"callback-{type(exc).__name__}", f"a callback failed and was skipped: "
                     f"{type(exc).__name__}: {exc}")

    # --- diagnostics -----------------------------------------------------------------------------
    def stage(self, name: str, hardware_id: str = "") -> StageStats:
        if name not in self.stats:
            self.stats[name] = StageStats(f"{self.get_name()}: {name}", hardware_id)
        return self.stats[name]

    @contextlib.contextmanager
    def busy(self):
        """Wrap a callback that may run long: /diagnostics say WARN while it has run over BUSY_WARN_S."""
        self._busy_since = time.monotonic()
        try:
            yield
        finally:
            self._busy_since = None

    def start_diagnostics(self) -> None:
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        stop = self._diag_stop = threading.Event()

        def loop():
            trimmed = time.monotonic()
            self._memory = heap_usage()
            while not stop.wait(self.diagnostics_period):
                try:
                    self._publish_diagnostics()
                except Exception as exc:  # e.g. the context went down under us: say it, keep the node
                    self.problem("diagnostics", f"could not publish /diagnostics: {exc}", every_s=60.0)
                if time.monotonic() - trimmed >= TRIM_EVERY_S:  # RSS then follows live memory over long runs
                    release_free_memory()
                    self._memory = heap_usage()
                    trimmed = time.monotonic()

        self._diag_thread = threading.Thread(target=loop, name=f"{self.get_name()}_diagnostics", daemon=True)
        self._diag_thread.start()

    def stop_diagnostics(self) -> None:
        if self._diag_thread is not None:
            self._diag_stop.set()
            self._diag_thread.join(timeout=2 * self.diagnostics_period + 1.0)
            self._diag_thread = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    def destroy_node(self) -> None:
        self.stop_diagnostics()  # the thread must not publish on a destroyed node
        super().destroy_node()

    def _publish_diagnostics(self) -> None:
        msg = diagnostic_array(list(self.stats.values()), self.get_clock().now().to_msg())
        since = self._busy_since
        if since is not None and time.monotonic() - since > BUSY_WARN_S:
            msg.status.append(DiagnosticStatus(level=DiagnosticStatus.WARN, name=f"{self.get_name()}: callbacks",
                                               message=f"busy: one callback has run {time.monotonic() - since:.1f} s"))
        if self.inbox.capacity and msg.status:
            shed = self.inbox.shed - self._shed_reported
            self._shed_reported = self.inbox.shed
            msg.status.append(inbox_status(self.get_name(), self.inbox, shed))
            if shed:
                self.problem("inbox-shed", f"callbacks fell behind: dropped the {shed} oldest waiting messages "
                             f"(inbox of {self.inbox.capacity}); the node is short of CPU")
        if self._memory and msg.status:
            msg.status.append(memory_status(self.get_name(), self._memory))
        if self._diag_pub is not None and msg.status:
            self._diag_pub.publish(msg)

    # --- lifecycle defaults ------------------------------------------------------------------------
    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.release_owned()
        self.stop_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error("lifecycle error; node stays up in the unconfigured state")
        return TransitionCallbackReturn.SUCCESS

    def bring_up(self) -> bool:
        """configure + activate; True on success (used for autostart and by the in-process launcher)."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error("configure failed; staying unconfigured (fix the parameters and configure again)")
            return False
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error("activate failed")
            return False
        return True

    def before_exit(self) -> None:
        """Called once before the process exits (e.g. to clear RViz markers)."""


EXECUTORS = ("events", "single")


def make_executor(context=None):
    """The executor every process spins: rclpy's EventsExecutor where this rclpy has it, else SingleThreaded.

    HPE_ROS_EXECUTOR=single forces the SingleThreadedExecutor. The events executor dispatches from C++ instead
    of rebuilding a wait set in Python for every callback: less CPU per message in nodes with many topics.
    """
    choice = os.environ.get("HPE_ROS_EXECUTOR", "events").strip().lower() or "events"
    if choice not in EXECUTORS:
        raise ValueError(f"HPE_ROS_EXECUTOR={choice!r}: expected one of {', '.join(EXECUTORS)}")
    if choice == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # rclpy before Jazzy
            pass
        else:
            return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def _stop_requests() -> list[int]:
    """Turn SIGINT/SIGTERM into entries of the returned list (the signal numbers), for the whole process.

    A flag, not an exception: one raised inside the events executor's callback is lost, and one raised
    during the exit steps (a second signal: Ctrl-C of a process group, then the launcher's SIGINT) would
    cut them short with a traceback.
    """
    requests: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: requests.append(signum))
    return requests


def _exit_step(node, what: str, step) -> None:
    """One step of the exit; a failure is one warning line (the process is going anyway), never a traceback."""
    try:
        step()
    except Exception as exc:
        with contextlib.suppress(Exception):
            node.get_logger().warning(f"during exit ({what}): {type(exc).__name__}: {exc}")


def run(node_factory, args=None) -> None:
    """Process entry point shared by every node: init, optional autostart, spin, clean exit on SIGINT/SIGTERM.

    SIGINT and SIGTERM, in any order and number, from the moment this is called (construction, configure
    and activate included), stop the spin loop; the exit then runs every step (farewell messages, executor,
    node, context) once, each failure one warning line.
    """
    # Our own SIGINT/SIGTERM handling, installed first: rclpy's would invalidate the context before the node
    # could say goodbye (e.g. clear its RViz markers).
    stop = _stop_requests()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = None
    try:
        node = node_factory()
        executor = make_executor()
        executor.add_node(node)
        if node.autostart and not stop:
            node.bring_up()
        # Everything allocated so far (modules, models, calibration) lives for the whole run: keep it out
        # of the garbage collector's scans so collections stay short in the per-frame path.
        gc.freeze()
        # spin_once in a loop, not spin(): the events executor's spin() stays in C++ and never returns to
        # look at the flag the SIGINT/SIGTERM handler sets.
        while rclpy.ok() and not stop:
            executor.spin_once(timeout_sec=0.2)
    except ExternalShutdownException:
        pass  # the context went down under us: exit as on a signal
    finally:
        if node is not None:
            _exit_step(node, "farewell", lambda: (node.before_exit(), time.sleep(0.1)))  # let DDS deliver it
        if executor is not None:
            _exit_step(node, "executor shutdown", lambda: executor.shutdown(timeout_sec=0.5))
        if node is not None:
            _exit_step(node, "destroy node", node.destroy_node)
        rclpy.try_shutdown()
        # Python puts its handlers back to the default (die) while the interpreter finalises: a late signal
        # (the launcher repeats SIGINT) would then end an exit that is already clean with -2.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
