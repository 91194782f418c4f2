"""Simulated staged rollouts: the judge at every check, on synthetic traffic.

Each stage's traffic is generated once; cumulative statistics at all checks are
built as arrays and every guardrail is evaluated at all checks in one
vectorised call of the statistics layer, then the shared decision rule
(`canary_stats.judge.decide`) walks the checks in order. This is what makes
thousands of rollouts cheap enough for operating-characteristic tables and
seeded validation tests; `judge` gives the same answer check by check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from . import stats
from ._simulated_users import cohort_users, running_user_sums
from ._split import HERFINDAHL, LEVEL_CONCENTRATION
from ._verdict import Verdict
from .judge import _evaluate, cohort_ready, decide, effective_status, judge
from .policy import Policy
from .sources.openmetrics import LATENCY_BUCKETS
from .sources.realistic import UserWorkload
from .sources.synthetic import Regression, Tasks, Workload
from .stats import Histogram, SequentialTestResult
from .store import LATENCY_RESOLUTION
from .summary import (
    Adjustment,
    CohortSummary,
    DesignEffects,
    Moments,
    Summary,
    UserHistory,
    adjust_cohorts,
)

__all__ = [
    "EVENT_LATENCY_BUCKETS",
    "LATENCY_BUCKETS",
    "Check",
    "RolloutOutcome",
    "simulate_rollout",
    "stage_summaries",
]

#: Latency buckets of the event store's grid (1 % wide, 1 ms to 10 min): traffic with
#: user ids comes as events, whose latencies the store keeps exact up to
#: `store.EXACT_LATENCY_LIMIT` tasks and in these buckets beyond; the simulator uses
#: the buckets throughout (slightly coarser than exact, never finer).
EVENT_LATENCY_BUCKETS = np.concatenate(
    [
        np.exp(np.arange(0, math.ceil(math.log(600_000.0) / math.log1p(LATENCY_RESOLUTION)) + 1)
               * math.log1p(LATENCY_RESOLUTION)),
        [np.inf],
    ]
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Check:
    """One look of the judge during a simulated rollout."""

    stage: int
    minute: float  # since the stage began
    decision: str
    verdict: Verdict | None = None


@dataclass(frozen=True, slots=True)
class RolloutOutcome:
    """How a simulated rollout ended."""

    outcome: str  # "promoted", "rolled_back" or "stalled"
    minutes: float  # from the start of the rollout to the end
    stage: int  # the stage at which it ended
    failed: tuple[str, ...] = ()  # guardrails that proved a violation
    checks: tuple[Check, ...] = field(default=())


def _cohort(
    tasks: Tasks, mask: np.ndarray, window: np.ndarray, k: int, edges: np.ndarray
) -> CohortSummary:
    w = window[mask]

    def cum(weights: np.ndarray | None = None) -> np.ndarray:
        return np.cumsum(np.bincount(w, weights=weights, minlength=k + 1))[:k]

    n = cum()
    tok = tasks.tokens[mask]
    score = tasks.eval_score[mask]
    scored = ~np.isnan(score)
    s0 = np.nan_to_num(score)
    bucket = np.searchsorted(edges, tasks.latency_ms[mask], side="left")
    grid = np.zeros((k + 1, edges.size))
    np.add.at(grid, (w, bucket), 1.0)
    counts = np.cumsum(np.cumsum(grid, axis=0), axis=1)[:k]
    users: Any = math.nan
    design = DesignEffects()
    if tasks.user is not None:  # sticky per-user routing: users and design effects
        users, design = cohort_users(
            tasks.user[mask], w, k, success=tasks.success[mask],
            latency=tasks.latency_ms[mask], tokens=tok, score=score,
        )  # fmt: skip
    return CohortSummary(
        tasks=n,
        successes=cum(tasks.success[mask].astype(float)),
        latency=Histogram(edges, counts),
        tokens=_moments(n, cum(tok), cum(tok * tok)),
        eval_score=_moments(cum(scored.astype(float)), cum(s0), cum(s0 * s0)),
        users=users,
        design=design,
    )


def _moments(n: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> Moments:
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, total / n, np.nan)
        var = np.where(n > 0, np.maximum(total_sq / n - mean * mean, 0.0), np.nan)
    return Moments(n, mean, var)


def stage_summaries(
    tasks: Tasks,
    check_minutes: np.ndarray,
    edges: np.ndarray = LATENCY_BUCKETS,
    history: UserHistory | None = None,
) -> Summary:
    """Cumulative per-cohort statistics at each check, as arrays (one entry per check).

    With user ids and the users' ``history``, the mean metrics are adjusted by it
    as the judge's summaries of events are (`adjust_cohorts`).
    """
    window = np.searchsorted(check_minutes, tasks.minute, side="right")
    k = check_minutes.size
    stable = _cohort(tasks, ~tasks.canary, window, k, edges)
    canary = _cohort(tasks, tasks.canary, window, k, edges)
    if tasks.user is not None and history is not None and history.users:
        sums = [
            running_user_sums(tasks.user[m], window[m], k, tokens=tasks.tokens[m],
                              score=tasks.eval_score[m])
            for m in (~tasks.canary, tasks.canary)
        ]  # fmt: skip
        stable, canary = adjust_cohorts(stable, canary, (sums[0], sums[1]), history)
    return Summary(stable=stable, canary=canary, source="aggregates")


def users_before(workload: Workload | UserWorkload, policy: Policy, gen: np.random.Generator
                 ) -> UserHistory | None:  # fmt: skip
    """The users' history the judge would read before the rollout (all on stable)."""
    span = policy.user_history.total_seconds() / 60
    if not isinstance(workload, UserWorkload) or span <= 0:
        return None
    period = workload.diurnal_period.total_seconds() / 60
    before = workload.generate(canary_share=0.0, minutes=span, phase=-2 * np.pi * span / period,
                               rng=gen)  # fmt: skip
    assert before.user is not None
    return UserHistory.from_values(before.user, before.tokens, before.eval_score)


