"""Multi-camera calibration from a moving board: intrinsics, extrinsics, bundle adjustment, report.

    rig, report = calibrate_board({"cam0": "calib/cam0", "cam1": "calib/cam1.mp4"},
                                  Board.charuco(7, 5, 0.14, 0.105))
    print(format_board_report(report))
    render_board_report(report, "calib/report.png")
    save_rig(rig, "calib/rig.toml")

Steps:

1. Detection. Every frame of every source (`board.read_frames`: a folder of images sorted by name, or
   a video); frames are matched across cameras by index.
2. Intrinsics per camera. ``cv2.calibrateCamera`` on at most `max_views` views chosen to spread over
   the image, scale and tilt (farthest-point sampling); then up to two more passes without outliers:
   corners farther than max(5 x the median corner error, 0.5 px) from the fit, and views whose RMS
   is far above the rest (> max(3 x median, 1 px)).
   Flags: `DEFAULT_INTRINSIC_FLAGS` = ``cv2.CALIB_FIX_K3``: fx, fy, cx, cy, k1, k2, p1, p2 are
   estimated and k3 stays 0, because a board rarely reaches the image corners where k3 matters. Pass
   e.g. ``cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST`` for lenses without tangential distortion
   (steadier principal point), ``cv2.CALIB_RATIONAL_MODEL`` (k1..k6) or any other cv2.CALIB_* set.
3. Board pose per view: ``cv2.solvePnPGeneric`` (IPPE, both planar solutions tried) refined with
   Levenberg-Marquardt, refitted once without corners beyond max(5 x median, 0.5 px); views with a
   pose RMS above the first outlier threshold are dropped.
4. Extrinsics. For every pair of cameras, the relative pose from each frame where both saw the board,
   averaged robustly (rotations: chordal L1 mean of quaternions by iteratively reweighted
   eigen-averaging; translations: geometric median). A pair's quality is its number of shared views.
   A maximum spanning tree grown from the first camera chains the pairs into an initial rig whose world
   frame is the first camera's optical frame. A camera that shares no views with the tree is an error.
5. Bundle adjustment (``scipy.optimize.least_squares``, trf, `loss` = soft_l1 with a 1 px scale,
   analytic Jacobian in a sparse matrix whose structure is built with numpy, LSMR trust-region
   steps): camera extrinsics (the first camera stays the world frame and fixes the gauge; the board's
   known square size fixes the scale) and one rigid board pose per frame (6 dof), optionally
   intrinsics (`refine_intrinsics`: fx, fy, cx, cy, k1, k2, p1, p2, and k3 unless CALIB_FIX_K3; off by
   default; on a synthetic 4-camera ring it halves the worst camera-centre error, see the tests).
   Residuals are reprojection errors in pixels. Before each round of `thresholds` (10, 3, 1.5 px)
   each camera's observations above min(threshold, 5 x that camera's median error), but never below
   0.5 px, are left out (recomputed from all observations each round, so a corner dropped early comes
   back; per camera, so a camera still far off before the first round keeps its corners).
6. World frame: `world="camera0"` (default) keeps the first camera's optical frame; `world="board"`
   re-expresses everything in the board frame of the first frame seen (x, y on the board, z into it).

The report holds per camera the views detected / used for intrinsics / used in the adjustment, and
reprojection RMS and 50/90/99th percentiles (px) before and after bundle adjustment; see
`format_board_report` (text) and `render_board_report` (picture).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hpe_ros.camera import Camera, Rig, rodrigues, rotation_to_rvec
from hpe_ros.calibration.board import Board, count_frames, read_frames
from hpe_ros.calibration.validate import CalibrationError, validate_camera

DEFAULT_INTRINSIC_FLAGS = 128  # cv2.CALIB_FIX_K3 (cv2 is imported only where it is used)

DEFAULT_THRESHOLDS = (10.0, 3.0, 1.5)

Detections = dict  # camera name -> {frame index: (ids (n,), corners (n, 2) px)}


# --- report ------------------------------------------------------------------------------------------
def error_stats(errors: np.ndarray) -> dict:
    """Reprojection error norms (n,) px -> {n, rms, p50, p90, p99} (NaN when empty)."""
    e = np.asarray(errors, dtype=np.float64)
    if e.size == 0:
        return {"n": 0, "rms": float("nan"), "p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    p50, p90, p99 = np.percentile(e, [50, 90, 99])
    return {"n": int(e.size), "rms": float(np.sqrt(np.mean(e ** 2))), "p50": float(p50), "p90": float(p90),
            "p99": float(p99)}


@dataclass
class CameraBoardReport:
    """One camera's share of a board calibration. Errors in pixels."""

    name: str
    size: tuple[int, int]
    frames: int = 0                 # frames read
    detected: int = 0               # frames where the board was found (with enough corners)
    intrinsics_views: int = 0       # views calibrateCamera used (after rejection)
    intrinsics_rejected: int = 0    # views dropped for a high per-view error
    intrinsics_corners_rejected: int = 0  # outlier corners left out of the intrinsics
    intrinsics_rms: float = float("nan")
    pose_rejected: int = 0          # views whose single-camera board pose did not fit
    pose_corners_rejected: int = 0  # outlier corners left out after the per-view pose
    extrinsics_views: int = 0       # views that took part in the bundle adjustment (final round)
    observations: int = 0           # corners kept in the final round
    dropped: int = 0                # corners left out as outliers in the final round
    before: dict = field(default_factory=dict)   # error_stats before bundle adjustment (all corners)
    after: dict = field(default_factory=dict)    # error_stats after, over kept corners
    after_all: dict = field(default_factory=dict)  # error_stats after, over all corners (outliers too)
    errors_before: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    errors_after: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()
                if not isinstance(v, np.ndarray)}


