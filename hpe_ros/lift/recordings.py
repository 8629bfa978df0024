"""Multi-view recordings for the lifter: simulated, read from OpenPose folders (`load_recording`) or from the
package's 2D keypoint JSON lines (`load_recording_jsonl` / `save_recording_jsonl`), and what the lifter
learns from them.

A `Recording` is F synchronised frames of a calibrated rig: 2D detections (F, C, P, J, 2) px per camera
(P rows per camera, NaN / score 0 = missing), and for simulated recordings the ground truth (world frame)
and which person each row is.

- `views_2d(rec)`: every (frame, camera, detection row) with enough joints as one single-view sample:
  2D-only training data (cycle, ites), or, `with_truth=True` on a simulated recording, evaluation data.
- `epipolar_samples(rec)`: EpipolarPose self-supervision (Kocabas et al. CVPR 2019): the rig's own
  fusion (association + robust triangulation, tracking for person ids) triangulates every person seen by
  two or more cameras; each camera that saw that person gives one sample whose 3D target is the
  triangulated pose in that camera's frame, weighted per joint by how well it was triangulated. The
  ground truth is never used: this works on a real rig's recording.

    >>> rec = simulate_recording(default_rig(3, radius=5.0, height=3.8), seconds=20, n_people=2, seed=0)
    >>> samples, weight = epipolar_samples(rec)            # LiftSamples, (N, J) target weights
    >>> train(TrainConfig(method="epipolar", init="default"), prepare_data(samples, target_weight=weight))
    >>> test = views_2d(simulate_recording(rig, seed=1), with_truth=True)   # evaluation (simulated only)

Pixels are undistorted (ideal pinhole pixels with the camera's K) before they become samples, so a
sample's K is all the lifter needs; on rigs without distortion they are the detections unchanged.
World frame of simulated recordings: z up, floor z = 0 (the simulator's and `default_rig`'s convention).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hpe_ros.camera import Rig
from hpe_ros.lift.normalize import MIN_JOINTS, MIN_SCORE
from hpe_ros.lift.synthetic import LiftSamples
from hpe_ros.skeleton import get_layout

log = logging.getLogger(__name__)

__all__ = ["Recording", "simulate_recording", "load_recording", "load_recording_jsonl", "save_recording_jsonl",
           "views_2d", "epipolar_samples", "fuse_recording", "FusedRecording", "pseudo_label_weight"]


@dataclass
class Recording:
    """F synchronised frames of a calibrated rig.

    rig: the C cameras; stamps (F,) s; points2d (F, C, P, J, 2) px as detected (distorted), NaN = missing;
    scores (F, C, P, J), 0 = missing; layout: keypoint layout name; truth (F, P, J, 3) world m of the
    simulated people (None for real recordings; NaN where a person is absent), for evaluation only;
    person_ids (F, C, P) int: which truth person each detection row is, -1 = no detection, -2 = a false
    person (realistic detector errors) (None for real recordings).
    """

    rig: Rig
    stamps: np.ndarray
    points2d: np.ndarray
    scores: np.ndarray
    layout: str = "coco17"
    truth: np.ndarray | None = None
    person_ids: np.ndarray | None = None
    _fusion: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.stamps = np.asarray(self.stamps, dtype=np.float64).reshape(-1)
        self.points2d = np.asarray(self.points2d, dtype=np.float64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        J = get_layout(self.layout).num_joints
        F, C = len(self.stamps), len(self.rig)
        if self.points2d.ndim != 5 or self.points2d.shape[:2] != (F, C) or self.points2d.shape[3:] != (J, 2):
            raise ValueError(f"points2d must be (F={F}, C={C}, P, J={J}, 2), got {self.points2d.shape}")
        P = self.points2d.shape[2]
        if self.scores.shape != (F, C, P, J):
            raise ValueError(f"scores must be {(F, C, P, J)}, got {self.scores.shape}")
        if F > 1 and not np.all(np.diff(self.stamps) > 0):
            raise ValueError("stamps must increase strictly")
        if self.truth is not None:
            self.truth = np.asarray(self.truth, dtype=np.float64)
            if self.truth.ndim != 4 or self.truth.shape[0] != F or self.truth.shape[2:] != (J, 3):
                raise ValueError(f"truth must be (F={F}, people, J={J}, 3), got {self.truth.shape}")
        if self.person_ids is not None:
            self.person_ids = np.asarray(self.person_ids, dtype=np.int64)
            if self.person_ids.shape != (F, C, P):
                raise ValueError(f"person_ids must be {(F, C, P)}, got {self.person_ids.shape}")

    @property
    def num_frames(self) -> int:
        return len(self.stamps)

    @property
    def num_cameras(self) -> int:
        return len(self.rig)

    def __len__(self) -> int:
        return len(self.stamps)


# --- making recordings ----------------------------------------------------------------------------------

def rig_focus(rig: Rig) -> np.ndarray:
    """(3,) the world point closest (least squares) to every camera's optical axis: where the rig looks."""
    centres = rig.centers
    axes = np.stack([c.R[2] for c in rig])                                # optical axis (world) per camera
    A = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]            # projectors orthogonal to the axes
    M, b = A.sum(0), np.einsum("cij,cj->i", A, centres)
    if len(rig) < 2 or np.linalg.cond(M) > 1e8:                         # one camera / parallel axes
        return centres.mean(0) + 3.0 * axes.mean(0)
    return np.linalg.solve(M, b)


