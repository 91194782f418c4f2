"""Sufficient statistics from the store, computed in DuckDB.

The judge needs counts, sums, variances and latency order statistics, never the
rows. DuckDB reduces a stage's rows to those in one scan; Python sees a few
hundred numbers. Latency is returned exactly (the raw values) up to
`EXACT_LATENCY_LIMIT` tasks per cohort and as a histogram with 1 % wide
log-spaced buckets beyond (the quantile test then states that resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from ..summary import (
    CohortSummary,
    DesignEffects,
    Moments,
    Silence,
    Summary,
    UserHistory,
    adjust_cohorts,
    summary_from_totals,
)
from ..summary._aggregates import window_counts, window_silence
from ._scans import EVENT_FILTER as _EVENT_FILTER
from ._scans import LATENCY_RESOLUTION, event_silence, latency_histograms, latency_values
from ._schema import first_row
from ._users import mixed_user_ids, user_history, user_statistics, user_sums

__all__ = [
    "EXACT_LATENCY_LIMIT",
    "LATENCY_RESOLUTION",
    "Selection",
    "latest_ingest_failure",
    "series_of",
    "store_history",
    "summarize_store",
]

#: Above this many tasks in a cohort, latency comes from a fine histogram.
EXACT_LATENCY_LIMIT = 250_000

SourceChoice = Literal["auto", "events", "aggregates"]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which data a verdict looks at: a release pair and a time range.

    ``stable`` / ``canary`` filter by release (events whose ``release`` is
    null match only when the filter is None); ``start`` is inclusive, ``end``
    exclusive. ``source`` picks raw events or per-window aggregates; ``auto``
    uses events when the selection holds any, aggregates otherwise.
    """

    stable: str | None = None
    canary: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    source: SourceChoice = "auto"

    def params(self) -> dict[str, Any]:
        return {
            "stable": self.stable,
            "canary": self.canary,
            "start": self.start,
            "end": self.end,
        }


_WINDOW_FILTER = """
    ($start IS NULL OR window_start >= $start) AND ($end IS NULL OR window_end <= $end)
"""


def summarize_store(
    con: duckdb.DuckDBPyConnection,
    selection: Selection,
    *,
    series: list[tuple[Any, ...]] | None = None,
    failure: str | Literal["ask"] | None = "ask",
    history: UserHistory | None = None,
) -> Summary:
    """Reduce the selected data to a `Summary`, with every stored data issue attached.

    Windows with a stored data issue (and windows with NaN or missing values) are
    left out of the evidence and named in ``Summary.excluded``, as is a failed
    latest ingest. ``series`` (`series_of`) and ``failure``
    (`latest_ingest_failure`) may come from a caller's cache; by default they are
    read from the store. ``history`` (`store_history`) adjusts the mean metrics of
    events with user ids, as `summarize_events` does.
    """
    params = selection.params()
    source = selection.source
    if source == "auto":
        found = first_row(
            con.execute(f"SELECT 1 FROM events WHERE {_EVENT_FILTER} LIMIT 1", params)
        )
        source = "events" if found else "aggregates"
    if failure == "ask":
        failure = latest_ingest_failure(con, selection)
    issues = _stored_issues(con, selection, failure)
    if source == "events":
        summary = _from_events(con, params, issues, history)
    else:
        summary = _from_aggregates(con, selection, issues, series)
    return summary


def store_history(con: duckdb.DuckDBPyConnection, selection: Selection) -> UserHistory:
    """The users' history in ``selection`` (its stable cohort's events with user ids)."""
    return user_history(con, selection.params(), _EVENT_FILTER)


