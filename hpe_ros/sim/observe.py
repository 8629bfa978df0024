"""What 2D pose detectors would report for known 3D people, in every camera of a rig.

A joint is reported when it projects inside the image, in front of the camera, and is not hidden
behind another person (bodies approximated as capsules around their bones). Reported joints get
Gaussian pixel noise whose size the confidence reflects; some are missed at random, some are gross
outliers (jumps of 30-150 px or a left/right swap) with plausible confidence, and some occluded
joints are hallucinated with low confidence, as real detectors do. Rows are shuffled per camera,
since a detector does not know who is who; `person_ids` keeps the ground truth. With
`errors="realistic"` (or a `DetectorErrors`) the detections err as a real detector's do instead
(detector_errors.py: size- and joint-dependent noise, joint-definition offsets, swaps, truncation,
partial occlusion, false people, missed frames).

    >>> obs = observe(default_rig(4), MotionScript(3).pose(0.0), np.random.default_rng(0))
    >>> obs.points2d.shape, obs.scores.shape, obs.person_ids.shape   # (C, P, 17, 2), (C, P, 17), (C, P)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import Rig, distort_normalized
from ..checks import check_shape
from ..skeleton import COCO17
from .detector_errors import DetectorErrors, preset

# Body volume around the bones: (from joints, to joints, radius m); an end with two joints is their mean.
_CAPSULES = [
    (("left_shoulder",), ("left_elbow",), 0.08), (("left_elbow",), ("left_wrist",), 0.07),
    (("right_shoulder",), ("right_elbow",), 0.08), (("right_elbow",), ("right_wrist",), 0.07),
    (("left_hip",), ("left_knee",), 0.11), (("left_knee",), ("left_ankle",), 0.09),
    (("right_hip",), ("right_knee",), 0.11), (("right_knee",), ("right_ankle",), 0.09),
    (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), 0.17),   # torso
    (("left_shoulder", "right_shoulder"), ("left_ear", "right_ear"), 0.10),   # neck and head
]


def _endpoint_weights(ends) -> np.ndarray:
    """(K, J) weights so that capsule ends = weights @ joints."""
    W = np.zeros((len(ends), COCO17.num_joints))
    for k, names in enumerate(ends):
        W[k, [COCO17.index(n) for n in names]] = 1.0 / len(names)
    return W


_CAP_FROM = _endpoint_weights([c[0] for c in _CAPSULES])
_CAP_TO = _endpoint_weights([c[1] for c in _CAPSULES])
_CAP_RADIUS = np.array([c[2] for c in _CAPSULES])
_MIRROR = np.array([COCO17.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_"))
                    for n in COCO17.joint_names])
_STOP_BEFORE_JOINT = 0.1  # m: what touches a joint (a hand on a shoulder) does not hide it
_BODY_PAD = 0.25          # m: how far a body's capsules reach beyond its joints (torso radius, top of head)


@dataclass
class Observation:
    """2D detections of one frame in C cameras, P rows per camera (P = most people seen by a camera).

    points2d: (C, P, J, 2) px, NaN where missing; scores: (C, P, J) in [0, 1], 0 = missing;
    person_ids: (C, P) ground-truth person index of each row, -2 for a false person (realistic errors
    only), -1 for padding rows (at the end).
    Ground truth for evaluation: is_outlier (C, P, J) gross errors; is_occluded (C, P, J) joints
    hidden behind another person (missing, or hallucinated with low confidence).
    """

    points2d: np.ndarray
    scores: np.ndarray
    person_ids: np.ndarray
    is_outlier: np.ndarray | None = None
    is_occluded: np.ndarray | None = None

    @property
    def num_cameras(self) -> int:
        return self.scores.shape[0]

    @property
    def num_rows(self) -> int:
        return self.scores.shape[1]

    def by_person(self, n_people: int) -> tuple[np.ndarray, np.ndarray]:
        """Undo the shuffle: points (C, n_people, J, 2) and scores (C, n_people, J) in ground-truth
        order; people a camera did not report are NaN / 0 there."""
        C, _, J = self.scores.shape
        points = np.full((C, n_people, J, 2), np.nan)
        scores = np.zeros((C, n_people, J))
        cam, row = np.nonzero(self.person_ids >= 0)
        points[cam, self.person_ids[cam, row]] = self.points2d[cam, row]
        scores[cam, self.person_ids[cam, row]] = self.scores[cam, row]
        return points, scores


def project(rig: Rig, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) -> pixels (C, N, 2) (NaN behind a camera) and depths (C, N), all cameras at once."""
    Rt = rig.projection_matrices
    cam = points @ Rt[:, :, :3].transpose(0, 2, 1) + Rt[:, None, :, 3]
    depth = cam[..., 2]
    front = depth > 1e-6
    xy = cam[..., :2] / np.where(front, depth, 1.0)[..., None]
    dist = np.stack([c.dist for c in rig])
    if dist.any():
        xy = distort_normalized(xy, dist.T[:, :, None])  # each coefficient (C, 1): one set per camera
    K = np.stack([c.K for c in rig])[:, None]
    u = K[..., 0, 0] * xy[..., 0] + K[..., 0, 1] * xy[..., 1] + K[..., 0, 2]
    v = K[..., 1, 1] * xy[..., 1] + K[..., 1, 2]
    px = np.stack([u, v], axis=-1)
    px[~front] = np.nan
    return px, depth


