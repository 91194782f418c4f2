"""Seeded Monte-Carlo validation of the judge on the realistic workload classes (issue 14).

Every rollout draws its own user population (the per-user correlation only shows
across populations) and uses the issue's relative guardrails on the seed's
stages. Tolerances are binomial: a rate is checked against its target with room
for the run count, so a seeded pass is not an accident of a few runs, and a judge
that misses a target by a clear margin fails.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from scipy import stats

import canary_stats as cs
from canary_stats._plan import check_plan
from canary_stats.simulate import Check, simulate_rollout
from canary_stats.sources.realistic import REALISTIC_CLASSES, UserWorkload, _population
from canary_stats.sources.synthetic import Regression

ALPHA = 0.05
STAGES = [
    {"traffic": 1, "duration": "30m"},
    {"traffic": 10, "duration": "2h"},
    {"traffic": 50, "duration": "6h"},
    {"traffic": 100},
]
GUARDRAILS = {
    "task_success_rate": {"max_drop": 0.02},
    "p95_latency_ms": {"max_ratio": 1.2},
    "tokens_per_task": {"max_ratio": 1.15},
    "eval_score": {"min": 0.90},
}
PLAN_MINUTES = 30 + 120 + 360
ON_TIME = 1.25 * PLAN_MINUTES


@pytest.fixture(scope="module")
def policy() -> cs.Policy:
    return cs.Policy.from_dict({"stages": STAGES, "guardrails": GUARDRAILS, "alpha": ALPHA})


def _runs(
    policy: cs.Policy, w: UserWorkload, reg: Regression | None, n: int, base: int
) -> list[cs.simulate.RolloutOutcome]:
    out = []
    for r in range(n):
        seed = base + r
        workload = dataclasses.replace(w, population_seed=seed)
        out.append(simulate_rollout(policy, workload, reg, rng=seed))
    return out


def _at_most(n: int, p: float, level: float = 0.001) -> int:
    """The largest count a binomial(n, p) exceeds with chance below ``level``."""
    return int(stats.binom.isf(level, n, p))


@pytest.mark.parametrize("name", ["per-user", "production"])
def test_identical_canary_false_rollback_within_alpha(policy: cs.Policy, name: str) -> None:
    n = 60
    outs = _runs(policy, REALISTIC_CLASSES[name], None, n, base=1000)
    back = [o for o in outs if o.outcome == "rolled_back"]
    # Family-wise alpha over all guardrails, stages and checks: at most 9 of 60 even
    # if the rate were exactly alpha (chance 0.1 %).
    assert len(back) <= _at_most(n, ALPHA), [(o.stage, o.failed) for o in back]


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 target missed: tokens and eval scores are adjusted by users' history, "
    "but the p95 ratio is not; with its user-level uncertainty (a design effect of about 3 "
    "at 50 %) the 6 h prove stage proves it within half a margin in about a third of the "
    "runs (see bench.realistic)",
)
def test_healthy_half_margin_promoted_on_time_with_sparse_scores(policy: cs.Policy) -> None:
    """20 % of tasks scored, users routed sticky: inside every margin by half."""
    w = REALISTIC_CLASSES["eval-20"]
    # Half of each margin; the eval score's mean of about 0.927 is 0.027 above 0.90.
    half = Regression(success_drop=0.01, latency_factor=1.1, token_factor=1.075, eval_drop=0.0135)
    n = 40
    outs = _runs(policy, w, half, n, base=2000)
    on_time = sum(o.outcome == "promoted" and o.minutes <= ON_TIME for o in outs)
    # Target 90 %; 32 of 40 (80 %) leaves a true 90 % a 4 % chance to fail here.
    assert on_time >= 32, [(o.outcome, o.stage, o.minutes) for o in outs]
    assert not any(o.outcome == "rolled_back" for o in outs)


#: Measured on "production": latency x1.3 is mostly not rolled back (none promoted):
#: whole-second latencies leave the stable p95 between two atoms (5 s and 6 s, a step as
#: large as the margin), and the p95 ratio is not adjusted by users' history. Tokens x1.25,
#: once as slow for the heavy users' token habits, are caught since the token mean is.
_SLOW_PROOF = pytest.mark.xfail(
    strict=True, reason="issue 14 power target missed on per-user traffic (see bench.realistic)"
)


@pytest.mark.parametrize(
    ("reg", "guardrail"),
    [
        (Regression(success_drop=0.03), "task_success_rate"),
        pytest.param(Regression(latency_factor=1.3), "p95_latency_ms", marks=_SLOW_PROOF),
        (Regression(token_factor=1.25), "tokens_per_task"),
        (Regression(eval_drop=0.04), "eval_score"),
    ],
)
def test_one_regression_per_guardrail_caught(
    policy: cs.Policy, reg: Regression, guardrail: str
) -> None:
    n = 15
    outs = _runs(policy, REALISTIC_CLASSES["production"], reg, n, base=3000)
    caught = [o for o in outs if o.outcome == "rolled_back" and guardrail in o.failed]
    assert not any(o.outcome == "promoted" for o in outs)
    # Power target 95 %: 13 of 15 at least (a true 95 % fails here with chance 4 %).
    assert len(caught) >= 13, [(o.outcome, o.stage, o.failed) for o in outs]


def _eval_drop_to(w: UserWorkload, bound: float) -> float:
    """The drop that puts this population's mean eval score exactly at ``bound``."""
    pop = _population(w)
    return float(np.diff(pop.cumulative, prepend=0.0) @ pop.eval_mean) - bound


