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

import math

import numpy as np
from numpy.typing import ArrayLike

from ._boundaries import (
    beta_binomial_log_evalue,
    mixture_precision,
    normal_mixture_boundary,
)
from ._common import (
    Alternative,
    ConfidenceInterval,
    FloatArray,
    SequentialTestResult,
    check_alpha,
    check_alternative,
    check_counts,
    check_finite,
    check_positive_int,
    scalar_or_array,
    status_from_bounds,
)

__all__ = ["mean_bound", "mean_contrast", "proportion_bound", "proportion_contrast"]

_CONTRASTS = ("difference", "ratio")


def _levels(alternative: Alternative, alpha: float, alpha_pass: float) -> tuple[float, float]:
    """Error levels of the (lower, upper) bound: the harmful side gets ``alpha``."""
    return (alpha, alpha_pass) if alternative == "greater" else (alpha_pass, alpha)


def _common_iv(
    margin: float,
    alternative: str,
    alpha: float,
    alpha_pass: float | None,
    n_tune: float,
    name: str = "margin",
) -> tuple[float, Alternative, float, float, float]:
    margin = check_finite(margin, name)
    alt = check_alternative(alternative)
    alpha = check_alpha(alpha)
    alpha_pass = alpha if alpha_pass is None else check_alpha(alpha_pass, "alpha_pass")
    n_tune = check_positive_int(n_tune, "n_tune")
    return margin, alt, alpha, alpha_pass, n_tune


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
    bound, alt, alpha, alpha_pass, n_tune = _common_iv(
        bound, alternative, alpha, alpha_pass, n_tune, "bound"
    )
    n_a, mean_a, var_a = _moments_iv(n, mean, var, "canary")
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(var_a / n_a)
    a_low, a_high = _levels(alt, alpha, alpha_pass)
    low = mean_a - _z(n_a, a_low, n_tune) * se
    high = mean_a + _z(n_a, a_high, n_tune) * se
    low, high = np.where(n_a > 0, low, -np.inf), np.where(n_a > 0, high, np.inf)
    return SequentialTestResult(
        method="asymptotic normal-mixture CS",
        contrast="absolute",
        estimate=scalar_or_array(np.where(n_a > 0, mean_a, np.nan)),
        confidence_interval=ConfidenceInterval(scalar_or_array(low), scalar_or_array(high)),
        margin=bound,
        alternative=alt,
        status=status_from_bounds(low, high, bound, alt),
        n_stable=0,
        n_canary=scalar_or_array(n_a),
        alpha=alpha,
        alpha_pass=alpha_pass,
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
    margin, alt, alpha, alpha_pass, n_tune = _common_iv(
        margin, alternative, alpha, alpha_pass, n_tune
    )
    if contrast not in _CONTRASTS:
        raise ValueError(f"`contrast` must be one of {_CONTRASTS}; got {contrast!r}.")
    if contrast == "ratio" and margin <= 0:
        raise ValueError(f"`margin` of a ratio must be positive; got {margin!r}.")
    ns, ms, vs = _moments_iv(n_stable, mean_stable, var_stable, "stable")
    nc, mc, vc = _moments_iv(n_canary, mean_canary, var_canary, "canary")
    n_total = ns + nc
    a_low, a_high = _levels(alt, alpha, alpha_pass)
    z_low, z_high = _z(n_total, a_low, n_tune), _z(n_total, a_high, n_tune)
    empty = (ns <= 0) | (nc <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = vc / nc, vs / ns
        if contrast == "difference":
            estimate = mc - ms
            se = np.sqrt(a + b)
            low, high = estimate - z_low * se, estimate + z_high * se
            status = status_from_bounds(low, high, margin, alt)
        else:
            estimate = mc / ms
            low = _fieller(mc, ms, a, b, z_low, lower=True)
            high = _fieller(mc, ms, a, b, z_high, lower=False)
            # The decision is the linear test at the margin itself.
            t = mc - margin * ms
            se_t = np.sqrt(a + margin * margin * b)
            status = status_from_bounds(t - z_low * se_t, t + z_high * se_t, 0.0, alt)
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
    )


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


def _shrunk_proportion(successes: FloatArray, n: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Point estimate and a variance that never collapses to zero.

    The variance uses ``(x + 1/2) / (n + 1)``, so a cohort with no failures yet is
    not mistaken for one with no variance (a plug-in of zero would prove anything).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        p = successes / n
    p_tilde = (successes + 0.5) / (n + 1.0)
    return p, p_tilde * (1.0 - p_tilde)


def proportion_contrast(
    successes_stable: ArrayLike,
    n_stable: ArrayLike,
    successes_canary: ArrayLike,
    n_canary: ArrayLike,
    *,
    contrast: str = "difference",
    margin: float,
    alternative: str = "less",
    alpha: float = 0.05,
    alpha_pass: float | None = None,
    n_tune: float = 10_000,
) -> SequentialTestResult:
    """Two-sample test of success rates from counts; see `mean_contrast`.

    ``margin=-0.02`` with ``alternative="less"`` reads "the canary's success rate
    is at most 0.02 below stable's".

    Notes
    -----
    Success rates near 1 make the plug-in variance of the asymptotic sequence
    unreliable while failures are still rare: a canary with no failure yet would
    look certain. Each cohort's variance is therefore floored at that of the
    pooled rate, and the canary's also at the variance it would have on the null
    boundary (stable's rate moved by the margin), in the spirit of the restricted
    estimate of Farrington & Manning (1990). Seeded simulation
    (``tests/test_validation.py``) checks both error rates exactly at the margin
    (canary shares of 1 %, 10 % and 50 %) and coverage at every look from 30
    canary tasks on.
    """
    xs, ns = check_counts(successes_stable, "successes_stable"), check_counts(n_stable, "n_stable")
    xc, nc = check_counts(successes_canary, "successes_canary"), check_counts(n_canary, "n_canary")
    if np.any(xs > ns) or np.any(xc > nc):
        raise ValueError("`successes_*` must not exceed `n_*`.")
    ps, vs = _shrunk_proportion(xs, ns)
    pc, vc = _shrunk_proportion(xc, nc)
    # Variance floors: with failures rare, a cohort's own plug-in variance is far too
    # small for its first hundreds of tasks and the sequence under-covers. Floor both
    # at the pooled rate's variance, and the canary also at the variance it would have
    # at the null boundary (stable's rate moved by the margin), as a restricted
    # (Farrington-Manning-style) estimate would.
    pooled = (xs + xc + 0.5) / (ns + nc + 1.0)
    v_pooled = pooled * (1.0 - pooled)
    ps_tilde = (xs + 0.5) / (ns + 1.0)
    edge = ps_tilde + margin if contrast == "difference" else ps_tilde * margin
    edge = np.clip(edge, 1e-3, 1 - 1e-3)
    vs = np.maximum(vs, v_pooled)
    vc = np.maximum(np.maximum(vc, v_pooled), edge * (1.0 - edge))
    return mean_contrast(
        ns,
        np.nan_to_num(ps),
        vs,
        nc,
        np.nan_to_num(pc),
        vc,
        contrast=contrast,
        margin=margin,
        alternative=alternative,
        alpha=alpha,
        alpha_pass=alpha_pass,
        n_tune=n_tune,
    )


def proportion_bound(
    successes: ArrayLike,
    n: ArrayLike,
    *,
    bound: float,
    alternative: str = "less",
    alpha: float = 0.05,
    alpha_pass: float | None = None,
    n_tune: float = 10_000,
) -> SequentialTestResult:
    """Exact test of the canary's success rate against an absolute bound.

    Parameters
    ----------
    successes, n : array_like
        Successes and trials of the canary.
    bound : float
        The tolerated rate in (0, 1), e.g. ``0.97`` for "at least 97 %".
    alternative : {"less", "greater"}
        The harmful direction (``"less"``: a rate below ``bound`` is a violation).
    alpha, alpha_pass, n_tune
        As in `mean_bound`; ``n_tune`` sets the concentration of the beta mixture.

    Returns
    -------
    SequentialTestResult

    Notes
    -----
    Each decision is a one-sided beta-mixture likelihood ratio (Robbins [1]_ with
    the prior truncated to the alternative): exact for Bernoulli data at any
    sample size, no asymptotics. The interval inverts the same tests.
    """
    bound, alt, alpha, alpha_pass, n_tune = _common_iv(
        bound, alternative, alpha, alpha_pass, n_tune, "bound"
    )
    if not 0.0 < bound < 1.0:
        raise ValueError(f"`bound` of a proportion must be in (0, 1); got {bound!r}.")
    x, n_a = check_counts(successes, "successes"), check_counts(n, "n")
    if np.any(x > n_a):
        raise ValueError("`successes` must not exceed `n`.")
    a_low, a_high = _levels(alt, alpha, alpha_pass)
    low = _invert_proportion(x, n_a, a_low, n_tune, lower=True)
    high = _invert_proportion(x, n_a, a_high, n_tune, lower=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(n_a > 0, x / n_a, np.nan)
    return SequentialTestResult(
        method="beta-binomial mixture CS (exact)",
        contrast="absolute",
        estimate=scalar_or_array(estimate),
        confidence_interval=ConfidenceInterval(scalar_or_array(low), scalar_or_array(high)),
        margin=bound,
        alternative=alt,
        status=status_from_bounds(low, high, bound, alt),
        n_stable=0,
        n_canary=scalar_or_array(n_a),
        alpha=alpha,
        alpha_pass=alpha_pass,
    )


def _invert_proportion(
    x: FloatArray, n: FloatArray, alpha: float, n_tune: float, *, lower: bool
) -> FloatArray:
    """Bound of ``{p0 : the one-sided beta-mixture test does not reject}``.

    The lower bound is the largest ``p0`` that the ``"greater"`` test rejects (it
    has proven ``p > p0``); the upper bound is the smallest ``p0`` that the
    ``"less"`` test rejects. Found by bisection on ``p0``.
    """
    k = mixture_precision(n_tune, alpha)
    target = math.log(1.0 / alpha)
    x, n = np.broadcast_arrays(x, n)
    lo, hi = np.zeros(x.shape), np.ones(x.shape)
    alternative = "greater" if lower else "less"
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        log_e = beta_binomial_log_evalue(x, n, mid, alternative=alternative, concentration=k)
        rejected = log_e >= target
        if lower:  # rejected p0 lie below the bound
            lo, hi = np.where(rejected, mid, lo), np.where(rejected, hi, mid)
        else:  # rejected p0 lie above the bound
            lo, hi = np.where(rejected, lo, mid), np.where(rejected, mid, hi)
    return lo if lower else hi
