"""Seeded Monte-Carlo validation of shadow mode (issue 6, item 4).

Each run generates mirrored traffic, pairs it with the code of `analyze_shadow`,
and evaluates every guardrail at every look (each ``LOOK`` pairs) in one
vectorised call, with the same tests, error levels and minimum-sample rule as
the verdict (checked against `analyze_shadow` itself in the first test). The
unpaired comparison evaluates the same tasks as two independent cohorts with the
code of `analyze` (``judge._evaluate``).

Stated tolerances:

* false rollbacks, with an identical shadow and with one exactly at every margin:
  at most ``ALPHA``, checked by an exact one-sided binomial test at level 0.01
  (200 runs each; the count may reach the binomial 99 % quantile);
* power: the median number of tasks until a rollback is at least a stated factor
  smaller paired than unpaired (measured 2.7x for token spend and 1.5x for
  success rate over the seeds below, 30 runs each; asserted 2.0x and 1.3x).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

import canary_stats as cs
from canary_stats._shadow_pairs import Pairs, pair_tasks
from canary_stats.judge import _evaluate, effective_status
from canary_stats.shadow import _paired_test, _PairedCounts, _PairedMoments, analyze_shadow
from canary_stats.sources import Regression, Workload, generate_shadow_events
from canary_stats.summary import CohortSummary, Moments, Summary

ALPHA = 0.05
MC_LEVEL = 0.01
LOOK = 50  # pairs between looks
#: One analysed stage, so each guardrail gets alpha / (number of guardrails).
STAGES = [{"traffic": 50, "duration": "1h"}, {"traffic": 100}]


def policy(guardrails: dict[str, Any]) -> cs.Policy:
    return cs.Policy.from_dict({"stages": STAGES, "guardrails": guardrails, "alpha": ALPHA})


def run(regression: Regression, minutes: float, seed: int) -> Pairs:
    df = generate_shadow_events(
        Workload(), regression=regression, duration=timedelta(minutes=minutes), rng=seed
    )
    return pair_tasks(df)


def at_looks(p: Pairs, step: int) -> tuple[np.ndarray, dict[str, Any], Summary]:
    """Cumulative paired statistics and the two-cohort `Summary` at every look."""
    k = np.arange(step, p.n + 1, step)
    s, h = p.stable, p.shadow

    def cum(x: np.ndarray) -> np.ndarray:
        return np.cumsum(x.astype(float))[k - 1]

    def moments(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> tuple[Any, ...]:
        a, b = np.where(keep, a, 0.0), np.where(keep, b, 0.0)
        n = cum(keep)
        with np.errstate(invalid="ignore", divide="ignore"):
            ma, mb = cum(a) / n, cum(b) / n
            va = np.maximum(cum(a * a) / n - ma * ma, 0.0)
            vb = np.maximum(cum(b * b) / n - mb * mb, 0.0)
            paired = _PairedMoments(n, ma, va, mb, vb, cum(a * b) / n - ma * mb)
        return paired, Moments(n, ma, va), Moments(n, mb, vb)

    everyone = np.ones(p.n, dtype=bool)
    tok, tok_s, tok_h = moments(s.tokens, h.tokens, everyone)
    scored = ~np.isnan(s.eval_score) & ~np.isnan(h.eval_score)
    ev, ev_s, ev_h = moments(s.eval_score, h.eval_score, scored)
    n = k.astype(float)
    paired = {
        "task_success_rate": _PairedCounts(
            n, cum(s.success), cum(h.success), cum(s.success & h.success)
        ),
        "tokens_per_task": tok,
        "eval_score": ev,
    }
    summary = Summary(
        CohortSummary(n, cum(s.success), np.empty(0), tok_s, ev_s),
        CohortSummary(n, cum(h.success), np.empty(0), tok_h, ev_h),
        source="aggregates",
    )
    return n, paired, summary


def first_fail(pol: cs.Policy, p: Pairs, step: int) -> dict[str, tuple[float, float]]:
    """Per guardrail: pairs until the first ``fail``, paired and unpaired (inf: none)."""
    n, paired, summary = at_looks(p, step)

    def first(status: np.ndarray) -> float:
        fail = np.asarray(status) == "fail"
        return float(n[np.argmax(fail)]) if fail.any() else np.inf

    out = {}
    for g in pol.guardrails:
        by_pairs, _ = effective_status(g, _paired_test(g, pol, paired[g.metric]), pol)
        by_cohorts, _ = effective_status(g, _evaluate(g, summary, pol, 0.5), pol)
        out[g.name] = (first(by_pairs), first(by_cohorts))
    return out


def test_vectorised_looks_match_analyze_shadow() -> None:
    pol = policy({"task_success_rate": {"max_drop": 0.01}, "tokens_per_task": {"max_ratio": 1.1},
                  "eval_score": {"max_drop": 0.0}})  # fmt: skip
    df = generate_shadow_events(
        Workload(), regression=Regression(token_factor=1.15), duration=timedelta(minutes=5), rng=3
    )
    p = pair_tasks(df)
    _, paired, _ = at_looks(p, 300)
    ids = df.loc[df["cohort"] == "stable"].sort_values("ts", kind="stable")["request_id"]
    for look in (0, 2):
        prefix = df[df["request_id"].isin(ids.iloc[: 300 * (look + 1)])]
        v = analyze_shadow(prefix, pol)
        for g in pol.guardrails:
            r = _paired_test(g, pol, paired[g.metric])
            m = v.metrics[g.name]
            assert m.status == r.status[look]
            assert (m.low, m.high) == pytest.approx(
                (r.confidence_interval.low[look], r.confidence_interval.high[look]), rel=1e-9
            )


NULLS = {
    # Identical shadow, zero margins: every guardrail exactly on its null boundary.
    "identical": (
        Regression(),
        {
            "task_success_rate": {"max_drop": 0.0},
            "tokens_per_task": {"max_ratio": 1.0},
            "eval_score": {"max_drop": 0.0},
        },
    ),
    # A shadow worse by exactly each margin (the variance floors matter here).
    "at_margin": (
        Regression(success_drop=0.02, token_factor=1.15, eval_drop=0.03),
        {
            "task_success_rate": {"max_drop": 0.02},
            "tokens_per_task": {"max_ratio": 1.15},
            "eval_score": {"max_drop": 0.03},
        },
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(NULLS))
def test_false_rollback_rate_is_at_most_alpha(case: str) -> None:
    regression, guardrails = NULLS[case]
    pol = policy(guardrails)
    runs = 200
    rollbacks = 0
    for seed in range(runs):
        fails = first_fail(pol, run(regression, 30, 10_000 + seed), LOOK)  # ~6,000 pairs
        rollbacks += any(np.isfinite(paired) for paired, _ in fails.values())
    allowed = int(sps.binom.ppf(1 - MC_LEVEL, runs, ALPHA))
    assert rollbacks <= allowed, f"{case}: {rollbacks}/{runs} false rollbacks (allowed {allowed})"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("guardrails", "regression", "factor"),
    [
        ({"tokens_per_task": {"max_ratio": 1.15}}, Regression(token_factor=1.3), 2.0),
        ({"task_success_rate": {"max_drop": 0.01}}, Regression(success_drop=0.04), 1.3),
    ],
    ids=["token_spend", "success_rate"],
)
def test_pairing_rolls_back_with_fewer_tasks(
    guardrails: dict[str, Any], regression: Regression, factor: float
) -> None:
    pol = policy(guardrails)
    paired, unpaired = [], []
    for seed in range(30):
        ((a, b),) = first_fail(pol, run(regression, 60, 20_000 + seed), 25).values()
        paired.append(a)
        unpaired.append(b)
    assert np.all(np.isfinite(paired)) and np.all(np.isfinite(unpaired))
    ratio = np.median(unpaired) / np.median(paired)
    assert ratio >= factor, (
        f"median tasks to rollback: paired {np.median(paired):.0f}, "
        f"unpaired {np.median(unpaired):.0f} (ratio {ratio:.2f} < {factor})"
    )