@dataclass
class BoardCalibrationReport:
    board: str
    cameras: list[CameraBoardReport]
    world: str
    pairs: dict = field(default_factory=dict)      # "camA-camB" -> shared views
    tree: list = field(default_factory=list)       # (parent, child, shared views), from the first camera
    rounds: list = field(default_factory=list)     # per BA round: threshold, observations, dropped, rms, nfev
    refine_intrinsics: bool = False
    intrinsic_flags: int = 0
    seconds: dict = field(default_factory=dict)    # detect, intrinsics, extrinsics, bundle_adjustment, total
    rig: Rig | None = field(default=None, repr=False)
    initial_rig: Rig | None = field(default=None, repr=False)   # the spanning-tree rig, before the adjustment
    board_poses: dict = field(default_factory=dict, repr=False)  # frame -> (R (3, 3), t (3,)) board -> world
    detections: dict = field(default_factory=dict, repr=False)   # camera -> {frame: (ids, corners px)}, as detected
    sizes: dict = field(default_factory=dict, repr=False)        # camera -> (w, h)

    def camera(self, name: str) -> CameraBoardReport:
        return next(c for c in self.cameras if c.name == name)

    def to_dict(self) -> dict:
        return {"board": self.board, "world": self.world, "cameras": [c.to_dict() for c in self.cameras],
                "pairs": dict(self.pairs), "tree": [list(e) for e in self.tree], "rounds": list(self.rounds),
                "refine_intrinsics": self.refine_intrinsics, "intrinsic_flags": int(self.intrinsic_flags),
                "seconds": dict(self.seconds)}


# --- entry points ------------------------------------------------------------------------------------
def detect_board_views(sources: Mapping[str, str | os.PathLike], board: Board, progress: bool = True,
                       step: int = 1) -> tuple[Detections, dict, dict]:
    """Detect `board` in every frame of every source.

    sources: camera name -> folder of images or video file. Returns (detections: name -> {frame:
    (ids (n,), corners (n, 2) px)}, sizes: name -> (w, h), frames read: name -> count).
    """
    detections, sizes, counts = {}, {}, {}
    for name, source in sources.items():
        if not Path(source).exists():
            raise CalibrationError(f"camera {name!r}: source {str(source)!r} does not exist")
        found, size, n = {}, None, 0
        frames = read_frames(source, step=step)
        if progress:
            from tqdm import tqdm

            total = count_frames(source)
            frames = tqdm(frames, total=(total + step - 1) // step if total else None,
                          desc=f"detect {name}", unit="frame", leave=False)
        try:
            for index, image in frames:
                n += 1
                h, w = image.shape[:2]
                if size is None:
                    size = (w, h)
                elif size != (w, h):
                    raise CalibrationError(f"camera {name!r}: frame {index} is {w}x{h} but earlier frames are "
                                           f"{size[0]}x{size[1]}")
                result = board.detect(image)
                if result is not None:
                    found[index] = result
        except (ValueError, OSError) as e:
            if isinstance(e, CalibrationError):
                raise
            raise CalibrationError(f"camera {name!r}: {e}") from e
        if n == 0:
            raise CalibrationError(f"camera {name!r}: no frames in {str(source)!r}")
        detections[name], sizes[name], counts[name] = found, size, n
    return detections, sizes, counts


