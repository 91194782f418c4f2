"""The DuckDB store: schema, idempotent ingestion, judging from the file, audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import canary_stats as cs
from canary_stats.errors import EventsError, StoreError
from canary_stats.simulate import LATENCY_BUCKETS
from canary_stats.sources import Regression
from canary_stats.sources._pull import DataIssue, Pull
from canary_stats.store import SCHEMA_VERSION, TABLES, Store, StoreView
from canary_stats.store import _query as store_module

from .conftest import events, to_aggregates

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "canary.duckdb") as s:
        yield s


def _counts(store: Store) -> dict[str, int]:
    return {t: store.count(t) for t in TABLES if t != "ingests"}


def _with_release(df: pd.DataFrame, stable: str = "v1", canary: str = "v2") -> pd.DataFrame:
    return df.assign(release=np.where(df["cohort"] == "canary", canary, stable))


def _pull(df: pd.DataFrame, window: str = "5min", issues: tuple[DataIssue, ...] = ()) -> Pull:
    return Pull(to_aggregates(df, LATENCY_BUCKETS, window), issues)


class TestSchema:
    def test_new_file_is_migrated(self, tmp_path: Path) -> None:
        path = tmp_path / "sub" / "new.duckdb"
        with Store(path) as store:
            row = store.con.execute("SELECT max(version) FROM schema_meta").fetchone()
            assert row == (SCHEMA_VERSION,)
            assert all(store.count(t) == 0 for t in TABLES)

    def test_reopen_keeps_data(self, tmp_path: Path) -> None:
        path = tmp_path / "c.duckdb"
        with Store(path) as store:
            store.ingest_events(events(minutes=10))
            n = store.count("events")
        with Store(path) as store:
            assert store.count("events") == n > 0

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "c.duckdb"
        Store(path).close()
        con = duckdb.connect(str(path))
        con.execute("INSERT INTO schema_meta VALUES (99, now())")
        con.close()
        with pytest.raises(StoreError, match="schema version 99 was written by a newer"):
            Store(path)

    def test_read_only_store_must_exist(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="no such store"):
            Store(tmp_path / "missing.duckdb", read_only=True)


class TestIngestEvents:
    def test_reingesting_changes_nothing(self, store: Store) -> None:
        df = events(minutes=20)
        first = store.ingest_events(df)
        again = store.ingest_events(df)
        assert (first.inserted, first.skipped) == (len(df), 0)
        assert (again.inserted, again.skipped) == (0, len(df))
        assert store.count("events") == len(df)

    def test_rows_without_request_id_are_idempotent_by_content(self, store: Store) -> None:
        df = events(minutes=10).drop(columns="request_id", errors="ignore")
        store.ingest_events(df)
        again = store.ingest_events(df)
        assert again.inserted == 0 and store.count("events") == len(df)

    def test_overlapping_export_adds_only_new_tasks(self, store: Store) -> None:
        df = events(minutes=30).sort_values("ts")
        half = len(df) // 2
        store.ingest_events(df.iloc[: half + 100])
        result = store.ingest_events(df.iloc[half:])
        assert result.skipped == 100
        assert store.count("events") == len(df)

    def test_bad_rows_leave_the_store_as_it_was(self, store: Store) -> None:
        store.ingest_events(events(minutes=10))
        before = _counts(store)
        bad = events(minutes=10, seed=2)
        bad.loc[bad.index[5], "latency_ms"] = -1.0
        with pytest.raises(EventsError, match="latency_ms: 1 rows are NaN, infinite or out of"):
            store.ingest_events(bad)
        assert _counts(store) == before

    def test_duplicated_ids_in_one_batch_are_refused(self, store: Store) -> None:
        store.ingest_events(events(minutes=10))
        before = _counts(store)
        bad = events(minutes=10, seed=3).assign(request_id=lambda d: "b-" + d["request_id"])
        bad.loc[bad.index[:3], "request_id"] = "same"
        with pytest.raises(EventsError, match="request_id: 2 duplicated values"):
            store.ingest_events(bad)
        assert _counts(store) == before

    def test_database_rejection_rolls_back_and_is_logged(self, store: Store) -> None:
        scores = pd.DataFrame(
            {
                "request_id": ["a", "b"],
                "ts": [T0, T0],
                "release": ["v2", "v2"],
                "cohort": [None, None],
                "eval_score": [0.9, 1.5],  # violates the table's CHECK
            }
        )
        with pytest.raises(EventsError, match="rejected by the store"):
            store.ingest_eval_scores(scores)
        assert store.count("eval_scores") == 0
        status = store.con.execute("SELECT status FROM ingests").fetchall()
        assert status == [("failed",)]


class TestJudgeFromStore:
    @pytest.mark.parametrize("regression", [None, Regression(success_drop=0.08)])
    def test_same_verdict_as_the_events(
        self, store: Store, relative_policy: cs.Policy, regression: Regression | None
    ) -> None:
        df = events(minutes=60, regression=regression)
        store.ingest_events(df)
        direct = cs.analyze(df, relative_policy, stage=1)
        stored = cs.analyze(store, relative_policy, stage=1)
        assert stored.decision == direct.decision
        assert stored.reason == direct.reason
        for name, m in direct.metrics.items():
            assert stored.metrics[name].estimate == pytest.approx(m.estimate, rel=1e-9)
            assert stored.metrics[name].high == pytest.approx(m.high, rel=1e-9)

    def test_histogram_latency_beyond_the_exact_limit(
        self, store: Store, relative_policy: cs.Policy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        df = events(minutes=60, regression=Regression(latency_factor=1.6))
        store.ingest_events(df)
        monkeypatch.setattr(store_module, "EXACT_LATENCY_LIMIT", 100)
        direct = cs.analyze(df, relative_policy, stage=1)
        stored = cs.analyze(store, relative_policy, stage=1)
        assert stored.decision == direct.decision == "rollback"
        p95, exact = stored.metrics["p95_latency_ms"], direct.metrics["p95_latency_ms"]
        assert p95.estimate == pytest.approx(exact.estimate, rel=0.021)  # two 1 % buckets
        assert p95.low <= exact.low * 1.0001  # coarser data: never a narrower interval

    @pytest.mark.parametrize("prometheus", [False, True], ids=["sum_sq", "histograms"])
    @pytest.mark.parametrize(
        "regression",
        [
            None,
            Regression(success_drop=0.08),
            Regression(latency_factor=1.6),
            Regression(token_factor=1.5),
            Regression(eval_drop=0.1),
        ],
        ids=["healthy", "success", "latency", "tokens", "eval"],
    )
    def test_aggregates_give_the_events_decision(
        self,
        store: Store,
        relative_policy: cs.Policy,
        regression: Regression | None,
        prometheus: bool,
    ) -> None:
        df = events(minutes=120, regression=regression)
        agg = to_aggregates(df, LATENCY_BUCKETS, prometheus=prometheus)
        store.ingest_pull(Pull(agg), stable="v1", canary="v2")
        view = store.select(stable="v1", canary="v2")
        direct = cs.analyze(df, relative_policy, stage=1, elapsed="2h")
        stored = cs.analyze(view, relative_policy, stage=1, elapsed="2h")
        assert stored.decision == direct.decision, stored.reason
        assert stored.n_canary == direct.n_canary
        if regression is not None:
            assert stored.decision == "rollback"

    def test_selection_by_release_and_time(self, store: Store, relative_policy: cs.Policy) -> None:
        df = _with_release(events(minutes=60))
        other = _with_release(events(minutes=60, seed=9), canary="v3")
        other["request_id"] = "other-" + other["request_id"].astype(str)
        store.ingest_events(df)
        store.ingest_events(other)
        start = (pd.Timestamp(df["ts"].min()) + pd.Timedelta("30min")).floor("us")
        view = store.select(stable="v1", canary="v2", start=start.to_pydatetime())
        summary = view.summary()
        late = df[pd.to_datetime(df["ts"]) >= start]
        assert summary.canary.tasks == (late["cohort"] == "canary").sum()
        assert (
            summary.stable.tasks
            == (late["cohort"] == "stable").sum()
            + ((pd.to_datetime(other["ts"]) >= start) & (other["cohort"] == "stable")).sum()
        )

    def test_report_card_scores_join_by_release(self, store: Store) -> None:
        df = _with_release(events(minutes=30)).assign(eval_score=np.nan)
        store.ingest_events(df)
        scores = pd.DataFrame(
            {
                "request_id": [f"v2/t{i}" for i in range(40)],
                "ts": [pd.Timestamp(df["ts"].max())] * 40,
                "release": ["v2"] * 40,
                "cohort": [None] * 40,
                "eval_score": np.linspace(0.5, 1.0, 40),
            }
        )
        store.ingest_eval_scores(scores)
        assert store.ingest_eval_scores(scores).inserted == 0
        summary = store.select(stable="v1", canary="v2").summary()
        assert summary.canary.eval_score.n == 40
        assert summary.canary.eval_score.mean == pytest.approx(0.75)
        assert summary.stable.eval_score.n == 0


class TestPulls:
    def test_repulling_changes_nothing(self, store: Store) -> None:
        pull = _pull(events(minutes=30))
        first = store.ingest_pull(pull, stable="v1", canary="v2")
        again = store.ingest_pull(pull, stable="v1", canary="v2")
        assert first.inserted > 0 and again.inserted == 0
        assert store.count("aggregates") == first.inserted

    def test_windows_of_another_size_are_refused(self, store: Store) -> None:
        df = events(minutes=30)
        store.ingest_pull(_pull(df, "5min"), stable="v1", canary="v2")
        before = _counts(store)
        with pytest.raises(EventsError, match="overlaps the stored window"):
            store.ingest_pull(_pull(df, "10min"), stable="v1", canary="v2")
        assert _counts(store) == before

    def test_an_issue_holds_and_a_clean_repull_heals_it(
        self, store: Store, relative_policy: cs.Policy
    ) -> None:
        df = events(minutes=120)
        pull = _pull(df)
        first = pull.aggregates["window_start"].min()
        issue = DataIssue(first, first + timedelta(minutes=5), None, "partial", "warning: x")
        store.ingest_pull(Pull(pull.aggregates, (issue,)), stable="v1", canary="v2")
        view = store.select(stable="v1", canary="v2")
        held = cs.analyze(view, relative_policy, stage=1, elapsed="2h")
        assert held.decision == "hold" and "partial in 1 window(s)" in held.reason
        store.ingest_pull(pull, stable="v1", canary="v2")
        assert store.count("data_issues") == 0
        assert cs.analyze(view, relative_policy, stage=1, elapsed="2h").decision == "promote"

    def test_a_failed_latest_ingest_holds(self, store: Store, relative_policy: cs.Policy) -> None:
        store.ingest_pull(_pull(events(minutes=120)), stable="v1", canary="v2")
        store.record_failed_ingest("prometheus", "connection refused", stable="v1", canary="v2")
        verdict = cs.analyze(store.select(stable="v1", canary="v2"), relative_policy, stage=1)
        assert verdict.decision == "hold"
        assert "latest ingest from prometheus failed" in verdict.reason
        assert "connection refused" in verdict.reason


class TestAuditAndExport:
    def test_every_verdict_is_logged_with_its_fingerprint(
        self, store: Store, relative_policy: cs.Policy
    ) -> None:
        store.ingest_events(events(minutes=30))
        view = store.select()
        a = cs.analyze(view, relative_policy, stage=1, elapsed="30m")
        cs.analyze(view, relative_policy, stage=1, elapsed="30m")
        cs.analyze(view, relative_policy, stage=1, elapsed="31m")
        log = store.verdicts()
        assert list(log["decision"]) == [a.decision] * 3
        assert log["fingerprint"][0] == log["fingerprint"][1] != log["fingerprint"][2]

    def test_export_is_a_readable_snapshot(self, store: Store, tmp_path: Path) -> None:
        store.ingest_events(events(minutes=10))
        paths = store.export(tmp_path / "snap")
        assert set(paths) == set(TABLES)
        assert len(pd.read_parquet(paths["events"])) == store.count("events")
        assert not list((tmp_path / "snap").glob(".*"))  # no temporary files left

    def test_store_view_is_exported(self) -> None:
        assert StoreView is cs.store.StoreView
