"""Per-user statistics of stored events, computed in DuckDB, and their per-minute task counts.

One pass groups the selected events by cohort and user (a few thousand rows
come out, not millions); a second aggregation over that small table gives each
cohort's distinct users and the residual sums of squares of the design effects
(`summary.ratio_design_effect`, here from its sufficient statistics), so the
store's numbers are the pandas path's to rounding.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import numpy as np

from ..stats import Histogram
from ..summary import DesignEffects, UserHistory, UserSums
from ..summary._users import EXCEEDANCE_QUANTILE, design_effect

__all__ = [
    "exceedance_threshold",
    "minute_windows",
    "mixed_user_ids",
    "user_history",
    "user_statistics",
    "user_sums",
]

_PER_USER = """
    WITH u AS (
        SELECT cohort, count(*) AS m, count_if(success) AS s, sum(tokens) AS t,
               count(eval_score) AS e, coalesce(sum(eval_score), 0) AS v,
               count_if(latency_ms > CASE WHEN cohort = 'canary' THEN $q_canary
                                          ELSE $q_stable END) AS x
        FROM events WHERE {filter} AND user_id IS NOT NULL
        GROUP BY cohort, user_id
    ),
    r AS (
        SELECT cohort, sum(s) / sum(m) AS rs, sum(x) / sum(m) AS rx, sum(t) / sum(m) AS rt,
               coalesce(sum(v) / nullif(sum(e), 0), 0) AS rv
        FROM u GROUP BY cohort
    )
    SELECT cohort::VARCHAR, count(*), sum(m), sum(s), sum(x), count_if(e > 0), sum(e),
           sum((s - rs * m) ^ 2), sum((x - rx * m) ^ 2), sum((t - rt * m) ^ 2),
           sum((v - rv * e) ^ 2)
    FROM u JOIN r USING (cohort) GROUP BY cohort
"""


def exceedance_threshold(latency: np.ndarray | Histogram) -> float:
    """The cohort's latency quantile whose exceedance the latency design effect is of.

    Raw values: ``numpy.quantile`` (as the pandas path). A histogram: the upper
    edge of the bucket holding that quantile. ``inf`` without latencies.
    """
    if isinstance(latency, Histogram):
        counts = np.asarray(latency.counts, dtype=float)
        if counts.ndim != 1 or not counts.size or counts[-1] <= 0:
            return math.inf
        j = int(np.searchsorted(counts, EXCEEDANCE_QUANTILE * counts[-1], side="left"))
        return float(latency.upper_bounds[min(j, counts.size - 1)])
    if not latency.size:
        return math.inf
    return float(np.quantile(latency, EXCEEDANCE_QUANTILE))


def user_statistics(
    con: duckdb.DuckDBPyConnection,
    params: dict[str, Any],
    event_filter: str,
    *,
    latency: dict[str, Any],
    tokens_var: dict[str, float],
    score_var: dict[str, float],
) -> dict[str, tuple[float, DesignEffects]]:
    """Distinct users and design effects per cohort, from the events that carry a user id.

    ``latency`` (per cohort, as the summary holds it) gives each cohort's
    exceedance threshold; ``tokens_var`` and ``score_var`` the per-task variances
    (``ddof=0``) of the events' tokens and eval scores.
    """
    q = {f"q_{name}": exceedance_threshold(latency.get(name, np.empty(0))) for name in
         ("stable", "canary")}  # fmt: skip
    # DuckDB compares with +inf fine; a float param keeps the CASE typed DOUBLE.
    rows = con.execute(_PER_USER.format(filter=event_filter), {**params, **q}).fetchall()
    out = {}
    for name, users, m, s, x, scored_users, e, ss_s, ss_x, ss_t, ss_v in rows:
        rs, rx = s / m, x / m
        out[name] = (
            float(users),
            DesignEffects(
                success=design_effect(users, m, ss_s, rs * (1.0 - rs)),
                latency=design_effect(users, m, ss_x, rx * (1.0 - rx)),
                tokens=design_effect(users, m, ss_t, tokens_var.get(name, math.nan)),
                eval_score=design_effect(scored_users, e, ss_v, score_var.get(name, math.nan)),
            ),
        )
    return out


_SUMS = """
    SELECT {group} count(*), sum(tokens), count(eval_score), coalesce(sum(eval_score), 0)
    FROM events WHERE {filter} AND user_id IS NOT NULL {where}
    GROUP BY {group_by} ORDER BY {group_by}
"""


def user_sums(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any], event_filter: str
) -> dict[str, UserSums]:
    """Each cohort's per-user tasks, tokens, scored tasks and scores (for `adjust_cohorts`)."""
    sql = _SUMS.format(group="cohort::VARCHAR, user_id,", filter=event_filter, where="",
                       group_by="cohort, user_id")  # fmt: skip
    rows = con.execute(sql, params).fetchall()
    out = {}
    for name in ("stable", "canary"):
        mine = [r for r in rows if r[0] == name]
        cols = list(zip(*mine, strict=True)) if mine else [()] * 6
        out[name] = UserSums(
            np.asarray(cols[1], dtype=object),
            *(np.asarray(c, dtype=float) for c in cols[2:]),
        )
    return out


def user_history(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any], event_filter: str
) -> UserHistory:
    """The stable cohort's per-user sums in the selection: users' history before a rollout."""
    sql = _SUMS.format(group="user_id,", filter=event_filter, where="AND cohort = 'stable'",
                       group_by="user_id")  # fmt: skip
    rows = con.execute(sql, params).fetchall()
    if not rows:
        return UserHistory.empty()
    cols = list(zip(*rows, strict=True))
    # DuckDB sorts text by bytes, numpy by code points: sort again so lookups agree.
    ids = np.asarray(cols[0], dtype=object)
    order = np.argsort(ids.astype(str), kind="stable")
    tokens_n, tokens_sum, eval_n, eval_sum = (np.asarray(c, dtype=float)[order] for c in cols[1:])
    return UserHistory(ids[order], tokens_n, tokens_sum, eval_n, eval_sum)


def mixed_user_ids(with_id: dict[str, int], total: dict[str, int]) -> str | None:
    """The selection's events carry user ids on some rows only: why the judge must hold."""
    given, rows = sum(with_id.values()), sum(total.values())
    if given == 0 or given == rows:
        return None
    return (
        f"user_id: {rows - given:,} of {rows:,} selected events have no user id (stored by "
        "ingests without one); users are counted only where every event has one"
    )


def minute_windows(
    minute: np.ndarray, is_canary: np.ndarray, tasks: np.ndarray
) -> np.ndarray | None:
    """Tasks per clock minute from the first task's (every minute, empty ones 0).

    ``minute`` holds epoch minutes (one per row: an event or a per-minute count),
    ``tasks`` what each row counts; columns stable and canary, as the pandas path.
    """
    if not minute.size:
        return None
    slot = (minute - minute.min()) * 2 + is_canary.astype(np.int64)
    width = int(slot.max()) // 2 + 1
    return np.bincount(slot, weights=tasks, minlength=2 * width).reshape(width, 2)
