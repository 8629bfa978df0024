"""A synthetic rig run as a live camera system: what rig_sim_node publishes, without ROS.

Frames sit on a trigger grid, frame k acquired at `origin + k / rate_hz` (like a hardware-triggered rig),
so two streams with the same origin and seed show the same people at the same stamps. Frame k's people
are `MotionScript.pose(t)` at its time since origin, and each camera reports what `observe` says a
detector would see, stamped with the trigger time plus a small per-camera jitter.

    stream = SimStream(rig, SimConfig(num_people=2, seed=3), origin=time.time())
    frame = stream.render(stream.frame_at(now))    # per camera: (P_c, J, 2) px, (P_c, J); truth (P, J, 3)
    wait = stream.until_next_frame(now)            # s to the next trigger
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..camera import Rig
from .detector_errors import PRESETS
from .motion import MotionScript
from .observe import observe


@dataclass
class SimConfig:
    """Simulation settings; the names are rig_sim_node's ROS parameters, each field's help text and range
    their description and range."""

    num_people: int = field(default=2, metadata={"help": "number of simulated people", "range": (0, 16)})
    seed: int = field(default=0, metadata={
        "help": "seed of the motion script and the detection noise", "range": (0, 2**31 - 1)})
    rate_hz: float = field(default=30.0, metadata={"help": "camera frame rate", "range": (0.5, 240.0)})
    noise_px: float = field(default=2.0, metadata={
        "help": "Gaussian pixel noise (sigma) of detected joints", "range": (0.0, 50.0)})
    miss_rate: float = field(default=0.03, metadata={
        "help": "share of joints the detector misses", "range": (0.0, 1.0)})
    outlier_rate: float = field(default=0.02, metadata={
        "help": "share of joints detected far off (gross outliers)", "range": (0.0, 1.0)})
    occlusion: bool = field(default=True, metadata={"help": "hide or corrupt joints occluded by other people"})
    detector_errors: str = field(default="clean", metadata={
        "help": "'clean': noise_px, miss_rate and outlier_rate; 'realistic': a real detector's errors "
                "(size- and joint-dependent noise, swaps, truncation, false people; sim/detector_errors.py)"})
    stamp_jitter_ms: float = field(default=0.5, metadata={
        "help": "random per-camera offset of header stamps (unsynchronised triggers)", "range": (0.0, 100.0)})

    def __post_init__(self):
        if not self.rate_hz > 0:
            raise ValueError(f"SimConfig.rate_hz must be > 0, got {self.rate_hz}")
        if self.stamp_jitter_ms < 0:
            raise ValueError(f"SimConfig.stamp_jitter_ms must be >= 0, got {self.stamp_jitter_ms}")
        if self.detector_errors not in PRESETS:
            raise ValueError(f"SimConfig.detector_errors must be one of {', '.join(PRESETS)}, "
                             f"got {self.detector_errors!r}")


@dataclass
class SimFrame:
    """Frame `index`, acquired at `stamp` (s). Per published camera, in the stream's `cameras` order:
    stamps (n,) s (trigger + jitter), points2d [(P_c, J, 2) px], scores [(P_c, J)] (the people that camera
    detected, false people included, rows shuffled). truth (P, J, 3) world m; views (P, J): cameras that
    detected each true joint."""

    index: int
    stamp: float
    stamps: np.ndarray
    points2d: list[np.ndarray]
    scores: list[np.ndarray]
    truth: np.ndarray
    views: np.ndarray


class SimStream:
    """Procedural people seen by the cameras of `rig` on a trigger grid (see the module docstring).

    cameras: indices of the cameras whose detections a frame carries (default: all; the others still
    count in `views`); origin: epoch s of frame 0 (set it before rendering when it is known later).
    """

    def __init__(self, rig: Rig, config: SimConfig | None = None, cameras: Sequence[int] | None = None,
                 origin: float = 0.0):
        self.rig = rig
        self.config = config or SimConfig()
        self.cameras = np.arange(len(rig)) if cameras is None else np.asarray(cameras, dtype=np.int64)
        self.origin = float(origin)
        self.period = 1.0 / self.config.rate_hz
        self.script = MotionScript(n_people=self.config.num_people, seed=self.config.seed)
        self.rng = np.random.default_rng(self.config.seed + 1)

    def frame_at(self, now: float) -> int:
        """The frame whose trigger is nearest clock time `now`."""
        return round((now - self.origin) / self.period)

    def until_next_frame(self, now: float) -> float:
        """Seconds from `now` to the next trigger."""
        return self.period - ((now - self.origin) % self.period)

    def render(self, k: int) -> SimFrame:
        """Frame k: its people, what every camera detects of them, and the published cameras' stamps."""
        c = self.config
        stamp = self.origin + k * self.period  # the trigger time of frame k: every camera's acquisition stamp
        joints = self.script.pose(max(0.0, stamp - self.origin))  # (P, J, 3)
        obs = observe(self.rig, joints, self.rng, noise_px=c.noise_px, miss_rate=c.miss_rate,
                      outlier_rate=c.outlier_rate, occlusion=c.occlusion, errors=c.detector_errors)
        jitter = self.rng.normal(0.0, c.stamp_jitter_ms * 1e-3, size=len(self.cameras))
        seen = [obs.person_ids[cam] != -1 for cam in self.cameras]   # false people (-2) are published too
        views = np.zeros(joints.shape[:2], dtype=np.int32)
        for cam in range(len(self.rig)):  # count the cameras that detected each true joint
            ids = obs.person_ids[cam]
            rows = ids >= 0
            np.add.at(views, ids[rows], (obs.scores[cam][rows] > 0).astype(np.int32))
        return SimFrame(k, stamp, stamp + jitter, [obs.points2d[cam][rows] for cam, rows in zip(self.cameras, seen)],
                        [obs.scores[cam][rows] for cam, rows in zip(self.cameras, seen)], joints, views)
