"""Body and joint orientations from 3D joints, batched over persons x joints.

Body frame (REP-155 style, published as TF ``body_<id>``): origin at the hip centre, **z = world up**
(0, 0, 1), y = the person's left (the horizontal part of the right->left hip and shoulder lines), x = forward
= y x z. World up rather than the spine keeps the frame a stable *heading* frame when the person bends or
sits, which is what a robot planning around people wants; the spine tilt is in the joint frames.
The facing side comes from the left/right joint labels; only when both the hip and the shoulder lines are
missing does the nose (horizontal offset from the shoulder, hip or ear centre) give the forward direction.

Joint frames: x along the bone to the joint's child (the first bone in the layout with this joint as parent;
end joints use the bone from their parent). The other axes come from the body frame by the *shortest
rotation* taking a rest direction (body down, or body up for bones that end at the neck / head / face) onto
the bone. That is continuous over time everywhere except a bone pointing exactly opposite its rest
direction, so the frames do not flip when an arm crosses the lateral or forward directions.

Undefined values (documented, NaN-safe): the body rotation is the identity where no left/right line or nose
is available (its origin: the hip centre, else the mean of the finite joints, else NaN); a joint's rotation
is the identity where its bone direction is undefined (a missing endpoint).
"""
from __future__ import annotations

import numpy as np

from ..checks import check_shape
from ..skeleton import Layout, get_layout

_UP = np.array([0.0, 0.0, 1.0])
_EPS = 1e-6
# Bones ending at these joints rest pointing up (spine, neck, head, face); all others rest pointing down.
_REST_UP_ENDS = {"neck", "head", "thorax", "spine", "nose", "left_eye", "right_eye", "left_eye_inner",
                 "right_eye_inner", "left_eye_outer", "right_eye_outer", "mouth_left", "mouth_right"}


def _normalize(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) -> unit vectors (..., 3) and ok mask (...,) (finite and not degenerate; zeros where not ok)."""
    n = np.linalg.norm(v, axis=-1)
    ok = np.isfinite(n) & (n > _EPS)
    return np.where(ok[..., None], v / np.where(ok, n, 1.0)[..., None], 0.0), ok


def _horizontal(v: np.ndarray) -> np.ndarray:
    return v * np.array([1.0, 1.0, 0.0])


def _check(joints: np.ndarray, layout: Layout) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    check_shape(f"joints ({layout.name})", joints, (None, layout.num_joints, 3))
    return joints


def _pair(joints: np.ndarray, layout: Layout, left: str, right: str) -> np.ndarray:
    """(P, 3) left - right, NaN when the layout lacks them or either is missing."""
    if not (layout.has(left) and layout.has(right)):
        return np.full((len(joints), 3), np.nan)
    return joints[:, layout.index(left)] - joints[:, layout.index(right)]


def _midpoint(joints: np.ndarray, layout: Layout, left: str, right: str) -> np.ndarray:
    if not (layout.has(left) and layout.has(right)):
        return np.full((len(joints), 3), np.nan)
    return 0.5 * (joints[:, layout.index(left)] + joints[:, layout.index(right)])


def body_rotations(joints: np.ndarray, layout: str | Layout = "coco17") -> tuple[np.ndarray, np.ndarray]:
    """Body rotation (P, 3, 3) (columns x forward, y left, z up, in world) and defined mask (P,)."""
    layout = get_layout(layout)
    joints = _check(joints, layout)
    P = len(joints)
    # Left direction: horizontal hip and shoulder lines, summed (either alone suffices).
    lines = np.stack([_horizontal(_pair(joints, layout, "left_hip", "right_hip")),
                      _horizontal(_pair(joints, layout, "left_shoulder", "right_shoulder"))])
    left, ok = _normalize(np.nansum(lines, axis=0))
    forward = np.cross(left, _UP)

    # Fallback: nose ahead of the shoulder (else hip, else ear) centre.
    if layout.has("nose"):
        centre = _midpoint(joints, layout, "left_shoulder", "right_shoulder")
        for other in (layout.hip_centre(joints), _midpoint(joints, layout, "left_ear", "right_ear")):
            centre = np.where(np.isfinite(centre), centre, other)
        nose_fwd, nose_ok = _normalize(_horizontal(joints[:, layout.index("nose")] - centre))
        use_nose = ~ok & nose_ok
        forward = np.where(use_nose[:, None], nose_fwd, forward)
        left = np.where(use_nose[:, None], np.cross(_UP, nose_fwd), left)
        ok = ok | use_nose

    R = np.broadcast_to(np.eye(3), (P, 3, 3)).copy()
    R[ok] = np.stack([forward[ok], left[ok], np.broadcast_to(_UP, (int(ok.sum()), 3))], axis=-1)
    return R, ok


def body_frames(joints: np.ndarray, layout: str | Layout = "coco17") -> np.ndarray:
    """REP-155 body frames at the hip centre.

    joints: (P, J, 3) world metres (NaN = missing) -> (P, 4, 4) homogeneous body->world transforms:
    rotation columns x forward, y left, z world up; translation the hip centre (else the mean of the
    finite joints, else NaN). Identity rotation where the heading is undefined.
    """
    layout = get_layout(layout)
    joints = _check(joints, layout)
    R, _ = body_rotations(joints, layout)
    origin = layout.hip_centre(joints)
    finite = np.isfinite(joints).all(-1)
    with np.errstate(invalid="ignore"):
        mean = np.where(finite[..., None], joints, 0.0).sum(1) / finite.sum(1)[:, None]  # NaN if none
    origin = np.where(np.isfinite(origin).all(-1, keepdims=True), origin, mean)
    T = np.broadcast_to(np.eye(4), (len(joints), 4, 4)).copy()
    T[:, :3, :3] = R
    T[:, :3, 3] = origin
    return T


def _bone_topology(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per joint: child (J,) (-1 none), parent (J,) (-1 none), rest-up flag (J,) of the bone used."""
    J = layout.num_joints
    child = np.full(J, -1)
    parent = np.full(J, -1)
    for a, b in layout.bones:  # first listed bone wins: layouts list the main limb bones first
        if child[a] < 0:
            child[a] = b
        if parent[b] < 0:
            parent[b] = a
    names = layout.joint_names
    end = np.where(child >= 0, child, np.arange(J))  # the joint the used bone points to
    rest_up = np.array([names[e] in _REST_UP_ENDS for e in end])
    return child, parent, rest_up


