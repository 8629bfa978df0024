"""Camera extrinsics from people walking through the scene: no board, only 2D keypoints.

`calibrate_from_people(intrinsics, points2d, scores)` takes each camera's intrinsics (K, distortion,
size; R and t are ignored) and synchronised 2D detections, and returns the rig with R, t in a metric,
floor-aligned world frame plus a report. The steps:

a. **Who is who across cameras** (no calibration yet). Each camera's detections are linked over time
   into tracks by 2D continuity (`link_tracks`: Hungarian matching on the median joint displacement
   relative to the person's size, ambiguous links broken). For each camera pair, the track pairing is
   the one with the most essential-matrix RANSAC inliers: a few long track pairs seed an E each, every
   track pair is scored under it (Sampson error of all their common keypoints) and pairs are accepted
   greedily, never two partners for one track at the same instant. With one person this is trivial.
   Tracks linked across pairs form people (union-find that refuses to put two overlapping tracks of a
   camera into one person).
b. **Pairwise relative poses** from the essential matrix (cv2.findEssentialMat on undistorted,
   normalised keypoints, RANSAC; cv2.recoverPose); pair quality = inlier count. The inlier threshold
   comes from the data: a first match under a wide one, then 3 x the robust sigma (median / 0.6745) of
   the epipolar distances of the keypoints it paired, again until it settles; a floor of
   ``NOISE_FLOOR`` of the image diagonal (2 px at 640 x 480) keeps sharp data from shrinking it. The
   pairs' sigmas give one detection noise (px) for the rig, and every later gate is a multiple of it
   (PnP, triangulation, the bundle adjustment's outlier rounds and robust loss scale): a detector that errs
   by 10-20 px at HD gets gates that wide, a 2 px simulator keeps the tight ones.
c. **A consistent rig**: the best pair starts it (camera frame of its first camera, unit baseline);
   cameras are then added in maximum-spanning-tree order (Prim over pair quality: next is the camera
   with the strongest pair to the registered ones) by PnP (cv2.solvePnPRansac + LM refinement) on the
   joints triangulated so far, which carries the one scale through the whole rig; after each camera
   every joint is re-triangulated (hpe_ros.fusion.triangulate, robust).
d. **Bundle adjustment** of cameras and 3D joints (`hpe_ros.calibration.bundle`, soft-L1 loss), with
   bone-length consistency: one free length per person and bone, shared over all frames. The hips, which
   detectors place differently from view to view, weigh `HIP_WEIGHT` (0.05) in it.
e. **Metric scale** from body size. The height of each person is estimated from posture-independent
   segment lengths, thigh (hip-knee) + shank (knee-ankle) + trunk side (shoulder-hip), averaged over
   left and right and over frames, which together are `HEIGHT_FRACTION` (0.781) of standing height
   in Drillis & Contini's proportions (`hpe_ros.anthropometry`). A vertical head-to-ankle span would
   depend on posture (a walking person's bent knees and pitched trunk shorten it by several %); bone
   lengths do not. The scale makes the people's mean height (weighted by frames seen) equal
   `person_height`; or, with `bone_length`, makes the median length of the named joint pairs equal to
   the given metres; with neither, the average adult height `DEFAULT_HEIGHT` is assumed (the report
   says so, and a rig scaled this way is off by the people's deviation from it, typically +-5 %).
f. **World frame** (REP-103): z up, floor z = 0, origin on the floor below camera 0 (the first camera
   of `intrinsics`), +x along camera 0's viewing direction projected on the floor, y = z x x. The floor
   is a robust plane fit to stance ankles (per frame and person the lower ankle), lowered by the
   ankle joint's height above the sole (``PROPORTIONS["ankle_height"]`` of standing height;
   `ankle_height` to override); "up" is the side of the heads. With too little spread of the stance
   ankles for a plane (people standing still), the floor normal is the people's median body axis
   instead.

    >>> rig, report = calibrate_from_people(intrinsics, points2d, scores, layout="coco17", person_height=1.78)
    >>> report["per_camera"]["cam1"]["reprojection_rms_px"], report["scale"]["source"]

`load_keypoint_folders` reads one OpenPose JSON folder per camera into the arrays this takes.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from hpe_ros.anthropometry import DEFAULT_HEIGHT, HEIGHT_FRACTION, PROPORTIONS
from hpe_ros.calibration.bundle import BoneConstraints, BundleReport, Observations, bundle_adjust
from hpe_ros.calibration.compare import apply_similarity
from hpe_ros.camera import Camera, Rig
from hpe_ros.checks import check_shape
from hpe_ros.fusion.triangulation import triangulate
from hpe_ros.io.calibration import CalibrationError
from hpe_ros.skeleton import Layout, get_layout

# Below these the report warns of too little data (`data_sufficiency`).
MIN_TRUSTED_FRAMES = 100       # frames with a person well seen by two cameras
MIN_POSITION_SPREAD_M = 1.0    # extent of the people's positions (m)
# The posture-independent segments whose lengths add up to HEIGHT_FRACTION of standing height.
# Data-driven gates (multiples of the detection noise sigma, px, estimated in step b; see _pair_step).
NOISE_FLOOR = 0.0025          # sigma floor as a fraction of the image diagonal
NOISE_START = 4.0             # first guess of sigma, in floors (wide: real detectors err by 10-20 px at HD)
EPIPOLAR_SIGMAS = 3.0         # essential-matrix inlier threshold
PNP_SIGMAS = 4.0              # PnP RANSAC reprojection gate
TRIANGULATION_SIGMAS = 5.0    # triangulation reprojection gate
BUNDLE_SIGMAS = (10.0, 4.0, 2.0)   # bundle adjustment outlier rounds
BUNDLE_LOSS = "soft_l1"        # the bundle adjustment's robust loss (pseudo-Huber: as exact as Huber, smoother)
LOSS_SIGMAS = 1.5             # its soft threshold
# Hips have no visible landmark and detectors place them differently from view to view (COCO's largest OKS
# sigma; on Pose2Sim's demo 19-23 px off the Qualisys rig's triangulation, the other joints 10-18 px): in the
# bundle adjustment they pull on the cameras with this weight. They are still adjusted (scale and floor use them).
HIP_JOINTS = ("left_hip", "right_hip", "mid_hip", "hip")
HIP_WEIGHT = 0.05
_HALF_NORMAL_MEDIAN = 0.6745  # median of |e| for e ~ N(0, 1)
LINK_MAX_GAP = 3              # frames a 2D track may skip (`link_tracks`)
RECORDING_GAP = LINK_MAX_GAP + 1   # empty frames between pooled recordings: no track spans two
_HEIGHT_SEGMENTS = [(("left_hip", "left_knee"), ("right_hip", "right_knee")),
                    (("left_knee", "left_ankle"), ("right_knee", "right_ankle")),
                    (("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"))]


@dataclass
class _PairMatch:
    """Two cameras related by an essential matrix. R, t: x_j = R x_i + t (unit |t|)."""

    i: int
    j: int
    inliers: int
    R: np.ndarray
    t: np.ndarray
    links: list          # [(track_i, track_j, inlier keypoints)] accepted track pairs
    residuals: np.ndarray  # (n,) Sampson distances (normalised units) of every keypoint of the accepted pairs


# --- input ---------------------------------------------------------------------------------------

def load_keypoint_folders(folders: Sequence[str], layout: str | Layout = "body25") -> tuple[np.ndarray, np.ndarray]:
    """One OpenPose JSON folder per camera -> points2d (C, F, P, J, 2) px (NaN = missing) and scores
    (C, F, P, J) (0 = missing).

    Frames are paired by frame number (`hpe_ros.io.openpose`): F spans the union of the folders' frame
    numbers in order, and a frame a folder lacks has no detections there (logged, with per-camera counts).
    P is the most people any file holds (at least 1). Raises ValueError naming a bad folder or file.
    """
    from hpe_ros.io.openpose import SynchronisedOpenPose

    _, points, scores = SynchronisedOpenPose(folders, layout).read_all(min_people=1)
    return np.ascontiguousarray(points.swapaxes(0, 1)), np.ascontiguousarray(scores.swapaxes(0, 1))


def pool_recordings(points2d: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Several recordings of one rig as one: points2d [(C, F_k, P_k, J, 2)] and scores [(C, F_k, P_k, J)] ->
    (C, F, P, J, 2), (C, F, P, J), the recordings one after the other along F with RECORDING_GAP empty frames
    between (no 2D track links across them, so each recording's people are its own), P the largest P_k."""
    if len(points2d) != len(scores) or not len(points2d):
        raise ValueError(f"pool_recordings: {len(points2d)} point arrays and {len(scores)} score arrays; give one "
                         "of each per recording")
    points2d = [np.asarray(p, dtype=np.float64) for p in points2d]
    for k, (p, s) in enumerate(zip(points2d, scores)):
        dims = check_shape(f"recording {k}: points2d", p, ("C", "F", "P", "J", 2),
                           {"C": points2d[0].shape[0], "J": points2d[0].shape[3]})
        check_shape(f"recording {k}: scores", np.asarray(s), ("C", "F", "P", "J"), dims)
    C, _, _, J, _ = points2d[0].shape
    P = max(p.shape[2] for p in points2d)
    F = sum(p.shape[1] for p in points2d) + RECORDING_GAP * (len(points2d) - 1)
    pooled, pooled_scores = np.full((C, F, P, J, 2), np.nan), np.zeros((C, F, P, J))
    start = 0
    for p, s in zip(points2d, scores):
        pooled[:, start:start + p.shape[1], :p.shape[2]] = p
        pooled_scores[:, start:start + p.shape[1], :p.shape[2]] = s
        start += p.shape[1] + RECORDING_GAP
    return pooled, pooled_scores