def calibrate_board(sources: Mapping[str, str | os.PathLike], board: Board,
                    camera_sizes: Mapping[str, Sequence[int]] | None = None, progress: bool = True,
                    max_views: int = 40, *, step: int = 1, intrinsic_flags: int = DEFAULT_INTRINSIC_FLAGS,
                    refine_intrinsics: bool = False, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                    loss: str = "soft_l1", world: str = "camera0", min_corners: int = 6,
                    ) -> tuple[Rig, BoardCalibrationReport]:
    """Calibrate a rig from synchronised videos / image folders of a moving board.

    sources: camera name -> folder of images (sorted by name) or video file; the first camera is the
    reference (world frame unless world="board"). camera_sizes: optional name -> (w, h) the images
    must have. max_views: most views per camera given to cv2.calibrateCamera (spread-out subset).
    step: read every step-th frame. See the module docstring for the method and the other options.
    Returns (Rig with the sources' camera names, BoardCalibrationReport). Raises CalibrationError
    naming the camera when a camera has too few views or shares none with the others.
    """
    t0 = time.perf_counter()
    detections, sizes, counts = detect_board_views(sources, board, progress=progress, step=step)
    if camera_sizes:
        for name, expected in camera_sizes.items():
            if name in sizes and tuple(int(v) for v in expected) != tuple(sizes[name]):
                raise CalibrationError(f"camera {name!r}: images are {sizes[name][0]}x{sizes[name][1]} but "
                                       f"camera_sizes says {expected[0]}x{expected[1]}")
    rig, report = calibrate_from_detections(
        detections, board, sizes, max_views=max_views, intrinsic_flags=intrinsic_flags,
        refine_intrinsics=refine_intrinsics, thresholds=thresholds, loss=loss, world=world,
        min_corners=min_corners, frames_read=counts)
    report.seconds["detect"] = time.perf_counter() - t0 - sum(report.seconds.values())
    report.seconds["total"] = time.perf_counter() - t0
    return rig, report


