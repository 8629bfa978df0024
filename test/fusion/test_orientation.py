"""Body and joint frames from 3D skeletons: handedness, heading, continuity, NaN safety."""
import numpy as np
import pytest

from hpe_ros.fusion.orientation import body_frames, joint_rotations
from hpe_ros.skeleton import COCO17, H36M17, convert

# A standing COCO-17 person facing +x (left = +y), feet at z = 0.
TEMPLATE = np.array([
    [0.10, 0.00, 1.60], [0.08, 0.03, 1.65], [0.08, -0.03, 1.65], [0.00, 0.07, 1.62], [0.00, -0.07, 1.62],
    [0.00, 0.20, 1.45], [0.00, -0.20, 1.45], [0.00, 0.25, 1.15], [0.00, -0.25, 1.15],
    [0.05, 0.27, 0.90], [0.05, -0.27, 0.90], [0.00, 0.12, 0.95], [0.00, -0.12, 0.95],
    [0.02, 0.12, 0.50], [0.02, -0.12, 0.50], [0.00, 0.12, 0.08], [0.00, -0.12, 0.08],
])


def yaw_matrix(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def person(yaw=0.0, at=(0.0, 0.0)):
    return TEMPLATE @ yaw_matrix(yaw).T + [at[0], at[1], 0.0]


def assert_rotations(R):
    """Orthonormal and right-handed, for any leading shape."""
    eye = np.broadcast_to(np.eye(3), R.shape)
    assert np.allclose(np.swapaxes(R, -1, -2) @ R, eye, atol=1e-9)
    assert np.allclose(np.linalg.det(R), 1.0, atol=1e-9)


def test_body_frame_of_a_person_facing_plus_y():
    joints = person(yaw=np.pi / 2, at=(1.0, 2.0))[None]          # turned from +x to face +y
    T = body_frames(joints, COCO17)
    assert T.shape == (1, 4, 4)
    R, origin = T[0, :3, :3], T[0, :3, 3]
    assert_rotations(R)
    assert np.allclose(R[:, 0], [0, 1, 0], atol=1e-9)            # x forward = +y
    assert np.allclose(R[:, 1], [-1, 0, 0], atol=1e-9)           # y = the person's left = -x
    assert np.allclose(R[:, 2], [0, 0, 1])                       # z world up
    assert np.allclose(origin, [1.0, 2.0, 0.95])                 # hip centre
    assert np.allclose(T[0, 3], [0, 0, 0, 1])


def test_body_frame_from_shoulders_or_nose_when_hips_are_missing():
    joints = person(yaw=0.7)[None].repeat(2, 0)
    joints[:, [11, 12]] = np.nan                                  # no hips in either
    joints[1, [5, 6]] = np.nan                                    # no shoulders either: nose decides
    T = body_frames(joints, COCO17)
    forward = np.array([np.cos(0.7), np.sin(0.7), 0])
    assert np.allclose(T[0, :3, 0], forward, atol=1e-9)
    assert T[1, :3, 0] @ forward > 0.99
    assert np.isfinite(T).all()                                   # origin falls back to the joints' mean


def test_undefined_body_frame_is_identity_and_all_nan_origin_is_nan():
    joints = np.full((2, 17, 3), np.nan)
    joints[1, 9] = [1, 1, 1]                                      # a lone wrist: position but no heading
    T = body_frames(joints, COCO17)
    assert np.allclose(T[:, :3, :3], np.eye(3))
    assert np.isnan(T[0, :3, 3]).all() and np.allclose(T[1, :3, 3], [1, 1, 1])
    assert np.allclose(joint_rotations(joints, COCO17), np.eye(3))


def test_joint_frames_point_along_bones_and_are_right_handed():
    rng = np.random.default_rng(0)
    joints = np.stack([person(yaw) for yaw in rng.uniform(-np.pi, np.pi, 5)])
    joints += rng.normal(0, 0.02, joints.shape)
    R = joint_rotations(joints, COCO17)
    assert R.shape == (5, 17, 3, 3)
    assert_rotations(R)
    i = COCO17.index
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
    # x to the child: elbow -> wrist; end joint (wrist) from its parent; ankle from the knee.
    assert np.allclose(R[:, i("left_elbow"), :, 0], unit(joints[:, i("left_wrist")] - joints[:, i("left_elbow")]))
    assert np.allclose(R[:, i("left_wrist"), :, 0], unit(joints[:, i("left_wrist")] - joints[:, i("left_elbow")]))
    assert np.allclose(R[:, i("right_ankle"), :, 0], unit(joints[:, i("right_ankle")] - joints[:, i("right_knee")]))
    # Hanging limbs: the joint's z axis faces forward like the body's x.
    body = body_frames(joints, COCO17)[:, :3, :3]
    assert (np.einsum("pd,pd->p", R[:, i("left_knee"), :, 2], body[:, :, 0]) > 0.9).all()


def test_frames_are_continuous_while_the_person_turns_and_raises_an_arm():
    steps = 240
    yaws = np.linspace(0, 2 * np.pi, steps)
    lift = np.linspace(0, 0.95 * np.pi, steps)                   # arm swings from down to nearly up, sideways
    frames = []
    i = COCO17.index
    for yaw, a in zip(yaws, lift):
        p = TEMPLATE.copy()
        shoulder = p[i("left_shoulder")]
        p[i("left_elbow")] = shoulder + 0.3 * np.array([0, np.sin(a), -np.cos(a)])
        p[i("left_wrist")] = shoulder + 0.55 * np.array([0, np.sin(a), -np.cos(a)])
        frames.append(p @ yaw_matrix(yaw).T)
    R = joint_rotations(np.stack(frames), COCO17)                 # (steps, 17, 3, 3)
    rel = np.einsum("tjki,tjkl->tjil", R[:-1], R[1:])             # R_t^T R_{t+1}
    angle = np.arccos(np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    per_step = (2 * np.pi + 0.95 * np.pi) / (steps - 1)           # the most any joint should turn per step
    assert angle.max() < 2 * per_step, np.degrees(angle.max())
    body = body_frames(np.stack(frames), COCO17)[:, :3, :3]
    rel_body = np.einsum("tki,tkl->til", body[:-1], body[1:])
    body_angle = np.arccos(np.clip((np.trace(rel_body, axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    assert np.allclose(body_angle, 2 * np.pi / (steps - 1), atol=1e-6)


def test_missing_joint_gives_identity_and_end_joint_falls_back_to_parent():
    joints = person()[None].copy()
    i = COCO17.index
    joints[0, i("left_wrist")] = np.nan
    R = joint_rotations(joints, COCO17)
    assert np.allclose(R[0, i("left_wrist")], np.eye(3))
    # Elbow's child is missing: x comes from shoulder -> elbow instead.
    d = joints[0, i("left_elbow")] - joints[0, i("left_shoulder")]
    assert np.allclose(R[0, i("left_elbow"), :, 0], d / np.linalg.norm(d))


def test_other_layouts_and_shape_errors():
    h36m = convert(np.stack([person(0.3), person(2.0)]), "coco17", "h36m17")
    R = joint_rotations(h36m, H36M17)
    assert_rotations(R)
    spine = R[:, H36M17.index("spine"), :, 0]
    assert (spine[:, 2] > 0.99).all()                             # spine bone points up
    assert np.allclose(body_frames(h36m, H36M17)[0, :3, 0], [np.cos(0.3), np.sin(0.3), 0], atol=1e-9)
    with pytest.raises(ValueError, match=r"joints \(coco17\) must have shape \(\?, 17, 3\), got \(2, 16, 3\)"):
        body_frames(np.zeros((2, 16, 3)), COCO17)
    assert joint_rotations(np.zeros((0, 17, 3)), COCO17).shape == (0, 17, 3, 3)