def simulate_recording(rig: Rig, seconds: float = 20.0, fps: float = 10.0, n_people: int = 2, seed: int = 0,
                       activities: Sequence[str] | None = None, noise_px: float = 2.0,
                       area: tuple[float, float] | None = None, progress: bool = False,
                       **observe_kwargs) -> Recording:
    """People of the procedural motion (`sim.motion.MotionScript`) seen by `rig` through the simulated
    detector (`sim.observe.observe`: noise, misses, outliers, occlusion).

    The people move in an `area` (x, y metres; default from the rig: 0.6 x the horizontal distance from
    the nearest camera to the point the rig looks at, between 1.9 and 4 m) centred under that point, on
    the floor z = 0. activities: subset of `sim.motion.motion_types()` (default all). observe_kwargs go to
    `observe` (miss_rate, outlier_rate, occlusion, errors="realistic", ...). Deterministic from `seed`.
    """
    from tqdm import tqdm

    from hpe_ros.sim.detector_errors import preset
    from hpe_ros.sim.motion import MotionScript
    from hpe_ros.sim.observe import observe

    if not (fps > 0 and seconds > 0):
        raise ValueError(f"seconds and fps must be > 0, got seconds={seconds}, fps={fps}")
    focus = rig_focus(rig)
    if area is None:
        d = float(np.min(np.linalg.norm((rig.centers - focus)[:, :2], axis=-1)))
        side = float(np.clip(0.6 * d, 1.9, 4.0))
        area = (side, side)
    script = MotionScript(n_people=n_people, seed=seed, area=area,
                          activities=list(activities) if activities is not None else None)
    offset = np.array([focus[0], focus[1], 0.0])
    rng = np.random.default_rng([int(seed), 7])
    F, C, J = max(int(round(seconds * fps)), 1), len(rig), 17
    stamps = np.arange(F) / float(fps)
    P = int(n_people)
    errors = observe_kwargs.get("errors")
    errors = preset(errors) if isinstance(errors, str) else errors
    R = P + (errors.max_false_people if errors is not None else 0)      # rows for false people too
    points = np.full((F, C, R, J, 2), np.nan)
    scores = np.zeros((F, C, R, J))
    ids = np.full((F, C, R), -1, dtype=np.int64)
    truth = np.zeros((F, P, J, 3))
    for f in tqdm(range(F), desc="simulate", unit="frame", disable=not progress, leave=False):
        world = script.pose(stamps[f]) + offset
        truth[f] = world
        obs = observe(rig, world, rng, noise_px=noise_px, **observe_kwargs)
        rows = obs.scores.shape[1]
        points[f, :, :rows], scores[f, :, :rows], ids[f, :, :rows] = obs.points2d, obs.scores, obs.person_ids
    return Recording(rig, stamps, points, scores, "coco17", truth, ids)


