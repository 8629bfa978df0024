"""Per-frame multi-view fusion: 2D detections of C cameras -> tracked 3D persons with orientations.

Shared by the ROS fusion node and the offline CLI, so both behave the same:

    pipe = FusionPipeline(rig, "coco17", FusionConfig(refine=True))
    result = pipe.step(stamp, points2d, scores)            # (C, P, J, 2) px, (C, P, J)
    points, confidence, ids, views = result.as_arrays()    # (P, J, 3), (P, J), (P,), (P, J)

One step: predict tracks -> associate detections across views (track predictions as priors) ->
triangulate every group's joints in one batched call -> fill single-view groups / joints from per-view
lifted 3D poses (the placement maths is `fusion.single_view`) -> tracker update (ids, gating, bone
lengths, smoothing) -> body and joint orientations. The outlier threshold of association and triangulation
follows the detections: error_scale_k x the running median reprojection residual of the fused joints
(`fusion.robust_scale`), within [min_error_px, max_error_px].

The association validates its groups by triangulating them with the pipeline's own triangulation
settings, so the triangulation stage reuses those points and re-solves only the groups the association
changed afterwards (a view split off or re-attached). Per-rig constants (essential matrices, stacked
intrinsics) are computed once per rig (`fusion.geometry`), and with tracks alive the epipolar matching
only runs for detections no track prior claimed: time per frame grows about linearly with cameras.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..camera import Rig
from ..checks import check_shape
from ..skeleton import Layout, get_layout
from .association import associate, gather_groups
from .geometry import rig_constants
from .orientation import body_frames, joint_rotations
from .robust_scale import RobustScale
from .single_view import duplicate_single_views, fill_from_lifted
from .tracking import Tracker, TrackerConfig
from .triangulation import triangulate


@dataclass
class FusionConfig:
    """Fusion parameters; the names are the fusion node's ROS parameters (`fusion.<name>`,
    `fusion.tracker.<name>`), each field's help text their description. Build one from a (nested) mapping
    with `hpe_ros.checks.config_from_mapping(FusionConfig, {...})`."""

    min_views: int = field(default=2, metadata={"help": "cameras needed to triangulate a joint"})
    max_error_px: float = field(default=12.0, metadata={
        "help": "reprojection error above which a view is always rejected as an outlier (px)"})
    error_scale_k: float = field(default=6.0, metadata={
        "help": "outlier threshold in residual scales: a view is rejected when its reprojection error exceeds "
                "this times the running median reprojection residual, within [min_error_px, max_error_px] "
                "(0 = max_error_px always)"})
    min_error_px: float = field(default=2.0, metadata={
        "help": "the outlier threshold never goes below this (px; max_error_px wins if lower)"})
    min_score: float = field(default=0.1, metadata={"help": "2D confidence below which a joint counts as missing"})
    max_epipolar_px: float = field(default=25.0, metadata={"help": "epipolar distance gate of cross-view association"})
    prior_gate_px: float = field(default=60.0, metadata={
        "help": "pixel gate when matching detections to tracked people"})
    max_foreign_share: float = field(default=0.3, metadata={
        "help": "a camera's 2D skeleton is dropped from a person seen by >= 3 cameras when more than this share "
                "of its joints are off the others' triangulation by max_epipolar_px (a skeleton mixing two "
                "people; 1 = never)"})
    refine: bool = field(default=False, metadata={"help": "Gauss-Newton refinement of triangulated joints"})
    use_single_view: bool = field(default=True, metadata={
        "help": "use lifted 3D for people or joints seen by fewer than min_views cameras"})
    lifted_track_depth: float = field(default=0.5, metadata={
        "help": "single-view people: fraction (log depth) of the way their lifted depth moves to the depth "
                "their track predicts (0 = off)"})
    # Translation only by default: it measured as good as scale + translation or better (see README).
    lifted_scale_fit: bool = field(default=False, metadata={
        "help": "align lifted poses to the triangulated joints with scale + translation (else translation)"})
    tracker: TrackerConfig = field(default_factory=TrackerConfig)  # ids, gates, hold-over, bone lengths, smoothing

    def __post_init__(self):
        if self.min_views < 1:
            raise ValueError(f"FusionConfig.min_views must be >= 1, got {self.min_views}")
        for name in ("min_score", "lifted_track_depth", "max_foreign_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"FusionConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("max_error_px", "max_epipolar_px", "prior_gate_px", "min_error_px"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FusionConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.error_scale_k >= 0:
            raise ValueError(f"FusionConfig.error_scale_k must be >= 0, got {self.error_scale_k}")
        if not isinstance(self.tracker, TrackerConfig):
            raise ValueError(f"FusionConfig.tracker must be a TrackerConfig, got {type(self.tracker).__name__}")


@dataclass
class FusedPerson:
    """One tracked person: id (persistent), joints (J, 3) world m (NaN = missing), confidence (J,),
    views (J,) cameras per joint (1 = lifted single view, 0 = held), body_pose (4, 4) body->world,
    joint_rotations (J, 3, 3) joint->world (both None until FusionPipeline.orient ran)."""

    id: int
    joints: np.ndarray
    confidence: np.ndarray
    views: np.ndarray
    body_pose: np.ndarray | None
    joint_rotations: np.ndarray | None


@dataclass
class FusionResult:
    """Output of one step: stamp (s), persons sorted by id, timing_ms {stage: ms}, num_joints J."""

    stamp: float
    persons: list[FusedPerson] = field(default_factory=list)
    timing_ms: dict[str, float] = field(default_factory=dict)
    num_joints: int = 17

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """points (P, J, 3), confidence (P, J), ids (P,) int64, views (P, J) int64 (P = 0 gives empty arrays)."""
        J = self.num_joints
        if not self.persons:
            return np.zeros((0, J, 3)), np.zeros((0, J)), np.zeros(0, dtype=np.int64), np.zeros((0, J), dtype=np.int64)
        return (np.stack([p.joints for p in self.persons]), np.stack([p.confidence for p in self.persons]),
                np.array([p.id for p in self.persons], dtype=np.int64),
                np.stack([p.views for p in self.persons]).astype(np.int64))


def stack_views(views: list[tuple[np.ndarray, np.ndarray] | None], num_joints: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-camera detections (points (P_c, J, 2), scores (P_c, J)), None = no data, in rig order ->
    points2d (C, P, J, 2) NaN-padded and scores (C, P, J) zero-padded, P = max P_c: what `step` takes."""
    P = max((len(v[0]) for v in views if v is not None), default=0)
    points2d, scores = np.full((len(views), P, num_joints, 2), np.nan), np.zeros((len(views), P, num_joints))
    for c, v in enumerate(views):
        if v is not None:
            points2d[c, :len(v[0])], scores[c, :len(v[0])] = v
    return points2d, scores