def occluded_by_others(rig: Rig, joints3d: np.ndarray, pixels: np.ndarray | None = None,
                       depth: np.ndarray | None = None) -> np.ndarray:
    """(C, P, J) bool: the sight line from a camera to a joint of `joints3d` (P, J, 3) passes through
    another person's body capsule before it reaches the joint.

    `pixels` (C, P*J, 2) and `depth` (C, P*J) from `project` may be passed to avoid projecting twice.
    A cheap image-space test (joint inside the other person's padded bounding box and behind their
    nearest point) picks the few (camera, joint, person) triples that need the exact 3D test.
    """
    joints3d = np.asarray(joints3d, dtype=np.float64)
    P, J, _ = joints3d.shape
    C = len(rig)
    occluded = np.zeros((C, P * J), dtype=bool)
    if P < 2 or C == 0:
        return occluded.reshape(C, P, J)
    if pixels is None or depth is None:
        pixels, depth = project(rig, joints3d.reshape(-1, 3))

    # Coarse: per camera and person, the joints' bounding box padded by the widest body part
    # (NaN boxes for people partly behind a camera, who are then always candidates).
    z = depth.reshape(C, P, J)
    u, v = pixels[..., 0], pixels[..., 1]                                  # (C, N)
    pu, pv = u.reshape(C, P, J), v.reshape(C, P, J)
    with np.errstate(invalid="ignore"):
        near = z.min(axis=2)                                                # (C, P)
        pad = np.array([c.K[0, 0] for c in rig])[:, None] * _BODY_PAD / near
        straddles = ~(near > 0.05)
        lo_u, hi_u = (pu.min(axis=2) - pad)[:, None], (pu.max(axis=2) + pad)[:, None]
        lo_v, hi_v = (pv.min(axis=2) - pad)[:, None], (pv.max(axis=2) + pad)[:, None]
        u, v = u[:, :, None], v[:, :, None]
        candidate = ((u >= lo_u) & (u <= hi_u) & (v >= lo_v) & (v <= hi_v)) | straddles[:, None]
        candidate &= depth[:, :, None] > (near - _BODY_PAD)[:, None]        # (C, N, P)
    owner = np.repeat(np.arange(P), J)
    candidate &= owner[None, :, None] != np.arange(P)[None, None, :]   # people do not hide themselves
    cam, joint, other = np.nonzero(candidate)
    if cam.size == 0:
        return occluded.reshape(C, P, J)

    # Exact: closest points of segment O + s d1 (camera -> just before the joint) and A + t d2
    # (capsule axis), batched over the candidates x capsules (Ericson, Real-Time Collision
    # Detection 5.1.9); vector components kept apart so each dot product is a few flat operations.
    centers = rig.centers
    starts = _CAP_FROM @ joints3d                                         # (P, K, 3)
    axes = _CAP_TO @ joints3d - starts
    e = np.maximum((axes * axes).sum(axis=-1), 1e-12)                     # (P, K)
    r = centers[:, None, None] - starts[None]                             # (C, P, K, 3)
    f = (r * axes).sum(axis=-1)                                           # (C, P, K)
    rr = (r * r).sum(axis=-1)
    ray = joints3d.reshape(-1, 3)[None] - centers[:, None]                # (C, N, 3)
    length = np.sqrt((ray * ray).sum(axis=-1, keepdims=True))
    d1 = (ray * np.clip(1.0 - _STOP_BEFORE_JOINT / np.maximum(length, 1e-9), 0.0, 1.0))[cam, joint]  # (S, 3)
    a = np.maximum((d1 * d1).sum(axis=-1), 1e-12)[:, None]                # (S, 1)
    d2, rs = axes[other], r[cam, other]                                   # (S, K, 3)
    b = d1[:, None, 0] * d2[..., 0] + d1[:, None, 1] * d2[..., 1] + d1[:, None, 2] * d2[..., 2]
    c = d1[:, None, 0] * rs[..., 0] + d1[:, None, 1] * rs[..., 1] + d1[:, None, 2] * rs[..., 2]
    e, f, rr = e[other], f[cam, other], rr[cam, other]
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.clip((b * f - c * e) / np.maximum(a * e - b * b, 1e-12), 0.0, 1.0)
        t = (b * s + f) / e
        s = np.where(t < 0, np.clip(-c / a, 0.0, 1.0), np.where(t > 1, np.clip((b - c) / a, 0.0, 1.0), s))
        t = np.clip(t, 0.0, 1.0)
        dist2 = rr + s * (s * a + 2 * c - 2 * t * b) + t * (t * e - 2 * f)
    hit = (dist2 < _CAP_RADIUS * _CAP_RADIUS).any(axis=1)
    occluded[cam[hit], joint[hit]] = True
    return occluded.reshape(C, P, J)