def calibrate_from_detections(detections: Detections, board: Board, sizes: Mapping[str, Sequence[int]],
                              max_views: int = 40, *, intrinsic_flags: int = DEFAULT_INTRINSIC_FLAGS,
                              refine_intrinsics: bool = False, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                              loss: str = "soft_l1", world: str = "camera0", min_corners: int = 6,
                              frames_read: Mapping[str, int] | None = None,
                              initial_intrinsics: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                              ) -> tuple[Rig, BoardCalibrationReport]:
    """`calibrate_board` from detections already made (name -> {frame: (ids, corners)}), sizes: name -> (w, h).

    initial_intrinsics: optional name -> (K (3, 3), dist) to skip step 2 for those cameras (e.g. from
    an earlier intrinsics-only session).
    """
    if world not in ("camera0", "board"):
        raise ValueError(f"world must be 'camera0' or 'board', got {world!r}")
    if not detections:
        raise CalibrationError("no cameras given")
    thresholds = tuple(float(v) for v in thresholds) or DEFAULT_THRESHOLDS
    names = list(detections)
    obj = board.object_points()
    seconds = {}
    reports = {n: CameraBoardReport(n, tuple(int(v) for v in sizes[n]),
                                    frames=int((frames_read or {}).get(n, 0))) for n in names}

    # 2. intrinsics ------------------------------------------------------------------------------
    t = time.perf_counter()
    intrinsics, usable = {}, {}
    for name in names:
        views = {f: d for f, d in detections[name].items() if _usable_view(board, d, min_corners)}
        usable[name] = views
        reports[name].detected = len(views)
        if initial_intrinsics and name in initial_intrinsics:
            K, dist = initial_intrinsics[name]
            intrinsics[name] = (np.asarray(K, np.float64).reshape(3, 3), _dist8(dist))
            continue
        if len(views) < 3:
            raise CalibrationError(f"camera {name!r}: the board was found in {len(views)} frame(s) with at least "
                                   f"{min_corners} corners; intrinsics need at least 3 (better 15 or more)")
        K, dist, used, rejected, corners_rejected, rms = _calibrate_intrinsics(
            views, obj, reports[name].size, max_views, intrinsic_flags)
        intrinsics[name] = (K, dist)
        r = reports[name]
        r.intrinsics_views, r.intrinsics_rejected, r.intrinsics_rms = used, rejected, rms
        r.intrinsics_corners_rejected = corners_rejected
    seconds["intrinsics"] = time.perf_counter() - t

    # 3. board pose per view --------------------------------------------------------------------
    t = time.perf_counter()
    poses = {}  # name -> {frame: (R (3, 3), t (3,), rms)}  board -> camera
    for name in names:
        K, dist = intrinsics[name]
        poses[name] = {}
        for f, (ids, px) in sorted(usable[name].items()):
            pose = _board_pose(obj[ids], px, K, dist)
            if pose is None or pose[2] > thresholds[0]:
                reports[name].pose_rejected += 1
                continue
            poses[name][f] = pose[:3]
            usable[name][f] = (ids[pose[3]], px[pose[3]])  # the bundle adjustment sees the inliers only
            reports[name].pose_corners_rejected += int((~pose[3]).sum())

    # 4. extrinsics: pairwise relative poses, maximum spanning tree -------------------------------
    pairs, relative = {}, {}
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            shared = sorted(set(poses[names[a]]) & set(poses[names[b]]))
            if not shared:
                continue
            pairs[(a, b)] = len(shared)
            Ra = np.stack([poses[names[a]][f][0] for f in shared])
            ta = np.stack([poses[names[a]][f][1] for f in shared])
            Rb = np.stack([poses[names[b]][f][0] for f in shared])
            tb = np.stack([poses[names[b]][f][1] for f in shared])
            R_ab = Ra @ np.transpose(Rb, (0, 2, 1))  # camera b -> camera a, per frame
            t_ab = ta - np.einsum("nij,nj->ni", R_ab, tb)
            R_mean = _robust_rotation_mean(R_ab)
            relative[(a, b)] = (R_mean, _geometric_median(t_ab))
    tree = _maximum_spanning_tree(len(names), pairs)
    unreached = [names[i] for i in range(len(names)) if i != 0 and i not in {c for _, c in tree}]
    if unreached:
        detail = ", ".join(f"{names[a]}-{names[b]}: {n}" for (a, b), n in sorted(pairs.items())) or "none"
        raise CalibrationError(
            f"camera {unreached[0]!r}: shares no board views with camera {names[0]!r} or any camera linked to it "
            f"(unlinked: {unreached}; shared views per pair: {detail}); move the board where they overlap")
    cam_R = {0: np.eye(3)}
    cam_t = {0: np.zeros(3)}
    for parent, child in tree:  # x_child = R_cp x_parent + t_cp
        if (child, parent) in relative:
            R_cp, t_cp = relative[(child, parent)]
        else:
            R_pc, t_pc = relative[(parent, child)]
            R_cp, t_cp = R_pc.T, -R_pc.T @ t_pc
        cam_R[child] = R_cp @ cam_R[parent]
        cam_t[child] = R_cp @ cam_t[parent] + t_cp
    # board -> world per frame, from the camera that saw it with most corners (then lowest error)
    frame_pose = {}
    for f in sorted({f for n in names for f in poses[n]}):
        best = min(((-len(usable[n][f][0]), poses[n][f][2], i) for i, n in enumerate(names) if f in poses[n]))
        i = best[2]
        R_cb, t_cb, _ = poses[names[i]][f]
        frame_pose[f] = (cam_R[i].T @ R_cb, cam_R[i].T @ (t_cb - cam_t[i]))
    seconds["extrinsics"] = time.perf_counter() - t

    # 5. bundle adjustment ----------------------------------------------------------------------
    t = time.perf_counter()
    obs = _Observations.build(names, usable, poses, frame_pose, obj)
    problem = _BundleProblem(obs, obj, [intrinsics[n] for n in names], cam_R, cam_t, frame_pose,
                             refine_intrinsics, intrinsic_flags)
    x = problem.initial()
    errors_before = problem.errors(x)
    initial_cameras, _ = problem.result(x, names, [reports[n].size for n in names])
    rounds = []
    for threshold in thresholds:
        errors = problem.errors(x)
        limits = _round_limits(errors, obs.camera, len(names), threshold)
        keep = errors <= limits[obs.camera]
        x, nfev = problem.solve(x, keep, loss)
        rounds.append({"threshold_px": threshold, "limit_px": [round(float(v), 3) for v in limits],
                       "observations": int(keep.sum()), "dropped": int((~keep).sum()),
                       "rms_px": float(np.sqrt(np.mean(problem.errors(x)[keep] ** 2))), "nfev": nfev})
    errors_after = problem.errors(x)
    keep = errors_after <= _round_limits(errors_after, obs.camera, len(names), thresholds[-1])[obs.camera]
    seconds["bundle_adjustment"] = time.perf_counter() - t

    cameras_out, board_poses = problem.result(x, names, [reports[n].size for n in names])
    if world == "board":
        first = min(board_poses)
        R_wb, t_wb = board_poses[first]
        cameras_out = [c.copy(R=c.R @ R_wb, t=c.R @ t_wb + c.t) for c in cameras_out]
        initial_cameras = [c.copy(R=c.R @ R_wb, t=c.R @ t_wb + c.t) for c in initial_cameras]
        board_poses = {f: (R_wb.T @ R, R_wb.T @ (tt - t_wb)) for f, (R, tt) in board_poses.items()}
    for c in cameras_out:
        validate_camera(c, "board calibration")
    rig = Rig(cameras_out)

    for i, name in enumerate(names):
        r = reports[name]
        mine = obs.camera == i
        r.errors_before = errors_before[mine]
        r.errors_after = errors_after[mine & keep]
        r.before, r.after = error_stats(r.errors_before), error_stats(r.errors_after)
        r.after_all = error_stats(errors_after[mine])
        r.observations, r.dropped = int((mine & keep).sum()), int((mine & ~keep).sum())
        r.extrinsics_views = int(len(np.unique(obs.frame[mine & keep])))
    return rig, BoardCalibrationReport(
        board=board.describe(), cameras=[reports[n] for n in names],
        world=f"camera {names[0]!r} optical frame" if world == "camera0" else "board frame of the first frame",
        pairs={f"{names[a]}-{names[b]}": n for (a, b), n in sorted(pairs.items())},
        tree=[(names[p], names[c], pairs[tuple(sorted((p, c)))]) for p, c in tree],
        rounds=rounds, refine_intrinsics=refine_intrinsics, intrinsic_flags=int(intrinsic_flags),
        seconds=seconds, rig=rig, initial_rig=Rig(initial_cameras), board_poses=board_poses, detections=detections,
        sizes={n: reports[n].size for n in names})