@dataclass
class PreparedFrame:
    """A frame after association and triangulation (FusionPipeline.prepare), before tracking.

    groups (G, C) detection rows; poses (G, J, 3), confidence, views (G, J); cams (G,) cameras per group;
    duplicate (G,) single-view groups that repeat a triangulated person; prior_root (G, 3) world mid-hip
    predicted by the track the 2D association matched a group to (NaN: none).
    """

    stamp: float
    points2d: np.ndarray
    scores: np.ndarray
    groups: np.ndarray
    prior_index: np.ndarray
    poses: np.ndarray
    confidence: np.ndarray
    views: np.ndarray
    cams: np.ndarray
    duplicate: np.ndarray
    use_single_view: bool
    timer: _Timer
    prior_root: np.ndarray | None = None

    @property
    def needs_lifted(self) -> bool:
        """Someone was seen by one camera only: without lifted poses they would be dropped."""
        return bool(self.use_single_view and np.any((self.cams == 1) & ~self.duplicate))


class _Timer:
    """Accumulates per-stage wall time in milliseconds."""

    def __init__(self):
        self.ms: dict[str, float] = {}
        self._t0 = self._last = time.perf_counter()

    def lap(self, stage: str):
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0.0) + 1e3 * (now - self._last)
        self._last = now

    def total(self) -> dict[str, float]:
        self.ms["total"] = 1e3 * (time.perf_counter() - self._t0)
        return self.ms


