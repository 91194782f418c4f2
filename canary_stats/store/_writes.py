"""The SQL of each ingest: what one transaction writes (the store wraps and logs it)."""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import EventsError
from ..summary import AGGREGATE_COLUMNS
from ..summary._checks import utc_timestamps
from ._schema import first_row

__all__ = [
    "CONTENT_ID_SQL",
    "EVENT_COLUMNS_SQL",
    "EVENT_CONTENT",
    "SERIES_KEY",
    "aggregate_rows",
    "check_grid",
    "rows_changed",
    "write_eval_scores",
    "write_events",
    "write_pull",
]

EVENT_COLUMNS_SQL = (
    "request_id, ts, cohort, release, success, latency_ms, tokens, eval_score, user_id"
)
SERIES_KEY = ("release", "cohort", "metric", "field", "le")


#: The content of an event, compared when a stored task's ``request_id`` comes again.
EVENT_CONTENT = ("ts", "cohort", "release", "success", "latency_ms", "tokens", "eval_score",
                 "user_id")  # fmt: skip

#: The id of a row without ``request_id``: ``h`` and 16 hex digits of DuckDB's hash of
#: its content (every column but the id), so the same row always gets the same id.
CONTENT_ID_SQL = (
    "printf('h%016x', hash(ts, cohort, release, success, latency_ms, tokens, eval_score, user_id))"
)


def write_events(
    con: duckdb.DuckDBPyConnection,
    batch: pa.Table,
    ingest_id: int,
) -> tuple[int, int]:
    """Insert validated events not stored yet; (inserted, skipped).

    A ``request_id`` is unique in the store, whatever the time: a row whose id is
    stored with the same content is skipped; with other content (another time,
    cohort, release or value) the whole batch is refused, naming an example.
    Each check is one hash join of the batch against the stored ids, so an
    ingest costs time linear in the batch and the store, never their product.
    """
    # Hash only when some rows lack an id: hashing every row costs a fifth of an ingest.
    request_id = (
        "request_id"
        if batch["request_id"].null_count == 0
        else f"coalesce(request_id, {CONTENT_ID_SQL})"
    )
    rows = (
        f"SELECT {request_id} AS request_id, ts, cohort::VARCHAR AS cohort, release, success, "
        "latency_ms, tokens, eval_score, user_id FROM batch"
    )
    con.register("batch", batch)
    try:
        row = first_row(
            con.execute("SELECT count(request_id) - count(DISTINCT request_id) FROM batch")
        )
        if row and row[0]:
            raise EventsError(
                "request_id", f"{row[0]} duplicated values; each task must appear once"
            )
        _refuse_changed_tasks(con, rows)
        con.execute(
            f"""
            INSERT INTO events
            SELECT {EVENT_COLUMNS_SQL}, $ingest_id FROM ({rows}) AS b
            WHERE NOT EXISTS (SELECT 1 FROM events AS e WHERE e.request_id = b.request_id)
            """,
            {"ingest_id": ingest_id},
        )
        inserted = rows_changed(con)
    finally:
        con.unregister("batch")
    return inserted, batch.num_rows - inserted


def _refuse_changed_tasks(con: duckdb.DuckDBPyConnection, rows: str) -> None:
    """Refuse a batch in which a stored ``request_id`` comes with other content."""
    pairs = [(f"e.{c}::VARCHAR" if c == "cohort" else f"e.{c}", f"b.{c}") for c in EVENT_CONTENT]
    stored, given = (", ".join(side) for side in zip(*pairs, strict=True))
    differs = " OR ".join(f"{e} IS DISTINCT FROM {b}" for e, b in pairs)
    found = con.execute(
        f"""
        SELECT count(*) OVER (), b.request_id, e.ingest_id, {stored}, {given}
        FROM ({rows}) AS b JOIN events AS e USING (request_id)
        WHERE {differs}
        ORDER BY b.request_id
        LIMIT 1
        """
    ).fetchall()
    if not found:
        return
    n, example, by, *values = found[0]
    k = len(EVENT_CONTENT)
    field, old, new = next(
        (c, a, b) for c, a, b in zip(EVENT_CONTENT, values[:k], values[k:], strict=True) if a != b
    )
    raise EventsError(
        "request_id",
        f"{n} tasks are already stored with other content, e.g. {example!r}: {field} "
        f"{new!s} here, {old!s} as stored by ingest {by}; a request_id names one task, "
        "so a changed or re-timed task needs a new id (nothing was ingested)",
    )


