"""A synthetic Prometheus exporter: raw events as OpenMetrics text for backfilling.

Each version (one per cohort) plays one exporter process. Its counters and
histograms are 0 at ``start`` and are scraped every ``interval`` on a grid
aligned to multiples of the interval since the epoch. The scrape at ``t`` counts
the events that finished strictly before ``t``, so two scrapes ``t0 < t1``
differ by exactly the events of ``[t0, t1)``: the windows of
``increase(...[w])`` evaluated at multiples of ``w`` (a multiple of the
interval), and of raw events binned with ``floor(ts, w)``.

The output is what ``promtool tsdb create-blocks-from openmetrics FILE DIR``
backfills::

    with open("history.om", "w") as fh:
        write_openmetrics(events, {"stable": "v1", "canary": "v2"}, fh)

Families (the defaults of `canary_stats.sources.PrometheusConfig`): counters
``agent_task_total`` and ``agent_task_success_total``; histograms
``agent_task_duration_ms`` (latency), ``agent_task_tokens`` and
``agent_eval_score`` (evaluated tasks only).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from ..errors import EventsError, InputError
from ._promql import check_label_name, check_label_value, duration_seconds, quote

__all__ = [
    "EVAL_BUCKETS",
    "LATENCY_BUCKETS",
    "TOKEN_BUCKETS",
    "CounterReset",
    "Fault",
    "NaNSample",
    "ScrapeGap",
    "write_openmetrics",
]

#: Latency buckets, about 3 % wide from 10 ms to 10 min (``simulate.LATENCY_BUCKETS``;
#: defined here because the data layer must not import the simulation above it).
LATENCY_BUCKETS = np.concatenate([np.geomspace(10.0, 600_000.0, 400), [np.inf]])
#: Token-count buckets, about 26 % wide from 10 to a million tokens.
TOKEN_BUCKETS = np.concatenate([np.geomspace(10.0, 1e6, 51), [np.inf]])
#: Eval-score buckets, 0.02 wide over [0, 1].
EVAL_BUCKETS = np.concatenate([np.round(np.linspace(0.02, 1.0, 50), 2), [np.inf]])

_NS = 1_000_000_000
#: Rows (scrapes) formatted at once: bounds memory for long histories.
_CHUNK = 256


@dataclass(frozen=True, slots=True)
class CounterReset:
    """The exporter of ``version`` restarts just before the first scrape at or after
    ``at``: all its series start again from 0 (events since the previous scrape are lost)."""

    version: str
    at: datetime


@dataclass(frozen=True, slots=True)
class NaNSample:
    """The scrape of ``version`` at or after ``at`` reports NaN for ``series``
    (a sample name such as ``agent_task_total``; a ``_bucket`` name blanks every bucket)."""

    version: str
    at: datetime
    series: str = "agent_task_total"


@dataclass(frozen=True, slots=True)
class ScrapeGap:
    """No scrapes in ``[start, end)``, of ``version`` or (``None``) of every version."""

    start: datetime
    end: datetime
    version: str | None = None


Fault = CounterReset | NaNSample | ScrapeGap


@dataclass(frozen=True, slots=True)
class _Family:
    """One metric family of one version: line prefixes and a (scrapes x series) matrix."""

    name: str
    kind: str
    prefixes: list[str]
    values: np.ndarray


def write_openmetrics(
    events: pd.DataFrame,
    versions: Mapping[str, str],
    out: TextIO | str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    interval: timedelta = timedelta(seconds=15),
    column: str = "cohort",
    label: str = "version",
    latency_buckets: Sequence[float] | np.ndarray = LATENCY_BUCKETS,
    token_buckets: Sequence[float] | np.ndarray = TOKEN_BUCKETS,
    eval_buckets: Sequence[float] | np.ndarray = EVAL_BUCKETS,
    faults: Sequence[Fault] = (),
) -> int:
    """Write raw events as OpenMetrics text ending with ``# EOF``; return the sample count.

    Parameters
    ----------
    events : DataFrame
        Raw events (``ts``, ``success``, ``latency_ms``, ``tokens``, optional
        ``eval_score``) and the ``column`` that says which version ran each task.
    versions : mapping
        Value of ``column`` (e.g. ``"stable"``) -> value of the ``label`` label
        (e.g. ``"v1"``). Every value of ``column`` must be mapped.
    out : text stream or path
        Written as it is produced (a path is opened and closed here), so hours
        of 15 s scrapes never sit in memory as one string.
    start, end : datetime, optional
        First and last scrape, floored to the grid. Default: the grid point at
        or before the first event, and the first one after the last event.
    interval : timedelta
        Scrape interval, a whole number of seconds.
    faults : sequence of CounterReset, NaNSample, ScrapeGap
        Injected faults, for testing what a source makes of them.
    """
    step = duration_seconds(interval, "interval")
    check_label_name(label, "label")
    if not versions:
        raise InputError("versions", "expected at least one cohort -> version mapping")
    for version in versions.values():
        check_label_value(version, "versions")
    ts = _timestamps_ns(events)
    for name in (column, "success", "latency_ms", "tokens"):
        if name not in events:
            raise EventsError(name, "missing column; raw events need it")
    owner = events[column].astype(str).to_numpy()
    unmapped = sorted(set(np.unique(owner)) - set(versions))
    if unmapped:
        raise InputError("versions", f"no version for {column} values {unmapped[:5]}")
    for fault in faults:
        if fault.version is not None and fault.version not in versions.values():
            raise InputError("faults", f"{fault!r} names no exported version")
    grid = _grid(ts, start, end, step)
    if ts.size and ts.min() < grid[0]:
        raise InputError("start", "events before the first scrape; counters start at 0 there")
    buckets = {
        "latency": _edges(latency_buckets, "latency_buckets"),
        "tokens": _edges(token_buckets, "token_buckets"),
        "eval": _edges(eval_buckets, "eval_buckets"),
    }
    per_version = [
        (version, _families(events[owner == key], ts[owner == key], grid, label, version, buckets))
        for key, version in versions.items()
    ]
    if isinstance(out, str | Path):
        with Path(out).open("w", encoding="utf-8") as fh:
            return _write(fh, per_version, grid, faults)
    return _write(out, per_version, grid, faults)


def _to_ns(t: datetime, field: str) -> int:
    if t.tzinfo is None:
        raise InputError(field, "expected a timezone-aware datetime")
    return int(pd.Timestamp(t).as_unit("ns").value)


def _timestamps_ns(events: pd.DataFrame) -> np.ndarray:
    if "ts" not in events:
        raise EventsError("ts", "missing column; raw events need task end times")
    ts = events["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        # Naive times are local times of an unknown zone: never guess UTC.
        raise EventsError("ts", f"expected zone-aware timestamps; got {ts.dtype}")
    if ts.isna().any():
        raise EventsError("ts", f"{int(ts.isna().sum())} rows have no timestamp")
    ns: np.ndarray = ts.dt.as_unit("ns").to_numpy(dtype=np.int64)  # epoch ns, zone-free
    return ns


def _grid(ts: np.ndarray, start: datetime | None, end: datetime | None, step: int) -> np.ndarray:
    """Scrape times (ns since the epoch) on multiples of ``step`` seconds."""
    step_ns = step * _NS
    if start is not None:
        first = _to_ns(start, "start") // step_ns * step_ns
    elif ts.size:
        first = int(ts.min()) // step_ns * step_ns
    else:
        raise InputError("start", "no events: give start and end")
    if end is not None:
        last = _to_ns(end, "end") // step_ns * step_ns
    elif ts.size:
        last = (int(ts.max()) // step_ns + 1) * step_ns  # strictly after the last event
    else:
        raise InputError("end", "no events: give start and end")
    if last <= first:
        raise InputError("end", "must be at least one scrape interval after start")
    return np.arange(first, last + 1, step_ns, dtype=np.int64)


def _edges(buckets: Sequence[float] | np.ndarray, field: str) -> np.ndarray:
    edges = np.asarray(buckets, dtype=float)
    if edges.size == 0 or np.any(np.isnan(edges)) or np.any(np.diff(edges) <= 0):
        raise InputError(field, "expected increasing bucket bounds")
    return edges if np.isinf(edges[-1]) else np.append(edges, np.inf)


def _numbers(events: pd.DataFrame, name: str, *, nullable: bool = False) -> np.ndarray:
    try:
        x = pd.to_numeric(events[name]).to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise EventsError(name, "expected numbers") from None
    bad = ~(x >= 0) & ~(nullable & np.isnan(x))
    if bad.any() or np.isinf(x).any():
        raise EventsError(name, f"{int(bad.sum())} rows are NaN, infinite or negative")
    return x


def _families(
    events: pd.DataFrame,
    ts: np.ndarray,
    grid: np.ndarray,
    label: str,
    version: str,
    buckets: dict[str, np.ndarray],
) -> list[_Family]:
    """Cumulative values of every series of one version at every scrape."""
    # Scrape k counts the events of slot <= k, slot = number of scrapes at or before ts.
    slot = np.searchsorted(grid, ts, side="right")
    n = grid.size
    lbl = f"{label}={quote(version)}"
    if events["success"].isna().any():
        raise EventsError("success", "missing values; expected true or false")
    success = events["success"].to_numpy(dtype=bool)
    score = (
        _numbers(events, "eval_score", nullable=True)
        if "eval_score" in events
        else np.full(len(events), np.nan)
    )
    evaluated = ~np.isnan(score)

    def counter(name: str, mask: np.ndarray | None = None) -> _Family:
        counts = np.bincount(slot if mask is None else slot[mask], minlength=n + 1)[:n]
        values = np.cumsum(counts).astype(float)[:, None]
        return _Family(name, "counter", [f"{name}_total{{{lbl}}}"], values)

    def histogram(name: str, x: np.ndarray, edges: np.ndarray, s: np.ndarray) -> _Family:
        # Bucket j holds x <= edges[j]; a 2-D count by (slot, bucket), cumulated both ways.
        j = np.searchsorted(edges, x, side="left")
        counts = np.bincount(s * edges.size + j, minlength=(n + 1) * edges.size)
        cum = counts.reshape(n + 1, edges.size)[:n].cumsum(axis=0).cumsum(axis=1)
        sums = np.cumsum(np.bincount(s, weights=x, minlength=n + 1)[:n])
        values = np.column_stack([cum, cum[:, -1], sums]).astype(float)
        les = [f"{e!r}" if np.isfinite(e) else "+Inf" for e in edges.tolist()]
        prefixes = [f'{name}_bucket{{{lbl},le="{le}"}}' for le in les]
        prefixes += [f"{name}_count{{{lbl}}}", f"{name}_sum{{{lbl}}}"]
        return _Family(name, "histogram", prefixes, values)

    return [
        counter("agent_task"),
        counter("agent_task_success", success),
        histogram(
            "agent_task_duration_ms", _numbers(events, "latency_ms"), buckets["latency"], slot
        ),
        histogram("agent_task_tokens", _numbers(events, "tokens"), buckets["tokens"], slot),
        histogram("agent_eval_score", score[evaluated], buckets["eval"], slot[evaluated]),
    ]


def _apply(
    family: _Family, version: str, grid: np.ndarray, faults: Sequence[Fault]
) -> tuple[np.ndarray, np.ndarray]:
    """The family's values with the faults applied, and which scrapes happened."""
    values = family.values.copy()
    scraped = np.ones(grid.size, dtype=bool)
    for fault in faults:
        if isinstance(fault, ScrapeGap):
            if fault.version in (None, version):
                lo, hi = _to_ns(fault.start, "faults"), _to_ns(fault.end, "faults")
                scraped &= ~((grid >= lo) & (grid < hi))
            continue
        if fault.version != version:
            continue
        k = int(np.searchsorted(grid, _to_ns(fault.at, "faults"), side="left"))
        if k >= grid.size:
            continue
        if isinstance(fault, CounterReset):
            values[k:] -= values[k]  # the scrape at k sees a fresh process: 0 everywhere
        else:
            cols = [i for i, p in enumerate(family.prefixes) if p.startswith(fault.series + "{")]
            values[k, cols] = np.nan
    return values, scraped


