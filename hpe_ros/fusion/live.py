"""The live fusion policy: what a running node does between 2D messages arriving and skeletons going out.

No ROS here: the caller passes every message's arrival time `now` (its clock, one clock for every call),
so the policy is testable with made-up times.

    live = LiveFusion(rig, "coco17", FusionConfig(), LiveConfig(), refiner=OnlineRefiner(rig))
    arrival = live.add_2d("cam0", stamp, points2d, scores, now)   # (P, J, 2) px, (P, J) -> Arrival
    live.add_lifted("cam0", stamp, points3d, scores, now)          # (P, J, 3) m, that camera's optical frame
    for out in live.finished():                                    # after every input: what it completed
        publish(out.result)
    for out in live.poll(now):                                     # on a timer: waits that ran out
        publish(out.result)
    for event in live.take_events():                               # lines for the log and diagnostics
        report(event)

- Stamps: a ClockMonitor judges each 2D message's stamp first: one further than `max_future_s` ahead of
  the node clock is dropped ("future"), one further than `max_clock_offset_s` ahead of the other cameras
  too ("ahead"; with `correct_clock_offset`, a camera consistently ahead is shifted back instead), so no
  camera's clock can move the others' frames. A message older than `max_age_s` on arrival is stale.
- Work per frame is bounded: a message keeps its `max_persons_per_camera` most confident people, a frame
  its `max_persons_per_frame` (the rest are dropped and counted), so a flood cannot stall the node.
- Frames: a FrameSynchronizer groups the cameras' 2D messages by stamp (slop, wait, dead cameras are not
  waited for).
- Lifted poses: kept per camera for the last LIFTED_FRAMES_KEPT stamps (the lifter runs behind the 2D).
- A synchronised frame is associated and triangulated at once (`FusionPipeline.prepare`). When someone in
  it was seen by one camera only (`needs_lifted`), the lifter is alive (heard from within
  `camera_timeout_s`) and the frame's lifted poses are not all in, the frame is held for up to
  `lifter_wait_s` after it was prepared. It goes on when its lifted poses are complete, when its wait is
  over, or when a newer frame is ready (at most one frame is held), with whatever lifted poses it has.
- Online calibration (with a refiner): every finished frame gives the refiner its detections and the
  people seen by >= REFINE_MIN_VIEWS cameras on most joints; at most once per `refine_period_s` a
  refinement runs in the background (one at a time), and `poll` applies an accepted rig to the pipeline
  (tracks are kept).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from ..camera import Rig
from ..checks import check_shape
from ..skeleton import Layout
from .pipeline import FusionConfig, FusionPipeline, FusionResult, PreparedFrame, stack_views
from .sync import ClockMonitor, Frame, FrameSynchronizer

LIFTED_FRAMES_KEPT = 10  # per camera: the lifter may run a few frames behind the 2D stream
REFINE_MIN_VIEWS = 3     # the refiner learns from people seen by this many cameras on most joints


@dataclass
class LiveConfig:
    """Live policy settings (seconds); the names are the fusion node's ROS parameters, each field's help
    text and range their description and range."""

    sync_slop_s: float = field(default=0.010, metadata={
        "help": "stamps closer than this belong to one frame", "range": (0.0, 1.0)})
    sync_wait_s: float = field(default=0.040, metadata={
        "help": "longest wait for the slowest camera of a frame", "range": (0.0, 2.0)})
    camera_timeout_s: float = field(default=0.5, metadata={
        "help": "a camera (or the lifter) silent this long is not waited for", "range": (0.01, 60.0)})
    max_age_s: float = field(default=0.5, metadata={
        "help": "frames older than this when they arrive are dropped as stale", "range": (0.01, 60.0)})
    max_future_s: float = field(default=0.5, metadata={
        "help": "2D messages stamped further than this ahead of the node clock are dropped", "range": (0.01, 60.0)})
    max_clock_offset_s: float = field(default=0.1, metadata={
        "help": "2D messages stamped further than this ahead of the other cameras are dropped (a camera clock "
                "running ahead)", "range": (0.01, 60.0)})
    correct_clock_offset: bool = field(default=False, metadata={
        "help": "shift the stamps of a camera whose clock runs ahead of the others back by its measured offset, "
                "instead of dropping them"})
    max_persons_per_camera: int = field(default=10, metadata={
        "help": "people kept per 2D message (the most confident; the rest are dropped)", "range": (1, 10000)})
    max_persons_per_frame: int = field(default=30, metadata={
        "help": "people kept per synchronised frame, all cameras together (the most confident)",
        "range": (1, 100000)})
    use_lifter: bool = field(default=True, metadata={
        "help": "use lifted poses (/<cam>/pose_3d) for people or joints fewer than two cameras see"})
    lifter_wait_s: float = field(default=0.010, metadata={
        "help": "how long a complete frame may wait for its lifted poses (0 = never wait)", "range": (0.0, 1.0)})
    refine_period_s: float = field(default=30.0, metadata={
        "help": "how often an online refinement may start", "range": (0.01, 86400.0)})

    def __post_init__(self):
        for f in fields(self):
            low, high = f.metadata.get("range", (None, None))
            if low is not None and not low <= getattr(self, f.name) <= high:
                raise ValueError(f"LiveConfig.{f.name} must be in [{low}, {high}], got {getattr(self, f.name)}")


def person_confidence(scores: np.ndarray) -> np.ndarray:
    """scores (P, J) -> (P,) mean joint confidence."""
    return scores.mean(axis=1) if scores.shape[1] else np.zeros(len(scores))


def most_confident(scores: np.ndarray, cap: int) -> np.ndarray:
    """Row indices of the `cap` most confident people, in their original order. scores: (P, J)."""
    if len(scores) <= cap:
        return np.arange(len(scores))
    return np.sort(np.argsort(-person_confidence(scores), kind="stable")[:cap])


class Refiner(Protocol):
    """What LiveFusion needs of an online extrinsics refiner (hpe_ros.calibration.online.OnlineRefiner)."""

    def add(self, stamp: float, points2d: np.ndarray, scores: np.ndarray, fused: np.ndarray) -> int: ...
    def ready(self) -> bool: ...
    def refine(self) -> Any: ...
    def set_rig(self, rig: Rig) -> None: ...


@dataclass
class Arrival:
    """What became of one 2D message: status "accepted" (in a frame), "stale" (older than max_age_s on
    arrival), "late" (older than a frame already fused: reordered), "future" (stamped ahead of the node
    clock) or "ahead" (stamped ahead of the other cameras); age_s = arrival - stamp; clock_offset_s: the
    camera's estimated clock offset from the other cameras (NaN until known); persons_dropped: people over
    max_persons_per_camera."""

    status: str
    age_s: float
    clock_offset_s: float = float("nan")
    persons_dropped: int = 0


@dataclass
class LiveOutput:
    """One fused frame to publish: result (orientations not filled yet: `pipeline.orient` does that),
    cameras that contributed to the frame, input_wait_s (frame stamp -> the frame was ready to fuse)."""

    result: FusionResult
    cameras: int
    input_wait_s: float


@dataclass
class LiveEvent:
    """Something to report: kind "frame_dropped", "persons_capped", "refine_frame_skipped", "refine_failed",
    "refine_kept" or "refine_applied"; message: one line; refinement: the refiner's result (refine_* kinds)."""

    kind: str
    message: str
    refinement: Any = None


