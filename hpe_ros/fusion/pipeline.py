"""Per-frame multi-view fusion: 2D detections of C cameras -> tracked 3D persons with orientations.

Shared by the ROS fusion node and the offline CLI, so both behave the same:

    pipe = FusionPipeline(rig, "coco17", FusionConfig(refine=True))
    result = pipe.step(stamp, points2d, scores)            # (C, P, J, 2) px, (C, P, J)
    points, confidence, ids, views = result.as_arrays()    # (P, J, 3), (P, J), (P,), (P, J)

One step: predict tracks -> associate detections across views (track predictions as priors) ->
triangulate every group's joints in one batched call -> fill single-view groups / joints from per-view
lifted 3D poses -> tracker update (ids, gating, bone lengths, smoothing) -> body and joint orientations.

The association validates its groups by triangulating them with the pipeline's own triangulation
settings, so the triangulation stage reuses those points and re-solves only the groups the association
changed afterwards (a view split off or re-attached). Per-rig constants (essential matrices, stacked
intrinsics) are computed once per rig (`fusion.geometry`), and with tracks alive the epipolar matching
only runs for detections no track prior claimed: time per frame grows about linearly with cameras.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

import numpy as np

from ..camera import Rig
from ..skeleton import Layout, get_layout
from .association import associate
from .orientation import body_frames, joint_rotations
from .tracking import Tracker, TrackerConfig
from .triangulation import triangulate

SINGLE_VIEW_CONFIDENCE = 0.5  # lifted (single-view) joints are trusted half as much as triangulated ones


@dataclass
class FusionConfig:
    """Fusion parameters; the names are the ROS parameters and the CLI's YAML keys."""

    min_views: int = 2               # cameras a triangulated joint needs
    max_error_px: float = 12.0       # reprojection error allowed per inlier view
    min_score: float = 0.1           # 2D keypoints below this score are ignored
    max_epipolar_px: float = 25.0    # association: epipolar distance for two detections to match
    prior_gate_px: float = 60.0      # association: distance of a detection to a projected track prior
    refine: bool = False             # Gauss-Newton refinement of triangulated points
    use_single_view: bool = True     # place lifted poses for persons / joints seen by one camera
    lifted_track_depth: float = 0.5  # single-view people: move lifted depth this far (log) to the track's
    lifted_scale_fit: bool = False   # align lifted poses to triangulated joints with scale + translation
                                     # (default translation only: it measured as good or better, see README)
    gate_m: float = 0.5              # tracker: group-to-track gate (mean joint distance)
    birth_hits: int = 3              # tracker: hits before a track is published
    death_timeout_s: float = 0.5     # tracker: a track unseen this long dies
    joint_hold_s: float = 0.2        # tracker: an unseen joint is extrapolated this long
    max_joint_speed: float = 10.0    # tracker: faster joint updates are outliers
    one_euro_min_cutoff: float = 1.0
    one_euro_beta: float = 20.0           # Hz per m/s (speeds in metres: 0.3 would lag a walk by ~0.1 m)
    filter: bool = True              # One-Euro smoothing

    def __post_init__(self):
        if self.min_views < 1:
            raise ValueError(f"FusionConfig.min_views must be >= 1, got {self.min_views}")
        for name in ("min_score", "lifted_track_depth"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"FusionConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("max_error_px", "max_epipolar_px", "prior_gate_px"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FusionConfig.{name} must be > 0, got {getattr(self, name)}")
        self.tracker_config()  # validates the tracker's share

    @classmethod
    def from_dict(cls, d: dict) -> "FusionConfig":
        """Build from a mapping (YAML, ROS parameters); unknown keys and wrong types raise ValueError."""
        valid = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown fusion option(s) {unknown}; valid: {', '.join(valid)}")
        defaults = cls()
        kwargs = {}
        for key, value in d.items():
            kind = type(getattr(defaults, key))
            if kind is bool:
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"fusion option {key} must be true or false, got {value!r}")
                value = bool(value)
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or float(value) != int(value):
                    raise ValueError(f"fusion option {key} must be an integer, got {value!r}")
                value = int(value)
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                    raise ValueError(f"fusion option {key} must be a number, got {value!r}")
                value = float(value)
            kwargs[key] = value
        return cls(**kwargs)

    def tracker_config(self) -> TrackerConfig:
        return TrackerConfig(gate_m=self.gate_m, birth_hits=self.birth_hits, death_timeout_s=self.death_timeout_s,
                             joint_hold_s=self.joint_hold_s, max_joint_speed=self.max_joint_speed,
                             one_euro_min_cutoff=self.one_euro_min_cutoff, one_euro_beta=self.one_euro_beta,
                             filter=self.filter)


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
    timer: "_Timer"
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
        self.tracker = Tracker(self.config.tracker_config(), self.layout)
        self._last_stamp: float | None = None
        self.last_association = None  # the last step's Association (None when nothing was detected)

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
                              max_error_px=cfg.max_error_px, refine=cfg.refine)
            groups = np.asarray(assoc.groups, dtype=np.int64).reshape(-1, C)
            prior_index = np.asarray(assoc.prior_index, dtype=np.int64).reshape(-1)
        self.last_association = assoc
        timer.lap("associate")

        poses, confidence, views, cams = self._triangulate_groups(points2d, scores, groups, assoc)
        timer.lap("triangulate")
        duplicate = (self._single_views_of_triangulated_people(points2d, scores, groups, poses, cams)
                     if len(groups) else np.zeros(0, dtype=bool))
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
            raise ValueError(f"stamp went backwards (or repeated): {frame.stamp:.6f} <= previous {self._last_stamp:.6f}")
        lifted, lifted_scores = self._check_lifted(frame.scores, lifted, lifted_scores)
        poses, confidence, views, cams = frame.poses, frame.confidence, frame.views, frame.cams
        groups, duplicate = frame.groups, frame.duplicate
        if lifted is not None and cfg.use_single_view and len(groups):
            self._fill_from_lifted(poses, confidence, views, groups, lifted, lifted_scores, frame.prior_root)
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
        if points2d.ndim != 4 or points2d.shape[0] != C or points2d.shape[2:] != (J, 2):
            raise ValueError(f"points2d must be (C={C}, P, J={J}, 2) for this rig and layout {self.layout.name}, "
                             f"got {points2d.shape}")
        P = points2d.shape[1]
        if scores.shape != (C, P, J):
            raise ValueError(f"scores must be {(C, P, J)} to match points2d {points2d.shape}, got {scores.shape}")
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
        lifted = np.asarray(lifted, dtype=np.float64)
        if lifted.shape != (C, P, J, 3):
            raise ValueError(f"lifted must be {(C, P, J, 3)} to match scores {scores.shape}, got {lifted.shape}")
        lifted_scores = scores if lifted_scores is None else np.asarray(lifted_scores, dtype=np.float64)
        if lifted_scores.shape != (C, P, J):
            raise ValueError(f"lifted_scores must be {(C, P, J)} to match scores {scores.shape}, "
                             f"got {lifted_scores.shape}")
        ok = np.isfinite(lifted).all(-1) & np.isfinite(lifted_scores)
        return lifted, np.where(ok, np.clip(lifted_scores, 0.0, 1.0), 0.0)

    def _gather(self, values: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Per-camera rows of each group: values (C, P, ...) , groups (G, C) -> (C, G, ...) (row 0 where -1)."""
        rows = np.maximum(groups.T, 0)                                   # (C, G)
        return values[np.arange(len(self.rig))[:, None], rows]

    def _triangulate_groups(self, points2d, scores, groups, assoc=None):
        """Every multi-view group's joints -> poses (G, J, 3), confidence, views (G, J), cams (G,).

        Groups the association already triangulated with these settings (`assoc.triangulated`) are taken
        from it; the others are solved in one batched call. Single-view groups stay NaN here.
        """
        C, J, G = len(self.rig), self.layout.num_joints, len(groups)
        if G == 0:
            return np.zeros((0, J, 3)), np.zeros((0, J)), np.zeros((0, J), dtype=np.int64), np.zeros(0, dtype=np.int64)
        cfg = self.config
        member = (groups >= 0).T                                         # (C, G)
        sc = self._gather(scores, groups) * member[..., None]            # (C, G, J)
        cams = (member & (sc >= cfg.min_score).any(-1)).sum(0)
        poses = np.full((G, J, 3), np.nan)
        confidence = np.zeros((G, J))
        views = np.zeros((G, J), dtype=np.int64)
        todo = cams >= 2
        if assoc is not None and assoc.triangulated is not None and cfg.min_views == 2:
            done = assoc.triangulated & todo
            poses[done], confidence[done], views[done] = assoc.points[done], assoc.confidence[done], assoc.joint_views[done]
            todo &= ~done
        idx = np.flatnonzero(todo)
        if idx.size:
            n = idx.size
            pts = self._gather(points2d, groups[idx])                    # (C, n, J, 2)
            tri = triangulate(self.rig, pts.reshape(C, n * J, 2), sc[:, idx].reshape(C, n * J), min_views=cfg.min_views,
                              min_score=cfg.min_score, max_error_px=cfg.max_error_px, refine=cfg.refine)
            poses[idx] = tri.points.reshape(n, J, 3)
            confidence[idx] = tri.confidence.reshape(n, J)
            views[idx] = tri.views.reshape(n, J)
        return poses, confidence, views, cams

    def _single_views_of_triangulated_people(self, points2d, scores, groups, poses, cams, min_iou=0.3):
        """(G,) bool: single-view groups whose detection overlaps a triangulated person in that camera.

        Association leaves a view on its own when it does not fit (an occluded or outlier-ridden
        detection of someone the other cameras already triangulated). Lifted and placed on its own it
        would become a second track of that person, so it is dropped: a detection box that overlaps the
        projection of a multi-view group's pose (IoU > min_iou) in its camera is a duplicate.
        """
        duplicate = np.zeros(len(groups), dtype=bool)
        single, multi = np.flatnonzero(cams == 1), np.flatnonzero(cams >= 2)
        if single.size == 0 or multi.size == 0:
            return duplicate
        cam = (groups[single] >= 0).argmax(1)                                   # (S,)
        det = points2d[cam, groups[single, cam]]                                # (S, J, 2)
        det_ok = (scores[cam, groups[single, cam]] >= self.config.min_score) & np.isfinite(det).all(-1)
        proj = self.rig.project(poses[multi])[cam]                              # (S, M, J, 2)
        proj_ok = np.isfinite(proj).all(-1)
        box_d = _boxes(det, det_ok)[:, None]                                    # (S, 1, 4)
        box_p = _boxes(proj, proj_ok)                                           # (S, M, 4)
        lo, hi = np.maximum(box_d[..., :2], box_p[..., :2]), np.minimum(box_d[..., 2:], box_p[..., 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
        area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area(box_d) + area(box_p) - inter)
        duplicate[single] = np.nan_to_num(iou, nan=0.0).max(1) > min_iou
        return duplicate

    def _fill_from_lifted(self, poses, confidence, views, groups, lifted, lifted_scores, prior_root=None):
        """Fill joints seen by fewer than two cameras from the groups' lifted poses, in place.

        Every member view's lifted pose (camera frame) is turned into the world by the calibrated rotation
        and then aligned to the group's triangulated joints (views >= 2) that it also has: a translation
        (`_align_lifted`; with `lifted_scale_fit` also a scale when >= ALIGN_MIN_JOINTS common joints spread
        over the body), and as placed by its camera with none (a single-view person). A joint
        to fill takes the score-weighted mean of the aligned views that have it. Filled joints have
        views = 1 and confidence x SINGLE_VIEW_CONFIDENCE. Batched over cameras, groups and joints.
        """
        member = (groups >= 0).T                                          # (C, G)
        sc = self._gather(lifted_scores, groups) * member[..., None]      # (C, G, J)
        cam_points = self._gather(lifted, groups)                         # (C, G, J, 3) optical frames
        if prior_root is not None and self.config.lifted_track_depth > 0:
            unanchored = ~(np.isfinite(poses).all(-1) & (views >= 2)).any(-1)   # (G,)
            cam_points = self._depth_towards_track(cam_points, np.where(unanchored[:, None], prior_root, np.nan))
        world = np.einsum("cgjk,ckl->cgjl", cam_points - self._t[:, None, None], self._R)  # R^T (x - t)
        usable = np.isfinite(world).all(-1) & (sc >= self.config.min_score)
        world = np.where(usable[..., None], world, 0.0)
        sc = np.where(usable, sc, 0.0)

        anchor = np.isfinite(poses).all(-1) & (views >= 2)                # (G, J) triangulated joints
        aligned, anchored = _align_lifted(world, sc * np.where(anchor, confidence, 0.0)[None],
                                          np.where(anchor[..., None], poses, 0.0)[None],
                                          fit_scale=self.config.lifted_scale_fit)
        # Views that saw the joint dominate (unseen joints come with a fraction of the person's score);
        # a view that could not be anchored does not mix with views of the same group that could.
        weight = sc ** 2 * (anchored | ~anchored.any(0))[..., None]
        total = weight.sum(0)                                             # (G, J)
        fill = (total > 0) & ~anchor
        with np.errstate(invalid="ignore", divide="ignore"):
            merged = np.einsum("cgj,cgjk->gjk", weight, aligned) / total[..., None]
            score = (weight * sc).sum(0) / total
        poses[fill] = merged[fill]
        confidence[fill] = SINGLE_VIEW_CONFIDENCE * score[fill]
        views[fill] = 1

    def _depth_towards_track(self, cam_points: np.ndarray, prior_root: np.ndarray) -> np.ndarray:
        """One view cannot tell a small near person from a big far one. Scale each lifted pose (C, G, J, 3)
        about its camera centre (its 2D stays exactly as seen) part of the way (`lifted_track_depth`, in log
        depth) towards the depth at which the matched track predicts its mid-hip, prior_root (G, 3) world
        (NaN rows: untouched). Part of the way only: the track keeps learning from the lifted depth."""
        pred = np.einsum("cij,gj->cgi", self._R, np.nan_to_num(prior_root)) + self._t[:, None]   # (C, G, 3)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = pred[..., 2] / self.layout.hip_centre(cam_points)[..., 2]
            k = np.exp(self.config.lifted_track_depth * np.log(np.clip(ratio, 0.5, 2.0)))
        ok = np.isfinite(prior_root).all(-1)[None] & np.isfinite(k) & (pred[..., 2] > 0)
        return cam_points * np.where(ok, k, 1.0)[..., None, None]


ALIGN_MIN_JOINTS = 4      # common joints needed to fit a lifted pose's scale (fewer: translation only)
ALIGN_MIN_SPREAD_M = 0.1  # ... and their RMS distance from their centroid (a head's joints alone: too tight)
ALIGN_SCALE_RANGE = (0.5, 2.0)


def _align_lifted(points: np.ndarray, weights: np.ndarray, targets: np.ndarray,
                  fit_scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scale + translation that best map `points` onto `targets` (weighted least squares), applied.

    points (..., J, 3) world-oriented lifted joints (0 where unusable); weights (..., J), > 0 on the joints
    common with the targets (..., J, 3). With >= ALIGN_MIN_JOINTS common joints spread over
    ALIGN_MIN_SPREAD_M the scale is fitted (clipped to ALIGN_SCALE_RANGE); with fewer, or a degenerate fit,
    only the translation (weighted mean offset); with none, the points are returned as they are.
    Rotation is not fitted: the calibration already gives it. Returns the aligned points (..., J, 3) and
    (...) bool: aligned to at least one target.
    """
    total = weights.sum(-1)                                               # (...)
    have = total > 0
    safe = np.where(have, total, 1.0)[..., None]
    mu_p = np.einsum("...j,...jk->...k", weights, points) / safe          # (..., 3)
    mu_t = np.einsum("...j,...jk->...k", weights, targets) / safe
    dp, dt = points - mu_p[..., None, :], targets - mu_t[..., None, :]
    var = np.einsum("...j,...jk,...jk->...", weights, dp, dp) / safe[..., 0]
    cov = np.einsum("...j,...jk,...jk->...", weights, dp, dt) / safe[..., 0]
    fit = fit_scale & ((weights > 0).sum(-1) >= ALIGN_MIN_JOINTS) & (var > ALIGN_MIN_SPREAD_M ** 2) & (cov > 0)
    scale = np.where(fit, np.clip(cov / np.where(fit, var, 1.0), *ALIGN_SCALE_RANGE), 1.0)
    shift = np.where(have[..., None], mu_t - scale[..., None] * mu_p, 0.0)
    return scale[..., None, None] * points + shift[..., None, :], have


def _boxes(points: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Bounding boxes (..., 4) = (u0, v0, u1, v1) of points (..., J, 2) where ok (..., J); NaN if none."""
    big = np.where(ok[..., None], points, np.inf)
    small = np.where(ok[..., None], points, -np.inf)
    box = np.concatenate([big.min(-2), small.max(-2)], axis=-1)
    box[~ok.any(-1)] = np.nan
    return box