def _strings(values: np.ndarray) -> np.ndarray:
    """OpenMetrics numbers: integers without a fraction, NaN spelled ``NaN``."""
    out = values.astype(str)  # numpy's shortest round-trip repr
    whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2.0**53)
    out[whole] = values[whole].astype(np.int64).astype(str)
    out[np.isnan(values)] = "NaN"
    return out


def _write(
    fh: TextIO,
    per_version: list[tuple[str, list[_Family]]],
    grid: np.ndarray,
    faults: Sequence[Fault],
) -> int:
    seconds = (grid // _NS).astype(str)
    samples = 0
    for index, head in enumerate(per_version[0][1]):
        fh.write(f"# TYPE {head.name} {head.kind}\n")
        for version, families in per_version:
            family = families[index]
            values, scraped = _apply(family, version, grid, faults)
            for chunk in _chunks(family.prefixes, values, scraped, seconds):
                fh.write(chunk)
            samples += int(scraped.sum()) * len(family.prefixes)
    fh.write("# EOF\n")
    return samples


def _chunks(
    prefixes: list[str], values: np.ndarray, scraped: np.ndarray, seconds: np.ndarray
) -> Iterator[str]:
    """Lines of one series set, one MetricPoint (all its series) per scrape, in time order."""
    rows = np.flatnonzero(scraped)
    for lo in range(0, rows.size, _CHUNK):
        idx = rows[lo : lo + _CHUNK]
        text = _strings(values[idx]).tolist()
        lines: list[str] = []
        for row, t in zip(text, seconds[idx].tolist(), strict=True):
            suffix = f" {t}\n"
            lines.extend(f"{p} {v}{suffix}" for p, v in zip(prefixes, row, strict=True))
        yield "".join(lines)
