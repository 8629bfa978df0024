"""Causal smoothing filters batched over arrays of 3D points (tracks x joints x xyz), chosen by name.

A filter keeps one state per *element* — every index of the leading shape, e.g. (T, J) for
points (T, J, 3) — with its own timestamp, so joints seen at different times filter correctly.
Invalid elements (``valid_mask`` False) keep their state untouched; their output is their last
estimate (NaN until first seen).

    f = OneEuroFilter(min_cutoff=1.0, beta=0.3)
    smooth = f(t, points, valid)        # points (T, J, 3), valid (T, J) -> (T, J, 3)
    f.reset(valid & teleported)         # restart chosen elements; the next sample re-initialises them
    f.resize(n)                         # grow / shrink the leading axis (tracks come and go)

`make_filter(name, settings)` builds the filter registered in FILTERS under `name` ("one_euro", "none"):
a new filter is one class with that interface plus one entry in FILTERS; its constructor arguments
come from the settings' `<name>_<argument>` fields (TrackerConfig.one_euro_beta -> beta).
"""
from __future__ import annotations

import inspect

import numpy as np

from ..checks import check_shape
from .robust_scale import RobustScale

_MIN_DT = 1e-4  # s; guards repeated stamps (dt = 0) from dividing by zero


def _smoothing_factor(dt: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    """Exponential smoothing factor of a first-order low-pass with `cutoff` Hz over `dt` seconds."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class _BatchedState:
    """Shared bookkeeping: lazily sized state arrays, masks, reset and resize."""

    _fields: tuple[str, ...] = ()

    def __init__(self):
        self.shape: tuple[int, ...] | None = None  # element shape (leading dims), e.g. (T, J)
        self.dim = 3
        self.t_prev = np.zeros(0)
        self.initialised = np.zeros(0, dtype=bool)

    def _ensure(self, x: np.ndarray):
        if self.shape is None:
            self.shape, self.dim = x.shape[:-1], x.shape[-1]
            self.t_prev = np.zeros(self.shape)
            self.initialised = np.zeros(self.shape, dtype=bool)
            for name in self._fields:
                setattr(self, name, np.full(self.shape + (self.dim,), np.nan))
        elif x.shape[:-1] != self.shape or x.shape[-1] != self.dim:
            raise ValueError(f"filter holds state for shape {self.shape + (self.dim,)}, got {x.shape}; "
                             "call resize() when the number of tracks changes")

    def _inputs(self, t, x, valid_mask):
        x = np.asarray(x, dtype=np.float64)
        check_shape("points", x, ("D",), leading=True)
        self._ensure(x)
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), self.shape)
        valid = np.all(np.isfinite(x), axis=-1)
        if valid_mask is not None:
            valid_mask = np.asarray(valid_mask, dtype=bool)
            check_shape("valid_mask", valid_mask, self.shape)
            valid &= valid_mask
        return t, x, valid

    def _commit(self, t, x, valid, x_new, rate_field: str, rate_new) -> np.ndarray:
        """Store one update: valid elements seen before take (x_new, rate_new); first sightings start at x
        with rate 0; invalid elements keep their state. Returns a copy of the estimate (..., D)."""
        first = (valid & ~self.initialised)[..., None]
        step = (valid & self.initialised)[..., None]
        self.x_hat = np.where(step, x_new, np.where(first, x, self.x_hat))
        setattr(self, rate_field, np.where(step, rate_new, np.where(first, 0.0, getattr(self, rate_field))))
        self.t_prev = np.where(valid, t, self.t_prev)
        self.initialised |= valid
        return self.x_hat.copy()

    def reset(self, mask: np.ndarray | None = None):
        """Forget the state of elements where `mask` (element shape) is True (all when None)."""
        if self.shape is None:
            return
        mask = np.ones(self.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        self.initialised[mask] = False
        for name in self._fields:
            getattr(self, name)[mask] = np.nan

    def resize(self, n: int):
        """Set the leading axis to `n` elements: keeps the first ones, new ones start uninitialised."""
        if self.shape is None:
            return
        old = self.shape[0]
        if n == old:
            return
        self.shape = (n,) + self.shape[1:]
        if n < old:
            self.t_prev, self.initialised = self.t_prev[:n], self.initialised[:n]
            for name in self._fields:
                setattr(self, name, getattr(self, name)[:n])
            return
        grow = (n - old,) + self.shape[1:]
        self.t_prev = np.concatenate([self.t_prev, np.zeros(grow)])
        self.initialised = np.concatenate([self.initialised, np.zeros(grow, dtype=bool)])
        for name in self._fields:
            setattr(self, name, np.concatenate([getattr(self, name), np.full(grow + (self.dim,), np.nan)]))


class OneEuroFilter(_BatchedState):
    """One-Euro filter (Casiez et al., CHI 2012) on vectors, batched over elements.

    The cutoff adapts to speed: ``cutoff = min_cutoff + beta * |dx/dt|`` (Hz, speed in units/s,
    the norm over the vector so xyz are smoothed alike). Low min_cutoff removes jitter at rest; higher
    beta cuts lag in fast motion. d_cutoff smooths the speed estimate itself.

    With noise_ref > 0 the cutoffs also adapt to the measurements' noise: the filter estimates the
    jitter online (`noise`: median over elements of |x_k - x_{k-1} - (x_{k-1} - x_{k-2}) dt_k / dt_{k-1}|,
    the second difference that motion at constant velocity cancels; a RobustScale over NOISE_TAU_S) and
    multiplies both cutoffs by (noise_ref / noise)^2 within [1, MAX_SCALE]: min_cutoff and beta are the
    settings for measurements as noisy as noise_ref or noisier, cleaner ones are smoothed less and lag less.
    Squared because the estimate also holds the motion's own second differences, so noise_ref / noise
    understates how much cleaner the measurements are (on the simulator's motion the square did best).
    """

    _fields = ("x_hat", "dx_hat", "x_raw", "raw_rate")
    NOISE_TAU_S = 2.0     # time constant of the running noise estimate
    MIN_SAMPLES = 6       # elements a frame needs to update the noise estimate
    MAX_SCALE = 4.0       # the cutoffs rise at most this factor

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.3, d_cutoff: float = 1.0, noise_ref: float = 0.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0 or noise_ref < 0:
            raise ValueError("need min_cutoff > 0, d_cutoff > 0, beta >= 0, noise_ref >= 0; got "
                             f"{min_cutoff}, {d_cutoff}, {beta}, {noise_ref}")
        super().__init__()
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.noise_ref = float(noise_ref)
        self._noise = RobustScale(noise_ref or 1.0, self.NOISE_TAU_S, self.MIN_SAMPLES)

    @property
    def noise(self) -> float:
        """Running jitter estimate (units of x); noise_ref until measured."""
        return self._noise.scale if self._noise.measured else self.noise_ref

    @property
    def cutoff_scale(self) -> float:
        """Factor on both cutoffs from the noise estimate (1 without noise_ref)."""
        if self.noise_ref <= 0 or not self.noise > 0:
            return 1.0
        return float(np.clip((self.noise_ref / self.noise) ** 2, 1.0, self.MAX_SCALE))

    def _update_noise(self, t: np.ndarray, x: np.ndarray, valid: np.ndarray, dt: np.ndarray) -> np.ndarray:
        """Fold this sample's second differences into `noise`; returns the new raw rate (..., D)."""
        with np.errstate(invalid="ignore"):
            step = x - self.x_raw
            residual = np.linalg.norm(step - self.raw_rate * dt[..., None], axis=-1)
        usable = valid & np.isfinite(residual)
        if self.noise_ref > 0 and usable.any():
            self._noise.update(float(np.max(t[usable])), np.where(usable, residual, np.nan))
        return step / dt[..., None]

    def __call__(self, t: float | np.ndarray, x: np.ndarray, valid_mask: np.ndarray | None = None) -> np.ndarray:
        """Filter one sample per element.

        t: scalar or (...,) s; x: (..., D); valid_mask: (...,) bool or None (NaN rows are invalid anyway).
        Returns (..., D) filtered values (last estimate for invalid elements, NaN if never seen).
        """
        t, x, valid = self._inputs(t, x, valid_mask)
        dt = np.maximum(t - self.t_prev, _MIN_DT)
        raw_rate = self._update_noise(t, x, valid, dt)
        scale = self.cutoff_scale

        with np.errstate(invalid="ignore"):
            dx = (x - self.x_hat) / dt[..., None]
            dx_hat = self.dx_hat + _smoothing_factor(dt, self.d_cutoff)[..., None] * (dx - self.dx_hat)
            cutoff = scale * (self.min_cutoff + self.beta * np.linalg.norm(dx_hat, axis=-1))
            x_hat = self.x_hat + _smoothing_factor(dt, cutoff)[..., None] * (x - self.x_hat)

        seen = (valid & self.initialised)[..., None]
        self.raw_rate = np.where(seen, raw_rate, np.where(valid[..., None], np.nan, self.raw_rate))
        self.x_raw = np.where(valid[..., None], x, self.x_raw)
        return self._commit(t, x, valid, x_hat, "dx_hat", dx_hat)

    @property
    def velocity(self) -> np.ndarray:
        """(..., D) smoothed derivative estimate (units/s); NaN for uninitialised elements."""
        return self.dx_hat.copy()


class PassThrough:
    """No smoothing: the measurements go out as they came in (same interface as the filters)."""

    def __call__(self, t: float | np.ndarray, x: np.ndarray, valid_mask: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def reset(self, mask: np.ndarray | None = None):
        """Nothing to forget."""

    def resize(self, n: int):
        """No state to resize."""


FILTERS: dict[str, type] = {"one_euro": OneEuroFilter, "none": PassThrough}


def make_filter(name: str, settings: object = None):
    """The filter registered as `name`, built with the `<name>_<argument>` attributes of `settings`
    (arguments that settings lacks keep their defaults). ValueError for an unknown name."""
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of: {', '.join(FILTERS)}")
    cls = FILTERS[name]
    arguments = inspect.signature(cls).parameters
    return cls(**{a: getattr(settings, f"{name}_{a}") for a in arguments if hasattr(settings, f"{name}_{a}")})
