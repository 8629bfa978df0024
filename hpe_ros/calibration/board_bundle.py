"""Bundle adjustment of a board calibration: camera extrinsics, one rigid board pose per frame and,
optionally, intrinsics, against the detected corners.

Unlike `hpe_ros.calibration.bundle` (free 3D points, numeric Jacobian), the board's corners move
together: each frame has one 6-dof pose and the board's known geometry fixes the scale. Parameters are
[cameras 1.. (Rodrigues vector, t) | frames (Rodrigues vector, t) board -> world | free intrinsics per
camera]; camera 0 stays the world frame (the gauge). Residuals are reprojection errors in pixels with
an analytic Jacobian in a sparse matrix whose structure is built with numpy; each `adjust_in_rounds`
round (thresholds such as 10, 3, 1.5 px) leaves out, per camera, observations above
`round_limits` and solves with ``scipy.optimize.least_squares`` (trf, LSMR steps, robust `loss`).

    >>> obs = BoardObservations.build(names, usable, poses, frame_pose)
    >>> problem = BoardBundleProblem(obs, board.object_points(), intrinsics, cam_R, cam_t, frame_pose, False, flags)
    >>> x, rounds = adjust_in_rounds(problem, problem.initial(), (10.0, 3.0, 1.5), "soft_l1")
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpe_ros.camera import Camera, rodrigues, rotation_to_rvec
from hpe_ros.io.calibration_validate import CalibrationError


def round_limits(errors: np.ndarray, camera: np.ndarray, n_cameras: int, threshold: float) -> np.ndarray:
    """Per camera outlier limit (C,) px for one adjustment round: min(threshold, 5 x the camera's median
    error), at least 0.5 px. Per camera, so that one camera still far off before the adjustment keeps
    its corners; scaled by the median, so that clean data also lose their few stray corners."""
    limits = np.full(n_cameras, float(threshold))
    for i in range(n_cameras):
        mine = errors[camera == i]
        if mine.size:
            limits[i] = max(min(float(threshold), 5.0 * float(np.median(mine))), 0.5)
    return limits


@dataclass
class BoardObservations:
    """Every kept corner of every view, flattened: M observations."""

    camera: np.ndarray   # (M,) camera index
    frame: np.ndarray    # (M,) frame number
    slot: np.ndarray     # (M,) index into the list of frames
    point: np.ndarray    # (M,) board corner id
    uv: np.ndarray       # (M, 2) px
    frames: list         # frame numbers by slot

    @classmethod
    def build(cls, names, usable, poses, frame_pose) -> BoardObservations:
        """From the views with a pose: usable[name][frame] = (ids (n,), corners (n, 2) px), poses[name] holds
        the frames that have one, frame_pose the frames kept (one slot each, in frame order)."""
        frames = sorted(frame_pose)
        slot_of = {f: k for k, f in enumerate(frames)}
        cam, frm, pts, uv = [], [], [], []
        for i, name in enumerate(names):
            for f in sorted(poses[name]):
                ids, px = usable[name][f]
                cam.append(np.full(len(ids), i))
                frm.append(np.full(len(ids), f))
                pts.append(ids)
                uv.append(px)
        frm = np.concatenate(frm)
        return cls(np.concatenate(cam), frm, np.array([slot_of[f] for f in frm]), np.concatenate(pts),
                   np.concatenate(uv), frames)


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    z = np.zeros(v.shape[:-1])
    return np.stack([z, -v[..., 2], v[..., 1], v[..., 2], z, -v[..., 0], -v[..., 1], v[..., 0], z],
                    axis=-1).reshape(v.shape[:-1] + (3, 3))


def _rotate_jacobian(v: np.ndarray, R: np.ndarray, q: np.ndarray) -> np.ndarray:
    """d(R(v) q)/dv (m, 3, 3) for Rodrigues vectors v (m, 3), R = R(v) (m, 3, 3), points q (m, 3).

    Gallego & Yezzi (2015): -R [q]x (v v^T + (R^T - I) [v]x) / |v|^2; -[q]x at v = 0.
    """
    theta2 = np.einsum("mi,mi->m", v, v)
    small = theta2 < 1e-16
    safe = np.where(small, 1.0, theta2)
    inner = (v[:, :, None] * v[:, None, :] + (np.transpose(R, (0, 2, 1)) - np.eye(3)) @ _skew(v)) / safe[:, None, None]
    out = -R @ _skew(q) @ inner
    if small.any():
        out[small] = -_skew(q[small])
    return out


class BoardBundleProblem:
    """Parameters: [cameras 1.. (rvec, t) | frames (rvec, t) board -> world | free intrinsics per camera].

    Residuals: reprojection errors (u, v) px of each observation; analytic Jacobian.
    """

    def __init__(self, obs: BoardObservations, obj, intrinsics, cam_R, cam_t, frame_pose, refine_intrinsics, flags):
        """obj: (N, 3) board corners (m); intrinsics: per camera (K (3, 3), dist (8,)); cam_R, cam_t: camera
        index -> world -> camera pose; frame_pose: frame -> (R, t) board -> world; refine_intrinsics and the
        cv2.CALIB_* `flags` (FIX_K3, ZERO_TANGENT_DIST, FIX_PRINCIPAL_POINT) choose the free intrinsics."""
        import cv2

        self.obs, self.obj = obs, obj
        self.C, self.F = len(intrinsics), len(obs.frames)
        self.K0 = np.stack([K for K, _ in intrinsics])
        self.dist0 = np.stack([d for _, d in intrinsics])
        self.cam_R0 = np.stack([cam_R[i] for i in range(self.C)])
        self.cam_t0 = np.stack([cam_t[i] for i in range(self.C)])
        self.frame_R0 = np.stack([frame_pose[f][0] for f in obs.frames])
        self.frame_t0 = np.stack([frame_pose[f][1] for f in obs.frames])
        free = np.zeros(9, bool)
        if refine_intrinsics:
            free[:8] = True
            free[8] = not (flags & cv2.CALIB_FIX_K3)
            if flags & cv2.CALIB_ZERO_TANGENT_DIST:
                free[6:8] = False
            if flags & cv2.CALIB_FIX_PRINCIPAL_POINT:
                free[2:4] = False
        self.free_intrinsics = free
        self.n_free = int(free.sum())
        self.n_cam = 6 * (self.C - 1)
        self.n_frame = 6 * self.F
        self.n_intr = self.n_free * self.C
        self.n_params = self.n_cam + self.n_frame + self.n_intr

    def initial(self) -> np.ndarray:
        cams = [np.r_[rotation_to_rvec(self.cam_R0[i]), self.cam_t0[i]] for i in range(1, self.C)]
        frames = [np.r_[rotation_to_rvec(self.frame_R0[k]), self.frame_t0[k]] for k in range(self.F)]
        intr = [self._intrinsic_vector(i)[self.free_intrinsics] for i in range(self.C)]
        return np.concatenate([np.ravel(cams), np.ravel(frames), np.ravel(intr)])

    def _intrinsic_vector(self, i: int) -> np.ndarray:
        """Camera i's starting (fx, fy, cx, cy, k1, k2, p1, p2, k3): the order of the free intrinsics."""
        K, d = self.K0[i], self.dist0[i]
        return np.r_[K[0, 0], K[1, 1], K[0, 2], K[1, 2], d[0], d[1], d[2], d[3], d[4]]

    def unpack(self, x: np.ndarray):
        cams = x[: self.n_cam].reshape(-1, 6)
        frames = x[self.n_cam: self.n_cam + self.n_frame].reshape(-1, 6)
        cam_v = np.concatenate([np.zeros((1, 3)), cams[:, :3]])
        cam_t = np.concatenate([np.zeros((1, 3)), cams[:, 3:]])
        intr = np.stack([self._intrinsic_vector(i) for i in range(self.C)])
        if self.n_intr:
            intr[:, self.free_intrinsics] = x[self.n_cam + self.n_frame:].reshape(self.C, -1)
        return cam_v, rodrigues(cam_v), cam_t, frames[:, :3], rodrigues(frames[:, :3]), frames[:, 3:], intr

    def project(self, x: np.ndarray, rows: np.ndarray | None = None, jacobian: bool = False):
        """Pixels (m, 2) of the observed corners under parameters x (rows: a subset of observations);
        with jacobian=True also the sparse Jacobian (2m, n_params) of the pixels."""
        o = self.obs
        sel = np.arange(len(o.camera)) if rows is None else rows
        cam, slot, point = o.camera[sel], o.slot[sel], o.point[sel]
        cam_v, cam_R, cam_t, frame_v, frame_R, frame_t, intr = self.unpack(x)
        P = self.obj[point]
        Rc, Rf = cam_R[cam], frame_R[slot]
        Xw = np.einsum("mij,mj->mi", Rf, P) + frame_t[slot]
        Xc = np.einsum("mij,mj->mi", Rc, Xw) + cam_t[cam]
        z = Xc[:, 2]
        x_, y_ = Xc[:, 0] / z, Xc[:, 1] / z
        fx, fy, cx, cy, k1, k2, p1, p2, k3 = intr[cam].T
        k4, k5, k6 = self.dist0[cam, 5:].T
        skew = self.K0[cam, 0, 1]
        r2 = x_ * x_ + y_ * y_
        a = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        b = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
        radial = a / b
        xd = x_ * radial + 2 * p1 * x_ * y_ + p2 * (r2 + 2 * x_ * x_)
        yd = y_ * radial + p1 * (r2 + 2 * y_ * y_) + 2 * p2 * x_ * y_
        uv = np.stack([fx * xd + skew * yd + cx, fy * yd + cy], axis=1)
        if not jacobian:
            return uv
        m = len(sel)
        # d(xd, yd) / d(x, y)
        da = k1 + r2 * (2 * k2 + 3 * k3 * r2)
        db = k4 + r2 * (2 * k5 + 3 * k6 * r2)
        drad = (da * b - a * db) / (b * b)  # d radial / d r2
        D = np.empty((m, 2, 2))
        D[:, 0, 0] = radial + 2 * x_ * x_ * drad + 2 * p1 * y_ + 6 * p2 * x_
        D[:, 0, 1] = 2 * x_ * y_ * drad + 2 * p1 * x_ + 2 * p2 * y_
        D[:, 1, 0] = 2 * x_ * y_ * drad + 2 * p1 * x_ + 2 * p2 * y_
        D[:, 1, 1] = radial + 2 * y_ * y_ * drad + 6 * p1 * y_ + 2 * p2 * x_
        Kp = np.zeros((m, 2, 2))
        Kp[:, 0, 0], Kp[:, 0, 1], Kp[:, 1, 1] = fx, skew, fy
        B = np.zeros((m, 2, 3))  # d(x, y) / dXc
        B[:, 0, 0] = B[:, 1, 1] = 1 / z
        B[:, 0, 2], B[:, 1, 2] = -x_ / z, -y_ / z
        G = Kp @ D @ B  # d(u, v) / dXc   (m, 2, 3)
        blocks = []  # (column start per observation (m,), values (m, 2, width), mask (m,))
        GRc = G @ Rc
        if self.n_cam:
            Jc = np.concatenate([G @ _rotate_jacobian(cam_v[cam], Rc, Xw), G], axis=2)
            blocks.append((6 * (cam - 1), Jc, cam > 0))
        Jf = np.concatenate([GRc @ _rotate_jacobian(frame_v[slot], Rf, P), GRc], axis=2)
        blocks.append((self.n_cam + 6 * slot, Jf, np.ones(m, bool)))
        if self.n_intr:
            dd = np.zeros((m, 2, 5))  # d(xd, yd) / d(k1, k2, p1, p2, k3)
            dd[:, 0, 0], dd[:, 1, 0] = x_ * r2 / b, y_ * r2 / b
            dd[:, 0, 1], dd[:, 1, 1] = x_ * r2 ** 2 / b, y_ * r2 ** 2 / b
            dd[:, 0, 4], dd[:, 1, 4] = x_ * r2 ** 3 / b, y_ * r2 ** 3 / b
            dd[:, 0, 2], dd[:, 1, 2] = 2 * x_ * y_, r2 + 2 * y_ * y_
            dd[:, 0, 3], dd[:, 1, 3] = r2 + 2 * x_ * x_, 2 * x_ * y_
            Ji = np.zeros((m, 2, 9))
            Ji[:, 0, 0], Ji[:, 1, 1], Ji[:, 0, 2], Ji[:, 1, 3] = xd, yd, 1.0, 1.0
            Ji[:, :, 4:] = Kp @ dd[:, :, [0, 1, 2, 3, 4]]
            blocks.append((self.n_cam + self.n_frame + self.n_free * cam, Ji[:, :, self.free_intrinsics],
                           np.ones(m, bool)))
        rows_i, cols_i, vals = [], [], []
        for start, values, mask in blocks:
            idx = np.flatnonzero(mask)
            width = values.shape[2]
            r = (2 * idx[:, None] + np.arange(2)[None, :])[:, :, None].repeat(width, axis=2)
            c = (start[idx][:, None, None] + np.arange(width)[None, None, :]).repeat(2, axis=1)
            rows_i.append(r.ravel())
            cols_i.append(c.ravel())
            vals.append(values[idx].ravel())
        from scipy.sparse import csr_matrix

        J = csr_matrix((np.concatenate(vals), (np.concatenate(rows_i), np.concatenate(cols_i))),
                       shape=(2 * m, self.n_params))
        return uv, J

    def errors(self, x: np.ndarray) -> np.ndarray:
        """(M,) reprojection error norms, px."""
        return np.linalg.norm(self.project(x) - self.obs.uv, axis=1)

    def solve(self, x0: np.ndarray, keep: np.ndarray, loss: str):
        """One least-squares run over the kept observations; frames left with < 4 kept corners stay put.

        Returns (x, number of function evaluations)."""
        from scipy.optimize import least_squares

        rows = np.flatnonzero(keep)
        counts = np.bincount(self.obs.slot[rows], minlength=self.F)
        rows = rows[counts[self.obs.slot[rows]] >= 4]
        if len(rows) == 0:
            raise CalibrationError("bundle adjustment: no observations left under the outlier threshold")
        active = np.zeros(len(x0), bool)
        cams_used = set(np.unique(self.obs.camera[rows]).tolist())
        for i in range(1, self.C):
            active[6 * (i - 1): 6 * i] = i in cams_used
        for k in np.unique(self.obs.slot[rows]):
            active[self.n_cam + 6 * k: self.n_cam + 6 * k + 6] = True
        for i in cams_used:
            start = self.n_cam + self.n_frame + self.n_free * i
            active[start: start + self.n_free] = True
        uv = self.obs.uv[rows].ravel()
        x = x0.copy()
        cache = {}

        def evaluate(z):
            key = z.tobytes()
            if key not in cache:
                cache.clear()
                x[active] = z
                px, J = self.project(x, rows, jacobian=True)
                cache[key] = (px.ravel() - uv, J[:, active])
            return cache[key]

        # Sparse LSMR steps (tight tolerances: the default ones stall the trust region): no dense SVD,
        # which grows with frames x observations and crawls on a loaded multi-threaded BLAS.
        result = least_squares(lambda z: evaluate(z)[0], x0[active], jac=lambda z: evaluate(z)[1], loss=loss,
                               f_scale=1.0, x_scale="jac", method="trf", tr_solver="lsmr",
                               tr_options={"atol": 1e-14, "btol": 1e-14, "maxiter": 2000},
                               xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=200)
        out = x0.copy()
        out[active] = result.x
        return out, int(result.nfev)

    def result(self, x: np.ndarray, names, sizes) -> tuple[list[Camera], dict]:
        """(cameras named `names` with sizes `sizes`, frame -> (R (3, 3), t (3,)) board -> world) at x."""
        _, cam_R, cam_t, _, frame_R, frame_t, intr = self.unpack(x)
        cameras = []
        for i, name in enumerate(names):
            K = self.K0[i].copy()
            K[0, 0], K[1, 1], K[0, 2], K[1, 2] = intr[i, :4]
            dist = self.dist0[i].copy()
            dist[:5] = intr[i, 4:9]
            cameras.append(Camera(name, K, dist, cam_R[i], cam_t[i], tuple(sizes[i])))
        poses = {f: (frame_R[k], frame_t[k]) for k, f in enumerate(self.obs.frames)}
        return cameras, poses


def adjust_in_rounds(problem: BoardBundleProblem, x: np.ndarray, thresholds: Sequence[float], loss: str
                     ) -> tuple[np.ndarray, list[dict]]:
    """One `solve` per threshold (px), each over the observations under that round's `round_limits`
    (recomputed from all observations each round, so a corner dropped early comes back).
    Returns (parameters, one dict per round: threshold_px, limit_px, observations, dropped, rms_px, nfev)."""
    obs, rounds = problem.obs, []
    for threshold in thresholds:
        errors = problem.errors(x)
        limits = round_limits(errors, obs.camera, problem.C, threshold)
        keep = errors <= limits[obs.camera]
        x, nfev = problem.solve(x, keep, loss)
        rounds.append({"threshold_px": threshold, "limit_px": [round(float(v), 3) for v in limits],
                       "observations": int(keep.sum()), "dropped": int((~keep).sum()),
                       "rms_px": float(np.sqrt(np.mean(problem.errors(x)[keep] ** 2))), "nfev": nfev})
    return x, rounds


__all__ = ["BoardObservations", "BoardBundleProblem", "round_limits", "adjust_in_rounds"]
