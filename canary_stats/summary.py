"""Sufficient statistics per cohort, from raw events or per-window aggregates.

The judge never looks at rows: it looks at a `Summary` (counts, sums, sums of
squares, latency order statistics or histogram buckets). Raw events and
Prometheus-style aggregates both reduce to it, which is what lets one verdict
work on either and keeps its cost independent of how the data arrived.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import EventsError
from .stats import Histogram

__all__ = [
    "AGGREGATE_COLUMNS",
    "EVENT_COLUMNS",
    "CohortSummary",
    "Moments",
    "Summary",
    "summarize",
    "summarize_aggregates",
    "summarize_events",
    "summary_from_totals",
    "validate_events",
]

EVENT_COLUMNS = ("ts", "cohort", "success", "latency_ms", "tokens", "eval_score")
AGGREGATE_COLUMNS = ("window_start", "window_end", "cohort", "metric", "field", "le", "value")
COHORTS = ("stable", "canary", "shadow")
_COHORT_SET = pa.array(COHORTS)


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, mean and variance (``ddof=0``) of one metric in one cohort.

    Fields are floats, or arrays of one value per look in simulations.
    """

    n: Any
    mean: Any
    var: Any

    @classmethod
    def from_sums(cls, n: float, total: float, total_sq: float) -> Moments:
        if n <= 0:
            return cls(0.0, float("nan"), float("nan"))
        mean = total / n
        return cls(float(n), float(mean), float(max(total_sq / n - mean * mean, 0.0)))

    def pooled(self, other: Moments) -> Moments:
        """The moments of both samples together (Chan et al.'s parallel update)."""
        n1, n2 = float(self.n), float(other.n)
        if n2 <= 0:
            return self
        if n1 <= 0:
            return other
        n = n1 + n2
        delta = float(other.mean) - float(self.mean)
        mean = float(self.mean) + delta * n2 / n
        var = (n1 * float(self.var) + n2 * float(other.var)) / n + delta * delta * n1 * n2 / (n * n)
        return Moments(n, mean, var)

    @classmethod
    def from_values(cls, x: np.ndarray) -> Moments:
        if x.size == 0:
            return cls(0.0, float("nan"), float("nan"))
        mean = float(x.mean())
        centred = x - mean  # two passes: no cancellation when the mean dwarfs the spread
        return cls(float(x.size), mean, float(centred @ centred) / x.size)


@dataclass(frozen=True, slots=True)
class CohortSummary:
    """What the judge needs to know about one cohort."""

    tasks: Any
    successes: Any
    latency: np.ndarray | Histogram
    tokens: Moments
    eval_score: Moments

    @property
    def latency_n(self) -> float:
        lat = self.latency
        return float(lat.n) if isinstance(lat, Histogram) else float(lat.size)

    @classmethod
    def empty(cls) -> CohortSummary:
        nan = Moments(0.0, float("nan"), float("nan"))
        return cls(0.0, 0.0, np.empty(0), nan, nan)


@dataclass(frozen=True, slots=True)
class Summary:
    """Both cohorts over one analysis window, with anything that makes it untrustworthy."""

    stable: CohortSummary
    canary: CohortSummary
    start: datetime | None = None
    end: datetime | None = None
    issues: tuple[str, ...] = field(default=())
    source: str = "events"

    @property
    def span(self) -> timedelta:
        if self.start is None or self.end is None:
            return timedelta(0)
        return self.end - self.start


def summarize(data: pd.DataFrame) -> Summary:
    """Dispatch on the columns: raw events or per-window aggregates."""
    cols = set(data.columns)
    if {"metric", "field", "value"} <= cols:
        return summarize_aggregates(data)
    return summarize_events(data)


def _require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EventsError(missing[0], f"missing column; {what} need columns {list(columns)}")