def load_recording(calibration, keypoint_dirs: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
                   fps: float = 30.0, layout: str = "coco17") -> Recording:
    """A real rig's recording: a calibration file (any format `hpe-ros triangulate` reads) and one OpenPose
    JSON folder per camera, {camera name: folder} or a list in the calibration's camera order.

    Frames are paired by frame number (`hpe_ros.io.openpose`): the recording holds every frame number any
    folder has, stamped number / fps, and a camera without a file for a frame has no detections there
    (logged with the per-camera counts). Raises ValueError naming what is wrong (unknown / missing
    cameras, unreadable files; CalibrationError, a ValueError, for the calibration).
    """
    from hpe_ros.io.calibration import load_rig
    from hpe_ros.io.openpose import SynchronisedOpenPose

    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be > 0, got {fps}")
    lay = get_layout(layout)
    rig = load_rig(calibration)
    frames, points, scores = SynchronisedOpenPose.for_cameras(keypoint_dirs, rig.names, lay,
                                                              source=calibration).read_all()
    return Recording(rig, frames / float(fps), points, scores, lay.name, None, None)


def load_recording_jsonl(calibration, path: str | os.PathLike) -> Recording:
    """A real rig's recording from the package's 2D keypoint JSON lines (`hpe_ros.io.pose2d_jsonl`, format
    hpe_ros.pose2d.v1) and the rig's calibration (a file any `load_rig` reads, or a `Rig`).

    The file's cameras are matched by name to the calibration's; the recording's cameras are the
    calibration's, in its order. A camera of the file the calibration lacks is an error; a calibration
    camera the file lacks gets no detections (logged). Stamps and layout come from the file. Raises
    ValueError naming what is wrong (the reader's errors name the line).
    """
    from hpe_ros.io.calibration import load_rig
    from hpe_ros.io.pose2d_jsonl import read_pose2d_jsonl

    rig = calibration if isinstance(calibration, Rig) else load_rig(calibration)
    seq = read_pose2d_jsonl(path)
    unknown = [n for n in seq.cameras if n not in rig.names]
    if unknown:
        raise ValueError(f"{path}: camera(s) {unknown} are not in the calibration"
                         f"{f' {calibration}' if not isinstance(calibration, Rig) else ''}, "
                         f"whose cameras are {rig.names}")
    absent = [n for n in rig.names if n not in seq.cameras]
    if absent:
        log.warning("%s: no detections for calibration camera(s) %s (not in the file)", path, absent)
    F, _, P, J, _ = seq.points2d.shape
    points = np.full((F, len(rig), P, J, 2), np.nan)
    scores = np.zeros((F, len(rig), P, J))
    for i, n in enumerate(seq.cameras):
        c = rig.index(n)
        points[:, c], scores[:, c] = seq.points2d[:, i], seq.scores[:, i]
    return Recording(rig, seq.stamps, points, scores, seq.layout, None, None)


def save_recording_jsonl(rec: Recording, path: str | os.PathLike, fps: float | None = None) -> None:
    """Write `rec`'s 2D detections (stamps, every camera by name, layout) as hpe_ros.pose2d.v1 JSON lines,
    atomically; `load_recording_jsonl(rec.rig, path)` reads them back. The ground truth and person ids of a
    simulated recording are not written. fps: optional, for the header."""
    from hpe_ros.io.pose2d_jsonl import write_pose2d_jsonl

    write_pose2d_jsonl(path, rec.points2d, rec.scores, rec.stamps, rec.rig.names, rec.layout, fps=fps)


# --- the rig's fusion over a recording ------------------------------------------------------------------

@dataclass
class FusedRecording:
    """The fusion's multi-view groups over a recording, one row per group with >= 2 cameras.

    frame (G,) frame index; rows (G, C) detection row per camera (-1 = not in the group); points (G, J, 3)
    world m, raw per-frame triangulations (NaN = not triangulated); confidence (G, J) and views (G, J)
    inlier cameras per joint, from the triangulation; track (G,) the tracker's person id (-1 while no
    confirmed track matched the group); row_track (F, C, P) the same id per detection row (-1 elsewhere).
    """

    frame: np.ndarray
    rows: np.ndarray
    points: np.ndarray
    confidence: np.ndarray
    views: np.ndarray
    track: np.ndarray
    row_track: np.ndarray


def _fusion_config(min_views: int, config=None):
    from hpe_ros.fusion import FusionConfig

    if config is None:
        config = FusionConfig(min_views=min_views, refine=True)
    elif config.min_views != min_views:
        from dataclasses import replace

        config = replace(config, min_views=min_views)
    return config


