"""Guard stages promote with sparse guardrails carried forward; prove stages judge them all."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

import canary_stats as cs
from canary_stats.sources.synthetic import Workload, generate_events

SPARSE = Workload(tasks_per_minute=200, eval_rate=0.2)


def _events(share: float, minutes: float, seed: int, workload: Workload = SPARSE):
    return generate_events(
        workload, canary_share=share, duration=timedelta(minutes=minutes),
        rng=np.random.default_rng(seed),
    )  # fmt: skip


def test_guard_stage_promotes_and_names_the_carried_guardrail(seed_policy: cs.Policy) -> None:
    # 1 % for 30 min at 200 tasks/min with 20 % scored: about 60 canary tasks, 12 scores.
    v = cs.analyze(_events(0.01, 30, 1), seed_policy, stage=0, elapsed="30m")
    ev = v.metrics["eval_score"]
    assert not ev.enough_data and ev.n_canary < seed_policy.min_samples
    assert v.decision == "promote", v.reason
    assert f"eval_score: {ev.n_canary:.0f} of 30 canary scores, judged from the next stage on" in (
        v.reason
    )
    # Before the stage's minimum duration it is a hold, not a promote.
    early = cs.analyze(_events(0.01, 30, 1), seed_policy, stage=0, elapsed="20m")
    assert early.decision == "hold" and "minimum duration" in early.reason


def test_guard_stage_without_the_cohorts_minimum_holds(seed_policy: cs.Policy) -> None:
    low = Workload(tasks_per_minute=15, eval_rate=0.2)
    v = cs.analyze(_events(0.01, 30, 2, low), seed_policy, stage=0, elapsed="30m")
    assert v.decision == "hold"
    assert "canary and" in v.reason and "tasks in this stage; each cohort needs 30" in v.reason


def test_carried_scores_count_in_the_next_stage(seed_policy: cs.Policy) -> None:
    first = _events(0.01, 30, 3)
    second = _events(0.10, 5, 4)  # 5 minutes at 10 %: about 20 scores of its own
    alone = cs.analyze(second, seed_policy, stage=1, elapsed="5m").metrics["eval_score"]
    kept = cs.analyze(second, seed_policy, stage=1, elapsed="5m", earlier=[first])
    assert kept.metrics["eval_score"].n_canary > alone.n_canary


def test_prove_stage_never_promotes_an_unjudged_guardrail(seed_policy: cs.Policy) -> None:
    # 2 % scored at 15 tasks/min: the prove stage ends with too few scores and holds,
    # naming eval_score and its count, however long it has run.
    thin = Workload(tasks_per_minute=15, eval_rate=0.02)
    v = cs.analyze(_events(0.5, 60, 5, thin), seed_policy, stage=2, elapsed="6h")
    assert v.decision == "hold", v.reason
    assert "too little data for eval_score:" in v.reason and "of 30 canary scores" in v.reason
    assert v.metrics["eval_score"].status != "pass"