@dataclass
class _Pending:
    """A prepared frame on its way out: its 2D in rig order (C, P, J, 2), (C, P, J), and when its wait ends."""

    frame: Frame
    points2d: np.ndarray
    scores: np.ndarray
    prepared: PreparedFrame
    input_wait_s: float
    deadline: float


class _RefineJob:
    """One background refinement: `result` (or the exception it raised) is valid once `done` is set."""

    def __init__(self):
        self.done = threading.Event()
        self.result: Any = None


def _daemon_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="extrinsics_refinement", daemon=True).start()


class LiveFusion:
    """The live policy around one FusionPipeline (see the module docstring).

    background: how a refinement is run off the caller's thread (default: a daemon thread; tests pass
    `lambda work: work()` to run it at once).
    """

    def __init__(self, rig: Rig, layout: str | Layout = "coco17", config: FusionConfig | None = None,
                 live_config: LiveConfig | None = None, refiner: Refiner | None = None,
                 background: Callable[[Callable[[], None]], None] = _daemon_thread):
        self.pipeline = FusionPipeline(rig, layout, config)
        self.layout = self.pipeline.layout
        self.live_config = live_config or LiveConfig()
        self.refiner = refiner
        self.refinements = 0  # accepted and applied refinements
        self._background = background
        self._job: _RefineJob | None = None
        self._last_refine = float("-inf")
        self._camera_index = {name: c for c, name in enumerate(rig.names)}
        self._events: list[LiveEvent] = []
        self._outbox: list[LiveOutput] = []
        self.clear_inputs()

    @property
    def rig(self) -> Rig:
        return self.pipeline.rig

    def clear_inputs(self) -> None:
        """Forget waiting frames, lifted poses and which cameras are alive (tracks and ids are kept)."""
        c = self.live_config
        self.sync = FrameSynchronizer(self.rig.names, c.sync_slop_s, c.sync_wait_s, c.camera_timeout_s)
        self.clocks = ClockMonitor(self.rig.names, c.max_future_s, c.max_clock_offset_s, c.correct_clock_offset)
        self.frame_persons_dropped = 0  # people over max_persons_per_frame
        self._lifted: dict[str, dict[float, tuple[np.ndarray, np.ndarray]]] = {name: {} for name in self.rig.names}
        self._held: _Pending | None = None
        self._last_lift = float("-inf")
        self._outbox = []

    # --- inputs --------------------------------------------------------------------------------------
    def add_2d(self, camera: str, stamp: float, points2d: np.ndarray, scores: np.ndarray, now: float) -> Arrival:
        """One camera's 2D detections: points2d (P, J, 2) px, scores (P, J); stamp: acquisition time (s).

        Frames this completes (or whose wait ran out) are fused at once: `finished` returns them.
        ValueError (nothing else changes) for an unknown camera or arrays that do not fit the layout.
        """
        points2d, scores = self._checked(camera, "points2d", points2d, scores, 2)
        keep = most_confident(scores, self.live_config.max_persons_per_camera)
        dropped = len(scores) - len(keep)
        points2d, scores = points2d[keep], scores[keep]
        verdict = self.clocks.judge(camera, stamp, now)
        age = now - verdict.stamp
        if verdict.status in ("future", "ahead"):
            return Arrival(verdict.status, age, verdict.offset_s, dropped)
        if age > self.live_config.max_age_s:
            return Arrival("stale", age, verdict.offset_s, dropped)
        late = self.sync.counters.late
        frames = self.sync.add(camera, verdict.stamp, (points2d, scores), now)
        status = "late" if self.sync.counters.late > late else "accepted"
        self._fuse(frames, now)
        return Arrival(status, age, verdict.offset_s, dropped)

    def add_lifted(self, camera: str, stamp: float, points3d: np.ndarray, scores: np.ndarray, now: float) -> None:
        """One camera's lifted poses for its 2D message of `stamp`: points3d (P, J, 3) m in the camera's
        optical frame, scores (P, J). A frame held for them goes on once it has them all (`finished`
        returns it). ValueError for an unknown camera or arrays that do not fit the layout."""
        points3d, scores = self._checked(camera, "points3d", points3d, scores, 3)
        store = self._lifted[camera]
        store[stamp] = (points3d, scores)
        while len(store) > LIFTED_FRAMES_KEPT:
            store.pop(next(iter(store)))
        self._last_lift = now
        if self._held is not None and self._lifts_complete(self._held.frame):
            self._release_held()

    def poll(self, now: float) -> list[LiveOutput]:
        """Release a held frame whose wait is over, fuse frames the synchroniser stops waiting for, apply a
        finished refinement or start a due one (call it on a timer); returns `finished()`."""
        if self._held is not None and now >= self._held.deadline:
            self._release_held()
        self._fuse(self.sync.poll(now), now)
        if self.refiner is not None:
            self._refine_tick(now)
        return self.finished()

    def finished(self) -> list[LiveOutput]:
        """Frames finished since the last call, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[LiveEvent]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def _checked(self, camera, name, points, scores, dim) -> tuple[np.ndarray, np.ndarray]:
        if camera not in self._camera_index:
            raise ValueError(f"unknown camera {camera!r}; fusing {self.rig.names}")
        J = self.layout.num_joints
        points, scores = np.asarray(points, dtype=np.float64), np.asarray(scores, dtype=np.float64)
        if len(points) == 0:  # nobody seen: any joint count will do
            return np.zeros((0, J, dim)), np.zeros((0, J))
        dims = check_shape(name, points, ("P", J, dim))
        check_shape("scores", scores, ("P", J), dims)
        return points, scores

    # --- fusing --------------------------------------------------------------------------------------
    def _fuse(self, frames: list[Frame], now: float) -> None:
        """Prepare frames in order; hold one for its lifted poses when the policy says so, finish the rest."""
        c = self.live_config
        wait = c.lifter_wait_s if c.use_lifter else 0.0
        for frame in frames:
            if self._held is not None:  # a newer frame is ready: the held one goes with what it has
                self._release_held()
            self._cap_frame(frame)
            points2d, scores = stack_views([frame.items.get(name) for name in self.rig.names], self.layout.num_joints)
            started = time.perf_counter()
            try:
                prepared = self.pipeline.prepare(frame.stamp, points2d, scores)
            except ValueError as exc:  # e.g. a stamp that went backwards: drop the frame, keep running
                self._event("frame_dropped", f"dropped a frame: {exc}")
                continue
            ready = now + (time.perf_counter() - started)  # the wait starts once the frame is prepared
            pending = _Pending(frame, points2d, scores, prepared, now - frame.stamp, ready + wait)
            if (wait > 0 and prepared.needs_lifted and ready - self._last_lift <= c.camera_timeout_s
                    and not self._lifts_complete(frame)):
                self._held = pending
            else:
                self._finish(pending)

    def _cap_frame(self, frame: Frame) -> None:
        """Keep the frame's max_persons_per_frame most confident people, all cameras together."""
        cap = self.live_config.max_persons_per_frame
        cams = list(frame.items)
        counts = [len(frame.items[c][1]) for c in cams]
        if sum(counts) <= cap:
            return
        owner = np.repeat(np.arange(len(cams)), counts)
        confidence = np.concatenate([person_confidence(frame.items[c][1]) for c in cams])
        kept = np.zeros(len(confidence), dtype=bool)
        kept[np.argsort(-confidence, kind="stable")[:cap]] = True
        for i, cam in enumerate(cams):
            points, scores = frame.items[cam]
            rows = kept[owner == i]
            frame.items[cam] = (points[rows], scores[rows])
        self.frame_persons_dropped += len(confidence) - cap
        self._event("persons_capped", f"a frame had {len(confidence)} people; kept the {cap} most confident "
                                      f"(max_persons_per_frame)")

    def _lifts_complete(self, frame: Frame) -> bool:
        """Every camera of `frame` that saw someone has its lifted poses for that stamp."""
        return all(frame.stamps[c] in self._lifted[c] for c, (points, _) in frame.items.items() if len(points))

    def _release_held(self) -> None:
        pending, self._held = self._held, None
        self._finish(pending)

    def _lifted_arrays(self, frame: Frame, shape: tuple[int, int, int]):
        """Lifted poses (C, P, J, 3) and scores (C, P, J) for the frame's stamps, or (None, None) if none."""
        C, P, J = shape
        lifted, lifted_scores = np.full((C, P, J, 3), np.nan), np.zeros((C, P, J))
        have = False
        for cam, (points, _) in frame.items.items():
            lift = self._lifted[cam].get(frame.stamps[cam])
            if lift is not None and len(lift[0]) == len(points):
                c, n = self._camera_index[cam], len(points)
                lifted[c, :n], lifted_scores[c, :n] = lift
                have = True
        return (lifted, lifted_scores) if have else (None, None)

    def _finish(self, pending: _Pending) -> None:
        try:
            lifted, lifted_scores = self._lifted_arrays(pending.frame, pending.prepared.scores.shape)
            result = self.pipeline.finish(pending.prepared, lifted, lifted_scores, orientations=False)
        except ValueError as exc:
            self._event("frame_dropped", f"dropped a frame: {exc}")
            return
        self._outbox.append(LiveOutput(result, len(pending.frame.items), pending.input_wait_s))
        if self.refiner is not None:
            self._feed_refiner(pending, result)

    # --- online calibration --------------------------------------------------------------------------
    def _feed_refiner(self, pending: _Pending, result: FusionResult) -> None:
        """Give the refiner this frame's detections and the people seen by enough cameras on most joints."""
        points, _, _, views = result.as_arrays()
        well_seen = (views >= REFINE_MIN_VIEWS).mean(axis=1) > 0.5 if len(views) else np.zeros(0, dtype=bool)
        if not well_seen.any():
            return
        try:
            self.refiner.add(result.stamp, pending.points2d, pending.scores, points[well_seen])
        except ValueError as exc:
            self._event("refine_frame_skipped", f"online calibration skipped a frame: {exc}")

    def _refine_tick(self, now: float) -> None:
        """Apply a finished refinement, or start one when due (one at a time, at most once per period)."""
        job = self._job
        if job is not None and job.done.is_set():
            self._job = None
            self._apply_refinement(job.result)
        if (self._job is not None or not self.refiner.ready()
                or now - self._last_refine < self.live_config.refine_period_s):
            return
        self._last_refine = now
        refiner, job = self.refiner, _RefineJob()
        self._job = job

        def work():
            try:
                job.result = refiner.refine()
            except Exception as exc:  # reported by the next poll, on the caller's thread
                job.result = exc
            finally:
                job.done.set()

        self._background(work)

    def _apply_refinement(self, result) -> None:
        if isinstance(result, BaseException) or result is None:
            self._event("refine_failed", f"online calibration failed: {result!r}", result)
            return
        if not result.accepted:
            self._event("refine_kept", f"online calibration: kept the current rig: {result.reason}", result)
            return
        self.pipeline.set_rig(result.rig)
        self.refiner.set_rig(result.rig)
        self.refinements += 1
        moved = ", ".join(f"{n} {r:.2f} deg / {t * 100:.1f} cm" for n, r, t in
                          zip(self.rig.names, result.rotation_change_deg, result.translation_change_m))
        self._event("refine_applied", f"online calibration applied: held-out reprojection error "
                                      f"{result.old_error_px:.2f} -> {result.new_error_px:.2f} px ({moved})", result)

    def _event(self, kind: str, message: str, refinement: Any = None) -> None:
        self._events.append(LiveEvent(kind, message, refinement))
