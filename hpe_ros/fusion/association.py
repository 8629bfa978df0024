"""Cross-view association: which 2D detection in each camera belongs to which person.

Steps, all batched over cameras x persons x joints (loops only over priors, cameras and accepted merges):

(a) priors (the tracker's predicted 3D poses) are projected into every camera and matched to that
    camera's detections by one Hungarian assignment per camera on the median joint distance in pixels;
(b) the remaining detections are linked by a symmetric epipolar distance in pixels (median over joints
    confident in both views), and merged greedily, best pair first, with a union-find that forbids two
    rows of one camera in a group and checks the newcomer against every member already there;
(c) the same greedy pass may attach remaining detections to prior-seeded groups (but never merges two
    prior groups);
(d) every group's joints are triangulated at once (robust triangulation) and a view whose median
    reprojection error is far above max_epipolar_px is split off as a singleton; that triangulation is
    returned with the groups (`Association.points` where `triangulated`), so a caller that triangulates
    with the same settings (`max_error_px`, `refine`) need not solve unchanged groups again. So is a
    view that is off by more than max_epipolar_px on more than `max_foreign_share` of its joints while
    enough other views stay (a 2D skeleton that mixes two people: its median fits, a third of its joints
    belong to someone else), worst first; such a detection stays on its own (`Association.mixed`) and
    is not re-attached in (e);
(e) singletons are offered to the triangulated groups that miss their camera.

Cost: (a) is linear in cameras; (b) only scores pairs with at least one detection that no prior claimed
(two prior-seeded groups never merge), so once people are tracked it touches the few new detections,
not all C^2 P^2 pairs.

Why epipolar distance in pixels rather than ray-to-ray distance in metres: detector noise is isotropic
in pixels, so a pixel gate means the same thing for near and far people and for every camera, and it
uses the same units as prior_gate_px and the triangulation's max_error_px.

    >>> assoc = associate(rig, points2d, scores, priors=None)   # points2d (C, P, J, 2), scores (C, P, J)
    >>> assoc.groups          # (G, C) detection row per camera or -1
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from hpe_ros.camera import Rig
from hpe_ros.checks import check_shape
from hpe_ros.fusion.geometry import RigConstants, rig_constants
from hpe_ros.fusion.triangulation import _result, _robust_solve

# A detection (or a detection pair, or a prior vs detection) needs this many confident joints to count.
_MIN_JOINTS = 3


@dataclass
class Association:
    """Result of `associate` for C cameras.

    groups: (G, C) int, detection row per camera or -1; each detection is in at most one group.
    prior_index: (G,) int, index into priors the group was seeded from, or -1.
    points: (G, J, 3) world m, confidence (G, J), joint_views (G, J) int: the validation's robust
    triangulation of each group (what `triangulate` returns for the group's views with associate's
    max_error_px / refine and min_views=2); valid only where `triangulated` (G,) is True, i.e. for
    multi-view groups whose views did not change after validation (NaN / 0 elsewhere). None when no
    group was triangulated. mixed: (G,) bool, single-view groups split off a group because too many of
    their joints were someone else's (a 2D skeleton mixing two people); None when none was.
    """

    groups: np.ndarray
    prior_index: np.ndarray
    points: np.ndarray | None = None
    confidence: np.ndarray | None = None
    joint_views: np.ndarray | None = None
    triangulated: np.ndarray | None = None
    mixed: np.ndarray | None = None

    @property
    def mixed_views(self) -> int:
        """How many views were split off as mixing two people."""
        return 0 if self.mixed is None else int(self.mixed.sum())

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def views(self) -> np.ndarray:
        """(G,) number of cameras in each group."""
        return (self.groups >= 0).sum(axis=1)


# --- geometry ---------------------------------------------------------------------------------------

def _masked_median(values: np.ndarray, mask: np.ndarray, min_count: int) -> np.ndarray:
    """Median over the last axis of values where mask; inf where fewer than min_count entries."""
    v = np.sort(np.where(mask, values, np.inf), axis=-1)
    k = mask.sum(-1)
    lo = np.take_along_axis(v, np.maximum((k - 1) // 2, 0)[..., None], -1)[..., 0]
    hi = np.take_along_axis(v, np.maximum(k // 2, 0)[..., None], -1)[..., 0]
    return np.where(k >= max(min_count, 1), 0.5 * (lo + hi), np.inf)


def epipolar_affinity(rig: Rig, xy: np.ndarray, confident: np.ndarray) -> np.ndarray:
    """Symmetric point-to-epipolar-line distance between all detections of all camera pairs.

    xy: (C, P, J, 2) undistorted normalised coordinates; confident: (C, P, J) bool ->
    distance (C, P, C, P) px, median over joints confident in both detections (at least 3); inf for
    same-camera pairs and pairs with too few common joints.
    """
    C, P, _ = confident.shape
    return _affinity_all(rig_constants(rig), xy, confident).reshape(C, P, C, P)


def _affinity_from(rc: RigConstants, xy: np.ndarray, confident: np.ndarray, active: np.ndarray,
                   source: np.ndarray) -> np.ndarray:
    """`epipolar_affinity` restricted to pairs with at least one detection in `source`.

    xy (C, P, J, 2), confident (C, P, J), active / source (C, P) bool -> (C * P, C * P) px, symmetric,
    inf for every pair not computed (both outside source, inactive, same camera, < 3 common joints).
    The association only merges a pair if one side is not yet owned by a track prior, so with priors
    this touches the few new detections times all detections: linear in cameras, not quadratic.
    """
    C, P, J = confident.shape
    n = C * P
    src = np.flatnonzero((source & active).ravel())
    tgt = np.flatnonzero(active.ravel())
    if src.size == 0 or tgt.size < 2:
        return np.full((n, n), np.inf)
    if 2 * src.size > tgt.size:
        # Most detections are new (no priors yet): the camera-pair formulation is cheaper.
        return _affinity_all(rc, xy, confident)
    cam = np.repeat(np.arange(C), P)
    flat = xy.reshape(n, J, 2)
    conf = confident.reshape(n, J)
    h = np.empty((n, J, 3))
    h[..., :2] = flat
    h[..., 2] = 1.0
    hs, ht = h[src], h[tgt]
    cs, ct = cam[src], cam[tgt]
    # Each source's epipolar lines in every camera: l = E[cs, c] x_s (rows: x_s^T E^T).
    Ls = np.matmul(hs[:, None], rc.ET[cs])                                             # (S, C, J, 3)
    ns = np.sqrt(Ls[..., 0] ** 2 + Ls[..., 1] ** 2)                                     # (S, C, J)
    Lst = Ls[:, ct]                                                                     # (S, T, J, 3)
    num = np.abs(Lst[..., 0] * ht[None, :, :, 0] + Lst[..., 1] * ht[None, :, :, 1] + Lst[..., 2])
    # Each target's lines in the sources' cameras (only their lengths are needed).
    ucams, cs_pos = np.unique(cs, return_inverse=True)
    Lt = np.matmul(ht[:, None], rc.ET[ct][:, ucams])                                   # (T, U, J, 3)
    nt = np.sqrt(Lt[..., 0] ** 2 + Lt[..., 1] ** 2).transpose(1, 0, 2)[cs_pos]         # (S, T, J)
    f = rc.f_geo
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = 0.5 * num * (f[ct][None, :, None] / ns[:, ct] + f[cs][:, None, None] / nt)
    both = conf[src][:, None, :] & conf[tgt][None, :, :] & (cs[:, None] != ct[None, :])[..., None]
    med = _masked_median(dist, both & np.isfinite(dist), _MIN_JOINTS)                  # (S, T)
    D = np.full((n, n), np.inf)
    D[src[:, None], tgt[None, :]] = med
    return np.minimum(D, D.T)


def _affinity_all(rc: RigConstants, xy: np.ndarray, confident: np.ndarray) -> np.ndarray:
    """All pairs, by camera pair (K = C (C - 1) / 2 blocks of P x P) -> (C * P, C * P)."""
    C, P, J = confident.shape
    D = np.full((C, P, C, P), np.inf)
    if C < 2 or P == 0:
        return D.reshape(C * P, C * P)
    ia, ib = np.triu_indices(C, 1)
    E = rc.E[ia, ib]                                                                    # (K, 3, 3)
    f = rc.f_geo
    h = np.empty(xy.shape[:-1] + (3,))
    h[..., :2] = xy
    h[..., 2] = 1.0
    la = np.matmul(h[ia], rc.ET[ia, ib][:, None])         # epipolar lines in b of a's points (K, P, J, 3)
    lb = np.matmul(h[ib], E[:, None])                     # lines in a of b's points (K, Q, J, 3)
    num = np.abs(np.matmul(la.transpose(0, 2, 1, 3), h[ib].transpose(0, 2, 3, 1)))       # (K, J, P, Q)
    num = num.transpose(0, 2, 3, 1)                                                     # (K, P, Q, J)
    na = np.sqrt(la[..., 0] ** 2 + la[..., 1] ** 2)                                     # (K, P, J)
    nb = np.sqrt(lb[..., 0] ** 2 + lb[..., 1] ** 2)                                     # (K, Q, J)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = 0.5 * num * (f[ib][:, None, None, None] / na[:, :, None, :]
                            + f[ia][:, None, None, None] / nb[:, None, :, :])
    both = confident[ia][:, :, None, :] & confident[ib][:, None, :, :]                  # (K, P, Q, J)
    # Median over joints: a few swapped or misplaced joints must not break an otherwise clear match.
    med = _masked_median(dist, both & np.isfinite(dist), _MIN_JOINTS)
    D[ia, :, ib, :] = med
    D[ib, :, ia, :] = med.transpose(0, 2, 1)
    return D.reshape(C * P, C * P)


# --- association ------------------------------------------------------------------------------------

def _match_priors(rc: RigConstants, points2d: np.ndarray, confident: np.ndarray, active: np.ndarray,
                  priors: np.ndarray, gate_px: float) -> np.ndarray:
    """(a): Hungarian assignment of detections to projected priors, per camera.

    -> owner (C, P) int: prior index each detection was assigned to, or -1.
    """
    C, P, J = confident.shape
    owner = np.full((C, P), -1, dtype=np.int64)
    T = priors.shape[0]
    if T == 0 or P == 0:
        return owner
    finite = np.isfinite(priors).all(-1)                                                 # (T, J)
    proj = rc.project(np.where(finite[..., None], priors, 0.0))                          # (C, T, J, 2)
    proj_ok = finite[None] & np.isfinite(proj[..., 0]) & np.isfinite(proj[..., 1])       # (C, T, J)
    du = proj[:, :, None, :, 0] - points2d[:, None, :, :, 0]                             # (C, T, P, J)
    dv = proj[:, :, None, :, 1] - points2d[:, None, :, :, 1]
    dist = np.sqrt(du * du + dv * dv)
    common = proj_ok[:, :, None] & confident[:, None]
    cost = _masked_median(dist, common, _MIN_JOINTS)                                     # (C, T, P)
    cost = np.where(active[:, None, :], cost, np.inf)
    big = 1e9
    for c in range(C):
        if not np.isfinite(cost[c]).any():
            continue
        rows, cols = linear_sum_assignment(np.minimum(cost[c], big))
        keep = cost[c, rows, cols] <= gate_px
        owner[c, cols[keep]] = rows[keep]
    return owner


def _greedy_groups(affinity: np.ndarray, active: np.ndarray, owner: np.ndarray, max_px: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(b)+(c): union-find over detections, merging best-affinity pairs first.

    affinity: (C * P, C * P) px; active: (C, P) bool; owner: (C, P) prior index or -1 ->
    labels (C, P) int group label per detection (-1 = inactive), prior index per label (C * P,).
    """
    C, P = active.shape
    n = C * P
    # Plain Python containers: the loop below touches single elements, where numpy scalars are slow.
    parent = list(range(n))
    prior_of = owner.ravel().tolist()
    cam_bits = [1 << (i // P) for i in range(n)]          # cameras in each component, as a bitmask
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    # Prior-seeded detections start in one component per prior.
    for tp in np.unique(owner[owner >= 0]).tolist():
        nodes = np.flatnonzero(owner.ravel() == tp).tolist()
        root = nodes[0]
        for m in nodes:
            parent[m] = root
            if m != root:
                members.pop(m)
                cam_bits[root] |= cam_bits[m]
        members[root] = nodes
    A = affinity.reshape(n, n)
    act = active.ravel()
    ia, ib = np.nonzero(A < max_px)
    keep = (ia < ib) & act[ia] & act[ib]
    ia, ib = ia[keep], ib[keep]
    order = np.argsort(A[ia, ib], kind="stable")

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(ia[order].tolist(), ib[order].tolist()):
        ra, rb = find(a), find(b)
        if ra == rb or cam_bits[ra] & cam_bits[rb]:
            continue  # already together, or would put two rows of one camera in a group
        pa, pb = prior_of[ra], prior_of[rb]
        if pa >= 0 and pb >= 0:
            continue  # never merge two prior-seeded groups
        ma, mb = members[ra], members[rb]
        if len(ma) > 1 or len(mb) > 1:
            # The newcomer must agree with the members already in the group, not just with the best
            # pair: at least 2/3 of all cross pairs that share joints must be within the gate (one bad
            # pair of a large group, e.g. from a few wrong joints, does not block a clear merge).
            cross = A[np.array(ma)[:, None], np.array(mb)[None, :]]
            if 3 * np.count_nonzero(cross < max_px) < 2 * np.count_nonzero(np.isfinite(cross)):
                continue
        if len(ma) < len(mb):
            ra, rb, ma, mb = rb, ra, mb, ma
        parent[rb] = ra
        ma.extend(mb)
        members.pop(rb)
        cam_bits[ra] |= cam_bits[rb]
        prior_of[ra] = max(pa, pb)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    return np.where(act, roots, -1).reshape(C, P), np.array(prior_of, dtype=np.int64)


def associate(rig: Rig, points2d: np.ndarray, scores: np.ndarray, priors: np.ndarray | None = None,
              min_views: int = 2, max_epipolar_px: float = 25.0, prior_gate_px: float = 60.0,
              min_score: float = 0.1, max_error_px: float | None = None, refine: bool = False,
              max_foreign_share: float = 0.3) -> Association:
    """Group the detections of C cameras into people.

    points2d: (C, P, J, 2) px (NaN = missing); scores: (C, P, J) in [0, 1]; priors: (T, J, 3) predicted
    world poses (NaN joints allowed) or None. Detections with fewer than 3 joints scoring >= min_score
    are ignored. Groups with fewer than min_views cameras are returned too (single-view people).
    max_error_px (default max_epipolar_px) and refine are the validation's triangulation settings: pass
    the ones the caller triangulates with, and the returned points can stand in for that triangulation.
    max_foreign_share: a view of a group of >= 3 views is split off when more than this share of its
    joints (and at least 3) are off the group's robust 3D pose by more than max_epipolar_px (1 = never).
    -> Association(groups (G, C) int, prior_index (G,) int, and the validation's triangulation).
    """
    points2d = np.asarray(points2d, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    C = len(rig)
    dims = check_shape("points2d", points2d, (C, "P", "J", 2))
    check_shape("scores", scores, (C, "P", "J"), dims)
    P = dims["P"]
    if priors is not None:
        priors = np.asarray(priors, dtype=np.float64)
        check_shape("priors", priors, (None, "J", 3), dims)
    max_error_px = max_epipolar_px if max_error_px is None else float(max_error_px)

    confident = np.isfinite(points2d).all(-1) & np.isfinite(scores) & (scores >= min_score)
    active = confident.sum(-1) >= _MIN_JOINTS                                          # (C, P)
    if C == 0 or not active.any():
        return Association(np.zeros((0, C), dtype=np.int64), np.zeros(0, dtype=np.int64))
    pts = np.where(confident[..., None], points2d, np.nan)
    rc = rig_constants(rig)

    owner = np.full((C, P), -1, dtype=np.int64)
    if priors is not None and len(priors):
        owner = _match_priors(rc, pts, confident, active, priors, prior_gate_px)

    # Only pairs with a detection no prior claimed can merge (two prior-seeded groups never do).
    free = active & (owner < 0)
    if free.any():
        xy = rc.undistort(np.where(confident[..., None], points2d, 0.0))
        affinity = _affinity_from(rc, xy, confident, active, free)
    else:
        affinity = np.full((C * P, C * P), np.inf)
    labels, label_prior = _greedy_groups(affinity, active, owner, max_epipolar_px)

    groups, prior_index = _labels_to_groups(labels, label_prior, C, P)
    groups, prior_index, tri = _validate(rig, groups, prior_index, pts, scores, confident, min_score,
                                         max_epipolar_px, max_error_px, refine, max_foreign_share)
    groups, prior_index, tri = _reattach(rc, groups, prior_index, tri, pts, confident, max_epipolar_px,
                                         max_foreign_share)
    return _ordered(groups, prior_index, tri)


def gather_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-camera rows of each group: values (C, P, ...), groups (G, C) -> (C, G, ...) (row 0 where -1)."""
    rows = np.maximum(groups.T, 0)                                   # (C, G)
    return values[np.arange(groups.shape[1])[:, None], rows]


def _labels_to_groups(labels: np.ndarray, label_prior: np.ndarray, C: int, P: int) -> tuple[np.ndarray, np.ndarray]:
    """Union-find labels (C, P) -> groups (G, C), prior_index (G,)."""
    roots = np.unique(labels[labels >= 0])
    groups = np.full((len(roots), C), -1, dtype=np.int64)
    cams, rows = np.nonzero(labels >= 0)
    g = np.searchsorted(roots, labels[cams, rows])
    groups[g, cams] = rows
    return groups, label_prior[roots].astype(np.int64)


class _GroupPoses:
    """Per-group triangulation carried through validation and re-attachment: points (G, J, 3),
    confidence (G, J), views (G, J), fit (G,) bool (the rows are the triangulation of the group's
    current views), robust (G,) bool (a trustworthy 3D pose for re-attachment, even if stale) and mixed
    (G,) bool (a view split off its group as mixing two people)."""

    def __init__(self, points, confidence, views, fit, robust, mixed):
        self.points, self.confidence, self.views, self.fit, self.robust = points, confidence, views, fit, robust
        self.mixed = mixed

    def _arrays(self) -> tuple:
        return self.points, self.confidence, self.views, self.fit, self.robust, self.mixed

    @classmethod
    def empty(cls, G: int, J: int) -> _GroupPoses:
        return cls(np.full((G, J, 3), np.nan), np.zeros((G, J)), np.zeros((G, J), dtype=np.int64),
                   np.zeros(G, dtype=bool), np.zeros(G, dtype=bool), np.zeros(G, dtype=bool))

    def take(self, idx: np.ndarray) -> _GroupPoses:
        return _GroupPoses(*(a[idx] for a in self._arrays()))

    def append_empty(self, n: int) -> _GroupPoses:
        e = _GroupPoses.empty(n, self.points.shape[1])
        return _GroupPoses(*(np.concatenate([a, b]) for a, b in zip(self._arrays(), e._arrays())))


def _foreign_share(err: np.ndarray, have: np.ndarray, max_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Joints off by more than max_px: (count, share of the joints compared), over the last axis."""
    off = (have & (err > max_px)).sum(-1)
    return off, off / np.maximum(have.sum(-1), 1)


def _mixed_views_left_out(rig: Rig, p2: np.ndarray, sc: np.ndarray, inside: np.ndarray, suspect: np.ndarray,
                          min_score: float, max_error_px: float, max_px: float, max_share: float) -> np.ndarray:
    """Views (C, M) that mix two people: p2 (C, M, J, 2), sc (C, M, J) of M groups, inside (C, M) their
    views. Each view of a group of >= 3 views with a suspect view (C, M) (one far off on several joints)
    is compared with the robust triangulation of the group's other views, on the joints they agree on: one
    off by more than max_px on more than max_share of those (and >= _MIN_JOINTS) is mixed, and is split off
    when at least two of the group's views are not.

    Left out, because two mixed views can agree on a joint and outvote the good ones in the full solve.
    """
    C, M, J = sc.shape
    cols = np.flatnonzero((inside.sum(0) >= 3) & (suspect & inside).any(0))
    mixed = np.zeros((C, M), dtype=bool)
    if cols.size == 0:
        return mixed
    S = len(cols)
    views = inside[:, cols]                                                             # (C, S)
    s = np.where(views[..., None], sc[:, cols], 0.0)                                    # (C, S, J)
    left_out = np.broadcast_to(s[:, None], (C, C, S, J)).copy()                         # (C, L, S, J)
    left_out[np.arange(C), np.arange(C)] = 0.0
    pts = np.broadcast_to(p2[:, None, cols], (C, C, S, J, 2)).reshape(C, C * S * J, 2)
    r = _robust_solve(rig, pts, left_out.reshape(C, C * S * J), min_views=2, min_score=min_score,
                      max_error_px=max_error_px, max_removals=None, refine=False)
    X = r["X"].reshape(C, S, J, 3)                                                      # (L, S, J, 3)
    proj = rig_constants(rig).project(X)[np.arange(C), np.arange(C)]                    # (L, S, J, 2)
    err = np.linalg.norm(proj - p2[:, cols], axis=-1)                                   # (C, S, J)
    # Only joints the other views agree on (two or more within max_error_px) can judge the view left out.
    have = (s >= min_score) & (s > 0) & np.isfinite(err) & r["good"].reshape(C, S, J)
    off, share = _foreign_share(err, have, max_px)
    flagged = (share > max_share) & (off >= _MIN_JOINTS) & views
    # When fewer than two views pass, the group's views disagree without a majority: nothing to judge by.
    mixed[:, cols] = flagged & ((views & ~flagged).sum(0) >= 2)[None, :]
    return mixed


def _validate(rig: Rig, groups: np.ndarray, prior_index: np.ndarray, pts: np.ndarray, scores: np.ndarray,
              confident: np.ndarray, min_score: float, max_px: float, max_error_px: float, refine: bool,
              max_foreign_share: float = 1.0) -> tuple[np.ndarray, np.ndarray, _GroupPoses]:
    """(d): triangulate all multi-view groups at once; split off views that do not fit their group.

    -> groups, prior_index, and the per-group poses: `fit` for groups that kept all their views (the
    triangulation stands), `robust` for every group that kept >= 2 views, `mixed` for the views split
    off as mixing two people.
    """
    C, P, J, _ = pts.shape
    multi = np.flatnonzero((groups >= 0).sum(1) >= 2)
    tri = _GroupPoses.empty(len(groups), J)
    if multi.size == 0:
        return groups, prior_index, tri
    g = groups[multi]                                                                   # (M, C)
    cam = np.arange(C)[None, :]
    row = np.maximum(g, 0)
    present = (g >= 0)[..., None]
    p2 = np.where(present[..., None], pts[cam, row], np.nan)                            # (M, C, J, 2)
    sc = np.where(present, np.where(confident[cam, row], scores[cam, row], 0.0), 0.0)  # (M, C, J)
    M = len(multi)
    p2 = p2.transpose(1, 0, 2, 3).reshape(C, M * J, 2)
    sc = sc.transpose(1, 0, 2).reshape(C, M * J)
    inside = g.T >= 0                                                                   # (C, M)

    def errors(r, m):
        """Error (C, m, J) of every view against the robust points, and where it counts."""
        have = r["usable"].reshape(C, m, J) & np.isfinite(r["X"]).all(1).reshape(1, m, J)
        return r["err"].reshape(C, m, J), have

    def split(r, cols):
        """Views (C, m) whose median error against the robust points is above max_px, and the groups
        (m,) that are hopeless (fewer than 2 views would stay)."""
        med = _masked_median(*errors(r, len(cols)), _MIN_JOINTS)                       # (C, m)
        bad = (med > max_px) & inside[:, cols]
        # Too few views left to stand on: the group as a whole is inconsistent, so split all of it.
        hopeless = bad.any(0) & (inside[:, cols].sum(0) - bad.sum(0) < 2)
        return bad | (hopeless[None, :] & inside[:, cols]), hopeless

    r = _robust_solve(rig, p2, sc, min_views=2, min_score=min_score, max_error_px=max_error_px,
                      max_removals=None, refine=refine)
    bad, hopeless = split(r, np.arange(M))
    res = _result(r)
    tri.points[multi] = res.points.reshape(M, J, 3)
    tri.confidence[multi] = res.confidence.reshape(M, J)
    tri.views[multi] = res.views.reshape(M, J)
    if max_error_px < max_px and bad.any():
        # A solve stricter than the association gate leaves a view that is merely poor (many joints
        # between the two thresholds) looking worse than it is: confirm the split with a solve at the
        # gate itself, as if validating alone. Only the groups that would lose views pay for it.
        cols = np.flatnonzero(bad.any(0))
        jj = (cols[:, None] * J + np.arange(J)[None]).ravel()
        r2 = _robust_solve(rig, p2[:, jj], sc[:, jj], min_views=2, min_score=min_score, max_error_px=max_px,
                           max_removals=None, refine=False)
        bad[:, cols], hopeless[cols] = split(r2, cols)
    mixed = np.zeros_like(bad)
    if max_foreign_share < 1:
        off, _ = _foreign_share(*errors(r, M), max_px)
        mixed = _mixed_views_left_out(rig, p2.reshape(C, M, J, 2), sc.reshape(C, M, J), inside & ~bad,
                                      off >= _MIN_JOINTS, min_score, max_error_px, max_px, max_foreign_share)
        bad |= mixed
    tri.robust[multi] = ~hopeless
    tri.fit[multi] = ~bad.any(0)
    if not bad.any():
        return groups, prior_index, tri
    split_g, split_c = np.nonzero(bad.T)
    singles = np.full((len(split_g), C), -1, dtype=np.int64)
    singles[np.arange(len(split_g)), split_c] = groups[multi[split_g], split_c]
    groups = groups.copy()
    groups[multi[split_g], split_c] = -1
    keep = np.flatnonzero((groups >= 0).any(1))
    tri = tri.take(keep).append_empty(len(singles))
    tri.mixed[len(keep):] = mixed.T[split_g, split_c]
    return (np.concatenate([groups[keep], singles]),
            np.concatenate([prior_index[keep], np.full(len(singles), -1, dtype=np.int64)]), tri)


def _reattach(rc: RigConstants, groups: np.ndarray, prior_index: np.ndarray, tri: _GroupPoses,
              pts: np.ndarray, confident: np.ndarray, max_px: float, max_foreign_share: float = 1.0
              ) -> tuple[np.ndarray, np.ndarray, _GroupPoses]:
    """(e) Offer every unseeded singleton to the triangulated groups that miss its camera: project each
    group's 3D pose into that camera and match by Hungarian assignment on the median joint distance.
    This recovers detections the pairwise greedy pass was too cautious to merge; one whose joints are off
    the group's on more than max_foreign_share of them (a mixed skeleton) is not offered to it."""
    if not tri.robust.any():
        return groups, prior_index, tri
    size = (groups >= 0).sum(1)
    single = np.flatnonzero((size == 1) & (prior_index < 0) & ~tri.mixed)
    if single.size == 0:
        return groups, prior_index, tri
    targets = np.flatnonzero(tri.robust)
    X = tri.points[targets]                                                             # (M, J, 3)
    ok3 = np.isfinite(X).all(-1)
    proj = rc.project(np.where(ok3[..., None], X, 0.0))                                 # (C, M, J, 2)
    s_cam = (groups[single] >= 0).argmax(1)
    s_row = groups[single, s_cam]
    det = pts[s_cam, s_row]                                                             # (S, J, 2)
    ps = proj[s_cam]                                                                    # (S, M, J, 2)
    du, dv = ps[..., 0] - det[:, None, :, 0], ps[..., 1] - det[:, None, :, 1]
    d = np.sqrt(du * du + dv * dv)                                                      # (S, M, J)
    common = ok3[None] & np.isfinite(ps[..., 0]) & np.isfinite(ps[..., 1]) & confident[s_cam, s_row][:, None, :]
    cost = _masked_median(d, common, _MIN_JOINTS)                                        # (S, M)
    off, share = _foreign_share(d, common, max_px)
    cost[(share > max_foreign_share) & (off >= _MIN_JOINTS)] = np.inf
    cost[groups[targets][:, s_cam].T >= 0] = np.inf                                     # camera already taken
    if not (cost <= max_px).any():
        return groups, prior_index, tri
    groups = groups.copy()
    used = np.zeros(len(groups), dtype=bool)
    for c in np.unique(s_cam):
        rows_s = np.flatnonzero(s_cam == c)
        sub = cost[rows_s]
        if not np.isfinite(sub).any():
            continue
        ri, ci = linear_sum_assignment(np.minimum(sub, 1e9))
        for a, b in zip(ri, ci):
            if sub[a, b] <= max_px:
                groups[targets[b], c] = s_row[rows_s[a]]
                tri.fit[targets[b]] = False                                              # gained a view
                used[single[rows_s[a]]] = True
    return groups[~used], prior_index[~used], tri.take(~used)


def _ordered(groups: np.ndarray, prior_index: np.ndarray, tri: _GroupPoses) -> Association:
    """Deterministic order: prior-seeded groups by prior index, then by size (largest first)."""
    size = (groups >= 0).sum(1)
    first = np.where(groups >= 0, np.arange(groups.shape[1])[None] * 1000 + groups, 1 << 40).min(1)
    key = np.lexsort((first, -size, np.where(prior_index >= 0, prior_index, 1 << 30)))
    fit = tri.fit[key]
    return Association(groups[key], prior_index[key], points=np.where(fit[:, None, None], tri.points[key], np.nan),
                       confidence=np.where(fit[:, None], tri.confidence[key], 0.0),
                       joint_views=np.where(fit[:, None], tri.views[key], 0), triangulated=fit,
                       mixed=tri.mixed[key] if tri.mixed.any() else None)
