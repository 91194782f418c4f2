"""From a real Prometheus into the DuckDB store, through the CLI, and judged from the file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import canary_stats as cs
from canary_stats.cli import app
from canary_stats.store import TABLES, Store

from ..conftest import RELATIVE_ROLLOUT
from ._prometheus import free_port
from .conftest import END, T0, History

runner = CliRunner()
POLICY = cs.Policy.from_dict(RELATIVE_ROLLOUT)


def _ingest(url: str, db: Path, stable: str, canary: str, *, window: str = "5m") -> tuple[int, str]:
    res = runner.invoke(
        app,
        [
            "ingest", "prometheus", "--url", url, "--db", str(db),
            "--stable-version", stable, "--canary-version", canary,
            "--start", T0.isoformat(), "--end", END.isoformat(), "--window", window,
        ],
    )  # fmt: skip
    return res.exit_code, res.output


def _counts(db: Path) -> dict[str, int]:
    with Store(db) as store:
        return {t: store.count(t) for t in TABLES if t not in ("ingests", "verdicts")}


def test_stored_counts_equal_the_generated_ones(history: History, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    code, out = _ingest(history.url, db, "v1", "v2")
    assert code == 0, out
    assert json.loads(out)["issues"] == 0
    raw = history.raw("v1", "v2")
    with Store(db) as store:
        stored = store.con.execute(
            "SELECT cohort::VARCHAR, sum(value) FROM aggregate_rows "
            "WHERE metric = 'tasks' AND field = ? GROUP BY ALL",
            ["count"],
        ).fetchall()
        successes = store.con.execute(
            "SELECT cohort::VARCHAR, sum(value) FROM aggregate_rows "
            "WHERE metric = 'tasks' AND field = 'success' GROUP BY ALL"
        ).fetchall()
    # Scrapes sit on the window edges and Prometheus 2.x range selectors include both
    # ends, so increase() is last minus first with no extrapolation: counts are exact.
    assert dict(stored) == raw.groupby("cohort").size().astype(float).to_dict()
    assert dict(successes) == raw.groupby("cohort")["success"].sum().astype(float).to_dict()


def test_verdicts_from_the_store_equal_the_raw_events(history: History, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    for canary, expected in (("v2", "promote"), ("v3", "rollback")):
        assert _ingest(history.url, db, "v1", canary)[0] == 0
        with Store(db) as store:
            stored = cs.analyze(store.select(stable="v1", canary=canary), POLICY, stage=1)
        direct = cs.analyze(history.raw("v1", canary), POLICY, stage=1, elapsed=END - T0)
        assert stored.decision == direct.decision == expected, stored.reason


def test_repeated_and_overlapping_pulls_change_nothing(history: History, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    assert _ingest(history.url, db, "v1", "v2")[0] == 0
    before = _counts(db)
    code, out = _ingest(history.url, db, "v1", "v2")
    assert code == 0 and json.loads(out)["inserted"] == 0
    assert _counts(db) == before
    code, out = _ingest(history.url, db, "v1", "v2", window="10m")
    assert code == 2 and "overlaps the stored window" in out
    assert _counts(db) == before


def test_faults_are_stored_and_hold_the_judge(history: History, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    code, out = _ingest(history.url, db, "f-stable", "f-canary")
    assert code == 0, out
    kinds = set(json.loads(out)["kinds"])
    assert {"counter_reset", "nan"} <= kinds
    with Store(db) as store:
        verdict = cs.analyze(store.select(stable="f-stable", canary="f-canary"), POLICY, stage=1)
        logged = store.verdicts()
    assert verdict.decision == "hold"
    assert "counter_reset" in verdict.reason and "nan" in verdict.reason
    assert list(logged["decision"]) == ["hold"]


def test_server_down_keeps_what_is_stored(history: History, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    assert _ingest(history.url, db, "v1", "v2")[0] == 0
    before = _counts(db)
    code, out = _ingest(f"http://127.0.0.1:{free_port()}", db, "v1", "v2")
    assert code == 3 and "v1" not in out.split("error:")[0]
    assert _counts(db) == before
    with Store(db) as store:
        verdict = cs.analyze(store.select(stable="v1", canary="v2"), POLICY, stage=1)
        log = store.con.execute("SELECT status FROM ingests ORDER BY ingest_id").df()
    assert verdict.decision == "hold" and "latest ingest from prometheus" in verdict.reason
    assert list(log["status"]) == ["ok", "failed"]
    # A successful pull afterwards lifts the hold without duplicating anything.
    assert _ingest(history.url, db, "v1", "v2")[0] == 0
    assert _counts(db) == before
    with Store(db) as store:
        assert cs.analyze(store.select(stable="v1", canary="v2"), POLICY, stage=1).decision == (
            "promote"
        )


def test_a_pull_that_matches_no_series_exits_2_naming_it(history: History, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    code, out = _ingest(history.url, db, "v1", "v9-typo")
    assert code == 2, out
    assert "--canary-version" in out and "v9-typo" in out and "agent_task_total{" in out
    assert "nothing was stored" in out
    assert _counts(db)["aggregates"] == 0
