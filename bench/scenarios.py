"""The seed policy, the rollout plan and the regression scenarios of the benchmark.

Everything here is shared by canary_stats and the baselines, so that every method
is judged on the same guardrails, the same stage plan and the same traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Literal

import numpy as np

from canary_stats import Policy
from canary_stats.demo import SEED_ROLLOUT
from canary_stats.sources.synthetic import Regression, Tasks, Workload, generate_tasks

__all__ = [
    "CHECK_EVERY",
    "MAX_HOLD",
    "SCENARIOS",
    "SEED_GUARDRAILS",
    "SEED_ROLLOUT",
    "Scenario",
    "StageTraffic",
    "seed_policy",
    "stage_plan",
]

#: The ``spec.rollout`` section of the seed manifest (DESIGN.md), as the demo embeds it.
SEED_GUARDRAILS: dict[str, dict[str, float]] = SEED_ROLLOUT["guardrails"]

#: How often the judge (and every baseline) looks at the data.
CHECK_EVERY = timedelta(minutes=5)

#: A stage may run this many times its duration beyond it before the rollout stalls;
#: canary_stats' default, mirrored here so the generated traffic is identical.
MAX_HOLD = 1.0


def seed_policy() -> Policy:
    """The seed manifest's rollout section as a `Policy`."""
    return Policy.from_dict(SEED_ROLLOUT)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A canary to judge: how it differs from stable, and which guardrail that violates.

    Attributes
    ----------
    name : str
        Short identifier used in tables.
    description : str
        What the regression is, in words.
    regression : Regression or None
        The canary's difference from stable (``None``: identical canary).
    guardrail : str or None
        The seed guardrail that the regression violates, or touches for a
        boundary scenario (``None`` for the null).
    kind : {"null", "regression", "boundary"}
        ``"boundary"``: the canary sits exactly at a guardrail's limit, so it
        violates nothing and every rollback is a false one.
    """

    name: str
    description: str
    regression: Regression | None
    guardrail: str | None
    kind: Literal["null", "regression", "boundary"] = "regression"

    @property
    def is_null(self) -> bool:
        return self.kind == "null"

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"


#: Identical canary, one margin-straddling regression per guardrail (stable inside the
#: seed guardrail, the canary outside it), and a canary exactly at one limit.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("null", "identical canary", None, None, "null"),
    Scenario(
        "success",
        "success 0.985 -> 0.955 (drop 0.03; limit 0.97)",
        Regression(success_drop=0.03),
        "task_success_rate",
    ),
    Scenario(
        "latency",
        "all latencies x1.6 (p95 ~5.7 s -> ~9.1 s; limit 8 s)",
        Regression(latency_factor=1.6),
        "p95_latency_ms",
    ),
    Scenario(
        "tail",
        "10% of tasks x4 slower (p95 ~5.7 s -> ~9.1 s; limit 8 s)",
        Regression(tail_share=0.10, tail_factor=4.0),
        "p95_latency_ms",
    ),
    Scenario(
        "tokens",
        "tokens x1.3 (limit 1.15 x stable)",
        Regression(token_factor=1.3),
        "token_spend_delta",
    ),
    Scenario(
        "eval",
        "eval score 0.93 -> 0.87 (drop 0.06; limit 0.90)",
        Regression(eval_drop=0.06),
        "eval_score",
    ),
    # Not asked for by the issue: the identical canary sits far inside every limit, so
    # it cannot show what repeated fixed-horizon looks do to a canary near a limit.
    Scenario(
        "eval_at_limit",
        "eval score 0.93 -> 0.90, exactly at the limit (violates nothing)",
        Regression(eval_drop=0.03),
        "eval_score",
        "boundary",
    ),
)


@dataclass(frozen=True, slots=True)
class StageTraffic:
    """One stage's synthetic traffic, seen by every method.

    Attributes
    ----------
    stage : int
        Stage index in the policy.
    share : float
        Planned canary share (0-1).
    duration : float
        The stage's minimum duration in minutes.
    start : float
        Minutes since the rollout began when the stage began.
    phase : float
        Phase of the diurnal cycle at the stage's start (radians).
    checks : ndarray
        Minutes (since the stage began) of the checks up to and including the
        stage's duration; the baselines promote at the last one.
    tasks : Tasks
        The generated tasks, sorted by time.
    """

    stage: int
    share: float
    duration: float
    start: float
    phase: float
    checks: np.ndarray
    tasks: Tasks

    def drift(self, workload: Workload, minutes: np.ndarray) -> np.ndarray:
        """Shared diurnal drift at the given stage minutes (the generator's formula)."""
        period = workload.diurnal_period.total_seconds() / 60.0
        return workload.diurnal_amplitude * np.sin(2 * np.pi * minutes / period + self.phase)


def stage_plan(policy: Policy) -> list[tuple[int, float, float]]:
    """``(stage, share, duration in minutes)`` of every analysed stage."""
    plan = []
    for i in policy.analysed_stages:
        stage = policy.stages[i]
        duration = (stage.duration or timedelta(hours=1)).total_seconds() / 60.0
        plan.append((i, stage.traffic / 100.0, duration))
    return plan


def generate_stage(
    workload: Workload,
    regression: Regression | None,
    *,
    stage: int,
    share: float,
    duration: float,
    start: float,
    gen: np.random.Generator,
) -> StageTraffic:
    """Generate one stage's traffic exactly as `canary_stats.simulate.simulate_rollout` does.

    Same horizon, same diurnal phase and the same generator state, so a run with
    the same seed sees the very same tasks as canary_stats' simulation (common
    random numbers) for as long as both methods promote at the same checks.
    """
    step = CHECK_EVERY.total_seconds() / 60.0
    horizon = max(duration * (1 + MAX_HOLD), duration + 2 * step)
    all_checks = np.arange(step, horizon + 1e-9, step)
    phase = 2 * np.pi * start / (workload.diurnal_period.total_seconds() / 60.0)
    tasks = generate_tasks(
        workload,
        canary_share=share,
        minutes=float(all_checks[-1]),
        regression=regression,
        phase=phase,
        rng=gen,
    )
    order = np.argsort(tasks.minute, kind="stable")
    sorted_fields = {
        f.name: np.asarray(v)[order]
        for f in fields(Tasks)
        if (v := getattr(tasks, f.name)) is not None
    }
    tasks = replace(tasks, **sorted_fields)
    checks = all_checks[all_checks <= duration + 1e-9]
    return StageTraffic(stage, share, duration, start, phase, checks, tasks)
