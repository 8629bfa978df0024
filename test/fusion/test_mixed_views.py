"""A 2D skeleton that mixes two people (a merged or confused detection) must not drag a fused person off:
association compares each view with the triangulation of the group's other views and splits off the one
whose joints are too often someone else's (`FusionConfig.max_foreign_share`)."""
from __future__ import annotations

import numpy as np
import pytest

from hpe_ros.fusion import FusionConfig, FusionPipeline

from helpers.fusion_scenes import person, ring_rig

# Two mixed views, each with some joints of the other person; they share joints 1 and 3, where they outvote
# the two good views because they are more confident.
MIXED = {1: [1, 3, 6, 8, 9, 10, 15], 3: [1, 3, 7, 11, 13]}


def fuse(config: FusionConfig, frames: int = 10):
    """Two people, four cameras, views 1 and 3 mixing person 1's joints into person 0's skeleton ->
    (fused person 0's joint errors (J,) m, the pipeline)."""
    rig = ring_rig(4)
    people = np.stack([person(-0.3, 0.0, 0.3), person(0.35, 0.25, -0.4)])
    pixels = np.stack([cam.project(people) for cam in rig])                   # (C, 2, J, 2)
    for c, joints in MIXED.items():
        pixels[c, 0, joints] = pixels[c, 1, joints]
    scores = np.full(pixels.shape[:3], 0.6)
    scores[list(MIXED)] = 1.0
    pipe = FusionPipeline(rig, "coco17", config)
    for k in range(frames):
        result = pipe.step(k / 30, pixels, scores)
    points, _, _, _ = result.as_arrays()
    err = np.linalg.norm(points[:, None] - people[None], axis=-1)             # (fused, true, J)
    nearest = np.nanargmin(np.nanmean(err[:, 0], axis=-1))
    return err[nearest, 0], pipe


def test_a_mixed_view_is_dropped_and_the_person_stays_put():
    err, pipe = fuse(FusionConfig())
    assert np.isfinite(err).sum() >= 15
    assert np.nanmax(err) < 0.06 and np.nanmean(err) < 0.01
    assert pipe.mixed_views_dropped >= 10                                     # view 1, every frame
    assert pipe.last_association.mixed_views >= 1


def test_without_the_check_the_mixed_views_drag_the_person():
    err, pipe = fuse(FusionConfig(max_foreign_share=1.0))
    assert np.nanmax(err) > 0.3                                               # joints 1 and 3 are person 1's
    assert pipe.mixed_views_dropped == 0


def test_views_are_kept_when_fewer_than_two_would_pass():
    """Three views, two of them mixed (different joints): each mixed view fails against the other two, but
    dropping both would leave one view, so none is dropped (the triangulation's per-joint outlier
    rejection still sees two good views against one on every joint)."""
    rig = ring_rig(3)
    people = np.stack([person(-0.3, 0.0, 0.3), person(0.35, 0.25, -0.4)])
    pixels = np.stack([cam.project(people) for cam in rig])
    pixels[1, 0, [1, 3, 6, 8]] = pixels[1, 1, [1, 3, 6, 8]]
    pixels[2, 0, [9, 10, 13, 15]] = pixels[2, 1, [9, 10, 13, 15]]
    pipe = FusionPipeline(rig, "coco17", FusionConfig())
    points, _, _, _ = pipe.step(0.0, pixels, np.full(pixels.shape[:3], 0.8)).as_arrays()
    assert pipe.mixed_views_dropped == 0
    assert sorted((pipe.last_association.groups >= 0).sum(1).tolist()) == [3, 3]


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_bad_share_is_refused(share):
    with pytest.raises(ValueError, match="max_foreign_share"):
        FusionConfig(max_foreign_share=share)
