"""Synthetic rig: procedural human motion seen by virtual cameras, as 2D detections with ground truth.

    >>> from hpe_ros.sim import MotionScript, default_rig, observe
    >>> script, rig, rng = MotionScript(n_people=3, seed=0), default_rig(4), np.random.default_rng(0)
    >>> obs = observe(rig, script.pose(1.0), rng)   # obs.points2d (C, P, 17, 2), obs.scores, obs.person_ids
    >>> obs = observe(rig, script.pose(1.0), rng, errors="realistic")   # a real detector's errors
"""
from .detector_errors import DetectorErrors
from .motion import MotionScript, Person, motion_types
from .observe import Observation, observe, simulate_clip
from .rig import default_rig

__all__ = ["MotionScript", "Person", "motion_types", "default_rig", "observe", "simulate_clip", "Observation",
           "DetectorErrors"]
