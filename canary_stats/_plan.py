"""Will a rollout plan work? Data, detection and proof times per stage and guardrail.

`check_plan` projects a manifest's rollout before it runs, at a given traffic: per
stage and guardrail, the observations each cohort has by the stage's end, whether
the guardrail's minimum is reached, how soon a regression of one margin beyond the
margin is rolled back, how soon a healthy release is proven within its margins in
the prove stage, and what cannot work. It is the judge's model (DESIGN.md, "The
verdict: statistics"), on expected values:

* **Levels.** A guardrail's evidence is one e-process over the whole rollout, the
  product of its stages' e-values: it fails at ``alpha / len(guardrails)`` and passes
  at ``alpha_promote`` (intersection-union), whatever the number of stages.
* **Samples accumulate** over the stages; each stage's e-value comes from its own
  data, tuned by `canary_stats._eta.tuning` at its traffic.
* **Detection** is a boundary crossing: a one-sided normal-mixture test with effect
  ``delta``, per-unit sd ``sigma`` and intrinsic time ``n`` rejects once
  ``delta sqrt(n) / sigma >= b(n)``, the boundary of
  `canary_stats.stats.normal_mixture_boundary` (at level ``alpha e^L`` where earlier
  stages earned log evidence ``L``), solved on the expected path and turned into
  the median first passage (`crossing_n`). Minutes are intrinsic time over its
  rate: the canary's observations per minute, or both cohorts' for a contrast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

from . import stats
from .errors import InputError
from .policy import Guardrail, Policy

__all__ = [
    "Baseline",
    "GuardrailPlan",
    "Plan",
    "StageGuardrail",
    "StagePlan",
    "check_plan",
    "crossing_n",
    "design_effect",
    "detection_minutes",
    "tuning_size",
]

FloatArray = NDArray[np.float64]
Statistic = Callable[[FloatArray], FloatArray]
#: Beyond a month at one stage's traffic a decision is "never".
MAX_MINUTES = 30 * 24 * 60.0
#: The share of a level `quantile_contrast` spends on the stable quantile's bound.
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


def tuning_size(metric: str, contrast: str, policy: Policy, share: float) -> float:
    """The tuning sample of a guardrail's test: both cohorts, or the canary alone."""
    from ._eta import tuning  # _eta projects with this module's solve

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
    kappa: float = 0.0  # exceedance vs stable: pull of the stable quantile's bound


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
        return self.exceedance or self.guardrail.contrast == "absolute"


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
    stable, the threshold rides on the stable quantile's bound, which costs the canary
    ``kappa`` times that bound's half-width (in probability units): ``kappa`` is the
    canary's density at the threshold over stable's at its quantile, per unit of
    threshold moved.
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
        slope = 1.0 if g.contrast == "ratio" else quantile / t  # (dt/dQ)(Q/t)
        kappa = 0.0 if g.contrast == "absolute" else slope * math.exp(0.5 * (zq * zq - zt * zt))
        return _Side(effect, p0 * (1 - p0), p0 * (1 - p0), kappa)

    passing = side(healthy, harmful=False)
    ratio = g.contrast == "ratio"
    return _Spec(
        g, 0.0, 1.0, exact=True, bounded=False, exceedance=True,
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
    stable_level: float  # share of a level on the stable quantile's bound (per stage)
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
            if side.kappa:
                lv = level * self.stable_level
                rho = stats.mixture_precision(self.n_sta, lv)
                half = stats.normal_mixture_boundary(n_s, alpha=lv, rho=rho) * np.sqrt(
                    deff * side.var_stable / n_s
                )
                effect = effect - side.kappa * half
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


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageGuardrail:
    """One guardrail at one stage.

    Attributes
    ----------
    guardrail : str
    canary, stable : float
        Expected observations by the stage's end, over all stages so far (evidence
        carries); ``stable`` is 0 for a guardrail on the canary alone.
    enough : bool
        Whether the guardrail's minimum is reached by the stage's end.
    detect_minutes : float or None
        Minutes into the stage until a regression there since the rollout began is
        rolled back, with the evidence of the earlier stages (0: rolled back before
        the stage; None: not within a month at this traffic, or none defined).
    prove_minutes : float or None
        Prove stages only: minutes into the stage until a healthy canary is proven
        within the margin with its minimum (None: never, or a guard stage).
    """

    guardrail: str
    canary: float
    stable: float
    enough: bool
    detect_minutes: float | None
    prove_minutes: float | None

    def to_dict(self) -> dict[str, Any]:
        return {f: _round(getattr(self, f)) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One analysed stage: its traffic, mode, expected length and guardrails.

    ``minutes`` is its expected length: the planned ``duration_minutes``, or longer
    when the cohort's minimum (or, in a prove stage, the proof) takes longer.
    ``canary_tasks``/``stable_tasks`` are cumulative; ``design_effect`` is that of
    the stage's task metrics at its end (1 without users).
    """

    index: int
    traffic: float
    mode: Literal["guard", "prove"]
    duration_minutes: float | None
    start_minute: float
    minutes: float
    canary_tasks: float
    stable_tasks: float
    design_effect: float
    guardrails: tuple[StageGuardrail, ...]

    def describe(self) -> str:
        return _stage_text(self.index, self.traffic, self.duration_minutes)

    def to_dict(self) -> dict[str, Any]:
        out = {f: _round(getattr(self, f)) for f in self.__slots__ if f != "guardrails"}
        return out | {"guardrails": [r.to_dict() for r in self.guardrails]}


@dataclass(frozen=True, slots=True)
class GuardrailPlan:
    """One guardrail over the plan.

    ``healthy`` and ``regression`` are the canary's values assumed (for rules against
    stable: the ratio or difference). The regression is one margin beyond the margin:
    twice the margin away from no change (``max_drop: 0.02`` → a drop of 0.04;
    ``max_ratio: 1.15`` → 1.30), and for an absolute bound the bound moved beyond
    itself by its distance from the baseline (``min: 0.97`` at 0.985 → 0.955).
    ``detect_after`` counts minutes from the rollout's start (stages at their
    expected lengths); ``prove_after`` minutes into the last prove stage.
    """

    name: str
    description: str
    healthy: float
    regression: float | None
    enough_from: int | None
    detected_in: int | None
    detect_after: float | None
    prove_after: float | None
    feasible: bool
    why: str | None

    def to_dict(self) -> dict[str, Any]:
        return {f: _round(getattr(self, f)) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class Plan:
    """What `check_plan` expects of a rollout plan.

    ``feasible`` when every stage can show what it must within its planned duration:
    the cohort's minimum tasks in every stage, and in a prove stage every
    guardrail's minimum and its proof within the margin. ``problems`` says why not
    (the guardrail or stage and the numbers); ``warnings`` are the rest: guardrails
    carried forward, regressions caught only at a later stage, few users.
    """

    tasks_per_min: float
    eval_share: float
    users: int | None
    fail_level: float
    pass_level: float
    planned_minutes: float
    expected_minutes: float
    stages: tuple[StagePlan, ...]
    guardrails: tuple[GuardrailPlan, ...]
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = {f: _round(getattr(self, f)) for f in self.__slots__}
        out["stages"] = [s.to_dict() for s in self.stages]
        out["guardrails"] = [g.to_dict() for g in self.guardrails]
        out["problems"], out["warnings"] = list(self.problems), list(self.warnings)
        return out | {"feasible": self.feasible}

    def summary_lines(self) -> list[str]:
        """The plan as text: assumptions, one table per stage, problems and warnings."""
        who = "independent tasks" if self.users is None else f"{self.users} users"
        lines = [
            f"{'feasible' if self.feasible else 'NOT FEASIBLE'} at {self.tasks_per_min:g} "
            f"tasks/min, eval scores on {100 * self.eval_share:g} % of tasks, {who}; "
            f"planned {_fmt_minutes(self.planned_minutes)}, expected "
            f"{_fmt_minutes(self.expected_minutes)}",
            f"levels over the whole rollout: fail {self.fail_level:.4g} per guardrail, "
            f"pass {self.pass_level:.4g}",
            "guardrails (healthy → regression of one margin beyond the margin):",
        ]
        width = max(len(g.description) for g in self.guardrails)
        for g in self.guardrails:
            reg = "—" if g.regression is None else _num(g.regression)
            lines.append(f"  {g.name:<22} {g.description:<{width}}  {_num(g.healthy)} → {reg}")
        head = f"  {'guardrail':<22}{'canary':>9}{'stable':>9}  {'minimum':<9}"
        for s in self.stages:
            lines += ["", f"{s.describe()}, {s.mode}: expected {_fmt_minutes(s.minutes)}"
                      + (f", design effect {s.design_effect:.2g}" if self.users else ""),
                      head + f"{'rollback of a regression':<26}healthy proven"]  # fmt: skip
            for r in s.guardrails:
                stable = f"{r.stable:>9.0f}" if r.stable else f"{'—':>9}"
                lines.append(
                    f"  {r.guardrail:<22}{r.canary:>9.0f}{stable}  "
                    f"{'yes' if r.enough else 'carried' if s.mode == 'guard' else 'NO':<9}"
                    f"{_detect_text(r.detect_minutes, s.duration_minutes):<26}"
                    f"{'' if s.mode == 'guard' else _in_stage(r.prove_minutes):<16}".rstrip()
                )
        notes = [*(f"not feasible: {p}" for p in self.problems),
                 *(f"warning: {w}" for w in self.warnings)]  # fmt: skip
        return [*lines, "", *notes] if notes else lines


def _stage_text(index: int, traffic: float, duration: float | None) -> str:
    when = f"for {_fmt_minutes(duration)}" if duration else "without a minimum duration"
    return f"stage {index} ({traffic:g} % {when})"


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) and math.isfinite(v) else v


def _fmt_minutes(m: float | None) -> str:
    if m is None or not math.isfinite(m):
        return "never"
    if m < 90:
        return f"{m:.0f} min"
    return f"{m / 60:.3g} h" if m < 48 * 60 else f"{m / 1440:.3g} d"


def _in_stage(m: float | None) -> str:
    return "never" if m is None else "at once" if m < 0.5 else f"after {_fmt_minutes(m)}"


def _detect_text(m: float | None, duration: float | None) -> str:
    if m == 0:
        return "earlier"
    slow = m is not None and duration is not None and m > duration
    return _in_stage(m) + (" (> stage)" if slow else "")


# -- the plan --------------------------------------------------------------------------


@dataclass
class _Track:
    """One guardrail's state between stages (the walk's own, mutable)."""

    canary: float = 0.0
    stable: float = 0.0
    log_fail: float = 0.0
    log_pass: float = 0.0
    enough_from: int | None = None
    short: str | None = None
    detected: tuple[float, int] | None = None
    last_detect: float | None = None
    proven: float | None = None
    why: str | None = None


def check_plan(
    policy: Policy,
    *,
    tasks_per_min: float,
    eval_share: float = 1.0,
    users: int | None = None,
    baseline: Baseline = Baseline(),
) -> Plan:
    """Project a rollout plan at a traffic: data, detection and proof per stage.

    Parameters
    ----------
    policy : Policy
        The manifest's rollout: stages, guardrails, levels, ``min_samples``.
    tasks_per_min : float
        Agent tasks per minute, both cohorts (> 0).
    eval_share : float, default: 1.0
        Share of tasks given an eval score, in (0, 1].
    users : int, optional
        Number of users routed (sticky per user, Zipf-like activity): variances grow
        by the design effect ``1 + (m_w - 1) icc``. Without it tasks are independent.
    baseline : Baseline
        The healthy release assumed.

    Returns
    -------
    Plan

    Raises
    ------
    InputError
        For a rate that is not > 0, an eval share outside (0, 1] or users < 1,
        naming the argument.

    Notes
    -----
    Tests and their effects (``s`` the canary share, ``q`` the quantile):

    * success ``min``: exact beta-binomial on the canary, variance ``b (1 - b)`` at
      the bound ``b``; ``max_drop``/``min_ratio``: the two-sample contrast.
    * tokens and eval ``max_ratio``/``max_increase``/``max_drop``/``min_ratio``: the
      linear contrast ``mu_c - r mu_s`` (``r = 1`` for a difference). The judge's
      estimate over all ``N = n_s + n_c`` tasks of a stage has variance
      ``sigma_c^2 / (s N) + r^2 sigma_s^2 / ((1 - s) N)``, so per unit of intrinsic
      time ``N`` the variance is ``sigma_c^2 / s + r^2 sigma_s^2 / (1 - s)``
      (``sigma^2 / (s (1 - s))`` for equal variances). Success rates use the
      variance floors of `proportion_contrast`, eval scores the judge's
      pseudo-observation of variance 1/4.
    * eval and tokens ``min``/``max``: `mean_bound` on the canary, intrinsic time
      ``n_c``.
    * pNN latency: the canary's exceedance of a threshold ``t`` as a proportion
      test at ``1 - q`` (``max``: ``t`` the bound; ``max_ratio``: ``r Q_s``;
      ``max_increase``: ``Q_s + d``), variance ``q (1 - q)``, lognormal latency; vs
      stable the threshold rides on the stable quantile's bound (10 % of the
      level), which lowers the effect by ``kappa`` times that bound's half-width.
    * Users: every variance is multiplied by ``1 + icc n sum(w_i^2)`` for ``n``
      observations of a stage (`design_effect`), so more tasks of the same users
      help less and less.
    """
    rate, eval_share, users = _check_plan_iv(tasks_per_min, eval_share, users)
    from ._eta import tuning

    fail_at, pass_at = policy.alpha / len(policy.guardrails), policy.alpha_promote
    w2 = (
        0.0
        if users is None
        else _concentration(users, baseline.activity_exponent, baseline.activity_offset)
    )
    specs = [_spec(g, baseline, eval_share) for g in policy.guardrails]
    tracks = {sp.guardrail.name: _Track() for sp in specs}
    analysed, need = policy.analysed_stages, float(policy.min_samples)
    problems: list[str] = []
    warnings: list[str] = []
    out: list[StagePlan] = []
    clock = tasks_c = tasks_s = 0.0
    for k in analysed:
        st, mode = policy.stages[k], policy.stage_mode(k)
        share = st.traffic / 100.0
        planned = st.duration.total_seconds() / 60.0 if st.duration else None
        ctx = _Stage(share, rate, w2, baseline.icc, _STABLE_SHARE / len(analysed),
                     *tuning(policy, share))  # fmt: skip
        t_cohort = max(_wait(need, rate * share), _wait(need, rate * (1 - share)))  # this stage's
        timing = {sp.guardrail.name: _timing(sp, ctx, tracks[sp.guardrail.name], need, mode,
                                             fail_at, pass_at) for sp in specs}  # fmt: skip
        proofs = [p for _, p in timing.values() if p is not None and math.isfinite(p)]
        length = max(planned or 0.0, t_cohort, *(proofs if mode == "prove" else []))
        where = _stage_text(k, st.traffic, planned)
        if planned is not None and t_cohort > planned:
            problems.append(
                f"{where} is too short for its minimum: the canary gets "
                f"{rate * share * planned:.0f} of {need:.0f} tasks in it "
                f"({rate * share:.3g} a minute); it holds about "
                f"{_fmt_minutes(t_cohort - planned)} longer"
            )
        if users is not None and share * users < 10:
            warnings.append(
                f"{where}: {st.traffic:g} % of {users} users is about "
                f"{share * users:.2g} users: the canary's evidence rests on very few users"
            )
        rows = []
        for sp in specs:
            tr = tracks[sp.guardrail.name]
            detect, prove = timing[sp.guardrail.name]
            if mode == "prove" and tr.why is None:
                tr.why = _infeasible(sp, tr, where, share, planned, prove, need, rate)
            _advance(sp, ctx, tr, length, (fail_at, pass_at))
            alone = sp.guardrail.contrast == "absolute"  # no stable minimum needed
            enough = tr.canary >= need and (alone or tr.stable >= need)
            if enough and tr.enough_from is None:
                tr.enough_from = k
            if detect is not None and tr.detected is None and detect <= length:
                tr.detected = (clock + detect, k)
            tr.last_detect = detect
            rows.append(StageGuardrail(sp.guardrail.name, tr.canary,
                                       0.0 if alone else tr.stable, enough,
                                       _finite(detect), _finite(prove)))  # fmt: skip
            if not enough and mode == "guard" and tr.short is None:
                tr.short = f"{tr.canary:.0f} of {need:.0f} {_unit(sp)} by the end of stage {k}"
            if mode == "prove":
                tr.proven = _finite(prove)
        tasks_c, tasks_s = tasks_c + rate * share * length, tasks_s + rate * (1 - share) * length
        deff = 1.0 + baseline.icc * w2 * rate * length
        out.append(StagePlan(k, st.traffic, mode, planned, clock, length, tasks_c, tasks_s,
                             deff, tuple(rows)))  # fmt: skip
        clock += length
    plans = tuple(_guardrail_plan(sp, tracks[sp.guardrail.name], out, warnings) for sp in specs)
    problems += [p.why for p in plans if p.why]
    planned_total = sum((s.duration_minutes or 0.0) for s in out)
    return Plan(rate, eval_share, users, fail_at, pass_at, planned_total, clock, tuple(out),
                plans, tuple(problems), tuple(warnings))  # fmt: skip


def _check_plan_iv(rate: Any, eval_share: Any, users: Any) -> tuple[float, float, int | None]:
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if not (number(rate) and rate > 0):
        raise InputError("tasks_per_min", f"must be a number > 0; got {rate!r}")
    if not (number(eval_share) and 0 < eval_share <= 1):
        raise InputError("eval_share", f"must be in (0, 1]; got {eval_share!r}")
    if users is not None and not (isinstance(users, int) and not isinstance(users, bool)
                                  and users >= 1):  # fmt: skip
        raise InputError("users", f"must be a whole number >= 1; got {users!r}")
    return float(rate), float(eval_share), users


def _wait(missing: float, per_min: float) -> float:
    return max(missing, 0.0) / per_min if missing > 0 else 0.0


def _finite(m: float | None) -> float | None:
    return m if m is not None and math.isfinite(m) else None


def _unit(sp: _Spec) -> str:
    return "scores" if sp.guardrail.metric == "eval_score" else "tasks"


def _timing(
    sp: _Spec, ctx: _Stage, tr: _Track, need: float, mode: str, fail_at: float, pass_at: float
) -> tuple[float | None, float | None]:
    """Minutes into the stage to a regression's rollback and to a healthy proof."""
    obs = ctx.rate * sp.density
    own = max(_wait(need - tr.canary, obs * ctx.share),
              0.0 if sp.guardrail.contrast == "absolute"
              else _wait(need - tr.stable, obs * (1 - ctx.share)))  # fmt: skip
    detect: float | None = None
    if tr.detected is not None:
        detect = 0.0
    elif sp.fail is not None:
        detect = ctx.minutes_to_cross(sp, sp.fail, fail_at, tr.log_fail)
        detect = detect if sp.exact else max(detect, own)
    prove = None
    if mode == "prove":
        ok = sp.passing
        prove = max(ctx.minutes_to_cross(sp, ok, pass_at, tr.log_pass) if ok else math.inf, own)
    return detect, prove


