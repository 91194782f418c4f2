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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from ..errors import CanaryStatsError, EventsError, StoreError, StoreUnreadable
from ..sources._pull import Pull
from ..summary import Summary, UserHistory, validate_events
from . import _releases, _rollouts
from ._query import (
    Selection,
    SourceChoice,
    latest_ingest_failure,
    series_of,
    store_history,
    summarize_store,
)
from ._releases import ReleaseRecord, ReleaseStatus
from ._rollouts import Command, CommandRecord, PostmortemRecord, TransitionRecord
from ._schema import first_row, migrate
from ._writes import (
    aggregate_rows,
    check_grid,
    write_eval_scores,
    write_events,
    write_pull,
)

__all__ = ["DEFAULT_PATH", "DUCKDB_CONFIG", "TABLES", "IngestResult", "Store", "StoreView"]

#: Where the store lives unless told otherwise (relative to the working directory).
DEFAULT_PATH = Path("data") / "canary_stats.duckdb"

#: Tables exported to Parquet snapshots, in dependency-free order.
TABLES = (
    "events",
    "events_duplicates",
    "eval_scores",
    "series",
    "aggregates",
    "data_issues",
    "ingests",
    "releases",
    "verdicts",
    "rollout_transitions",
    "rollout_commands",
    "postmortems",
)

_EVAL_COLUMNS = ("request_id", "ts", "release", "cohort", "eval_score")

#: Every connection of canary_stats: no extension is installed or loaded behind our
#: back (DuckDB would fetch one from the internet to read, say, an SQLite file).
DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

# A DuckDB file: a 4 KiB file header with b"DUCK" at offset 8, two 4 KiB database
# headers, then blocks of `block_size` bytes.
_MAGIC, _HEADERS = b"DUCK", 3 * 4096


