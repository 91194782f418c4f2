"""The store stays exact: one row per task whatever the time range, damaged files refused."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from canary_stats.errors import EventsError, StoreError, StoreUnreadable
from canary_stats.store import SCHEMA_VERSION, Store
from canary_stats.store._schema import MIGRATIONS
from canary_stats.store._store import DUCKDB_CONFIG

from .conftest import events
from .test_store import _counts


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "canary.duckdb") as s:
        yield s


def _local_text(df: pd.DataFrame, *, shift: bool) -> pd.DataFrame:
    """``ts`` as ISO text with a +05:30 offset: the same instants, or 5.5 h away."""
    ts = pd.to_datetime(df["ts"])
    if shift:  # the UTC digits with +05:30 written after them: 5.5 hours earlier
        text = ts.dt.tz_localize(None).map(lambda t: t.isoformat() + "+05:30")
    else:
        text = ts.dt.tz_convert("Asia/Kolkata").map(lambda t: t.isoformat())
    return df.assign(ts=text.astype(str))


class TestOneRowPerTask:
    def test_the_same_instants_written_at_05_30_are_skipped(self, store: Store) -> None:
        df = events(minutes=20)
        store.ingest_events(df)
        again = store.ingest_events(_local_text(df, shift=False))
        assert (again.inserted, again.skipped) == (0, len(df))
        assert store.count("events") == len(df)

    def test_known_ids_shifted_out_of_the_time_range_are_refused(self, store: Store) -> None:
        df = events(minutes=20)
        store.ingest_events(df)
        before = _counts(store)
        shifted = _local_text(df, shift=True)
        with pytest.raises(EventsError, match=r"request_id: \d+ tasks are already stored") as e:
            store.ingest_events(shifted)
        assert "'req-00000000'" in str(e.value) and "ts " in str(e.value)
        assert _counts(store) == before  # rolled back, not 2,000 more rows
        status = store.con.execute("SELECT status FROM ingests ORDER BY ingest_id").fetchall()
        assert status == [("ok",), ("failed",)]

    def test_a_known_id_with_other_content_anywhere_is_refused(self, store: Store) -> None:
        df = events(minutes=20)
        store.ingest_events(df)
        later = df.iloc[:5].assign(
            ts=pd.to_datetime(df["ts"].iloc[:5]) + pd.Timedelta(days=3), release="v9"
        )
        fresh = events(minutes=5, seed=8).assign(request_id=lambda d: "new-" + d["request_id"])
        with pytest.raises(EventsError, match="5 tasks are already stored with other content"):
            store.ingest_events(pd.concat([fresh, later]))
        assert store.count("events") == len(df)

    def test_relabelled_rows_are_refused_not_skipped(self, store: Store) -> None:
        df = events(minutes=10)
        store.ingest_events(df)
        labelled = df.assign(release=np.where(df["cohort"] == "canary", "v2", "v1"))
        with pytest.raises(EventsError, match="release v"):
            store.ingest_events(labelled)

    def test_rows_without_ids_are_deduplicated_by_content(self, store: Store) -> None:
        df = events(minutes=10).drop(columns="request_id")
        store.ingest_events(df)
        again = store.ingest_events(_local_text(df, shift=False))
        assert again.inserted == 0 and store.count("events") == len(df)
        moved = store.ingest_events(_local_text(df.iloc[:7], shift=True))
        assert moved.inserted == 7  # other content: other tasks
        ids = store.con.execute("SELECT request_id FROM events LIMIT 1").fetchall()[0][0]
        assert ids.startswith("h") and len(ids) == 17

    def test_a_schema_2_store_with_duplicates_is_repaired_on_open(self, tmp_path: Path) -> None:
        path = tmp_path / "v2.duckdb"
        con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
        con.execute(
            "CREATE TABLE schema_meta (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)"
        )
        for statement in MIGRATIONS[0] + MIGRATIONS[1]:
            con.execute(statement)
        con.execute("INSERT INTO schema_meta VALUES (1, now()), (2, now())")
        for ingest_id, hours in ((1, 0), (2, 5.5)):  # the bug: the same tasks, re-timed
            con.execute(
                "INSERT INTO events SELECT 'r' || i, TIMESTAMPTZ '2026-11-20 10:00:00+00' + "
                "to_microseconds(((i * 1000000)::BIGINT + ?::BIGINT)), 'stable', NULL, true, "
                "1.0, 1.0, NULL, NULL, ? FROM range(10) AS t(i)",
                [int(hours * 3600e6), ingest_id],
            )
        con.close()
        with Store(path) as store:
            version = store.con.execute("SELECT max(version) FROM schema_meta").fetchall()
            assert version == [(SCHEMA_VERSION,)]
            assert store.count("events") == store.count("events_duplicates") == 10
            kept = store.con.execute("SELECT DISTINCT ingest_id FROM events").fetchall()
            assert kept == [(1,)]
            assert store.ingest_events(events(minutes=1)).inserted > 0


def _truncated(path: Path) -> None:
    with Store(path) as store:
        store.ingest_events(events(minutes=60))
        store.con.execute("CHECKPOINT")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE events (x)")
    con.commit()
    con.close()


DAMAGED: dict[str, Callable[[Path], None]] = {
    "truncated": _truncated,
    "random": lambda p: p.write_bytes(np.random.default_rng(5).bytes(100_000)),
    "sqlite": _sqlite,
    "empty": lambda p: p.write_bytes(b""),
}


@pytest.fixture(params=sorted(DAMAGED))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "store.duckdb"
    DAMAGED[request.param](path)
    return path


class TestDamagedFiles:
    @pytest.mark.parametrize("read_only", [False, True])
    def test_refused_and_left_untouched(self, damaged: Path, read_only: bool) -> None:
        before = damaged.read_bytes()
        with pytest.raises(StoreUnreadable, match=str(damaged)) as e:
            Store(damaged, read_only=read_only)
        assert "extension" not in str(e.value).lower()
        assert damaged.read_bytes() == before
        assert sorted(os.listdir(damaged.parent)) == [damaged.name]  # no WAL either

    def test_a_healthy_store_after_checkpoints_opens(self, tmp_path: Path) -> None:
        path = tmp_path / "s.duckdb"
        for seed in range(3):
            with Store(path) as store:
                df = events(minutes=30, seed=seed)
                store.ingest_events(df.assign(request_id=f"{seed}-" + df["request_id"]))
        with Store(path, read_only=True) as store:
            assert store.count("events") > 0

    def test_no_extension_is_installed_or_loaded(self, store: Store) -> None:
        settings = store.con.execute(
            "SELECT current_setting('autoinstall_known_extensions'), "
            "current_setting('autoload_known_extensions')"
        ).fetchall()
        assert settings == [(False, False)]

    def test_a_newer_schema_is_unreadable_too(self, tmp_path: Path) -> None:
        path = tmp_path / "c.duckdb"
        Store(path).close()
        con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
        con.execute("INSERT INTO schema_meta VALUES (99, now())")
        con.close()
        with pytest.raises(StoreUnreadable):
            Store(path)
        assert issubclass(StoreUnreadable, StoreError)