def _advance(
    sp: _Spec, ctx: _Stage, tr: _Track, minutes: float, levels: tuple[float, float]
) -> None:
    """Carry the stage's observations and e-values (at its end) into the next stage."""
    obs = ctx.rate * sp.density * minutes
    tr.canary += obs * ctx.share
    tr.stable += obs * (1 - ctx.share)
    if sp.fail is not None:
        tr.log_fail += ctx.log_evidence(sp, sp.fail, levels[0], minutes)
    if sp.passing is not None:
        tr.log_pass += ctx.log_evidence(sp, sp.passing, levels[1], minutes)


def _infeasible(
    sp: _Spec, tr: _Track, where: str, share: float, planned: float | None,
    prove: float | None, need: float, rate: float,
) -> str | None:  # fmt: skip
    """Why a prove stage (``where``) cannot prove this guardrail in its planned time."""
    g, name, unit = sp.guardrail, sp.guardrail.name, _unit(sp)
    if sp.passing is None:
        return (
            f"{name}: the healthy value assumed ({_value(g, sp.healthy)}) is not inside "
            f"'{g.describe()}', so it can never be proven (set the baseline)"
        )
    if planned is None or prove is None or prove <= planned:
        return None
    canary = tr.canary + rate * sp.density * share * planned
    scored = f"scoring {100 * sp.density:g} % of " if sp.density < 1 else ""
    gives = (
        f"{name}: {scored}{rate * share:.3g} canary tasks/min gives {canary:.0f} {unit} by the "
        f"end of {where}, the prove stage"
    )
    if canary < need:
        return f"{gives}; needs {need:.0f}"
    what = f"{gives}: too few to prove a healthy canary ({_value(g, sp.healthy)}) within "
    what += f"'{g.describe()}'"
    if not math.isfinite(prove):
        return f"{what}, and more at {100 * share:g} % would not be enough within a month"
    needed = tr.canary + rate * sp.density * share * prove
    return f"{what}, which takes about {needed:.0f} ({_fmt_minutes(prove)} at {100 * share:g} %)"


