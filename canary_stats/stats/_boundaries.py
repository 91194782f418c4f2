"""Time-uniform boundaries: one-sided normal and truncated beta-binomial mixtures.

Both are nonnegative supermartingales under the null, so by Ville's inequality
``P(exists t: log M_t >= log(1/alpha)) <= alpha``: a test built on them may be
checked after every new observation and stopped at any time.

References
----------
.. [1] Howard, Ramdas, McAuliffe, Sekhon (2021). Time-uniform, nonparametric,
       nonasymptotic confidence sequences. Ann. Statist. 49(2), 1055-1080.
.. [2] Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas (2024). Time-uniform central
       limit theory and asymptotic confidence sequences. Ann. Statist.
.. [3] Robbins (1970). Statistical methods related to the law of the iterated
       logarithm. Ann. Math. Statist. 41(5), 1397-1409.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special

from ._common import Alternative, Evidence, FloatArray, clean_log_evidence

__all__ = [
    "beta_binomial_log_evalue",
    "mixture_precision",
    "normal_evidence",
    "normal_mixture_boundary",
    "normal_mixture_log_evalue",
]


def mixture_precision(n_tune: float, alpha: float) -> float:
    """Mixture precision ``rho`` that makes the boundary tightest at ``n_tune``.

    ``rho = n_tune / (2 log(1/alpha) + log(1 + 2 log(1/alpha)))`` ([1]_, eq. 14).
    """
    la = math.log(1.0 / alpha)
    return n_tune / (2.0 * la + math.log1p(2.0 * la))


#: Up to this many values, boundaries are solved one by one with Brent's method
#: (a handful of evaluations each); beyond, by vectorised bisection over all of them.
_SCALAR_SOLVES = 8


def normal_mixture_log_evalue(z: ArrayLike, n: ArrayLike, *, rho: float) -> FloatArray:
    """Log of the one-sided normal-mixture e-value for a standardised sum.

    With ``S = z sqrt(n)`` the standardised sum after ``n`` unit-variance
    observations, mixing ``exp(lambda S - lambda^2 n / 2)`` over a half-normal
    ``lambda ~ N(0, 1/rho)`` restricted to ``lambda > 0`` gives

    ``M = 2 sqrt(rho / (n + rho)) exp(S^2 / (2 (n + rho))) Phi(S / sqrt(n + rho))``.
    """
    z_a, n_a = np.asarray(z, dtype=float), np.asarray(n, dtype=float)
    s = z_a * np.sqrt(n_a)
    v = n_a + rho
    return (  # type: ignore[no-any-return]
        math.log(2.0) + 0.5 * np.log(rho / v) + s * s / (2.0 * v) + special.log_ndtr(s / np.sqrt(v))
    )


def normal_mixture_boundary(n: ArrayLike, *, alpha: float, rho: float) -> FloatArray:
    """Smallest standardised statistic ``z`` at which the one-sided test rejects.

    Solves ``normal_mixture_log_evalue(z, n) = log(1/alpha)`` by bisection, which
    is exact to 1e-10 and vectorised over ``n``. The two-sided boundary at the same
    ``alpha`` brackets the root from above.
    """
    n_a = np.maximum(np.asarray(n, dtype=float), 1e-12)
    target = math.log(1.0 / alpha)
    v = n_a + rho
    hi = np.sqrt(v / n_a * np.log(v / (rho * alpha * alpha)))
    lo = np.zeros_like(hi)
    if n_a.size <= _SCALAR_SOLVES:  # a few looks (a live check): Brent beats 60 array steps
        roots = [
            optimize.brentq(
                lambda z, m=m: float(normal_mixture_log_evalue(z, m, rho=rho)) - target,
                0.0,
                float(h),
                xtol=1e-12,
            )
            for m, h in zip(n_a.ravel(), hi.ravel(), strict=True)
        ]
        return np.reshape(roots, n_a.shape)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = normal_mixture_log_evalue(mid, n_a, rho=rho) >= target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return hi  # type: ignore[no-any-return]


def beta_binomial_log_evalue(
    successes: ArrayLike,
    n: ArrayLike,
    p0: ArrayLike,
    *,
    alternative: str,
    concentration: float,
) -> FloatArray:
    """Log e-value of a one-sided beta-mixture test of a Bernoulli rate.

    Tests ``H0: p >= p0`` against ``p < p0`` (``alternative="less"``) or
    ``H0: p <= p0`` against ``p > p0`` (``"greater"``). The likelihood ratio
    ``L(p) / L(p0)`` is mixed over a ``Beta(k p0, k (1 - p0))`` prior truncated to
    the alternative, which keeps it a supermartingale under every rate in the null
    ([3]_; the untruncated form is [1]_, Prop. 6).
    """
    if isinstance(successes, float | int) and isinstance(n, float | int):
        if isinstance(p0, float | int):
            return _beta_binomial_scalar(
                float(successes), float(n), float(p0), alternative, concentration
            )
    s = np.asarray(successes, dtype=float)
    f = np.asarray(n, dtype=float) - s
    p = np.asarray(p0, dtype=float)
    a, b = concentration * p, concentration * (1.0 - p)
    tail = special.betainc if alternative == "less" else special.betaincc
    with np.errstate(divide="ignore", invalid="ignore"):
        log_post = special.betaln(a + s, b + f) + np.log(tail(a + s, b + f, p))
        log_prior = special.betaln(a, b) + np.log(tail(a, b, p))
        # 0 * log(0) terms: no successes (failures) carry no evidence about log p (log 1-p).
        log_null = np.where(s > 0, s * np.log(p), 0.0) + np.where(f > 0, f * np.log1p(-p), 0.0)
    return log_post - log_prior - log_null  # type: ignore[no-any-return]


def _beta_binomial_scalar(s: float, n: float, p: float, alternative: str, k: float) -> Any:
    """`beta_binomial_log_evalue` for one look: the same formula on floats.

    Root finders call it a few dozen times per verdict; numpy's per-call
    overhead on 0-d arrays would be most of the cost.
    """
    f = n - s
    a, b = k * p, k * (1.0 - p)
    tail = special.betainc if alternative == "less" else special.betaincc
    post, prior = float(tail(a + s, b + f, p)), float(tail(a, b, p))
    if post <= 0.0 or prior <= 0.0 or not 0.0 < p < 1.0:
        return -math.inf if post <= 0.0 < prior else math.nan
    log_null = (s * math.log(p) if s > 0 else 0.0) + (f * math.log1p(-p) if f > 0 else 0.0)
    return _lbeta(a + s, b + f) + math.log(post) - _lbeta(a, b) - math.log(prior) - log_null


def _lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def normal_evidence(
    statistic: Callable[[FloatArray], tuple[FloatArray, FloatArray]],
    n: FloatArray,
    alternative: Alternative,
    rho_fail: float,
    rho_pass: float,
) -> Evidence:
    """`Evidence` of a normal-mixture test whose z-statistic at ``value`` is given.

    ``statistic(value)`` returns ``(estimate - value, standard error)`` of the
    linear contrast tested at ``value``; a larger contrast is harmful when
    ``alternative == "greater"``. No observations carry no evidence (log 0).
    """
    sign = 1.0 if alternative == "greater" else -1.0
    empty = n <= 0

    def evidence(value: ArrayLike) -> tuple[FloatArray, FloatArray]:
        diff, se = statistic(np.asarray(value, dtype=float))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = sign * diff / se
            violation = normal_mixture_log_evalue(z, n, rho=rho_fail)
            compliance = normal_mixture_log_evalue(-z, n, rho=rho_pass)
        return clean_log_evidence(violation, empty), clean_log_evidence(compliance, empty)

    return evidence
