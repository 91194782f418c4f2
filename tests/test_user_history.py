"""Users' history before the rollout as a covariate (CUPED): estimator, paths, analyze."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import canary_stats as cs
from canary_stats.errors import EventsError, PolicyError
from canary_stats.simulate import stage_summaries
from canary_stats.sources.realistic import REALISTIC_CLASSES, UserWorkload
from canary_stats.sources.synthetic import Regression, events_frame
from canary_stats.store import Store
from canary_stats.summary import UserHistory, history_adjustment, summarize_events

START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
#: A small population, so that a few heavy users dominate as in production.
SMALL = replace(REALISTIC_CLASSES["per-user"], users=2000, tasks_per_minute=60.0)


def _traffic(
    w: UserWorkload, *, share: float, before: float, minutes: float, seed: int,
    regression: Regression | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """``before`` minutes of stable-only history, then ``minutes`` of a canary at ``share``."""
    past = w.generate(canary_share=0.0, minutes=before, rng=seed)
    now = w.generate(canary_share=share, minutes=minutes, regression=regression, rng=seed + 1)
    return (
        events_frame(past, START - timedelta(minutes=before)),
        events_frame(now, START),
    )


# -- the estimator ----------------------------------------------------------------------


def _per_user(df: pd.DataFrame, cohort: str, column: str) -> tuple[np.ndarray, ...]:
    rows = df[(df["cohort"] == cohort) & df[column].notna()]
    g = rows.groupby("user_id")[column]
    return g.sum().index.to_numpy(), g.sum().to_numpy(), g.count().to_numpy(dtype=float)


def test_the_slope_is_least_squares_of_residuals_on_covariate_deviations() -> None:
    past, now = _traffic(SMALL, share=0.5, before=1440, minutes=120, seed=3)
    hist = UserHistory.from_events(past)
    parts, e_all, z_all = [], [], []
    for cohort in ("stable", "canary"):
        ids, y, m = _per_user(now, cohort, "tokens")
        x, _ = hist.covariate(ids, "tokens_per_task")
        parts.append((y, m, x))
        r, big_x = y.sum() / m.sum(), (m * x).sum() / m.sum()
        e_all.append(y - r * m)
        z_all.append(m * (x - big_x))
    var = tuple(now.loc[now["cohort"] == c, "tokens"].var(ddof=0) for c in ("stable", "canary"))
    adj = history_adjustment(parts[0], parts[1], task_var=var)
    fit = sm.OLS(np.concatenate(e_all), np.concatenate(z_all)).fit()
    assert adj.applied
    assert adj.theta == pytest.approx(float(fit.params[0]), rel=1e-9)


def test_a_covariate_unrelated_to_the_outcome_changes_almost_nothing() -> None:
    rng = np.random.default_rng(4)
    past, now = _traffic(SMALL, share=0.5, before=1440, minutes=120, seed=5)
    plain = summarize_events(now)
    # The same history handed to the wrong users: no information about anyone.
    shuffled = past.assign(user_id=rng.permutation(past["user_id"].to_numpy()))
    noise = summarize_events(now, history=UserHistory.from_events(shuffled))
    for name in ("stable", "canary"):
        a, b = getattr(plain, name), getattr(noise, name)
        assert abs(b.adjustment.tokens) < 0.02 * a.tokens.mean
        assert b.design.tokens == pytest.approx(a.design.tokens, rel=0.25)


def test_adjusted_contrast_is_unbiased_and_its_variance_is_what_it_claims() -> None:
    """Over re-randomisations of one population: no bias, the stated variance, far less of it.

    Seeded: 400 routings of the same 1,747 active users, half to each cohort, the
    tasks fixed. Tolerances: the mean difference within 3 standard errors of 0;
    the variance the adjusted design effects claim within 30 % of the one observed
    (which itself moves by about 15 % between seeds: a few heavy users decide it);
    at most a third of the unadjusted variance.
    """
    past, now = _traffic(SMALL, share=0.5, before=1440, minutes=180, seed=7)
    hist = UserHistory.from_events(past)
    g = now.groupby("user_id")["tokens"]
    ids, y, m = g.sum().index.to_numpy(), g.sum().to_numpy(), g.count().to_numpy(dtype=float)
    x, _ = hist.covariate(ids, "tokens_per_task")
    task_var = float(now["tokens"].var(ddof=0))
    rng = np.random.default_rng(8)
    raw, adjusted, claimed = [], [], []
    for _ in range(400):
        canary = np.zeros(ids.size, dtype=bool)
        canary[rng.choice(ids.size, size=ids.size // 2, replace=False)] = True
        st, ca = ~canary, canary
        adj = history_adjustment(
            (y[st], m[st], x[st]), (y[ca], m[ca], x[ca]), task_var=(task_var, task_var)
        )
        assert adj.applied
        r_s, r_c = y[st].sum() / m[st].sum(), y[ca].sum() / m[ca].sum()
        raw.append(r_c - r_s)
        adjusted.append(r_c + adj.shift_canary - r_s - adj.shift_stable)
        claimed.append(
            task_var * (adj.deff_canary / (m[ca].sum() - 1) + adj.deff_stable / (m[st].sum() - 1))
        )
    adjusted_a, raw_a = np.asarray(adjusted), np.asarray(raw)
    assert abs(adjusted_a.mean()) < 3 * adjusted_a.std() / np.sqrt(adjusted_a.size)
    assert adjusted_a.var() == pytest.approx(np.mean(claimed), rel=0.3)
    assert adjusted_a.var() < raw_a.var() / 3


def test_too_few_users_with_history_adjust_nothing() -> None:
    past, now = _traffic(SMALL, share=0.5, before=1440, minutes=60, seed=9)
    few = past[past["user_id"].isin(past["user_id"].unique()[:10])]
    s = summarize_events(now, history=UserHistory.from_events(few))
    plain = summarize_events(now)
    assert s.canary.adjustment.tokens == 0.0
    assert s.canary.design.tokens == plain.canary.design.tokens


def test_canary_events_before_the_rollout_are_not_history() -> None:
    past, _ = _traffic(SMALL, share=0.5, before=600, minutes=10, seed=10)
    flipped = past.assign(cohort="canary")
    assert UserHistory.from_events(flipped).users == 0
    assert UserHistory.from_events(past).users == past["user_id"].nunique()


# -- the paths agree ----------------------------------------------------------------------


def test_the_store_adjusts_as_the_events_path_does(tmp_path: Path) -> None:
    past, now = _traffic(SMALL, share=0.1, before=720, minutes=60, seed=11)
    with Store(tmp_path / "c.duckdb") as store:
        store.ingest_events(pd.concat([past, now], ignore_index=True))
        before = store.select(start=START - timedelta(minutes=720), end=START)
        from_store = store.select(start=START).summary(history=before.history())
    from_events = summarize_events(now, history=UserHistory.from_events(past))
    for name in ("stable", "canary"):
        a, b = getattr(from_events, name), getattr(from_store, name)
        assert a.adjustment.tokens != 0.0
        for field in ("tokens", "eval_score"):
            assert getattr(b.adjustment, field) == pytest.approx(
                getattr(a.adjustment, field), rel=1e-9, abs=1e-12
            )
            assert getattr(b.design, field) == pytest.approx(getattr(a.design, field), rel=1e-9)


def test_the_simulator_adjusts_as_the_judge_does() -> None:
    w = SMALL
    past = w.generate(canary_share=0.0, minutes=720, rng=12)
    now = w.generate(canary_share=0.1, minutes=60, rng=13)
    hist_sim = UserHistory.from_values(past.user, past.tokens, past.eval_score)
    sim = stage_summaries(now, np.array([30.0, 60.0 + 1e-9]), history=hist_sim)
    ev = summarize_events(
        events_frame(now, START),
        history=UserHistory.from_events(events_frame(past, START - timedelta(minutes=720))),
    )
    for name in ("stable", "canary"):
        a, b = getattr(ev, name), getattr(sim, name)
        assert float(b.adjustment.tokens[-1]) == pytest.approx(a.adjustment.tokens, rel=1e-6)
        assert float(b.design.eval_score[-1]) == pytest.approx(a.design.eval_score, rel=1e-6)


# -- analyze and the policy --------------------------------------------------------------------


def _policy(**changes: object) -> cs.Policy:
    return cs.Policy.from_dict(
        {
            "guardrails": {"tokens_per_task": {"max_ratio": 1.15}},
            "stages": [{"traffic": 10, "duration": "1h"}, {"traffic": 100}],
            **changes,
        }
    )


def test_analyze_reads_the_history_before_the_first_stage() -> None:
    past, now = _traffic(SMALL, share=0.1, before=1440, minutes=60, seed=14)
    both = pd.concat([past, now], ignore_index=True)
    adjusted = cs.analyze(both, _policy(), stage=0, stage_starts=[START])
    explicit = cs.analyze(now, _policy(), stage=0, history=past)
    off = cs.analyze(both, _policy(user_history="0m"), stage=0, stage_starts=[START])
    plain = cs.analyze(now, _policy(), stage=0)
    got = adjusted.metrics["tokens_per_task"]
    assert got.estimate == pytest.approx(explicit.metrics["tokens_per_task"].estimate, rel=1e-12)
    assert got.estimate != pytest.approx(plain.metrics["tokens_per_task"].estimate, rel=1e-9)
    assert off.metrics["tokens_per_task"].estimate == pytest.approx(
        plain.metrics["tokens_per_task"].estimate, rel=1e-12
    )
    assert got.method.endswith("adjusted by users' history (CUPED)")
    assert "CUPED" not in plain.metrics["tokens_per_task"].method
    width = {k: v.metrics["tokens_per_task"] for k, v in (("adj", adjusted), ("plain", plain))}
    assert width["adj"].high - width["adj"].low < width["plain"].high - width["plain"].low


def test_history_must_be_events_with_users() -> None:
    _, now = _traffic(SMALL, share=0.1, before=10, minutes=30, seed=15)
    with pytest.raises(EventsError) as info:
        cs.analyze(now, _policy(), stage=0, history=cs.summarize(now))
    assert info.value.field == "history"


@pytest.mark.parametrize("bad", ["soon", "-1h", 3])
def test_a_bad_user_history_names_the_field(bad: object) -> None:
    with pytest.raises(PolicyError) as info:
        _policy(user_history=bad)
    assert info.value.field == "rollout.user_history"


def test_the_seed_manifest_keeps_a_day_of_history() -> None:
    policy = cs.Policy.from_manifest(Path("examples/research-agent.manifest.yaml"))
    assert policy.user_history == timedelta(hours=24)
