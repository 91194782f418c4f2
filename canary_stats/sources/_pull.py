"""What every pull from a metrics source hands to the store: aggregates and data issues."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

__all__ = ["ISSUE_COLUMNS", "DataIssue", "Pull"]

#: Columns of the issues frame; ``cohort`` is None when an issue concerns both.
ISSUE_COLUMNS = ("window_start", "window_end", "cohort", "kind", "detail")


@dataclass(frozen=True, slots=True)
class DataIssue:
    """Something that makes a window's numbers untrustworthy.

    The window is left out of the evidence and named; the judge holds on it, and
    still rolls back on a violation proven by the trustworthy windows. ``kind`` is
    one of ``partial`` (a warning or partial response), ``counter_reset``, ``gap``
    (a window in which a cohort finished tasks but lacks a series every task
    records), ``nan`` or ``ingest_failed`` (the source could not be read). A window
    without tasks is no issue: it is data (zero tasks).
    """

    window_start: datetime
    window_end: datetime
    cohort: str | None
    kind: str
    detail: str

    def describe(self) -> str:
        who = "" if self.cohort is None else f" ({self.cohort})"
        end = f"{self.window_end:%Y-%m-%d %H:%M}Z"
        return f"{self.kind}{who} in the window ending {end}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Pull:
    """One pull: per-window aggregates (``summary.AGGREGATE_COLUMNS`` plus ``release``)
    and the issues found while pulling them.

    ``start`` and ``end`` are the grid range the pull covered (when known): a clean
    re-pull of it replaces the issues stored for its windows. ``unmatched`` names
    the cohorts no series matched at all.
    """

    aggregates: pd.DataFrame
    issues: tuple[DataIssue, ...] = field(default=())
    unmatched: tuple[str, ...] = field(default=())
    start: datetime | None = None
    end: datetime | None = None

    def trusted(self) -> pd.DataFrame:
        """The aggregates without the windows an issue overlaps (for both cohorts)."""
        frame = self.aggregates
        if not self.issues or frame.empty:
            return frame
        starts, ends = frame["window_start"], frame["window_end"]
        bad = pd.Series(False, index=frame.index)
        for issue in self.issues:
            bad |= (starts < pd.Timestamp(issue.window_end)) & (
                pd.Timestamp(issue.window_start) < ends
            )
        return frame[~bad.to_numpy()]

    def issues_frame(self) -> pd.DataFrame:
        rows = [(i.window_start, i.window_end, i.cohort, i.kind, i.detail) for i in self.issues]
        frame = pd.DataFrame(rows, columns=list(ISSUE_COLUMNS))
        for col in ("window_start", "window_end"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        return frame
