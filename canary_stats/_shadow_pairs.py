"""Shadow events paired by ``request_id``: each shadow run with the stable task it mirrors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import EventsError
from .sources.files import load_events
from .summary import EVENT_COLUMNS, CohortSummary, Moments
from .summary import _checks as checks
from .summary._types import COHORTS

__all__ = ["Pairs", "Runs", "pair_tasks", "shadow_frame"]

_STABLE, _CANARY, _SHADOW = (COHORTS.index(c) for c in ("stable", "canary", "shadow"))


@dataclass(frozen=True, slots=True)
class Runs:
    """One version's runs of the paired tasks, in the order of the pairs."""

    success: np.ndarray
    latency_ms: np.ndarray
    tokens: np.ndarray
    eval_score: np.ndarray  # NaN: not scored

    def cohort(self) -> CohortSummary:
        score = self.eval_score[~np.isnan(self.eval_score)]
        return CohortSummary(
            tasks=float(self.success.size),
            successes=float(np.count_nonzero(self.success)),
            latency=self.latency_ms,
            tokens=Moments.from_values(self.tokens),
            eval_score=Moments.from_values(score),
        )


@dataclass(frozen=True, slots=True)
class Pairs:
    """Tasks run by both versions, and what could not be paired."""

    stable: Runs
    shadow: Runs
    unpaired_stable: int
    unpaired_shadow: int
    issues: tuple[str, ...]
    span: timedelta  # from the first to the last row

    @property
    def n(self) -> int:
        return int(self.stable.success.size)

    def describe(self) -> str:
        text = f"{self.n} paired tasks"
        if self.unpaired_stable or self.unpaired_shadow:
            text += (
                f"; {self.unpaired_stable + self.unpaired_shadow} unpaired rows dropped "
                f"({self.unpaired_stable} stable without a shadow run, "
                f"{self.unpaired_shadow} shadow without a stable task)"
            )
        return text


def shadow_frame(events: Any) -> pd.DataFrame:
    if isinstance(events, str | Path):
        events = load_events(events)
    if not isinstance(events, pd.DataFrame):
        raise EventsError(
            "events", f"expected a DataFrame or a path of raw events; got {type(events).__name__}"
        )
    if {"metric", "field", "value"} <= set(events.columns):
        raise EventsError(
            "events",
            "shadow analysis pairs tasks by request_id: it needs raw events, "
            "not per-window aggregates",
        )
    return events


def pair_tasks(df: pd.DataFrame) -> Pairs:
    """Validate shadow events and pair each shadow row with its stable task."""
    checks.require_columns(df, (*EVENT_COLUMNS[:5], "request_id"), "shadow events")
    codes = checks.cohort_codes(df["cohort"])
    canaries = int(np.count_nonzero(codes == _CANARY))
    if canaries:
        raise EventsError(
            "cohort",
            f"{canaries} rows are labelled 'canary'; shadow analysis pairs 'stable' with "
            "'shadow' rows (judge a canary with analyze)",
        )
    ts = checks.utc_timestamps(df["ts"], "ts")
    no_success = df["success"].isna().to_numpy()
    success = np.zeros(len(df), dtype=bool)
    if not no_success.all():
        success[~no_success] = checks.success_column(df["success"][~no_success])
    latency = checks.numeric_column(df, "latency_ms", low=0.0, nullable=True)
    tokens = checks.numeric_column(df, "tokens", low=0.0, nullable=True)
    score = (
        checks.numeric_column(df, "eval_score", low=0.0, high=1.0, nullable=True)
        if "eval_score" in df.columns
        else np.full(len(df), np.nan)
    )
    rid = df["request_id"].astype("string")
    keys = rid.fillna("").to_numpy(dtype=object)  # rows without an id are never paired
    has_id = rid.notna().to_numpy()
    for code in (_STABLE, _SHADOW):
        ids = rid[(codes == code) & has_id]
        dup = ids.duplicated()
        if dup.any():
            raise EventsError(
                "request_id",
                f"{int(dup.sum())} duplicated values among {COHORTS[code]} rows "
                f"(first: {ids[dup].iloc[0]!r}); each task must appear once per cohort",
            )
    issues = []
    complete = np.ones(len(df), dtype=bool)
    for name, missing in (
        ("success", no_success),
        ("latency_ms", np.isnan(latency)),
        ("tokens", np.isnan(tokens)),
    ):
        if missing.any():
            issues.append(f"{int(missing.sum())} rows have no {name} (partial data)")
            complete &= ~missing
    stable_rows = np.flatnonzero((codes == _STABLE) & complete)
    shadow_rows = np.flatnonzero((codes == _SHADOW) & complete)
    s_idx, h_idx = stable_rows[has_id[stable_rows]], shadow_rows[has_id[shadow_rows]]
    pos = pd.Index(keys[s_idx]).get_indexer(keys[h_idx])
    hit = pos >= 0
    s_pair, h_pair = s_idx[pos[hit]], h_idx[hit]
    order = ts.iloc[s_pair].argsort(kind="stable").to_numpy()  # by the stable task's end
    s_pair, h_pair = s_pair[order], h_pair[order]

    def runs(rows: np.ndarray) -> Runs:
        return Runs(success[rows], latency[rows], tokens[rows], score[rows])

    n = s_pair.size
    span = (ts.max() - ts.min()).floor("us").to_pytimedelta() if len(ts) else timedelta(0)
    unpaired = int(stable_rows.size - n), int(shadow_rows.size - n)
    return Pairs(runs(s_pair), runs(h_pair), *unpaired, tuple(issues), span)
