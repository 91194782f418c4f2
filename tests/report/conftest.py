"""Stores for the weekly report's tests: the demo's (shared) and a small hand-made one.

The hand-made store has every case the demo lacks, at fixed dates in 2026-W10
(Mon 2 Mar - Mon 9 Mar 2026): a promoted release with near misses, an aborted
rollback without a postmortem, a rollout with aggregates only, one in progress,
one that started the week before, judge errors, a pause, a failed ingest and
data issues; the weeks before hold stable data from events and from aggregates.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from canary_stats.demo import SEED_ROLLOUT
from canary_stats.report import WeeklyReport, build_report, render_html
from canary_stats.store import ReleaseRecord, Store

from ..conftest import DemoRun

#: Bootstrap resamples in the tests: enough for intervals, a few seconds on the demo.
RESAMPLES = 300
WEEK = "2026-W10"
NAME = "agent"
MANIFEST = yaml.safe_dump({"spec": {"rollout": SEED_ROLLOUT}})


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def rid(version: str) -> str:
    return f"rollout:{NAME}:{version}"


@dataclass(frozen=True)
class DemoReport:
    """The demo store's report for the week its rollback ended in."""

    db: Path
    week: str
    report: WeeklyReport


@pytest.fixture(scope="session")
def demo_report(demo_run: DemoRun) -> DemoReport:
    with Store(demo_run.db, read_only=True) as store:
        (ended,) = store.con.execute(
            "SELECT recorded_at FROM rollout_transitions WHERE state = 'rolled_back'"
        ).fetchone() or (None,)
    assert isinstance(ended, datetime)
    iso = ended.astimezone(UTC).isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    return DemoReport(demo_run.db, week, build_report(demo_run.db, week, n_resamples=RESAMPLES))


def _events(
    release: str, cohort: str, start: datetime, n: int, *, fail_every: int, latency: float
) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame(
        {
            "request_id": [f"{release}-{cohort}-{start:%d%H%M}-{k}" for k in i],
            "ts": [start + timedelta(seconds=float(k) * 5400 / n) for k in i],
            "cohort": cohort,
            "release": release,
            "success": i % fail_every != 0,  # exactly 1/fail_every failures
            "latency_ms": latency * (0.5 + (i % 100) / 100),  # uniform on a grid
            "tokens": 1000.0 + (i % 7) * 10,
            "eval_score": np.where(i % 2 == 0, 0.9 + (i % 5) / 100, np.nan),
        }
    )


def _verdict(decision: str, stage: int, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"decision": decision, "reason": f"{decision}: test", "stage": stage, "metrics": metrics}


def _metric(status: str, estimate: float, rule: str, limit: float, margin: float) -> dict[str, Any]:
    contrast = "absolute" if rule in ("min", "max") else "ratio"
    return {"status": status, "estimate": estimate, "interval": [estimate - 0.01, estimate + 0.01],
            "contrast": contrast, "rule": rule, "limit": limit, "margin": margin}  # fmt: skip


#: The promoted release's final verdict: success uses 60 % of its headroom against the
#: stable cohort's exact 98 % (a near miss); tokens 40 % (not); eval better than stable.
FINAL_METRICS = {
    "task_success_rate": _metric("pass", 0.974, "min", 0.97, 0.97),
    "p95_latency_ms": _metric("pass", 5500.0, "max", 8000, 8000),
    "token_spend_delta": _metric("pass", 1.06, "max_ratio", 1.15, 1.15),
    "eval_score": _metric("pass", 0.95, "min", 0.9, 0.9),
}


def _transitions(store: Store) -> None:
    log: list[tuple[str, str, datetime, int | None, float | None, dict[str, Any]]] = [
        ("v0", "started", datetime(2026, 2, 24, 10, tzinfo=UTC), None, None, {"stable": "base"}),
        ("v0", "promoted", datetime(2026, 2, 24, 12, tzinfo=UTC), 1, 100.0, {}),
        ("v1", "started", datetime(2026, 3, 1, 20, tzinfo=UTC), None, None, {"stable": "v0"}),
        ("v1", "stage_started", datetime(2026, 3, 1, 20, tzinfo=UTC), 0, 10.0, {}),
        ("v1", "promoted", at(2, 2), 1, 100.0, {"reason": "promote: test"}),
        ("v2", "started", at(3, 10), None, None, {"stable": "v1"}),
        ("v2", "stage_started", at(3, 10), 0, 1.0, {}),
        ("v2", "judge_error", at(3, 10, 10), 0, 1.0,
         {"consecutive": 1, "limit": 3, "error": "<b>timeout</b>"}),
        ("v2", "judge_recovered", at(3, 10, 15), 0, 1.0, {}),
        ("v2", "stage_started", at(3, 10, 30), 1, 50.0, {"reason": "promote: test"}),
        ("v2", "paused", at(3, 11), 1, 50.0, {"by": "alice", "reason": "paused by alice"}),
        ("v2", "resumed", at(3, 11, 10), 1, 50.0, {"by": "alice", "reason": "resumed by alice"}),
        ("v2", "promoted", at(3, 12), 2, 100.0, {"reason": "promote: test"}),
        ("v3", "started", at(4, 9), None, None, {"stable": "v2"}),
        ("v3", "stage_started", at(4, 9), 0, 1.0, {}),
        ("v3", "aborted", at(4, 9, 20), 0, 1.0, {"by": "bob", "reason": "aborted by bob"}),
        ("v3", "rolling_back", at(4, 9, 20), 0, 0.0, {"reason": "aborted by bob"}),
        ("v3", "rolled_back", at(4, 9, 21), 0, 0.0, {}),
        ("v4", "started", at(8, 22), None, None, {"stable": "v2"}),
        ("v4", "stage_started", at(8, 22), 0, 1.0, {}),
    ]  # fmt: skip
    for version, state, when, stage, traffic, detail in log:
        if state == "started":
            detail = {"name": NAME, "version": version, "stages": [1, 10, 50, 100], **detail}
        store.append_transition(
            rid(version), state, at=when, stage=stage, traffic=traffic, detail=detail
        )