def fuse_recording(rec: Recording, min_views: int = 2, config=None, progress: bool = True) -> FusedRecording:
    """Run the package's `FusionPipeline` (association, robust triangulation, tracking) over `rec`.

    config: a `FusionConfig` (default: the pipeline's defaults with refine=True, `min_views`); only 2D
    detections and the rig are used, never `rec.truth`. Groups are matched to the confirmed tracks of the
    same frame (Hungarian on mean joint distance within the tracker's gate) for person ids. The result is
    cached on `rec` per configuration (do not change rec's arrays in place afterwards).
    """
    from dataclasses import astuple

    from scipy.optimize import linear_sum_assignment
    from tqdm import tqdm

    from hpe_ros.fusion import FusionPipeline
    from hpe_ros.fusion.tracking import pose_distance

    config = _fusion_config(int(min_views), config)
    key = astuple(config)
    if key in rec._fusion:
        return rec._fusion[key]
    F, C, P, J = rec.scores.shape
    pipe = FusionPipeline(rec.rig, rec.layout, config)
    out = {k: [] for k in ("frame", "rows", "points", "confidence", "views", "track")}
    row_track = np.full((F, C, P), -1, dtype=np.int64)
    for f in tqdm(range(F), desc="fuse", unit="frame", disable=not progress, leave=False):
        prep = pipe.prepare(rec.stamps[f], rec.points2d[f], rec.scores[f])
        multi = np.flatnonzero(prep.cams >= 2)
        poses = prep.poses[multi].copy()
        conf, views, groups = prep.confidence[multi].copy(), prep.views[multi].copy(), prep.groups[multi].copy()
        result = pipe.finish(prep, orientations=False)
        track = np.full(len(multi), -1, dtype=np.int64)
        if len(multi) and result.persons:
            joints = np.stack([p.joints for p in result.persons])
            ids = np.array([p.id for p in result.persons], dtype=np.int64)
            dist = pose_distance(poses, joints, pipe.tracker.config.min_common_joints)
            ok = dist <= config.tracker.gate_m
            r, c = linear_sum_assignment(np.where(ok, dist, 1e9))
            hit = ok[r, c]
            track[r[hit]] = ids[c[hit]]
        g, cam = np.nonzero(groups >= 0)
        row_track[f, cam, groups[g, cam]] = track[g]
        for k, v in zip(("frame", "rows", "points", "confidence", "views", "track"),
                        (np.full(len(multi), f), groups, poses, conf, views, track)):
            out[k].append(v)
    cat = {k: np.concatenate(v) if v else None for k, v in out.items()}
    if cat["frame"] is None:
        cat = dict(frame=np.zeros(0, np.int64), rows=np.zeros((0, C), np.int64), points=np.zeros((0, J, 3)),
                   confidence=np.zeros((0, J)), views=np.zeros((0, J), np.int64), track=np.zeros(0, np.int64))
    fused = FusedRecording(row_track=row_track, **cat)
    rec._fusion[key] = fused
    return fused


# --- samples ---------------------------------------------------------------------------------------------

