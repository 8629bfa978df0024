"""Multi-camera calibration from a moving board: intrinsics, extrinsics, bundle adjustment, report.

    rig, report = calibrate_board({"cam0": "calib/cam0", "cam1": "calib/cam1.mp4"},
                                  Board.charuco(7, 5, 0.14, 0.105))
    print(format_board_report(report))
    render_board_report(report, "calib/report.png")
    save_rig(rig, "calib/rig.toml")

Steps:

1. Detection. Every frame of every source (`hpe_ros.io.frames.read_frames`: a folder of images sorted
   by name, or a video); frames are matched across cameras by index.
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
5. Bundle adjustment (`hpe_ros.calibration.board_bundle`: ``scipy.optimize.least_squares``, trf, `loss`
   = soft_l1 with a 1 px scale, analytic Jacobian in a sparse matrix whose structure is built with
   numpy, LSMR trust-region steps): camera extrinsics (the first camera stays the world frame and fixes
   the gauge; the board's known square size fixes the scale) and one rigid board pose per frame (6
   dof), optionally intrinsics (`refine_intrinsics`: fx, fy, cx, cy, k1, k2, p1, p2, and k3 unless
   CALIB_FIX_K3; off by default; on a synthetic 4-camera ring it halves the worst camera-centre error,
   see the tests). Residuals are reprojection errors in pixels. Before each round of `thresholds` (10,
   3, 1.5 px) each camera's observations above min(threshold, 5 x that camera's median error), but
   never below 0.5 px, are left out (recomputed from all observations each round, so a corner dropped
   early comes back; per camera, so a camera still far off before the first round keeps its corners).
6. World frame: `world="camera0"` (default) keeps the first camera's optical frame; `world="board"`
   re-expresses everything in the board frame of frame `world_frame_index` (default: the first frame
   seen; x, y on the board, z into it); `world="floor"` does the same for a board lying face up on the
   floor in that frame, with z flipped to point up (x along the board's x, y = z x x): a z-up world on
   the floor, so REP-155 body frames (z up) are not tilted.

The report holds per camera the views detected / used for intrinsics / used in the adjustment, and
reprojection RMS and 50/90/99th percentiles (px) before and after bundle adjustment; see
`hpe_ros.calibration.board_report`: `format_board_report` (text) and `render_board_report` (picture).
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hpe_ros.calibration.board import Board
from hpe_ros.calibration.board_bundle import BoardBundleProblem, BoardObservations, adjust_in_rounds, round_limits
from hpe_ros.calibration.board_report import BoardCalibrationReport, CameraBoardReport, error_stats
from hpe_ros.camera import Camera, Rig, rodrigues
from hpe_ros.io.calibration_validate import CalibrationError, validate_camera
from hpe_ros.io.frames import count_frames, read_frames

DEFAULT_INTRINSIC_FLAGS = 128  # cv2.CALIB_FIX_K3 (cv2 is imported only where it is used)

DEFAULT_THRESHOLDS = (10.0, 3.0, 1.5)

WORLDS = ("camera0", "board", "floor")

Detections = dict  # camera name -> {frame index: (ids (n,), corners (n, 2) px)}
Poses = dict       # camera name -> {frame index: (R (3, 3), t (3,), rms px)} board -> camera


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
                    world_frame_index: int | None = None) -> tuple[Rig, BoardCalibrationReport]:
    """Calibrate a rig from synchronised videos / image folders of a moving board.

    sources: camera name -> folder of images (sorted by name) or video file; the first camera is the
    reference (world frame unless world="board" or "floor"). camera_sizes: optional name -> (w, h) the images
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
        min_corners=min_corners, frames_read=counts, world_frame_index=world_frame_index)
    report.seconds["detect"] = time.perf_counter() - t0 - sum(report.seconds.values())
    report.seconds["total"] = time.perf_counter() - t0
    return rig, report