def _check_header(path: Path) -> None:
    """Refuse, before DuckDB sees it, a file that is not a DuckDB database at all."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEADERS)
    except OSError as exc:
        raise StoreUnreadable(f"{path}: cannot read: {exc.strerror}") from None
    if head[8:12] != _MAGIC:
        what = "an empty file" if not head else "not a DuckDB file"
        raise StoreUnreadable(f"{path}: {what}, so not a canary_stats store; left untouched")
    if len(head) < _HEADERS:
        raise StoreUnreadable(f"{path}: damaged: {len(head)} bytes, shorter than its headers")


def _check_blocks(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a file that ends before the last block its tables use (a truncated copy).

    Only the tables' metadata is read (one row per column segment), not their data.
    """
    tables = [row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    if not tables:
        return
    segments = " UNION ALL ".join(
        "SELECT block_id, additional_block_ids FROM pragma_storage_info('{}') "
        "WHERE persistent".format(t.replace("'", "''"))
        for t in tables
    )
    row = first_row(
        con.execute(
            "SELECT max(greatest(block_id, coalesce(list_max(additional_block_ids), -1))), "
            f"any_value(p.block_size) FROM ({segments}), pragma_database_size() AS p"
        )
    )
    if not row or row[0] is None:
        return
    need = _HEADERS + (int(row[0]) + 1) * int(row[1])
    have = path.stat().st_size
    if have < need:
        raise StoreUnreadable(
            f"{path}: damaged: {have:,} bytes where its data needs {need:,} (truncated?); "
            "left untouched, restore it from a copy"
        )


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
        exists = self.path.exists()
        if exists:
            _check_header(self.path)
        elif read_only:
            raise StoreError(f"{self.path}: no such store")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only, config=DUCKDB_CONFIG)
        except duckdb.Error as exc:
            # Another process holding the file passes; anything else will not.
            busy = any(s in str(exc) for s in ("Could not set lock", "Conflicting lock"))
            raise (StoreError if busy else StoreUnreadable)(
                f"{self.path}: cannot open: {exc}"
            ) from None
        try:
            if exists:
                _check_blocks(self.con, self.path)
            if not read_only:
                migrate(self.con, str(self.path))
        except BaseException:
            self.con.close()
            raise
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
        re-ingesting the same export changes nothing; a stored id with other
        content (``user_id`` included) refuses the batch (see `write_events`).
        A ``user_id`` column must give every row a non-empty id, or be null on
        every row (no user ids): anything between refuses the batch, naming
        ``user_id`` and the rows, and nothing is stored.
        """
        batch = validate_events(events)

        def write(ingest_id: int) -> tuple[int, int]:
            return write_events(self.con, batch, ingest_id)

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
            return write_eval_scores(self.con, batch, ingest_id)

        return self._ingest(source, write)

    def ingest_pull(
        self, pull: Pull, *, stable: str, canary: str, source: str = "prometheus"
    ) -> IngestResult:
        """Store a pull's windows and issues for the (stable, canary) pair.

        A window already stored is left as it was (re-pulling changes nothing),
        unless it was marked untrustworthy and the new pull is clean: then the
        new numbers replace it, so a transient partial response heals.
        """
        frame = aggregate_rows(pull.aggregates, stable=stable, canary=canary)
        issues = pull.issues_frame()
        issues["stable"], issues["canary"] = stable, canary
        check_grid(frame)

        def write(ingest_id: int) -> tuple[int, int]:
            return write_pull(
                self.con, frame, issues, ingest_id, stable=stable, canary=canary,
                covered=(pull.start, pull.end),
            )  # fmt: skip

        return self._ingest(source, write, stable=stable, canary=canary, issues=len(issues))

    def record_failed_ingest(
        self, source: str, error: str, *, stable: str | None = None, canary: str | None = None
    ) -> int:
        """Log an ingest that could not run at all (e.g. Prometheus down)."""
        now = datetime.now(UTC)
        return self._log_ingest(source, now, now, "failed", stable, canary, 0, 0, error)

    def _ingest(
        self,
        source: str,
        write: Callable[[int], tuple[int, int]],
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

    # -- release history ---------------------------------------------------------

    def register_release(self, release: ReleaseRecord) -> bool:
        """Record a release manifest and its file hashes; True if it was new."""
        return _releases.register(self.con, release)

    def set_release_status(self, name: str, version: str, status: ReleaseStatus) -> None:
        """Mark a release ``stable`` (promoted to 100 %) or ``rolled_back``."""
        _releases.set_status(self.con, name=name, version=version, status=status)

    def previous_stable(self, name: str, *, before: str | None = None) -> ReleaseRecord | None:
        """The rollback target: the latest stable release of ``name`` other than ``before``."""
        return _releases.previous_stable(self.con, name, before=before)

    def releases(self, name: str | None = None) -> list[ReleaseRecord]:
        return _releases.releases(self.con, name)

    # -- rollouts: transitions, manual commands, postmortems (see _rollouts) -------

    def append_transition(
        self, rollout_id: str, state: str, *, at: datetime, stage: int | None = None,
        traffic: float | None = None, detail: dict[str, Any] | None = None,
        command_id: int | None = None,
    ) -> TransitionRecord:  # fmt: skip
        return _rollouts.append_transition(
            self.con, rollout_id, state, at=at, stage=stage, traffic=traffic, detail=detail,
            command_id=command_id,
        )  # fmt: skip

    def transitions(self, rollout_id: str) -> list[TransitionRecord]:
        return _rollouts.transitions(self.con, rollout_id)

    def latest_rollout(self, name: str) -> str | None:
        return _rollouts.latest_rollout(self.con, name)

    def queue_command(
        self, rollout_id: str, command: Command, *, requested_by: str, at: datetime
    ) -> CommandRecord:
        return _rollouts.queue_command(
            self.con, rollout_id, command, requested_by=requested_by, at=at
        )

    def commands(self, rollout_id: str, *, queued_only: bool = False) -> list[CommandRecord]:
        return _rollouts.commands(self.con, rollout_id, queued_only=queued_only)

    def refuse_command(
        self, command_id: int, *, seq: int | None, reason: str, at: datetime
    ) -> bool:
        return _rollouts.refuse_command(self.con, command_id, seq=seq, reason=reason, at=at)

    def record_postmortem(self, record: PostmortemRecord) -> bool:
        return _rollouts.record_postmortem(self.con, record)

    def postmortems(
        self, *, name: str | None = None, rollout_id: str | None = None
    ) -> list[PostmortemRecord]:
        return _rollouts.postmortems(self.con, name=name, rollout_id=rollout_id)

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


@dataclass(frozen=True, slots=True)
class StoreView:
    """A `Selection` of a store: what `analyze` judges when given a store."""

    store: Store
    selection: Selection

    def summary(self, *, history: UserHistory | None = None) -> Summary:
        return summarize_store(
            self.store.con,
            self.selection,
            series=self.store.series_of(self.selection),
            failure=self.store.latest_ingest_failure(self.selection),
            history=history,
        )

    def history(self) -> UserHistory:
        """The selection's stable events as users' history (`UserHistory`), for a later rollout."""
        return store_history(self.store.con, self.selection)