def _round_limits(errors: np.ndarray, camera: np.ndarray, n_cameras: int, threshold: float) -> np.ndarray:
    """Per camera outlier limit (C,) px for one adjustment round: min(threshold, 5 x the camera's median
    error), at least 0.5 px. Per camera, so that one camera still far off before the adjustment keeps
    its corners; scaled by the median, so that clean data also lose their few stray corners."""
    limits = np.full(n_cameras, float(threshold))
    for i in range(n_cameras):
        mine = errors[camera == i]
        if mine.size:
            limits[i] = max(min(float(threshold), 5.0 * float(np.median(mine))), 0.5)
    return limits


# --- step 2: intrinsics --------------------------------------------------------------------------------
def _dist8(dist) -> np.ndarray:
    d = np.zeros(8)
    v = np.asarray(dist, np.float64).ravel()[:8]
    d[: v.size] = v
    return d


def _usable_view(board: Board, detection, min_corners: int) -> bool:
    """Enough corners, and not all on one line of the grid (a degenerate plane pose)."""
    ids, _ = detection
    if len(ids) < max(4, min_corners):
        return False
    j, i = np.divmod(np.asarray(ids), board.grid[0])
    return len(np.unique(i)) >= 2 and len(np.unique(j)) >= 2


def _view_features(px: np.ndarray, obj: np.ndarray, size) -> np.ndarray:
    """Where a view is in the image, how big, and how tilted: (5,) roughly unit-scaled."""
    import cv2

    w, h = size
    centre = px.mean(axis=0) / [w, h]
    spread = np.sqrt(np.prod(px.std(axis=0)) / (w * h))
    H, _ = cv2.findHomography(obj[:, :2], px)
    if H is None:
        return np.r_[centre, spread, 0.0, 0.0]
    L = float(np.ptp(obj[:, :2], axis=0).max())
    tilt = H[2, :2] * L / H[2, 2]  # perspective row of K [r1 r2 t]: board tilt over distance
    return np.r_[centre, 3.0 * spread, tilt]


