"""Compare a rig with a reference one, up to the similarity transform a calibration cannot know.

A calibration from people (or any self-calibration) fixes the rig only up to where its world frame
sits and, without a known length, its scale. `compare_rigs` first brings the estimate into the
reference frame with the similarity (s, R, T) that best aligns both the camera centres (Umeyama
1991) and the camera orientations, then reports per camera the rotation error (degrees) and the
centre error (mm, in the reference units x 1000). The alignment includes scale, so those errors are
about the rig's shape; the scale error is reported on its own.

    >>> cmp = compare_rigs(estimated, truth)
    >>> cmp["rotation_error_deg"], cmp["centre_error_mm"], cmp["scale_error_pct"]
    >>> aligned = apply_similarity(estimated, *align_rigs(estimated, truth))   # rig in truth's frame

A similarity maps points ``X' = s R X + T``; `apply_similarity` moves cameras with their world, so
that every camera sees the transformed points where it saw the original ones.
"""
from __future__ import annotations

import numpy as np

from hpe_ros.camera import Rig


def apply_similarity(rig: Rig, s: float, R: np.ndarray, T: np.ndarray) -> Rig:
    """Express `rig` in the world frame X' = s R X + T: R_c' = R_c R^T, t_c' = s t_c - R_c' T.

    Camera centres move as points do (c' = s R c + T); intrinsics are unchanged.
    """
    R = np.asarray(R, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    cams = []
    for c in rig:
        Rc = c.R @ R.T
        cams.append(c.copy(R=Rc, t=s * c.t - Rc @ T))
    return Rig(cams)


def _proper(M: np.ndarray) -> np.ndarray:
    """Rotation maximising trace(R^T M) (orthogonal Procrustes, det forced to +1)."""
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    return U @ D @ Vt


def align_rigs(estimated: Rig, truth: Rig, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R (3, 3), T (3,)) with truth ~ s R estimated + T, for cameras in the same order.

    The rotation maximises the centres' Umeyama term plus the orientations' agreement (each camera's
    R_truth ~ R_est R^T), the two normalised to the same weight, so it is defined even for two cameras
    or collinear centres; s and T then follow from the centres (least squares), s = 1 if not with_scale.
    """
    if len(estimated) != len(truth):
        raise ValueError(f"rigs differ in size: {len(estimated)} vs {len(truth)} cameras")
    ce, ct = estimated.centers, truth.centers
    me, mt = ce.mean(axis=0), ct.mean(axis=0)
    de, dt = ce - me, ct - mt
    M_centres = dt.T @ de                                                  # sum (ct - mt)(ce - me)^T
    norm = np.sqrt((de ** 2).sum() * (dt ** 2).sum())
    Re = np.stack([c.R for c in estimated])
    Rt = np.stack([c.R for c in truth])
    M_orient = np.einsum("cji,cjk->ik", Rt, Re)                            # sum R_t^T R_e
    M = (M_centres / norm if norm > 0 else 0.0) + M_orient / len(truth)
    R = _proper(M)
    rotated = de @ R.T
    s = float((dt * rotated).sum() / (rotated ** 2).sum()) if with_scale and (rotated ** 2).sum() > 0 else 1.0
    T = mt - s * R @ me
    return s, R, T


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle (deg) of Ra Rb^T for (..., 3, 3) rotations."""
    Rd = np.matmul(Ra, np.swapaxes(Rb, -1, -2))
    cos = (np.trace(Rd, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def compare_rigs(estimated: Rig, truth: Rig, with_scale: bool = True) -> dict:
    """Per camera rotation error (deg) and centre error (mm) of `estimated` after aligning it to `truth`.

    Cameras are paired by name when both rigs have the same names, else by order. Returns a dict:
    names, rotation_error_deg (C,), centre_error_mm (C,) (truth units are metres), max of both,
    scale (s of the alignment: truth ~ s x estimated), scale_error_pct = (1 / s - 1) x 100 (positive:
    the estimate is too large), alignment (s, R, T as lists) and the aligned rig ("aligned", a Rig).
    """
    if len(estimated) != len(truth):
        raise ValueError(f"rigs differ in size: {len(estimated)} vs {len(truth)} cameras")
    if sorted(estimated.names) == sorted(truth.names):
        estimated = estimated.subset(truth.names)
    s, R, T = align_rigs(estimated, truth, with_scale)
    aligned = apply_similarity(estimated, s, R, T)
    rot = rotation_angle_deg(np.stack([c.R for c in aligned]), np.stack([c.R for c in truth]))
    centre = np.linalg.norm(aligned.centers - truth.centers, axis=1) * 1e3
    return {
        "names": truth.names,
        "rotation_error_deg": rot,
        "centre_error_mm": centre,
        "max_rotation_error_deg": float(rot.max()) if rot.size else 0.0,
        "max_centre_error_mm": float(centre.max()) if centre.size else 0.0,
        "scale": s,
        "scale_error_pct": (1.0 / s - 1.0) * 100.0,
        "alignment": {"s": s, "R": R.tolist(), "T": T.tolist()},
        "aligned": aligned,
    }


__all__ = ["align_rigs", "apply_similarity", "compare_rigs", "rotation_angle_deg"]


def errors_in_camera0_frame(estimated: Rig, truth: Rig) -> dict[str, dict]:
    """Per camera focal error %, rotation error deg and centre error mm, both rigs expressed in their
    camera 0's optical frame (for metric calibrations such as a board's, where no similarity is unknown)."""
    ref_t, ref_e = truth[0], estimated[0]
    out = {}
    for t, e in zip(truth, estimated):
        c_t, c_e = ref_t.world_to_camera(t.center), ref_e.world_to_camera(e.center)
        out[t.name] = {
            "focal_error_pct": 100 * max(abs(e.K[0, 0] / t.K[0, 0] - 1), abs(e.K[1, 1] / t.K[1, 1] - 1)),
            "rotation_error_deg": float(rotation_angle_deg(e.R @ ref_e.R.T, t.R @ ref_t.R.T)),
            "centre_error_mm": 1000 * float(np.linalg.norm(c_e - c_t)),
        }
    return out
