"""A running robust scale of residuals, for outlier thresholds taken from the data instead of fixed numbers.

A fixed threshold is either too loose for a precise detector (a guessed or border-piled joint a few pixels
off passes and pulls the point) or too tight for a noisy one (good views get dropped). The median of the
residuals says how precise the measurements are now, so thresholds follow it: `k x scale`, within bounds.
Used for the fusion's reprojection threshold (px), the tracker's innovation gate (m) and the One-Euro
filter's noise estimate (m).

    scale = RobustScale(initial=2.0)
    scale.update(stamp, residuals)               # residuals (...), NaN entries ignored
    scale.threshold(k=6.0, floor=2.0, cap=12.0)
"""
from __future__ import annotations

import numpy as np


class RobustScale:
    """Running median of residuals (any unit).

    Each update takes the median of one frame's residuals and moves the running value toward it with time
    constant `tau_s`; the first measured frame replaces the initial value; frames with fewer than
    `min_samples` residuals are skipped. Outliers may be among the residuals: while they are a minority,
    the median does not see how far off they are.
    """

    def __init__(self, initial: float, tau_s: float = 2.0, min_samples: int = 10):
        if not initial > 0 or not tau_s > 0:
            raise ValueError(f"RobustScale needs initial > 0 and tau_s > 0, got {initial}, {tau_s}")
        self.initial, self.scale = float(initial), float(initial)
        self.tau_s, self.min_samples = float(tau_s), int(min_samples)
        self._last: float | None = None       # stamp of the last update that measured something

    @property
    def measured(self) -> bool:
        """Whether any frame has been measured since construction or reset."""
        return self._last is not None

    def update(self, stamp: float, residuals: np.ndarray) -> None:
        """Fold in one frame's residuals (...); NaN entries are ignored."""
        residuals = np.asarray(residuals, dtype=np.float64)
        ok = np.isfinite(residuals)
        if np.count_nonzero(ok) < self.min_samples:
            return
        gain = 1.0 if self._last is None else min(1.0, max(float(stamp) - self._last, 0.0) / self.tau_s)
        self._last = float(stamp)
        self.scale += gain * (float(np.median(residuals[ok])) - self.scale)

    def threshold(self, k: float, floor: float, cap: float = np.inf) -> float:
        """k x the running scale, within [floor, cap]."""
        return float(min(max(k * self.scale, floor), cap))

    def reset(self) -> None:
        """Back to the initial value; the next measured frame starts the estimate afresh."""
        self.scale, self._last = self.initial, None