class FusionPipeline:
    """Stateful per-frame fusion for one rig (see module docstring)."""

    def __init__(self, rig: Rig, layout: str | Layout = "coco17", config: FusionConfig | None = None):
        if len(rig) == 0:
            raise ValueError("rig has no cameras")
        self.rig = rig
        self.layout = get_layout(layout)
        self.config = config or FusionConfig()
        self._R = np.stack([c.R for c in rig])   # (C, 3, 3) world -> camera
        self._t = np.stack([c.t for c in rig])   # (C, 3)
        self.tracker = Tracker(self.config.tracker, self.layout)
        # Starts where max_error_px sits (k x scale = max_error_px), then follows the detections.
        self.residual_scale = RobustScale(self.config.max_error_px / max(self.config.error_scale_k, 1e-9))
        self._last_stamp: float | None = None
        self.last_association = None  # the last step's Association (None when nothing was detected)
        self.mixed_views_dropped = 0  # 2D skeletons split off a person as mixing two people (max_foreign_share)

    def set_rig(self, rig: Rig) -> None:
        """Swap in refined calibration of the same cameras (same names, order); tracks and ids are kept."""
        if rig.names != self.rig.names:
            raise ValueError(f"set_rig: cameras {rig.names} differ from the pipeline's {self.rig.names}")
        self.rig = rig
        self._R = np.stack([c.R for c in rig])
        self._t = np.stack([c.t for c in rig])

    def reset(self):
        """Forget all tracks and the last stamp (ids keep counting up)."""
        self.tracker.reset()
        self.residual_scale.reset()
        self._last_stamp = None

    # --- one frame -------------------------------------------------------------------------------
    def step(self, stamp: float, points2d: np.ndarray, scores: np.ndarray, lifted: np.ndarray | None = None,
             lifted_scores: np.ndarray | None = None, orientations: bool = True) -> FusionResult:
        """Fuse one synchronised frame: `finish(prepare(stamp, points2d, scores), lifted, ...)`.

        stamp: s, increasing; points2d: (C, P, J, 2) px; scores: (C, P, J), 0 = missing (a camera without
        data this frame has all-zero scores; P may change between calls, P = 0 allowed); lifted: (C, P, J, 3)
        per-view 3D in each camera's optical frame (m) or None; lifted_scores: (C, P, J) or None (= scores).
        Raises ValueError for shapes that disagree with the rig / layout and for a stamp that is not newer
        than the previous one; the state is untouched then. orientations=False leaves body_pose and
        joint_rotations None (a live node publishes positions first and calls `orient(result)` after).
        """
        return self.finish(self.prepare(stamp, points2d, scores), lifted, lifted_scores, orientations)

    def prepare(self, stamp: float, points2d: np.ndarray, scores: np.ndarray) -> PreparedFrame:
        """The 2D part of a step, without touching the tracks: association and triangulation.

        A live node calls this as soon as a frame's 2D is in, and waits for lifted poses only when
        `needs_lifted` says a person was seen by one camera alone. Inputs as in `step`.
        """
        timer = _Timer()
        points2d, scores = self._check_inputs(stamp, points2d, scores)
        stamp = float(stamp)
        cfg = self.config
        C, P, J = scores.shape
        timer.lap("validate")

        track_ids, priors = self.tracker.predict(stamp)
        max_error_px = self.error_threshold_px
        timer.lap("predict")

        assoc = None
        if P == 0 or not (scores >= cfg.min_score).any():
            groups, prior_index = np.zeros((0, C), dtype=np.int64), np.zeros(0, dtype=np.int64)
        else:
            # The association's validation triangulates every group with the same settings as the
            # triangulation stage below, which then only re-solves the groups association changed after.
            assoc = associate(self.rig, points2d, scores, priors if len(track_ids) else None,
                              min_views=cfg.min_views, max_epipolar_px=cfg.max_epipolar_px,
                              prior_gate_px=cfg.prior_gate_px, min_score=cfg.min_score,
                              max_error_px=max_error_px, refine=cfg.refine,
                              max_foreign_share=cfg.max_foreign_share)
            self.mixed_views_dropped += assoc.mixed_views
            groups = np.asarray(assoc.groups, dtype=np.int64).reshape(-1, C)
            prior_index = np.asarray(assoc.prior_index, dtype=np.int64).reshape(-1)
        self.last_association = assoc
        timer.lap("associate")

        poses, confidence, views, cams = self._triangulate_groups(points2d, scores, groups, assoc, max_error_px)
        self._measure_residuals(stamp, points2d, scores, groups, poses, cams)
        timer.lap("triangulate")
        duplicate = (duplicate_single_views(self.rig, points2d, scores, groups, poses, cams, cfg.min_score)
                     if len(groups) else np.zeros(0, dtype=bool))
        if assoc is not None and assoc.mixed is not None:  # a view split off a person as mixing two people
            duplicate |= assoc.mixed
        prior_root = np.full((len(groups), 3), np.nan)
        matched = prior_index >= 0
        if matched.any():
            prior_root[matched] = self.layout.hip_centre(priors[prior_index[matched]])
        return PreparedFrame(stamp, points2d, scores, groups, prior_index, poses, confidence, views, cams,
                             duplicate, cfg.use_single_view, timer, prior_root)

    def finish(self, frame: PreparedFrame, lifted: np.ndarray | None = None,
               lifted_scores: np.ndarray | None = None, orientations: bool = True) -> FusionResult:
        """The rest of a step: lifted poses where views are missing, tracking, (orientations)."""
        cfg = self.config
        timer = frame.timer
        if self._last_stamp is not None and frame.stamp <= self._last_stamp:
            raise ValueError(f"stamp went backwards (or repeated): {frame.stamp:.6f} "
                             f"<= previous {self._last_stamp:.6f}")
        lifted, lifted_scores = self._check_lifted(frame.scores, lifted, lifted_scores)
        poses, confidence, views, cams = frame.poses, frame.confidence, frame.views, frame.cams
        groups, duplicate = frame.groups, frame.duplicate
        if lifted is not None and cfg.use_single_view and len(groups):
            fill_from_lifted(self._R, self._t, self.layout, poses, confidence, views, groups, lifted, lifted_scores,
                             frame.prior_root, cfg.min_score, cfg.lifted_track_depth, cfg.lifted_scale_fit)
            poses[duplicate], confidence[duplicate], views[duplicate] = np.nan, 0.0, 0
        else:
            poses[cams < 2] = np.nan  # single-view groups cannot be placed without a lifted pose
            confidence[cams < 2] = 0.0
            views[cams < 2] = 0
        keep = np.isfinite(poses).all(-1).any(-1)
        timer.lap("single_view")

        tracks = self.tracker.update(frame.stamp, poses[keep], confidence[keep], views[keep],
                                     frame.prior_index[keep])
        self._last_stamp = frame.stamp
        timer.lap("track")

        persons = [FusedPerson(id=tr.id, joints=tr.joints, confidence=tr.confidence, views=tr.views,
                               body_pose=None, joint_rotations=None) for tr in tracks]
        result = FusionResult(stamp=frame.stamp, persons=persons, timing_ms=timer.ms,
                              num_joints=frame.scores.shape[2])
        if orientations:
            self.orient(result)
            timer.lap("orient")
        timer.total()
        return result

    def orient(self, result: FusionResult) -> FusionResult:
        """Fill body_pose and joint_rotations of every person of `result` (batched over persons)."""
        if result.persons:
            joints = np.stack([p.joints for p in result.persons])
            bodies, rotations = body_frames(joints, self.layout), joint_rotations(joints, self.layout)
            for i, person in enumerate(result.persons):
                person.body_pose, person.joint_rotations = bodies[i], rotations[i]
        return result

    # --- stages ----------------------------------------------------------------------------------
    def _check_inputs(self, stamp, points2d, scores):
        C, J = len(self.rig), self.layout.num_joints
        stamp = float(stamp)
        if not np.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        if self._last_stamp is not None and stamp <= self._last_stamp:
            raise ValueError(f"stamp went backwards (or repeated): {stamp:.6f} <= previous {self._last_stamp:.6f}")
        points2d = np.asarray(points2d, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        dims = check_shape("points2d", points2d, ("C", None, "J", 2), {"C": C, "J": J})
        check_shape("scores", scores, ("C", "P", "J"), {**dims, "P": points2d.shape[1]})
        # Missing = score 0: non-finite pixels or scores never reach the geometry.
        finite = np.isfinite(points2d).all(-1)
        scores = np.where(finite & np.isfinite(scores), np.clip(scores, 0.0, 1.0), 0.0)
        points2d = np.where(finite[..., None], points2d, np.nan)
        return points2d, scores

    def _check_lifted(self, scores, lifted, lifted_scores):
        """Validate lifted (C, P, J, 3) / lifted_scores (C, P, J) against the frame's scores (C, P, J)."""
        C, P, J = scores.shape
        if lifted is None:
            if lifted_scores is not None:
                raise ValueError("lifted_scores given without lifted")
            return None, None
        dims = {"C": C, "P": P, "J": J}
        lifted = np.asarray(lifted, dtype=np.float64)
        check_shape("lifted", lifted, ("C", "P", "J", 3), dims)
        lifted_scores = scores if lifted_scores is None else np.asarray(lifted_scores, dtype=np.float64)
        check_shape("lifted_scores", lifted_scores, ("C", "P", "J"), dims)
        ok = np.isfinite(lifted).all(-1) & np.isfinite(lifted_scores)
        return lifted, np.where(ok, np.clip(lifted_scores, 0.0, 1.0), 0.0)

    @property
    def error_threshold_px(self) -> float:
        """The reprojection error (px) above which a view is an outlier in the next frame: error_scale_k x
        the running residual scale within [min_error_px, max_error_px] (max_error_px when k = 0)."""
        cfg = self.config
        if cfg.error_scale_k == 0:
            return cfg.max_error_px
        return self.residual_scale.threshold(cfg.error_scale_k, cfg.min_error_px, cfg.max_error_px)

    def _measure_residuals(self, stamp, points2d, scores, groups, poses, cams):
        """Feed the residual scale: pixel distance (C, G, J) between each fused joint's projection and the
        detections of its group's views (confident ones), for groups seen by >= 2 cameras."""
        multi = cams >= 2
        if self.config.error_scale_k == 0 or not multi.any():
            return
        g = groups[multi]
        proj = rig_constants(self.rig).project(poses[multi])                       # (C, G, J, 2)
        member = (g >= 0).T[..., None]                                             # (C, G, 1)
        confident = member & (gather_groups(scores, g) >= self.config.min_score)
        residual = np.linalg.norm(proj - gather_groups(points2d, g), axis=-1)
        self.residual_scale.update(stamp, np.where(confident, residual, np.nan))

    def _triangulate_groups(self, points2d, scores, groups, assoc=None, max_error_px=None):
        """Every multi-view group's joints -> poses (G, J, 3), confidence, views (G, J), cams (G,).

        Groups the association already triangulated with these settings (`assoc.triangulated`) are taken
        from it; the others are solved in one batched call. Single-view groups stay NaN here.
        max_error_px: the outlier threshold (None = config.max_error_px).
        """
        C, J, G = len(self.rig), self.layout.num_joints, len(groups)
        if G == 0:
            return np.zeros((0, J, 3)), np.zeros((0, J)), np.zeros((0, J), dtype=np.int64), np.zeros(0, dtype=np.int64)
        cfg = self.config
        member = (groups >= 0).T                                         # (C, G)
        sc = gather_groups(scores, groups) * member[..., None]            # (C, G, J)
        cams = (member & (sc >= cfg.min_score).any(-1)).sum(0)
        poses = np.full((G, J, 3), np.nan)
        confidence = np.zeros((G, J))
        views = np.zeros((G, J), dtype=np.int64)
        todo = cams >= 2
        if assoc is not None and assoc.triangulated is not None and cfg.min_views == 2:
            done = assoc.triangulated & todo
            poses[done] = assoc.points[done]
            confidence[done] = assoc.confidence[done]
            views[done] = assoc.joint_views[done]
            todo &= ~done
        idx = np.flatnonzero(todo)
        if idx.size:
            n = idx.size
            pts = gather_groups(points2d, groups[idx])                    # (C, n, J, 2)
            tri = triangulate(self.rig, pts.reshape(C, n * J, 2), sc[:, idx].reshape(C, n * J), min_views=cfg.min_views,
                              min_score=cfg.min_score, refine=cfg.refine,
                              max_error_px=cfg.max_error_px if max_error_px is None else max_error_px)
            poses[idx] = tri.points.reshape(n, J, 3)
            confidence[idx] = tri.confidence.reshape(n, J)
            views[idx] = tri.views.reshape(n, J)
        return poses, confidence, views, cams