def _select_views(views: dict, obj: np.ndarray, size, max_views: int) -> list:
    """Up to max_views frames spread over image position, scale and tilt (greedy farthest point)."""
    frames = sorted(views)
    if len(frames) <= max_views:
        return frames
    features = np.stack([_view_features(views[f][1], obj[views[f][0]], size) for f in frames])
    chosen = [int(np.argmax([len(views[f][0]) for f in frames]))]
    distance = np.linalg.norm(features - features[chosen[0]], axis=1)
    while len(chosen) < max_views:
        k = int(np.argmax(distance))
        chosen.append(k)
        distance = np.minimum(distance, np.linalg.norm(features - features[k], axis=1))
    return [frames[k] for k in sorted(chosen)]


def _outlier_limit(errors: np.ndarray) -> float:
    """Corner errors above this are outliers: 5 x the median error, at least 0.5 px."""
    return max(5.0 * float(np.median(errors)), 0.5)


def _calibrate_intrinsics(views: dict, obj: np.ndarray, size, max_views: int, flags: int):
    """cv2.calibrateCamera on a spread-out subset, then up to two more passes without the outliers:
    corners whose error exceeds `_outlier_limit` and views whose RMS exceeds max(3 x median, 1 px).

    Returns (K, dist (8,), views used, views rejected, corners rejected, RMS px).
    """
    import cv2

    frames = _select_views(views, obj, size, max_views)
    data = {f: views[f] for f in frames}
    n_views, n_corners = len(data), sum(len(d[0]) for d in data.values())
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-10)
    for attempt in range(3):
        keys = sorted(data)
        object_points = [obj[data[f][0]].astype(np.float32) for f in keys]
        image_points = [data[f][1].astype(np.float32) for f in keys]
        rms, K, dist, rvecs, tvecs, _, _, per_view = cv2.calibrateCameraExtended(
            object_points, image_points, tuple(int(v) for v in size), None, None, flags=flags, criteria=criteria)
        if attempt == 2:
            break
        errors = [np.linalg.norm(cv2.projectPoints(o, rv, tv, K, dist)[0].reshape(-1, 2) - p, axis=1)
                  for o, p, rv, tv in zip(object_points, image_points, rvecs, tvecs)]
        corner_limit = _outlier_limit(np.concatenate(errors))
        per_view = np.asarray(per_view).ravel()
        view_limit = max(3.0 * float(np.median(per_view)), 1.0)
        cleaned = {}
        for f, e, v in zip(keys, errors, per_view):
            ok = e <= corner_limit
            if v <= view_limit and ok.sum() >= 4:
                cleaned[f] = (data[f][0][ok], data[f][1][ok])
        unchanged = len(cleaned) == len(data) and all(len(cleaned[f][0]) == len(data[f][0]) for f in data)
        if len(cleaned) < 3 or unchanged:
            break
        data = cleaned
    used_corners = sum(len(d[0]) for d in data.values())
    return K, _dist8(dist), len(data), n_views - len(data), n_corners - used_corners, float(rms)


# --- step 3: board pose per view --------------------------------------------------------------------
def _board_pose(obj: np.ndarray, px: np.ndarray, K: np.ndarray, dist: np.ndarray):
    """Board -> camera (R (3, 3), t (3,), RMS px, inlier mask (n,)) from one view, or None.

    Corners farther than `_outlier_limit` from the fitted pose are left out and the pose fitted again.
    """
    import cv2

    keep = np.ones(len(obj), bool)
    best = None
    for _ in range(2):
        o, p = obj[keep].astype(np.float64), px[keep].astype(np.float64).reshape(-1, 1, 2)
        try:
            _, rvecs, tvecs, _ = cv2.solvePnPGeneric(o, p, K, dist, flags=cv2.SOLVEPNP_IPPE)
        except cv2.error:
            return best
        candidate = None
        for rvec, tvec in zip(rvecs, tvecs):
            rvec, tvec = cv2.solvePnPRefineLM(o, p, K, dist, rvec.copy(), tvec.copy())
            proj, _ = cv2.projectPoints(obj.astype(np.float64), rvec, tvec, K, dist)
            errors = np.linalg.norm(proj.reshape(-1, 2) - px, axis=1)
            rms = float(np.sqrt(np.mean(errors[keep] ** 2)))
            if tvec.ravel()[2] > 0 and (candidate is None or rms < candidate[2]):
                candidate = (rodrigues(rvec.ravel()), tvec.ravel().copy(), rms, errors)
        if candidate is None:
            return best
        best = candidate[:3] + (keep.copy(),)
        inliers = candidate[3] <= _outlier_limit(candidate[3][keep])
        if inliers.sum() < 4 or np.array_equal(inliers, keep):
            break
        keep = inliers
    return best


