"""Anytime-valid tests of means and proportions, margin built in.

Success rate, token spend and eval score are means of per-task values. Each test
here is one-sided in each direction: the bound on the harmful side decides
``fail`` at level ``alpha``, the bound on the other side decides ``pass`` at level
``alpha_pass``. Both are confidence sequences, valid at every look.

References
----------
.. [1] Howard, Ramdas, McAuliffe, Sekhon (2021). Time-uniform, nonparametric,
       nonasymptotic confidence sequences. Ann. Statist. 49(2), 1055-1080.
.. [2] Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas (2024). Time-uniform central
       limit theory and asymptotic confidence sequences. Ann. Statist.
.. [3] Fieller (1954). Some problems in interval estimation. JRSS-B 16(2), 175-185.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from ._boundaries import (
    mixture_precision,
    normal_evidence,
    normal_mixture_boundary,
)
from ._common import (
    Alternative,
    ConfidenceInterval,
    FloatArray,
    SequentialTestResult,
    absolute_result,
    bound_levels,
    check_counts,
    check_positive_int,
    decision_iv,
    scalar_or_array,
    status_from_bounds,
)

__all__ = ["common_iv", "mean_bound", "mean_contrast"]

_CONTRASTS = ("difference", "ratio")
Statistic = Callable[[FloatArray], tuple[FloatArray, FloatArray]]


def common_iv(
    margin: float,
    alternative: str,
    alpha: float,
    alpha_pass: float | None,
    n_tune: float,
    name: str = "margin",
) -> tuple[float, Alternative, float, float, float]:
    margin, alt, alpha, alpha_pass = decision_iv(margin, alternative, alpha, alpha_pass, name)
    return margin, alt, alpha, alpha_pass, check_positive_int(n_tune, "n_tune")


def _moments_iv(n: ArrayLike, mean: ArrayLike, var: ArrayLike, arm: str) -> tuple[FloatArray, ...]:
    n_a, mean_a, var_a = np.broadcast_arrays(
        check_counts(n, f"n_{arm}"), np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    )
    if not np.all(np.isfinite(mean_a[n_a > 0])):
        raise ValueError(f"`mean_{arm}` must be finite wherever `n_{arm}` > 0.")
    if np.any(var_a < 0) or not np.all(np.isfinite(var_a[n_a > 0])):
        raise ValueError(f"`var_{arm}` must be finite and non-negative.")
    return n_a, mean_a, var_a


def _z(n: FloatArray, alpha: float, n_tune: float) -> FloatArray:
    return normal_mixture_boundary(n, alpha=alpha, rho=mixture_precision(n_tune, alpha))


def mean_bound(
    n: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    *,
    bound: float,
    alternative: str,
    alpha: float = 0.05,
    alpha_pass: float | None = None,
    n_tune: float = 10_000,
) -> SequentialTestResult:
    """Test the canary's mean against an absolute bound, at every look.

    Parameters
    ----------
    n, mean, var : array_like
        Sufficient statistics of the canary: count, mean, variance (``ddof=0``).
        Arrays give one test per element (for instance one per look).
    bound : float
        The tolerated limit, e.g. ``0.90`` for "eval score at least 0.90".
    alternative : {"less", "greater"}
        The harmful direction: ``"less"`` when a mean below ``bound`` is a violation.
    alpha, alpha_pass : float
        One-sided levels of the fail and pass decisions (``alpha_pass`` defaults
        to ``alpha``).
    n_tune : float, default: 10000
        Sample size at which the boundary is tightest; fix it before seeing data.

    Returns
    -------
    SequentialTestResult

    Notes
    -----
    The asymptotic confidence sequence of [2]_: the one-sided normal-mixture
    boundary of [1]_ with a plug-in variance. Valid as the sample grows; a
    minimum sample size guards the first looks.
    """
    bound, alt, alpha, alpha_pass, n_tune = common_iv(
        bound, alternative, alpha, alpha_pass, n_tune, "bound"
    )
    n_a, mean_a, var_a = _moments_iv(n, mean, var, "canary")
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(var_a / n_a)
    a_low, a_high = bound_levels(alt, alpha, alpha_pass)
    low = mean_a - _z(n_a, a_low, n_tune) * se
    high = mean_a + _z(n_a, a_high, n_tune) * se
    low, high = np.where(n_a > 0, low, -np.inf), np.where(n_a > 0, high, np.inf)
    evidence = normal_evidence(
        lambda value: (mean_a - value, se),
        n_a,
        alt,
        mixture_precision(n_tune, alpha),
        mixture_precision(n_tune, alpha_pass),
    )
    return absolute_result(
        "asymptotic normal-mixture CS",
        np.where(n_a > 0, mean_a, np.nan),
        low,
        high,
        bound=bound,
        alternative=alt,
        n=n_a,
        alpha=alpha,
        alpha_pass=alpha_pass,
        log_evidence=evidence,
    )


def mean_contrast(
    n_stable: ArrayLike,
    mean_stable: ArrayLike,
    var_stable: ArrayLike,
    n_canary: ArrayLike,
    mean_canary: ArrayLike,
    var_canary: ArrayLike,
    *,
    contrast: str = "difference",
    margin: float,
    alternative: str,
    alpha: float = 0.05,
    alpha_pass: float | None = None,
    n_tune: float = 10_000,
) -> SequentialTestResult:
    """Two-sample test of canary vs stable means against a margin, at every look.

    Parameters
    ----------
    n_stable, mean_stable, var_stable, n_canary, mean_canary, var_canary : array_like
        Sufficient statistics per cohort (variance with ``ddof=0``).
    contrast : {"difference", "ratio"}
        ``mean_canary - mean_stable`` or ``mean_canary / mean_stable``.
    margin : float
        Tolerated contrast: e.g. ``-0.02`` with ``alternative="less"`` for "at most
        0.02 below stable", ``1.15`` with ``"greater"`` for "at most 15 % more".
    alternative : {"less", "greater"}
        The harmful direction of the contrast.
    alpha, alpha_pass, n_tune
        As in `mean_bound`.

    Returns
    -------
    SequentialTestResult

    Notes
    -----
    The test works on the contrast that drives the decision, with the margin built
    in: for a ratio margin ``r`` it tests the linear contrast
    ``mean_canary - r * mean_stable`` against zero, whose variance is
    ``var_c / n_c + r^2 var_s / n_s``. The standardised statistic is compared with
    the one-sided normal-mixture boundary of [1]_ at intrinsic time
    ``n_c + n_s``, which makes it the asymptotic confidence sequence of [2]_ for
    the inverse-propensity-weighted contrast. The reported ratio interval is the
    Fieller set [3]_ of the same test. This is a direct two-sample method: it does
    not combine two per-cohort intervals, which would need several times the
    sample.
    """
    margin, alt, alpha, alpha_pass, n_tune = common_iv(
        margin, alternative, alpha, alpha_pass, n_tune
    )
    if contrast not in _CONTRASTS:
        raise ValueError(f"`contrast` must be one of {_CONTRASTS}; got {contrast!r}.")
    if contrast == "ratio" and margin <= 0:
        raise ValueError(f"`margin` of a ratio must be positive; got {margin!r}.")
    ns, ms, vs = _moments_iv(n_stable, mean_stable, var_stable, "stable")
    nc, mc, vc = _moments_iv(n_canary, mean_canary, var_canary, "canary")
    n_total = ns + nc
    a_low, a_high = bound_levels(alt, alpha, alpha_pass)
    z_low, z_high = _z(n_total, a_low, n_tune), _z(n_total, a_high, n_tune)
    empty = (ns <= 0) | (nc <= 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a, b = vc / nc, vs / ns
        if contrast == "difference":
            estimate = mc - ms
            se = np.sqrt(a + b)
            low, high = estimate - z_low * se, estimate + z_high * se
            status = status_from_bounds(low, high, margin, alt)
            statistic = _difference_statistic(estimate, se)
        else:
            estimate = mc / ms
            # A ratio does not change when both means are scaled: working in units
            # of the larger one keeps every square below overflow.
            unit = np.maximum(np.maximum(np.abs(mc), np.abs(ms)), np.sqrt(np.maximum(a, b)))
            unit = np.where(np.isfinite(unit) & (unit > 0), unit, 1.0)
            mc, ms, a, b = mc / unit, ms / unit, a / unit / unit, b / unit / unit
            low = _fieller(mc, ms, a, b, z_low, lower=True)
            high = _fieller(mc, ms, a, b, z_high, lower=False)
            # The decision is the linear test at the margin itself.
            t = mc - margin * ms
            se_t = np.sqrt(a + margin * margin * b)
            status = status_from_bounds(t - z_low * se_t, t + z_high * se_t, 0.0, alt)
            statistic = _ratio_statistic(mc, ms, a, b)
    low, high = np.where(empty, -np.inf, low), np.where(empty, np.inf, high)
    status = np.where(empty, "inconclusive", status)
    return SequentialTestResult(
        method="asymptotic normal-mixture CS (two-sample, IPW)",
        contrast=contrast,
        estimate=scalar_or_array(np.where(empty, np.nan, estimate)),
        confidence_interval=ConfidenceInterval(scalar_or_array(low), scalar_or_array(high)),
        margin=margin,
        alternative=alt,
        status=status.item() if status.ndim == 0 else status,
        n_stable=scalar_or_array(ns),
        n_canary=scalar_or_array(nc),
        alpha=alpha,
        alpha_pass=alpha_pass,
        log_evidence=normal_evidence(
            statistic,
            np.where(empty, 0.0, n_total),
            alt,
            mixture_precision(n_tune, alpha),
            mixture_precision(n_tune, alpha_pass),
        ),
    )


def _difference_statistic(estimate: FloatArray, se: FloatArray) -> Statistic:
    return lambda value: (estimate - value, se)


def _ratio_statistic(mc: FloatArray, ms: FloatArray, a: FloatArray, b: FloatArray) -> Statistic:
    """The linear contrast ``mc - r ms`` at a hypothesised ratio ``r`` (scaled units)."""
    return lambda value: (mc - value * ms, np.sqrt(a + value * value * b))


def _fieller(
    mc: FloatArray, ms: FloatArray, a: FloatArray, b: FloatArray, z: FloatArray, *, lower: bool
) -> FloatArray:
    """One end of the Fieller set ``{r : (mc - r ms)^2 <= z^2 (a + r^2 b)}``."""
    qa = ms * ms - z * z * b
    qb = -2.0 * mc * ms
    qc = mc * mc - z * z * a
    disc = qb * qb - 4.0 * qa * qc
    bounded = (qa > 0) & (disc >= 0)
    root = np.sqrt(np.where(bounded, disc, 0.0))
    end = (-qb - root) / (2.0 * qa) if lower else (-qb + root) / (2.0 * qa)
    return np.where(bounded, end, -np.inf if lower else np.inf)
