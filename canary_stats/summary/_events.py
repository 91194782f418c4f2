"""Raw events (one row per finished task): validated for storage, reduced for the judge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ._checks import (
    cohort_codes,
    numeric_column,
    require_columns,
    success_column,
    text_column,
    unique_request_ids,
    utc_timestamps,
)
from ._types import COHORT_SET, COHORTS, EVENT_COLUMNS, CohortSummary, Moments, Summary

__all__ = ["summarize_events", "validate_events"]


def validate_events(events: pd.DataFrame) -> pa.Table:
    """Check raw events against the data contract; return them as an Arrow table to store.

    The table has every column of the contract (optional text columns null when
    absent), UTC timestamps, and the cohort dictionary-encoded. Arrow rather than
    pandas because the store scans it without copying or converting objects.
    """
    require_columns(events, EVENT_COLUMNS[:5], "raw events")
    codes = cohort_codes(events["cohort"])
    n = len(events)
    ts = utc_timestamps(events["ts"], "ts")
    columns = {
        "ts": pa.array(ts.array.as_unit("us"), type=pa.timestamp("us", tz="UTC")),
        "cohort": pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), COHORT_SET),
        "success": pa.array(success_column(events["success"])),
        "latency_ms": pa.array(numeric_column(events, "latency_ms", low=0.0)),
        "tokens": pa.array(numeric_column(events, "tokens", low=0.0)),
        "eval_score": pa.array(
            numeric_column(events, "eval_score", low=0.0, high=1.0, nullable=True)
            if "eval_score" in events.columns
            else np.full(n, np.nan),
            from_pandas=True,  # NaN -> null: not evaluated
        ),
    }
    for name in ("request_id", "release", "user_id"):
        columns[name] = text_column(events, name)
    # Duplicated request ids are left to the store, which counts them in one scan.
    return pa.table(columns)


def summarize_events(events: pd.DataFrame) -> Summary:
    """Reduce raw events (one row per finished task) to per-cohort statistics.

    Row order does not matter: every statistic used is order-free, so events
    arriving out of order from several producers are fine. Duplicated
    ``request_id`` values are rejected (idempotent ingestion would drop them).
    """
    require_columns(events, EVENT_COLUMNS[:5], "raw events")
    codes = cohort_codes(events["cohort"])
    succ = success_column(events["success"])
    latency = numeric_column(events, "latency_ms", low=0.0)
    tokens = numeric_column(events, "tokens", low=0.0)
    has_eval = "eval_score" in events.columns
    score = (
        numeric_column(events, "eval_score", low=0.0, high=1.0, nullable=True) if has_eval else None
    )
    unique_request_ids(events)
    ts = utc_timestamps(events["ts"], "ts")

    # Per cohort, np.compress copies the values it needs (several times faster than
    # x[mask]); moments come from those copies (two-pass variance, no cancellation).
    def cohort(name: str) -> CohortSummary:
        mask = codes == COHORTS.index(name)
        n = float(np.count_nonzero(mask))
        tok = np.compress(mask, tokens)
        ev = np.compress(mask, score) if score is not None else np.empty(0)
        ev = np.compress(~np.isnan(ev), ev)
        return CohortSummary(
            tasks=n,
            successes=float(np.count_nonzero(succ & mask)),
            latency=np.compress(mask, latency),
            tokens=Moments.from_values(tok),
            eval_score=Moments.from_values(ev),
        )

    stable, canary = cohort("stable"), cohort("canary")
    # Microsecond precision is plenty for a span of minutes and keeps datetime happy.
    start = ts.min().tz_convert("UTC").floor("us").to_pydatetime() if len(ts) else None
    end = ts.max().tz_convert("UTC").floor("us").to_pydatetime() if len(ts) else None
    return Summary(stable, canary, start, end, (), "events")