def _check_inputs(intrinsics: Rig, points2d, scores, layout: Layout, min_score: float):
    if not isinstance(intrinsics, Rig):
        raise TypeError(f"intrinsics must be a hpe_ros.camera.Rig, got {type(intrinsics).__name__}")
    names = intrinsics.names
    if len(intrinsics) < 2:
        raise CalibrationError(f"calibration from people needs at least 2 cameras, got {len(intrinsics)} "
                               f"({', '.join(repr(n) for n in names) or 'none'})")
    points2d = np.asarray(points2d, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    C, J = len(intrinsics), layout.num_joints
    dims = check_shape(f"points2d (cameras {names}, layout {layout.name})", points2d, ("C", "F", "P", "J", 2),
                       {"C": C, "J": J})
    check_shape("scores", scores, ("C", "F", "P", "J"), dims)
    valid = (np.nan_to_num(scores) >= min_score) & np.isfinite(points2d).all(axis=-1)
    per_cam = valid.reshape(C, -1).sum(axis=1)
    if not per_cam.any():
        raise CalibrationError(f"no people detected: none of the cameras ({', '.join(map(repr, names))}) has "
                               f"a keypoint with score >= {min_score} in {points2d.shape[1]} frames")
    few = [c for c in range(C) if per_cam[c] < 20]
    if few:
        raise CalibrationError("; ".join(
            f"camera {names[c]!r}: {'no' if per_cam[c] == 0 else 'too few'} usable detections ({per_cam[c]} "
            f"keypoints with score >= {min_score} in {points2d.shape[1]} frames)" for c in few)
            + "; check its keypoint input")
    return points2d, np.nan_to_num(scores), valid


# --- (a) tracks within a camera -----------------------------------------------------------------

def link_tracks(points: np.ndarray, valid: np.ndarray, max_step: float = 0.25, max_gap: int = LINK_MAX_GAP,
                ambiguity: float = 0.7) -> np.ndarray:
    """Link one camera's detections over time into tracks by 2D continuity.

    points: (F, P, J, 2) px, rows in any order per frame; valid: (F, P, J) usable keypoints.
    A detection continues a track last seen up to `max_gap` frames ago when the median displacement of
    their common keypoints, relative to the track's size (bounding-box diagonal) and per frame of gap,
    is below `max_step`, the Hungarian assignment pairs them, and the link is unambiguous (its cost is
    below `ambiguity` x the next best option of both). Tracks seen in the previous frame are matched
    first, then those with longer gaps. Otherwise a new track starts.
    -> track ids (F, P), -1 where a row holds no detection (fewer than 3 keypoints).
    """
    F, P = valid.shape[:2]
    ids = np.full((F, P), -1, dtype=np.int64)
    present = valid.sum(axis=-1) >= 3
    last_pts, last_valid, last_frame, size = [], [], [], []
    for f in range(F):
        free = list(np.flatnonzero(present[f]))
        taken = {}
        for gap in range(1, max_gap + 1):
            live = [k for k in range(len(last_frame)) if last_frame[k] == f - gap]
            if not live or not free:
                continue
            rows = np.array(free)
            A, Av = np.stack([last_pts[k] for k in live]), np.stack([last_valid[k] for k in live])
            both = Av[:, None] & valid[f, rows][None]                                  # (L, R, J)
            d = np.where(both, np.linalg.norm(A[:, None] - points[f, rows][None], axis=-1), np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no common keypoints
                med = np.nanmedian(d, axis=-1)
            scale = np.array([size[k] for k in live])[:, None] * gap
            cost = np.where(both.sum(axis=-1) >= 3, med / scale, np.inf)
            for li, r in zip(*linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))):
                c = cost[li, r]
                others = np.concatenate([np.delete(cost[li], r), np.delete(cost[:, r], li)])
                if c <= max_step and not (others.size and c >= ambiguity * others.min()):
                    taken[int(rows[r])] = live[li]
            free = [r for r in free if r not in taken]
        for r in np.flatnonzero(present[f]):
            k = taken.get(int(r))
            if k is None:
                k = len(last_frame)
                last_pts.append(None), last_valid.append(None), last_frame.append(f), size.append(1.0)
            ids[f, r] = k
            last_pts[k], last_valid[k], last_frame[k] = points[f, r], valid[f, r], f
            xy = points[f, r][valid[f, r]]
            size[k] = max(float(np.linalg.norm(xy.max(axis=0) - xy.min(axis=0))), 10.0)
    return ids