def calibrate_from_detections(detections: Detections, board: Board, sizes: Mapping[str, Sequence[int]],
                              max_views: int = 40, *, intrinsic_flags: int = DEFAULT_INTRINSIC_FLAGS,
                              refine_intrinsics: bool = False, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                              loss: str = "soft_l1", world: str = "camera0", min_corners: int = 6,
                              frames_read: Mapping[str, int] | None = None,
                              initial_intrinsics: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                              world_frame_index: int | None = None) -> tuple[Rig, BoardCalibrationReport]:
    """`calibrate_board` from detections already made (name -> {frame: (ids, corners)}), sizes: name -> (w, h).

    initial_intrinsics: optional name -> (K (3, 3), dist) to skip step 2 for those cameras (e.g. from
    an earlier intrinsics-only session). Steps 2-6 of the module docstring, one function each.
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {', '.join(WORLDS)}, got {world!r}")
    if not detections:
        raise CalibrationError("no cameras given")
    thresholds = tuple(float(v) for v in thresholds) or DEFAULT_THRESHOLDS
    names = list(detections)
    obj = board.object_points()
    seconds = {}
    reports = {n: CameraBoardReport(n, tuple(int(v) for v in sizes[n]),
                                    frames=int((frames_read or {}).get(n, 0))) for n in names}

    t = time.perf_counter()
    intrinsics, usable = _intrinsics_step(detections, board, reports, max_views, intrinsic_flags, min_corners,
                                          initial_intrinsics)
    seconds["intrinsics"] = time.perf_counter() - t

    t = time.perf_counter()
    poses = _board_pose_step(usable, intrinsics, obj, thresholds[0], reports)
    pairs, tree, cam_R, cam_t = _extrinsics_step(names, poses)
    frame_pose = _frame_poses(names, poses, usable, cam_R, cam_t)
    seconds["extrinsics"] = time.perf_counter() - t

    t = time.perf_counter()
    obs = BoardObservations.build(names, usable, poses, frame_pose)
    problem = BoardBundleProblem(obs, obj, [intrinsics[n] for n in names], cam_R, cam_t, frame_pose,
                                 refine_intrinsics, intrinsic_flags)
    size_list = [reports[n].size for n in names]
    x = problem.initial()
    errors_before = problem.errors(x)
    initial_cameras, _ = problem.result(x, names, size_list)
    x, rounds = adjust_in_rounds(problem, x, thresholds, loss)
    errors_after = problem.errors(x)
    keep = errors_after <= round_limits(errors_after, obs.camera, len(names), thresholds[-1])[obs.camera]
    seconds["bundle_adjustment"] = time.perf_counter() - t

    cameras_out, board_poses = problem.result(x, names, size_list)
    frame = None if world == "camera0" else _world_frame(board_poses, world_frame_index)
    if frame is not None:
        cameras_out, initial_cameras, board_poses = _board_world(cameras_out, initial_cameras, board_poses, frame,
                                                                 floor=world == "floor")
    for c in cameras_out:
        validate_camera(c, "board calibration")
    rig = Rig(cameras_out)
    _fill_error_reports(reports, names, obs, errors_before, errors_after, keep)
    return rig, BoardCalibrationReport(
        board=board.describe(), cameras=[reports[n] for n in names],
        world=_world_description(world, names[0], frame),
        pairs={f"{names[a]}-{names[b]}": n for (a, b), n in sorted(pairs.items())},
        tree=[(names[p], names[c], pairs[tuple(sorted((p, c)))]) for p, c in tree],
        rounds=rounds, refine_intrinsics=refine_intrinsics, intrinsic_flags=int(intrinsic_flags),
        seconds=seconds, rig=rig, initial_rig=Rig(initial_cameras), board_poses=board_poses, detections=detections,
        sizes={n: reports[n].size for n in names})


def _intrinsics_step(detections: Detections, board: Board, reports: dict, max_views: int, intrinsic_flags: int,
                     min_corners: int, initial_intrinsics) -> tuple[dict, dict]:
    """Step 2: (name -> (K (3, 3), dist (8,)), usable views name -> {frame: (ids, corners px)}); fills the
    cameras' intrinsics counts in `reports`."""
    obj = board.object_points()
    intrinsics, usable = {}, {}
    for name in detections:
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
    return intrinsics, usable


