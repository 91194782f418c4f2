"""The decision rule end to end on raw events and aggregates."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

import canary_stats as cs
from canary_stats.simulate import LATENCY_BUCKETS, simulate_rollout
from canary_stats.sources.synthetic import Regression

from .conftest import events, to_aggregates


def test_clear_regression_rolls_back_with_evidence(relative_policy: cs.Policy) -> None:
    df = events(regression=Regression(success_drop=0.06), seed=11)
    v = cs.analyze(df, relative_policy, stage=1)
    assert v.decision == "rollback"
    m = v.metrics["task_success_rate"]
    assert m.status == "fail" and m.high < -0.02 and m.low <= m.estimate <= m.high
    assert "task_success_rate" in v.reason and "anytime-valid interval" in v.reason


def test_healthy_guard_stage_promotes_after_its_duration(relative_policy: cs.Policy) -> None:
    df = events(seed=12)
    early = cs.analyze(df, relative_policy, stage=1, elapsed="1h")
    assert early.decision == "hold" and "minimum duration" in early.reason
    assert early.eta_minutes is not None and early.eta_minutes == pytest.approx(60, abs=1)
    done = cs.analyze(df, relative_policy, stage=1, elapsed="2h")
    assert done.decision == "promote"


def test_prove_stage_needs_every_guardrail_to_pass(relative_policy: cs.Policy) -> None:
    small = events(share=0.5, minutes=6, seed=13)  # a few hundred tasks: nothing proven
    v = cs.analyze(small, relative_policy, stage=2, elapsed="6h")
    assert v.decision == "hold" and "prove stage" in v.reason
    big = events(share=0.5, minutes=240, seed=13)
    v = cs.analyze(big, relative_policy, stage=2, elapsed="6h")
    assert v.decision == "promote", v.reason
    assert all(m.status == "pass" for m in v.metrics.values())


@pytest.mark.parametrize("cohort", ["canary", "stable"])
def test_one_sided_or_empty_cohorts_hold(relative_policy: cs.Policy, cohort: str) -> None:
    df = events(minutes=30, seed=14)
    v = cs.analyze(df[df["cohort"] != cohort], relative_policy, stage=1, elapsed="3h")
    assert v.decision == "hold" and f"no {cohort} tasks" in v.reason
    empty = cs.analyze(df.iloc[:0], relative_policy, stage=1, elapsed="3h")
    assert empty.decision == "hold"


def test_too_little_data_is_a_hold_never_a_promote(seed_policy: cs.Policy) -> None:
    df = events(share=0.01, minutes=3, seed=15)
    v = cs.analyze(df, seed_policy, stage=0, elapsed="45m")
    assert v.decision == "hold" and "too little data" in v.reason
    assert v.eta_minutes is not None and v.eta_minutes > 0


def test_sample_ratio_mismatch_holds(relative_policy: cs.Policy) -> None:
    # Planned 10 %, got 15 % of the users: proven on users (here one task each).
    df = events(share=0.15, minutes=60, seed=16)
    df["user_id"] = [f"u{i}" for i in range(len(df))]
    v = cs.analyze(df, relative_policy, stage=1, elapsed="3h")
    assert v.decision == "hold" and "sample ratio mismatch" in v.reason
    assert "% of users vs planned 10%" in v.reason
    assert v.to_dict()["sample_ratio"]["mismatch"] is True
    # Without user ids the same split is no proof (heavy users move the task share
    # by as much; tests/test_split.py measures what task counts can still prove).
    df = df.drop(columns="user_id")
    assert not cs.analyze(df, relative_policy, stage=1, elapsed="3h").srm.mismatch


def test_raw_events_and_aggregates_agree(
    relative_policy: cs.Policy, seed_policy: cs.Policy
) -> None:
    edges = LATENCY_BUCKETS
    for reg, seed in (
        (None, 21),
        (Regression(success_drop=0.05, tail_share=0.1, tail_factor=3), 22),
    ):
        df = events(minutes=60, regression=reg, seed=seed)
        agg = to_aggregates(df, edges)
        for policy in (relative_policy, seed_policy):
            a = cs.analyze(df, policy, stage=1, elapsed="2h")
            b = cs.analyze(agg, policy, stage=1, elapsed="2h")
            assert a.decision == b.decision
            for name, m in a.metrics.items():
                n = b.metrics[name]
                assert (m.n_canary, m.n_stable) == (n.n_canary, n.n_stable)
                if m.metric == "latency_ms":
                    # histogram bounds widen to bucket edges: within one bucket width (3 %)
                    assert n.estimate == pytest.approx(m.estimate, rel=0.04)
                    assert n.low <= m.low * 1.0001 and n.high >= m.high * 0.9999
                    assert n.resolution > 0 and m.resolution == 0
                else:
                    assert n.estimate == pytest.approx(m.estimate, rel=1e-9, abs=1e-12)


def test_simulation_fast_path_matches_judge(relative_policy: cs.Policy) -> None:
    out = simulate_rollout(
        relative_policy, None, Regression(token_factor=1.3), verdicts=True, rng=5
    )
    assert out.outcome == "rolled_back"
    assert all(c.verdict is not None and c.decision == c.verdict.decision for c in out.checks)


def test_verdict_json_has_the_contract_fields(relative_policy: cs.Policy) -> None:
    d = cs.analyze(events(minutes=20, seed=17), relative_policy, stage=1).to_dict()
    assert d["decision"] in ("promote", "hold", "rollback") and isinstance(d["reason"], str)
    for m in d["metrics"].values():
        assert set(m) >= {
            "status",
            "estimate",
            "interval",
            "margin",
            "n_stable",
            "n_canary",
            "reason",
        }
    import json

    json.dumps(d, allow_nan=False)  # NaN/inf become null


def test_elapsed_defaults_to_the_span_and_accepts_relations(relative_policy: cs.Policy) -> None:
    df = events(minutes=30, seed=18)
    v = cs.analyze(df, relative_policy, stage=1)
    assert v.elapsed_minutes == pytest.approx(30, abs=0.5)

    class Relation:  # what a DuckDB relation offers
        def df(self) -> pd.DataFrame:
            return df

    assert cs.analyze(Relation(), relative_policy, stage=1).decision == v.decision
    with pytest.raises(cs.InputError, match="elapsed"):
        cs.analyze(df, relative_policy, stage=1, elapsed="soon")


def test_shared_drift_is_not_a_regression(relative_policy: cs.Policy) -> None:
    from canary_stats.sources.synthetic import Workload

    heavy = Workload(diurnal_amplitude=0.6, diurnal_period=timedelta(hours=2))
    out = [simulate_rollout(relative_policy, heavy, None, rng=s).outcome for s in range(8)]
    assert "rolled_back" not in out
    assert np.mean([o == "promoted" for o in out]) >= 0.75


@pytest.mark.parametrize("name", ["seed", "relative"])
def test_analyze_summarizes_only_what_the_policy_reads(
    name: str, seed_policy: cs.Policy, relative_policy: cs.Policy
) -> None:
    policy = seed_policy if name == "seed" else relative_policy
    df = events(share=0.5, minutes=60, regression=Regression(eval_drop=0.05), seed=8)
    elapsed = timedelta(minutes=60)
    full = cs.judge(cs.summarize(df), policy, stage=2, elapsed=elapsed)
    assert cs.analyze(df, policy, stage=2, elapsed=elapsed).to_dict() == full.to_dict()
    lean = cs.summarize(df, metrics=policy.metrics_per_cohort())
    kept = lean.stable.latency.size > 0, lean.stable.eval_score.n > 0
    assert kept == ((False, False) if name == "seed" else (True, True))
    assert lean.canary.latency.size == cs.summarize(df).canary.latency.size


def test_a_summary_made_for_absolute_limits_holds_under_relative_ones(
    seed_policy: cs.Policy, relative_policy: cs.Policy
) -> None:
    # The stable cohort's values were left out: a relative policy sees missing data.
    lean = cs.summarize(events(share=0.5, minutes=60), metrics=seed_policy.metrics_per_cohort())
    verdict = cs.judge(lean, relative_policy, stage=2, elapsed=timedelta(hours=7))
    assert verdict.decision == "hold"
