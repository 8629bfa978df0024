"""Multi-person 3D tracking: persistent ids, joint hold-over, speed and innovation gates (the innovation
gate's reach follows the data), bone-length stabilisation and causal smoothing.

Each frame the tracker receives G fused poses (one per cross-view group) and returns the confirmed tracks:

    tracker = Tracker(TrackerConfig(gate_m=0.5), layout="coco17")
    ids, priors = tracker.predict(t)                    # (T,), (T, J, 3): priors for association
    tracks = tracker.update(t, poses, confidence, views, prior_index)

State lives in arrays stacked over track *slots* (capacity grows by doubling; a dead track frees its slot,
but its id is never reused), so one update is a handful of numpy operations over slots x joints; only the
assignment of the G groups (a few) loops in Python.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..checks import check_shape
from ..skeleton import Layout, get_layout
from .filters import FILTERS, make_filter
from .robust_scale import RobustScale

_NO_MATCH = 1e9  # cost of a forbidden assignment in the Hungarian matrix


@dataclass
class TrackerConfig:
    """Tracker parameters (distances in metres, times in seconds, speeds in m/s); each field's help
    text is its ROS parameter description (`fusion.tracker.<name>`)."""

    gate_m: float = field(default=0.5, metadata={
        "help": "3D gate when assigning people to tracks (mean joint distance, m)"})
    birth_hits: int = field(default=3, metadata={
        "help": "frames a new person must be seen before it gets a published id"})
    death_timeout_s: float = field(default=0.5, metadata={"help": "a track unseen this long is dropped"})
    joint_hold_s: float = field(default=0.2, metadata={
        "help": "an unseen joint is extrapolated this long, then stops being predicted"})
    max_joint_speed: float = field(default=10.0, metadata={
        "help": "joint speed (m/s) above which an update is rejected (the joint is held)"})
    speed_slack_m: float = field(default=0.05, metadata={"help": "noise allowance added to the speed gate's reach"})
    innovation_gate_k: float = field(default=10.0, metadata={
        "help": "a joint measured in the previous update and now further from its predicted position than this "
                "times the running median of that distance is rejected (0 = speed gate only)"})
    merge_m: float = field(default=0.25, metadata={
        "help": "poses closer than this (mean joint distance, m) are the same person"})
    min_joints: int = field(default=4, metadata={"help": "joints a group needs to start a track"})
    min_common_joints: int = field(default=3, metadata={"help": "joints two poses must share to be compared"})
    bone_min_samples: int = field(default=15, metadata={
        "help": "multi-view bone-length samples before bone lengths are stabilised"})
    bone_gain: float = field(default=0.3, metadata={"help": "fraction of the bone-length error corrected per frame"})
    bone_memory: int = field(default=300, metadata={
        "help": "the running bone-length mean forgets beyond this many samples"})
    velocity_smoothing: float = field(default=0.3, metadata={
        "help": "EMA factor of per-joint velocity (0..1; higher = more reactive)"})
    held_confidence_decay: float = field(default=0.5, metadata={
        "help": "confidence factor of a joint held without a measurement"})
    filter: str = field(default="one_euro", metadata={
        "help": f"smoothing of joint positions: {' | '.join(FILTERS)}"})
    one_euro_min_cutoff: float = field(default=1.0, metadata={"help": "One-Euro filter minimum cutoff (Hz)"})
    one_euro_beta: float = field(default=20.0, metadata={
        "help": "One-Euro filter speed coefficient (Hz per m/s: 0.3 would lag a walk by ~0.1 m)"})
    one_euro_d_cutoff: float = field(default=1.0, metadata={
        "help": "One-Euro filter cutoff of the speed estimate (Hz)"})
    one_euro_noise_ref: float = field(default=0.025, metadata={
        "help": "jitter (m, median second difference of a joint's measurements) the One-Euro cutoffs are set for: "
                "the filter measures the jitter online and raises both cutoffs by up to 4x (this over the "
                "jitter, squared) for cleaner measurements (0 = fixed cutoffs)"})

    def __post_init__(self):
        positive = ("gate_m", "death_timeout_s", "max_joint_speed", "merge_m", "one_euro_min_cutoff",
                    "one_euro_d_cutoff")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"TrackerConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("joint_hold_s", "speed_slack_m", "one_euro_beta", "bone_gain", "one_euro_noise_ref",
                     "innovation_gate_k"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"TrackerConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.birth_hits < 1 or self.min_joints < 1 or self.min_common_joints < 1 or self.bone_memory < 1:
            raise ValueError("TrackerConfig: birth_hits, min_joints, min_common_joints, bone_memory must be >= 1")
        if not 0 < self.velocity_smoothing <= 1:
            raise ValueError(f"TrackerConfig.velocity_smoothing must be in (0, 1], got {self.velocity_smoothing}")
        if self.filter not in FILTERS:
            raise ValueError(f"TrackerConfig.filter must be one of {', '.join(FILTERS)}, got {self.filter!r}")


@dataclass
class Track:
    """One confirmed person track after a frame.

    id: persistent, never reused; joints: (J, 3) filtered world positions, NaN for dropped joints
    (held joints are extrapolated and present); confidence: (J,) this frame's confidence (decayed for
    held joints, 0 for dropped); views: (J,) cameras behind this frame's measurement (0 for held);
    age: updates since birth; hits: updates with a measurement; last_seen: stamp of the last
    measurement (s); velocity: (J, 3) m/s.
    """

    id: int
    joints: np.ndarray
    confidence: np.ndarray
    views: np.ndarray
    age: int
    hits: int
    last_seen: float
    velocity: np.ndarray


def pose_distance(a: np.ndarray, b: np.ndarray, min_common: int = 3) -> np.ndarray:
    """Mean 3D distance over the joints two poses share.

    a: (A, J, 3), b: (B, J, 3) with NaN for missing joints -> (A, B) metres; inf where fewer than
    `min_common` joints are shared.
    """
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)  # (A, B, J), NaN where either is missing
    common = np.isfinite(d)
    count = common.sum(-1)
    mean = np.where(common, d, 0.0).sum(-1) / np.maximum(count, 1)
    return np.where(count >= min_common, mean, np.inf)


def _merge_measurements(pos, conf, views, extra_pos, extra_conf, extra_views):
    """Confidence-weighted union of two measurements of one person, each (J, 3), (J,), (J,)."""
    w1 = np.where(np.isfinite(pos).all(-1), conf, 0.0)
    w2 = np.where(np.isfinite(extra_pos).all(-1), extra_conf, 0.0)
    total = w1 + w2
    weighted_sum = np.nan_to_num(pos) * w1[:, None] + np.nan_to_num(extra_pos) * w2[:, None]
    merged = weighted_sum / np.where(total > 0, total, 1.0)[:, None]
    merged[total <= 0] = np.nan
    return merged, np.maximum(conf * (w1 > 0), extra_conf * (w2 > 0)), views * (w1 > 0) + extra_views * (w2 > 0)


class Tracker:
    """Assigns fused poses to persistent tracks and smooths them (see module docstring)."""

    _SLOT_ARRAYS = ("_id", "_alive", "_confirmed", "_hits", "_age", "_last_seen", "_joints", "_anchor", "_meas",
                    "_joint_t", "_vel", "_conf", "_last_conf", "_views", "_bone_mean", "_bone_n")

    def __init__(self, config: TrackerConfig | None = None, layout: str | Layout = "coco17", capacity: int = 8):
        self.config = config or TrackerConfig()
        self.layout = get_layout(layout)
        bones = self.layout.bone_array()
        J, B = self.layout.num_joints, len(bones)
        self._bone_parent, self._bone_child = bones[:, 0], bones[:, 1]
        # Incidence matrices (J, B): spread a per-bone correction onto its two joints in one matmul.
        self._inc_parent = np.zeros((J, B))
        self._inc_child = np.zeros((J, B))
        self._inc_parent[self._bone_parent, np.arange(B)] = 1.0
        self._inc_child[self._bone_child, np.arange(B)] = 1.0
        self._capacity0 = max(1, int(capacity))
        self._next_id = 0
        self.reset()

    # --- state --------------------------------------------------------------------------------------
    def reset(self):
        """Drop all tracks (ids keep counting up: an id is never reused)."""
        self._last_t = -np.inf
        self._innovation = RobustScale(self.config.speed_slack_m or 1.0)   # m, |measurement - prediction|
        self._allocate(self._capacity0)

    def _allocate(self, m: int):
        J, B = self.layout.num_joints, len(self._bone_parent)
        self._id = np.full(m, -1, dtype=np.int64)
        self._alive = np.zeros(m, dtype=bool)
        self._confirmed = np.zeros(m, dtype=bool)
        self._hits = np.zeros(m, dtype=np.int64)
        self._age = np.zeros(m, dtype=np.int64)
        self._last_seen = np.full(m, -np.inf)
        self._joints = np.full((m, J, 3), np.nan)    # output after the last update
        self._anchor = np.full((m, J, 3), np.nan)    # filtered position when the joint was last measured
        self._meas = np.full((m, J, 3), np.nan)      # last accepted measurement (velocity by differences)
        self._joint_t = np.full((m, J), -np.inf)     # stamp of the last accepted measurement per joint
        self._vel = np.zeros((m, J, 3))
        self._conf = np.zeros((m, J))
        self._last_conf = np.zeros((m, J))
        self._views = np.zeros((m, J), dtype=np.int64)
        self._bone_mean = np.zeros((m, B))
        self._bone_n = np.zeros((m, B), dtype=np.int64)
        self._filter = make_filter(self.config.filter, self.config)
        self._filter.resize(m)

    def _grow(self):
        m = len(self._id)
        old = {name: getattr(self, name) for name in self._SLOT_ARRAYS}
        filt = self._filter
        self._allocate(2 * m)
        for name, arr in old.items():
            getattr(self, name)[:m] = arr
        filt.resize(2 * m)
        self._filter = filt

    def _new_slot(self) -> int:
        free = np.flatnonzero(~self._alive)
        if free.size == 0:
            self._grow()
            free = np.flatnonzero(~self._alive)
        s = int(free[0])
        self._clear_slots(np.array([s]))
        self._id[s] = self._next_id
        self._next_id += 1
        self._alive[s] = True
        return s

    def _clear_slots(self, slots: np.ndarray):
        self._alive[slots] = False
        self._confirmed[slots] = False
        self._hits[slots] = 0
        self._age[slots] = 0
        self._last_seen[slots] = -np.inf
        for arr in (self._joints, self._anchor, self._meas):
            arr[slots] = np.nan
        self._joint_t[slots] = -np.inf
        self._vel[slots] = 0.0
        self._conf[slots] = self._last_conf[slots] = 0.0
        self._views[slots] = 0
        self._bone_mean[slots] = 0.0
        self._bone_n[slots] = 0
        mask = np.zeros(len(self._id), dtype=bool)
        mask[slots] = True
        self._filter.reset(mask)

    def _live_slots(self) -> np.ndarray:
        return np.flatnonzero(self._alive)

    # --- prediction -----------------------------------------------------------------------------------
    def _extrapolate(self, t: float, horizon: float) -> np.ndarray:
        """(M, J, 3) joints extrapolated to t from their last measurement; NaN past `horizon` s.

        Extrapolation stops at joint_hold_s (a noisy velocity must not carry a joint away); beyond it
        the joint rests where the hold left it, up to `horizon`.
        """
        dt = t - self._joint_t
        reach = np.minimum(dt, self.config.joint_hold_s)
        pred = self._anchor + self._vel * reach[..., None]
        pred[~(dt <= horizon)] = np.nan
        return pred

    def predict(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Predicted poses of live tracks (confirmed and tentative) at t, for association priors.

        Returns ids (T,) and poses (T, J, 3) in the order `update`'s prior_index refers to. Joints are
        kept for matching while the track lives (death_timeout_s), not only for joint_hold_s.
        """
        live = self._live_slots()
        horizon = max(self.config.joint_hold_s, self.config.death_timeout_s)
        return self._id[live].copy(), self._extrapolate(float(t), horizon)[live]

    def bone_lengths(self, track_id: int) -> np.ndarray:
        """(B,) running bone-length estimates (m) of a live track, in layout.bones order; NaN until
        bone_min_samples multi-view samples were seen. KeyError for an unknown or dead id."""
        slots = np.flatnonzero(self._alive & (self._id == track_id))
        if slots.size == 0:
            raise KeyError(f"no live track with id {track_id}")
        s = slots[0]
        return np.where(self._bone_n[s] >= self.config.bone_min_samples, self._bone_mean[s], np.nan)

    @property
    def num_live(self) -> int:
        return int(self._alive.sum())

    # --- update ------------------------------------------------------------------------------------------
    def update(self, t: float, poses: np.ndarray, confidence: np.ndarray, views: np.ndarray | None = None,
               prior_index: np.ndarray | None = None) -> list[Track]:
        """Feed one frame of fused poses; returns the confirmed live tracks (sorted by id).

        t: stamp (s), not earlier than the previous one; poses: (G, J, 3) world metres, NaN = missing;
        confidence: (G, J), 0 = missing; views: (G, J) cameras per joint (None = 2 everywhere);
        prior_index: (G,) index into the last `predict` order (-1 = none), or None.
        """
        t, poses, confidence, views, prior_index = self._check_inputs(t, poses, confidence, views, prior_index)
        cfg = self.config
        poses, confidence, views, prior_index = self._merge_duplicate_groups(poses, confidence, views, prior_index)

        live = self._live_slots()
        horizon = max(cfg.joint_hold_s, cfg.death_timeout_s)
        predicted = self._extrapolate(t, horizon)
        assigned = self._assign(poses, predicted, live, prior_index)  # slot -> list of group indices

        # Unmatched groups with enough joints start tentative tracks.
        matched_groups = {g for gs in assigned.values() for g in gs}
        for g in range(len(poses)):
            if g not in matched_groups and np.isfinite(poses[g]).all(-1).sum() >= cfg.min_joints:
                assigned[self._new_slot()] = [g]

        # Stack this frame's measurement per slot (M, J, ...); duplicates of one person are merged.
        m, J = len(self._id), self.layout.num_joints
        meas = np.full((m, J, 3), np.nan)
        meas_conf = np.zeros((m, J))
        meas_views = np.zeros((m, J), dtype=np.int64)
        for slot, groups in assigned.items():
            p, c, v = poses[groups[0]], confidence[groups[0]], views[groups[0]]
            for g in groups[1:]:
                p, c, v = _merge_measurements(p, c, v, poses[g], confidence[g], views[g])
            meas[slot], meas_conf[slot], meas_views[slot] = p, c, v
        observed = np.zeros(m, dtype=bool)
        observed[list(assigned)] = True

        self._apply_measurements(t, meas, meas_conf, meas_views, observed)
        self._retire(t, observed)
        self._last_t = t
        return self.tracks()

    def tracks(self) -> list[Track]:
        """Confirmed live tracks as of the last update, sorted by id."""
        slots = np.flatnonzero(self._alive & self._confirmed)
        slots = slots[np.argsort(self._id[slots])]
        return [Track(id=int(self._id[s]), joints=self._joints[s].copy(), confidence=self._conf[s].copy(),
                      views=self._views[s].copy(), age=int(self._age[s]), hits=int(self._hits[s]),
                      last_seen=float(self._last_seen[s]), velocity=self._vel[s].copy()) for s in slots]

    def _check_inputs(self, t, poses, confidence, views, prior_index):
        J = self.layout.num_joints
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"stamp must be finite, got {t}")
        if t < self._last_t:
            raise ValueError(f"stamp went backwards: {t:.6f} < previous {self._last_t:.6f}")
        poses = np.asarray(poses, dtype=np.float64)
        check_shape("poses", poses, (None, J, 3))
        G = len(poses)
        dims = {"G": G, "J": J}
        confidence = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0)
        check_shape("confidence", confidence, ("G", "J"), dims)
        views = np.full((G, J), 2, dtype=np.int64) if views is None else np.asarray(views).astype(np.int64)
        check_shape("views", views, ("G", "J"), dims)
        if prior_index is None:
            prior_index = np.full(G, -1, dtype=np.int64)
        else:
            prior_index = np.asarray(prior_index).astype(np.int64)
        check_shape("prior_index", prior_index, ("G",), dims)
        valid = np.isfinite(poses).all(-1) & (confidence > 0)
        poses = np.where(valid[..., None], poses, np.nan)
        return t, poses, np.where(valid, confidence, 0.0), np.where(valid, views, 0), prior_index

    def _merge_duplicate_groups(self, poses, confidence, views, prior_index):
        """Groups closer than merge_m are one person split by association: fuse them into one."""
        G = len(poses)
        if G < 2:
            return poses, confidence, views, prior_index
        close = pose_distance(poses, poses, self.config.min_common_joints) < self.config.merge_m
        np.fill_diagonal(close, False)
        if not close.any():
            return poses, confidence, views, prior_index
        root = list(range(G))  # union-find over the (few) groups

        def find(i):
            while root[i] != i:
                i = root[i]
            return i

        for a, b in zip(*np.nonzero(np.triu(close))):
            root[find(b)] = find(a)
        out_p, out_c, out_v, out_prior = [], [], [], []
        for r in sorted({find(i) for i in range(G)}):
            members = [i for i in range(G) if find(i) == r]
            p, c, v = poses[members[0]], confidence[members[0]], views[members[0]]
            for g in members[1:]:
                p, c, v = _merge_measurements(p, c, v, poses[g], confidence[g], views[g])
            priors = [prior_index[g] for g in members if prior_index[g] >= 0]
            out_p.append(p), out_c.append(c), out_v.append(v), out_prior.append(priors[0] if priors else -1)
        return np.stack(out_p), np.stack(out_c), np.stack(out_v), np.asarray(out_prior, dtype=np.int64)

    def _assign(self, poses, predicted, live, prior_index) -> dict[int, list[int]]:
        """Groups -> slots: priors first, then Hungarian on mean joint distance, then merge leftovers.

        Returns {slot: [group, ...]}; more than one group means duplicates of one person to merge.
        """
        cfg = self.config
        G = len(poses)
        assigned: dict[int, list[int]] = {}
        if G == 0 or live.size == 0:
            return assigned
        dist = pose_distance(poses, predicted[live], cfg.min_common_joints)  # (G, L)
        group_done = np.zeros(G, dtype=bool)
        slot_done = np.zeros(live.size, dtype=bool)

        # 1. Groups seeded by a track's prior go to it when within the gate (closest first on conflicts).
        seeded = [(dist[g, prior_index[g]], g) for g in range(G) if 0 <= prior_index[g] < live.size]
        for d, g in sorted(seeded):
            k = prior_index[g]
            if d <= cfg.gate_m and not slot_done[k]:
                assigned[int(live[k])] = [g]
                group_done[g] = slot_done[k] = True

        # 2. Hungarian on the rest, gated.
        rows, cols = np.flatnonzero(~group_done), np.flatnonzero(~slot_done)
        if rows.size and cols.size:
            cost = dist[np.ix_(rows, cols)]
            r, c = linear_sum_assignment(np.where(cost <= cfg.gate_m, cost, _NO_MATCH))
            for i, k in zip(rows[r], cols[c]):
                if dist[i, k] <= cfg.gate_m:
                    assigned[int(live[k])] = [int(i)]
                    group_done[i] = slot_done[k] = True

        # 3. A leftover group overlapping a live track is that person seen twice: merge it in.
        for g in np.flatnonzero(~group_done):
            k = int(np.argmin(dist[g]))
            if dist[g, k] < cfg.merge_m:
                assigned.setdefault(int(live[k]), []).append(int(g))
                group_done[g] = True
        return assigned

    def _apply_measurements(self, t, meas, meas_conf, meas_views, observed):
        """Velocity gate, bone stabilisation, filtering and hold-over for all slots at once."""
        cfg = self.config
        had_joint = np.isfinite(self._joint_t)
        dt_joint = t - self._joint_t                                    # (M, J); inf if never seen
        accepted = np.isfinite(meas).all(-1)

        # Gates: a joint that would have to move faster than max_joint_speed, or that lands much further from
        # its prediction than measurements usually do, is an outlier.
        predicted = self._extrapolate(t, np.inf)
        jump = np.linalg.norm(meas - predicted, axis=-1)
        reach = np.minimum(cfg.max_joint_speed * dt_joint + cfg.speed_slack_m,
                           self._innovation_reach(t, jump, dt_joint))
        with np.errstate(invalid="ignore"):
            accepted &= ~(had_joint & (jump > reach))
        meas = np.where(accepted[..., None], meas, np.nan)

        meas = self._stabilise_bones(meas, meas_views)

        # Joints that were dropped (past the hold) restart their filter instead of sliding from stale state.
        stale = accepted & ~(dt_joint <= cfg.joint_hold_s)
        self._filter.reset(stale)
        filtered = self._filter(t, meas, accepted)

        # Velocity: smoothed finite differences of accepted measurements (fresh joints start at rest).
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = (meas - self._meas) / np.maximum(dt_joint, 1e-4)[..., None]
        continued = accepted & ~stale
        new_vel = self._vel + cfg.velocity_smoothing * (rate - self._vel)
        self._vel = np.where(continued[..., None], new_vel, np.where(stale[..., None], 0.0, self._vel))

        acc3 = accepted[..., None]
        self._anchor = np.where(acc3, filtered, self._anchor)
        self._meas = np.where(acc3, meas, self._meas)
        self._joint_t = np.where(accepted, t, self._joint_t)
        self._last_conf = np.where(accepted, meas_conf, self._last_conf)

        # Output: measured joints filtered, briefly unseen ones extrapolated, the rest dropped.
        held = self._extrapolate(t, cfg.joint_hold_s)
        self._joints = np.where(acc3, filtered, held)
        is_held = ~accepted & np.isfinite(held).all(-1)
        self._conf = np.where(accepted, meas_conf, np.where(is_held, self._last_conf * cfg.held_confidence_decay, 0.0))
        self._views = np.where(accepted, meas_views, 0)

        self._hits += observed
        self._last_seen = np.where(observed, t, self._last_seen)
        self._age += self._alive

    def _innovation_reach(self, t: float, jump: np.ndarray, dt_joint: np.ndarray) -> np.ndarray | float:
        """Innovation gate (M, J) m for joints measured in the previous update: innovation_gate_k x the
        running median distance between such a joint's measurement and its prediction (at least
        speed_slack_m); inf for the others, and until measured. It catches what the speed gate lets
        through: a 2-view joint that an outlier along the epipolar line moved 0.3 m passes 10 m/s at 30 Hz.
        A joint it rejects is left to the speed gate in the next update, so a sudden real move costs one
        update, never a joint stuck behind a gate it cannot catch up with."""
        frame_dt = t - self._last_t
        if self.config.innovation_gate_k == 0 or not 0 < frame_dt < np.inf:
            return np.inf
        with np.errstate(invalid="ignore"):
            consecutive = dt_joint < 1.5 * frame_dt
        self._innovation.update(t, np.where(consecutive, jump, np.nan))
        if not self._innovation.measured:
            return np.inf
        gate = self._innovation.threshold(self.config.innovation_gate_k, self.config.speed_slack_m)
        return np.where(consecutive, gate, np.inf)

    def _stabilise_bones(self, meas, meas_views):
        """Update each track's running bone lengths and nudge joints toward them.

        meas: (M, J, 3), NaN = unseen; meas_views: (M, J). Lengths are learnt from multi-view joints only
        (single-view lifted joints carry the lifter's scale); joints move only after bone_min_samples.
        """
        cfg = self.config
        parent, child = meas[:, self._bone_parent], meas[:, self._bone_child]     # (M, B, 3)
        vec = child - parent
        length = np.linalg.norm(vec, axis=-1)                                      # (M, B), NaN if unseen
        seen = np.isfinite(length) & (length > 1e-6)
        reliable = seen & (meas_views[:, self._bone_parent] >= 2) & (meas_views[:, self._bone_child] >= 2)

        n = np.minimum(self._bone_n + reliable, cfg.bone_memory)
        running_mean = self._bone_mean + (np.nan_to_num(length) - self._bone_mean) / np.maximum(n, 1)
        self._bone_mean = np.where(reliable, running_mean, self._bone_mean)
        self._bone_n = np.where(reliable, n, self._bone_n)

        active = seen & (self._bone_n >= cfg.bone_min_samples)
        if cfg.bone_gain == 0 or not active.any():
            return meas
        unit = np.where(seen[..., None], vec / np.where(seen, length, 1.0)[..., None], 0.0)
        stretch = np.where(active, cfg.bone_gain * (self._bone_mean - np.nan_to_num(length)), 0.0)  # (M, B)
        push = 0.5 * stretch[..., None] * unit                                    # child moves +, parent -
        correction = np.einsum("jb,mbd->mjd", self._inc_child, push) - np.einsum("jb,mbd->mjd", self._inc_parent, push)
        # A joint on several bones gets the mean of their corrections, not the sum.
        degree = active.astype(np.float64) @ (self._inc_child + self._inc_parent).T   # (M, J)
        return meas + correction / np.maximum(degree, 1.0)[..., None]

    def _retire(self, t, observed):
        """Kill tracks unseen too long, tentative tracks that missed a frame, and duplicates; confirm the rest."""
        cfg = self.config
        dead = self._alive & ((t - self._last_seen > cfg.death_timeout_s) | (~self._confirmed & ~observed))
        self._confirmed |= self._alive & ~dead & (self._hits >= cfg.birth_hits)

        # Two live tracks on one person: keep the one with more history.
        live = np.flatnonzero(self._alive & ~dead)
        if live.size > 1:
            close = pose_distance(self._joints[live], self._joints[live], cfg.min_common_joints) < cfg.merge_m
            order = np.lexsort((self._id[live], -self._hits[live]))  # best first
            for i in order:
                if dead[live[i]]:
                    continue
                keeper_rank = (self._hits[live[i]], -self._id[live[i]])
                for k in np.flatnonzero(close[i]):
                    if k != i and not dead[live[k]] and (self._hits[live[k]], -self._id[live[k]]) < keeper_rank:
                        dead[live[k]] = True
        slots = np.flatnonzero(dead)
        if slots.size:
            self._clear_slots(slots)