def _utc(col: pd.Series, name: str) -> pd.Series:
    """``col`` as zone-aware timestamps; naive ones are an error, never taken for UTC.

    Zone-aware datetimes pass untouched (comparisons and min/max are in UTC anyway),
    so the summary path pays nothing. Text must be ISO 8601 with an offset on every
    row (``Z``, ``+01:00``, ...). A naive timestamp is local time of an unknown zone:
    guessing UTC would shift it by hours and misplace it against the stage windows.
    """
    naive = "timestamps have no time zone; expected UTC, e.g. 2026-11-20T10:00:00Z"
    expected = "expected UTC timestamps in ISO 8601, e.g. 2026-11-20T10:00:00Z"
    if col.dtype.kind == "M":  # datetime64, with or without a zone (numpy or Arrow backed)
        ts = col
    elif pd.api.types.is_numeric_dtype(col.dtype) and col.notna().any():
        raise EventsError(name, f"{expected}; got numbers")
    else:
        try:
            ts = pd.to_datetime(col, format="ISO8601")
        except (ValueError, TypeError):
            # Rows with different offsets (or naive rows among zoned ones), or no timestamp.
            ts = pd.to_datetime(col, format="ISO8601", utc=True, errors="coerce")
            bad = (ts.isna() & col.notna()).to_numpy()
            if bad.any():
                row = int(bad.argmax())
                raise EventsError(
                    name, f"{expected}; got {col.iloc[row]!r} in row {row + 1}"
                ) from None
            # ISO 8601 text ends in its offset; str() of a datetime object does too.
            text = col[ts.notna()].astype("str")
            if not text.str.contains(r"[T ]\d\d[0-9:.,]*(?:Z|[+-]\d\d(?::?\d\d)?)$").all():
                raise EventsError(name, naive) from None
    if ts.isna().any():
        raise EventsError(name, f"{int(ts.isna().sum())} rows have no timestamp")
    if ts.dt.tz is None:
        if len(ts):
            raise EventsError(name, naive)
        ts = ts.dt.tz_localize("UTC")  # an empty column has no zone to lack
    return ts


def _cohort_codes(cohort: pd.Series) -> np.ndarray:
    """Index of each row's label in `COHORTS`; unknown or missing labels are an error.

    Hash lookups only: sorting millions of label strings would dominate the cost.
    """
    arrow = getattr(cohort.array, "__arrow_array__", None)
    if isinstance(cohort.dtype, pd.StringDtype) and arrow is not None:
        found = pc.index_in(arrow(), value_set=_COHORT_SET)
        codes = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
    elif isinstance(cohort.dtype, pd.CategoricalDtype):
        cats = cohort.cat.categories
        table = np.array([COHORTS.index(c) if c in COHORTS else -1 for c in cats] + [-1])
        codes = table[cohort.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing -1
    else:
        raw, labels = pd.factorize(cohort)
        table = np.array([COHORTS.index(c) if c in COHORTS else -1 for c in labels] + [-1])
        codes = table[raw]  # raw == -1 (missing) picks the trailing -1
    bad = codes < 0
    if bad.any():
        seen = sorted(str(x) for x in pd.unique(cohort[bad]) if not pd.isna(x))
        what = f"unknown labels {seen[:5]}" if seen else f"{int(bad.sum())} rows have no cohort"
        raise EventsError("cohort", f"{what}; expected 'stable', 'canary' or 'shadow'")
    return np.asarray(codes)


def _numeric(
    df: pd.DataFrame, name: str, *, low: float, high: float = np.inf, nullable: bool = False
) -> np.ndarray:
    col = df[name]
    try:
        if col.dtype == np.float64:
            x = col.to_numpy()  # no copy
        else:
            x = pd.to_numeric(col).to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise EventsError(name, "expected numbers") from None
    # One comparison catches NaN, infinities and out-of-range values together.
    bad = ~((x >= low) & (x <= high)) if np.isfinite(high) else ~(x >= low)
    bad |= x == np.inf
    if nullable:
        bad &= ~np.isnan(x)
    if bad.any():
        expect = f"in [{low:g}, {high:g}]" if np.isfinite(high) else f"a finite number >= {low:g}"
        kind = "NaN, infinite or out of range" if not nullable else "out of range"
        raise EventsError(name, f"{int(bad.sum())} rows are {kind}; expected {expect}")
    return x


def _success(success: pd.Series) -> np.ndarray:
    if success.isna().any():
        raise EventsError(
            "success", f"{int(success.isna().sum())} rows are missing; expected true or false"
        )
    succ = success.to_numpy()
    if succ.dtype != bool:
        succ_f = pd.to_numeric(success, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if np.any(~np.isin(succ_f, (0.0, 1.0))):
            raise EventsError("success", "expected booleans (true/false or 1/0)")
        succ = succ_f == 1.0
    return np.asarray(succ, dtype=bool)


def _unique_request_ids(events: pd.DataFrame) -> None:
    if "request_id" in events.columns:
        dup = events["request_id"].dropna().duplicated()
        if dup.any():
            raise EventsError(
                "request_id", f"{int(dup.sum())} duplicated values; each task must appear once"
            )


def validate_events(events: pd.DataFrame) -> pa.Table:
    """Check raw events against the data contract; return them as an Arrow table to store.

    The table has every column of the contract (optional text columns null when
    absent), UTC timestamps, and the cohort dictionary-encoded. Arrow rather than
    pandas because the store scans it without copying or converting objects.
    """
    _require(events, EVENT_COLUMNS[:5], "raw events")
    codes = _cohort_codes(events["cohort"])
    n = len(events)
    ts = _utc(events["ts"], "ts")
    columns = {
        "ts": pa.array(ts.array.as_unit("us"), type=pa.timestamp("us", tz="UTC")),
        "cohort": pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), _COHORT_SET),
        "success": pa.array(_success(events["success"])),
        "latency_ms": pa.array(_numeric(events, "latency_ms", low=0.0)),
        "tokens": pa.array(_numeric(events, "tokens", low=0.0)),
        "eval_score": pa.array(
            _numeric(events, "eval_score", low=0.0, high=1.0, nullable=True)
            if "eval_score" in events.columns
            else np.full(n, np.nan),
            from_pandas=True,  # NaN -> null: not evaluated
        ),
    }
    for name in ("request_id", "release", "user_id"):
        columns[name] = _text(events, name)
    # Duplicated request ids are left to the store, which counts them in one scan.
    return pa.table(columns)