def summary_at(summary: Summary, k: int) -> Summary:
    """The scalar `Summary` of check ``k`` from an array-valued one."""

    def at(x: Any) -> float:
        a = np.asarray(x, dtype=float)
        return float(a) if a.ndim == 0 else float(a[k])

    def pick(c: CohortSummary) -> CohortSummary:
        lat = c.latency
        assert isinstance(lat, Histogram)
        d, a = c.design, c.adjustment
        design = DesignEffects(at(d.success), at(d.latency), at(d.tokens), at(d.eval_score))
        return CohortSummary(
            float(c.tasks[k]),
            float(c.successes[k]),
            Histogram(lat.upper_bounds, lat.counts[k]),
            Moments(*(float(np.asarray(x)[k]) for x in (c.tokens.n, c.tokens.mean, c.tokens.var))),
            Moments(
                *(
                    float(np.asarray(x)[k])
                    for x in (c.eval_score.n, c.eval_score.mean, c.eval_score.var)
                )
            ),
            users=at(c.users),
            design=design,
            adjustment=Adjustment(at(a.tokens), at(a.eval_score)),
        )

    return Summary(pick(summary.stable), pick(summary.canary), source=summary.source)


def _stage_decisions(
    policy: Policy,
    stage: int,
    summary: Summary,
    check_minutes: np.ndarray,
    carried: dict[str, list[SequentialTestResult]],
) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """Decisions at every check of one stage, the earlier stages' evidence carried in."""
    share = policy.stages[stage].traffic / 100
    statuses, enough = [], []
    for g in policy.guardrails:
        now = _evaluate(g, summary, policy, share)
        r = stats.combine_stages([*carried[g.name], now], confidence_interval=False)
        s, e = effective_status(g, r, policy)
        statuses.append(np.broadcast_to(s, check_minutes.shape))
        enough.append(np.broadcast_to(e, check_minutes.shape))
    srm = _split(summary, share, policy.srm_alpha)
    problem = np.asarray(srm.mismatch) | (summary.stable.tasks == 0) | (summary.canary.tasks == 0)
    ready = np.broadcast_to(
        cohort_ready(summary.stable.tasks, summary.canary.tasks, policy), check_minutes.shape
    )
    duration = policy.stages[stage].duration or timedelta(0)
    names = [g.name for g in policy.guardrails]
    for k, minute in enumerate(check_minutes):
        st = [str(s[k]) for s in statuses]
        decision = decide(
            st,
            [bool(e[k]) for e in enough],
            data_problem=bool(problem[k]),
            mode=policy.stage_mode(stage),
            duration_reached=minute * 60 >= duration.total_seconds(),
            cohort_ready=bool(ready[k]),
        )
        yield k, decision, tuple(n for n, x in zip(names, st, strict=True) if x == "fail")


