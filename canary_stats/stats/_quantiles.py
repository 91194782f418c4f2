"""Anytime-valid confidence sequences and tests for quantiles (p95 latency).

A quantile's confidence sequence is a pair of order statistics whose ranks come
from a time-uniform boundary for the Bernoulli indicators ``1{X_i <= q}``
(Howard & Ramdas [1]_, Sec. 3). It is distribution-free and exact, needs no
density estimate, and works from raw samples or from cumulative histogram
buckets (Prometheus ``le`` buckets), in which case each order statistic is only
known to lie in its bucket and the bounds widen to the bucket edges.

References
----------
.. [1] Howard, Ramdas (2022). Sequential estimation of quantiles with applications
       to A/B-testing and best-arm identification. Bernoulli 28(3), 1704-1728.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._boundaries import beta_binomial_log_evalue, mixture_precision
from ._common import (
    ConfidenceInterval,
    FloatArray,
    check_alpha,
    check_finite,
    check_positive_int,
)

__all__ = [
    "Histogram",
    "QuantileSequenceResult",
    "quantile_confidence_sequence",
]


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts, as Prometheus histograms store them.

    Attributes
    ----------
    upper_bounds : ndarray
        Increasing upper bucket edges (``le``); the last is usually ``inf``.
    counts : ndarray
        Cumulative counts of observations ``<= upper_bounds[j]``; a leading axis
        holds several histograms (for instance one per look).
    lower : float, default: 0.0
        Smallest possible value (latencies and token counts are non-negative).
    """

    upper_bounds: FloatArray
    counts: FloatArray
    lower: float = 0.0

    def __post_init__(self) -> None:
        edges = np.asarray(self.upper_bounds, dtype=float)
        counts = np.asarray(self.counts, dtype=float)
        if edges.ndim != 1 or edges.size == 0 or np.any(np.diff(edges) <= 0):
            raise ValueError("`upper_bounds` must be a non-empty, strictly increasing 1-D array.")
        if edges[0] < self.lower:
            raise ValueError("`upper_bounds` must not start below `lower`.")
        if counts.shape[-1:] != edges.shape:
            raise ValueError("`counts` must have one column per upper bound.")
        if not np.all(np.isfinite(counts)) or np.any(counts < 0):
            raise ValueError("`counts` must be finite and non-negative.")
        if np.any(np.diff(counts, axis=-1) < 0):
            raise ValueError("`counts` must be cumulative (non-decreasing along the buckets).")
        object.__setattr__(self, "upper_bounds", edges)
        object.__setattr__(self, "counts", counts)

    @property
    def n(self) -> FloatArray:
        """Total number of observations (the last cumulative count)."""
        return self.counts[..., -1]

    @classmethod
    def from_samples(cls, samples: ArrayLike, upper_bounds: ArrayLike) -> Histogram:
        """Bucket raw samples into cumulative counts."""
        edges = np.asarray(upper_bounds, dtype=float)
        x = np.sort(np.asarray(samples, dtype=float))
        counts = np.searchsorted(x, edges, side="right").astype(float)
        return cls(edges, counts)


@dataclass(frozen=True, slots=True)
class QuantileSequenceResult:
    """Anytime-valid confidence sequence for one quantile.

    Attributes
    ----------
    estimate : float or ndarray
        Sample quantile (interpolated within the bucket for histograms).
    confidence_interval : ConfidenceInterval
        Lower and upper bounds, valid at every look.
    n : float or ndarray
        Number of observations.
    resolution : float or ndarray
        Width of the bucket holding the estimate (0 for raw samples).
    """

    estimate: Any
    confidence_interval: ConfidenceInterval
    n: Any
    resolution: Any


def _rank_thresholds(
    n: FloatArray, q: float, alpha_low: float, alpha_high: float, n_tune: float
) -> tuple[FloatArray, FloatArray]:
    """Ranks ``(s_lo, k_up)`` with ``X_(s_lo + 1) <= Q(q) <= X_(k_up)`` at every look.

    ``s_lo`` is the largest count of observations below a point that proves the
    point lies under the quantile; ``k_up`` the smallest count that proves it lies
    above. ``s_lo = -1`` and ``k_up = n + 1`` mean no bound yet.
    """
    # Thresholds depend on n alone: solve once per distinct n (looks share them).
    uniq, inverse = np.unique(n, return_inverse=True)
    low = _threshold(uniq, q, alpha_low, n_tune, "less")[inverse].reshape(n.shape)
    high = _threshold(uniq, q, alpha_high, n_tune, "greater")[inverse].reshape(n.shape)
    return low, high


