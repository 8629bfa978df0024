"""The oracle reference for fusion accuracy: what triangulation reaches when it knows which views are right.

The simulator knows, for every reported joint, whether the detector got it right: not swapped or jumped
(`is_outlier`), not guessed behind an occluder (`is_occluded`), not piled on the image border (reported
while it projects outside the image: truncation), in a row of a true person (not a false person), and
which person each row is (the association is given). `oracle_triangulate` runs one DLT per true person
and joint over exactly those views, so a fusion's error over the oracle's says what association, outlier
rejection and tracking cost on top of the detector's own noise.

    >>> X = oracle_triangulate(rig, obs, truth, "realistic")   # obs from observe(rig, truth, rng, errors=...)
    >>> X.shape                                                # (P, J, 3), NaN with < 2 inlier views
"""
from __future__ import annotations

import numpy as np

from ..camera import Rig
from ..checks import check_shape
from ..fusion.triangulation import triangulate
from .detector_errors import DetectorErrors, preset
from .observe import Observation, project


def detector_joints(joints3d: np.ndarray, errors: DetectorErrors | str | None) -> np.ndarray:
    """(P, J, 3) the points the detector reports for true joints `joints3d` (P, J, 3): the joints plus
    the error model's per-person definition offsets (unchanged for the clean model)."""
    model = preset(errors) if isinstance(errors, str) else errors
    return joints3d if model is None else model.offset_joints(joints3d)


def inlier_detections(rig: Rig, obs: Observation, joints3d: np.ndarray, errors: DetectorErrors | str | None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The right detections of each true person, in ground-truth order.

    obs: `observe(rig, joints3d, rng, errors=errors)`; joints3d: (P, J, 3) true joints ->
    points (C, P, J, 2) px and scores (C, P, J), score 0 where the view is not an inlier.
    """
    joints3d = np.asarray(joints3d, dtype=np.float64)
    P, J = check_shape("joints3d", joints3d, ("P", "J", 3))["P"], joints3d.shape[1]
    C = len(rig)
    check_shape("obs.scores", obs.scores, (C, None, J))
    ideal, _ = project(rig, detector_joints(joints3d, errors).reshape(-1, 3))    # (C, P * J, 2)
    size = np.array([c.size for c in rig], dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore"):
        inside = np.all((ideal >= 0) & (ideal < size), axis=-1).reshape(C, P, J)

    right = obs.scores > 0
    for flags in (obs.is_outlier, obs.is_occluded):
        if flags is not None:
            right &= ~flags
    points = np.full((C, P, J, 2), np.nan)
    scores = np.zeros((C, P, J))
    cam, row = np.nonzero(obs.person_ids >= 0)                                    # true people only
    person = obs.person_ids[cam, row]
    points[cam, person] = obs.points2d[cam, row]
    scores[cam, person] = np.where(right[cam, row], obs.scores[cam, row], 0.0)
    scores = np.where(inside, scores, 0.0)
    return np.where((scores > 0)[..., None], points, np.nan), scores


def oracle_triangulate(rig: Rig, obs: Observation, joints3d: np.ndarray, errors: DetectorErrors | str | None,
                       min_score: float = 0.1, weighted: bool = True) -> np.ndarray:
    """(P, J, 3) world m: each true person's joints triangulated over their inlier views only (NaN with
    fewer than 2). The solver is the fusion's (`fusion.triangulate`: DLT with pixel-scaled rows and a
    depth-reweighted polish) with outlier rejection off; weighted=True weighs views by score as the
    fusion does, False weighs them equally."""
    points, scores = inlier_detections(rig, obs, joints3d, errors)
    C, P, J = scores.shape
    scores = np.where(scores >= min_score, scores if weighted else 1.0, 0.0)
    tri = triangulate(rig, points.reshape(C, P * J, 2), scores.reshape(C, P * J), min_score=min_score,
                      max_error_px=np.inf, max_removals=0)
    return tri.points.reshape(P, J, 3)
