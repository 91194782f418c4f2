"""Anytime-valid tests of success rates from counts, margin built in.

Two flavours: an exact one-sample test of the canary's rate against an absolute
bound (beta-binomial mixture), and a two-sample test of canary vs stable (the
asymptotic sequence of `mean_contrast` with variance floors that keep it honest
while failures are rare).

References
----------
.. [1] Robbins (1970). Statistical methods related to the law of the iterated
       logarithm. Ann. Math. Statist. 41(5), 1397-1409.
.. [2] Farrington, Manning (1990). Test statistics and sample size formulae for
       comparative binomial trials with null hypothesis of non-zero risk difference
       or non-unity relative risk. Stat. Med. 9(12), 1447-1454.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from ._boundaries import _SCALAR_SOLVES, beta_binomial_log_evalue, mixture_precision
from ._common import (
    Evidence,
    FloatArray,
    SequentialTestResult,
    absolute_result,
    bound_levels,
    check_counts,
    clean_log_evidence,
)
from ._means import common_iv, mean_contrast

__all__ = ["proportion_bound", "proportion_contrast"]


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
    bound, alt, alpha, alpha_pass, n_tune = common_iv(
        bound, alternative, alpha, alpha_pass, n_tune, "bound"
    )
    if not 0.0 < bound < 1.0:
        raise ValueError(f"`bound` of a proportion must be in (0, 1); got {bound!r}.")
    x, n_a = check_counts(successes, "successes"), check_counts(n, "n")
    if np.any(x > n_a):
        raise ValueError("`successes` must not exceed `n`.")
    a_low, a_high = bound_levels(alt, alpha, alpha_pass)
    low = _invert_proportion(x, n_a, a_low, n_tune, lower=True)
    high = _invert_proportion(x, n_a, a_high, n_tune, lower=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(n_a > 0, x / n_a, np.nan)
    return absolute_result(
        "beta-binomial mixture CS (exact)",
        estimate,
        low,
        high,
        bound=bound,
        alternative=alt,
        n=n_a,
        alpha=alpha,
        alpha_pass=alpha_pass,
        log_evidence=_proportion_evidence(x, n_a, alt, alpha, alpha_pass, n_tune),
    )


def _proportion_evidence(
    x: FloatArray, n: FloatArray, alt: str, alpha: float, alpha_pass: float, n_tune: float
) -> Evidence:
    """Beta-mixture log e-values at hypothesised rates (harmful side first)."""
    safe = "greater" if alt == "less" else "less"
    k_fail, k_pass = mixture_precision(n_tune, alpha), mixture_precision(n_tune, alpha_pass)

    def evidence(value: ArrayLike) -> tuple[FloatArray, FloatArray]:
        p0 = np.clip(np.asarray(value, dtype=float), 1e-12, 1.0 - 1e-12)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            violation = beta_binomial_log_evalue(x, n, p0, alternative=alt, concentration=k_fail)
            compliance = beta_binomial_log_evalue(x, n, p0, alternative=safe, concentration=k_pass)
        return clean_log_evidence(violation, n <= 0), clean_log_evidence(compliance, n <= 0)

    return evidence


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
    shape = np.broadcast_shapes(x.shape, n.shape)
    # The bound depends on (x, n) alone: solve once per distinct pair (looks repeat them).
    pairs, inverse = np.unique(
        np.stack([np.broadcast_to(x, shape).ravel(), np.broadcast_to(n, shape).ravel()]),
        axis=1,
        return_inverse=True,
    )
    x, n = pairs
    lo, hi = np.zeros(x.shape), np.ones(x.shape)
    alternative = "greater" if lower else "less"
    if x.size <= _SCALAR_SOLVES:  # a live check: Brent per pair, a handful of evaluations

        def excess(p0: float, xi: float, ni: float) -> float:
            log_e = beta_binomial_log_evalue(xi, ni, p0, alternative=alternative, concentration=k)
            # Far from the bound the tail probability underflows to log 0 = -inf: clip
            # so Brent's interpolation stays finite (only the sign matters there).
            return min(max(float(log_e) - target, -1e6), 1e6)

        roots = np.array(
            [_root_in_unit(excess, xi, ni, lower=lower) for xi, ni in zip(x, n, strict=True)]
        )
        if np.all(np.isfinite(roots)):  # else: extreme counts, fall back to bisection
            return roots[inverse.ravel()].reshape(shape)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        log_e = beta_binomial_log_evalue(x, n, mid, alternative=alternative, concentration=k)
        rejected = log_e >= target
        if lower:  # rejected p0 lie below the bound
            lo, hi = np.where(rejected, mid, lo), np.where(rejected, hi, mid)
        else:  # rejected p0 lie above the bound
            lo, hi = np.where(rejected, lo, mid), np.where(rejected, mid, hi)
    return (lo if lower else hi)[inverse.ravel()].reshape(shape)


def _root_in_unit(
    excess: Callable[[float, float, float], float], x: float, n: float, *, lower: bool
) -> float:
    """The ``p0`` in [0, 1] where the test starts (or stops) rejecting; 0 or 1 if never."""
    eps = 1e-12
    # The bound lies on its own side of the observed rate, where the e-value is finite:
    # bracket there first (Brent then needs a handful of steps), the whole range if not.
    phat = min(max(x / n, eps), 1.0 - eps) if n > 0 else 0.5
    a, b = (eps, phat) if lower else (phat, 1.0 - eps)
    fa, fb = excess(a, x, n), excess(b, x, n)
    if (fa >= 0) == (fb >= 0):
        a, b = eps, 1.0 - eps
        fa, fb = excess(a, x, n), excess(b, x, n)
    if not (math.isfinite(fa) and math.isfinite(fb)):
        return math.nan
    # excess >= 0 means rejected: below the bound for `lower`, above it otherwise.
    if (fa >= 0) == (fb >= 0):
        inside = fa >= 0
        if lower:
            return 1.0 if inside else 0.0
        return 0.0 if inside else 1.0
    return float(optimize.brentq(excess, a, b, args=(x, n), xtol=1e-11))
