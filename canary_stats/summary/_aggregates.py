"""Per-window aggregates (Prometheus style): counts, sums and cumulative buckets."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from ..errors import EventsError
from ..stats import Histogram
from ._checks import require_columns, utc_timestamps
from ._types import AGGREGATE_COLUMNS, COHORTS, CohortSummary, Moments, Silence, Summary

__all__ = ["summarize_aggregates", "summary_from_totals", "window_counts", "window_silence"]


def summarize_aggregates(aggregates: pd.DataFrame) -> Summary:
    """Reduce per-window aggregates (Prometheus style) to per-cohort statistics.

    One row per cohort x metric x field x window, with ``field`` one of
    ``count``, ``success``, ``sum``, ``sum_sq`` or ``bucket`` (cumulative, with
    its ``le``). Metrics: ``tasks`` (``count``, ``success``), ``latency_ms``
    (``bucket``), ``tokens_per_task`` and ``eval_score`` (``count``, ``sum``,
    and ``sum_sq`` or ``bucket``). Windows must not overlap. A window with a NaN
    or missing value is left out of the evidence, for both cohorts, and named in
    ``Summary.excluded`` (the judge holds on it, and still rolls back on a
    violation proven by the other windows); a window without tasks is data.

    Prometheus histograms carry no sum of squares. For tokens and eval scores the
    second moment then comes from the buckets, each bucket's mass spread evenly
    over it (the mean still comes from the exact ``sum``). Eval scores without
    buckets use the Bhatia-Davis bound ``var <= mean (1 - mean)`` for values in
    [0, 1]: wider intervals, never too narrow ones.
    """
    require_columns(aggregates, AGGREGATE_COLUMNS, "aggregates")
    df = aggregates.copy()
    df["window_start"] = utc_timestamps(df["window_start"], "window_start")
    df["window_end"] = utc_timestamps(df["window_end"], "window_end")
    if (df["window_end"] <= df["window_start"]).any():
        raise EventsError("window_end", "every window must end after it starts")
    unknown = sorted(set(df["cohort"].astype(str)) - set(COHORTS))
    if unknown:
        raise EventsError(
            "cohort", f"unknown labels {unknown[:5]}; expected 'stable', 'canary' or 'shadow'"
        )
    values = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    nan = np.isnan(values) | np.isinf(values)
    if np.any(values[~nan] < 0):
        raise EventsError("value", "aggregate counts and sums must be >= 0")
    df["value"] = values
    excluded: list[str] = []
    if nan.any():
        bad = df.loc[nan, "window_start"].unique()
        excluded.append(
            f"{bad.size} window(s) from {pd.Timestamp(bad.min()):%Y-%m-%d %H:%M}Z with "
            f"{int(nan.sum())} NaN, infinite or missing values"
        )
        df = df[~df["window_start"].isin(bad)]
    key = ["cohort", "metric", "field", "le"]
    df["le"] = pd.to_numeric(df["le"], errors="coerce")
    for _, group in df.sort_values("window_start").groupby(key, dropna=False):
        starts, ends = group["window_start"].to_numpy(), group["window_end"].to_numpy()
        if np.any(starts[1:] < ends[:-1]):
            raise EventsError(
                "window_start",
                "windows overlap; use non-overlapping windows (increase(...[w]) with step = w)",
            )
    is_bucket = df["field"] == "bucket"
    totals = df[~is_bucket].groupby(["cohort", "metric", "field"])["value"].sum(min_count=1)
    buckets = df[is_bucket].groupby(["cohort", "metric", "le"])["value"].sum(min_count=1)
    start = df["window_start"].min().floor("us").to_pydatetime() if len(df) else None
    end = df["window_end"].max().floor("us").to_pydatetime() if len(df) else None
    total_map = {_key3(k): float(v) for k, v in totals.items()}
    tasks = df[(df["metric"] == "tasks") & (df["field"] == "count")]
    silence = window_silence(
        tasks["window_start"].to_numpy("datetime64[us]").view("i8"),
        tasks["window_end"].to_numpy("datetime64[us]").view("i8"),
        (tasks["cohort"] == "canary").to_numpy(),
        tasks["value"].to_numpy(dtype=float) * (tasks["cohort"] != "shadow").to_numpy(),
    )
    return summary_from_totals(
        total_map,
        _bucket_arrays(buckets),
        start=start,
        end=end,
        issues=[],
        excluded=excluded,
        silence=silence,
        window_tasks=window_counts(
            tasks["window_start"].to_numpy("datetime64[us]").view("i8"),
            (tasks["cohort"] == "canary").to_numpy(),
            tasks["value"].to_numpy(dtype=float),
            keep=(tasks["cohort"] != "shadow").to_numpy(),
        ),
    )


def window_counts(
    starts_us: np.ndarray,
    is_canary: np.ndarray,
    tasks: np.ndarray,
    *,
    keep: np.ndarray | None = None,
) -> np.ndarray | None:
    """Task counts per window (rows in time order), columns stable and canary.

    One input row per cohort and window; a window one cohort lacks counts 0 for it.
    """
    if keep is not None:
        starts_us, is_canary, tasks = starts_us[keep], is_canary[keep], tasks[keep]
    if not starts_us.size:
        return None
    windows, slot = np.unique(starts_us, return_inverse=True)
    out = np.zeros((windows.size, 2))
    np.add.at(out, (slot, is_canary.astype(np.intp)), tasks)
    return out


def window_silence(
    starts_us: np.ndarray, ends_us: np.ndarray, is_canary: np.ndarray, tasks: np.ndarray
) -> Silence | None:
    """`Silence` from per-window task counts (one row per cohort and window).

    The canary is silent from the end of its last window with a task (the first
    window's start when it has none) to the last window's end; the stable tasks
    are those of the windows that start after that.
    """
    if not starts_us.size:
        return None
    has_canary = is_canary & (tasks > 0)
    first = int(starts_us.min())
    since = int(ends_us.max(where=has_canary, initial=first))
    stable_tasks = float(tasks[~is_canary & (starts_us >= since)].sum())
    if stable_tasks <= 0:
        return None
    return Silence((int(ends_us.max()) - since) / 60e6, stable_tasks)


def summary_from_totals(
    totals: Mapping[tuple[str, str, str], float],
    buckets: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    *,
    start: datetime | None,
    end: datetime | None,
    issues: list[str],
    source: str = "aggregates",
    excluded: list[str] | tuple[str, ...] = (),
    silence: Silence | None = None,
    window_tasks: np.ndarray | None = None,
) -> Summary:
    """Build a `Summary` from aggregate totals already summed over windows.

    ``totals`` maps (cohort, metric, field) to a sum; ``buckets`` maps (cohort,
    metric) to increasing ``le`` bounds and the cumulative counts summed over
    windows. A NaN total counts as 0 here, because ``issues`` already says the
    data is partial.
    """
    issues = list(issues)
    cohorts = {
        name: _cohort_from_totals(totals, buckets, name, issues) for name in ("stable", "canary")
    }
    tokens = [(name, "tokens_per_task") for name in cohorts]
    return Summary(
        cohorts["stable"],
        cohorts["canary"],
        start,
        end,
        tuple(issues),
        source,
        excluded=tuple(excluded),
        tokens_max=max(
            (_largest_bucketed(*buckets[key]) for key in tokens if key in buckets),
            default=float("nan"),
        ),
        silence=silence,
        window_tasks=window_tasks,
    )


def _largest_bucketed(edges: np.ndarray, cumulative: np.ndarray) -> float:
    """A lower bound on the largest value: the lower edge of the highest occupied bucket."""
    counts = np.diff(np.maximum.accumulate(cumulative), prepend=0.0)
    occupied = np.flatnonzero(counts > 0)
    if not occupied.size:
        return float("nan")
    top = int(occupied[-1])
    return float(edges[top - 1]) if top > 0 else 0.0


def _key3(key: object) -> tuple[str, str, str]:
    """A (cohort, metric, field) group key as text."""
    if not isinstance(key, tuple) or len(key) != 3:
        raise TypeError(f"expected a 3-part group key, got {key!r}")
    return (str(key[0]), str(key[1]), str(key[2]))


def _bucket_arrays(series: pd.Series) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(cohort, metric, le) -> value, as sorted arrays per (cohort, metric); NaN dropped."""
    out = {}
    for key, group in series.dropna().groupby(level=[0, 1]):
        cohort, metric = _key3((*key, ""))[:2] if isinstance(key, tuple) else (str(key), "")
        ordered = group.droplevel([0, 1]).sort_index()
        out[(str(cohort), str(metric))] = (
            ordered.index.to_numpy(dtype=float),
            ordered.to_numpy(dtype=float),
        )
    return out


def _cohort_from_totals(
    totals: Mapping[tuple[str, str, str], float],
    buckets: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    cohort: str,
    issues: list[str],
) -> CohortSummary:
    def get(metric: str, fld: str) -> float:
        v = totals.get((cohort, metric, fld), 0.0)
        return 0.0 if v is None or math.isnan(v) else float(v)

    tasks, successes = get("tasks", "count"), get("tasks", "success")
    if successes > tasks:
        if not issues:
            raise EventsError("value", f"{cohort}: tasks.success exceeds tasks.count")
        successes = tasks  # missing windows (already an issue: the judge holds) broke the pairing
    latency: np.ndarray | Histogram = np.empty(0)
    if (cohort, "latency_ms") in buckets:
        edges, values = buckets[(cohort, "latency_ms")]
        if np.any(np.diff(values) < 0):
            issues.append(f"{cohort}: latency buckets are not cumulative")
        latency = Histogram(edges, np.maximum.accumulate(values))

    def moments(metric: str) -> Moments:
        n, s = get(metric, "count"), get(metric, "sum")
        if (cohort, metric, "sum_sq") in totals:
            return Moments.from_sums(n, s, get(metric, "sum_sq"))
        cum = buckets.get((cohort, metric))
        if metric == "eval_score":
            s2 = _bucket_sum_sq(*cum, upper=1.0) if cum is not None else s
            return Moments.from_sums(n, s, min(s2, s))  # x^2 <= x on [0, 1]
        if cum is not None:
            return Moments.from_sums(n, s, _bucket_sum_sq(*cum))
        if n > 0 and s > 0:
            issues.append(f"{cohort}: {metric} has neither sum_sq nor buckets; variance unknown")
        return Moments.from_sums(n, s, 0.0)

    return CohortSummary(
        tasks, successes, latency, moments("tokens_per_task"), moments("eval_score")
    )


def _bucket_sum_sq(
    edges: np.ndarray, cumulative: np.ndarray, *, upper: float | None = None
) -> float:
    """Sum of squares implied by cumulative buckets, mass spread evenly within each.

    Values in the ``+Inf`` bucket count at the largest finite edge (or ``upper``).
    """
    counts = np.diff(np.maximum.accumulate(cumulative), prepend=0.0)
    lo = np.concatenate(([0.0], edges[:-1]))
    hi = edges.copy()
    finite_top = edges[np.isfinite(edges)].max() if np.isfinite(edges).any() else 0.0
    hi[~np.isfinite(hi)] = finite_top if upper is None else upper
    lo = np.minimum(lo, hi)
    return float(counts @ ((lo * lo + lo * hi + hi * hi) / 3.0))
