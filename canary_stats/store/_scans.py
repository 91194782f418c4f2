"""The row scans of a store summary: latency (raw or bucketed) with the tasks per
minute from the same scan, and the canary's silence."""

from __future__ import annotations

import math
from typing import Any, cast

import duckdb
import numpy as np

from ..stats import Histogram
from ..summary import Silence
from ._schema import first_row
from ._users import minute_windows

__all__ = [
    "EVENT_FILTER",
    "LATENCY_RESOLUTION",
    "event_silence",
    "latency_histograms",
    "latency_values",
]

#: Relative width of the histogram buckets used beyond the exact-latency limit.
LATENCY_RESOLUTION = 0.01
_LOG_STEP = 1.0 / math.log1p(LATENCY_RESOLUTION)
_LATENCY_FLOOR_MS = 1.0  # everything at or below 1 ms shares the first bucket

#: The events of a selection (stable and canary of their releases, in the time range).
EVENT_FILTER = """
    ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)
    AND ((cohort = 'stable' AND ($stable IS NULL OR release = $stable))
      OR (cohort = 'canary' AND ($canary IS NULL OR release = $canary)))
"""


def event_silence(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> Silence | None:
    """Stable tasks and minutes since the canary's last task (see `Silence`)."""
    row = first_row(
        con.execute(
            f"""
            WITH sel AS (SELECT cohort, ts FROM events WHERE {EVENT_FILTER}),
                 last AS (SELECT max(ts) FILTER (WHERE cohort = 'canary') AS c,
                                 min(ts) AS first, max(ts) AS final FROM sel)
            SELECT epoch_us(last.final) - epoch_us(coalesce(last.c, last.first)),
                   count(*) FILTER (WHERE sel.cohort = 'stable'
                                      AND (last.c IS NULL OR sel.ts > last.c))
            FROM sel, last GROUP BY ALL
            """,
            params,
        )
    )
    if row is None or not row[1]:
        return None
    return Silence(float(row[0]) / 60e6, float(row[1]))


#: Clock minute of an event (the per-minute task counts of the split check).
_MINUTE = "epoch_us(ts) // 60000000"


def latency_values(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any]
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Latencies per cohort, and the tasks per minute (from the same scan)."""
    cols = con.execute(
        f"SELECT cohort = 'canary' AS canary, latency_ms, {_MINUTE} AS minute "
        f"FROM events WHERE {EVENT_FILTER}",
        params,
    ).fetchnumpy()
    is_canary = np.asarray(cols["canary"], dtype=bool)
    values = np.asarray(cols["latency_ms"], dtype=float)
    latency = {
        "canary": np.compress(is_canary, values),
        "stable": np.compress(~is_canary, values),
    }
    minute = np.asarray(cols["minute"], dtype=np.int64)
    return latency, minute_windows(minute, is_canary, np.ones(minute.size))


def latency_histograms(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any]
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Latency histograms per cohort, and the tasks per minute (one scan, two groupings)."""
    cols = con.execute(
        f"""
        SELECT cohort::VARCHAR AS cohort,
               ceil(ln(greatest(latency_ms, {_LATENCY_FLOOR_MS})) * {_LOG_STEP})::BIGINT AS b,
               {_MINUTE} AS minute, count(*) AS n
        FROM events WHERE {EVENT_FILTER}
        GROUP BY GROUPING SETS ((cohort, b), (cohort, minute)) ORDER BY cohort, b
        """,
        params,
    ).fetchnumpy()
    cohorts = np.asarray(cols["cohort"], dtype=object)
    buckets = ~np.ma.getmaskarray(cast(np.ndarray, cols["b"]))  # else: a minute's tasks
    b, minute, n = (np.ma.getdata(cols[k]) for k in ("b", "minute", "n"))
    out: dict[str, Any] = {}
    for name in ("stable", "canary"):
        mask = (cohorts == name) & buckets
        if mask.any():
            # Bucket b holds values in (e^((b-1)/k), e^(b/k)]: its upper edge is exact.
            edges = np.exp(b[mask] / _LOG_STEP)
            counts = np.cumsum(n[mask]).astype(float)
            out[name] = Histogram(edges, counts)
    minutes = ~buckets
    return out, minute_windows(
        minute[minutes].astype(np.int64), cohorts[minutes] == "canary", n[minutes].astype(float)
    )
