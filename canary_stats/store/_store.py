"""The DuckDB store: one file holding events, aggregates, releases, verdicts and rollouts.

One process owns the file read-write (DuckDB's lock); notebooks read Parquet
snapshots from `Store.export`. Every ingest is one transaction: it either lands
whole or leaves the file exactly as it was, and a failed ingest is still logged
(in ``ingests``) so the judge can hold on stale data with the reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import CanaryStatsError, EventsError, StoreError
from ..sources._pull import Pull
from ..summary import AGGREGATE_COLUMNS, Summary, _utc, validate_events
from ._query import (
    Selection,
    SourceChoice,
    latest_ingest_failure,
    series_of,
    summarize_store,
)
from ._schema import first_row, migrate

__all__ = ["DEFAULT_PATH", "TABLES", "IngestResult", "Store", "StoreView"]

#: Where the store lives unless told otherwise (relative to the working directory).
DEFAULT_PATH = Path("data") / "canary_stats.duckdb"

#: Tables exported to Parquet snapshots, in dependency-free order.
TABLES = (
    "events",
    "eval_scores",
    "series",
    "aggregates",
    "data_issues",
    "ingests",
    "releases",
    "verdicts",
    "rollout_transitions",
)

_EVENT_COLS = "request_id, ts, cohort, release, success, latency_ms, tokens, eval_score, user_id"
_EVAL_COLUMNS = ("request_id", "ts", "release", "cohort", "eval_score")
_SERIES_KEY = ("release", "cohort", "metric", "field", "le")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest did: rows inserted, rows already present (skipped)."""

    ingest_id: int
    inserted: int
    skipped: int
    issues: int = 0