def _value(g: Guardrail, v: float) -> str:
    if g.contrast == "ratio":
        return f"{v:.3g} x stable"
    if g.contrast == "difference":
        return f"{'-' if v < 0 else '+'}{_num(abs(v))} vs stable"
    return _num(v) + (" ms" if g.metric == "latency_ms" else "")


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _guardrail_plan(
    sp: _Spec, tr: _Track, stages: list[StagePlan], warnings: list[str]
) -> GuardrailPlan:
    g = sp.guardrail
    if tr.short is not None:
        k = tr.enough_from
        later = "never judged" if k is None else f"judged from stage {k} on"
        warnings.append(f"{g.name}: {tr.short}; carried forward, {later}")
    reg = None if sp.fail is None else sp.regression
    if sp.fail is not None:
        what = f"a regression of one margin ({_value(g, sp.regression)})"
        if tr.detected is None:
            late = tr.last_detect
            when = f"about {_fmt_minutes(late)} into" if late and math.isfinite(late) else (
                "not within a month of")  # fmt: skip
            warnings.append(
                f"{g.name}: {what} is not rolled back within the planned stages ({when} "
                f"stage {stages[-1].index}); it is held, never promoted"
            )
        elif tr.detected[1] != stages[0].index:
            slow = ", ".join(s.describe() for s in stages if s.index < tr.detected[1])
            warnings.append(
                f"{g.name}: {what} is rolled back about {_fmt_minutes(tr.detected[0])} into "
                f"the rollout, in stage {tr.detected[1]}: slower than {slow}"
            )
    return GuardrailPlan(
        g.name, g.describe(), sp.healthy, reg, tr.enough_from,
        None if tr.detected is None else tr.detected[1],
        None if tr.detected is None else tr.detected[0],
        tr.proven, tr.why is None, tr.why,
    )  # fmt: skip