# --- step 4: averaging and the spanning tree ---------------------------------------------------------
def _robust_rotation_mean(Rs: np.ndarray, iterations: int = 10) -> np.ndarray:
    """(n, 3, 3) -> (3, 3): chordal L1 mean by iteratively reweighted quaternion eigen-averaging."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(Rs).as_quat()
    w = np.ones(len(q))
    mean = q[0]
    for _ in range(iterations):
        M = (q * w[:, None]).T @ q
        mean = np.linalg.eigh(M)[1][:, -1]
        angle = 2 * np.arccos(np.clip(np.abs(q @ mean), 0.0, 1.0))
        w = 1.0 / np.maximum(angle, 1e-4)
    return Rotation.from_quat(mean).as_matrix()


def _geometric_median(points: np.ndarray, iterations: int = 50) -> np.ndarray:
    """(n, 3) -> (3,) by Weiszfeld's algorithm, starting at the coordinate-wise median."""
    x = np.median(points, axis=0)
    for _ in range(iterations):
        d = np.maximum(np.linalg.norm(points - x, axis=1), 1e-9)
        new = (points / d[:, None]).sum(axis=0) / (1.0 / d).sum()
        if np.linalg.norm(new - x) < 1e-10:
            return new
        x = new
    return x


def _maximum_spanning_tree(n: int, pairs: dict) -> list[tuple[int, int]]:
    """Prim's algorithm from node 0 over edge weights `pairs` {(a, b): weight} -> [(parent, child)]."""
    inside, edges = {0}, []
    while True:
        best = None
        for (a, b), weight in pairs.items():
            if (a in inside) != (b in inside):
                parent, child = (a, b) if a in inside else (b, a)
                if best is None or weight > best[0] or (weight == best[0] and child < best[2]):
                    best = (weight, parent, child)
        if best is None:
            return edges
        edges.append((best[1], best[2]))
        inside.add(best[2])


# --- step 5: bundle adjustment -------------------------------------------------------------------------
@dataclass
class _Observations:
    camera: np.ndarray   # (M,) camera index
    frame: np.ndarray    # (M,) frame number
    slot: np.ndarray     # (M,) index into the list of frames
    point: np.ndarray    # (M,) board corner id
    uv: np.ndarray       # (M, 2) px
    frames: list         # frame numbers by slot

    @classmethod
    def build(cls, names, usable, poses, frame_pose, obj) -> "_Observations":
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


class _BundleProblem:
    """Parameters: [cameras 1.. (rvec, t) | frames (rvec, t) board -> world | free intrinsics per camera].

    Residuals: reprojection errors (u, v) px of each observation; analytic Jacobian.
    """

    INTRINSIC_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3")

    def __init__(self, obs: _Observations, obj, intrinsics, cam_R, cam_t, frame_pose, refine_intrinsics, flags):
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
        I = intr[cam]
        fx, fy, cx, cy, k1, k2, p1, p2, k3 = I.T
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

    def result(self, x: np.ndarray, names, sizes):
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