# --- (a, b) camera pairs -------------------------------------------------------------------------

def _sampson(E: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Sampson distance (n,) of normalised correspondences x1, x2 (n, 2) under E (x2^T E x1 = 0)."""
    h1 = np.concatenate([x1, np.ones((len(x1), 1))], axis=1)
    h2 = np.concatenate([x2, np.ones((len(x2), 1))], axis=1)
    Ex1 = h1 @ E.T
    Etx2 = h2 @ E
    num = (h2 * Ex1).sum(axis=1)
    den = Ex1[:, 0] ** 2 + Ex1[:, 1] ** 2 + Etx2[:, 0] ** 2 + Etx2[:, 1] ** 2
    return np.abs(num) / np.sqrt(np.maximum(den, 1e-30))


def _find_essential(x1, x2, threshold, rng, max_points=3000, max_iters=2000):
    """RANSAC essential matrix on at most max_points (random) correspondences; None if it fails."""
    if len(x1) < 8:
        return None
    if len(x1) > max_points:
        pick = rng.choice(len(x1), max_points, replace=False)
        x1, x2 = x1[pick], x2[pick]
    E, _ = cv2.findEssentialMat(np.ascontiguousarray(x1), np.ascontiguousarray(x2), np.eye(3),
                                method=cv2.USAC_FAST, prob=0.999, threshold=threshold, maxIters=max_iters)
    if E is None or E.shape[0] < 3:
        return None
    return E[:3]


def _greedy_links(keys_a, keys_b, inl, n, overlap_a, overlap_b, min_inliers, min_fraction):
    """Accept track pairs by inlier count, never two partners of one track at the same instant.
    -> list of indices into keys accepted."""
    order = np.argsort(-inl, kind="stable")
    partners_a, partners_b, accepted = {}, {}, []
    for k in order:
        if inl[k] < min_inliers or inl[k] < min_fraction * n[k]:
            continue
        a, b = keys_a[k], keys_b[k]
        if any(overlap_b[b, b2] for b2 in partners_a.get(a, ())) or \
                any(overlap_a[a, a2] for a2 in partners_b.get(b, ())):
            continue
        partners_a.setdefault(a, []).append(b)
        partners_b.setdefault(b, []).append(a)
        accepted.append(k)
    return accepted


def _match_pair(i, j, xn, valid, tracks, n_tracks, threshold, rng, seeds=4, min_inliers=10,
                min_fraction=0.5) -> _PairMatch | None:
    """Track pairing and relative pose of cameras i, j (see the module docstring, steps a-b)."""
    F, P, J = valid.shape[1:]
    if n_tracks[i] == 0 or n_tracks[j] == 0:
        return None
    both = valid[i][:, :, None, :] & valid[j][:, None, :, :]                         # (F, P, P, J)
    f, r1, r2, jn = np.nonzero(both)
    if f.size < 8:
        return None
    x1, x2 = xn[i, f, r1, jn], xn[j, f, r2, jn]
    Tj = n_tracks[j]
    key = tracks[i][f, r1] * Tj + tracks[j][f, r2]
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    ka, kb = keys // Tj, keys % Tj
    frames_i = np.zeros((n_tracks[i], F), dtype=bool)
    frames_j = np.zeros((Tj, F), dtype=bool)
    ff, rr = np.nonzero(tracks[i] >= 0)
    frames_i[tracks[i][ff, rr], ff] = True
    ff, rr = np.nonzero(tracks[j] >= 0)
    frames_j[tracks[j][ff, rr], ff] = True
    overlap_i = (frames_i.astype(np.int32) @ frames_i.T.astype(np.int32)) > 0
    overlap_j = (frames_j.astype(np.int32) @ frames_j.T.astype(np.int32)) > 0

    def evaluate(E):
        inlier = _sampson(E, x1, x2) < threshold
        inl = np.bincount(inverse, weights=inlier, minlength=keys.size)
        acc = _greedy_links(ka, kb, inl, counts, overlap_i, overlap_j, min_inliers, min_fraction)
        return inl[acc].sum(), acc, inlier

    best = None
    for s in np.argsort(-counts, kind="stable")[:seeds]:
        if counts[s] < 30:
            break
        sel = inverse == s
        # A seed only has to tell right from wrong pairings: a small sample and few iterations do
        # (a wrong pairing runs RANSAC to its iteration limit, a right one stops early).
        E = _find_essential(x1[sel], x2[sel], threshold, rng, max_points=500, max_iters=300)
        if E is None:
            continue
        score, acc, _ = evaluate(E)
        if best is None or score > best[0]:
            best = (score, acc)
    if best is None or not best[1]:
        return None
    # Refit on every accepted track pair, re-accept under the refined E, recover the pose.
    sel = np.isin(inverse, best[1])
    E = _find_essential(x1[sel], x2[sel], threshold, rng)
    if E is None:
        return None
    score, acc, inlier = evaluate(E)
    use = inlier & np.isin(inverse, acc)
    if use.sum() < 8:
        return None
    n, R, t, mask = cv2.recoverPose(E, np.ascontiguousarray(x1[use]), np.ascontiguousarray(x2[use]), np.eye(3))
    links = [(int(ka[k]), int(kb[k]), int(np.sum(use & (inverse == k)))) for k in acc]
    linked = np.isin(inverse, acc)
    return _PairMatch(i, j, int(n), R, t.ravel(), links, _sampson(E, x1[linked], x2[linked]))


def _link_people(matches: list[_PairMatch], tracks: np.ndarray, n_tracks: list[int]) -> np.ndarray:
    """Union-find over (camera, track) with the pairs' track links, strongest first, refusing merges
    that would give one person two tracks of a camera at the same instant.
    -> person id per detection (C, F, P), -1 = none; people seen by fewer than 2 cameras dropped."""
    C, F, _ = tracks.shape
    offset = np.concatenate([[0], np.cumsum(n_tracks)])
    parent = list(range(int(offset[-1])))
    occupancy = {}                                   # component root -> (C, F) frames it holds
    for c in range(C):
        f, r = np.nonzero(tracks[c] >= 0)
        for k in range(n_tracks[c]):
            occupancy[int(offset[c] + k)] = np.zeros((C, F), dtype=bool)
        for k, ff in zip(tracks[c][f, r], f):
            occupancy[int(offset[c] + k)][c, ff] = True

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    edges = sorted(((links[2], m.inliers, m.i, links[0], m.j, links[1]) for m in matches for links in m.links),
                   reverse=True)
    for _, _, i, a, j, b in edges:
        ra, rb = find(int(offset[i] + a)), find(int(offset[j] + b))
        if ra == rb or (occupancy[ra] & occupancy[rb]).any():
            continue
        parent[rb] = ra
        occupancy[ra] |= occupancy.pop(rb)
    # Person ids for components seen by two cameras or more, numbered in order of first appearance.
    root = np.array([find(n) for n in range(len(parent))], dtype=np.int64)
    seen_by = {r: occupancy[r].any(axis=1).sum() for r in np.unique(root)}
    ids, person_of_root = 0, {}
    for r in root:
        if seen_by[r] >= 2 and r not in person_of_root:
            person_of_root[r], ids = ids, ids + 1
    node_person = np.array([person_of_root.get(r, -1) for r in root] + [-1], dtype=np.int64)
    node = np.where(tracks >= 0, offset[:C, None, None] + tracks, -1)             # (C, F, P), -1 -> last
    return node_person[node]


# --- (c) registration -----------------------------------------------------------------------------

def _triangulate(cams: list[Camera], idx: list[int], pts: np.ndarray, sc: np.ndarray, min_score: float,
                 noise_px: float):
    """Robust triangulation of all points with the registered cameras idx. pts (C, N, 2), sc (C, N)."""
    return triangulate(Rig([cams[c] for c in idx]), pts[idx], sc[idx], min_views=2, min_score=min_score,
                       max_error_px=TRIANGULATION_SIGMAS * noise_px).points


def _register(intrinsics: Rig, matches: dict, pts: np.ndarray, sc: np.ndarray, min_score: float, noise_px: float,
              progress: bool):
    """Incremental registration (step c) -> cameras, points (N, 3), per-camera info, tree edges; gates in
    multiples of the detection noise `noise_px`."""
    from tqdm import tqdm

    C = len(intrinsics)
    names = intrinsics.names
    Q = np.zeros((C, C))
    for (i, j), m in matches.items():
        Q[i, j] = Q[j, i] = m.inliers
    lonely = [names[c] for c in range(C) if not Q[c].any()]
    if lonely:
        raise CalibrationError("; ".join(f"camera {n!r}: shares no epipolar-consistent people with any other "
                                         "camera (is it synchronised, and does it see the same people?)"
                                         for n in lonely))
    i0, j0 = np.unravel_index(np.argmax(Q), Q.shape)
    i0, j0 = int(min(i0, j0)), int(max(i0, j0))
    m = matches[(i0, j0)]
    cams = [c.copy() for c in intrinsics]
    cams[i0] = cams[i0].copy(R=np.eye(3), t=np.zeros(3))
    cams[j0] = cams[j0].copy(R=m.R, t=m.t)
    registered = [i0, j0]
    info = {names[i0]: {"registered_from": None, "pnp_inliers": None},
            names[j0]: {"registered_from": names[i0], "pnp_inliers": None}}
    tree = [(i0, j0)]
    X = _triangulate(cams, registered, pts, sc, min_score, noise_px)
    bar = tqdm(total=C, initial=2, desc="registering cameras", unit="cam", leave=False, disable=not progress)
    while len(registered) < C:
        left = [c for c in range(C) if c not in registered]
        strength = Q[np.ix_(left, registered)].max(axis=1)
        done = False
        for k in np.argsort(-strength, kind="stable"):
            c = left[k]
            use = np.isfinite(X).all(axis=1) & (sc[c] >= min_score) & np.isfinite(pts[c]).all(axis=1)
            if use.sum() < 12:
                continue
            cam = cams[c]
            ok, rvec, tvec, inl = cv2.solvePnPRansac(X[use], pts[c][use], cam.K, cam.dist, iterationsCount=500,
                                                     reprojectionError=PNP_SIGMAS * noise_px, confidence=0.999,
                                                     flags=cv2.SOLVEPNP_EPNP)
            if not ok or inl is None or len(inl) < 12:
                continue
            inl = inl.ravel()
            rvec, tvec = cv2.solvePnPRefineLM(X[use][inl], pts[c][use][inl], cam.K, cam.dist, rvec, tvec)
            cams[c] = cam.copy(R=cv2.Rodrigues(rvec)[0], t=tvec.ravel())
            parent = registered[int(np.argmax(Q[c, registered]))]
            tree.append((parent, c))
            info[names[c]] = {"registered_from": names[parent], "pnp_inliers": int(len(inl))}
            registered.append(c)
            X = _triangulate(cams, registered, pts, sc, min_score, noise_px)
            bar.update(1)
            done = True
            break
        if not done:
            bar.close()
            raise CalibrationError("; ".join(f"camera {names[c]!r}: could not be registered (too few keypoints "
                                             "shared with the cameras calibrated so far)" for c in left))
    bar.close()
    return cams, X, info, tree, i0, Q


# --- (e) scale -----------------------------------------------------------------------------------

def estimate_heights(points3d: np.ndarray, layout: str | Layout = "coco17") -> np.ndarray:
    """Standing height (G,) of each person from their joints (F, G, J, 3), in the points' units.

    (median thigh + median shank + median trunk side, each averaged over left and right) / 0.781
    (Drillis & Contini; see the module docstring); NaN for a person without those joints.
    """
    layout = get_layout(layout)
    total = np.zeros(points3d.shape[1])
    for sides in _HEIGHT_SEGMENTS:
        lengths = []
        for a, b in sides:
            if not (layout.has(a) and layout.has(b)):
                return np.full(points3d.shape[1], np.nan)
            d = np.linalg.norm(points3d[:, :, layout.index(a)] - points3d[:, :, layout.index(b)], axis=-1)
            lengths.append(d)
        d = np.concatenate(lengths, axis=0)                                     # (2F, G)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a person without this segment: NaN
            total = total + np.nanmedian(d, axis=0)
    return total / HEIGHT_FRACTION


def _parse_bone_lengths(bone_length, layout: Layout) -> list[tuple[int, int, float]]:
    out = []
    for key, metres in dict(bone_length).items():
        a, b = key.split("-", 1) if isinstance(key, str) else key
        a, b = a.strip(), b.strip()
        for n in (a, b):
            if not layout.has(n):
                raise ValueError(f"bone_length: layout {layout.name} has no joint {n!r} "
                                 f"(keys are 'joint_a-joint_b', e.g. 'left_hip-left_knee')")
        if not (np.isfinite(metres) and metres > 0):
            raise ValueError(f"bone_length[{key!r}] must be a positive length in metres, got {metres}")
        out.append((layout.index(a), layout.index(b), float(metres)))
    if not out:
        raise ValueError("bone_length is empty")
    return out


def distinct_people(points3d: np.ndarray, heights: np.ndarray, weights: np.ndarray,
                    height_tolerance: float = 0.015) -> list[list[int]]:
    """Group 3D person tracks (F, G, J, 3) that are one body: tracks present in the same frames whose
    joints coincide (median distance < 5 % of their height: the same person matched twice), or tracks
    never present together whose heights (G,) agree within `height_tolerance` (one person's stretches).
    Tracks are taken in order of `weights` (G,) (e.g. joints seen); -> lists of track indices."""
    present = np.isfinite(points3d).all(axis=-1).any(axis=-1)                        # (F, G)

    def same(g, h):
        both = present[:, g] & present[:, h]
        if not both.any():
            return abs(heights[g] - heights[h]) <= height_tolerance * heights[h]
        d = np.linalg.norm(points3d[both, g] - points3d[both, h], axis=-1)
        d = d[np.isfinite(d)]
        return d.size > 0 and np.median(d) < 0.05 * heights[h]

    clusters: list[list[int]] = []
    for g in np.argsort(-weights, kind="stable"):
        if not (np.isfinite(heights[g]) and weights[g] > 0):
            continue
        for cluster in clusters:
            if all(same(g, h) for h in cluster):
                cluster.append(int(g))
                break
        else:
            clusters.append([int(g)])
    return clusters


def _check_size_options(person_height, bone_length, layout: Layout):
    if person_height is not None and not (np.isfinite(person_height) and 0.5 <= person_height <= 2.5):
        raise ValueError(f"person_height must be a standing height in metres (0.5-2.5), got {person_height}")
    if person_height is not None and bone_length is not None:
        raise ValueError("give person_height or bone_length, not both")
    if bone_length is not None:
        _parse_bone_lengths(bone_length, layout)


def _scale_factor(points3d: np.ndarray, weights: np.ndarray, layout: Layout, person_height, bone_length):
    """Factor that makes the scene (points3d (F, G, J, 3)) metric, and where it came from.

    With heights: each distinct person's height (`distinct_people`; tracks of one body averaged,
    weighted by `weights` (G,)), then their plain mean, is matched to the given or assumed height.
    """
    if bone_length is not None:
        ratios, used = [], {}
        for a, b, metres in _parse_bone_lengths(bone_length, layout):
            d = np.linalg.norm(points3d[..., a, :] - points3d[..., b, :], axis=-1)
            d = d[np.isfinite(d)]
            if d.size:
                ratios.append(metres / float(np.median(d)))
                used[f"{layout.joint_names[a]}-{layout.joint_names[b]}"] = metres
        if not ratios:
            raise CalibrationError("bone_length: none of the given joint pairs was triangulated")
        return float(np.median(ratios)), {"source": "bone_length", "bones_m": used}
    heights = estimate_heights(points3d, layout)
    people = distinct_people(points3d, heights, weights)
    if not people:
        raise CalibrationError(f"cannot estimate body size: layout {layout.name} needs hips, knees, ankles and "
                               "shoulders triangulated; give bone_length for other joints")
    mean = float(np.mean([np.average(heights[p], weights=weights[p]) for p in people]))
    info = {"people": len(people)}
    if person_height is not None:
        return float(person_height) / mean, {"source": "person_height", "person_height_m": float(person_height), **info}
    return DEFAULT_HEIGHT / mean, {
        "source": "assumed_height", "person_height_m": DEFAULT_HEIGHT, **info,
        "note": f"no person_height or bone_length given: assumed the people's average height is "
                f"{DEFAULT_HEIGHT:.2f} m (average adult); the rig's scale is off by as much as they differ"}


# --- (f) world frame -----------------------------------------------------------------------------

def _joint(points, layout, *names):
    idx = [layout.index(n) for n in names if layout.has(n)]
    if not idx:
        return np.full(points.shape[:-2] + (3,), np.nan)
    return np.mean(points[..., idx, :], axis=-2)


def _floor_frame(points3d: np.ndarray, layout: Layout, heights: np.ndarray, camera0: Camera, ankle_height):
    """Similarity (1, A, T) to the world frame of step f, and a report dict."""
    axis = _joint(points3d, layout, "left_shoulder", "right_shoulder") - _joint(points3d, layout, "left_ankle",
                                                                              "right_ankle")
    axis = axis[np.isfinite(axis).all(axis=-1)]
    if not axis.size:
        raise CalibrationError("cannot find the floor: no frame with shoulders and ankles triangulated")
    up = np.median(axis / np.linalg.norm(axis, axis=-1, keepdims=True), axis=0)
    up /= np.linalg.norm(up)
    # Stance ankle per frame and person: the lower one (a missing one never wins).
    la, ra = (points3d[..., layout.index(n), :] for n in ("left_ankle", "right_ankle"))
    ha, hb = np.nan_to_num(la @ up, nan=np.inf), np.nan_to_num(ra @ up, nan=np.inf)
    stance = np.where((ha <= hb)[..., None], la, ra)                                    # (F, G, 3)
    fallback = np.nanmean(heights) if np.isfinite(heights).any() else DEFAULT_HEIGHT
    h_person = np.broadcast_to(np.where(np.isfinite(heights), heights, fallback), stance.shape[:2])
    ok = np.isfinite(stance).all(axis=-1)
    S, hp = stance[ok], h_person[ok]
    if len(S) < 3:
        raise CalibrationError("cannot find the floor: fewer than 3 frames with an ankle triangulated")
    inl = np.ones(len(S), dtype=bool)
    for _ in range(5):
        anchor = S[inl].mean(axis=0)
        _, sv, Vt = np.linalg.svd(S[inl] - anchor, full_matrices=False)
        if sv[1] / np.sqrt(inl.sum()) < 0.2:  # ankles bunched in a spot or along a line: no plane
            normal, method = up, "body_axis"
        else:
            normal, method = Vt[2] * np.sign(Vt[2] @ up), "stance_ankle_plane"
        res = (S - anchor) @ normal
        offset = np.median(res[inl])
        mad = 1.4826 * np.median(np.abs(res[inl] - offset))
        inl = np.abs(res - offset) < max(3.0 * mad, 0.01)
    offset = np.median(res[inl])
    # Floor = the stance ankles' plane lowered by the ankle joint's height above the sole.
    drop = float(ankle_height) if ankle_height is not None else float(np.median(PROPORTIONS["ankle_height"] * hp[inl]))
    floor_point = anchor + (offset - drop) * normal
    z = normal
    c0 = camera0.center
    origin = c0 - ((c0 - floor_point) @ z) * z
    view = camera0.R[2] - (camera0.R[2] @ z) * z
    if np.linalg.norm(view) < 1e-3:  # camera 0 looks straight down: its image x axis gives +x
        view = camera0.R[0] - (camera0.R[0] @ z) * z
    x = view / np.linalg.norm(view)
    y = np.cross(z, x)
    A = np.stack([x, y, z])
    res_in = res[inl] - offset
    report = {"method": method, "stance_ankle_points": int(inl.sum()), "rejected_points": int((~inl).sum()),
              "plane_rms_mm": round(float(np.sqrt(np.mean(res_in ** 2)) * 1e3), 2),
              "ankle_height_m": round(drop, 4),
              "ankle_height_source": ("given" if ankle_height is not None
                                      else f"{PROPORTIONS['ankle_height']} x estimated height")}
    return 1.0, A, -A @ origin, report


# --- the pipeline --------------------------------------------------------------------------------

def calibrate_from_people(intrinsics: Rig, points2d: np.ndarray | Sequence[np.ndarray],
                          scores: np.ndarray | Sequence[np.ndarray], layout: str | Layout = "coco17",
                          person_height: float | None = None, bone_length: Mapping | None = None,
                          progress: bool = True, seed: int = 0, *, min_score: float = 0.4,
                          epipolar_px: float | None = None, max_bundle_points: int = 3000, bone_weight: float = 30.0,
                          ankle_height: float | None = None) -> tuple[Rig, dict]:
    """Extrinsics of the cameras of `intrinsics` from people seen by them (see the module docstring).

    intrinsics: Rig whose K, distortion and size are used (R, t ignored); points2d: (C, F, P, J, 2)
    distorted px, synchronised frames, rows in any order per camera and frame, NaN = missing, or a list of
    such arrays, one per recording of the same rig (`pool_recordings`: more positions, better conditioned);
    scores: (C, F, P, J) in [0, 1] (a list alike); layout: joint layout of J (needs hips, knees, ankles, shoulders);
    person_height: standing height (m) of the people seen (their average if several); bone_length:
    known lengths instead, {"left_hip-left_knee": 0.42, ...} (m; median over frames and people);
    neither: `DEFAULT_HEIGHT` assumed; seed: OpenCV's RANSAC and the subsampling; min_score: keypoints
    used; epipolar_px: inlier threshold of the essential matrices (Sampson distance, px; None = 3 x the
    detection noise estimated from the data, which also sets the other gates, see `_pair_step`);
    max_bundle_points: 3D joints in the bundle adjustment (frames evenly subsampled to fit);
    bone_weight: px per metre of bone-length inconsistency; ankle_height: ankle joint above the floor (m).

    Returns (rig with the intrinsics' cameras and their R, t in the world frame of step f, report).
    Raises CalibrationError (a ValueError) naming the camera for cameras without usable detections,
    cameras that share no people with the others and cameras that cannot be registered.
    """
    t_start = time.perf_counter()
    timings = {}
    layout = get_layout(layout)
    _check_size_options(person_height, bone_length, layout)
    recordings = None
    if isinstance(points2d, (list, tuple)):
        recordings = [int(np.shape(p)[1]) for p in points2d]
        points2d, scores = pool_recordings(points2d, scores)
    points2d, scores, valid = _check_inputs(intrinsics, points2d, scores, layout, min_score)
    rng = np.random.default_rng(seed)
    cv2.setRNGSeed(int(seed))

    t0 = time.perf_counter()
    xn, tracks, n_tracks, valid = _track_step(intrinsics, points2d, valid, progress)
    timings["tracks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    matches, thresholds = _pair_step(intrinsics, xn, valid, tracks, n_tracks, epipolar_px, rng, progress)
    noise_px = _rig_noise_px(intrinsics, thresholds, matches)
    timings["pairs"] = time.perf_counter() - t0
    pts, sc = _people_step(intrinsics.names, matches, tracks, n_tracks, points2d, scores, valid)

    t0 = time.perf_counter()
    C, F, G, J, _ = pts.shape
    cams, X, cam_info, tree, first, Q = _register(intrinsics, matches, pts.reshape(C, -1, 2), sc.reshape(C, -1),
                                                  min_score, noise_px, progress)
    timings["registration"] = time.perf_counter() - t0
    X = X.reshape(F, G, J, 3)
    # provisional metric scale, so that the bone weight means px per metre
    joints_seen = np.isfinite(X).all(axis=-1).sum(axis=(0, 2)).astype(np.float64)
    s0, _ = _scale_factor(X, joints_seen, layout, person_height, bone_length)
    cams = list(apply_similarity(Rig(cams), s0, np.eye(3), np.zeros(3)))

    t0 = time.perf_counter()
    adjusted = _bundle_step(Rig(cams), X * s0, pts, sc, layout, first, min_score, max_bundle_points, bone_weight,
                            noise_px, progress)
    timings["bundle_adjustment"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rig_m, Xb, heights, weights, s1, scale_report = _metric_scale_step(adjusted, layout, person_height, bone_length)
    rig_w, frames_seen, floor_report = _world_frame_step(rig_m, pts, sc, layout, heights, min_score, ankle_height,
                                                          noise_px)
    timings["scale_and_floor"] = time.perf_counter() - t0

    report = {
        "cameras": intrinsics.names,
        "layout": layout.name,
        "frames": {"total": F if recordings is None else sum(recordings), "recordings": recordings or [F],
                   "bundle_adjustment": int(len(adjusted.frames))},
        "per_camera": _camera_reports(intrinsics.names, adjusted.report, cam_info),
        "pair_graph": _pair_graph(intrinsics.names, matches, Q, tree, thresholds),
        "noise_px": _r(noise_px, 2),
        "people": {"tracks": G, "distinct": [list(p) for p in distinct_people(Xb, heights, weights)],
                   "frames_seen": [int(v) for v in frames_seen],
                   "estimated_height_m": [_r(h, 4) for h in heights]},
        "scale": {**scale_report, "factor_from_provisional": _r(s1, 6)},
        "floor": floor_report,
        "world_frame": "z up, floor z = 0 (ankles lowered by the ankle height), origin on the floor below camera "
                       f"{intrinsics.names[0]!r}, +x = its viewing direction projected on the floor, y = z cross x",
        "bundle_adjustment": {"rounds": adjusted.report.rounds, "points": adjusted.n_points,
                              "observations": adjusted.n_observations, "bone_constraints": adjusted.n_bones,
                              "fixed_camera": intrinsics.names[first]},
        "data": data_sufficiency(sc, Xb, min_score),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "time_s": round(time.perf_counter() - t_start, 3),
    }
    return rig_w, report


def _track_step(intrinsics: Rig, points2d: np.ndarray, valid: np.ndarray, progress: bool):
    """Step a, within each camera: (undistorted normalised keypoints xn (C, F, P, J, 2), track ids (C, F, P),
    tracks per camera [C], valid (C, F, P, J) restricted to detections on a track)."""
    from tqdm import tqdm

    C = len(intrinsics)
    xn = np.stack([cam.undistort_points(points2d[c]) for c, cam in enumerate(intrinsics)])
    tracks = np.stack([link_tracks(points2d[c], valid[c])
                       for c in tqdm(range(C), desc="2D tracks", unit="cam", leave=False, disable=not progress)])
    n_tracks = [int(tracks[c].max()) + 1 if (tracks[c] >= 0).any() else 0 for c in range(C)]
    return xn, tracks, n_tracks, valid & (tracks[..., None] >= 0)


def _pair_step(intrinsics: Rig, xn, valid, tracks, n_tracks, epipolar_px: float | None, rng, progress: bool
               ) -> tuple[dict, dict]:
    """Steps a-b across cameras: ((i, j) -> `_PairMatch` for every pair with at least 30 inliers,
    {(i, j): (inlier threshold px, noise sigma px)}).

    With `epipolar_px` None the threshold comes from the data (`_noise_floor_px` for the floor): a first
    match under a wide threshold (NOISE_START x the floor), then the robust sigma of the epipolar distances
    of the pairs it linked (median / 0.6745, outliers and all), threshold 3 sigma, matched again while
    sigma shrinks by more than 10 %.
    """
    from tqdm import tqdm

    C = len(intrinsics)
    focal = np.array([np.sqrt(c.K[0, 0] * c.K[1, 1]) for c in intrinsics])
    floor = _noise_floor_px(intrinsics)
    matches, thresholds = {}, {}
    pairs = [(i, j) for i in range(C) for j in range(i + 1, C)]
    for i, j in tqdm(pairs, desc="camera pairs", unit="pair", leave=False, disable=not progress):
        px = np.sqrt(focal[i] * focal[j])                       # px per normalised unit
        sigma = NOISE_START * floor if epipolar_px is None else epipolar_px / EPIPOLAR_SIGMAS
        for _ in range(1 if epipolar_px is not None else 4):
            used = EPIPOLAR_SIGMAS * sigma
            m = _match_pair(i, j, xn, valid, tracks, n_tracks, used / px, rng)
            if m is None:
                break
            measured = float(np.median(m.residuals)) * px / _HALF_NORMAL_MEDIAN
            # sigma only shrinks from the wide start: a poorly conditioned pair's spread must not widen it
            settled = epipolar_px is not None or measured > 0.9 * sigma
            sigma = max(min(measured, sigma), floor)
            if settled:
                break
        if m is not None and m.inliers >= 30:
            matches[(i, j)] = m
            thresholds[(i, j)] = (used, measured)
    return matches, thresholds


def _noise_floor_px(intrinsics: Rig) -> float:
    """Smallest detection noise sigma (px) the gates assume: NOISE_FLOOR of the largest image diagonal
    (2 px at 640 x 480), so that sharp synthetic data does not shrink them below what they stand."""
    return NOISE_FLOOR * max(float(np.hypot(*cam.size)) for cam in intrinsics)


def _rig_noise_px(intrinsics: Rig, thresholds: dict, matches: dict) -> float:
    """One detection noise sigma (px) for the rig's gates: the inlier-weighted median of the pairs' sigmas,
    never below the floor."""
    if not thresholds:
        return _noise_floor_px(intrinsics)
    keys = sorted(thresholds)
    sig = np.array([thresholds[k][1] for k in keys])
    w = np.array([matches[k].inliers for k in keys], dtype=np.float64)
    order = np.argsort(sig)
    cum = np.cumsum(w[order])
    median = float(sig[order][np.searchsorted(cum, 0.5 * cum[-1])])
    return max(median, _noise_floor_px(intrinsics))


def _people_step(names: list[str], matches: dict, tracks, n_tracks, points2d, scores, valid):
    """Step a's people across cameras as arrays: (pts (C, F, G, J, 2) px, sc (C, F, G, J), 0 = unused)."""
    person = _link_people(list(matches.values()), tracks, n_tracks)
    G = int(person.max()) + 1 if (person >= 0).any() else 0
    if G == 0:
        raise CalibrationError("no person could be matched between any two cameras "
                               f"({', '.join(map(repr, names))}); are the cameras synchronised?")
    C, F, _, J, _ = points2d.shape
    pts = np.full((C, F, G, J, 2), np.nan)
    sc = np.zeros((C, F, G, J))
    c_, f_, r_ = np.nonzero(person >= 0)
    g_ = person[c_, f_, r_]
    pts[c_, f_, g_] = points2d[c_, f_, r_]
    sc[c_, f_, g_] = np.where(valid[c_, f_, r_], scores[c_, f_, r_], 0.0)
    return pts, sc


@dataclass
class _Adjusted:
    """Step d's result: the adjusted rig and joints of the frames it used."""

    rig: Rig
    points: np.ndarray          # (Fb, G, J, 3), NaN where not adjusted
    frames: np.ndarray          # (Fb,) frame indices
    report: BundleReport
    n_points: int
    n_observations: int
    n_bones: int


def _bundle_step(rig: Rig, X: np.ndarray, pts, sc, layout: Layout, first: int, min_score: float,
                 max_bundle_points: int, bone_weight: float, noise_px: float, progress: bool) -> _Adjusted:
    """Step d: bundle adjustment of cameras and joints X (F, G, J, 3) on evenly spread frames, one free length
    per person and bone; camera `first` fixed; robust loss and outlier rounds scaled by the detection noise;
    observations weighted by score, hips by HIP_WEIGHT more."""
    F, G = X.shape[:2]
    per_frame = np.isfinite(X.reshape(F, -1, 3)).all(axis=-1).sum(axis=1)
    n_frames = F
    if per_frame.sum() > max_bundle_points:
        n_frames = max(2, int(F * max_bundle_points / per_frame.sum()))
    ba_frames = np.unique(np.linspace(0, F - 1, n_frames).round().astype(np.int64))
    Xf = X[ba_frames]
    point_id = np.full(Xf.shape[:3], -1, dtype=np.int64)
    finite = np.isfinite(Xf).all(axis=-1)
    point_id[finite] = np.arange(finite.sum())
    pts_ba = pts[:, ba_frames]                                                # (C, Fb, G, J, 2)
    sc_ba = sc[:, ba_frames]
    cc, ff, gg, jj = np.nonzero((sc_ba >= min_score) & finite[None])
    joint_weight = np.array([HIP_WEIGHT if name in HIP_JOINTS else 1.0 for name in layout.joint_names])
    obs = Observations(camera=cc, point=point_id[ff, gg, jj], xy=pts_ba[cc, ff, gg, jj],
                       weight=sc_ba[cc, ff, gg, jj] * joint_weight[jj])
    bones_arr = layout.bone_array()
    B = len(bones_arr)
    ia, ib = point_id[..., bones_arr[:, 0]], point_id[..., bones_arr[:, 1]]   # (Fb, G, B)
    both = (ia >= 0) & (ib >= 0)
    bone_id = (np.arange(G)[:, None] * B + np.arange(B)[None, :])[None].repeat(len(ba_frames), axis=0)
    bones = BoneConstraints(ia[both], ib[both], bone_id[both], np.full(G * B, np.nan), bone_weight) if B else None
    rig_ba, X_ba, ba = bundle_adjust(rig, obs, Xf[finite], bones=bones, fixed_camera=first, loss=BUNDLE_LOSS,
                                 f_scale=LOSS_SIGMAS * noise_px,
                                 outlier_px=tuple(k * noise_px for k in BUNDLE_SIGMAS), progress=progress)
    Xb = np.full(Xf.shape, np.nan)
    Xb[finite] = X_ba
    return _Adjusted(rig_ba, Xb, ba_frames, ba, int(len(X_ba)), int(len(obs)), int(both.sum()) if B else 0)


def _metric_scale_step(adjusted: _Adjusted, layout: Layout, person_height, bone_length):
    """Step e: (metric rig, joints (Fb, G, J, 3) m, heights (G,) m, weights (G,) joints seen, factor applied,
    scale report)."""
    Xb = adjusted.points
    weights = np.isfinite(Xb).all(axis=-1).sum(axis=(0, 2)).astype(np.float64)
    s1, scale_report = _scale_factor(Xb, weights, layout, person_height, bone_length)
    rig_m = apply_similarity(adjusted.rig, s1, np.eye(3), np.zeros(3))
    Xb = Xb * s1
    return rig_m, Xb, estimate_heights(Xb, layout), weights, s1, scale_report


def _world_frame_step(rig: Rig, pts, sc, layout: Layout, heights, min_score: float, ankle_height,
                      noise_px: float):
    """Step f, from every frame's joints triangulated with the metric rig: (rig in the world frame, frames
    in which each person (G,) had at least half the joints, floor report)."""
    C, F, G, J, _ = pts.shape
    X_all = triangulate(rig, pts.reshape(C, -1, 2), sc.reshape(C, -1), min_views=2, min_score=min_score,
                        max_error_px=TRIANGULATION_SIGMAS * noise_px).points.reshape(F, G, J, 3)
    frames_seen = (np.isfinite(X_all).all(axis=-1).sum(axis=-1) >= (J + 1) // 2).sum(axis=0)
    s, A, T, floor_report = _floor_frame(X_all, layout, heights, rig[0], ankle_height)
    return apply_similarity(rig, s, A, T), frames_seen, floor_report


def data_sufficiency(sc: np.ndarray, points3d: np.ndarray, min_score: float = 0.4) -> dict:
    """How much the result rests on: frames with a well-seen person (at least half the joints in >= 2 views,
    sc (C, F, G, J)), the extent of the people's positions (points3d (F', G, J, 3) m; 5-95 % range along
    their main direction) and "warnings": "too little data" below MIN_TRUSTED_FRAMES frames or
    MIN_POSITION_SPREAD_M of spread, where a rig comes out degrees and decimetres off without other sign."""
    C, F, G, J = sc.shape
    seen = (sc >= min_score).sum(axis=0) >= 2                                   # (F, G, J)
    frames = int((seen.sum(axis=-1) >= (J + 1) // 2).any(axis=-1).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                         # all-NaN persons
        centres = np.nanmean(points3d, axis=2).reshape(-1, 3)
    centres = centres[np.isfinite(centres).all(axis=-1)]
    spread = 0.0
    if len(centres) >= 2:
        centred = centres - centres.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        along = centred @ axis
        spread = float(np.percentile(along, 95) - np.percentile(along, 5))
    notes = []
    if frames < MIN_TRUSTED_FRAMES:
        notes.append(f"too little data: {frames} frames with a person well seen by two cameras (fewer than "
                     f"{MIN_TRUSTED_FRAMES}); the extrinsics may be off by degrees and decimetres")
    if spread < MIN_POSITION_SPREAD_M:
        notes.append(f"too little data: the people's positions span {spread:.2f} m (less than "
                     f"{MIN_POSITION_SPREAD_M} m); walk through the whole scene")
    return {"frames_well_seen": frames, "position_spread_m": round(spread, 3), "warnings": notes}


def _camera_reports(names: list[str], ba: BundleReport, cam_info: dict) -> dict:
    return {n: {"reprojection_rms_px": _r(ba.rms_px[c]), "reprojection_median_px": _r(ba.median_px[c]),
                "observations_used": int(ba.observations[c]), "outliers_dropped": int(ba.outliers[c]),
                **cam_info.get(n, {})}
            for c, n in enumerate(names)}


def _pair_graph(names: list[str], matches: dict, Q: np.ndarray, tree: list, thresholds: dict) -> list[dict]:
    tree_set = {tuple(sorted(e)) for e in tree}
    return [{"cameras": [names[i], names[j]], "inliers": int(Q[i, j]), "track_links": len(matches[(i, j)].links),
             "epipolar_threshold_px": _r(thresholds[(i, j)][0], 2), "epipolar_sigma_px": _r(thresholds[(i, j)][1], 2),
             "tree": (i, j) in tree_set}
            for (i, j) in sorted(matches)]


def _r(v, digits=3):
    v = float(v)
    return round(v, digits) if np.isfinite(v) else None


__all__ = ["calibrate_from_people", "data_sufficiency", "load_keypoint_folders", "link_tracks", "estimate_heights",
           "distinct_people", "pool_recordings"]