def observe(rig: Rig, joints3d: np.ndarray, rng: np.random.Generator, noise_px: float = 2.0,
            miss_rate: float = 0.03, outlier_rate: float = 0.02, occlusion: bool = True,
            min_visible_joints: int = 5, occluded_detect_rate: float = 0.3,
            errors: DetectorErrors | str | None = None) -> Observation:
    """Simulated 2D detections of COCO-17 people `joints3d` (P, 17, 3) (world, metres; NaN = absent).

    noise_px: std (px) of the pixel noise per coordinate, on average; a joint's confidence
    (0.6-1.0) falls as its own noise grows. miss_rate: chance a visible joint is not detected.
    outlier_rate: chance a detected joint is a gross error (30-150 px jump, or the left/right
    counterpart's position), confidence 0.3-0.9. occlusion: hide joints behind other people;
    `occluded_detect_rate` of those are still reported, with confidence 0.05-0.35 and 3 noise_px
    + 6 px of noise. A person with fewer than `min_visible_joints` detected joints in a camera is
    not reported there.

    errors: None or "clean" for the model above; "realistic" or a `DetectorErrors` for a real
    detector's errors (sim/detector_errors.py), which then replace noise_px, miss_rate, outlier_rate
    and occluded_detect_rate.
    """
    joints3d = np.asarray(joints3d, dtype=np.float64)
    check_shape("joints3d (COCO-17 points)", joints3d, ("P", COCO17.num_joints, 3))
    for name, rate in (("miss_rate", miss_rate), ("outlier_rate", outlier_rate),
                       ("occluded_detect_rate", occluded_detect_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {rate}")
    if noise_px < 0:
        raise ValueError(f"noise_px must be >= 0, got {noise_px}")
    model = preset(errors) if isinstance(errors, str) else errors
    if model is not None:
        joints3d = model.offset_joints(joints3d)
    C, (P, J, _) = len(rig), joints3d.shape
    N = P * J

    px, depth = project(rig, joints3d.reshape(N, 3))                     # (C, N, 2), (C, N)
    size = np.array([c.size for c in rig], dtype=np.float64)[:, None]   # (C, 1, 2)
    with np.errstate(invalid="ignore"):
        visible = (depth > 0) & np.all((px >= 0) & (px < size), axis=-1)
    occluded = (occluded_by_others(rig, joints3d, px, depth).reshape(C, N) if occlusion
                else np.zeros((C, N), dtype=bool)) & visible
    if model is not None:
        det = model.apply(px.reshape(C, P, J, 2), visible.reshape(C, P, J), occluded.reshape(C, P, J),
                          size[:, 0], rng)
        return _report(det.points2d, det.scores, det.is_outlier, det.is_occluded, det.person_ids,
                       min_visible_joints, rng)

    # All draws have fixed shapes: a seed gives the same stream whatever the settings.
    difficulty, u_hallucinate, u_miss, u_outlier, u_swap, u_angle, u_jump, u_score = rng.random((8, C, N))
    gauss = rng.standard_normal((C, N, 2))

    # Per-joint noise with E[sigma^2] = noise_px^2; harder joints are noisier and less confident.
    sigma = noise_px * np.sqrt(0.2 + 1.6 * difficulty)
    scores = 1.0 - 0.4 * difficulty
    hallucinated = occluded & (u_hallucinate < occluded_detect_rate)
    sigma = np.where(hallucinated, 3.0 * noise_px + 6.0, sigma)
    scores = np.where(hallucinated, 0.05 + 0.3 * u_score, scores)
    points = px + gauss * sigma[..., None]
    detected = visible & (~occluded | hallucinated) & (u_miss >= miss_rate)

    # Gross outliers: the mirror joint's detection when that is far enough off, else a jump.
    outlier = detected & (u_outlier < outlier_rate)
    mirror = points.reshape(C, P, J, 2)[:, :, _MIRROR].reshape(C, N, 2)
    with np.errstate(invalid="ignore"):
        swap = (u_swap < 0.5) & (np.linalg.norm(mirror - px, axis=-1) >= 30.0)
        direction = np.stack([np.cos(2 * np.pi * u_angle), np.sin(2 * np.pi * u_angle)], -1)
        jump = (30.0 + 120.0 * u_jump)[..., None] * direction
        inside = np.all((px + jump >= 0) & (px + jump < size), axis=-1, keepdims=True)
    wrong = np.where(swap[..., None], mirror, px + np.where(inside, jump, -jump))
    wrong = np.clip(wrong, 0.0, size - 1.0)
    points = np.where(outlier[..., None], wrong, points)
    scores = np.where(outlier, 0.3 + 0.6 * u_score, scores)

    points[~detected] = np.nan
    scores = np.where(detected, np.clip(scores, 0.0, 1.0), 0.0)
    return _report(points.reshape(C, P, J, 2), scores.reshape(C, P, J), outlier.reshape(C, P, J),
                   occluded.reshape(C, P, J), np.broadcast_to(np.arange(P), (C, P)), min_visible_joints, rng)


def simulate_clip(rig: Rig, script, frames: int, fps: float, rng: np.random.Generator,
                  errors: DetectorErrors | str | None = None) -> tuple[list, np.ndarray]:
    """`frames` frames of `script` (a MotionScript) at `fps` seen by `rig`, as offline tools read them:
    [(frame index, [(points2d (P_c, 17, 2) px, scores (P_c, 17)) per camera])] and the truth (T, P, 17, 3) m."""
    out, truth = [], []
    for f in range(frames):
        joints = script.pose(f / fps)
        obs = observe(rig, joints, rng, errors=errors)
        out.append((f, [(obs.points2d[c], obs.scores[c]) for c in range(len(rig))]))
        truth.append(joints)
    return out, np.stack(truth)


def _report(points: np.ndarray, scores: np.ndarray, outlier: np.ndarray, occluded: np.ndarray,
            row_ids: np.ndarray, min_visible_joints: int, rng: np.random.Generator) -> Observation:
    """Report rows (C, R, ...) with enough detected joints, in a random row order per camera, padding at
    the end; row_ids (C, R) names each row's person (-2: a false person)."""
    C, P, _ = scores.shape
    detected = scores > 0
    reported = detected.sum(axis=-1) >= min_visible_joints                 # (C, P)
    order = np.argsort(rng.random((C, P)) + ~reported, axis=1)             # unreported sort last
    rows = int(reported.sum(axis=1).max()) if P and C else 0
    order = order[:, :rows]
    kept = np.take_along_axis(reported, order, axis=1)                      # (C, rows)
    pick = order[:, :, None]
    points = np.take_along_axis(points, pick[..., None], axis=1)
    points[~kept] = np.nan
    scores = np.where(kept[..., None], np.take_along_axis(scores, pick, axis=1), 0.0)
    return Observation(
        points2d=points,
        scores=scores,
        person_ids=np.where(kept, np.take_along_axis(row_ids, order, axis=1), -1),
        is_outlier=np.take_along_axis(outlier, pick, axis=1) & kept[..., None],
        is_occluded=np.take_along_axis(occluded, pick, axis=1) & kept[..., None],
    )
