"""Joint layouts (names, bones) and mappings between them.

Joint names are lower snake case and shared between layouts, so a mapping is a lookup by name;
joints a layout lacks but can derive (mid-hip, neck, H36M's spine/thorax) are synthesised as the
mean of two source joints.

    >>> coco = get_layout("coco17")
    >>> coco.index("left_wrist")
    9
    >>> h36m = convert(points_coco, "coco17", "h36m17")   # (..., 17, D) -> (..., 17, D)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpe_ros.checks import check_shape

_FACE = ["nose", "left_eye", "right_eye", "left_ear", "right_ear"]
_LIMBS = [
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]
_FEET = ["left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"]


@dataclass(frozen=True)
class Layout:
    """A joint layout: ordered joint names and bones as (parent, child) index pairs."""

    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._index.update({n: i for i, n in enumerate(self.joint_names)})
        for a, b in self.bones:
            if not (0 <= a < len(self.joint_names) and 0 <= b < len(self.joint_names)):
                raise ValueError(f"layout {self.name}: bone ({a}, {b}) out of range")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"layout {self.name} has no joint {name!r}") from None

    def has(self, name: str) -> bool:
        return name in self._index

    def bone_array(self) -> np.ndarray:
        """(B, 2) int array of bones."""
        return np.asarray(self.bones, dtype=np.int64).reshape(-1, 2)

    def hip_centre(self, points: np.ndarray) -> np.ndarray:
        """Mid-hip of `points` (..., J, D) -> (..., D); NaN where either hip is missing."""
        if self.has("mid_hip"):
            return points[..., self.index("mid_hip"), :]
        if self.has("pelvis"):
            return points[..., self.index("pelvis"), :]
        return 0.5 * (points[..., self.index("left_hip"), :] + points[..., self.index("right_hip"), :])

    def to_dict(self) -> dict:
        """JSON-friendly description (published on /human_pose_3d/skeleton)."""
        return {"layout": self.name, "joint_names": list(self.joint_names), "bones": [list(b) for b in self.bones]}


def _make(name: str, joints: list[str], bones_by_name: list[tuple[str, str]]) -> Layout:
    idx = {n: i for i, n in enumerate(joints)}
    return Layout(name, tuple(joints), tuple((idx[a], idx[b]) for a, b in bones_by_name))


_LIMB_BONES = [
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
]
_FACE_BONES = [("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear")]
_FOOT_BONES = [
    ("left_ankle", "left_heel"), ("left_ankle", "left_big_toe"), ("left_big_toe", "left_small_toe"),
    ("right_ankle", "right_heel"), ("right_ankle", "right_big_toe"), ("right_big_toe", "right_small_toe"),
]

# COCO's own skeleton joins the ears to the shoulders; so do we, so every layout is one connected tree.
_EAR_SHOULDER = [("left_ear", "left_shoulder"), ("right_ear", "right_shoulder")]

COCO17 = _make(
    "coco17", _FACE + _LIMBS,
    _FACE_BONES + _LIMB_BONES + _EAR_SHOULDER + [
        ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
        ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ],
)

HALPE26 = _make(
    "halpe26", _FACE + _LIMBS + ["head", "neck", "hip"] + _FEET,
    _FACE_BONES + _LIMB_BONES + _FOOT_BONES + [
        ("neck", "head"), ("neck", "nose"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
        ("hip", "neck"), ("hip", "left_hip"), ("hip", "right_hip"),
    ],
)

_BODY25_ORDER = [
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
]
BODY25 = _make(
    "body25", _BODY25_ORDER,
    _FACE_BONES + _LIMB_BONES + _FOOT_BONES + [
        ("neck", "nose"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
        ("mid_hip", "neck"), ("mid_hip", "left_hip"), ("mid_hip", "right_hip"),
    ],
)

# BODY_25B (OpenPose experimental): COCO-17 order first, then neck, head top and feet.
BODY25B = _make(
    "body25b", _FACE + _LIMBS + ["neck", "head"] + _FEET,
    _FACE_BONES + _LIMB_BONES + _FOOT_BONES + [
        ("neck", "head"), ("neck", "left_shoulder"), ("neck", "right_shoulder"), ("neck", "nose"),
        ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ],
)

H36M17 = _make(
    "h36m17",
    ["pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine",
     "thorax", "nose", "head", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder",
     "right_elbow", "right_wrist"],
    [("pelvis", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
     ("pelvis", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
     ("pelvis", "spine"), ("spine", "thorax"), ("thorax", "nose"), ("nose", "head"),
     ("thorax", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
     ("thorax", "right_shoulder"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist")],
)

BLAZEPOSE33 = _make(
    "blazepose33",
    ["nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
     "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right"] + _LIMBS[:6]
    + ["left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb"]
    + _LIMBS[6:] + ["left_heel", "right_heel", "left_foot_index", "right_foot_index"],
    [("nose", "left_eye_inner"), ("left_eye_inner", "left_eye"), ("left_eye", "left_eye_outer"),
     ("left_eye_outer", "left_ear"), ("nose", "right_eye_inner"), ("right_eye_inner", "right_eye"),
     ("right_eye", "right_eye_outer"), ("right_eye_outer", "right_ear"), ("mouth_left", "mouth_right"),
     ("nose", "mouth_left"), ("nose", "mouth_right"), ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
     ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
     ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
     ("left_wrist", "left_pinky"), ("left_wrist", "left_index"), ("left_pinky", "left_index"),
     ("left_wrist", "left_thumb"), ("right_wrist", "right_pinky"), ("right_wrist", "right_index"),
     ("right_pinky", "right_index"), ("right_wrist", "right_thumb"),
     ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"), ("left_ankle", "left_foot_index"),
     ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"), ("right_ankle", "right_foot_index")]
    + _LIMB_BONES,
)

LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (COCO17, HALPE26, BODY25, BODY25B, H36M17, BLAZEPOSE33)}
_ALIASES = {
    "coco": "coco17", "coco_17": "coco17", "halpe": "halpe26", "halpe_26": "halpe26",
    "body_25": "body25", "body_25b": "body25b", "h36m": "h36m17", "blazepose": "blazepose33",
    "mediapipe": "blazepose33",
}

# Joints a layout may lack but can derive from two others (mean of the pair).
_DERIVED = {
    "mid_hip": ("left_hip", "right_hip"),
    "hip": ("left_hip", "right_hip"),
    "pelvis": ("left_hip", "right_hip"),
    "neck": ("left_shoulder", "right_shoulder"),
    "thorax": ("left_shoulder", "right_shoulder"),
    "head": ("left_ear", "right_ear"),
    "left_big_toe": ("left_foot_index", "left_foot_index"),
    "right_big_toe": ("right_foot_index", "right_foot_index"),
    "left_foot_index": ("left_big_toe", "left_big_toe"),
    "right_foot_index": ("right_big_toe", "right_big_toe"),
}


def get_layout(name: str | Layout) -> Layout:
    """Layout by name (case-insensitive; 'BODY_25', 'coco', 'h36m' … accepted)."""
    if isinstance(name, Layout):
        return name
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in LAYOUTS:
        raise KeyError(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[key]


def mapping(src: str | Layout, dst: str | Layout) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a, b), each (J_dst,), so that dst[j] = mean(src[a[j]], src[b[j]]); -1 = unavailable.

    A joint present in both layouts maps to itself (a == b); derivable ones average two joints;
    H36M's spine is approximated by the mean of pelvis and thorax at conversion time.
    """
    s, d = get_layout(src), get_layout(dst)
    a = np.full(d.num_joints, -1, dtype=np.int64)
    b = np.full(d.num_joints, -1, dtype=np.int64)
    for j, name in enumerate(d.joint_names):
        if s.has(name):
            a[j] = b[j] = s.index(name)
        elif name in _DERIVED and all(s.has(n) for n in _DERIVED[name]):
            a[j], b[j] = (s.index(n) for n in _DERIVED[name])
    return a, b


