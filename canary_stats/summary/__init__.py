"""Sufficient statistics per cohort, from raw events or per-window aggregates.

The judge never looks at rows: it looks at a `Summary` (counts, sums, sums of
squares, latency order statistics or histogram buckets). Raw events and
Prometheus-style aggregates both reduce to it, which is what lets one verdict
work on either and keeps its cost independent of how the data arrived. Raw
events with user ids also give each cohort its users and design effects
(`DesignEffects`, from per-user sums: `ratio_design_effect`), and with users'
history before the rollout (`UserHistory`) their mean metrics are adjusted by it
(`adjust_cohorts`, CUPED).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pandas as pd

from ._aggregates import summarize_aggregates, summary_from_totals
from ._events import summarize_events, validate_events
from ._history import (
    HISTORY_METRICS,
    HistoryAdjustment,
    UserHistory,
    UserSums,
    adjust_cohorts,
    history_adjustment,
)
from ._types import (
    AGGREGATE_COLUMNS,
    EVENT_COLUMNS,
    LATENCY_MAX_MS,
    TOKENS_MAX,
    Adjustment,
    CohortSummary,
    DesignEffects,
    Moments,
    Silence,
    Summary,
)
from ._users import ratio_design_effect

__all__ = [
    "AGGREGATE_COLUMNS",
    "EVENT_COLUMNS",
    "HISTORY_METRICS",
    "LATENCY_MAX_MS",
    "TOKENS_MAX",
    "Adjustment",
    "CohortSummary",
    "DesignEffects",
    "HistoryAdjustment",
    "Moments",
    "Silence",
    "Summary",
    "UserHistory",
    "UserSums",
    "adjust_cohorts",
    "history_adjustment",
    "ratio_design_effect",
    "summarize",
    "summarize_aggregates",
    "summarize_events",
    "summary_from_totals",
    "validate_events",
]


def summarize(
    data: pd.DataFrame,
    *,
    metrics: Mapping[str, Collection[str]] | None = None,
    history: UserHistory | None = None,
) -> Summary:
    """Dispatch on the columns: raw events or per-window aggregates.

    ``metrics`` limits the values kept from raw events and ``history`` adjusts
    their mean metrics (see `summarize_events`); aggregates are already small and
    are kept whole, and have no users to adjust for.
    """
    cols = set(data.columns)
    if {"metric", "field", "value"} <= cols:
        return summarize_aggregates(data)
    return summarize_events(data, metrics=metrics, history=history)
