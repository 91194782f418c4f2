"""`build_report`'s numbers, checked against the store with independent SQL and pandas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from canary_stats.errors import InputError, StoreError
from canary_stats.report import IsoWeek, WeeklyReport, build_report, parse_week
from canary_stats.store import Store

from .conftest import RESAMPLES, WEEK, DemoReport, at, rid

# -- the demo store: a promoted refactor and a rolled-back model upgrade --------------------


@pytest.mark.slow
def test_verdict_counts_by_decision_match_the_audit_log(demo_report: DemoReport) -> None:
    week = parse_week(demo_report.week)
    with Store(demo_report.db, read_only=True) as store:
        rows = store.con.execute(
            "SELECT decision, count(*) FROM verdicts WHERE decided_at >= ? AND decided_at < ? "
            "GROUP BY decision",
            [week.start, week.end],
        ).fetchall()
    expected = {"promote": 0, "hold": 0, "rollback": 0} | {d: n for d, n in rows}
    health = demo_report.report.health
    assert health.verdicts == expected
    assert health.total_verdicts == sum(expected.values()) > 0
    assert health.hold_share == pytest.approx(expected["hold"] / sum(expected.values()))


@pytest.mark.slow
def test_the_week_lists_the_rollouts_that_ran_in_it(demo_report: DemoReport) -> None:
    week = parse_week(demo_report.week)
    with Store(demo_report.db, read_only=True) as store:
        rows = store.con.execute(
            "SELECT DISTINCT rollout_id FROM rollout_transitions "
            "WHERE recorded_at >= ? AND recorded_at < ?",
            [week.start, week.end],
        ).fetchall()
    expected = {r for (r,) in rows}
    assert expected
    assert {r.rollout_id for r in demo_report.report.rollouts} == expected
    outcomes = {r.version: r.outcome for r in demo_report.report.rollouts}
    assert outcomes.get("2026.11.24-model") == "rolled_back"


@pytest.mark.slow
def test_the_rollback_carries_the_postmortem_evidence(demo_report: DemoReport) -> None:
    with Store(demo_report.db, read_only=True) as store:
        (pm,) = store.postmortems()
        limit = store.con.execute(
            "SELECT json_extract(verdict, '$.metrics.' || guardrail || '.limit')::DOUBLE "
            "FROM postmortems"
        ).fetchall()[0][0]
        states = [t.state for t in store.transitions(pm.rollout_id)]
    (rollback,) = demo_report.report.rollbacks
    assert rollback.source == "postmortem" and rollback.rollout_id == pm.rollout_id
    assert (rollback.guardrail, rollback.estimate) == (pm.guardrail, pm.estimate)
    assert (rollback.low, rollback.high) == (pm.interval_low, pm.interval_high)
    assert rollback.limit == limit == 0.97 and rollback.rule == "min"
    assert rollback.reason == pm.reason
    assert [t.state for t in rollback.timeline] == states


@pytest.mark.slow
def test_time_to_decision_is_the_transitions_difference(demo_report: DemoReport) -> None:
    with Store(demo_report.db, read_only=True) as store:
        decided = dict(
            store.con.execute(
                "SELECT rollout_id, (epoch(min(recorded_at) FILTER (WHERE state IN "
                "('promoted', 'rolling_back'))) - epoch(min(recorded_at) FILTER "
                "(WHERE state = 'started'))) / 60 FROM rollout_transitions GROUP BY rollout_id"
            ).fetchall()
        )
        stages = store.con.execute(
            "SELECT rollout_id, stage, (epoch(next_at) - epoch(recorded_at)) / 60 FROM ("
            "  SELECT *, lead(recorded_at) OVER (PARTITION BY rollout_id ORDER BY seq) AS next_at"
            "  FROM rollout_transitions"
            "  WHERE state IN ('stage_started', 'promoted', 'rolling_back', 'aborted')"
            ") WHERE state = 'stage_started' ORDER BY rollout_id, stage"
        ).fetchall()
    for r in demo_report.report.rollouts:
        assert r.decision_minutes == pytest.approx(decided[r.rollout_id])
    mine = {
        (r.rollout_id, s.stage): s.minutes for r in demo_report.report.rollouts for s in r.stages
    }
    assert mine == {(r, stage): pytest.approx(m) for r, stage, m in stages if (r, stage) in mine}
    assert len(mine) == sum(len(r.stages) for r in demo_report.report.rollouts) > 0


@pytest.mark.slow
def test_effect_sizes_match_pandas_on_the_raw_events(demo_report: DemoReport) -> None:
    report = demo_report.report
    assert report.effects and report.n_resamples == RESAMPLES
    with Store(demo_report.db, read_only=True) as store:
        events = store.con.execute("SELECT * FROM events").df()
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    for r in report.rollouts:
        end = r.decided_at or datetime.max.replace(tzinfo=UTC)
        start = r.stages[-1].start if r.stages else r.started_at  # the last judged stage
        window = events[(events["ts"] >= start) & (events["ts"] < end)]
        st = window[(window["cohort"] == "stable") & (window["release"] == r.stable)]
        ca = window[(window["cohort"] == "canary") & (window["release"] == r.version)]
        expected = {
            "success_rate": ca["success"].mean() - st["success"].mean(),
            "p95_latency": ca["latency_ms"].quantile(0.95) / st["latency_ms"].quantile(0.95),
            "tokens_per_task": ca["tokens"].mean() / st["tokens"].mean(),
            "eval_score": ca["eval_score"].mean() - st["eval_score"].mean(),
        }
        effects = {e.metric: e for e in report.effects if e.rollout_id == r.rollout_id}
        assert set(effects) == set(expected)
        for metric, value in expected.items():
            e = effects[metric]
            assert e.estimate == pytest.approx(value, rel=1e-9, abs=1e-12), metric
            assert e.low is not None and e.high is not None
            assert e.low <= e.estimate <= e.high, metric
            assert (e.n_stable, e.n_canary) == (
                st[metric_column(metric)].notna().sum(),
                ca[metric_column(metric)].notna().sum(),
            )
    # The model upgrade fails 2.5 points more tasks: its interval lies below zero.
    model = next(e for e in report.effects if e.version == "2026.11.24-model")
    assert model.metric == "success_rate" and model.high is not None and model.high < 0


def metric_column(metric: str) -> str:
    return {"success_rate": "success", "p95_latency": "latency_ms", "tokens_per_task": "tokens",
            "eval_score": "eval_score"}[metric]  # fmt: skip


@pytest.mark.slow
def test_the_baseline_is_the_stable_cohort_of_each_week(demo_report: DemoReport) -> None:
    week = parse_week(demo_report.week)
    with Store(demo_report.db, read_only=True) as store:
        stable = store.con.execute(
            "SELECT * FROM events WHERE cohort = 'stable' AND ts >= ? AND ts < ?",
            [week.start, week.end],
        ).df()
    baseline = demo_report.report.baseline
    assert [b.week for b in baseline][-1] == week.label and len(baseline) == 7
    this = baseline[-1]
    assert this.tasks == len(stable) and this.source == "events"
    assert this.success_rate == pytest.approx(stable["success"].mean())
    assert this.p95_latency_ms == pytest.approx(stable["latency_ms"].quantile(0.95))
    assert this.tokens_per_task == pytest.approx(stable["tokens"].mean())
    assert this.eval_score == pytest.approx(stable["eval_score"].mean())
    assert set(this.releases) == set(stable["release"])


# -- the hand-made store: near misses, outages, aggregates, in-progress ---------------------


def test_rollouts_of_the_week_span_its_edges(synthetic_report: WeeklyReport) -> None:
    by_version = {r.version: r for r in synthetic_report.rollouts}
    # v0 ended the week before; v1 started then and ended in it; v4 started on Sunday.
    assert list(by_version) == ["v1", "v2", "v3", "v4"]
    assert by_version["v1"].decision_minutes == pytest.approx(6 * 60)
    assert by_version["v4"].outcome == "in progress" and by_version["v4"].decided_at is None
    v2 = by_version["v2"]
    assert (v2.outcome, v2.stable, v2.decision_minutes) == ("promoted", "v1", 120.0)
    assert [(s.stage, s.minutes, s.ended_by) for s in v2.stages] == [
        (0, 30.0, "stage_started"),
        (1, 90.0, "promoted"),
    ]
    assert (v2.stages_reached, v2.stages_planned, v2.judge_errors, v2.pauses) == (3, 4, 1, 1)


def test_an_abort_is_a_rollback_without_a_proven_guardrail(
    synthetic_report: WeeklyReport,
) -> None:
    (b,) = synthetic_report.rollbacks
    assert (b.version, b.source, b.guardrail, b.estimate) == ("v3", "transitions", None, None)
    assert b.reason == "aborted by bob" and b.at == at(4, 9, 21)
    assert synthetic_report.rollouts[2].decision_minutes == pytest.approx(20.0)


def test_near_misses_follow_the_documented_rule(synthetic_report: WeeklyReport) -> None:
    rows = {h.guardrail: h for h in synthetic_report.headroom if h.version == "v2"}
    success = rows["task_success_rate"]
    # Stable succeeded on exactly 98 % of the final stage's tasks; limit 0.97; canary 0.974.
    assert success.reference == pytest.approx(0.98)
    assert success.used == pytest.approx(0.6) and success.near_miss
    tokens = rows["token_spend_delta"]
    assert (tokens.reference, tokens.used, tokens.near_miss) == (1.0, pytest.approx(0.4), False)
    assert rows["eval_score"].degradation is not None and rows["eval_score"].degradation < 0
    assert not rows["eval_score"].near_miss and not rows["p95_latency_ms"].near_miss
    assert [h.guardrail for h in synthetic_report.near_misses] == ["task_success_rate"]


def test_effect_sizes_say_why_they_are_missing(synthetic_report: WeeklyReport) -> None:
    notes = {e.version: e.note for e in synthetic_report.effects if e.metric == "success_rate"}
    assert "aggregates" in notes["v3"] and "raw events" in notes["v3"]
    assert notes["v4"].startswith("no events or aggregates")
    assert notes["v2"] == ""
    missing = [e for e in synthetic_report.effects if e.version in ("v3", "v4")]
    assert all(e.estimate is None for e in missing)


def test_judge_health_counts_outages_and_bad_inputs(synthetic_report: WeeklyReport) -> None:
    h = synthetic_report.health
    assert h.verdicts == {"promote": 2, "hold": 4, "rollback": 0}  # the week before: not counted
    assert ("v2", "v1", 2, 3, 0) in h.by_pair
    assert h.ingests == 2 and [f[1:] for f in h.failed_ingests] == [
        ("prometheus", "connection refused")
    ]
    assert h.data_issues == (("partial_response", 2),)
    assert (h.count("judge_error"), h.count("paused"), h.count("aborted")) == (1, 1, 1)
    assert h.lag is not None and h.lag.ingests == 1
    assert h.lag.max_minutes == pytest.approx(5.0)


def test_the_baseline_falls_back_to_aggregates(synthetic_report: WeeklyReport) -> None:
    weeks = {b.week: b for b in synthetic_report.baseline}
    assert list(weeks) == [f"2026-W{k:02d}" for k in range(4, 11)]
    w07, w08, w09 = weeks["2026-W07"], weeks["2026-W08"], weeks["2026-W09"]
    assert (w07.source, w07.tasks, w07.success_rate) == ("aggregates", 100, 0.95)
    assert w07.p95_latency_ms == pytest.approx(1900.0)  # linear within (1000, 2000]
    assert w07.tokens_per_task == pytest.approx(300.0) and w07.eval_score is None
    assert (w08.source, w08.tasks, w08.success_rate) == ("events", 500, pytest.approx(0.96))
    assert (w09.source, w09.tasks, w09.success_rate) == ("none", 0, None)


def test_the_same_seed_gives_the_same_intervals(synthetic_db: Path) -> None:
    now = datetime(2026, 3, 9, tzinfo=UTC)
    first, again, other = (
        build_report(synthetic_db, WEEK, rng=seed, n_resamples=200, now=now) for seed in (1, 1, 2)
    )
    assert first.effects == again.effects
    assert [e.estimate for e in first.effects] == [e.estimate for e in other.effects]
    assert [e.low for e in first.effects] != [e.low for e in other.effects]


def test_frames_for_notebooks(synthetic_report: WeeklyReport) -> None:
    frame = synthetic_report.frame("rollouts")
    assert list(frame["version"]) == ["v1", "v2", "v3", "v4"] and "stages" not in frame
    assert synthetic_report.frame("effects").shape[0] == 16
    with pytest.raises(InputError, match="part"):
        synthetic_report.frame("nope")


# -- weeks and inputs ----------------------------------------------------------------------


def test_iso_weeks_are_monday_to_monday_utc() -> None:
    w = parse_week("2026-W47")
    assert (w.start, w.end) == (
        datetime(2026, 11, 16, tzinfo=UTC),
        datetime(2026, 11, 23, tzinfo=UTC),
    )
    assert parse_week(" 2026w47 ") == w and str(w) == "2026-W47"
    assert parse_week(None, now=datetime(2027, 1, 1, 12, tzinfo=UTC)).label == "2026-W53"
    assert w.shifted(-47).label == "2025-W52" and datetime(2026, 11, 22, 23, tzinfo=UTC) in w


@pytest.mark.parametrize("bad", ["2026-47", "2026-W54", "2025-W53", "W47", "", "last week"])
def test_a_week_that_does_not_parse_is_an_input_error(bad: str) -> None:
    with pytest.raises(InputError, match=r"^week: .*e\.g\. 2026-W47") as err:
        parse_week(bad)
    assert err.value.field == "week"


def test_bad_options_and_missing_store(tmp_path: Path, synthetic_db: Path) -> None:
    with pytest.raises(InputError, match="week"):
        build_report(synthetic_db, "soon")
    with pytest.raises(InputError, match="n_resamples"):
        build_report(synthetic_db, WEEK, n_resamples=10)
    with pytest.raises(StoreError, match="no such store"):
        build_report(tmp_path / "missing.duckdb", WEEK)


def test_an_open_store_is_read_in_place(synthetic_copy: Path) -> None:
    with Store(synthetic_copy) as store:
        report = build_report(store, IsoWeek.of(2026, 10), n_resamples=100)
        # The caller's connection stays usable after the report.
        assert store.count("events") == 2000 + 2000 + 500
    assert report.store.endswith("copy.duckdb")
    assert [r.rollout_id for r in report.rollouts] == [rid(v) for v in ("v1", "v2", "v3", "v4")]
    v2 = [e for e in report.effects if e.version == "v2"]
    assert len(v2) == 4 and all(e.estimate is not None and np.isfinite(e.estimate) for e in v2)
