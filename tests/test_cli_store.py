"""``canary-stats ingest``, ``analyze --db`` and ``export`` against a real DuckDB file."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from canary_stats.cli import app
from canary_stats.simulate import LATENCY_BUCKETS
from canary_stats.sources import Regression
from canary_stats.store import TABLES, Store

from .conftest import SEED_MANIFEST, events, to_aggregates

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def _counts(db: Path) -> dict[str, int]:
    with Store(db) as store:
        return {t: store.count(t) for t in TABLES if t not in ("ingests", "verdicts")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def regressed(tmp_path: Path) -> Path:
    df = events(minutes=120, regression=Regression(success_drop=0.05), seed=31)
    df["release"] = np.where(df["cohort"] == "canary", "v2", "v1")
    path = tmp_path / "events.parquet"
    df.to_parquet(path)
    return path


def test_ingest_then_analyze_from_the_store(tmp_path: Path, regressed: Path) -> None:
    db = tmp_path / "store.duckdb"
    code, out = _run("ingest", "file", str(regressed), "--db", str(db))
    assert code == 0, out
    first = json.loads(out)
    assert first["inserted"] == len(pd.read_parquet(regressed)) and first["skipped"] == 0
    code, out = _run("ingest", "file", str(regressed), "--db", str(db))
    assert json.loads(out)["inserted"] == 0

    args = ["analyze", "--db", str(db), "--manifest", str(SEED_MANIFEST), "--stage", "1"]
    code, out = _run(*args, "--stable-version", "v1", "--canary-version", "v2")
    direct_code, direct = _run(
        "analyze", str(regressed), "--manifest", str(SEED_MANIFEST), "--stage", "1"
    )
    assert code == direct_code == 20
    assert json.loads(out)["decision"] == json.loads(direct)["decision"] == "rollback"
    with Store(db) as store:
        log = store.verdicts()
    assert list(log["decision"]) == ["rollback"] and list(log["release"]) == ["v2"]
    assert log["fingerprint"][0].startswith("sha256:")


def test_analyze_needs_exactly_one_input(tmp_path: Path, regressed: Path) -> None:
    code, out = _run(
        "analyze", str(regressed), "--db", str(tmp_path / "x.duckdb"),
        "--manifest", str(SEED_MANIFEST), "--stage", "1",
    )  # fmt: skip
    assert code == 2 and "give either an events file or --db FILE" in out


def test_a_bad_file_leaves_the_store_unchanged(tmp_path: Path, regressed: Path) -> None:
    db = tmp_path / "store.duckdb"
    _run("ingest", "file", str(regressed), "--db", str(db))
    before = _counts(db)
    bad = pd.read_parquet(regressed).assign(request_id=lambda d: "new-" + d["request_id"])
    bad.loc[bad.index[-1], "tokens"] = np.nan
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    code, out = _run("ingest", "file", str(path), "--db", str(db))
    assert code == 2 and "tokens" in out
    assert _counts(db) == before


def test_aggregates_files_need_the_release_pair(tmp_path: Path) -> None:
    agg = to_aggregates(events(minutes=30), LATENCY_BUCKETS)
    path = tmp_path / "agg.parquet"
    agg.to_parquet(path)
    db = tmp_path / "store.duckdb"
    code, out = _run("ingest", "file", str(path), "--db", str(db))
    assert code == 2 and "--stable-version" in out
    code, out = _run(
        "ingest", "file", str(path), "--db", str(db),
        "--stable-version", "v1", "--canary-version", "v2",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["inserted"] == len(agg)


def test_prometheus_down_is_logged_and_never_promotes(tmp_path: Path, regressed: Path) -> None:
    db = tmp_path / "store.duckdb"
    _run("ingest", "file", str(regressed), "--db", str(db))
    before = _counts(db)
    code, out = _run(
        "ingest", "prometheus", "--url", f"http://127.0.0.1:{_free_port()}", "--db", str(db),
        "--stable-version", "v1", "--canary-version", "v2",
        "--start", "2026-11-20T10:00:00Z", "--end", "2026-11-20T11:00:00Z",
    )  # fmt: skip
    assert code == 3, out
    assert _counts(db) == before
    code, out = _run(
        "analyze", "--db", str(db), "--manifest", str(SEED_MANIFEST), "--stage", "1",
        "--stable-version", "v1", "--canary-version", "v2",
    )  # fmt: skip
    verdict = json.loads(out)
    # What is stored proves the regression: a failed pull of newer data names itself
    # but does not hide a violation proven on the data that is there.
    assert code == 20 and verdict["decision"] == "rollback"
    assert any("the latest ingest from prometheus" in i for i in verdict["data_issues"])
    healthy = tmp_path / "healthy.parquet"
    events(minutes=120, seed=3).assign(release=lambda d: d["cohort"].map(
        {"stable": "v1", "canary": "v2"})).to_parquet(healthy)  # fmt: skip
    db2 = tmp_path / "healthy.duckdb"
    _run("ingest", "file", str(healthy), "--db", str(db2))
    _run(
        "ingest", "prometheus", "--url", f"http://127.0.0.1:{_free_port()}", "--db", str(db2),
        "--stable-version", "v1", "--canary-version", "v2",
        "--start", "2026-11-20T10:00:00Z", "--end", "2026-11-20T11:00:00Z",
    )  # fmt: skip
    code, out = _run(
        "analyze", "--db", str(db2), "--manifest", str(SEED_MANIFEST), "--stage", "1",
        "--stable-version", "v1", "--canary-version", "v2", "--elapsed", "3h",
    )  # fmt: skip
    verdict = json.loads(out)
    assert code == 10 and verdict["decision"] == "hold"  # never a promote past a failed pull
    assert "the latest ingest from prometheus" in verdict["reason"]


def test_times_need_a_zone(tmp_path: Path) -> None:
    code, out = _run(
        "ingest", "prometheus", "--url", "http://127.0.0.1:9", "--db", str(tmp_path / "s.duckdb"),
        "--stable-version", "v1", "--canary-version", "v2",
        "--start", "2026-11-20T10:00:00", "--end", "now",
    )  # fmt: skip
    assert code == 2 and "--start" in out and "no time zone" in out


def test_export_writes_every_table(tmp_path: Path, regressed: Path) -> None:
    db = tmp_path / "store.duckdb"
    _run("ingest", "file", str(regressed), "--db", str(db))
    code, out = _run("export", "--db", str(db), "--out", str(tmp_path / "snap"))
    assert code == 0
    paths = json.loads(out)
    assert set(paths) == set(TABLES)
    assert len(pd.read_parquet(paths["events"])) == len(pd.read_parquet(regressed))


def test_the_example_source_settings_load() -> None:
    from canary_stats.sources.prometheus import PrometheusConfig

    root = Path(__file__).resolve().parents[1]
    config = PrometheusConfig.from_file(root / "examples" / "sources" / "prometheus.yaml")
    assert config.cohort_label == "version" and config.selectors == {"app": "research-agent"}
    assert config.metrics.latency == "agent_task_duration_ms"