def _shortest_rotation(a: np.ndarray, b: np.ndarray, fallback_axis: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) taking unit vectors a onto b (..., 3); half turn about fallback_axis if opposite."""
    v = np.cross(a, b)
    c = np.sum(a * b, axis=-1)
    vx = np.zeros(v.shape + (3,))
    vx[..., 0, 1], vx[..., 0, 2] = -v[..., 2], v[..., 1]
    vx[..., 1, 0], vx[..., 1, 2] = v[..., 2], -v[..., 0]
    vx[..., 2, 0], vx[..., 2, 1] = -v[..., 1], v[..., 0]
    opposite = c < -1 + 1e-9
    scale = np.where(opposite, 0.0, 1.0 / np.where(opposite, 1.0, 1.0 + c))
    R = np.eye(3) + vx + (vx @ vx) * scale[..., None, None]
    k = fallback_axis
    half_turn = 2.0 * k[..., :, None] * k[..., None, :] - np.eye(3)
    return np.where(opposite[..., None, None], half_turn, R)


def joint_rotations(joints: np.ndarray, layout: str | Layout = "coco17") -> np.ndarray:
    """Right-handed orthonormal frame per joint (columns = axes in world).

    joints: (P, J, 3) world metres (NaN = missing) -> (P, J, 3, 3): x along the bone to the child (from
    the parent for end joints, or when the child is missing); y, z carried from the body frame by the
    shortest rotation from the bone's rest direction. Identity where the bone direction is undefined.
    """
    layout = get_layout(layout)
    joints = _check(joints, layout)
    P, J = joints.shape[:2]
    child, parent, rest_up = _bone_topology(layout)
    body, _ = body_rotations(joints, layout)                              # (P, 3, 3)

    nan = np.full((P, J, 3), np.nan)
    to_child = np.where((child >= 0)[None, :, None], joints[:, np.maximum(child, 0)] - joints, nan)
    from_parent = np.where((parent >= 0)[None, :, None], joints - joints[:, np.maximum(parent, 0)], nan)
    d_child, ok_child = _normalize(to_child)
    d_parent, ok_parent = _normalize(from_parent)
    direction = np.where(ok_child[..., None], d_child, d_parent)
    ok = ok_child | ok_parent

    # Rest frame per joint in world: x = body down (or up), y = body left, z completes it.
    bx, by, bz = body[:, None, :, 0], body[:, None, :, 1], body[:, None, :, 2]   # (P, 1, 3)
    up = rest_up[None, :, None]
    rest_x = np.where(up, bz, -bz)
    rest_z = np.where(up, -bx, bx)
    rest = np.stack(np.broadcast_arrays(rest_x, by, rest_z), axis=-1)            # (P, J, 3, 3)

    swing = _shortest_rotation(rest[..., 0], direction, np.broadcast_to(by, (P, J, 3)))
    R = swing @ rest
    return np.where(ok[..., None, None], R, np.eye(3))