def _text(events: pd.DataFrame, name: str) -> pa.Array:
    if name not in events.columns:
        return pa.nulls(len(events), pa.string())
    col = events[name]
    try:
        return pa.array(col.array if isinstance(col.dtype, pd.StringDtype) else col,
                        type=pa.string(), from_pandas=True)  # fmt: skip
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise EventsError(name, "expected text") from None


def summarize_events(events: pd.DataFrame) -> Summary:
    """Reduce raw events (one row per finished task) to per-cohort statistics.

    Row order does not matter: every statistic used is order-free, so events
    arriving out of order from several producers are fine. Duplicated
    ``request_id`` values are rejected (idempotent ingestion would drop them).
    """
    _require(events, EVENT_COLUMNS[:5], "raw events")
    codes = _cohort_codes(events["cohort"])
    succ = _success(events["success"])
    latency = _numeric(events, "latency_ms", low=0.0)
    tokens = _numeric(events, "tokens", low=0.0)
    has_eval = "eval_score" in events.columns
    score = _numeric(events, "eval_score", low=0.0, high=1.0, nullable=True) if has_eval else None
    _unique_request_ids(events)
    ts = _utc(events["ts"], "ts")

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


def summarize_aggregates(aggregates: pd.DataFrame) -> Summary:
    """Reduce per-window aggregates (Prometheus style) to per-cohort statistics.

    One row per cohort x metric x field x window, with ``field`` one of
    ``count``, ``success``, ``sum``, ``sum_sq`` or ``bucket`` (cumulative, with
    its ``le``). Metrics: ``tasks`` (``count``, ``success``), ``latency_ms``
    (``bucket``), ``tokens_per_task`` and ``eval_score`` (``count``, ``sum``,
    and ``sum_sq`` or ``bucket``). Windows must not overlap; NaN values make the
    summary untrustworthy (the judge holds) rather than an error.

    Prometheus histograms carry no sum of squares. For tokens and eval scores the
    second moment then comes from the buckets, each bucket's mass spread evenly
    over it (the mean still comes from the exact ``sum``). Eval scores without
    buckets use the Bhatia-Davis bound ``var <= mean (1 - mean)`` for values in
    [0, 1]: wider intervals, never too narrow ones.
    """
    _require(aggregates, AGGREGATE_COLUMNS, "aggregates")
    df = aggregates.copy()
    df["window_start"] = _utc(df["window_start"], "window_start")
    df["window_end"] = _utc(df["window_end"], "window_end")
    if (df["window_end"] <= df["window_start"]).any():
        raise EventsError("window_end", "every window must end after it starts")
    unknown = sorted(set(df["cohort"].astype(str)) - set(COHORTS))
    if unknown:
        raise EventsError(
            "cohort", f"unknown labels {unknown[:5]}; expected 'stable', 'canary' or 'shadow'"
        )
    values = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    issues: list[str] = []
    nan = np.isnan(values)
    if nan.any():
        issues.append(f"{int(nan.sum())} aggregate values are NaN or missing (partial data)")
    if np.any(values[~nan] < 0):
        raise EventsError("value", "aggregate counts and sums must be >= 0")
    df["value"] = values
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
    return summary_from_totals(
        total_map, _bucket_arrays(buckets), start=start, end=end, issues=issues
    )


def summary_from_totals(
    totals: Mapping[tuple[str, str, str], float],
    buckets: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    *,
    start: datetime | None,
    end: datetime | None,
    issues: list[str],
    source: str = "aggregates",
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
    return Summary(cohorts["stable"], cohorts["canary"], start, end, tuple(issues), source)


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
