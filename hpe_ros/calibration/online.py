"""Online refinement of camera extrinsics from the people a running fusion sees (no ROS here).

The fusion output is the anchor: each frame, every fused person (world joints (J, 3), seen by enough
cameras) is projected into every camera and matched to the detection whose median joint distance is
below ``match_gate_px``. The matched 2D joints go into a ring buffer of frames. `refine` then

1. takes a snapshot of the buffer (so it can run in a background thread while `add` goes on);
2. triangulates the even frames with the current rig and bundle-adjusts rig + points on them
   (camera 0 fixed and scale fixed: the world frame does not drift);
3. triangulates the odd (held-out) frames with the old and with the new rig and compares their
   reprojection error: the mean over cameras of each camera's median error, so one mis-calibrated
   camera cannot hide behind the others;
4. accepts only when the new error is below ``(1 - min_improvement)`` x the old one and no camera moved
   more than ``max_rotation_deg`` / ``max_translation_m``.

The input rig is never modified; an accepted result carries a new Rig.

    >>> refiner = OnlineRefiner(rig)
    >>> refiner.add(stamp, points2d, scores, fused)      # (C, P, J, 2), (C, P, J), (Q, J, 3)
    >>> if refiner.ready(): result = refiner.refine()     # RefineResult
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from hpe_ros.calibration.bundle import Observations, bundle_adjust
from hpe_ros.calibration.compare import rotation_angle_deg
from hpe_ros.camera import Rig
from hpe_ros.checks import check_shape
from hpe_ros.fusion.triangulation import triangulate

_MIN_SCORE = 0.3        # joints below this confidence are neither matched on nor kept
_MIN_MATCH_JOINTS = 4   # a detection needs this many comparable joints to be matched to a person


@dataclass
class RefineResult:
    """What `OnlineRefiner.refine` found.

    accepted: the new rig is clearly better and within the change limits; reason: one line why (not);
    rig: the refined rig when accepted, else the rig it started from; old_error_px / new_error_px:
    held-out reprojection error (mean over cameras of the median px error) with the old / new rig;
    rotation_change_deg (C,), translation_change_m (C,): how far each camera moved (centre, metres).
    """

    accepted: bool
    reason: str
    rig: Rig
    old_error_px: float
    new_error_px: float
    rotation_change_deg: np.ndarray
    translation_change_m: np.ndarray
    frames: int = 0
    observations: int = 0
    time_s: float = 0.0

    def summary(self) -> dict[str, str]:
        """Flat strings (for /diagnostics)."""
        f = lambda v: f"{v:.3f}" if np.isfinite(v) else "nan"
        return {"accepted": str(self.accepted), "reason": self.reason, "old_error_px": f(self.old_error_px),
                "new_error_px": f(self.new_error_px),
                "max_rotation_change_deg": f(float(np.max(self.rotation_change_deg, initial=0.0))),
                "max_translation_change_m": f(float(np.max(self.translation_change_m, initial=0.0))),
                "frames": str(self.frames), "observations": str(self.observations), "time_s": f(self.time_s)}


@dataclass
class _Frame:
    """One buffered frame: M joint observations of N = Q*J points (q * J + j)."""

    stamp: float
    num_points: int
    camera: np.ndarray   # (M,) int
    point: np.ndarray    # (M,) int in [0, num_points)
    xy: np.ndarray       # (M, 2) px
    score: np.ndarray    # (M,)


class OnlineRefiner:
    """Collects matched 2D observations of fused people and refines the extrinsics of `rig` from them."""

    def __init__(self, rig: Rig, min_frames: int = 60, max_frames: int = 300, min_improvement: float = 0.10,
                 max_rotation_deg: float = 3.0, max_translation_m: float = 0.2, match_gate_px: float = 40.0,
                 min_views: int = 3):
        if len(rig) < 2:
            raise ValueError("online refinement needs at least two cameras")
        if not 2 <= min_frames <= max_frames:
            raise ValueError(f"need 2 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
        if not 0.0 <= min_improvement < 1.0:
            raise ValueError(f"min_improvement must be in [0, 1), got {min_improvement}")
        if min_views < 2:
            raise ValueError(f"min_views must be >= 2, got {min_views}")
        self.rig = rig
        self.min_frames, self.max_frames = int(min_frames), int(max_frames)
        self.min_improvement = float(min_improvement)
        self.max_rotation_deg, self.max_translation_m = float(max_rotation_deg), float(max_translation_m)
        self.match_gate_px, self.min_views = float(match_gate_px), int(min_views)
        self._frames: deque[_Frame] = deque(maxlen=self.max_frames)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    def ready(self) -> bool:
        return len(self._frames) >= self.min_frames

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def set_rig(self, rig: Rig) -> None:
        """Use `rig` (e.g. an accepted refinement) for matching and as the next starting point.
        The buffered 2D observations do not depend on the rig and are kept."""
        if rig.names != self.rig.names:
            raise ValueError(f"set_rig: cameras {rig.names} differ from {self.rig.names}")
        self.rig = rig

    # --- collecting ----------------------------------------------------------------------------------
    def add(self, stamp: float, points2d: np.ndarray, scores: np.ndarray, fused: np.ndarray) -> int:
        """Match the fused people to the detections and buffer the matched joints; returns how many.

        points2d: (C, P, J, 2) px (NaN = missing); scores: (C, P, J); fused: (Q, J, 3) world m (NaN =
        missing) of people seen by >= min_views cameras. A joint is kept where >= min_views cameras
        matched it with score > 0.3.
        """
        points2d = np.asarray(points2d, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        fused = np.asarray(fused, dtype=np.float64)
        C = len(self.rig)
        dims = check_shape("points2d", points2d, ("C", "P", "J", 2), {"C": C})
        check_shape("scores", scores, ("C", "P", "J"), dims)
        Q, J = fused.shape[0], dims["J"]
        if Q == 0 or dims["P"] == 0:
            return 0
        check_shape("fused", fused, ("Q", "J", 3), dims)
        rig = self.rig
        usable = (scores > _MIN_SCORE) & np.isfinite(points2d).all(-1)                  # (C, P, J)
        taken = np.zeros(scores.shape[:2], dtype=bool)                                     # (C, P)
        xy = np.full((C, Q, J, 2), np.nan)
        w = np.zeros((C, Q, J))
        with np.errstate(invalid="ignore"):
            for q in range(Q):  # few people: the cameras, detections and joints are batched
                proj = rig.project(fused[q])                                               # (C, J, 2)
                d = np.linalg.norm(points2d - proj[:, None], axis=-1)                     # (C, P, J)
                ok = usable & np.isfinite(d)
                med = np.nanmedian(np.where(ok, d, np.nan), axis=-1) if ok.any() else np.full(taken.shape, np.nan)
                med = np.where((ok.sum(-1) >= _MIN_MATCH_JOINTS) & ~taken, med, np.inf)
                best = np.argmin(np.nan_to_num(med, nan=np.inf), axis=1)                  # (C,)
                hit = np.take_along_axis(med, best[:, None], 1)[:, 0] < self.match_gate_px
                cams = np.flatnonzero(hit)
                taken[cams, best[cams]] = True
                sel = usable[cams, best[cams]]                                             # (c, J)
                xy[cams, q] = np.where(sel[..., None], points2d[cams, best[cams]], np.nan)
                w[cams, q] = np.where(sel, scores[cams, best[cams]], 0.0)
        w[:, (w > 0).sum(0) < self.min_views] = 0.0        # joints seen by too few cameras
        cam, q, j = np.nonzero(w > 0)
        if cam.size == 0:
            return 0
        frame = _Frame(float(stamp), Q * J, cam, q * J + j, xy[cam, q, j], w[cam, q, j])
        with self._lock:
            self._frames.append(frame)
        return int(cam.size)

    # --- refining ------------------------------------------------------------------------------------
    def refine(self) -> RefineResult:
        """Bundle-adjust on the even buffered frames, judge on the odd ones (see the module docstring).
        Works on a snapshot of the buffer and of the rig: safe to call from a background thread."""
        t0 = time.perf_counter()
        with self._lock:
            frames = list(self._frames)
        old = self.rig
        C = len(old)
        zeros = np.zeros(C)
        if len(frames) < self.min_frames:
            return RefineResult(False, f"not enough frames ({len(frames)} < {self.min_frames})", old,
                                np.nan, np.nan, zeros, zeros, len(frames))
        train, test = self._stack(frames[0::2], C), self._stack(frames[1::2], C)
        X0 = self._triangulate(old, train)
        obs = Observations(train.camera, train.point, train.xy, train.score)
        try:
            new, _, report = bundle_adjust(old, obs, X0, fixed_camera=0, fix_scale=True)
        except ValueError as exc:
            return RefineResult(False, f"bundle adjustment failed: {exc}", old, np.nan, np.nan, zeros, zeros,
                                len(frames), len(obs), time.perf_counter() - t0)
        rot = rotation_angle_deg(np.stack([c.R for c in new]), np.stack([c.R for c in old]))
        trans = np.linalg.norm(new.centers - old.centers, axis=1)
        e_old = self._held_out_error(old, test)
        e_new = self._held_out_error(new, test)
        n, dt = len(frames), time.perf_counter() - t0
        if not (np.isfinite(e_old) and np.isfinite(e_new)):
            return RefineResult(False, "no held-out error (too few points)", old, e_old, e_new, rot, trans, n,
                                len(obs), dt)
        if not e_new < (1.0 - self.min_improvement) * e_old:
            return RefineResult(False, f"no clear improvement ({e_old:.2f} -> {e_new:.2f} px)", old, e_old,
                                e_new, rot, trans, n, len(obs), dt)
        too_far = (rot > self.max_rotation_deg) | (trans > self.max_translation_m)
        if too_far.any():
            bad = ", ".join(f"{old.names[c]} {rot[c]:.2f} deg / {trans[c]:.3f} m" for c in np.flatnonzero(too_far))
            return RefineResult(False, f"change too large ({bad})", old, e_old, e_new, rot, trans, n, len(obs), dt)
        return RefineResult(True, f"held-out error {e_old:.2f} -> {e_new:.2f} px", new, e_old, e_new, rot, trans,
                            n, len(obs), dt)

    @staticmethod
    def _stack(frames: list[_Frame], C: int) -> _Frame:
        """Concatenate frames into one set of points (point ids offset per frame)."""
        offsets = np.cumsum([0] + [f.num_points for f in frames])
        cat = lambda name: np.concatenate([getattr(f, name) for f in frames]) if frames else np.zeros(0)
        point = (np.concatenate([f.point + o for f, o in zip(frames, offsets)]) if frames
                 else np.zeros(0, dtype=np.int64))
        xy = np.concatenate([f.xy for f in frames]) if frames else np.zeros((0, 2))
        return _Frame(0.0, int(offsets[-1]), cat("camera").astype(np.int64), point.astype(np.int64), xy,
                      cat("score"))

    def _triangulate(self, rig: Rig, data: _Frame) -> np.ndarray:
        """All points of `data` triangulated with `rig` in one batched call -> (N, 3), NaN where none."""
        C, N = len(rig), data.num_points
        pts = np.full((C, N, 2), np.nan)
        sc = np.zeros((C, N))
        pts[data.camera, data.point] = data.xy
        sc[data.camera, data.point] = data.score
        return triangulate(rig, pts, sc, min_views=2, min_score=_MIN_SCORE,
                           max_error_px=self.match_gate_px).points

    def _held_out_error(self, rig: Rig, data: _Frame) -> float:
        """Mean over cameras of the median reprojection error of `data`'s observations, each point
        triangulated with `rig` from the same observations."""
        X = self._triangulate(rig, data)
        Xo = X[data.point]
        ok = np.isfinite(Xo).all(1)
        err = np.full(data.point.size, np.nan)
        for c in range(len(rig)):  # C is small
            m = ok & (data.camera == c)
            if m.any():
                err[m] = np.linalg.norm(rig[c].project(Xo[m]) - data.xy[m], axis=1)
        med = [np.median(err[(data.camera == c) & ok]) for c in range(len(rig)) if ((data.camera == c) & ok).any()]
        return float(np.mean(med)) if len(med) >= 2 else float("nan")


__all__ = ["OnlineRefiner", "RefineResult"]
