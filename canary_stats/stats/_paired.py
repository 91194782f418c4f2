"""Anytime-valid paired tests: every task run by both versions (shadow traffic).

When the candidate sees a mirror of each stable task, the per-task contrast
``d = x_canary - r x_stable - c`` removes the variation between tasks (hard
tasks are slow, costly and fail for both versions), so its variance
``var_c + r^2 var_s - 2 r cov`` is smaller than the two-sample one
``var_c + r^2 var_s`` by twice the covariance. The test is the one-sample
asymptotic confidence sequence of `mean_bound` on ``d`` ([1]_, [2]_), with the
margin built in exactly as in `mean_contrast`: ``r = 1, c = margin`` for a
difference, ``r = margin, c = 0`` for a ratio. Intrinsic time is the number of
pairs.

References
----------
.. [1] Howard, Ramdas, McAuliffe, Sekhon (2021). Time-uniform, nonparametric,
       nonasymptotic confidence sequences. Ann. Statist. 49(2), 1055-1080.
.. [2] Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas (2024). Time-uniform central
       limit theory and asymptotic confidence sequences. Ann. Statist.
.. [3] Fieller (1954). Some problems in interval estimation. JRSS-B 16(2), 175-185.
.. [4] Johari, Koomen, Pekelis, Walsh (2022). Always valid inference: continuous
       monitoring of A/B tests. Operations Research 70(3), 1806-1821.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._boundaries import mixture_precision, normal_mixture_boundary
from ._common import (
    Alternative,
    ConfidenceInterval,
    FloatArray,
    SequentialTestResult,
    bound_levels,
    check_counts,
    scalar_or_array,
    status_from_bounds,
)
from ._means import common_iv

__all__ = ["paired_mean_contrast", "paired_proportion_contrast"]

_CONTRASTS = ("difference", "ratio")
_METHOD = "asymptotic normal-mixture CS (paired)"


def _contrast_iv(contrast: str, margin: float) -> None:
    if contrast not in _CONTRASTS:
        raise ValueError(f"`contrast` must be one of {_CONTRASTS}; got {contrast!r}.")
    if contrast == "ratio" and margin <= 0:
        raise ValueError(f"`margin` of a ratio must be positive; got {margin!r}.")


def _paired_iv(
    n: ArrayLike,
    mean_stable: ArrayLike,
    var_stable: ArrayLike,
    mean_canary: ArrayLike,
    var_canary: ArrayLike,
    cov: ArrayLike,
) -> tuple[FloatArray, ...]:
    arrays = np.broadcast_arrays(
        check_counts(n, "n"),
        *(np.asarray(x, dtype=float) for x in (mean_stable, var_stable, mean_canary, var_canary)),
        np.asarray(cov, dtype=float),
    )
    n_a, ms, vs, mc, vc, cv = arrays
    seen = n_a > 0
    for name, x in (("mean_stable", ms), ("mean_canary", mc), ("cov", cv)):
        if not np.all(np.isfinite(x[seen])):
            raise ValueError(f"`{name}` must be finite wherever `n` > 0.")
    for name, x in (("var_stable", vs), ("var_canary", vc)):
        if np.any(x < 0) or not np.all(np.isfinite(x[seen])):
            raise ValueError(f"`{name}` must be finite and non-negative.")
    return n_a, ms, vs, mc, vc, cv


def paired_mean_contrast(
    n: ArrayLike,
    mean_stable: ArrayLike,
    var_stable: ArrayLike,
    mean_canary: ArrayLike,
    var_canary: ArrayLike,
    cov: ArrayLike,
    *,
    contrast: str = "difference",
    margin: float,
    alternative: str,
    alpha: float = 0.05,
    alpha_pass: float | None = None,
    n_tune: float = 10_000,
) -> SequentialTestResult:
    """Paired test of canary vs stable means against a margin, at every look.

    Parameters
    ----------
    n : array_like
        Number of pairs (tasks run by both versions).
    mean_stable, var_stable, mean_canary, var_canary : array_like
        Per-version mean and variance (``ddof=0``) over the pairs.
    cov : array_like
        Covariance (``ddof=0``) of the two versions' values over the pairs.
    contrast : {"difference", "ratio"}
        ``mean_canary - mean_stable`` or ``mean_canary / mean_stable``.
    margin : float
        Tolerated contrast, as in `mean_contrast` (``-0.02`` with
        ``alternative="less"``: at most 0.02 below stable; ``1.15`` with
        ``"greater"``: at most 15 % above).
    alternative : {"less", "greater"}
        The harmful direction of the contrast.
    alpha, alpha_pass : float
        One-sided levels of the fail and pass decisions (``alpha_pass`` defaults
        to ``alpha``).
    n_tune : float, default: 10000
        Number of pairs at which the boundary is tightest; fix it before the data.

    Returns
    -------
    SequentialTestResult
        ``n_stable`` and ``n_canary`` both hold the number of pairs.

    Notes
    -----
    The decision tests the linear per-pair contrast at the margin itself
    (``x_c - margin x_s`` for a ratio) against zero with the one-sided
    normal-mixture boundary at intrinsic time ``n`` ([1]_, [2]_; the paired form
    of the mSPRT in [4]_). The reported ratio interval is the Fieller set [3]_ of
    the same test, with the covariance term; for a difference it is the plain
    interval on the mean difference. Both agree with the decision.
    """
    margin, alt, alpha, alpha_pass, n_tune = common_iv(
        margin, alternative, alpha, alpha_pass, n_tune
    )
    _contrast_iv(contrast, margin)
    n_a, ms, vs, mc, vc, cv = _paired_iv(n, mean_stable, var_stable, mean_canary, var_canary, cov)
    return _paired_test(
        n_a, ms, vs, mc, vc, cv, contrast, margin, alt, alpha, alpha_pass, n_tune, floor=0.0
    )


def paired_proportion_contrast(
    n: ArrayLike,
    successes_stable: ArrayLike,
    successes_canary: ArrayLike,
    successes_both: ArrayLike,
    *,
    contrast: str = "difference",
    margin: float,
    alternative: str = "less",
    alpha: float = 0.05,
    alpha_pass: float | None = None,
    n_tune: float = 10_000,
) -> SequentialTestResult:
    """Paired test of success rates from the 2 x 2 table of outcomes.

    Parameters
    ----------
    n : array_like
        Number of pairs.
    successes_stable, successes_canary : array_like
        Pairs in which stable (the canary) succeeded.
    successes_both : array_like
        Pairs in which both succeeded.
    contrast, margin, alternative, alpha, alpha_pass, n_tune
        As in `paired_mean_contrast`; ``margin=-0.02`` with ``alternative="less"``
        reads "the canary's success rate is at most 0.02 below stable's".

    Returns
    -------
    SequentialTestResult

    Notes
    -----
    Only discordant pairs carry information about the difference, and while
    they are rare the plug-in variance is unreliable (no discordant pair yet
    would look like certainty). Two guards, as in `proportion_contrast`: half a
    pseudo-pair is added to each discordant cell, and the contrast's variance is
    floored at the smallest variance any pair of outcomes can have on the null
    boundary (the two versions' outcomes as correlated as their rates allow):
    ``|m| (1 - |m|)`` for a difference margin ``m``, ``r p_s |1 - r|`` for a
    ratio margin ``r``. Seeded simulation (``tests/test_shadow_validation.py``)
    checks the false-fail rate with identical versions and at the margin.
    """
    margin, alt, alpha, alpha_pass, n_tune = common_iv(
        margin, alternative, alpha, alpha_pass, n_tune
    )
    _contrast_iv(contrast, margin)
    n_a, xs, xc, xb = np.broadcast_arrays(
        check_counts(n, "n"),
        check_counts(successes_stable, "successes_stable"),
        check_counts(successes_canary, "successes_canary"),
        check_counts(successes_both, "successes_both"),
    )
    if np.any(xs > n_a) or np.any(xc > n_a):
        raise ValueError("`successes_stable` and `successes_canary` must not exceed `n`.")
    if np.any(xb > np.minimum(xs, xc)) or np.any(xb < xs + xc - n_a):
        raise ValueError(
            "`successes_both` must lie between `successes_stable + successes_canary - n` "
            "and the smaller of the two."
        )
    m = n_a + 1.0
    ps = (xs + 0.5) / m  # both + (stable-only + 1/2)
    pc = (xc + 0.5) / m
    cov = xb / m - ps * pc
    with np.errstate(divide="ignore", invalid="ignore"):
        ms, mc = np.where(n_a > 0, xs / n_a, 0.0), np.where(n_a > 0, xc / n_a, 0.0)
    floor: float | FloatArray
    if contrast == "difference":
        floor = abs(margin) * (1.0 - min(abs(margin), 1.0))
    else:
        floor = margin * np.clip(ps, 0.0, 1.0) * abs(1.0 - margin)
    return _paired_test(
        n_a,
        ms,
        ps * (1.0 - ps),
        mc,
        pc * (1.0 - pc),
        cov,
        contrast,
        margin,
        alt,
        alpha,
        alpha_pass,
        n_tune,
        floor=floor,
    )


def _paired_test(
    n: FloatArray,
    ms: FloatArray,
    vs: FloatArray,
    mc: FloatArray,
    vc: FloatArray,
    cv: FloatArray,
    contrast: str,
    margin: float,
    alt: Alternative,
    alpha: float,
    alpha_pass: float,
    n_tune: float,
    *,
    floor: ArrayLike,
) -> SequentialTestResult:
    r, shift = (margin, 0.0) if contrast == "ratio" else (1.0, margin)
    var_t = vc + r * r * vs - 2.0 * r * cv
    # A variance floor is added to the canary's component: the decision then sees
    # exactly the floor, and the Fieller set stays a quadratic consistent with it.
    vc = vc + np.maximum(np.asarray(floor, dtype=float) - var_t, 0.0)
    var_t = np.maximum(vc + r * r * vs - 2.0 * r * cv, 0.0)  # >= 0 up to rounding
    a_low, a_high = bound_levels(alt, alpha, alpha_pass)
    z_low, z_high = (
        normal_mixture_boundary(n, alpha=a, rho=mixture_precision(n_tune, a))
        for a in (a_low, a_high)
    )
    empty = n <= 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = mc - r * ms - shift
        se_t = np.sqrt(var_t / n)
        status = status_from_bounds(t - z_low * se_t, t + z_high * se_t, 0.0, alt)
        if contrast == "difference":
            estimate = mc - ms
            low, high = estimate - z_low * se_t, estimate + z_high * se_t
        else:
            estimate = mc / ms
            low = _paired_fieller(mc, ms, vc / n, vs / n, cv / n, z_low, lower=True)
            high = _paired_fieller(mc, ms, vc / n, vs / n, cv / n, z_high, lower=False)
    status = np.where(empty, "inconclusive", status)
    return SequentialTestResult(
        method=_METHOD,
        contrast=contrast,
        estimate=scalar_or_array(np.where(empty, np.nan, estimate)),
        confidence_interval=ConfidenceInterval(
            scalar_or_array(np.where(empty, -np.inf, low)),
            scalar_or_array(np.where(empty, np.inf, high)),
        ),
        margin=margin,
        alternative=alt,
        status=status.item() if status.ndim == 0 else status,
        n_stable=scalar_or_array(n),
        n_canary=scalar_or_array(n),
        alpha=alpha,
        alpha_pass=alpha_pass,
    )


def _paired_fieller(
    mc: FloatArray,
    ms: FloatArray,
    a: FloatArray,
    b: FloatArray,
    c: FloatArray,
    z: FloatArray,
    *,
    lower: bool,
) -> FloatArray:
    """One end of ``{r : (mc - r ms)^2 <= z^2 (a - 2 r c + r^2 b)}``.

    ``a``, ``b`` are the variances of the two means and ``c`` their covariance.
    """
    qa = ms * ms - z * z * b
    qb = -2.0 * mc * ms + 2.0 * z * z * c
    qc = mc * mc - z * z * a
    disc = qb * qb - 4.0 * qa * qc
    bounded = (qa > 0) & (disc >= 0)
    root = np.sqrt(np.where(bounded, disc, 0.0))
    end = (-qb - root) / (2.0 * qa) if lower else (-qb + root) / (2.0 * qa)
    return np.where(bounded, end, -np.inf if lower else np.inf)