def _board_pose_step(usable: dict, intrinsics: dict, obj: np.ndarray, max_rms: float, reports: dict) -> Poses:
    """Step 3: the board's pose in every usable view (views whose pose RMS exceeds `max_rms` px dropped).
    Leaves only each view's inlier corners in `usable` (what the bundle adjustment sees)."""
    poses = {}
    for name, views in usable.items():
        K, dist = intrinsics[name]
        poses[name] = {}
        for f, (ids, px) in sorted(views.items()):
            pose = _board_pose(obj[ids], px, K, dist)
            if pose is None or pose[2] > max_rms:
                reports[name].pose_rejected += 1
                continue
            poses[name][f] = pose[:3]
            views[f] = (ids[pose[3]], px[pose[3]])
            reports[name].pose_corners_rejected += int((~pose[3]).sum())
    return poses


def _extrinsics_step(names: list[str], poses: Poses) -> tuple[dict, list, dict, dict]:
    """Step 4: pairwise relative poses averaged robustly, chained along the maximum spanning tree from the
    first camera. Returns (pairs (a, b) -> shared views, tree [(parent, child)], camera index -> R, t)."""
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
            relative[(a, b)] = (_robust_rotation_mean(R_ab), _geometric_median(t_ab))
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
    return pairs, tree, cam_R, cam_t


def _frame_poses(names: list[str], poses: Poses, usable: dict, cam_R: dict, cam_t: dict) -> dict:
    """Board -> world (R, t) per frame, from the camera that saw it with most corners (then lowest error)."""
    frame_pose = {}
    for f in sorted({f for n in names for f in poses[n]}):
        best = min(((-len(usable[n][f][0]), poses[n][f][2], i) for i, n in enumerate(names) if f in poses[n]))
        i = best[2]
        R_cb, t_cb, _ = poses[names[i]][f]
        frame_pose[f] = (cam_R[i].T @ R_cb, cam_R[i].T @ (t_cb - cam_t[i]))
    return frame_pose


def _world_frame(board_poses: dict, index: int | None) -> int:
    """The frame whose board defines the world: `index`, or the first frame seen when None."""
    if index is None:
        return min(board_poses)
    if index not in board_poses:
        raise CalibrationError(f"world frame {index}: the board was not located in that frame (located in "
                               f"{len(board_poses)} frames, {min(board_poses)}..{max(board_poses)})")
    return index


def _world_description(world: str, first_camera: str, frame: int | None) -> str:
    if world == "camera0":
        return f"camera {first_camera!r} optical frame"
    if world == "board":
        return f"board frame of frame {frame}"
    return f"floor under the board of frame {frame} (z up)"


def _board_world(cameras: list[Camera], initial: list[Camera], board_poses: dict, frame: int,
                 floor: bool = False) -> tuple[list, list, dict]:
    """Step 6: cameras, initial cameras and board poses in the board frame of `frame`; with `floor`, that
    frame turned z-up (a board face up on the floor has z pointing down into it: flip y and z)."""
    R_wb, t_wb = board_poses[frame]
    if floor:
        R_wb = R_wb @ np.diag([1.0, -1.0, -1.0])
    cameras = [c.copy(R=c.R @ R_wb, t=c.R @ t_wb + c.t) for c in cameras]
    initial = [c.copy(R=c.R @ R_wb, t=c.R @ t_wb + c.t) for c in initial]
    board_poses = {f: (R_wb.T @ R, R_wb.T @ (tt - t_wb)) for f, (R, tt) in board_poses.items()}
    return cameras, initial, board_poses


def _fill_error_reports(reports: dict, names: list[str], obs: BoardObservations, errors_before: np.ndarray,
                        errors_after: np.ndarray, keep: np.ndarray) -> None:
    """Per camera reprojection errors (M,) px before and after the adjustment, kept and dropped corners."""
    for i, name in enumerate(names):
        r = reports[name]
        mine = obs.camera == i
        r.errors_before = errors_before[mine]
        r.errors_after = errors_after[mine & keep]
        r.before, r.after = error_stats(r.errors_before), error_stats(r.errors_after)
        r.after_all = error_stats(errors_after[mine])
        r.observations, r.dropped = int((mine & keep).sum()), int((mine & ~keep).sum())
        r.extrinsics_views = int(len(np.unique(obs.frame[mine & keep])))


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


__all__ = ["DEFAULT_INTRINSIC_FLAGS", "DEFAULT_THRESHOLDS", "calibrate_board", "calibrate_from_detections",
           "detect_board_views"]
