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
    """Something that makes a window's numbers untrustworthy (the judge holds on it).

    ``kind`` is one of ``partial`` (a warning or partial response), ``counter_reset``,
    ``gap`` (a window without samples), ``nan``, ``empty`` (no series at all) or
    ``ingest_failed`` (the source could not be read).
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
    and the issues found while pulling them."""

    aggregates: pd.DataFrame
    issues: tuple[DataIssue, ...] = field(default=())

    def issues_frame(self) -> pd.DataFrame:
        rows = [(i.window_start, i.window_end, i.cohort, i.kind, i.detail) for i in self.issues]
        frame = pd.DataFrame(rows, columns=list(ISSUE_COLUMNS))
        for col in ("window_start", "window_end"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        return frame
