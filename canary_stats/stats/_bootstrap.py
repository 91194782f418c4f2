"""Bootstrap effect-size intervals, for reporting only.

A bootstrap interval is a fixed-horizon object: re-checked every few minutes it
inflates false alarms several-fold. canary_stats reports these intervals beside
its anytime-valid decisions and never decides on them.

References
----------
.. [1] Schultzberg, Ankargren (2022). Resampling-free bootstrap inference for
       quantiles. arXiv:2202.10992.
.. [2] Chamandy, Muralidharan, Najmi, Naidu (2012). Estimating uncertainty for
       massive data streams. Google technical report.
.. [3] Efron (1987). Better bootstrap confidence intervals. JASA 82(397), 171-185.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._common import ConfidenceInterval, FloatArray, check_alpha, check_finite

__all__ = ["BootstrapResult", "mean_contrast_bootstrap", "quantile_contrast_bootstrap"]


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """Effect size with a bootstrap interval.

    Attributes
    ----------
    estimate : float
        The contrast on the observed data.
    confidence_interval : ConfidenceInterval
        Percentile interval at ``confidence_level`` (fixed-horizon: report only).
    standard_error : float
        Standard deviation of the bootstrap distribution.
    method : str
        ``"resampling-free"`` or ``"poisson"``.
    """

    estimate: float
    confidence_interval: ConfidenceInterval
    standard_error: float
    method: str


def _samples_iv(
    stable: ArrayLike, canary: ArrayLike, contrast: str, confidence_level: float, n_resamples: int
) -> tuple[FloatArray, FloatArray, float]:
    out = []
    for name, data in (("stable", stable), ("canary", canary)):
        x = np.asarray(data, dtype=float)
        if x.ndim != 1 or x.size < 2:
            raise ValueError(f"`{name}` must be a 1-D sample of two or more observations.")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"`{name}` must not contain NaN or infinite values.")
        out.append(x)
    if contrast not in ("ratio", "difference"):
        raise ValueError(f"`contrast` must be 'ratio' or 'difference'; got {contrast!r}.")
    alpha = check_alpha(
        1.0 - check_finite(confidence_level, "confidence_level"), "1 - confidence_level"
    )
    if not isinstance(n_resamples, int) or n_resamples < 100:
        raise ValueError("`n_resamples` must be an integer of at least 100.")
    return out[0], out[1], alpha


def _apply(contrast: str, canary: FloatArray, stable: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return canary / stable if contrast == "ratio" else canary - stable


def _result(point: float, reps: FloatArray, alpha: float, method: str) -> BootstrapResult:
    low, high = np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return BootstrapResult(
        float(point),
        ConfidenceInterval(float(low), float(high)),
        float(np.std(reps, ddof=1)),
        method,
    )


def _order_statistics(x: FloatArray, ranks: FloatArray) -> FloatArray:
    """Order statistics at 0-based ``ranks`` without sorting all of ``x``."""
    lo, hi = int(ranks.min()), int(ranks.max())
    window = np.partition(x, [lo, hi]) if hi > lo else np.partition(x, lo)
    inner = np.sort(window[lo : hi + 1])
    return inner[(ranks - lo).astype(int)]  # type: ignore[no-any-return]


def quantile_contrast_bootstrap(
    stable: ArrayLike,
    canary: ArrayLike,
    *,
    q: float = 0.95,
    contrast: str = "ratio",
    confidence_level: float = 0.95,
    n_resamples: int = 10_000,
    rng: np.random.Generator | int | None = None,
) -> BootstrapResult:
    """Resampling-free bootstrap interval for a quantile ratio or difference.

    Under Poisson bootstrap weights the replicate ``q``-quantile is the order
    statistic whose rank is approximately ``Binomial(n + 1, q)`` ([1]_), so each
    replicate draws two ranks instead of resampling the data: ``O(n)`` in all,
    versus ``O(B n log n)``.
    """
    xs, xc, alpha = _samples_iv(stable, canary, contrast, confidence_level, n_resamples)
    q = check_finite(q, "q")
    if not 0.0 < q < 1.0:
        raise ValueError(f"`q` must be in (0, 1); got {q!r}.")
    gen = np.random.default_rng(rng)
    rank_s = np.clip(gen.binomial(xs.size + 1, q, n_resamples) - 1, 0, xs.size - 1)
    rank_c = np.clip(gen.binomial(xc.size + 1, q, n_resamples) - 1, 0, xc.size - 1)
    reps = _apply(
        contrast,
        _order_statistics(xc, rank_c.astype(float)),
        _order_statistics(xs, rank_s.astype(float)),
    )
    point = _apply(contrast, np.asarray(np.quantile(xc, q)), np.asarray(np.quantile(xs, q)))
    return _result(float(point), reps, alpha, "resampling-free")


def _poisson_means(x: FloatArray, b: int, gen: np.random.Generator) -> FloatArray:
    """``b`` Poisson-bootstrap replicates of the mean of ``x``."""
    values, counts = np.unique(x, return_counts=True)
    if 8 * values.size > x.size:  # mostly distinct values: one weight per observation
        values, counts = x, np.ones(x.size, dtype=np.int64)
    w = gen.poisson(counts.astype(float), size=(b, values.size))
    means: FloatArray = (w @ values) / np.maximum(w.sum(axis=1), 1)
    return means


def mean_contrast_bootstrap(
    stable: ArrayLike,
    canary: ArrayLike,
    *,
    contrast: str = "ratio",
    confidence_level: float = 0.95,
    n_resamples: int = 2_000,
    rng: np.random.Generator | int | None = None,
) -> BootstrapResult:
    """Poisson-bootstrap interval for a ratio or difference of means.

    Each observation gets an independent ``Poisson(1)`` weight per replicate, so
    replicates are one-pass, mergeable weighted sums ([2]_). Replicates are drawn
    in blocks to bound memory. Data with few distinct values (a 0/1 success flag)
    draw one ``Poisson(count)`` weight per distinct value instead: the sum of
    independent ``Poisson(1)`` weights is ``Poisson(count)``, so the replicates
    have exactly the same distribution at a fraction of the cost.
    """
    xs, xc, alpha = _samples_iv(stable, canary, contrast, confidence_level, n_resamples)
    gen = np.random.default_rng(rng)
    reps = np.empty(n_resamples)
    block = max(1, 2_000_000 // max(xs.size, xc.size))
    for start in range(0, n_resamples, block):
        b = min(block, n_resamples - start)
        means = [_poisson_means(x, b, gen) for x in (xc, xs)]
        reps[start : start + b] = _apply(contrast, means[0], means[1])
    point = _apply(contrast, np.asarray(xc.mean()), np.asarray(xs.mean()))
    return _result(float(point), reps, alpha, "poisson")
