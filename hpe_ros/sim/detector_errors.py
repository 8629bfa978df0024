"""Errors of a real 2D pose detector, for simulated detections (`observe(..., errors="realistic")`).

A real detector does not add small round noise to true joints. Its error on a joint grows with the
person's size in the image and with how vaguely the joint is defined (COCO's OKS sigmas: an eye is
pinned to a few pixels, a hip is a guess under clothing); its joints are not mocap joints (a detector's
hip sits a few centimetres from the hip joint centre, the same way frame after frame); it swaps left and
right limbs, guesses body parts it cannot see, reports people cut by the image border with their
joints piled on the border, sees people who are not there, and now and then returns nothing for a frame.
Each of these is a field of `DetectorErrors`. The defaults describe a plausible modern top-down
detector (hips off by 10-20 px on a person 1920 px tall); they are not fitted to one network:

* noise 0.05: per-coordinate std = 0.05 x OKS sigma x person size -> hips 10 px, eyes 2.4 px for a
  person 1920 px tall (mean 2D error 13 px on hips), 1 px / 0.25 px for one 200 px tall;
* definition offset 0.02 m per axis for hips (less for better defined joints), fixed per person;
* left/right swaps 1% of (camera, person, limb group) per frame; partial occlusion 5% of
  (camera, person) per frame; 0.05 false people per camera-frame; 1% missed camera-frames.

Everything is batched numpy over cameras x persons x joints, and deterministic: the random stream
comes from the caller's generator, drawn in fixed shapes (the same seed gives the same errors whatever
the settings), and the definition offsets from `seed` and the person's index (the same every frame).

    >>> model = DetectorErrors()                                  # or preset("realistic")
    >>> joints3d = model.offset_joints(joints3d)                  # (P, J, 3), before projecting
    >>> det = model.apply(pixels, visible, occluded, sizes, rng)  # pixels (C, P, J, 2) ideal projections
    >>> det.points2d.shape                                        # (C, P + max_false_people, J, 2)
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache, lru_cache

import numpy as np

from ..checks import check_shape
from ..skeleton import Layout, convert, get_layout, mapping

# COCO keypoint OKS sigmas (Ronchi & Perona; cocoapi): per-joint spread of human annotations / object scale.
OKS_SIGMAS = {
    "nose": 0.026, "left_eye": 0.025, "right_eye": 0.025, "left_ear": 0.035, "right_ear": 0.035,
    "left_shoulder": 0.079, "right_shoulder": 0.079, "left_elbow": 0.072, "right_elbow": 0.072,
    "left_wrist": 0.062, "right_wrist": 0.062, "left_hip": 0.107, "right_hip": 0.107,
    "left_knee": 0.087, "right_knee": 0.087, "left_ankle": 0.089, "right_ankle": 0.089,
}
# Joints outside COCO-17 and not derivable from it: the nearest COCO joint's sigma, by name.
_SIGMA_BY_NAME_PART = (("toe", "left_ankle"), ("heel", "left_ankle"), ("foot", "left_ankle"),
                       ("pinky", "left_wrist"), ("index", "left_wrist"), ("thumb", "left_wrist"),
                       ("eye", "left_eye"), ("mouth", "nose"), ("spine", "left_hip"))
# Limb groups that swap left/right together (a detector mistakes which leg is which, not which knee).
_SWAP_GROUPS = {"face": ("eye", "ear", "mouth"),
                "arms": ("shoulder", "elbow", "wrist", "pinky", "index", "thumb"),
                "legs": ("hip", "knee", "ankle", "heel", "toe", "foot")}
# A standing person seen from the front, COCO-17, x right / y down, height 1 (ankles to eyes ~0.9).
_FALSE_PERSON_COCO = np.array([
    [0.0, 0.06], [0.02, 0.045], [-0.02, 0.045], [0.045, 0.055], [-0.045, 0.055],
    [0.11, 0.18], [-0.11, 0.18], [0.14, 0.34], [-0.14, 0.34], [0.15, 0.48], [-0.15, 0.48],
    [0.07, 0.52], [-0.07, 0.52], [0.075, 0.74], [-0.075, 0.74], [0.08, 0.95], [-0.08, 0.95]])
_HIP_SIGMA = OKS_SIGMAS["left_hip"]
_PROBABILITIES = ("swap_rate", "jump_rate", "miss_rate", "occlusion_rate", "guess_rate", "truncation_rate",
                  "person_miss_rate", "frame_miss_rate")


def joint_sigmas(layout: str | Layout = "coco17") -> np.ndarray:
    """OKS sigma of every joint of `layout` (J,): COCO's, the mean of the two COCO joints a derived joint
    comes from (mid-hip, neck, head), or the nearest COCO joint's by name (toes, fingers, eye corners).
    Read-only (cached per layout)."""
    return _joint_sigmas(get_layout(layout).name)


@cache
def _joint_sigmas(layout_name: str) -> np.ndarray:
    layout = get_layout(layout_name)
    coco = np.array([OKS_SIGMAS[n] for n in get_layout("coco17").joint_names])
    a, b = mapping("coco17", layout)
    sigmas = np.where(a >= 0, 0.5 * (coco[a] + coco[b]), np.nan)
    for j, name in enumerate(layout.joint_names):
        if np.isnan(sigmas[j]):
            match = [OKS_SIGMAS[coco_name] for part, coco_name in _SIGMA_BY_NAME_PART if part in name]
            if not match:
                raise ValueError(f"no OKS sigma for joint {name!r} of layout {layout.name}")
            sigmas[j] = match[0]
    sigmas.setflags(write=False)
    return sigmas


def mirror_index(layout: str | Layout = "coco17") -> np.ndarray:
    """(J,) index of each joint's left/right counterpart (itself for central joints); read-only."""
    return _mirror_index(get_layout(layout).name)