def _threshold(
    n: FloatArray, q: float, alpha: float, n_tune: float, alternative: str
) -> FloatArray:
    """Rank threshold of the ``alternative`` test, searched over whole ranks.

    ``n`` may be fractional (``increase()`` over real scrapes extrapolates), so the
    search runs over the integers ``0 .. floor(n)``: its bounds are whole numbers,
    every step halves the interval, and the loop ends for any finite ``n``.
    """
    k = mixture_precision(n_tune, alpha)
    target = math.log(1.0 / alpha)
    top = np.floor(n)

    def rejects(s: FloatArray) -> Any:
        log_e = beta_binomial_log_evalue(s, n, q, alternative=alternative, concentration=k)
        return log_e >= target

    if alternative == "less":  # largest s in [0, floor(n)] that rejects (small s reject)
        lo, hi = np.full(n.shape, -1.0), top.copy()
        while np.any(hi - lo > 1):
            mid = np.floor(0.5 * (lo + hi))
            ok = rejects(np.maximum(mid, 0.0)) & (mid >= 0)
            lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
        return np.where(rejects(hi), hi, lo)
    lo, hi = np.zeros(n.shape), top + 1.0  # smallest s in [0, floor(n)] that rejects
    while np.any(hi - lo > 1):
        mid = np.floor(0.5 * (lo + hi))
        ok = rejects(mid)
        lo, hi = np.where(ok, lo, mid), np.where(ok, mid, hi)
    # ``floor(n) + 1`` means no bound yet; callers compare it with ``n``.
    return np.where(rejects(lo), lo, np.where(hi <= top, hi, n + 1.0))


def _bounds_from_samples(
    x: FloatArray, q: float, s_lo: float, k_up: float
) -> tuple[float, float, float]:
    n = x.size
    k_est = max(math.ceil(q * n), 1)  # inverse of the empirical CDF
    wanted = sorted({k_est - 1, *(r - 1 for r in (s_lo + 1, k_up) if 1 <= r <= n)})
    # The wanted ranks sit close together: one selection at the lowest leaves the
    # rest above it, where a second selection over a few percent of the data places
    # them (a single multi-rank partition costs about three full passes).
    first = int(wanted[0])
    part = np.partition(x, first)
    value = {first: float(part[first])}  # read before the second selection reorders
    if len(wanted) > 1:
        above = part[first:]
        above.partition([int(r) - first for r in wanted[1:]])
        value |= {int(r): float(above[int(r) - first]) for r in wanted[1:]}
    low = value[int(s_lo)] if s_lo + 1 >= 1 else -math.inf
    high = value[int(k_up) - 1] if k_up <= n else math.inf
    return value[k_est - 1], low, high