def _ideal_pixels(rig: Rig, points: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Detected pixels (N, J, 2) of cameras cam (N,) -> undistorted pixels (same K); unchanged without distortion."""
    out = points.copy()
    for c, camera in enumerate(rig):
        sel = cam == c
        if sel.any():
            out[sel] = camera.undistort_pixels(points[sel])
    return out


def _clean(points: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    finite = np.isfinite(points).all(-1) & np.isfinite(scores) & (scores > 0)
    return np.where(finite[..., None], points, np.nan), np.where(finite, np.clip(scores, 0.0, 1.0), 0.0)


def _compact_ids(keys: np.ndarray) -> np.ndarray:
    """Rows of integer keys (N, k) -> ids 0..n-1 (equal rows, equal ids)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _to_camera(rig: Rig, world: np.ndarray, cam: np.ndarray) -> np.ndarray:
    R = np.stack([c.R for c in rig])[cam]
    t = np.stack([c.t for c in rig])[cam]
    return np.einsum("nij,nkj->nki", R, world) + t[:, None]


def views_2d(rec: Recording, with_truth: bool = False, progress: bool = True) -> LiftSamples:
    """Every (frame, camera, detection row) with >= `normalize.MIN_JOINTS` joints (score >= MIN_SCORE) as a
    single-view sample.

    joints3d: with_truth and a simulated recording: the truth of that row's person in the camera's frame
    (evaluation); else NaN. person: one id per (camera, person): simulated recordings use person_ids,
    real ones the fusion tracker's ids (`fuse_recording`, run once and cached); rows no track claimed are
    their own person. frame: the frame index.
    """
    F, C, P, J = rec.scores.shape
    points, scores = _clean(rec.points2d, rec.scores)
    seen = (scores >= MIN_SCORE).sum(-1)
    f, c, p = np.nonzero(seen >= MIN_JOINTS)
    n = len(f)
    kp = _ideal_pixels(rec.rig, points[f, c, p], c)
    K = np.stack([cam.K for cam in rec.rig])[c] if n else np.zeros((0, 3, 3))
    joints3d = np.full((n, J, 3), np.nan)
    if rec.person_ids is not None:
        pid = rec.person_ids[f, c, p]
    else:
        pid = fuse_recording(rec, progress=progress).row_track[f, c, p] if n else np.zeros(0, np.int64)
    if with_truth and rec.truth is not None and rec.person_ids is not None and n:
        have = pid >= 0
        joints3d[have] = _to_camera(rec.rig, rec.truth[f[have], pid[have]], c[have])
    # Unknown rows (-1) become their own person: key (camera, -1 - sample index).
    key = np.stack([c, np.where(pid >= 0, pid, -1 - np.arange(n))], -1)
    return LiftSamples(kp, scores[f, c, p], K, joints3d, _compact_ids(key), f.astype(np.int64), rec.layout)


def pseudo_label_weight(views: np.ndarray, confidence: np.ndarray, min_views: int = 2) -> np.ndarray:
    """Per-joint weight of a triangulated target: 0 below min_views inlier views (or not triangulated), else
    confidence x (1 - 2^-(views - 1)), clipped to [0.01, 1]: 2 views 0.5, 3 views 0.75, 4 views 0.875 of
    the triangulation's confidence (mean inlier score damped by the reprojection error)."""
    views = np.asarray(views)
    conf = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64)), 0.0, 1.0)
    w = conf * (1.0 - 0.5 ** (np.maximum(views, 1) - 1))
    return np.where(views >= max(int(min_views), 2), np.clip(w, 0.01, 1.0), 0.0)


def epipolar_samples(rec: Recording, min_views: int = 2, config=None,
                     progress: bool = True) -> tuple[LiftSamples, np.ndarray]:
    """EpipolarPose pseudo-labels: one sample per (triangulated person, camera that detected it).

    The rig's fusion (`fuse_recording`: association, robust triangulation with >= min_views inlier views
    per joint, tracking) runs over the 2D detections only; `rec.truth` is never read. A sample is that
    camera's detection (undistorted pixels, scores, K) with joints3d = the triangulated joints in that
    camera's frame (NaN where not triangulated). Samples whose mid-hip was not triangulated, or whose view
    has fewer than MIN_JOINTS joints, are left out (the lifter's targets are root-relative).
    Returns (samples, target_weight (N, J)): `pseudo_label_weight` of each joint (0 = no target), for
    `prepare_data(samples, target_weight=...)`. person: (camera, track id), frame: the frame index.
    """
    fused = fuse_recording(rec, min_views=min_views, config=config, progress=progress)
    J = rec.scores.shape[-1]
    layout = get_layout(rec.layout)
    g, c = np.nonzero(fused.rows >= 0)
    row = fused.rows[g, c]
    f = fused.frame[g]
    points, scores = _clean(rec.points2d[f, c, row], rec.scores[f, c, row])
    X = fused.points[g]
    weight = pseudo_label_weight(fused.views[g], fused.confidence[g], min_views)
    weight = np.where(np.isfinite(X).all(-1), weight, 0.0)
    X = np.where((weight > 0)[..., None], X, np.nan)
    hips = np.isfinite(layout.hip_centre(X)).all(-1)
    keep = hips & ((scores >= MIN_SCORE).sum(-1) >= MIN_JOINTS)
    g, c, f, row = g[keep], c[keep], f[keep], row[keep]
    points, scores, X, weight = points[keep], scores[keep], X[keep], weight[keep]
    joints3d = _to_camera(rec.rig, X, c) if len(g) else np.zeros((0, J, 3))
    K = np.stack([cam.K for cam in rec.rig])[c] if len(g) else np.zeros((0, 3, 3))
    track = fused.track[g]
    key = np.stack([c, np.where(track >= 0, track, -1 - g)], -1)
    samples = LiftSamples(_ideal_pixels(rec.rig, points, c), scores, K, joints3d, _compact_ids(key),
                          f.astype(np.int64), rec.layout)
    return samples, weight