# --- report text and picture ------------------------------------------------------------------------------
def format_board_report(report: BoardCalibrationReport) -> str:
    """Human-readable summary: one line per camera, then pairs, tree, adjustment rounds and timings."""
    lines = [f"board calibration: {report.board}; {len(report.cameras)} cameras; world = {report.world}"
             + ("; intrinsics refined in the adjustment" if report.refine_intrinsics else "")]
    header = (f"{'camera':<12} {'size':>9} {'frames':>6} {'found':>5} {'intr':>4} {'BA':>4} {'intr rms':>8}  "
              f"{'before BA rms/p50/p90/p99 px':>29}  {'after BA rms/p50/p90/p99 px':>28} {'dropped':>7}")
    lines += [header, "-" * len(header)]

    def stats(s):
        if not s or not s.get("n"):
            return "-"
        return f"{s['rms']:.2f}/{s['p50']:.2f}/{s['p90']:.2f}/{s['p99']:.2f}"

    for c in report.cameras:
        lines.append(f"{c.name:<12} {c.size[0]:>4}x{c.size[1]:<4} {c.frames or '-':>6} {c.detected:>5} "
                     f"{c.intrinsics_views:>4} {c.extrinsics_views:>4} {c.intrinsics_rms:>8.3f}  "
                     f"{stats(c.before):>29}  {stats(c.after):>28} {c.dropped:>7}")
    if report.pairs:
        lines.append("shared views: " + ", ".join(f"{k} {v}" for k, v in report.pairs.items()))
    if report.tree:
        lines.append("spanning tree: " + ", ".join(f"{p} -> {c} ({n})" for p, c, n in report.tree))
    for r in report.rounds:
        applied = "/".join(f"{v:.2f}" for v in r["limit_px"])
        lines.append(f"adjustment round, threshold {r['threshold_px']:g} px (applied per camera {applied} px): "
                     f"{r['observations']} corners kept, {r['dropped']} dropped, rms {r['rms_px']:.3f} px, "
                     f"{r['nfev']} evaluations")
    if report.seconds:
        lines.append("time: " + ", ".join(f"{k} {v:.2f} s" for k, v in report.seconds.items()))
    weak = [c.name for c in report.cameras if c.after.get("n") and c.after["rms"] > 1.0]
    if weak:
        lines.append(f"warning: reprojection RMS above 1 px for {weak}: check focus, motion blur, board flatness")
    return "\n".join(lines)


def render_board_report(report: BoardCalibrationReport, path: str | os.PathLike) -> Path:
    """Write a PNG: per camera a histogram of reprojection errors before and after the adjustment, and a
    top view of the camera poses (and board positions). Written atomically (the folder is created if
    missing); matplotlib's Agg canvas, no pyplot state. Returns the path."""
    from matplotlib.figure import Figure

    from hpe_ros.io.atomic import atomic_path

    n = len(report.cameras)
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    fig = Figure(figsize=(3.6 * cols + 6, max(2.8 * rows, 5.0)), dpi=100)
    grid = fig.add_gridspec(rows, cols + 2)
    upper = max([1.5 * np.percentile(c.errors_before, 99) for c in report.cameras if c.errors_before.size] + [0.2])
    bins = np.linspace(0, min(upper, 20.0), 40)
    for k, c in enumerate(report.cameras):
        ax = fig.add_subplot(grid[k // cols, k % cols])
        if c.errors_before.size:
            ax.hist(np.clip(c.errors_before, 0, bins[-1]), bins=bins, color="0.6", label="before BA")
        if c.errors_after.size:
            ax.hist(np.clip(c.errors_after, 0, bins[-1]), bins=bins, color="tab:blue", alpha=0.8, label="after BA")
        after = c.after.get("rms", float("nan"))
        ax.set_title(f"{c.name}: rms {c.before.get('rms', float('nan')):.2f} -> {after:.2f} px", fontsize=9)
        ax.set_xlabel("reprojection error (px, clipped)", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[:, cols:])
    _top_view(ax, report)
    fig.suptitle(f"board calibration: {report.board}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _top_view(ax, report: BoardCalibrationReport) -> None:
    """Camera centres and viewing directions projected on the floor plane (normal = the cameras' mean up)."""
    rig = report.rig
    if rig is None or len(rig) == 0:
        ax.set_axis_off()
        return
    up = -np.mean([c.R[1] for c in rig], axis=0)  # camera y is down in the image
    up = up / np.linalg.norm(up) if np.linalg.norm(up) > 1e-6 else np.array([0.0, 0.0, 1.0])
    e1 = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    plane = lambda p: np.stack([p @ e1, p @ e2], axis=-1)  # noqa: E731
    centres = plane(rig.centers)
    if report.board_poses:
        b = plane(np.stack([t for _, t in report.board_poses.values()]))
        ax.scatter(b[:, 0], b[:, 1], s=6, color="0.6", label="board (per frame)")
    span = np.ptp(np.concatenate([centres, b]) if report.board_poses else centres, axis=0).max() or 1.0
    for c, xy in zip(rig, centres):
        d = plane(c.R[2])
        d = d / (np.linalg.norm(d) or 1.0) * 0.12 * span
        ax.annotate("", xy=xy + d, xytext=xy, arrowprops=dict(arrowstyle="->", color="tab:red"))
        ax.scatter(*xy, color="tab:red", s=20)
        ax.text(*(xy + 0.03 * span), c.name, fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("top view (m), world frame projected on the floor", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
