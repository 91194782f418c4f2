"""Sufficient statistics per cohort, from raw events or per-window aggregates.

The judge never looks at rows: it looks at a `Summary` (counts, sums, sums of
squares, latency order statistics or histogram buckets). Raw events and
Prometheus-style aggregates both reduce to it, which is what lets one verdict
work on either and keeps its cost independent of how the data arrived. Raw
events with user ids also give each cohort its users and design effects
(`DesignEffects`, from per-user sums: `ratio_design_effect`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pandas as pd

from ._aggregates import summarize_aggregates, summary_from_totals
from ._events import summarize_events, validate_events
from ._types import (
    AGGREGATE_COLUMNS,
    EVENT_COLUMNS,
    LATENCY_MAX_MS,
    TOKENS_MAX,
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
    "LATENCY_MAX_MS",
    "TOKENS_MAX",
    "CohortSummary",
    "DesignEffects",
    "Moments",
    "Silence",
    "Summary",
    "ratio_design_effect",
    "summarize",
    "summarize_aggregates",
    "summarize_events",
    "summary_from_totals",
    "validate_events",
]


def summarize(
    data: pd.DataFrame, *, metrics: Mapping[str, Collection[str]] | None = None
) -> Summary:
    """Dispatch on the columns: raw events or per-window aggregates.

    ``metrics`` limits the values kept from raw events (see `summarize_events`);
    aggregates are already small and are kept whole.
    """
    cols = set(data.columns)
    if {"metric", "field", "value"} <= cols:
        return summarize_aggregates(data)
    return summarize_events(data, metrics=metrics)
