"""Body proportions and the default standing height: one home for the simulator's bodies, the metric
scale of calibration from people and the lifter's scale priors.

Segment lengths are fractions of standing height (Drillis & Contini 1966, as tabulated in Winter,
"Biomechanics and Motor Control of Human Movement", fig. 4.1).

    >>> segment_lengths(1.80)["thigh"]                 # metres
    0.441
"""
from __future__ import annotations

import math

# Fractions of standing height.
PROPORTIONS = {
    "ankle_height": 0.039,    # floor to ankle joint
    "shank": 0.246,           # knee (0.285 h) to ankle
    "thigh": 0.245,           # hip joint (0.530 h) to knee
    "hip_width": 0.125,       # between the hip keypoints
    "spine": 0.288,           # hip line to shoulder line (0.818 h)
    "shoulder_width": 0.200,  # between shoulder joint centres (biacromial breadth is 0.259 h)
    "upper_arm": 0.186,
    "forearm": 0.146,
}

# Shoulder joint to hip joint on one side: the spine leaning in by half the shoulder-hip width difference.
TRUNK_SIDE = math.hypot(PROPORTIONS["spine"], (PROPORTIONS["shoulder_width"] - PROPORTIONS["hip_width"]) / 2)

# Thigh + shank + trunk side: 0.781 of standing height, whatever the posture (bone lengths, not a span).
HEIGHT_FRACTION = PROPORTIONS["thigh"] + PROPORTIONS["shank"] + TRUNK_SIDE

# An average adult's standing height (m): what calibration from people assumes when told nothing, and the
# size the lifter's scale prior and template body have.
DEFAULT_HEIGHT = 1.70


def segment_lengths(height: float = DEFAULT_HEIGHT) -> dict[str, float]:
    """Segment lengths (m) of a person `height` metres tall, keys as in PROPORTIONS."""
    return {k: v * height for k, v in PROPORTIONS.items()}


__all__ = ["PROPORTIONS", "TRUNK_SIDE", "HEIGHT_FRACTION", "DEFAULT_HEIGHT", "segment_lengths"]