@cache
def _mirror_index(layout_name: str) -> np.ndarray:
    layout = get_layout(layout_name)
    mirrored = [n.replace("left_", "@").replace("right_", "left_").replace("@", "right_") for n in layout.joint_names]
    index = np.array([layout.index(m) if layout.has(m) else j for j, m in enumerate(mirrored)])
    index.setflags(write=False)
    return index


def swap_groups(layout: str | Layout = "coco17") -> np.ndarray:
    """(G, J) bool: the sided joints of each limb group (face, arms, legs); read-only."""
    return _swap_groups(get_layout(layout).name)


@cache
def _swap_groups(layout_name: str) -> np.ndarray:
    names = get_layout(layout_name).joint_names
    groups = np.array([[n.startswith(("left_", "right_")) and any(part in n for part in parts) for n in names]
                       for parts in _SWAP_GROUPS.values()])
    groups.setflags(write=False)
    return groups


@cache
def _false_person(layout_name: str) -> np.ndarray:
    """(J, 2) the standing template in `layout`, centred at mid-height; NaN for joints it lacks."""
    template = convert(_FALSE_PERSON_COCO, "coco17", layout_name) - [0.0, 0.5]
    template.setflags(write=False)
    return template


@lru_cache(maxsize=64)
def _unit_offsets(seed: int, n_people: int, n_joints: int) -> np.ndarray:
    """(P, J, 3) standard normal draws, person p's from the generator seeded [seed, p]."""
    draws = np.stack([np.random.default_rng([seed, p]).standard_normal((n_joints, 3)) for p in range(n_people)]) \
        if n_people else np.zeros((0, n_joints, 3))
    draws.setflags(write=False)
    return draws


def person_size_px(points2d: np.ndarray) -> np.ndarray:
    """Apparent size (C, P) px of each person: the larger side of the box around its projected joints
    (inside the image or not), divided by 0.9 since COCO joints span ankles to eyes; NaN if none."""
    low, high = _nan_min_max(points2d, axis=-2)                                  # (C, P, 2)
    return np.max(high - low, axis=-1) / 0.9