class Store:
    """A canary_stats DuckDB file, migrated to the current schema on open.

    Use as a context manager (``with Store(path) as store:``) so the file lock
    is released on exit.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise StoreError(f"{self.path}: no such store")
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from None
        if not read_only:
            migrate(self.con, str(self.path))
        # Per release pair: its series and its latest ingest's failure. This process is
        # the file's only writer, and every ingest clears the cache.
        self._series: dict[tuple[str | None, str | None], list[tuple[Any, ...]]] = {}
        self._failures: dict[tuple[str | None, str | None], str | None] = {}

    def series_of(self, selection: Selection) -> list[tuple[Any, ...]]:
        key = (selection.stable, selection.canary)
        if key not in self._series:
            self._series[key] = series_of(self.con, selection)
        return self._series[key]

    def latest_ingest_failure(self, selection: Selection) -> str | None:
        key = (selection.stable, selection.canary)
        if key not in self._failures:
            self._failures[key] = latest_ingest_failure(self.con, selection)
        return self._failures[key]

    def _forget(self) -> None:
        self._series.clear()
        self._failures.clear()

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, read_only={self.read_only})"

    def count(self, table: str) -> int:
        """Rows in one of `TABLES`."""
        if table not in TABLES:
            raise EventsError("table", f"unknown table {table!r}; expected one of {TABLES}")
        row = first_row(self.con.execute(f"SELECT count(*) FROM {table}"))
        return int(row[0]) if row else 0

    def select(
        self,
        *,
        stable: str | None = None,
        canary: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        source: SourceChoice = "auto",
    ) -> StoreView:
        """The data one verdict looks at (see `Selection`); pass it to `analyze`."""
        return StoreView(self, Selection(stable, canary, start, end, source))

    # -- ingestion ---------------------------------------------------------------

    def ingest_events(self, events: pd.DataFrame, *, source: str = "events") -> IngestResult:
        """Append raw events; tasks already stored (same ``request_id``) are skipped.

        Rows without a ``request_id`` get one from a hash of their content, so
        re-ingesting the same export changes nothing. Duplicates are looked up
        only among stored events in the batch's time range (a task's end time
        does not change), which keeps re-ingestion cheap on a large store.
        """
        batch = validate_events(events)
        span = pc.min_max(batch["ts"])
        lo, hi = span["min"].as_py(), span["max"].as_py()

        # Hash only when some rows lack an id: hashing every row costs a fifth of an ingest.
        request_id = (
            "request_id"
            if batch["request_id"].null_count == 0
            else "coalesce(request_id, printf('h%016x', hash(ts, cohort, release, success, "
            "latency_ms, tokens, eval_score, user_id)))"
        )

        def write(ingest_id: int) -> tuple[int, int]:
            self.con.register("batch", batch)
            row = first_row(
                self.con.execute("SELECT count(request_id) - count(DISTINCT request_id) FROM batch")
            )
            if row and row[0]:
                raise EventsError(
                    "request_id", f"{row[0]} duplicated values; each task must appear once"
                )
            self.con.execute(
                f"""
                INSERT INTO events
                SELECT {_EVENT_COLS}, $ingest_id FROM (
                    SELECT {request_id} AS request_id, ts, cohort::cohort_t AS cohort,
                           release, success, latency_ms, tokens, eval_score, user_id
                    FROM batch
                ) AS b
                WHERE NOT EXISTS (
                    SELECT 1 FROM events AS e
                    WHERE e.ts BETWEEN $lo AND $hi AND e.request_id = b.request_id
                )
                """,
                {"ingest_id": ingest_id, "lo": lo, "hi": hi},
            )
            inserted = _rows_changed(self.con)
            self.con.unregister("batch")
            return inserted, batch.num_rows - inserted

        return self._ingest(source, write)

    def ingest_eval_scores(
        self, scores: pd.DataFrame, *, source: str = "report-card"
    ) -> IngestResult:
        """Append per-task eval scores (e.g. from a report card); repeats are skipped."""
        missing = [c for c in _EVAL_COLUMNS if c not in scores.columns]
        if missing:
            raise EventsError(missing[0], f"missing column; eval scores need {list(_EVAL_COLUMNS)}")
        batch = scores.loc[:, list(_EVAL_COLUMNS)].copy()

        def write(ingest_id: int) -> tuple[int, int]:
            self.con.register("batch", batch)
            self.con.execute(
                """
                INSERT OR IGNORE INTO eval_scores
                SELECT request_id, ts, release, cohort::cohort_t, eval_score, $ingest_id
                FROM batch
                """,
                {"ingest_id": ingest_id},
            )
            inserted = _rows_changed(self.con)
            self.con.unregister("batch")
            return inserted, len(batch) - inserted

        return self._ingest(source, write)

    def ingest_pull(
        self, pull: Pull, *, stable: str, canary: str, source: str = "prometheus"
    ) -> IngestResult:
        """Store a pull's windows and issues for the (stable, canary) pair.

        A window already stored is left as it was (re-pulling changes nothing),
        unless it was marked untrustworthy and the new pull is clean: then the
        new numbers replace it, so a transient partial response heals.
        """
        frame = _aggregate_rows(pull.aggregates, stable=stable, canary=canary)
        issues = pull.issues_frame()
        issues["stable"], issues["canary"] = stable, canary
        _check_grid(frame)

        def write(ingest_id: int) -> tuple[int, int]:
            pair = {"stable": stable, "canary": canary}
            self.con.register("new_series", frame[list(_SERIES_KEY)].drop_duplicates())
            try:
                self.con.execute(
                    "INSERT OR IGNORE INTO series (release, cohort, metric, field, le) "
                    "SELECT release, cohort::cohort_t, metric, field, le FROM new_series"
                )
            finally:
                self.con.unregister("new_series")
            ids = self.con.execute(
                "SELECT series_id, release, cohort::VARCHAR AS cohort, metric, field, le "
                "FROM series WHERE release IN ($stable, $canary)",
                pair,
            ).df()
            rows = frame.merge(ids, on=list(_SERIES_KEY), how="left", validate="many_to_one")
            self.con.register("new_rows", rows)
            self.con.register("new_issues", issues)
            try:
                clash = first_row(
                    self.con.execute(
                        """
                    SELECT n.metric, n.window_start, a.window_start, a.window_end
                    FROM new_rows AS n JOIN aggregates AS a
                      ON a.series_id = n.series_id
                     AND a.window_start < n.window_end AND n.window_start < a.window_end
                     AND NOT (a.window_start = n.window_start AND a.window_end = n.window_end)
                    LIMIT 1
                    """
                    )
                )
                if clash:
                    raise EventsError(
                        "window",
                        f"{clash[0]} window at {clash[1]} overlaps the stored window "
                        f"{clash[2]} to {clash[3]}; pull with the same window size",
                    )
                # Heal: windows stored with issues that this pull brings back clean.
                healed = """
                    SELECT DISTINCT d.window_start FROM data_issues AS d
                    WHERE d.stable = $stable AND d.canary = $canary
                      AND d.window_start IN (SELECT window_start FROM new_rows)
                      AND d.window_start NOT IN (SELECT window_start FROM new_issues)
                """
                self.con.execute(
                    f"DELETE FROM aggregates WHERE series_id IN "
                    f"(SELECT series_id FROM series WHERE release IN ($stable, $canary)) "
                    f"AND window_start IN ({healed})",
                    pair,
                )
                self.con.execute(
                    f"DELETE FROM data_issues WHERE stable = $stable AND canary = $canary "
                    f"AND window_start IN ({healed})",
                    pair,
                )
                self.con.execute(
                    """
                    INSERT OR IGNORE INTO aggregates
                    SELECT series_id, window_start, window_end, value, $ingest_id
                    FROM new_rows
                    """,
                    {"ingest_id": ingest_id},
                )
                inserted = _rows_changed(self.con)
                self.con.execute(
                    """
                    INSERT INTO data_issues
                    SELECT n.window_start, n.window_end, n.stable, n.canary,
                           n.cohort::cohort_t, n.kind, n.detail, $ingest_id
                    FROM new_issues AS n
                    WHERE NOT EXISTS (
                        SELECT 1 FROM data_issues AS d
                        WHERE d.stable = n.stable AND d.canary = n.canary
                          AND d.window_start = n.window_start AND d.kind = n.kind
                          AND d.cohort IS NOT DISTINCT FROM n.cohort::cohort_t
                          AND d.detail = n.detail
                    )
                    """,
                    {"ingest_id": ingest_id},
                )
            finally:
                self.con.unregister("new_rows")
                self.con.unregister("new_issues")
            return inserted, len(frame) - inserted

        try:
            return self._ingest(source, write, stable=stable, canary=canary, issues=len(issues))
        finally:
            self._forget()  # new series may have been added

    def record_failed_ingest(
        self, source: str, error: str, *, stable: str | None = None, canary: str | None = None
    ) -> int:
        """Log an ingest that could not run at all (e.g. Prometheus down)."""
        now = datetime.now(UTC)
        return self._log_ingest(source, now, now, "failed", stable, canary, 0, 0, error)

    def _ingest(
        self,
        source: str,
        write: Any,
        *,
        stable: str | None = None,
        canary: str | None = None,
        issues: int = 0,
    ) -> IngestResult:
        if self.read_only:
            raise StoreError(f"{self.path}: opened read-only; cannot ingest")
        started = datetime.now(UTC)
        ingest_id = self._next_id("ingests", "ingest_id")
        self.con.begin()
        try:
            inserted, skipped = write(ingest_id)
            self.con.execute(
                "INSERT INTO ingests VALUES (?, ?, ?, now(), 'ok', ?, ?, ?, ?, '')",
                [ingest_id, source, started, stable, canary, inserted, skipped],
            )
            self.con.commit()
            self._forget()
        except (CanaryStatsError, duckdb.Error) as exc:
            self.con.rollback()
            self._log_ingest(
                source, started, datetime.now(UTC), "failed", stable, canary, 0, 0, str(exc)
            )
            if isinstance(exc, CanaryStatsError):
                raise
            raise EventsError(source, f"rejected by the store: {exc}") from None
        return IngestResult(ingest_id, inserted, skipped, issues)

    def _log_ingest(self, source: str, started: datetime, finished: datetime, *rest: Any) -> int:
        self._forget()
        ingest_id = self._next_id("ingests", "ingest_id")
        self.con.execute(
            "INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [ingest_id, source, started, finished, *rest],
        )
        return ingest_id

    def _next_id(self, table: str, column: str) -> int:
        row = first_row(self.con.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}"))
        return int(row[0]) if row else 1

    # -- audit log ---------------------------------------------------------------

    def record_verdict(
        self,
        verdict: dict[str, Any],
        *,
        fingerprint: str,
        release: str | None = None,
        stable: str | None = None,
    ) -> int:
        """Append one decision (the verdict's JSON form) to the audit log."""
        row = first_row(
            self.con.execute(
                "INSERT INTO verdicts (decided_at, release, stable, stage, decision, reason, "
                "fingerprint, verdict) VALUES (now(), ?, ?, ?, ?, ?, ?, ?) RETURNING verdict_id",
                [
                    release,
                    stable,
                    int(verdict["stage"]),
                    verdict["decision"],
                    verdict["reason"],
                    fingerprint,
                    json.dumps(verdict, sort_keys=True),
                ],
            )
        )
        verdict_id = int(row[0]) if row else 0
        return verdict_id

    def verdicts(self) -> pd.DataFrame:
        """The audit log, oldest first."""
        return self.con.execute("SELECT * FROM verdicts ORDER BY verdict_id").df()

    # -- snapshots ---------------------------------------------------------------

    def export(self, directory: str | Path) -> dict[str, Path]:
        """Write a consistent Parquet snapshot of every table into ``directory``.

        All tables are read in one transaction (one snapshot), and each file is
        written to a temporary name and renamed, so a reader never sees half a file.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        self.con.begin()
        try:
            tables = {t: self.con.sql(f"SELECT * FROM {t}").to_arrow_table() for t in TABLES}
        finally:
            self.con.commit()
        for name, table in tables.items():
            target = out / f"{name}.parquet"
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".parquet")
            os.close(fd)
            pq.write_table(table, tmp)
            os.replace(tmp, target)
            paths[name] = target
        return paths


def _rows_changed(con: duckdb.DuckDBPyConnection) -> int:
    row = first_row(con)
    return int(row[0]) if row else 0


def _le_text(le: pd.Series) -> pd.Series:
    values = pd.to_numeric(le, errors="coerce")
    text = values.map(lambda v: "" if pd.isna(v) else repr(float(v)))
    return text.astype(str)


def _aggregate_rows(aggregates: pd.DataFrame, *, stable: str, canary: str) -> pd.DataFrame:
    """Normalise a pull's aggregates frame into the stored column layout."""
    missing = [c for c in AGGREGATE_COLUMNS if c not in aggregates.columns]
    if missing:
        raise EventsError(missing[0], f"missing column; aggregates need {list(AGGREGATE_COLUMNS)}")
    frame = aggregates.loc[:, list(AGGREGATE_COLUMNS)].copy()
    unknown = sorted(set(frame["cohort"].astype(str)) - {"stable", "canary"})
    if unknown:
        raise EventsError("cohort", f"unknown labels {unknown[:5]}; expected 'stable' or 'canary'")
    for col in ("window_start", "window_end"):
        frame[col] = _utc(frame[col], col)
    by_cohort = np.where(frame["cohort"].astype(str) == "canary", canary, stable)
    if "release" in aggregates.columns:
        given = aggregates["release"].astype("string")
        frame["release"] = np.where(given.isna().to_numpy(), by_cohort, given.astype(object))
    else:
        frame["release"] = by_cohort
    frame["le"] = _le_text(frame["le"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    if (frame["value"] < 0).any():
        raise EventsError("value", "aggregate counts and sums must be >= 0")
    return frame


def _check_grid(frame: pd.DataFrame) -> None:
    """Within one pull, windows of a series must not overlap one another."""
    key = ["release", "cohort", "metric", "field", "le"]
    ordered = frame.sort_values([*key, "window_start"])
    same = (ordered[key].shift() == ordered[key]).all(axis=1)
    overlap = same & (ordered["window_start"] < ordered["window_end"].shift())
    if overlap.any():
        raise EventsError(
            "window_start",
            "windows overlap; use non-overlapping windows (increase(...[w]) with step = w)",
        )


@dataclass(frozen=True, slots=True)
class StoreView:
    """A `Selection` of a store: what `analyze` judges when given a store."""

    store: Store
    selection: Selection

    def summary(self) -> Summary:
        return summarize_store(
            self.store.con,
            self.selection,
            series=self.store.series_of(self.selection),
            failure=self.store.latest_ingest_failure(self.selection),
        )
