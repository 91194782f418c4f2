"""Evidence kept across stages: products of per-stage e-values, and `analyze` given a history."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import canary_stats as cs
from canary_stats import stats
from canary_stats.cli import app
from canary_stats.sources.synthetic import Regression

from .conftest import SEED_MANIFEST, events

ALPHA = 0.0125  # alpha / 4 guardrails


def _mean_stage(rng: np.random.Generator, n_s: int, n_c: int, delta: float, looks: int = 12):
    """Cumulative moments of one stage at ``looks`` evenly spaced checks."""
    xs = rng.normal(0.0, 1.0, n_s)
    xc = rng.normal(delta, 1.0, n_c)
    at_s = np.linspace(n_s / looks, n_s, looks).astype(int)
    at_c = np.linspace(n_c / looks, n_c, looks).astype(int)

    def moments(x: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c1, c2 = np.cumsum(x)[at - 1], np.cumsum(x * x)[at - 1]
        mean = c1 / at
        return at.astype(float), mean, c2 / at - mean * mean

    return (*moments(xs, at_s), *moments(xc, at_c))


def _contrast(stage: tuple[np.ndarray, ...], k: int | None = None) -> stats.SequentialTestResult:
    pick = (lambda a: a) if k is None else (lambda a: float(a[k]))
    return stats.mean_contrast(
        *(pick(a) for a in stage),
        margin=0.1, alternative="greater", alpha=ALPHA, alpha_pass=0.05, n_tune=4000,
    )  # fmt: skip


def test_one_stage_is_returned_unchanged() -> None:
    r = stats.mean_contrast(100, 1.0, 1.0, 50, 1.1, 1.0, margin=0.0, alternative="greater")
    assert stats.combine_stages([r]) is r


def test_single_stage_inversion_equals_the_tests_own_interval() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = _contrast(_mean_stage(rng, 900, 100, 0.1 * rng.normal()), k=11)
        twice = stats.combine_stages(
            [
                stats.mean_contrast(
                    0,
                    0.0,
                    0.0,
                    0,
                    0.0,
                    0.0,
                    margin=0.1,
                    alternative="greater",
                    alpha=ALPHA,
                    alpha_pass=0.05,
                    n_tune=4000,
                ),
                r,
            ]
        )  # fmt: skip  (an empty first stage carries an e-value of 1)
        assert twice.status == r.status
        assert twice.confidence_interval.low == pytest.approx(r.confidence_interval.low, abs=1e-6)
        assert twice.confidence_interval.high == pytest.approx(r.confidence_interval.high, abs=1e-6)


def test_family_wise_error_at_the_margin_over_three_stages_is_at_most_alpha() -> None:
    # A canary exactly at the margin, three stages of 12 looks each (the first at 30
    # canary tasks, the judge's minimum for an asymptotic test); a stage ends at its
    # last look and its evidence carries on. 2000 seeded rollouts; the bound allows
    # 3 binomial standard errors above alpha (measured: 0.5 %).
    rng = np.random.default_rng(1)
    runs, false = 2000, 0
    for _ in range(runs):
        carried: list[stats.SequentialTestResult] = []
        failed = False
        for n_s, n_c in ((3000, 360), (2700, 300), (1500, 1500)):
            stage = _mean_stage(rng, n_s, n_c, 0.1)
            r = stats.combine_stages([*carried, _contrast(stage)], confidence_interval=False)
            if np.any(r.status == "fail"):
                failed = True
                break
            carried.append(_contrast(stage, k=11))
        false += failed
    assert false / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


def test_evidence_of_earlier_stages_proves_what_no_stage_alone_can() -> None:
    # Each stage alone stops short of 1/alpha; together they cross it.
    r1 = stats.mean_contrast(
        5000, 0.0, 1.0, 500, 0.25, 1.0, margin=0.1, alternative="greater", alpha=ALPHA
    )
    r2 = stats.mean_contrast(
        5000, 0.0, 1.0, 500, 0.25, 1.0, margin=0.1, alternative="greater", alpha=ALPHA
    )
    assert r1.status == r2.status == "inconclusive"
    both = stats.combine_stages([r1, r2])
    assert both.status == "fail"
    assert both.confidence_interval.low > 0.1
    assert both.n_canary == 1000 and both.n_stable == 10_000
    assert both.estimate == pytest.approx(0.25)
    assert "evidence kept over 2 stages" in both.method


def test_rollout_wide_interval_covers_the_truth() -> None:
    rng = np.random.default_rng(2)
    runs, missed = 400, 0
    for _ in range(runs):
        first = _contrast(_mean_stage(rng, 2000, 200, 0.05), k=11)
        now = _contrast(_mean_stage(rng, 1000, 1000, 0.05))
        r = stats.combine_stages([first, now])
        low, high = r.confidence_interval
        missed += bool(np.any((low > 0.05) | (high < 0.05)))
    assert missed / runs <= ALPHA + 0.05 + 3 * math.sqrt(0.06 * 0.94 / runs)


def test_stages_of_different_guardrails_are_refused() -> None:
    a = stats.mean_contrast(10, 0.0, 1.0, 10, 0.0, 1.0, margin=0.1, alternative="greater")
    b = stats.mean_contrast(10, 0.0, 1.0, 10, 0.0, 1.0, margin=0.2, alternative="greater")
    with pytest.raises(ValueError, match=r"results\[0\]\.margin"):
        stats.combine_stages([a, b])
    with pytest.raises(ValueError, match="at least one"):
        stats.combine_stages([])


def test_quantile_ratio_at_the_margin_with_ties_rarely_fails() -> None:
    # Canary p95 exactly 1.2 x stable's, latencies in whole seconds (ties at the p95),
    # 1:9 split, three stages; the direct test's family-wise false rollback <= alpha.
    rng = np.random.default_rng(3)
    runs, false = 300, 0
    shift = math.log(1.2)
    for _ in range(runs):
        carried: list[stats.SequentialTestResult] = []
        for n_s, n_c in ((2000, 200), (1800, 200), (1000, 1000)):
            s = np.round(rng.lognormal(8.0, 0.6, n_s), -3)
            c = np.round(rng.lognormal(8.0 + shift, 0.6, n_c), -3)
            r = stats.quantile_contrast(s, c, margin=1.2, alpha=ALPHA, alpha_pass=0.05, stages=3)
            if stats.combine_stages([*carried, r]).status == "fail":
                false += 1
                break
            carried.append(r)
    assert false / runs <= ALPHA + 3 * math.sqrt(ALPHA / runs)


def test_quantile_ratio_finds_a_tail_regression_and_reports_counts() -> None:
    rng = np.random.default_rng(4)
    s = rng.lognormal(8.0, 0.5, 20_000)
    c = rng.lognormal(8.0, 0.5, 2_000)
    c[:200] *= 3.0  # 10 % of tasks three times slower: p95 well above 1.2 x
    r = stats.quantile_contrast(s, c, margin=1.2, alpha=ALPHA, stages=3)
    assert r.status == "fail" and r.confidence_interval.low > 1.2
    assert (r.n_stable, r.n_canary) == (20_000, 2_000)
    with pytest.raises(ValueError, match="design_effect"):
        stats.quantile_contrast(s, c, margin=1.2, design_effect=(0.5, 1.0))
    with pytest.raises(ValueError, match="stages"):
        stats.quantile_contrast(s, c, margin=1.2, stages=0)


# -- analyze with a history ---------------------------------------------------------------


def _rollout_frame(regression: Regression | None = None) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """Two stages of events, 1 % then 10 %, the second starting where the first ends."""
    first = events(share=0.01, minutes=30, regression=regression, seed=21)
    second = events(share=0.10, minutes=60, regression=regression, seed=22)
    t0 = pd.to_datetime(first["ts"], utc=True).min().floor("s")
    t1 = pd.to_datetime(first["ts"], utc=True).max().ceil("s") + pd.Timedelta(seconds=1)
    offset = t1 - pd.to_datetime(second["ts"], utc=True).min()
    second = second.assign(ts=pd.to_datetime(second["ts"], utc=True) + offset)
    both = pd.concat([first, second], ignore_index=True)
    if "request_id" in both:
        both["request_id"] = [f"r{i}" for i in range(len(both))]
    return both, [t0, t1]


def test_stage_starts_and_earlier_give_the_same_verdict(relative_policy: cs.Policy) -> None:
    frame, (t0, t1) = _rollout_frame(Regression(token_factor=1.25))
    ts = pd.to_datetime(frame["ts"], utc=True)
    by_starts = cs.analyze(frame, relative_policy, stage=1, stage_starts=[t0, t1], elapsed="1h")
    by_parts = cs.analyze(
        frame[ts >= t1], relative_policy, stage=1, earlier=[frame[ts < t1]], elapsed="1h"
    )
    alone = cs.analyze(frame[ts >= t1], relative_policy, stage=1, elapsed="1h")
    assert by_starts.to_dict()["metrics"] == by_parts.to_dict()["metrics"]
    tok, tok_alone = by_starts.metrics["tokens_per_task"], alone.metrics["tokens_per_task"]
    assert tok.n_canary > tok_alone.n_canary  # the 1 % stage's tasks count too
    assert "over 2 stages" in tok.method
    assert by_starts.elapsed_minutes == pytest.approx(60)


def test_default_elapsed_with_stage_starts_runs_from_the_current_start(
    relative_policy: cs.Policy,
) -> None:
    frame, (t0, t1) = _rollout_frame()
    v = cs.analyze(frame, relative_policy, stage=1, stage_starts=[t0.isoformat(), t1])
    assert v.elapsed_minutes == pytest.approx(60, abs=1)


@pytest.mark.parametrize(
    ("starts", "field", "what"),
    [
        (lambda t0, t1: [t0], "stage_starts", "one start per stage"),
        (lambda t0, t1: [t1, t0], r"stage_starts\[1\]", "must start after"),
        (lambda t0, t1: [t0, "not a time"], r"stage_starts\[1\]", "timestamp"),
        (lambda t0, t1: [t0, t1 + pd.Timedelta(days=1)], r"stage_starts\[1\]", "after the newest"),
    ],
)
def test_bad_stage_starts_are_refused(relative_policy: cs.Policy, starts, field, what) -> None:
    frame, (t0, t1) = _rollout_frame()
    with pytest.raises(cs.EventsError, match=field) as err:
        cs.analyze(frame, relative_policy, stage=1, stage_starts=starts(t0, t1))
    assert what in str(err.value)


def test_earlier_must_match_the_stage_and_not_mix_with_starts(relative_policy: cs.Policy) -> None:
    frame, (t0, t1) = _rollout_frame()
    with pytest.raises(cs.EventsError, match="earlier"):
        cs.analyze(frame, relative_policy, stage=2, earlier=[frame])
    with pytest.raises(cs.EventsError, match="not both"):
        cs.analyze(frame, relative_policy, stage=1, earlier=[frame], stage_starts=[t0, t1])


def test_a_history_from_another_release_pair_is_refused(
    tmp_path, relative_policy: cs.Policy
) -> None:
    frame, (t0, t1) = _rollout_frame()
    with cs.Store(tmp_path / "s.duckdb") as store:
        store.ingest_events(frame.assign(release=np.where(frame["cohort"] == "canary", "v2", "v1")))
        now = store.select(stable="v1", canary="v2", start=t1.to_pydatetime())
        other = store.select(stable="v1", canary="v3", end=t1.to_pydatetime())
        with pytest.raises(cs.EventsError, match=r"earlier\[0\].*another release pair"):
            cs.analyze(now, relative_policy, stage=1, earlier=[other])
        ok = cs.analyze(
            store.select(stable="v1", canary="v2"), relative_policy, stage=1,
            stage_starts=[t0.to_pydatetime(), t1.to_pydatetime()], elapsed=timedelta(hours=1),
        )  # fmt: skip
        assert "over 2 stages" in ok.metrics["tokens_per_task"].method


def test_cli_analyze_keeps_evidence_with_stage_starts(tmp_path) -> None:
    frame, (t0, t1) = _rollout_frame()
    path = tmp_path / "rollout.parquet"
    frame.to_parquet(path)
    args = ["analyze", str(path), "--manifest", str(SEED_MANIFEST), "--stage", "1"]
    starts = f"{t0.isoformat()},{t1.isoformat()}"
    res = CliRunner().invoke(app, [*args, "--stage-starts", starts])
    assert res.exit_code in (0, 10, 20), res.output
    methods = [m["method"] for m in json.loads(res.output)["metrics"].values()]
    assert all("over 2 stages" in m for m in methods)
    bad = CliRunner().invoke(app, [*args, "--stage-starts", f"{t1.isoformat()},{t0.isoformat()}"])
    assert bad.exit_code == 2 and "stage_starts[1]" in bad.output
    empty = CliRunner().invoke(app, [*args, "--stage-starts", f"{t0.isoformat()},"])
    assert empty.exit_code == 2 and "--stage-starts" in empty.output