def _from_events(
    con: duckdb.DuckDBPyConnection,
    params: dict[str, Any],
    issues: list[str],
    history: UserHistory | None = None,
) -> Summary:
    rows = con.execute(
        f"""
        SELECT cohort::VARCHAR, count(*), count_if(success), avg(tokens), var_pop(tokens),
               min(ts), max(ts), count(eval_score), avg(eval_score), var_pop(eval_score),
               max(tokens), count(user_id)
        FROM events WHERE {_EVENT_FILTER} GROUP BY cohort
        """,
        params,
    ).fetchall()
    nan = float("nan")
    stats = {r[0]: r for r in rows}
    evals = _eval_moments(con, params)
    exact = all(r[1] <= EXACT_LATENCY_LIMIT for r in rows)
    latency, per_minute = (latency_values if exact else latency_histograms)(con, params)
    with_id = {r[0]: int(r[11]) for r in rows}
    mixed = mixed_user_ids(with_id, {r[0]: int(r[1]) for r in rows})
    per_user = {}
    if any(with_id.values()):
        per_user = user_statistics(
            con,
            params,
            _EVENT_FILTER,
            latency=latency,
            tokens_var={r[0]: r[4] for r in rows},
            score_var={r[0]: nan if r[9] is None else r[9] for r in rows},
        )

    def cohort(name: str) -> CohortSummary:
        r = stats.get(name)
        if r is None:
            empty = CohortSummary.empty()
            return replace(empty, users=0.0) if per_user and mixed is None else empty
        users, design = per_user.get(name, (nan, DesignEffects()))
        return CohortSummary(
            tasks=float(r[1]),
            successes=float(r[2]),
            latency=latency.get(name, np.empty(0)),
            tokens=Moments(float(r[1]), float(r[3]), float(r[4])),
            eval_score=_moments(r[7:10]).pooled(evals.get(name, _moments((0, None, None)))),
            users=nan if mixed else users,  # a mixed selection: users unknown
            design=design,
        )

    stable, canary = cohort("stable"), cohort("canary")
    if per_user and mixed is None and history is not None and history.users:
        sums = user_sums(con, params, _EVENT_FILTER)
        stable, canary = adjust_cohorts(stable, canary, (sums["stable"], sums["canary"]), history)
    starts = [r[5] for r in rows if r[0] in ("stable", "canary")]
    ends = [r[6] for r in rows if r[0] in ("stable", "canary")]
    return Summary(
        stable,
        canary,
        _utc(min(starts)) if starts else None,
        _utc(max(ends)) if ends else None,
        (),
        "store:events",
        excluded=(*issues, mixed) if mixed else tuple(issues),
        tokens_max=max((float(r[10]) for r in rows if r[0] in ("stable", "canary")), default=nan),
        silence=event_silence(con, params),
        window_tasks=per_minute,
    )


def _moments(row: tuple[Any, ...]) -> Moments:
    n, mean, var = row
    nan = float("nan")
    return Moments(float(n), nan if mean is None else float(mean), nan if var is None else var)


def _eval_moments(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> dict[str, Moments]:
    """Eval scores from report cards, the cohort resolved from the release when not given."""
    rows = con.execute(
        f"""
        SELECT cohort, count(*), avg(eval_score), var_pop(eval_score) FROM (
            SELECT coalesce(cohort::VARCHAR, CASE WHEN release = $canary THEN 'canary'
                                                 WHEN release = $stable THEN 'stable' END)
                       AS cohort, eval_score, release, ts
            FROM eval_scores
        ) WHERE cohort IS NOT NULL AND {_EVENT_FILTER}
        GROUP BY cohort
        """,
        params,
    ).fetchall()
    return {r[0]: _moments(r[1:]) for r in rows}


def series_of(con: duckdb.DuckDBPyConnection, selection: Selection) -> list[tuple[Any, ...]]:
    """(series_id, cohort, metric, field, le) of the selected release pair's series."""
    return con.execute(
        """
        SELECT series_id, cohort::VARCHAR, metric, field, le FROM series
        WHERE (cohort = 'stable' AND ($stable IS NULL OR release = $stable))
           OR (cohort = 'canary' AND ($canary IS NULL OR release = $canary))
        """,
        {"stable": selection.stable, "canary": selection.canary},
    ).fetchall()


def _from_aggregates(
    con: duckdb.DuckDBPyConnection,
    selection: Selection,
    issues: list[str],
    series: list[tuple[Any, ...]] | None,
) -> Summary:
    # Small queries beat one join: the chosen series (a few hundred rows, cached by
    # the store between ingests), the windows to leave out, then sums per series id.
    meta = series_of(con, selection) if series is None else series
    params = {"ids": [m[0] for m in meta], **selection.params()}
    window = f"list_contains($ids, series_id) AND {_WINDOW_FILTER}"
    bad, nan_windows = _untrusted_windows(con, params, window)
    excluded = list(issues)
    if nan_windows:
        excluded.append(f"{nan_windows} window(s) with NaN or missing values")
    params = {"ids": params["ids"], "start": selection.start, "end": selection.end, "bad": bad}
    window += " AND NOT list_contains($bad, epoch_us(window_start))"
    sums = con.execute(
        f"""
        SELECT series_id, sum(value),
               -- epoch microseconds: a Python datetime per row costs more than the query
               epoch_us(min(window_start)), epoch_us(max(window_end))
        FROM aggregates WHERE {window} GROUP BY series_id
        """,
        params,
    ).fetchall()
    keys = {m[0]: m[1:] for m in meta}
    totals: dict[tuple[str, str, str], float] = {}
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for series_id, value, _, _ in sums:
        cohort, metric, field, le = keys[series_id]
        if field == "bucket":
            points.setdefault((cohort, metric), []).append((float(le), value))
        else:
            totals[(cohort, metric, field)] = value
    buckets = {
        key: (np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float))
        for key, pts in ((k, sorted(v)) for k, v in points.items())
    }
    silence, per_window = _window_silence(con, params, window, meta)
    return summary_from_totals(
        totals,
        buckets,
        start=_from_epoch_us(min(r[2] for r in sums)) if sums else None,
        end=_from_epoch_us(max(r[3] for r in sums)) if sums else None,
        issues=[],
        source="store:aggregates",
        excluded=excluded,
        silence=silence,
        window_tasks=per_window,
    )


