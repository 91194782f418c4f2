"""The store's own schema, versioned and migrated forward in one transaction per step.

A migration is a list of SQL statements appended to `MIGRATIONS`; never edit a
released step, add a new one. A file written by a newer canary_stats (a higher
version than this code knows) is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Any

import duckdb

from ..errors import StoreError, StoreUnreadable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "first_row", "migrate", "schema_version"]

_V1 = [
    "CREATE TYPE cohort_t AS ENUM ('stable', 'canary', 'shadow')",
    # One row per finished task. request_id makes ingestion idempotent; rows
    # without one get a content hash (see Store.ingest_events).
    """CREATE TABLE events (
        request_id VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        cohort cohort_t NOT NULL,
        release VARCHAR,
        success BOOLEAN NOT NULL,
        latency_ms DOUBLE NOT NULL CHECK (latency_ms >= 0),
        tokens DOUBLE NOT NULL CHECK (tokens >= 0),
        eval_score DOUBLE CHECK (eval_score BETWEEN 0 AND 1),
        user_id VARCHAR,
        ingest_id BIGINT NOT NULL
    )""",
    # Per-task eval scores from report cards; the cohort may be resolved from
    # the release at query time.
    """CREATE TABLE eval_scores (
        request_id VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        release VARCHAR NOT NULL,
        cohort cohort_t,
        eval_score DOUBLE NOT NULL CHECK (eval_score BETWEEN 0 AND 1),
        ingest_id BIGINT NOT NULL,
        PRIMARY KEY (release, request_id)
    )""",
    # One row per aggregate series (release x cohort x metric x field x bucket). `le`
    # is the bucket bound as text ('' for non-bucket fields, 'inf' for +Inf) so it can
    # be part of the key; verdicts sum values by the integer id, which keeps them fast.
    "CREATE SEQUENCE series_ids START 1",
    """CREATE TABLE series (
        series_id INTEGER PRIMARY KEY DEFAULT nextval('series_ids'),
        release VARCHAR NOT NULL,
        cohort cohort_t NOT NULL,
        metric VARCHAR NOT NULL,
        field VARCHAR NOT NULL,
        le VARCHAR NOT NULL,
        UNIQUE (release, cohort, metric, field, le)
    )""",
    # Per-window values of a series; the window key makes re-ingestion a no-op.
    """CREATE TABLE aggregates (
        series_id INTEGER NOT NULL,
        window_start TIMESTAMPTZ NOT NULL,
        window_end TIMESTAMPTZ NOT NULL,
        value DOUBLE,
        ingest_id BIGINT NOT NULL,
        PRIMARY KEY (series_id, window_start),
        CHECK (window_end > window_start)
    )""",
    # The same, one readable row per value (for notebooks and ad-hoc SQL).
    """CREATE VIEW aggregate_rows AS
        SELECT a.window_start, a.window_end, s.cohort, s.release, s.metric, s.field, s.le,
               a.value, a.ingest_id
        FROM aggregates AS a JOIN series AS s USING (series_id)""",
    # What made a pulled window untrustworthy, for the (stable, canary) pair pulled.
    """CREATE TABLE data_issues (
        window_start TIMESTAMPTZ NOT NULL,
        window_end TIMESTAMPTZ NOT NULL,
        stable VARCHAR NOT NULL,
        canary VARCHAR NOT NULL,
        cohort cohort_t,
        kind VARCHAR NOT NULL,
        detail VARCHAR NOT NULL,
        ingest_id BIGINT NOT NULL
    )""",
    """CREATE TABLE ingests (
        ingest_id BIGINT PRIMARY KEY,
        source VARCHAR NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ NOT NULL,
        status VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
        stable VARCHAR,
        canary VARCHAR,
        inserted BIGINT NOT NULL,
        skipped BIGINT NOT NULL,
        detail VARCHAR NOT NULL
    )""",
    """CREATE TABLE releases (
        name VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        manifest_sha256 VARCHAR NOT NULL,
        manifest VARCHAR NOT NULL,
        hashes VARCHAR NOT NULL,  -- JSON: referenced file -> sha256
        registered_at TIMESTAMPTZ NOT NULL,
        -- registered -> stable (promoted to 100 %) or rolled_back; the previous stable
        -- release is the rollback target
        status VARCHAR NOT NULL DEFAULT 'registered'
            CHECK (status IN ('registered', 'stable', 'rolled_back')),
        status_at TIMESTAMPTZ,
        PRIMARY KEY (name, version)
    )""",
    # Append-only: every decision with a fingerprint of what it was computed from.
    "CREATE SEQUENCE verdict_ids START 1",
    """CREATE TABLE verdicts (
        verdict_id BIGINT PRIMARY KEY DEFAULT nextval('verdict_ids'),
        decided_at TIMESTAMPTZ NOT NULL,
        release VARCHAR,
        stable VARCHAR,
        stage INTEGER NOT NULL,
        decision VARCHAR NOT NULL CHECK (decision IN ('promote', 'hold', 'rollback')),
        reason VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        verdict VARCHAR NOT NULL  -- JSON text; json_extract reads it, no parse on insert
    )""",
    # The executor's state machine: each transition written before it is acted on.
    """CREATE TABLE rollout_transitions (
        rollout_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        state VARCHAR NOT NULL,
        stage INTEGER,
        traffic DOUBLE,
        detail JSON NOT NULL,
        PRIMARY KEY (rollout_id, seq)
    )""",
]

_V2 = [
    # Manual commands for a running rollout, queued by `canary-stats rollout pause|...`
    # and handled in order by the executor. A sequence, not max(id) + 1, so commands
    # queued at the same moment from several connections never collide.
    "CREATE SEQUENCE rollout_command_ids START 1",
    """CREATE TABLE rollout_commands (
        rollout_id VARCHAR NOT NULL,
        id BIGINT PRIMARY KEY DEFAULT nextval('rollout_command_ids'),
        command VARCHAR NOT NULL CHECK (command IN ('pause', 'resume', 'abort', 'promote')),
        requested_at TIMESTAMPTZ NOT NULL,
        requested_by VARCHAR NOT NULL,
        -- NULL while queued; else the transition it caused (applied) or the one in
        -- force when it was refused
        handled_seq BIGINT,
        handled_at TIMESTAMPTZ,
        outcome VARCHAR CHECK (outcome IN ('applied', 'refused')),
        reason VARCHAR
    )""",
    # One entry per rolled-back rollout: what failed, the evidence, the timeline.
    """CREATE TABLE postmortems (
        rollout_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        stable_version VARCHAR,
        created_at TIMESTAMPTZ NOT NULL,
        guardrail VARCHAR,
        estimate DOUBLE,
        interval_low DOUBLE,
        interval_high DOUBLE,
        reason VARCHAR NOT NULL,
        verdict JSON,
        timeline JSON NOT NULL  -- the rollout's transitions, oldest first
    )""",
]

# Before 3, a stored request_id was looked for only in the new batch's time range, so
# a re-timed export could store a task twice. Each copy after the first ingested one
# moves to events_duplicates: nothing is lost, and the judge counts every task once.
_FIRST_COPY = "row_number() OVER (PARTITION BY request_id ORDER BY ingest_id, ts)"
_V3 = [
    "CREATE TABLE events_duplicates AS SELECT * FROM events LIMIT 0",
    f"""INSERT INTO events_duplicates
        SELECT * EXCLUDE (copy) FROM (SELECT *, {_FIRST_COPY} AS copy FROM events)
        WHERE copy > 1""",
    f"""DELETE FROM events WHERE rowid IN (
        SELECT rowid FROM (SELECT rowid, {_FIRST_COPY} AS copy FROM events) WHERE copy > 1)""",
]

#: Step ``i`` takes the schema from version ``i`` to ``i + 1``.
MIGRATIONS: list[list[str]] = [_V1, _V2, _V3]
SCHEMA_VERSION = len(MIGRATIONS)


def first_row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of a result, consuming all of it.

    DuckDB 2 streams results: a result read only partly keeps the connection
    busy, so every read here drains the result.
    """
    rows = result.fetchall()
    return tuple(rows[0]) if rows else None


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The version recorded in the file (0 for a new, empty file)."""
    found = first_row(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_meta'"
        )
    )
    if not found or not found[0]:
        return 0
    row = first_row(con.execute("SELECT max(version) FROM schema_meta"))
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection, path: str) -> int:
    """Bring the file to `SCHEMA_VERSION`; each step is one transaction."""
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        raise StoreUnreadable(
            f"{path}: schema version {current} was written by a newer canary_stats "
            f"(this one knows up to {SCHEMA_VERSION}); upgrade canary_stats to open it"
        )
    for version in range(current, SCHEMA_VERSION):
        con.begin()
        try:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_meta "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
            )
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute("INSERT INTO schema_meta VALUES (?, now())", [version + 1])
            con.commit()
        except duckdb.Error as exc:
            con.rollback()
            raise StoreError(f"{path}: migration to schema {version + 1} failed: {exc}") from exc
    return SCHEMA_VERSION