def _nan_min_max(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """np.nanmin / np.nanmax without the all-NaN warning: NaN where a slice has no finite value."""
    finite = np.isfinite(values)
    low = np.where(finite, values, np.inf).min(axis=axis)
    high = np.where(finite, values, -np.inf).max(axis=axis)
    none = ~finite.any(axis=axis)
    return np.where(none, np.nan, low), np.where(none, np.nan, high)


@dataclass
class Detections:
    """What the detector reports, in ground-truth row order: R = P true people, then false ones.

    points2d (C, R, J, 2) px, NaN where not reported; scores (C, R, J) in [0, 1], 0 where not reported;
    person_ids (C, R): 0..P-1, -2 for false people (rows the detector did not fill hold no joints);
    is_outlier (C, R, J): swapped or jumped joints and every joint of a false person; is_occluded (C, R, J):
    hidden (by others or the partial occlusion), reported or not; is_truncated (C, R, J): outside the
    image, reported on its border.
    """

    points2d: np.ndarray
    scores: np.ndarray
    person_ids: np.ndarray
    is_outlier: np.ndarray
    is_occluded: np.ndarray
    is_truncated: np.ndarray

    @property
    def detected(self) -> np.ndarray:
        return self.scores > 0


@dataclass(frozen=True)
class DetectorErrors:
    """How a real 2D detector errs; rates are per frame. See the module docstring for the defaults' scale.

    noise: per-coordinate std of a joint as a fraction of (its OKS sigma x the person's size in px).
    definition_offset_m: per-axis std (m) of each person's fixed joint-definition offset for the hips;
        other joints scale by their OKS sigma over the hips'.
    swap_rate: chance a (camera, person, limb group) has its left and right joints swapped.
    jump_rate: chance a reported joint lands 0.1-0.3 person sizes off (on a neighbour, on clutter).
    miss_rate: chance a visible joint is not reported.
    occlusion_rate: chance a (camera, person) has one side of its body hidden (15-50% of its extent, from
        a random direction: a table, a doorway, the frame of a chair).
    guess_rate: chance a hidden joint (behind others or the occluder) is still reported: 3x the noise
        plus 3% of the person's size, confidence 0.05-0.35.
    truncation_rate: chance a joint outside the image, of a person partly inside it and within 20% of
        its size of the border, is reported on the border (confidence 0.1-0.4), as detectors do.
    person_miss_rate: chance a (camera, person) is not detected at all.
    frame_miss_rate: chance a camera reports nobody in a frame.
    false_people_rate: mean number of false people per camera-frame (Poisson, at most max_false_people),
        10-60% of the image height tall, confidence 0.2-0.6, a third of their joints missing.
    seed: seed of the per-person definition offsets.
    """

    noise: float = 0.05
    definition_offset_m: float = 0.02
    swap_rate: float = 0.01
    jump_rate: float = 0.005
    miss_rate: float = 0.02
    occlusion_rate: float = 0.05
    guess_rate: float = 0.3
    truncation_rate: float = 0.5
    person_miss_rate: float = 0.01
    frame_miss_rate: float = 0.01
    false_people_rate: float = 0.05
    max_false_people: int = 2
    seed: int = 0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _PROBABILITIES and not 0.0 <= value <= 1.0:
                raise ValueError(f"DetectorErrors.{f.name} must be in [0, 1], got {value}")
            if value < 0:
                raise ValueError(f"DetectorErrors.{f.name} must be >= 0, got {value}")

    # --- 3D: what the detector calls a joint ------------------------------------------------------------
    def definition_offsets(self, n_people: int, layout: str | Layout = "coco17") -> np.ndarray:
        """(P, J, 3) m: each person's fixed offset between its true joints and the detector's, world axes;
        person p's offsets depend only on `seed` and p."""
        sigmas = joint_sigmas(layout) / _HIP_SIGMA * self.definition_offset_m
        return _unit_offsets(self.seed, n_people, len(sigmas)) * sigmas[:, None]

    def offset_joints(self, joints3d: np.ndarray, layout: str | Layout = "coco17") -> np.ndarray:
        """joints3d (P, J, 3) -> the points the detector reports for them (definition offsets added)."""
        check_shape("joints3d", joints3d, ("P", get_layout(layout).num_joints, 3))
        return joints3d + self.definition_offsets(len(joints3d), layout)

    # --- 2D: one frame ------------------------------------------------------------------------------------
    def apply(self, pixels: np.ndarray, visible: np.ndarray, occluded: np.ndarray, image_size: np.ndarray,
              rng: np.random.Generator, layout: str | Layout = "coco17") -> Detections:
        """Detections of one frame from ideal projections.

        pixels: (C, P, J, 2) px where the (offset) joints project, NaN behind a camera; visible (C, P, J):
        in front and inside the image; occluded (C, P, J): hidden behind other people; image_size (C, 2)
        (width, height) px. Returns P + max_false_people rows per camera.
        """
        layout = get_layout(layout)
        dims = check_shape("pixels", pixels, ("C", "P", layout.num_joints, 2))
        check_shape("visible", visible, ("C", "P", layout.num_joints), dims)
        check_shape("occluded", occluded, ("C", "P", layout.num_joints), dims)
        check_shape("image_size", image_size, ("C", 2), dims)
        C, P, J = dims["C"], dims["P"], layout.num_joints
        u = _Draws(rng, C, P, J, self.max_false_people)
        size = person_size_px(pixels)[..., None]                               # (C, P, 1)
        wh = np.asarray(image_size, dtype=np.float64)[:, None, None, :]       # (C, 1, 1, 2)

        # Jitter: per-joint spread from the OKS sigmas; harder joints (difficulty) noisier and less sure.
        sigma = self.noise * joint_sigmas(layout) * size * np.sqrt(0.2 + 1.6 * u.difficulty)
        scores = 1.0 - 0.4 * u.difficulty
        hidden = occluded | (self._occluder(pixels, u) & visible)
        guessed = hidden & (u.guess < self.guess_rate)
        sigma = np.where(guessed, 3.0 * sigma + 0.03 * size, sigma)
        scores = np.where(guessed, 0.05 + 0.3 * u.score, scores)
        points = pixels + u.gauss * sigma[..., None]

        truncated = self._truncated(pixels, visible, size, wh, u)
        points = np.where(truncated[..., None], np.clip(pixels, 0.0, wh - 1.0), points)
        scores = np.where(truncated, 0.1 + 0.3 * u.score, scores)

        jumped = u.jump < self.jump_rate
        angle = 2 * np.pi * u.angle
        jump = (0.1 + 0.2 * u.length)[..., None] * size[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
        points = np.where(jumped[..., None], np.clip(points + jump, 0.0, wh - 1.0), points)
        scores = np.where(jumped, 0.3 + 0.6 * u.score, scores)

        # Left/right swaps: row j of a swapped group reports its mirror joint's detection.
        swapped = np.einsum("cpg,gj->cpj", u.swap < self.swap_rate, swap_groups(layout)) > 0
        source = np.where(swapped, mirror_index(layout), np.arange(J))
        reported = (visible & ~hidden & (u.miss >= self.miss_rate)) | guessed | truncated
        reported = np.take_along_axis(reported, source, axis=2)
        reported &= (u.person_miss >= self.person_miss_rate)[..., None]
        reported &= (u.frame_miss >= self.frame_miss_rate)[:, None, None]
        points = np.take_along_axis(points, source[..., None], axis=2)
        scores = np.take_along_axis(scores, source, axis=2)

        false = self._false_people(image_size, layout, u)
        false.scores[u.frame_miss < self.frame_miss_rate] = 0.0
        false.points2d[u.frame_miss < self.frame_miss_rate] = np.nan
        false.person_ids[u.frame_miss < self.frame_miss_rate] = -1
        outlier = ((source != np.arange(J)) | jumped) & reported
        return Detections(
            points2d=np.concatenate([np.where(reported[..., None], points, np.nan), false.points2d], axis=1),
            scores=np.concatenate([np.where(reported, np.clip(scores, 0.01, 1.0), 0.0), false.scores], axis=1),
            person_ids=np.concatenate([np.broadcast_to(np.arange(P), (C, P)), false.person_ids], axis=1),
            is_outlier=np.concatenate([outlier, false.is_outlier], axis=1),
            is_occluded=np.concatenate([hidden, false.is_occluded], axis=1),
            is_truncated=np.concatenate([truncated, false.is_truncated], axis=1))

    def _occluder(self, pixels: np.ndarray, u: _Draws) -> np.ndarray:
        """(C, P, J) joints behind a partial occluder: the first 15-50% of the person's extent along a
        random image direction, for `occlusion_rate` of the (camera, person) pairs."""
        angle = 2 * np.pi * u.occluder_angle
        along = np.einsum("cpjk,cpk->cpj", pixels, np.stack([np.cos(angle), np.sin(angle)], -1))
        low, high = _nan_min_max(along, axis=-1)
        with np.errstate(invalid="ignore"):
            fraction = (along - low[..., None]) / np.maximum(high - low, 1e-9)[..., None]
            cut = (0.15 + 0.35 * u.occluder_cut)[..., None]
            return (u.occlusion < self.occlusion_rate)[..., None] & (fraction < cut)

    def _truncated(self, pixels: np.ndarray, visible: np.ndarray, size: np.ndarray, wh: np.ndarray,
                   u: _Draws) -> np.ndarray:
        """(C, P, J) joints just outside the image, of people partly inside, that the detector piles on
        the border: within 20% of the person's size of it, for `truncation_rate` of them."""
        with np.errstate(invalid="ignore"):
            outside_by = np.max(np.maximum(-pixels, pixels - (wh - 1.0)), axis=-1)   # px; NaN behind
            near = (outside_by > 0) & (outside_by < 0.2 * size)
        return near & ~visible & visible.any(axis=-1, keepdims=True) & (u.truncate < self.truncation_rate)

    def _false_people(self, image_size: np.ndarray, layout: Layout, u: _Draws) -> Detections:
        """Rows (C, F, J) of people who are not there; the count per camera is Poisson(false_people_rate)
        capped at F = max_false_people."""
        C, F, J = len(image_size), self.max_false_people, layout.num_joints
        k = np.arange(F)
        cdf = np.cumsum(np.exp(-self.false_people_rate) * self.false_people_rate ** k
                        / np.cumprod(np.maximum(k, 1)))                       # P(count <= k)
        count = (u.false_count[:, None] >= cdf[None]).sum(axis=1)            # (C,) inverse CDF
        wh = np.asarray(image_size, dtype=np.float64)[:, None, None, :]       # (C, 1, 1, 2)
        template = _false_person(layout.name)
        height = (0.1 + 0.5 * u.false_size) * wh[:, :, 0, 1]                  # (C, F)
        points = u.false_centre[:, :, None] * wh + template * height[..., None, None]
        points = points + u.false_gauss * 0.03 * height[..., None, None]
        keep = (k[None, :] < count[:, None])[..., None] & (u.false_keep >= 1 / 3)
        with np.errstate(invalid="ignore"):
            keep &= np.all((points >= 0) & (points < wh), axis=-1)           # NaN template joints drop out
        none = np.zeros((C, F, J), dtype=bool)
        return Detections(points2d=np.where(keep[..., None], points, np.nan),
                          scores=np.where(keep, 0.2 + 0.4 * u.false_score, 0.0),
                          person_ids=np.where(keep.any(axis=-1), -2, -1), is_outlier=keep,
                          is_occluded=none, is_truncated=none.copy())


PRESETS = ("clean", "realistic")


def preset(name: str) -> DetectorErrors | None:
    """A named error model: "clean" (None: the simulator's own small noise) or "realistic" (the defaults)."""
    if name == "clean":
        return None
    if name == "realistic":
        return DetectorErrors()
    raise ValueError(f"unknown detector error preset {name!r}; expected one of {', '.join(PRESETS)}")


class _Draws:
    """Every random number one frame needs, drawn in fixed shapes (the same seed, the same stream)."""

    def __init__(self, rng: np.random.Generator, C: int, P: int, J: int, F: int):
        (self.difficulty, self.guess, self.score, self.truncate, self.jump, self.angle, self.length,
         self.miss) = rng.random((8, C, P, J))
        self.gauss = rng.standard_normal((C, P, J, 2))
        self.swap = rng.random((C, P, len(_SWAP_GROUPS)))
        self.occlusion, self.occluder_angle, self.occluder_cut, self.person_miss = rng.random((4, C, P))
        self.frame_miss, self.false_count = rng.random((2, C))
        self.false_size = rng.random((C, F))
        self.false_centre = rng.random((C, F, 2))
        self.false_gauss = rng.standard_normal((C, F, J, 2))
        self.false_keep, self.false_score = rng.random((2, C, F, J))