def _untrusted_windows(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any], window: str
) -> tuple[list[int], int]:
    """Starts (epoch us) of the windows to leave out, and how many of them hold NaN.

    A window is left out, for both cohorts, when any of the pair's values in it is
    NaN or missing, or when a stored data issue of the pair overlaps it.
    """
    pair = "($stable IS NULL OR d.stable = $stable) AND ($canary IS NULL OR d.canary = $canary)"
    rows = con.execute(
        f"""
        SELECT start, nan, issue FROM (
            SELECT epoch_us(a.window_start) AS start,
                   bool_or(a.value IS NULL OR isnan(a.value) OR isinf(a.value)) AS nan,
                   bool_or(EXISTS (SELECT 1 FROM data_issues AS d WHERE {pair}
                                   AND d.window_start < a.window_end
                                   AND a.window_start < d.window_end)) AS issue
            FROM (SELECT * FROM aggregates WHERE {window}) AS a
            GROUP BY ALL
        ) WHERE nan OR issue
        """,
        params,
    ).fetchall()
    return [int(r[0]) for r in rows], sum(bool(r[1]) and not r[2] for r in rows)


def _window_silence(
    con: duckdb.DuckDBPyConnection,
    params: dict[str, Any],
    window: str,
    meta: list[tuple[Any, ...]],
) -> tuple[Silence | None, np.ndarray | None]:
    """`Silence` and the per-window task counts, from the trusted windows of both cohorts."""
    ids = {m[0]: m[1] == "canary" for m in meta if m[2:4] == ("tasks", "count")}
    cols = con.execute(
        f"""
        SELECT series_id, epoch_us(window_start) AS s, epoch_us(window_end) AS e, value
        FROM aggregates WHERE {window} AND list_contains($tasks, series_id)
        """,
        {**params, "tasks": list(ids)},
    ).fetchnumpy()
    canary = np.array([ids[int(i)] for i in cols["series_id"]], dtype=bool)
    starts = np.asarray(cols["s"], dtype=np.int64)
    tasks = np.nan_to_num(np.asarray(cols["value"], dtype=float))  # NaN windows: left out
    silence = window_silence(starts, np.asarray(cols["e"], dtype=np.int64), canary, tasks)
    return silence, window_counts(starts, canary, tasks)


def latest_ingest_failure(con: duckdb.DuckDBPyConnection, selection: Selection) -> str | None:
    """Why the pair's latest ingest failed, or None (it succeeded, or there is none)."""
    if selection.stable is None or selection.canary is None:
        return None
    row = first_row(
        con.execute(
            """
            SELECT status, source, epoch_us(finished_at), detail FROM ingests
            WHERE stable = $stable AND canary = $canary
            ORDER BY ingest_id DESC LIMIT 1
            """,
            {"stable": selection.stable, "canary": selection.canary},
        )
    )
    if row is None or row[0] != "failed":
        return None
    when = f"{_from_epoch_us(row[2]):%Y-%m-%d %H:%M:%S}Z"
    return f"the latest ingest from {row[1]} failed at {when}: {row[3]}"


def _stored_issues(
    con: duckdb.DuckDBPyConnection, selection: Selection, failure: str | None
) -> list[str]:
    """Issues recorded by pulls in the selected range, grouped by kind and cohort."""
    pair = "($stable IS NULL OR stable = $stable) AND ($canary IS NULL OR canary = $canary)"
    rows = con.execute(
        f"""
        SELECT kind, cohort::VARCHAR, epoch_us(window_start), detail
        FROM data_issues WHERE {pair} AND {_WINDOW_FILTER}
        """,
        selection.params(),
    ).fetchall()
    grouped: dict[tuple[str, str | None], list[tuple[int, str]]] = {}
    for kind, cohort, start, detail in rows:
        grouped.setdefault((kind, cohort), []).append((start, detail))
    issues = []
    for (kind, cohort), found in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        who = "" if cohort is None else f" ({cohort})"
        first, detail = min(found)
        when = f"{_from_epoch_us(first):%Y-%m-%d %H:%M}Z"
        issues.append(f"{kind}{who} in {len(found)} window(s) from {when}: {detail}")
    if failure is not None:
        issues.append(failure)
    return issues


def _from_epoch_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def _utc(value: Any) -> datetime:
    return pd.Timestamp(value).tz_convert("UTC").floor("us").to_pydatetime()