def _split(summary: Summary, share: float, alpha: float) -> stats.SampleRatioResult:
    """`split_check` at every check: users when the traffic has them, else tasks.

    Without users the simulator has no windows, so it tests task totals with no
    burst scale (as `split_check` does on a summary without ``window_tasks``).
    """
    st, ca = summary.stable, summary.canary
    if np.all(np.isfinite(np.asarray(st.users, dtype=float))):
        return stats.sample_ratio_mismatch(st.users, ca.users, expected_share=share, alpha=alpha)
    return stats.sample_ratio_mismatch(
        st.tasks, ca.tasks, expected_share=share, alpha=alpha,
        concentration=LEVEL_CONCENTRATION, herfindahl=HERFINDAHL,
    )  # fmt: skip


def simulate_rollout(
    policy: Policy,
    workload: Workload | UserWorkload | None = None,
    regression: Regression | None = None,
    *,
    check_every: timedelta = timedelta(minutes=5),
    max_hold: float = 1.0,
    verdicts: bool = False,
    on_check: Callable[[Check], None] | None = None,
    rng: np.random.Generator | int | None = None,
) -> RolloutOutcome:
    """Walk the policy's stages on synthetic traffic, checking every ``check_every``.

    Evidence is kept across stages as the judge keeps it: each stage's tests run
    on that stage's traffic, multiplied with the earlier stages' evidence at the
    check that promoted them. A stage that neither promotes nor rolls back within
    ``(1 + max_hold)`` times its minimum duration ends the rollout as
    ``"stalled"``. With ``verdicts=True`` each check also carries the full
    `Verdict` from `judge`; ``on_check`` is called after every check (for
    progress displays).
    """
    workload = workload or Workload()
    gen = np.random.default_rng(rng)
    step = check_every.total_seconds() / 60
    total = 0.0
    checks: list[Check] = []
    carried: dict[str, list[SequentialTestResult]] = {g.name: [] for g in policy.guardrails}
    ends: list[Summary | None] = [None] * len(policy.stages)
    history = users_before(workload, policy, gen)
    for stage in policy.analysed_stages:
        planned = (policy.stages[stage].duration or timedelta(hours=1)).total_seconds() / 60
        horizon = max(planned * (1 + max_hold), planned + 2 * step)
        check_minutes = np.arange(step, horizon + 1e-9, step)
        tasks = workload.generate(
            canary_share=policy.stages[stage].traffic / 100,
            minutes=float(check_minutes[-1]),
            regression=regression,
            phase=2 * np.pi * total / (workload.diurnal_period.total_seconds() / 60),
            rng=gen,
        )
        # Tasks with user ids are events, which the store bins on its own finer grid.
        edges = LATENCY_BUCKETS if tasks.user is None else EVENT_LATENCY_BUCKETS
        summary = stage_summaries(tasks, check_minutes, edges, history)
        ended = None
        for k, decision, failed in _stage_decisions(policy, stage, summary, check_minutes, carried):
            minute = float(check_minutes[k])
            verdict = None
            if verdicts:
                verdict = judge(
                    summary_at(summary, k), policy, stage=stage,
                    elapsed=timedelta(minutes=minute), earlier=ends[:stage],
                )  # fmt: skip
            checks.append(Check(stage, minute, decision, verdict))
            if on_check is not None:
                on_check(checks[-1])
            if decision != "hold":
                ended = (decision, minute, failed, k)
                break
        if ended is None:
            return RolloutOutcome(
                "stalled", total + float(check_minutes[-1]), stage, (), tuple(checks)
            )
        decision, minute, failed, k = ended
        total += minute
        if decision == "rollback":
            return RolloutOutcome("rolled_back", total, stage, failed, tuple(checks))
        # The evidence at the promoting check carries into the next stage.
        end = ends[stage] = summary_at(summary, k)
        share = policy.stages[stage].traffic / 100
        for g in policy.guardrails:
            carried[g.name].append(_evaluate(g, end, policy, share))
    return RolloutOutcome("promoted", total, policy.analysed_stages[-1], (), tuple(checks))
