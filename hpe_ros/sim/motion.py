"""Procedural human motion: people who walk, turn, squat, reach, wave and stand, as COCO-17 joints.

Each person has body proportions from their height (`hpe_ros.anthropometry`) and an activity script:
segments of a few seconds, each starting and ending in a relaxed standing pose, so consecutive
activities blend smoothly. Scripts are planned in time order for everyone together: a walk may be
aimed to pass close by someone (so trackers see crossings) but is rejected if it would run through
anyone's planned position. `MotionScript.pose(t)` is a pure function of t: it looks up every
person's segment, evaluates joint angles and runs forward kinematics for all people at once.

World frame: z up, metres, floor z = 0, the area centred on the origin; yaw is the facing
direction, counter-clockwise from +x. Body frame: x forward, y left, z up.

    >>> script = MotionScript(n_people=3, seed=1)
    >>> script.pose(2.5).shape                      # (P, 17, 3)
    (3, 17, 3)
    >>> script.activity_at(2.5)                     # ['walk', 'wave', 'stand'] or similar
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, fields

import numpy as np

from ..anthropometry import PROPORTIONS, segment_lengths
from ..skeleton import COCO17

MOTION_TYPES = ("walk", "turn", "squat", "reach", "wave", "stand")
_KIND_ID = {name: i for i, name in enumerate(MOTION_TYPES)}
WALK, TURN, SQUAT, REACH, WAVE, STAND = range(len(MOTION_TYPES))
# How often each activity is picked (renormalised over the allowed ones).
_WEIGHTS = {"walk": 0.34, "turn": 0.12, "squat": 0.12, "reach": 0.14, "wave": 0.12, "stand": 0.16}

# Face keypoints relative to the mid-shoulder point in the trunk frame, as fractions of height.
# The head is rigid with the trunk: COCO-17's ear-shoulder bones must keep their length.
_FACE_OFFSETS = np.array([
    [0.055, 0.000, 0.087],    # nose (tip at 0.905 h)
    [0.045, 0.018, 0.118],    # left eye (0.936 h)
    [0.045, -0.018, 0.118],   # right eye
    [-0.005, 0.042, 0.107],   # left ear
    [-0.005, -0.042, 0.107],  # right ear
])

_SIDE = np.array([1.0, -1.0])      # left, right: +y is left in the body frame
_LR_PHASE = np.array([0.0, np.pi])  # the right leg/arm is half a cycle behind the left
_NEUTRAL_HIP = 0.03                 # rad of hip flexion when standing relaxed
_SHOULDER_REST = (0.06, 0.12)       # flexion, abduction (rad) of a hanging arm
_ELBOW_REST = 0.25
_KNEE_SWING = 0.45                  # peak extra knee flexion in mid-swing (rad): ankle lifts <= ~6 cm
_WALK_RAMP = 0.8                    # s to speed up / slow down
_MIN_GAP = 0.55                     # m between planned hip centres; walks that come closer are re-planned
_MARGIN = 0.35                      # m kept from the edge of the area by walk goals
_LOOKAHEAD = 2.0                    # s of script planned beyond the latest instant asked for
_SHORTEST_SEGMENT = 0.5             # s, the shortest activity (a boxed-in pause; walks of >= 1.2 m take longer):
                                    # a period holds at most period / this segments per person


def motion_types() -> list[str]:
    """Names of the activities a script can contain."""
    return list(MOTION_TYPES)


@dataclass
class Segment:
    """One activity of a person's script: `kind` from `start` for `duration` seconds.

    The root (floor point under the pelvis) follows a quadratic Bezier (x0, y0) -> (cx, cy) -> (gx, gy);
    all three coincide for activities done on the spot. Unused parameters stay 0.
    """

    kind: str
    start: float
    duration: float
    x0: float
    y0: float
    yaw0: float
    cx: float = 0.0
    cy: float = 0.0
    gx: float = 0.0
    gy: float = 0.0
    length: float = 1.0     # walk: path length (m); 1 elsewhere so that nothing divides by 0
    speed: float = 0.0      # walk: cruise speed (m/s)
    ramp: float = 1.0       # walk: s to speed up and slow down
    turn: float = 0.0       # yaw change (rad): turn: the whole turn; walk: to face the path
    turn_time: float = 1.0  # s over which `turn` is blended in
    tangent0: float = 0.0   # walk: path direction at the start (rad)
    stride: float = 1.0     # walk: distance per gait cycle (m)
    phase0: float = 0.0     # walk: gait phase at the start (rad)
    side: float = 0.0       # reach / wave: 0 = left arm, 1 = right arm
    amount: float = 0.0     # squat: hip flexion (rad); reach: shoulder flexion (rad)
    amount2: float = 0.0    # reach: shoulder abduction (rad)
    rate: float = 0.0       # wave: Hz
    reps: float = 1.0       # squat: repetitions

    @property
    def end(self) -> float:
        return self.start + self.duration

    def end_state(self) -> tuple[float, float, float]:
        """Root x, y and yaw when the segment ends."""
        x, y, yaw = _root_pose(vars(self), np.float64(self.duration))
        return float(x), float(y), float(yaw)


_COLUMNS = [f.name for f in fields(Segment) if f.name != "kind"] + ["kind_id"]
_COL = {name: i for i, name in enumerate(_COLUMNS)}


@dataclass
class Person:
    """A body (proportions from `height`, metres)."""

    height: float

    def __post_init__(self):
        if not (0.5 <= self.height <= 2.5):
            raise ValueError(f"person height {self.height} m is not plausible (0.5-2.5 m)")

    def lengths(self) -> dict[str, float]:
        """Segment lengths (m), keys as in `hpe_ros.anthropometry.PROPORTIONS`."""
        return segment_lengths(self.height)


# --- small smooth functions ---------------------------------------------------------------------
def _smoothstep(x):
    return x * x * (3.0 - 2.0 * x)


def _smoothstep_integral(x):
    """Integral of smoothstep from 0 to x (x in [0, 1])."""
    return x ** 3 - 0.5 * x ** 4


def _wrap(a):
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def _envelope(tau, duration, ramp):
    """0 -> 1 -> 0 over a segment, smooth at both ends."""
    up = np.clip(tau / ramp, 0.0, 1.0)
    down = np.clip((duration - tau) / ramp, 0.0, 1.0)
    return _smoothstep(up) * _smoothstep(down)


def _walk_progress(tau, duration, ramp, speed):
    """Distance walked (m) after tau seconds, and speed as a fraction of cruise speed.

    Speed = cruise * smoothstep up over `ramp` * smoothstep down over the last `ramp`, integrated in
    closed form so any instant can be evaluated on its own.
    """
    up = np.clip(tau / ramp, 0.0, 1.0)
    down = np.clip((duration - tau) / ramp, 0.0, 1.0)
    cruise = np.clip(tau - ramp, 0.0, np.maximum(duration - 2.0 * ramp, 0.0))
    dist = speed * (ramp * _smoothstep_integral(up) + cruise + ramp * (0.5 - _smoothstep_integral(down)))
    pace = _smoothstep(up) * _smoothstep(down) * (speed > 0)
    return dist, pace


def _root_pose(s, tau):
    """Root x, y and yaw of segments `s` (mapping of column -> scalar or (P,)) at local time tau."""
    dist, _ = _walk_progress(tau, s["duration"], s["ramp"], s["speed"])
    u = np.clip(dist / s["length"], 0.0, 1.0)
    a, b, c = (1 - u) ** 2, 2 * u * (1 - u), u * u
    x = a * s["x0"] + b * s["cx"] + c * s["gx"]
    y = a * s["y0"] + b * s["cy"] + c * s["gy"]
    # Path direction; (0, 0) on the spot, where tangent0 = 0 makes the heading term vanish.
    dx = (1 - u) * (s["cx"] - s["x0"]) + u * (s["gx"] - s["cx"])
    dy = (1 - u) * (s["cy"] - s["y0"]) + u * (s["gy"] - s["cy"])
    heading_change = _wrap(np.arctan2(dy, dx) - s["tangent0"])  # a quadratic Bezier turns < 180 deg
    blend = _smoothstep(np.clip(tau / s["turn_time"], 0.0, 1.0))
    yaw = s["yaw0"] + blend * (s["turn"] + heading_change)
    return x, y, yaw


# --- activities -> joint angles -----------------------------------------------------------------
def _joint_angles(s, tau, t, body, idle_phase):
    """Joint angles of every person (dict of (P,) / (P, 2) arrays, [:, 0] left, [:, 1] right)."""
    kind = s["kind_id"]
    is_ = {k: (kind == k).astype(np.float64) for k in range(len(MOTION_TYPES))}
    duration = s["duration"]
    env = _envelope(tau, duration, np.minimum(0.7, duration / 3.0))
    ph = idle_phase[:, None]

    # Relaxed standing, with a little idle movement so nobody is a statue.
    trunk = 0.03 + 0.01 * np.sin(0.7 * t + idle_phase)
    sh_flex = _SHOULDER_REST[0] + 0.04 * np.sin(0.5 * t + ph + [0.0, 1.7])
    sh_abd = np.full_like(sh_flex, _SHOULDER_REST[1])
    elbow = _ELBOW_REST + 0.05 * np.sin(0.4 * t + ph + [0.5, 2.0])
    roll = np.zeros_like(sh_flex)
    sway = 0.01 * np.sin(0.3 * t + idle_phase) + is_[STAND] * env * 0.025 * np.sin(2 * np.pi * tau / duration)

    # Squat: hips flex, knees follow so the ankles stay under the hips, trunk leans, arms go forward.
    squat = is_[SQUAT] * np.sin(np.pi * s["reps"] * tau / duration) ** 2
    hip_base = (_NEUTRAL_HIP + s["amount"] * squat)[:, None] * np.ones(2)
    L1, L2 = body["thigh"][:, None], body["shank"][:, None]
    knee = hip_base + np.arcsin(np.clip(L1 / L2 * np.sin(hip_base), -1.0, 1.0))
    trunk = trunk + 0.6 * s["amount"] * squat
    sh_flex = sh_flex + 1.2 * squat[:, None]

    # Walk: gait phase from distance walked, amplitudes scale with speed (0 at rest).
    dist, pace = _walk_progress(tau, duration, s["ramp"], s["speed"])
    phase = s["phase0"] + 2 * np.pi * dist / s["stride"]
    gait = phase[:, None] + _LR_PHASE
    leg = (body["thigh"] + body["shank"])[:, None]
    # Hip amplitude so that a stance foot sweeps half a stride back while the body moves half a stride.
    amp = np.arcsin(np.clip(s["stride"][:, None] / (4 * leg), 0.0, 0.8))
    p = pace[:, None]
    hip = hip_base + p * amp * np.sin(gait)
    knee = knee + p * _KNEE_SWING * np.maximum(0.0, np.cos(gait - 0.3)) ** 2
    sh_flex = sh_flex - p * 0.35 * np.sin(gait)  # each arm swings with the opposite leg
    elbow = elbow + 0.2 * p
    trunk = trunk + 0.05 * pace
    sway = sway + 0.02 * pace * np.sin(phase)

    # Turn on the spot: small alternating steps, one cycle per 90 degrees turned.
    turned = np.abs(s["turn"]) * _smoothstep(np.clip(tau / duration, 0.0, 1.0)) * is_[TURN]
    lift = (is_[TURN] * env)[:, None] * np.maximum(0.0, np.sin(4 * turned[:, None] + _LR_PHASE)) ** 2
    hip = hip + 0.25 * lift
    knee = knee + 0.5 * lift

    # Reach (one arm forward .. overhead) and wave (upper arm out, forearm up, swinging): blend the
    # chosen arm from its current angles to the target ones.
    arm = np.stack([s["side"] == 0, s["side"] == 1], axis=1).astype(np.float64)
    reach_env = _envelope(tau, duration, np.minimum(0.9, duration / 3.0))
    w = arm * (is_[REACH] * reach_env)[:, None]
    sh_flex = sh_flex + w * ((s["amount"] + 0.05 * np.sin(2.0 * tau))[:, None] - sh_flex)
    sh_abd = sh_abd + w * (s["amount2"][:, None] - sh_abd)
    elbow = elbow + w * (0.1 - elbow)
    trunk = trunk + 0.12 * is_[REACH] * reach_env * np.sin(s["amount"])
    w = arm * (is_[WAVE] * env)[:, None]
    sh_flex = sh_flex + w * (0.45 - sh_flex)
    sh_abd = sh_abd + w * (1.2 - sh_abd)
    roll = roll + w * (np.pi / 2)
    elbow = elbow + w * ((1.55 + 0.45 * np.sin(2 * np.pi * s["rate"] * tau))[:, None] - elbow)

    return dict(trunk=trunk, hip=hip, knee=knee, sh_flex=sh_flex, sh_abd=sh_abd, elbow=elbow, roll=roll,
                sway=sway)


def forward_kinematics(body, x, y, yaw, ang) -> np.ndarray:
    """Joint angles + root pose of P people -> COCO-17 joints (P, 17, 3) in the world frame.

    Legs hang from the pelvis in the sagittal plane; the pelvis height puts the lower ankle at
    ankle height (the stance foot is on the floor). Arms and head live in the trunk frame,
    which is pitched forward about the pelvis.
    """
    L1, L2 = body["thigh"][:, None], body["shank"][:, None]
    hip, knee = ang["hip"], ang["knee"]
    knee_x, knee_z = L1 * np.sin(hip), -L1 * np.cos(hip)
    ankle_x = knee_x + L2 * np.sin(hip - knee)
    ankle_z = knee_z - L2 * np.cos(hip - knee)
    pelvis_z = (body["ankle_height"] - ankle_z.min(axis=1))[:, None]
    hip_y = 0.5 * body["hip_width"][:, None] * _SIDE
    zeros = np.zeros_like(hip_y)
    hips = np.stack([zeros, hip_y, zeros + pelvis_z], axis=-1)
    knees = np.stack([knee_x, hip_y, pelvis_z + knee_z], axis=-1)
    ankles = np.stack([ankle_x, hip_y, pelvis_z + ankle_z], axis=-1)

    # Arms in the trunk frame: upper arm from flexion a (forward/up) and abduction b (outward);
    # the forearm bends by the elbow angle towards `bend`, the flexion direction rolled about the arm.
    a, b = ang["sh_flex"], ang["sh_abd"]
    sa, ca, sb, cb = np.sin(a), np.cos(a), np.sin(b), np.cos(b)
    d = np.stack([sa * cb, _SIDE * sb, -ca * cb], axis=-1)                               # (P, 2, 3)
    flex_dir = np.stack([ca, zeros, sa], axis=-1)                                       # d/da, unit
    rolled = _SIDE[:, None] * np.stack([-sa * d[..., 1], sa * d[..., 0] - ca * d[..., 2], ca * d[..., 1]], -1)
    roll = ang["roll"][..., None]
    bend = np.cos(roll) * flex_dir + np.sin(roll) * rolled
    g = ang["elbow"][..., None]
    forearm = np.cos(g) * d + np.sin(g) * bend
    spine = body["spine"][:, None]
    shoulders = np.stack([zeros, 0.5 * body["shoulder_width"][:, None] * _SIDE, zeros + spine], axis=-1)
    elbows = shoulders + body["upper_arm"][:, None, None] * d
    wrists = elbows + body["forearm"][:, None, None] * forearm
    face = _FACE_OFFSETS * body["height"][:, None, None] + np.stack(
        [np.zeros_like(spine), np.zeros_like(spine), spine], axis=-1)
    upper = np.concatenate([face, shoulders, elbows, wrists], axis=1)                   # COCO 0..10

    # Pitch the trunk forward about the pelvis, then stand it on the pelvis.
    psi = ang["trunk"][:, None]
    cp, sp = np.cos(psi), np.sin(psi)
    ux, uz = upper[..., 0], upper[..., 2]
    upper = np.stack([cp * ux + sp * uz, upper[..., 1], -sp * ux + cp * uz + pelvis_z], axis=-1)

    local = np.concatenate([upper, hips, knees, ankles], axis=1)                        # (P, 17, 3)
    ly = local[..., 1] + ang["sway"][:, None]
    cy, sy = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    return np.stack([cy * local[..., 0] - sy * ly + x[:, None],
                     sy * local[..., 0] + cy * ly + y[:, None],
                     local[..., 2]], axis=-1)


def _keep_apart(x, y, min_dist=0.3, reach=0.6):
    """Push roots apart where planning could not keep them `_MIN_GAP` apart (rare): a pair at raw
    distance d < reach is moved to d + min_dist (1 - d / reach)^2 (monotonic, continuous at `reach`)."""
    dx = x[:, None] - x[None, :]
    dy = y[:, None] - y[None, :]
    d = np.hypot(dx, dy)
    np.fill_diagonal(d, np.inf)
    if not (d < reach).any():
        return x, y
    push = np.where(d < reach, 0.5 * min_dist * (1 - np.minimum(d, reach) / reach) ** 2, 0.0)
    safe = np.maximum(d, 1e-9)
    return x + (push * dx / safe).sum(axis=1), y + (push * dy / safe).sum(axis=1)


class MotionScript:
    """Procedural motion of `n_people` people in an `area` (width x, depth y, metres) centred on the origin.

    Deterministic from `seed`; `activities` restricts the activity types (default: all of
    `motion_types()`; a walk that finds no clear path becomes a pause of under a second, reported
    as "stand"). `pose(t)` -> (P, 17, 3) COCO-17 joints (world frame, metres) is a pure function
    of t, seconds since the start (t < 0 gives t = 0). The script repeats after `period` seconds
    (one jump per period). It is planned on demand a couple of seconds ahead of the latest t asked
    for (~1 ms per activity), so asking far ahead once costs the planning up to there.
    Six people need about 4 m x 4 m to walk freely; in 3 m x 3 m they mostly stay put.
    """

    layout = COCO17

    def __init__(self, n_people: int = 2, seed: int = 0, area: tuple[float, float] = (3.0, 3.0),
                 activities: list[str] | None = None, period: float = 3600.0):
        if int(n_people) != n_people or n_people < 0:
            raise ValueError(f"n_people must be a non-negative integer, got {n_people!r}")
        area = tuple(float(a) for a in area)
        if len(area) != 2 or min(area) < 2 * _MARGIN + 1.2:
            raise ValueError(f"area must be (width, depth) of at least {2 * _MARGIN + 1.2} m each, got {area}")
        activities = list(MOTION_TYPES) if activities is None else list(activities)
        unknown = sorted(set(activities) - set(MOTION_TYPES))
        if unknown or not activities:
            raise ValueError(f"activities must be a non-empty subset of {list(MOTION_TYPES)}, got {activities}")
        if not period > 0:
            raise ValueError(f"period must be positive, got {period}")
        self.n_people, self.seed, self.area, self.period = int(n_people), seed, area, float(period)
        self.activities = tuple(a for a in MOTION_TYPES if a in activities)
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        self.people = [Person(float(h)) for h in rng.uniform(1.55, 1.95, self.n_people)]
        self._idle_phase = rng.uniform(0, 2 * np.pi, self.n_people)
        lengths = [p.lengths() for p in self.people]
        self._body = {k: np.array([person_lengths[k] for person_lengths in lengths]) for k in PROPORTIONS}
        self._body["height"] = self.heights

        # Start apart: evenly on a ring, facing anywhere.
        ring = 0.38 * min(area) if self.n_people > 1 else 0.0
        angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(self.n_people) / max(self.n_people, 1)
        yaws = rng.uniform(-np.pi, np.pi, self.n_people)
        self._start = [(ring * math.cos(a), ring * math.sin(a), float(w)) for a, w in zip(angles, yaws)]
        self._queue = [(0.0, p) for p in range(self.n_people)]
        # The plan is the table's rows, one per segment (23 floats), allocated and written for the whole period
        # now (1.3 MB per person an hour), so a long-running simulator's memory does not step up as the plan
        # fills. Only each person's latest Segment stays an object (planning continues from it): an object per
        # segment (attribute dict and boxed floats, ~1.8 KB) made a long-running simulator's memory creep.
        self._table = np.zeros((self.n_people, 0, len(_COLUMNS)))
        self._grow_table(math.ceil(self.period / _SHORTEST_SEGMENT) + 1)
        self._last: list[Segment | None] = [None] * self.n_people
        self._planned = [0] * self.n_people
        self._extend(_LOOKAHEAD)

    # --- public -----------------------------------------------------------------------------------
    @property
    def heights(self) -> np.ndarray:
        """(P,) standing heights (m)."""
        return np.array([p.height for p in self.people])

    def pose(self, t: float) -> np.ndarray:
        """COCO-17 joints (P, 17, 3) of everyone at time t (seconds), world frame."""
        rows, tau, tl = self._rows(t)
        s = {name: rows[:, i] for i, name in enumerate(_COLUMNS)}
        x, y, yaw = _root_pose(s, tau)
        x, y = _keep_apart(x, y)
        ang = _joint_angles(s, tau, tl, self._body, self._idle_phase)
        return forward_kinematics(self._body, x, y, yaw, ang)

    def activity_at(self, t: float) -> list[str]:
        """Activity of each person at time t."""
        rows, _, _ = self._rows(t)
        return [MOTION_TYPES[int(k)] for k in rows[:, _COL["kind_id"]]]

    # --- lookup -----------------------------------------------------------------------------------
    def _rows(self, t: float):
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t}")
        tl = max(t, 0.0) % self.period  # before the start: the first instant
        self._extend(tl + _LOOKAHEAD)  # plans a segment now and then: the cost is spread over frames
        if self.n_people == 0:
            return np.zeros((0, len(_COLUMNS))), np.zeros(0), tl
        starts = self._table[:, : max(self._planned), _COL["start"]]  # the planned rows; the rest start at +inf
        idx = np.maximum((starts <= tl).sum(axis=1) - 1, 0)
        rows = self._table[np.arange(self.n_people), idx]
        return rows, tl - rows[:, _COL["start"]], tl

    # --- planning ---------------------------------------------------------------------------------
    def _extend(self, until: float):
        """Plan every person's script up to `until` seconds, earliest decision first (so the plan
        never depends on which instants were asked for first)."""
        if until >= self.period:
            until = math.inf  # plan to the end: the last segments run past the period
        while self._queue and self._queue[0][0] < min(until, self.period):
            start, p = heapq.heappop(self._queue)
            seg = self._plan(p, start)
            self._last[p] = seg
            self._planned[p] += 1
            heapq.heappush(self._queue, (seg.end, p))
            self._append_row(p, seg)

    def _append_row(self, p: int, seg: Segment):
        n = self._planned[p]
        if n > self._table.shape[1]:  # not for segments of _SHORTEST_SEGMENT or longer
            self._grow_table(2 * n)
        self._table[p, n - 1] = [getattr(seg, c) for c in _COLUMNS[:-1]] + [_KIND_ID[seg.kind]]

    def _grow_table(self, rows: int) -> None:
        """Room for `rows` segments per person; unused rows start at +inf, so they are never current."""
        grown = np.zeros((self.n_people, rows, len(_COLUMNS)))
        grown[:, :, _COL["start"]] = np.inf
        grown[:, : self._table.shape[1]] = self._table
        self._table = grown

    def _state(self, p: int) -> tuple[float, float, float]:
        last = self._last[p]
        return last.end_state() if last is not None else self._start[p]

    def _plan(self, p: int, start: float) -> Segment:
        rng = self._rng
        x, y, yaw = self._state(p)
        previous = self._last[p].kind if self._last[p] is not None else None
        kinds = [k for k in self.activities if k != previous or k in ("walk", "stand")] or list(self.activities)
        weights = np.array([_WEIGHTS[k] for k in kinds])
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        if kind == "walk":
            seg = self._plan_walk(p, start, x, y, yaw)
            if seg is not None:
                return seg
            kind = "stand"  # boxed in for now: pause briefly and try again
            return Segment(kind, start, float(rng.uniform(0.5, 1.0)), x, y, yaw, x, y, x, y)
        here = dict(kind=kind, start=start, x0=x, y0=y, yaw0=yaw, cx=x, cy=y, gx=x, gy=y)
        side = float(rng.integers(2))
        if kind == "stand":
            return Segment(duration=float(rng.uniform(1.5, 4.0)), **here)
        if kind == "turn":
            turn = float(rng.choice([-1, 1]) * rng.uniform(np.pi / 3, np.pi))
            duration = abs(turn) / rng.uniform(1.2, 2.0) + 0.6
            return Segment(duration=duration, turn=turn, turn_time=duration, **here)
        if kind == "squat":
            reps = float(rng.integers(1, 3))
            return Segment(duration=reps * float(rng.uniform(2.0, 3.0)), reps=reps,
                           amount=float(rng.uniform(0.9, 1.3)), **here)
        if kind == "reach":
            return Segment(duration=float(rng.uniform(2.5, 4.0)), side=side, amount=float(rng.uniform(1.3, 2.9)),
                           amount2=float(rng.uniform(0.0, 0.5)), **here)
        return Segment(duration=float(rng.uniform(2.5, 4.5)), side=side, rate=float(rng.uniform(1.5, 2.5)), **here)

    def _plan_walk(self, p: int, start: float, x: float, y: float, yaw: float) -> Segment | None:
        """A walk from (x, y), mostly aimed to pass ~0.6 m beside someone, that keeps
        `_MIN_GAP` from everyone's plans; None if no candidate does."""
        rng = self._rng
        half = np.array(self.area) / 2 - _MARGIN
        here = np.array([x, y])
        speed = float(rng.uniform(0.9, 1.4))
        stride = self.people[p].height * float(rng.uniform(0.7, 0.8))
        candidates = []
        others = [q for q in range(self.n_people) if q != p]
        if others and rng.random() < 0.6:
            q = others[int(rng.integers(len(others)))]
            target = self._position(q, start + 0.5)
            gap = target - here
            dist = float(np.hypot(*gap))
            if dist > 1.2:
                along = gap / dist
                normal = np.array([-along[1], along[0]])
                lateral = float(rng.uniform(0.58, 0.68))
                beside = [target + lateral * normal, target - lateral * normal]
                via = min(beside, key=lambda v: np.abs(v / half).max())  # the side further from the edge
                goal = np.clip(via + along * rng.uniform(0.8, 1.5), -half, half)
                control = np.clip(2 * via - 0.5 * (here + goal), -half, half)  # Bezier through `via`
                candidates.append((control, goal))
        # Goals away from where the others are heading, reached along gently curved paths.
        goals = rng.uniform(-half, half, (24, 2))
        bends = rng.uniform(-0.3, 0.3, 24)
        ok = np.hypot(*(goals - here).T) >= 1.2
        for q in others:
            ok &= np.hypot(*(goals - self._position(q, math.inf)).T) >= 0.8
        for goal, bend in list(zip(goals[ok], bends[ok]))[:8]:
            span = goal - here
            normal = np.array([-span[1], span[0]])
            control = np.clip(0.5 * (here + goal) + normal * bend, -half, half)
            candidates.append((control, goal))
        for control, goal in candidates:
            seg = self._walk_segment(start, here, control, goal, yaw, speed, stride, float(rng.uniform(0, 2 * np.pi)))
            if self._keeps_clear(p, seg):
                return seg
        return None

    @staticmethod
    def _walk_segment(start, here, control, goal, yaw, speed, stride, phase0) -> Segment:
        # Clipping to the area can fold the path (control at or beyond an end); walk straight then.
        out, back, span = control - here, goal - control, np.hypot(*(goal - here))
        if min(np.hypot(*out), np.hypot(*back)) < 0.25 * span or out @ back <= 0:
            control = 0.5 * (here + goal)
        u = np.linspace(0.0, 1.0, 33)[:, None]
        curve = (1 - u) ** 2 * here + 2 * u * (1 - u) * control + u * u * goal
        length = float(np.linalg.norm(np.diff(curve, axis=0), axis=1).sum())
        tangent0 = math.atan2(control[1] - here[1], control[0] - here[0])
        ramp = min(_WALK_RAMP, length / speed)
        duration = length / speed + ramp
        turn = float(_wrap(tangent0 - yaw))
        turn_time = min(0.3 + abs(turn) / 2.5, duration / 2)
        return Segment("walk", start, duration, float(here[0]), float(here[1]), yaw, float(control[0]),
                       float(control[1]), float(goal[0]), float(goal[1]), length=length, speed=speed, ramp=ramp,
                       turn=turn, turn_time=turn_time, tangent0=tangent0, stride=stride, phase0=phase0)

    def _position(self, q: int, t) -> np.ndarray:
        """Planned root position(s) of person q at time(s) t: its last planned segment, and where that
        ends for later times (whatever q does next is planned to keep clear of what is planned now)."""
        seg = self._last[q]
        if seg is None:
            t = np.asarray(t, dtype=np.float64)
            return np.broadcast_to(np.array(self._start[q][:2]), t.shape + (2,))
        tau = np.clip(np.asarray(t, dtype=np.float64) - seg.start, 0.0, seg.duration)
        x, y, _ = _root_pose(vars(seg), tau)
        return np.stack([x, y], axis=-1)

    def _keeps_clear(self, p: int, seg: Segment) -> bool:
        tau = np.linspace(0.0, seg.duration, int(seg.duration * 10) + 2)
        x, y, _ = _root_pose(vars(seg), tau)
        for q in range(self.n_people):
            if q != p:
                other = self._position(q, seg.start + tau)
                if np.hypot(other[:, 0] - x, other[:, 1] - y).min() < _MIN_GAP:
                    return False
        return True