def _aggregates(store: Store, rows: list[tuple[str, str, str, str, str, float]]) -> None:
    """(release, cohort, metric, field, le, value) windows of 2026-W07 / the v3 rollout."""
    for k, (release, cohort, metric, field, le, value) in enumerate(rows):
        (sid,) = store.con.execute(
            "INSERT INTO series (release, cohort, metric, field, le) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING series_id",
            [release, cohort, metric, field, le],
        ).fetchone() or (None,)
        start = at(4, 9) if release in ("v2", "v3") else datetime(2026, 2, 10, tzinfo=UTC)
        store.con.execute(
            "INSERT INTO aggregates VALUES (?, ?, ?, ?, 999)",
            [sid, start + timedelta(minutes=k), start + timedelta(minutes=k + 1), value],
        )


def build_synthetic(path: Path) -> None:
    with Store(path) as store:
        for version in ("v0", "v1", "v2", "v3", "v4"):
            store.register_release(ReleaseRecord(NAME, version, f"sha-{version}", MANIFEST))
        # Rollout v2's window: 10:00-11:30 at 1 % and 50 %, stable exactly 98 % successes.
        stable = _events("v1", "stable", at(3, 10, 30), 2000, fail_every=50, latency=4000.0)
        canary = _events("v2", "canary", at(3, 10, 30), 2000, fail_every=40, latency=4200.0)
        store.ingest_events(pd.concat([stable, canary], ignore_index=True))
        # The stable cohort two weeks before (2026-W08), for the trend.
        store.ingest_events(
            _events("v0", "stable", datetime(2026, 2, 17, 8, tzinfo=UTC), 500, fail_every=25,
                    latency=3000.0)
        )  # fmt: skip
        con = store.con
        # Ingest times as if they ran on time: 5 minutes after the newest task.
        con.execute(
            "UPDATE ingests SET started_at = n.newest + INTERVAL 5 MINUTE, "
            "finished_at = n.newest + INTERVAL 5 MINUTE "
            "FROM (SELECT ingest_id, max(ts) AS newest FROM events GROUP BY ingest_id) AS n "
            "WHERE ingests.ingest_id = n.ingest_id"
        )
        failed = store.record_failed_ingest("prometheus", "connection refused", stable="v2")
        con.execute(
            "UPDATE ingests SET started_at = ?, finished_at = ? WHERE ingest_id = ?",
            [at(5, 3), at(5, 3), failed],
        )
        _aggregates(store, [
            ("v0", "stable", "tasks", "count", "", 100.0),
            ("v0", "stable", "tasks", "success", "", 95.0),
            ("v0", "stable", "latency_ms", "bucket", "1000", 50.0),
            ("v0", "stable", "latency_ms", "bucket", "2000", 100.0),
            ("v0", "stable", "latency_ms", "bucket", "inf", 100.0),
            ("v0", "stable", "tokens_per_task", "count", "", 100.0),
            ("v0", "stable", "tokens_per_task", "sum", "", 30000.0),
            ("v3", "canary", "tasks", "count", "", 10.0),
            ("v2", "stable", "tasks", "count", "", 990.0),
        ])  # fmt: skip
        for kind, day in (("partial_response", 5), ("partial_response", 6), ("nan", 7)):
            start = datetime(2026, 2 if kind == "nan" else 3, day, tzinfo=UTC)
            con.execute(
                "INSERT INTO data_issues VALUES (?, ?, 'v2', 'v3', 'stable', ?, 'test', 1)",
                [start, start + timedelta(minutes=1), kind],
            )
        _transitions(store)
        verdicts = [
            ("v1", "v0", "hold", datetime(2026, 3, 1, 21, tzinfo=UTC), {}),
            ("v2", "v1", "hold", at(3, 10, 5), {}),
            ("v2", "v1", "hold", at(3, 10, 20), {}),
            ("v2", "v1", "promote", at(3, 10, 30), {}),
            ("v2", "v1", "hold", at(3, 11, 30), {}),
            ("v2", "v1", "promote", at(3, 12), FINAL_METRICS),
            ("v3", "v2", "hold", at(4, 9, 10), {}),
        ]
        for release, stable_v, decision, when, metrics in verdicts:
            vid = store.record_verdict(
                _verdict(decision, 1, metrics), fingerprint="test", release=release,
                stable=stable_v,
            )  # fmt: skip
            con.execute("UPDATE verdicts SET decided_at = ? WHERE verdict_id = ?", [when, vid])


@pytest.fixture(scope="session")
def synthetic_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "synthetic.duckdb"
    build_synthetic(path)
    return path


@pytest.fixture
def synthetic_copy(synthetic_db: Path, tmp_path: Path) -> Path:
    """A copy for a test that opens the store read-write."""
    return Path(shutil.copy(synthetic_db, tmp_path / "copy.duckdb"))


@pytest.fixture(scope="session")
def synthetic_report(synthetic_db: Path) -> WeeklyReport:
    now = datetime(2026, 3, 9, 6, tzinfo=UTC)
    return build_report(synthetic_db, WEEK, n_resamples=RESAMPLES, now=now)


@pytest.fixture(scope="session")
def synthetic_page(synthetic_report: WeeklyReport) -> str:
    """The hand-made week as HTML (rendering the figures takes about a second)."""
    return render_html(synthetic_report)