def _bounds_from_histogram(
    h: Histogram, q: float, s_lo: FloatArray, k_up: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    edges, counts = h.upper_bounds, np.atleast_2d(h.counts)
    lower_edges = np.concatenate([[h.lower], edges[:-1]])
    n = counts[:, -1]
    # Upper bound: first edge whose cumulative count reaches k_up.
    reach = counts >= k_up.reshape(-1, 1)
    j_up = np.where(reach.any(axis=1), reach.argmax(axis=1), edges.size)
    high = np.where(j_up < edges.size, edges[np.minimum(j_up, edges.size - 1)], np.inf)
    high = np.where(k_up.reshape(-1) > n, np.inf, high)
    # Lower bound: last edge whose cumulative count is still <= s_lo.
    below = counts <= s_lo.reshape(-1, 1)
    j_lo = np.where(below.any(axis=1), edges.size - 1 - below[:, ::-1].argmax(axis=1), -1)
    low = np.where(j_lo >= 0, edges[np.maximum(j_lo, 0)], h.lower)
    low = np.where(s_lo.reshape(-1) < 0, -np.inf, low)
    # Estimate: linear interpolation inside the bucket (Prometheus histogram_quantile).
    rank = q * n
    j = (counts >= rank.reshape(-1, 1)).argmax(axis=1)
    c_hi = counts[np.arange(counts.shape[0]), j]
    c_lo = np.where(j > 0, counts[np.arange(counts.shape[0]), np.maximum(j - 1, 0)], 0.0)
    e_lo, e_hi = lower_edges[j], edges[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(c_hi > c_lo, (rank - c_lo) / (c_hi - c_lo), 1.0)
        estimate = np.where(np.isfinite(e_hi), e_lo + (e_hi - e_lo) * frac, e_lo)
    estimate = np.where(n > 0, estimate, np.nan)
    resolution = np.where(np.isfinite(e_hi), e_hi - e_lo, np.inf)
    return estimate, low, high, resolution


def _quantile_iv(data: Any, q: float) -> tuple[Any, float, FloatArray]:
    q = check_finite(q, "q")
    if not 0.0 < q < 1.0:
        raise ValueError(f"`q` must be in (0, 1); got {q!r}.")
    if isinstance(data, Histogram):
        return data, q, np.atleast_1d(data.n).astype(float)
    x = np.asarray(data, dtype=float)
    if x.ndim != 1:
        raise ValueError("`data` must be a 1-D sample or a `Histogram`.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`data` must not contain NaN or infinite values.")
    return x, q, np.array([float(x.size)])


def _sequence(
    data: Any,
    q: float,
    alpha_low: float,
    alpha_high: float,
    n_tune: float,
    design_effect: ArrayLike = 1.0,
) -> QuantileSequenceResult:
    data, q, n = _quantile_iv(data, q)
    deff = np.broadcast_to(np.maximum(np.asarray(design_effect, dtype=float), 1.0), n.shape)
    s_lo, k_up = _rank_thresholds(n / deff, q, alpha_low, alpha_high, n_tune)
    if np.any(deff > 1.0):  # ranks of the effective sample, back on the observed one
        s_lo = np.where(s_lo < 0, -1.0, np.floor(s_lo * deff))
        k_up = np.where(k_up > n / deff, n + 1.0, np.minimum(np.ceil(k_up * deff), n + 1.0))
    if isinstance(data, Histogram):
        est, low, high, res = _bounds_from_histogram(data, q, s_lo, k_up)
        squeeze = np.ndim(data.counts) == 1
        pick = (lambda a: float(a[0])) if squeeze else (lambda a: a)
        return QuantileSequenceResult(
            pick(est), ConfidenceInterval(pick(low), pick(high)), pick(n), pick(res)
        )
    if data.size == 0:
        return QuantileSequenceResult(math.nan, ConfidenceInterval(-math.inf, math.inf), 0.0, 0.0)
    est_f, low_f, high_f = _bounds_from_samples(data, q, float(s_lo[0]), float(k_up[0]))
    return QuantileSequenceResult(est_f, ConfidenceInterval(low_f, high_f), float(n[0]), 0.0)


def quantile_confidence_sequence(
    data: ArrayLike | Histogram,
    *,
    q: float = 0.95,
    confidence_level: float = 0.95,
    n_tune: float = 1_000,
) -> QuantileSequenceResult:
    """Two-sided anytime-valid confidence sequence for the ``q``-quantile.

    Parameters
    ----------
    data : array_like or Histogram
        Raw observations, or cumulative bucket counts.
    q : float, default: 0.95
        The quantile, e.g. 0.95 for p95.
    confidence_level : float, default: 0.95
        Probability that the sequence covers the quantile at every look at once;
        each side gets half of ``1 - confidence_level``.
    n_tune : float, default: 1000
        Sample size at which the boundary is tightest.

    Returns
    -------
    QuantileSequenceResult

    Notes
    -----
    The bounds are the order statistics ``X_(s+1)`` and ``X_(k)`` whose ranks are
    the smallest (largest) counts at which a one-sided beta-binomial mixture
    test of ``P(X <= x) = q`` rejects ([1]_, Thm. 1 with a beta-binomial
    boundary of variance ``q (1 - q)``).

    Examples
    --------
    >>> import numpy as np
    >>> from canary_stats.stats import quantile_confidence_sequence
    >>> x = np.random.default_rng(0).lognormal(7.0, 0.5, size=5000)
    >>> res = quantile_confidence_sequence(x, q=0.95)
    >>> bool(res.confidence_interval.low < res.estimate < res.confidence_interval.high)
    True
    """
    level = check_finite(confidence_level, "confidence_level")
    alpha = check_alpha(1.0 - level, "1 - confidence_level")
    n_tune = check_positive_int(n_tune, "n_tune")
    return _sequence(data, q, alpha / 2, alpha / 2, n_tune)
