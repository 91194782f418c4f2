"""Eval report cards: one JSON file per release with per-task eval scores.

An eval harness writes one card per release it evaluated
(``data/report_cards/`` holds an example)::

    {
      "release": "2026.04.19-a3f2c1",
      "cohort": "canary",
      "harness": "agent-evals 3.2.0",
      "evaluated_at": "2026-11-20T10:00:00Z",
      "tasks": [
        {"task_id": "t-001", "score": 0.93, "ts": "2026-11-20T09:41:07Z"},
        {"task_id": "t-002", "score": 0.88}
      ]
    }

| key | required | meaning |
|---|---|---|
| ``release`` | yes | the release evaluated (``metadata.version``); no ``/``, no spaces |
| ``cohort`` | no | ``stable``, ``canary`` or ``shadow``; else the store resolves it |
| ``harness`` | yes | the eval harness and its version, for the audit trail |
| ``evaluated_at`` | yes | when the evaluation finished: ISO 8601 with a zone |
| ``tasks`` | yes | at least one task |
| ``tasks[i].task_id`` | yes | unique within the card |
| ``tasks[i].score`` | yes | a number in [0, 1] |
| ``tasks[i].ts`` | no | when the task was evaluated (ISO 8601, zoned); else ``evaluated_at`` |

Types are strict (a score of ``"0.9"`` or ``true`` is an error, not coerced) and no
other keys are allowed: a misspelt key would otherwise drop data without a word.
Errors are `EventsError` whose ``field`` is the JSON path (``tasks[3].score``), or
the file for a file that is missing or not JSON.

`load_report_card` maps a card to eval-score rows (`REPORT_CARD_COLUMNS`), what
`Store.ingest_eval_scores` takes: ``request_id`` is ``<release>/<task_id>``, so a
task id may repeat across releases and re-ingesting a card changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from ..errors import EventsError

__all__ = ["REPORT_CARD_COLUMNS", "ReportCard", "TaskScore", "load_report_card"]

#: Columns of `load_report_card`'s frame (those of the store's eval scores).
REPORT_CARD_COLUMNS = ("request_id", "ts", "release", "cohort", "eval_score")

_TIMESTAMP = "an ISO 8601 timestamp with a zone, e.g. 2026-11-20T10:00:00Z"
#: What each key must hold, for error messages (keyed by the last name in the path).
_EXPECTED = {
    "release": "a release name without '/' or spaces, e.g. 2026.04.19-a3f2c1",
    "cohort": "'stable', 'canary' or 'shadow' (or no cohort key)",
    "harness": "a non-empty string naming the eval harness",
    "evaluated_at": _TIMESTAMP,
    "tasks": "a non-empty list of tasks",
    "task_id": "a non-empty string",
    "score": "a number in [0, 1]",
    "ts": _TIMESTAMP,
}
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class TaskScore(BaseModel):
    """One evaluated task of a report card."""

    model_config = _STRICT

    task_id: Annotated[str, StringConstraints(pattern=r"\S")]
    score: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
    ts: AwareDatetime | None = None


class ReportCard(BaseModel):
    """An eval harness's scores for one release (the module docstring has the format)."""

    model_config = _STRICT

    # No '/': request ids join release and task id with one.
    release: Annotated[str, StringConstraints(pattern=r"^[^/\s]+$")]
    cohort: Literal["stable", "canary", "shadow"] | None = None
    harness: Annotated[str, StringConstraints(pattern=r"\S")]
    evaluated_at: AwareDatetime
    tasks: Annotated[list[TaskScore], Field(min_length=1)]

    def to_frame(self) -> pd.DataFrame:
        """Eval-score rows, one per task (columns `REPORT_CARD_COLUMNS`, ``ts`` in UTC)."""
        ts: list[datetime] = [t.ts or self.evaluated_at for t in self.tasks]
        index = pd.RangeIndex(len(self.tasks))
        return pd.DataFrame(
            {
                "request_id": pd.Series(
                    [f"{self.release}/{t.task_id}" for t in self.tasks], index, dtype="str"
                ),
                "ts": pd.Series(pd.to_datetime(ts, utc=True), index),
                "release": pd.Series(self.release, index, dtype="str"),
                "cohort": pd.Series(self.cohort, index, dtype="str"),  # None: a null column
                "eval_score": np.array([t.score for t in self.tasks], dtype=np.float64),
            },
            index=index,
        )


def load_report_card(path: str | Path) -> pd.DataFrame:
    """Read and check a report card; return its eval-score rows (see `ReportCard.to_frame`)."""
    p = Path(path)
    if not p.is_file():
        raise EventsError(str(p), "no such file")
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise EventsError(str(p), f"cannot read ({exc.strerror})") from None
    try:
        card = ReportCard.model_validate_json(text)
    except ValidationError as exc:
        raise _events_error(exc, p) from None
    first: dict[str, int] = {}
    for i, task in enumerate(card.tasks):
        j = first.setdefault(task.task_id, i)
        if j != i:
            raise EventsError(
                f"tasks[{i}].task_id",
                f"duplicate task id {task.task_id!r} (also tasks[{j}]); expected unique task ids",
            )
    return card.to_frame()


def _events_error(exc: ValidationError, path: Path) -> EventsError:
    """The first of pydantic's errors, as the JSON path and what belongs there."""
    err = exc.errors()[0]
    loc, kind = err["loc"], err["type"]
    if kind == "json_invalid":
        return EventsError(str(path), f"not valid JSON ({err['msg']})")
    if not loc:
        return EventsError(str(path), f"expected a JSON object; got {_show(err['input'])}")
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)[1:]
    name = next(str(part) for part in reversed(loc) if isinstance(part, str))
    more = exc.error_count() - 1
    also = f" (and {more} more problem{'s' if more > 1 else ''} in the card)" if more else ""
    if kind == "missing":
        return EventsError(where, f"missing; expected {_EXPECTED[name]}{also}")
    if kind == "extra_forbidden":
        model = TaskScore if len(loc) > 1 and isinstance(loc[-2], int) else ReportCard
        keys = ", ".join(model.model_fields)
        return EventsError(where, f"unknown key; expected only {keys}{also}")
    if kind == "model_type":  # a task that is not an object
        return EventsError(where, f"expected a JSON object; got {_show(err['input'])}{also}")
    if kind == "timezone_aware":
        return EventsError(
            where, f"timestamps have no time zone; expected UTC, e.g. 2026-11-20T10:00:00Z{also}"
        )
    return EventsError(where, f"expected {_EXPECTED[name]}; got {_show(err['input'])}{also}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