def convert(points: np.ndarray, src: str | Layout, dst: str | Layout) -> np.ndarray:
    """Convert joint arrays between layouts.

    points: (..., J_src, D) -> (..., J_dst, D); joints that cannot be derived are NaN.
    Confidences or any other per-joint channel convert the same way (mean of the two sources).
    """
    s, d = get_layout(src), get_layout(dst)
    points = np.asarray(points, dtype=np.float64)
    check_shape(f"{s.name} points", points, (s.num_joints, None), leading=True)
    a, b = mapping(s, d)
    ok = a >= 0
    out = np.full(points.shape[:-2] + (d.num_joints, points.shape[-1]), np.nan)
    out[..., ok, :] = 0.5 * (points[..., a[ok], :] + points[..., b[ok], :])
    if d.has("spine") and not s.has("spine"):
        pelvis = out[..., d.index("pelvis"), :]
        thorax = out[..., d.index("thorax"), :]
        out[..., d.index("spine"), :] = 0.5 * (pelvis + thorax)
    return out


def convert_scores(scores: np.ndarray, src: str | Layout, dst: str | Layout) -> np.ndarray:
    """Per-joint scores (..., J_src) -> (..., J_dst): a derived joint is as sure as its weaker source;
    underivable joints get 0 (missing)."""
    s, d = get_layout(src), get_layout(dst)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    a, b = mapping(s, d)
    ok = a >= 0
    out = np.zeros(scores.shape[:-1] + (d.num_joints,))
    out[..., ok] = np.minimum(scores[..., a[ok]], scores[..., b[ok]])
    if d.has("spine") and not s.has("spine"):
        out[..., d.index("spine")] = np.minimum(out[..., d.index("pelvis")], out[..., d.index("thorax")])
    return out
