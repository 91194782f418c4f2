"""The plan's model: the healthy values assumed and the time a test takes to decide.

`Baseline`, the boundary-crossing solve (`crossing_n`, shared with `canary_stats._eta`),
the design effect of users, and one guardrail's test per stage (`_spec`, `_Stage`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

from . import stats
from .errors import InputError
from .policy import Guardrail, Policy

__all__ = [
    "MAX_MINUTES",
    "Baseline",
    "crossing_n",
    "design_effect",
    "detection_minutes",
    "tuning",
    "tuning_size",
]

FloatArray = NDArray[np.float64]
Statistic = Callable[[FloatArray], FloatArray]
#: Beyond a month at one stage's traffic a decision is "never".
MAX_MINUTES = 30 * 24 * 60.0
#: The share of a level `quantile_contrast` spends on the band on the stable quantile.
_STABLE_SHARE = 0.1
_Z95 = 1.6448536269514722


@dataclass(frozen=True, slots=True)
class Baseline:
    """The healthy release the plan assumes (stable's values; defaults as `Workload()`).

    Attributes
    ----------
    success_rate : float, default: 0.985
        Share of tasks that succeed.
    latency_median_ms, latency_sigma : float, default: 2500, 0.5
        Latency is lognormal with this median and log-sd (p95 about 5690 ms).
    latency_p95_ms : float or None
        When given, sets the median instead: ``p95 / exp(1.645 sigma)``.
    tokens_mean, tokens_cv : float, default: 4000, 1.0
        Mean tokens per task and their coefficient of variation.
    eval_mean, eval_sd : float, default: 0.93, 0.046
        Mean and sd of an eval score (a pass/fail grader: ``sd = sqrt(m (1 - m))``).
    icc : float, default: 0.02
        Intra-user correlation of every metric (with ``users``).
    activity_exponent, activity_offset : float, default: 1.1, 20
        Users' activity is Zipf-like (Zipf-Mandelbrot, as `UserWorkload`): the user
        of rank ``i`` sends a share ``∝ (i + offset)^-exponent`` of the tasks.
    """

    success_rate: float = 0.985
    latency_median_ms: float = 2500.0
    latency_sigma: float = 0.5
    latency_p95_ms: float | None = None
    tokens_mean: float = 4000.0
    tokens_cv: float = 1.0
    eval_mean: float = 0.93
    eval_sd: float = 0.046
    icc: float = 0.02
    activity_exponent: float = 1.1
    activity_offset: float = 20.0

    def __post_init__(self) -> None:
        unit = ("success_rate", "eval_mean")
        for name in (*unit, "latency_median_ms", "latency_sigma", "tokens_mean", "tokens_cv",
                     "eval_sd", "icc", "activity_exponent", "activity_offset",
                     "latency_p95_ms"):  # fmt: skip
            v = getattr(self, name)
            if v is None and name == "latency_p95_ms":
                continue
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            lo_ok = ok and (v >= 0 if name == "icc" or name.startswith("activity") else v > 0)
            if not lo_ok or (name in unit and v >= 1) or (name == "icc" and v >= 1):
                want = "in (0, 1)" if name in unit else "in [0, 1)" if name == "icc" else (
                    ">= 0" if name.startswith("activity") else "> 0")  # fmt: skip
                raise InputError(f"baseline.{name}", f"must be a number {want}; got {v!r}")

    def latency_median(self) -> float:
        if self.latency_p95_ms is None:
            return self.latency_median_ms
        return self.latency_p95_ms / math.exp(_Z95 * self.latency_sigma)


# -- the boundary-crossing solve (shared with the verdicts' ETA) ---------------------


def crossing_n(
    statistic: Statistic, *, alpha: float, rho: float, n_max: float, n0: float = 0.0,
    carried: float = 0.0, median: bool = False,
) -> float:  # fmt: skip
    """Intrinsic time at which a one-sided normal-mixture test first rejects.

    ``statistic(n)`` is the expected standardised statistic ``z(n)`` (vectorised); the
    test rejects once ``z(n) >= b(n)``, the one-sided boundary at level
    ``alpha e^carried`` (``carried``: log evidence earned before, as in a product of
    stages' e-values) and mixture precision ``rho``. Returns ``n`` in ``[n0, n_max]``,
    or infinity when the statistic does not cross by ``n_max``.

    That is where the expected path crosses, about the mean time of the first
    passage. With ``median``, the median instead: near the crossing the sum
    ``z(n) sqrt(n)`` closes in on ``b(n) sqrt(n)`` at a rate ``mu``, so the passage
    is about that of a Brownian motion with drift ``mu`` to a level ``mu (n - n0)``,
    inverse Gaussian with shape ``phi = mu^2 (n - n0)`` relative to its mean
    (seeded simulation: within 10 % of the median first crossing).
    """
    target = math.log(1.0 / alpha) - carried
    if target <= 0.0:
        return n0
    level = math.exp(-target)
    span = n_max - n0
    if not span > 0:
        return math.inf
    grid = n0 + np.geomspace(max(span * 1e-9, 1e-6), span, 240)
    above = statistic(grid) >= stats.normal_mixture_boundary(grid, alpha=level, rho=rho)
    if not above.any():
        return math.inf
    i = int(np.argmax(above))
    if i == 0:
        return float(grid[0])

    def gap(n: float) -> float:
        s = statistic(np.asarray([n]))
        return float(stats.normal_mixture_log_evalue(s, n, rho=rho)[0]) - target

    n = float(grid[i])
    if gap(n) >= 0.0:  # else the grid's bisection and the log e-value disagree by 1e-10
        n = float(optimize.brentq(gap, float(grid[i - 1]), n, xtol=1e-9, rtol=1e-9))
    if not median:
        return n
    h = 1e-3 * (n - n0)
    ends = np.asarray([n - h, n + h])
    closing = (
        statistic(ends) - stats.normal_mixture_boundary(ends, alpha=level, rho=rho)
    ) * np.sqrt(ends)
    mu = float(closing[1] - closing[0]) / (2 * h)
    return n0 + (n - n0) * _median_passage(mu * mu * (n - n0)) if mu > 0 else n


def _median_passage(phi: float) -> float:
    """Median of the inverse Gaussian law with mean 1 and shape ``phi``."""
    if not phi < 1e4:
        return 1.0

    def cdf(x: float) -> float:
        r = math.sqrt(phi / x)
        far = math.exp(2 * phi + float(special.log_ndtr(-r * (x + 1))))
        return float(special.ndtr(r * (x - 1))) + far - 0.5

    return float(optimize.brentq(cdf, 1e-9, 1.0, xtol=1e-9))


def detection_minutes(
    delta: float, sigma: float, *, per_min: float, alpha: float, rho: float, n0: float = 0.0
) -> float:
    """Median minutes from intrinsic time ``n0`` until ``delta sqrt(n) / sigma >= b(n)``.

    ``per_min`` is the intrinsic time gained per minute. Infinity when the test does
    not reject within `MAX_MINUTES` (or ``delta <= 0``: the effect is on the other side).
    """
    if not (delta > 0 and sigma > 0 and per_min > 0):
        return math.inf
    n = crossing_n(
        lambda m: delta * np.sqrt(m) / sigma, alpha=alpha, rho=rho, n0=n0,
        n_max=n0 + per_min * MAX_MINUTES, median=True,
    )  # fmt: skip
    return (n - n0) / per_min


def tuning(policy: Policy, share: float) -> tuple[float, float, float]:
    """Tuning sizes fixed before the data: both cohorts, canary alone, stable alone."""
    n = float(policy.tuning_samples)
    return n, max(n * share, 100.0), max(n * (1 - share), 100.0)


def tuning_size(metric: str, contrast: str, policy: Policy, share: float) -> float:
    """The tuning sample of a guardrail's test: both cohorts, or the canary alone."""
    n_two, n_can, _ = tuning(policy, share)
    return n_can if contrast == "absolute" or metric == "latency_ms" else n_two


def design_effect(
    observations: float, users: int, *, icc: float, exponent: float = 1.1, offset: float = 20.0
) -> float:
    """Kish's design effect ``1 + (m_w - 1) icc`` of observations spread over users.

    With activity shares ``w_i ∝ (i + offset)^-exponent`` and Poisson counts per
    user, ``m_w = sum m_i^2 / sum m_i`` has expectation
    ``1 + observations * sum w_i^2``, in either cohort (a random share of the users
    holds the same share of the tasks).
    """
    return 1.0 + icc * observations * _concentration(users, exponent, offset)


def _concentration(users: int, a: float, c: float) -> float:
    """``sum w_i^2`` for ``w_i ∝ (i + c)^-a``: exact for 10^5 users, an integral beyond."""
    head = min(users, 100_000)
    i = np.arange(1.0, head + 1.0) + c
    s1, s2 = float(np.sum(i**-a)), float(np.sum(i ** (-2 * a)))
    if users > head:
        lo, hi = head + 0.5 + c, users + 0.5 + c
        s1 += _power_integral(lo, hi, a)
        s2 += _power_integral(lo, hi, 2 * a)
    return s2 / (s1 * s1)


def _power_integral(lo: float, hi: float, a: float) -> float:
    return math.log(hi / lo) if a == 1 else (hi ** (1 - a) - lo ** (1 - a)) / (1 - a)


# -- one guardrail's test, as the judge runs it ---------------------------------------


@dataclass(frozen=True, slots=True)
class _Side:
    """One scenario of a test: the effect toward what is proven and the variances."""

    effect: float  # distance of the true contrast from the null, toward the proof (> 0)
    var_canary: float
    var_stable: float


@dataclass(frozen=True, slots=True)
class _Spec:
    guardrail: Guardrail
    coef: float  # weight of the stable mean in the linear contrast; 0: the canary alone
    density: float  # observations per task (the eval share for scores)
    exact: bool  # exact methods may fail below the minimum sample
    bounded: bool  # the judge adds one pseudo-observation of variance 1/4 (eval scores)
    exceedance: bool
    healthy: float
    regression: float
    fail: _Side | None  # None when passing is: the healthy value is outside the margin
    passing: _Side | None

    @property
    def one_sample(self) -> bool:
        return self.guardrail.contrast == "absolute"


def _spec(g: Guardrail, b: Baseline, eval_share: float) -> _Spec:
    """The test, its healthy canary and its regression of one margin beyond the margin."""
    sign = 1.0 if g.alternative == "greater" else -1.0  # harm: the contrast above (below)
    if g.metric == "latency_ms":
        return _latency_spec(g, b, sign)
    base = {"task_success_rate": b.success_rate, "tokens_per_task": b.tokens_mean,
            "eval_score": b.eval_mean}[g.metric]  # fmt: skip
    if g.contrast == "absolute":
        coef, c0, healthy, reg = 0.0, g.margin, base, 2 * g.margin - base
    elif g.contrast == "difference":
        coef, c0, healthy, reg = 1.0, g.margin, base, base + 2 * g.margin
    else:
        coef, c0, healthy, reg = g.margin, 0.0, base, base * (2 * g.margin - 1)
    unit = g.metric != "tokens_per_task"
    reg = min(max(reg, 1e-6), 1 - 1e-6) if unit else max(reg, 1e-6)

    def var(value: float) -> float:
        if g.metric == "task_success_rate":
            return value * (1 - value)
        return (b.tokens_cv * value) ** 2 if g.metric == "tokens_per_task" else b.eval_sd**2

    def side(canary: float, harmful: bool) -> _Side | None:
        effect = sign * (canary - coef * base - c0) * (1 if harmful else -1)
        if not effect > 0:
            return None
        v_c, v_s = var(canary), var(base)
        if g.metric == "task_success_rate" and coef == 0:  # beta-binomial: the null's variance
            v_c = c0 * (1 - c0)
        elif g.metric == "task_success_rate":  # floors of `proportion_contrast`
            pooled, null = var(0.5 * (canary + base)), var(min(max(coef * base + c0, 0), 1))
            v_c, v_s = max(v_c, pooled, null), max(v_s, pooled)
        return _Side(effect, v_c, v_s)

    passing = side(healthy, harmful=False)
    return _Spec(
        g, coef, eval_share if g.metric == "eval_score" else 1.0,
        exact=g.metric == "task_success_rate" and coef == 0, bounded=g.metric == "eval_score",
        exceedance=False, healthy=healthy if coef == 0 else 1.0 if g.contrast == "ratio" else 0.0,
        regression=reg if coef == 0 else reg / base if g.contrast == "ratio" else reg - base,
        fail=side(reg, harmful=True) if passing else None, passing=passing,
    )  # fmt: skip


def _latency_spec(g: Guardrail, b: Baseline, sign: float) -> _Spec:
    """p-quantile rules as exceedance proportions: ``Q <= t`` is ``P(X > t) <= 1 - q``.

    Lognormal latency; the canary is stable's distribution scaled by ``c``. Against
    stable, `quantile_contrast` compares the two cohorts' shares at the stable
    quantile (a difference of two proportions, each of variance about ``q (1 - q)``);
    the band on the stable quantile and the cells' width are left out (small when
    the cohorts differ by a scale and the buckets are fine).
    """
    q, s = float(g.quantile or 0.95), b.latency_sigma
    p0, zq = 1.0 - q, float(special.ndtri(q))
    med = b.latency_median()
    quantile = med * math.exp(zq * s)
    if g.contrast == "absolute":
        t, healthy, reg = g.margin, quantile, 2 * g.margin - quantile
    elif g.contrast == "difference":
        t, healthy, reg = quantile + g.margin, quantile, quantile + 2 * g.margin
    else:
        t, healthy, reg = g.margin * quantile, quantile, quantile * (2 * g.margin - 1)

    def side(value: float, harmful: bool) -> _Side | None:
        if not value > 0:
            return None
        zt = math.log(t * quantile / (value * med)) / s
        exceed = float(special.ndtr(-zt))
        effect = sign * (exceed - p0) * (1 if harmful else -1)
        if not effect > 0:
            return None
        return _Side(effect, p0 * (1 - p0), p0 * (1 - p0))

    passing = side(healthy, harmful=False)
    ratio = g.contrast == "ratio"
    coef = 0.0 if g.contrast == "absolute" else 1.0  # vs stable: stable's share counts too
    return _Spec(
        g, coef, 1.0, exact=True, bounded=False, exceedance=True,
        healthy=1.0 if ratio else 0.0 if g.contrast == "difference" else healthy,
        regression=reg / quantile if ratio else reg - quantile if g.contrast != "absolute" else reg,
        fail=side(reg, harmful=True) if passing else None, passing=passing,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Stage:
    """What one stage gives a test: traffic, levels, tuning and clustering."""

    share: float
    rate: float  # tasks per minute, both cohorts
    concentration: float  # sum of users' activity shares squared (0: independent tasks)
    icc: float
    n_two: float
    n_can: float
    n_sta: float

    def per_min(self, sp: _Spec) -> float:
        """Intrinsic time per minute: the canary's observations, or both cohorts'."""
        return self.rate * sp.density * (self.share if sp.one_sample else 1.0)

    def statistic(self, sp: _Spec, side: _Side, level: float) -> Statistic:
        s, icc, w2 = self.share, self.icc, self.concentration

        def z(n: FloatArray) -> FloatArray:
            total = n / s if sp.one_sample else n
            deff = 1.0 + icc * w2 * total
            n_c, n_s = s * total, (1 - s) * total
            v_c: Any = side.var_canary
            v_s: Any = side.var_stable
            if sp.bounded:
                v_c, v_s = (n_c * v_c + 0.25) / (n_c + 1), (n_s * v_s + 0.25) / (n_s + 1)
            se = np.sqrt(deff * (v_c / n_c + sp.coef**2 * v_s / n_s))
            effect: Any = side.effect
            return np.asarray(effect / se, dtype=float)

        return z

    def log_evidence(self, sp: _Spec, side: _Side, level: float, minutes: float) -> float:
        """The stage's log e-value at ``minutes`` on the expected path."""
        n = self.per_min(sp) * minutes
        if n <= 0:
            return 0.0
        z = self.statistic(sp, side, level)(np.asarray([n]))
        rho = stats.mixture_precision(self.tune(sp), _canary_level(sp, level))
        return float(stats.normal_mixture_log_evalue(z, n, rho=rho)[0])

    def minutes_to_cross(self, sp: _Spec, side: _Side, level: float, carried: float) -> float:
        per_min = self.per_min(sp)
        lv = _canary_level(sp, level)
        n = crossing_n(
            self.statistic(sp, side, level), alpha=lv, carried=carried,
            rho=stats.mixture_precision(self.tune(sp), lv), n_max=per_min * MAX_MINUTES,
            median=True,
        )  # fmt: skip
        return n / per_min

    def tune(self, sp: _Spec) -> float:
        return self.n_can if sp.one_sample else self.n_two


def _canary_level(sp: _Spec, level: float) -> float:
    """The canary test's level: an exceedance test vs stable spends 10 % on stable."""
    vs_stable = sp.exceedance and sp.guardrail.contrast != "absolute"
    return level * (1.0 - _STABLE_SHARE) if vs_stable else level