@pytest.mark.parametrize("guardrail", ["tokens_per_task", "eval_score"])
def test_canary_at_a_margin_rarely_rolled_back_with_users_history(
    policy: cs.Policy, guardrail: str
) -> None:
    """Adjusted by users' history, a canary exactly at a margin is rolled back within alpha.

    The token ratio is at its margin in every population (tokens x1.15); the eval
    score's absolute bound is placed at each run's own population mean, which is
    what the adjusted estimate is about.
    """
    w, n = REALISTIC_CLASSES["per-user"], 30
    back = []
    for r in range(n):
        workload = dataclasses.replace(w, population_seed=5000 + r)
        reg = (
            Regression(token_factor=1.15)
            if guardrail == "tokens_per_task"
            else Regression(eval_drop=_eval_drop_to(workload, 0.90))
        )
        out = simulate_rollout(policy, workload, reg, rng=5000 + r)
        back += [out.failed] if out.outcome == "rolled_back" else []
    # At most alpha/4 per guardrail by design; 5 of 30 would be beyond even alpha.
    assert len(back) <= _at_most(n, ALPHA), back


class _Enough(Exception):
    """Stops a long simulated rollout once its prove stage has been looked at."""


def test_infeasible_class_never_promoted_unjudged(policy: cs.Policy) -> None:
    """2 % of tasks scored at 15 tasks/min: check-plan says no; the judge holds and says why."""
    w = dataclasses.replace(REALISTIC_CLASSES["low-traffic"], eval_rate=0.02)
    plan = check_plan(
        policy, tasks_per_min=w.tasks_per_minute, eval_share=w.eval_rate, users=w.users
    )
    assert not plan.feasible
    assert any("stage 0" in p and "minimum" in p for p in plan.problems), plan.problems

    outs = _runs(policy, w, None, 20, base=4000)
    assert all(o.outcome != "promoted" for o in outs)

    # Given the time to get its tasks, the canary passes the guard stages with
    # eval_score carried forward and named, and the prove stage holds naming it.
    seen: list[Check] = []

    def stop(check: Check) -> None:
        seen.append(check)
        if check.stage == 2 and check.minute >= 30:
            raise _Enough

    workload = dataclasses.replace(w, population_seed=3)
    with pytest.raises(_Enough):
        simulate_rollout(
            policy,
            workload,
            None,
            rng=3,
            verdicts=True,
            max_hold=7.0,
            on_check=stop,
            check_every=timedelta(minutes=5),
        )
    carried = [c for c in seen if c.stage < 2 and c.decision == "promote"]
    assert carried, "the guard stages never promoted"
    for c in carried:
        assert c.verdict is not None and "eval_score" in c.verdict.reason
        assert c.verdict.metrics["eval_score"].status != "fail"
    prove = [c for c in seen if c.stage == 2]
    assert prove and all(c.decision == "hold" for c in prove)
    last = prove[-1].verdict
    assert last is not None and not last.metrics["eval_score"].enough_data
    assert "eval_score" in last.reason, last.reason
    assert np.isfinite(last.metrics["eval_score"].n_canary)
