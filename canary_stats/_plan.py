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
  data, tuned by `tuning` (in `_plan_model`) at its traffic.
* **Detection** is a boundary crossing: a one-sided normal-mixture test with effect
  ``delta``, per-unit sd ``sigma`` and intrinsic time ``n`` rejects once
  ``delta sqrt(n) / sigma >= b(n)``, the boundary of
  `canary_stats.stats.normal_mixture_boundary` (at level ``alpha e^L`` where earlier
  stages earned log evidence ``L``), solved on the expected path and turned into
  the median first passage (`crossing_n`). Minutes are intrinsic time over its
  rate: the canary's observations per minute, or both cohorts' for a contrast.

The model (`Baseline`, the crossing solve, one guardrail's test) is in
`canary_stats._plan_model`, the result types in `canary_stats._plan_result`; this
module walks the stages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._plan_model import (
    Baseline,
    _concentration,
    _Spec,
    _spec,
    _Stage,
    crossing_n,
    design_effect,
    detection_minutes,
    tuning,
    tuning_size,
)
from ._plan_result import (
    GuardrailPlan,
    Plan,
    StageGuardrail,
    StagePlan,
    _fmt_minutes,
    _num,
    _stage_text,
)
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
    baseline: Baseline = Baseline(),  # noqa: B008 (frozen, immutable default)
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
      stable a difference of the two cohorts' shares at the stable quantile, each of
      variance ``q (1 - q)``, the canary's test at 90 % of the level (the rest is the
      band on the stable quantile, whose cost is left out).
    * Users: every variance is multiplied by ``1 + icc n sum(w_i^2)`` for ``n``
      observations of a stage (`design_effect`), so more tasks of the same users
      help less and less.
    """
    rate, eval_share, users = _check_plan_iv(tasks_per_min, eval_share, users)
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
        ctx = _Stage(share, rate, w2, baseline.icc, *tuning(policy, share))
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