def write_eval_scores(
    con: duckdb.DuckDBPyConnection, batch: pd.DataFrame, ingest_id: int
) -> tuple[int, int]:
    """Insert report-card scores not stored yet; (inserted, skipped)."""
    con.register("batch", batch)
    con.execute(
        """
        INSERT OR IGNORE INTO eval_scores
        SELECT request_id, ts, release, cohort::cohort_t, eval_score, $ingest_id
        FROM batch
        """,
        {"ingest_id": ingest_id},
    )
    inserted = rows_changed(con)
    con.unregister("batch")
    return inserted, len(batch) - inserted


def write_pull(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    issues: pd.DataFrame,
    ingest_id: int,
    *,
    stable: str,
    canary: str,
    covered: tuple[datetime | None, datetime | None] = (None, None),
) -> tuple[int, int]:
    """Insert a pull's series, windows and issues; heal windows it brings back clean.

    A pull replaces the pair's stored issues of every window inside the range it
    ``covered`` (its grid range): an issue it no longer finds is gone, whether or
    not the window has values now (a window without tasks is data).
    """
    pair = {"stable": stable, "canary": canary}
    con.register("new_series", frame[list(SERIES_KEY)].drop_duplicates())
    try:
        con.execute(
            "INSERT OR IGNORE INTO series (release, cohort, metric, field, le) "
            "SELECT release, cohort::cohort_t, metric, field, le FROM new_series"
        )
    finally:
        con.unregister("new_series")
    ids = con.execute(
        "SELECT series_id, release, cohort::VARCHAR AS cohort, metric, field, le "
        "FROM series WHERE release IN ($stable, $canary)",
        pair,
    ).df()
    rows = frame.merge(ids, on=list(SERIES_KEY), how="left", validate="many_to_one")
    con.register("new_rows", rows)
    con.register("new_issues", issues)
    try:
        clash = first_row(
            con.execute(
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
        con.execute(
            f"DELETE FROM aggregates WHERE series_id IN "
            f"(SELECT series_id FROM series WHERE release IN ($stable, $canary)) "
            f"AND window_start IN ({healed})",
            pair,
        )
        con.execute(
            f"DELETE FROM data_issues WHERE stable = $stable AND canary = $canary "
            f"AND (window_start IN ({healed}) OR (window_start >= $first AND window_end <= $last))",
            {**pair, "first": covered[0], "last": covered[1]},
        )
        con.execute(
            """
            INSERT OR IGNORE INTO aggregates
            SELECT series_id, window_start, window_end, value, $ingest_id
            FROM new_rows
            """,
            {"ingest_id": ingest_id},
        )
        inserted = rows_changed(con)
        con.execute(
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
        con.unregister("new_rows")
        con.unregister("new_issues")
    return inserted, len(frame) - inserted


def rows_changed(con: duckdb.DuckDBPyConnection) -> int:
    row = first_row(con)
    return int(row[0]) if row else 0


def _le_text(le: pd.Series) -> pd.Series:
    values = pd.to_numeric(le, errors="coerce")
    text = values.map(lambda v: "" if pd.isna(v) else repr(float(v)))
    return text.astype(str)


def aggregate_rows(aggregates: pd.DataFrame, *, stable: str, canary: str) -> pd.DataFrame:
    """Normalise a pull's aggregates frame into the stored column layout."""
    missing = [c for c in AGGREGATE_COLUMNS if c not in aggregates.columns]
    if missing:
        raise EventsError(missing[0], f"missing column; aggregates need {list(AGGREGATE_COLUMNS)}")
    frame = aggregates.loc[:, list(AGGREGATE_COLUMNS)].copy()
    unknown = sorted(set(frame["cohort"].astype(str)) - {"stable", "canary"})
    if unknown:
        raise EventsError("cohort", f"unknown labels {unknown[:5]}; expected 'stable' or 'canary'")
    for col in ("window_start", "window_end"):
        frame[col] = utc_timestamps(frame[col], col)
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


def check_grid(frame: pd.DataFrame) -> None:
    """Within one pull, windows of a series must not overlap one another."""
    key = list(SERIES_KEY)
    ordered = frame.sort_values([*key, "window_start"])
    same = (ordered[key].shift() == ordered[key]).all(axis=1)
    overlap = same & (ordered["window_start"] < ordered["window_end"].shift())
    if overlap.any():
        raise EventsError(
            "window_start",
            "windows overlap; use non-overlapping windows (increase(...[w]) with step = w)",
        )
