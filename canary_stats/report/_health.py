"""The stable baseline week over week, and the judge's own health in the week.

The baseline is the stable cohort (whatever release served it) per ISO week:
success rate, p95 latency, mean tokens per task and mean eval score, from raw
events; a week with no stable events falls back to the stored per-window
aggregates (p95 then interpolated within the histogram bucket). Weeks are cut
on epoch seconds, so DuckDB's session time zone plays no part.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import duckdb
import numpy as np

from ._model import BaselineWeek, DataLag, JudgeHealth
from ._rollouts import has_table, transition_line
from ._week import IsoWeek

__all__ = [
    "BASELINE_WEEKS",
    "bucket_quantile",
    "latest_activity",
    "read_baseline",
    "read_health",
]

#: The report's week and this many before it.
BASELINE_WEEKS = 6
_WEEK_S = 7 * 24 * 3600
#: Transitions that say something about the judge or a human stepping in.
_JUDGE_STATES = (
    "judge_error",
    "judge_recovered",
    "paused",
    "resumed",
    "aborted",
    "promoted_manually",
)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def read_baseline(con: duckdb.DuckDBPyConnection, week: IsoWeek) -> tuple[BaselineWeek, ...]:
    """The stable cohort in ``week`` and the `BASELINE_WEEKS` weeks before, oldest first."""
    weeks = [week.shifted(k - BASELINE_WEEKS) for k in range(BASELINE_WEEKS + 1)]
    t0 = weeks[0].start
    rows = con.execute(
        f"""
        SELECT CAST(floor((epoch(ts) - epoch($t0)) / {_WEEK_S}) AS INTEGER) AS k,
               count(*), avg(success::DOUBLE), quantile_cont(latency_ms, 0.95), avg(tokens),
               avg(eval_score), count(eval_score), list(DISTINCT release ORDER BY release)
        FROM events
        WHERE cohort = 'stable' AND ts >= $t0 AND ts < $t1
        GROUP BY k
        """,
        {"t0": t0, "t1": week.end},
    ).fetchall()
    found = {int(r[0]): r for r in rows}
    out = []
    for k, w in enumerate(weeks):
        r = found.get(k)
        if r is not None:
            releases = tuple(str(x) for x in (r[7] or []) if x is not None)
            out.append(
                BaselineWeek(
                    w.label,
                    w.start,
                    int(r[1]),
                    _num(r[2]),
                    _num(r[3]),
                    _num(r[4]),
                    _num(r[5]),
                    int(r[6]),
                    releases,
                    "events",
                )
            )
        else:
            out.append(_from_aggregates(con, w))
    return tuple(out)


def _from_aggregates(con: duckdb.DuckDBPyConnection, w: IsoWeek) -> BaselineWeek:
    rows = con.execute(
        """
        SELECT metric, field, le, sum(value), list(DISTINCT release ORDER BY release)
        FROM aggregate_rows
        WHERE cohort = 'stable' AND window_start >= $start AND window_start < $end
        GROUP BY ALL
        """,
        {"start": w.start, "end": w.end},
    ).fetchall()
    if not rows:
        return BaselineWeek(w.label, w.start, 0, None, None, None, None, 0, (), "none")
    totals = {(r[0], r[1]): float(r[3] or 0.0) for r in rows if r[1] != "bucket"}
    releases = tuple(sorted({str(x) for r in rows for x in (r[4] or []) if x is not None}))

    def ratio(metric: str, top: str, bottom: str) -> float | None:
        n = totals.get((metric, bottom), 0.0)
        return totals[(metric, top)] / n if n > 0 and (metric, top) in totals else None

    buckets = sorted(
        (math.inf if str(r[2]).lower() in ("inf", "+inf") else float(r[2]), float(r[3] or 0))
        for r in rows
        if r[0] == "latency_ms" and r[1] == "bucket"
    )
    p95 = bucket_quantile(
        np.array([b[0] for b in buckets]), np.array([b[1] for b in buckets]), 0.95
    )
    evals = totals.get(("eval_score", "count"), 0.0)
    return BaselineWeek(
        w.label,
        w.start,
        int(totals.get(("tasks", "count"), 0.0)),
        ratio("tasks", "success", "count"),
        p95,
        ratio("tokens_per_task", "sum", "count"),
        ratio("eval_score", "sum", "count"),
        int(evals),
        releases,
        "aggregates",
    )


def bucket_quantile(
    edges: np.ndarray, counts: np.ndarray, q: float, lower: float = 0.0
) -> float | None:
    """A quantile from cumulative bucket counts (``le`` edges), linear within the bucket."""
    counts = np.maximum.accumulate(np.asarray(counts, dtype=float))
    if counts.ndim != 1 or counts.size == 0 or counts[-1] <= 0:
        return None
    target = q * float(counts[-1])
    j = int(np.searchsorted(counts, target, side="left"))
    low = lower if j == 0 else float(edges[j - 1])
    below = 0.0 if j == 0 else float(counts[j - 1])
    top, above = float(edges[j]), float(counts[j])
    if not math.isfinite(top) or above <= below:
        return low
    # Within the bucket, assume the mass is spread evenly.
    return low + (target - below) / (above - below) * (top - low)


def read_health(con: duckdb.DuckDBPyConnection, week: IsoWeek) -> JudgeHealth:
    """Verdicts by decision, ingests and data issues, judge outages and data lag."""
    span = {"start": week.start, "end": week.end}
    verdicts = {"promote": 0, "hold": 0, "rollback": 0}
    pairs: dict[tuple[str, str], dict[str, int]] = {}
    for release, stable, decision, n in con.execute(
        "SELECT coalesce(release, '?'), coalesce(stable, '?'), decision, count(*) FROM verdicts "
        "WHERE decided_at >= $start AND decided_at < $end GROUP BY ALL ORDER BY 1, 2",
        span,
    ).fetchall():
        verdicts[str(decision)] = verdicts.get(str(decision), 0) + int(n)
        pairs.setdefault((str(release), str(stable)), {})[str(decision)] = int(n)
    by_pair = tuple(
        (rel, sta, c.get("promote", 0), c.get("hold", 0), c.get("rollback", 0))
        for (rel, sta), c in pairs.items()
    )
    ingest_rows = con.execute(
        "SELECT started_at, source, status, detail FROM ingests "
        "WHERE started_at >= $start AND started_at < $end ORDER BY started_at",
        span,
    ).fetchall()
    failed = tuple((r[0], str(r[1]), str(r[3])) for r in ingest_rows if r[2] == "failed")
    issues = con.execute(
        "SELECT kind, count(*) FROM data_issues WHERE window_start < $end AND window_end > $start "
        "GROUP BY kind ORDER BY 2 DESC, 1",
        span,
    ).fetchall()
    events: list[Any] = []
    if has_table(con, "rollout_transitions"):
        events = [
            transition_line(*r)
            for r in con.execute(
                "SELECT rollout_id, seq, recorded_at, state, stage, traffic, detail "
                "FROM rollout_transitions WHERE recorded_at >= $start AND recorded_at < $end "
                "AND list_contains($states, state) ORDER BY recorded_at, rollout_id, seq",
                {**span, "states": list(_JUDGE_STATES)},
            ).fetchall()
        ]
    commands: dict[str, int] = {}
    if has_table(con, "rollout_commands"):
        for outcome, n in con.execute(
            "SELECT coalesce(outcome, 'queued'), count(*) FROM rollout_commands "
            "WHERE requested_at >= $start AND requested_at < $end GROUP BY 1",
            span,
        ).fetchall():
            commands[str(outcome)] = int(n)
    return JudgeHealth(
        verdicts,
        by_pair,
        len(ingest_rows),
        failed,
        tuple((str(k), int(n)) for k, n in issues),
        tuple(events),
        commands,
        _lag(con, week),
    )


def _lag(con: duckdb.DuckDBPyConnection, week: IsoWeek) -> DataLag | None:
    """Per successful ingest: finish time minus the newest task or window it carried."""
    rows = con.execute(
        """
        WITH newest AS (
            SELECT ingest_id, max(ts) AS newest FROM events GROUP BY ingest_id
            UNION ALL
            SELECT ingest_id, max(window_end) FROM aggregates GROUP BY ingest_id
        )
        SELECT (epoch(i.finished_at) - epoch(max(n.newest))) / 60.0
        FROM ingests AS i JOIN newest AS n USING (ingest_id)
        WHERE i.status = 'ok' AND i.finished_at >= $start AND i.finished_at < $end
        GROUP BY i.ingest_id, i.finished_at
        """,
        {"start": week.start, "end": week.end},
    ).fetchall()
    lags = np.array([float(r[0]) for r in rows if r[0] is not None])
    if lags.size == 0:
        return None
    return DataLag(int(lags.size), float(np.median(lags)), float(lags.max()))


def latest_activity(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The newest thing the store recorded (a task, a verdict or a transition)."""
    parts = ["SELECT max(ts) AS t FROM events", "SELECT max(decided_at) FROM verdicts"]
    if has_table(con, "rollout_transitions"):
        parts.append("SELECT max(recorded_at) FROM rollout_transitions")
    rows = con.execute(f"SELECT max(t) FROM ({' UNION ALL '.join(parts)})").fetchall()
    value = rows[0][0] if rows else None
    return value if isinstance(value, datetime) else None
