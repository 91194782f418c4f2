"""A rollout's data cut at its stage boundaries, for evidence kept across stages.

Each stage is compared over its own windows (the traffic split is constant
within a stage, so drift shared by both cohorts cancels); the judge multiplies
the stages' evidence (`canary_stats.stats.combine_stages`). This module turns
"the rollout's data and when each stage began" into one input per stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import EventsError
from .sources._pull import Pull
from .sources.files import load_events
from .store import Store, StoreView
from .summary import Summary, UserHistory

__all__ = [
    "as_frame",
    "earlier_views",
    "history_before",
    "rollout_start",
    "split_stages",
    "users_history",
]


def _stage_starts(starts: Sequence[datetime | str], stage: int) -> list[datetime]:
    """Validated stage starts: one per stage ``0 .. stage``, increasing, in UTC."""
    if isinstance(starts, str | bytes) or len(starts) != stage + 1:
        got = "a string" if isinstance(starts, str | bytes) else f"{len(starts)} values"
        raise EventsError(
            "stage_starts", f"expected one start per stage 0..{stage} ({stage + 1}); got {got}"
        )
    parsed = []
    for i, value in enumerate(starts):
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise EventsError(
                f"stage_starts[{i}]", f"expected a timestamp (ISO 8601); got {value!r}"
            ) from None
        if pd.isna(ts):
            raise EventsError(f"stage_starts[{i}]", "expected a timestamp; got NaT")
        parsed.append(ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC))
    for i in range(1, len(parsed)):
        if parsed[i] <= parsed[i - 1]:
            raise EventsError(
                f"stage_starts[{i}]",
                f"stage {i} must start after stage {i - 1} ({parsed[i - 1].isoformat()}); "
                f"got {parsed[i].isoformat()}",
            )
    return [p.floor("us").to_pydatetime() for p in parsed]  # datetime holds microseconds


def split_stages(data: Any, starts: Sequence[datetime]) -> list[Any]:
    """``data`` of a whole rollout as one input per stage, cut at ``starts``.

    Stage ``k`` holds what happened in ``[starts[k], starts[k + 1])``; the last
    stage runs to the end of the data. Raw events are cut by their ``ts``,
    aggregates by their window's start, store views by narrowing the selection.
    A `Summary` cannot be cut: give each stage's data through ``earlier``.
    """
    ends: list[datetime | None] = [*starts[1:], None]
    if isinstance(data, Store):
        data = data.select()
    if isinstance(data, StoreView):
        sel = data.selection
        return [
            StoreView(
                data.store,
                replace(
                    sel,
                    start=_later(sel.start, s),
                    end=e if sel.end is None else _earlier(sel.end, e),
                ),
            )
            for s, e in zip(starts, ends, strict=True)
        ]
    if isinstance(data, Summary):
        raise EventsError(
            "stage_starts", "a Summary cannot be cut into stages; pass each stage's data as earlier"
        )
    if isinstance(data, Pull):
        return [_cut_pull(data, s, e) for s, e in zip(starts, ends, strict=True)]
    data = as_frame(data)
    column = "ts" if "ts" in data.columns else "window_start"
    if column not in data.columns:
        raise EventsError(
            "events", "expected a `ts` (events) or `window_start` (aggregates) column"
        )
    when = pd.to_datetime(data[column], utc=True)
    if len(when) and pd.Timestamp(starts[-1]) > when.max():
        raise EventsError(
            f"stage_starts[{len(starts) - 1}]",
            f"the current stage starts at {starts[-1].isoformat()}, after the newest data "
            f"({when.max().isoformat()}): nothing to judge in it",
        )
    return [
        data[(when >= s) & (when < e)] if e is not None else data[when >= s]
        for s, e in zip(starts, ends, strict=True)
    ]


def earlier_views(
    store: Store,
    *,
    stable: str,
    canary: str,
    starts: Sequence[datetime | None],
    current: datetime,
) -> list[StoreView | None]:
    """The store's data of each earlier stage, cut at the recorded stage starts.

    ``starts`` holds when stages ``0 .. k - 1`` began (None where unknown), in the
    same rollout; ``current`` when stage ``k`` did. A stage runs to the next known
    start. Starts that do not increase toward ``current`` belong to another rollout
    of the same pair (or a clock gone wrong): evidence then starts after them.
    """
    views: list[StoreView | None] = [None] * len(starts)
    end = current
    for j in range(len(starts) - 1, -1, -1):
        begin = starts[j]
        if begin is None:
            continue
        if begin >= end:
            break  # the chain is broken here: nothing earlier belongs to this rollout
        views[j] = store.select(stable=stable, canary=canary, start=begin, end=end)
        end = begin
    return views


def history_before(data: Any, start: datetime, span: timedelta) -> Any:
    """``data``'s events in ``[start - span, start)``: the users' history before a rollout.

    Store views are narrowed, raw events cut by ``ts``; aggregates and summaries
    have no users, so they give None, as does a zero ``span``.
    """
    if span <= timedelta(0) or isinstance(data, Summary | Pull):
        return None
    if isinstance(data, Store):
        data = data.select()
    if isinstance(data, StoreView):
        return StoreView(data.store, replace(data.selection, start=start - span, end=start))
    frame = as_frame(data)
    if "ts" not in frame.columns or "user_id" not in frame.columns:
        return None
    when = pd.to_datetime(frame["ts"], utc=True)
    return frame[(when >= start - span) & (when < start)]


def users_history(data: Any) -> UserHistory | None:
    """`UserHistory` of any input `analyze` takes as ``history`` (None: no history).

    Only the stable cohort's events with user ids count: before the rollout every
    user was on stable, and a canary's events are not a user's own level.
    """
    if data is None or isinstance(data, UserHistory):
        return data
    if isinstance(data, Store):
        data = data.select()
    if isinstance(data, StoreView):
        return data.history()
    if isinstance(data, Summary | Pull):
        raise EventsError(
            "history",
            "expected raw events with user ids (or a store view of them); aggregates and "
            "summaries have no users",
        )
    return UserHistory.from_events(as_frame(data))


def rollout_start(views: Sequence[StoreView | None], current: datetime) -> datetime:
    """When the rollout of these earlier-stage views began (``current`` without any)."""
    starts = [v.selection.start for v in views if v is not None and v.selection.start]
    return min([*starts, current])


def as_frame(data: Any) -> pd.DataFrame:
    """Events or aggregates as a DataFrame: a frame, a file path or a DuckDB relation."""
    if isinstance(data, str | Path):
        data = load_events(data)
    elif hasattr(data, "df") and callable(data.df):  # a DuckDB relation
        data = data.df()
    if not isinstance(data, pd.DataFrame):
        raise EventsError(
            "events",
            f"expected a DataFrame, a file path, a store or a Summary; got {type(data).__name__}",
        )
    return data


def _cut_pull(pull: Pull, start: datetime, end: datetime | None) -> Pull:
    when = pd.to_datetime(pull.aggregates["window_start"], utc=True)
    keep = (when >= start) & ((when < end) if end is not None else True)
    issues = tuple(
        i
        for i in pull.issues
        if pd.Timestamp(i.window_end) > pd.Timestamp(start)
        and (end is None or pd.Timestamp(i.window_start) < pd.Timestamp(end))
    )
    return replace(pull, aggregates=pull.aggregates[keep], issues=issues)


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else max(a, b)


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return b if a is None else a
    return min(a, b)


def _same_pair(view: Any, history: Sequence[Any]) -> None:
    """Refuse earlier stages of another release pair (store views name theirs)."""
    if not isinstance(view, StoreView):
        return
    pair = (view.selection.stable, view.selection.canary)
    for i, h in enumerate(history):
        if isinstance(h, StoreView) and (h.selection.stable, h.selection.canary) != pair:
            raise EventsError(
                f"earlier[{i}]",
                f"holds {h.selection.canary} against {h.selection.stable}; this verdict is "
                f"for {pair[1]} against {pair[0]}: a history from another release pair",
            )


def _data_end(summary: Summary, start: datetime) -> datetime:
    """End of the current stage's data (its start when it has none)."""
    end = summary.end
    if end is None:
        return start
    return end if end.tzinfo is not None else end.replace(tzinfo=UTC)
