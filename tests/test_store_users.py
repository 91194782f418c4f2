"""The store and user ids: the rule at ingest, old stores, users and design effects in SQL."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import canary_stats as cs
from canary_stats.errors import EventsError
from canary_stats.store import SCHEMA_VERSION, Store
from canary_stats.store import _query as query
from canary_stats.store._schema import MIGRATIONS
from canary_stats.store._store import DUCKDB_CONFIG
from canary_stats.summary import DesignEffects, Summary

from .conftest import events
from .test_users import clustered


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "canary.duckdb") as s:
        yield s


def _same_users(a: Summary, b: Summary, rel: float = 1e-9) -> None:
    for name in ("stable", "canary"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.users == y.users, name
        for metric in ("success", "latency", "tokens", "eval_score"):
            got, want = getattr(y.design, metric), getattr(x.design, metric)
            assert got == pytest.approx(want, rel=rel), (name, metric)
    assert a.window_tasks is not None and b.window_tasks is not None
    np.testing.assert_array_equal(a.window_tasks, b.window_tasks)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "3 of {n:,} rows have no user id (e.g. row 2)"),
        ("", "3 of {n:,} rows have an empty or blank user id (e.g. '' in row 2)"),
        ("  ", "3 of {n:,} rows have an empty or blank user id (e.g. '  ' in row 2)"),
    ],
)
def test_ingest_refuses_rows_without_a_user_id_and_stores_nothing(
    store: Store, bad: str | None, message: str
) -> None:
    df = events(minutes=5).assign(user_id="u1")
    df.loc[df.index[[1, 4, 9]], "user_id"] = bad
    with pytest.raises(EventsError) as info:
        store.ingest_events(df)
    assert info.value.field == "user_id"
    assert message.format(n=len(df)) in str(info.value)
    assert store.count("events") == 0


def test_ingest_keeps_user_ids_and_sql_agrees_with_pandas(store: Store) -> None:
    df = clustered(seed=2)
    store.ingest_events(df)
    stored = store.con.execute("SELECT count(DISTINCT user_id), count(user_id) FROM events")
    assert stored.fetchall() == [(df["user_id"].nunique(), len(df))]
    _same_users(cs.summarize(df), store.select().summary())


def test_sql_histogram_path_agrees_roughly(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    df = clustered(seed=3)
    store.ingest_events(df)
    monkeypatch.setattr(query, "EXACT_LATENCY_LIMIT", 100)  # latency as 1 % buckets
    got = store.select().summary()
    want = cs.summarize(df)
    for name in ("stable", "canary"):
        g, w = getattr(got, name), getattr(want, name)
        assert g.users == w.users
        assert g.design.success == pytest.approx(w.design.success, rel=1e-9)
        assert g.design.latency == pytest.approx(w.design.latency, rel=0.2)  # p95 to a bucket


def test_store_without_user_ids_has_none(store: Store) -> None:
    store.ingest_events(events(minutes=10))
    summary = store.select().summary()
    assert math.isnan(summary.stable.users) and summary.canary.design == DesignEffects()
    assert summary.window_tasks is not None
    assert summary.window_tasks.sum() == store.count("events")


def test_a_selection_mixing_ingests_with_and_without_ids_holds(store: Store) -> None:
    early, late = events(minutes=10, seed=1), clustered(seed=4, minutes=10)
    late = late.assign(ts=late["ts"] + pd.Timedelta(minutes=10))
    store.ingest_events(early.drop(columns=["request_id"], errors="ignore"))
    store.ingest_events(late.drop(columns=["request_id"], errors="ignore"))
    summary = store.select().summary()
    assert math.isnan(summary.stable.users) and math.isnan(summary.canary.users)
    (why,) = (e for e in summary.excluded if e.startswith("user_id:"))
    assert f"{len(early):,} of {len(early) + len(late):,} selected events have no user id" in why
    assert summary.canary.design.success > 1.0  # estimated on the events with ids
    later = store.select(start=late["ts"].min().floor("us").to_pydatetime()).summary()
    assert later.stable.users == late.loc[late["cohort"] == "stable", "user_id"].nunique()
    assert not later.excluded


def test_same_request_id_with_another_user_is_other_content(store: Store) -> None:
    df = events(minutes=5).assign(user_id="u1", request_id=lambda d: [f"r{i}" for i in d.index])
    store.ingest_events(df)
    assert store.ingest_events(df).inserted == 0  # the same content: skipped
    moved = df.assign(user_id=["u2"] + ["u1"] * (len(df) - 1))
    with pytest.raises(EventsError, match="user_id u2 here, u1 as stored"):
        store.ingest_events(moved)
    assert store.count("events") == len(df)


def test_an_old_store_migrates_and_keeps_its_user_ids(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    con.execute("CREATE TABLE schema_meta (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
    for statement in MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO schema_meta VALUES (1, now())")
    df = clustered(seed=6, minutes=20)
    con.register("df", df)
    con.execute(
        "INSERT INTO events SELECT 'r' || row_number() OVER (), ts, cohort, NULL, success, "
        "latency_ms, tokens, eval_score, user_id, 1 FROM df"
    )
    con.close()
    with Store(path) as store:
        version = store.con.execute("SELECT max(version) FROM schema_meta").fetchall()
        assert version == [(SCHEMA_VERSION,)]
        assert store.count("events") == len(df)
        _same_users(cs.summarize(df), store.select().summary())
