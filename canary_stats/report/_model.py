"""What the weekly report holds: frozen dataclasses read once from the store.

The renderers (`render_html`, `render_markdown`) only format these; every number
in both formats comes from here, so the two always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import pandas as pd

from ..errors import InputError
from ._week import IsoWeek

__all__ = [
    "NEAR_MISS_SHARE",
    "BaselineWeek",
    "DataLag",
    "EffectSize",
    "Headroom",
    "JudgeHealth",
    "Rollback",
    "RolloutSummary",
    "StageSpan",
    "TransitionLine",
    "WeeklyReport",
]

#: A promoted guardrail that used at least this share of its headroom is a near miss.
NEAR_MISS_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class TransitionLine:
    """One rollout transition, with the reason or error it carries as plain text."""

    rollout_id: str
    seq: int
    at: datetime
    state: str
    stage: int | None
    traffic: float | None
    note: str


@dataclass(frozen=True, slots=True)
class StageSpan:
    """How long one stage ran: from its ``stage_started`` to the next stage or decision."""

    stage: int
    traffic: float | None
    start: datetime
    end: datetime | None
    minutes: float | None
    ended_by: str  # the next transition's state, or "in progress"


@dataclass(frozen=True, slots=True)
class RolloutSummary:
    """One rollout with a transition in the week (it started, moved on or ended there).

    ``outcome`` is ``promoted``, ``rolled_back`` or ``in progress`` as the store
    stands now; ``decided_at`` is the ``promoted`` or ``rolling_back`` transition
    and ``decision_minutes`` the time from ``started`` to it.
    """

    rollout_id: str
    name: str
    version: str
    stable: str
    outcome: str
    last_state: str
    started_at: datetime
    decided_at: datetime | None
    ended_at: datetime | None
    decision_minutes: float | None
    stages_reached: int
    stages_planned: int | None
    max_traffic: float | None
    stages: tuple[StageSpan, ...]
    transitions: tuple[TransitionLine, ...]
    judge_errors: int
    pauses: int

    @property
    def reached(self) -> str:
        """``"3 of 4 stages (50%)"``."""
        planned = f" of {self.stages_planned}" if self.stages_planned else ""
        top = f" ({self.max_traffic:g}%)" if self.max_traffic is not None else ""
        return f"{self.stages_reached}{planned} stages{top}"


@dataclass(frozen=True, slots=True)
class Rollback:
    """A rolled-back rollout with the evidence that proved the violation.

    From its postmortem row when there is one (``source == "postmortem"``), else
    from the ``rolling_back`` transition. ``guardrail`` is None for an abort or
    a judge outage (nothing was proven).
    """

    rollout_id: str
    name: str
    version: str
    stable: str | None
    at: datetime
    guardrail: str | None
    estimate: float | None
    low: float | None
    high: float | None
    rule: str | None
    limit: float | None
    reason: str
    timeline: tuple[TransitionLine, ...]
    source: str


@dataclass(frozen=True, slots=True)
class EffectSize:
    """Canary vs stable over one rollout, with a bootstrap interval (report only).

    ``estimate`` is None when it could not be computed; ``note`` says why (for
    instance only per-window aggregates are stored, and the bootstrap needs raw
    events).
    """

    rollout_id: str
    version: str
    stable: str
    metric: str
    label: str
    contrast: str
    estimate: float | None
    low: float | None
    high: float | None
    n_stable: int
    n_canary: int
    method: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Headroom:
    """How much of a guardrail's headroom a promoted release's final verdict used.

    ``reference`` is where "no change" lies on the guardrail's scale: 0 for a
    difference, 1 for a ratio, the stable cohort's own value for an absolute
    limit. ``degradation`` is the estimate's distance from it in the harmful
    direction, ``headroom`` the limit's; ``used`` their ratio (None when there
    is no headroom to use or the stable value is unknown).
    """

    rollout_id: str
    version: str
    guardrail: str
    status: str
    rule: str
    limit: float
    estimate: float | None
    reference: float | None
    reference_source: str
    degradation: float | None
    headroom: float | None
    used: float | None

    @property
    def near_miss(self) -> bool:
        return (
            self.status != "fail"
            and self.used is not None
            and self.degradation is not None
            and self.degradation > 0
            and self.used >= NEAR_MISS_SHARE
        )


@dataclass(frozen=True, slots=True)
class BaselineWeek:
    """The stable cohort over one ISO week (None: no data for that metric)."""

    week: str
    start: datetime
    tasks: int
    success_rate: float | None
    p95_latency_ms: float | None
    tokens_per_task: float | None
    eval_score: float | None
    eval_n: int
    releases: tuple[str, ...]
    source: str  # "events", "aggregates" or "none"


@dataclass(frozen=True, slots=True)
class DataLag:
    """Ingest time minus the newest task (or window end) each ingest carried."""

    ingests: int
    median_minutes: float
    max_minutes: float


@dataclass(frozen=True, slots=True)
class JudgeHealth:
    """The judge's own week: its decisions, its inputs' trouble, its outages."""

    verdicts: dict[str, int]
    by_pair: tuple[tuple[str, str, int, int, int], ...]  # release, stable, promote, hold, rollback
    ingests: int
    failed_ingests: tuple[tuple[datetime, str, str], ...]  # started_at, source, detail
    data_issues: tuple[tuple[str, int], ...]  # kind, windows
    events: tuple[TransitionLine, ...]  # judge errors, pauses, manual commands
    commands: dict[str, int]  # applied / refused / queued
    lag: DataLag | None

    @property
    def total_verdicts(self) -> int:
        return sum(self.verdicts.values())

    @property
    def hold_share(self) -> float | None:
        total = self.total_verdicts
        return self.verdicts.get("hold", 0) / total if total else None

    def count(self, state: str) -> int:
        """Transitions of one state (``judge_error``, ``paused``, ...) in the week."""
        return sum(1 for e in self.events if e.state == state)


@dataclass(frozen=True, slots=True)
class WeeklyReport:
    """Everything the weekly report shows, read from one store for one ISO week."""

    week: IsoWeek
    generated_at: datetime
    store: str
    rollouts: tuple[RolloutSummary, ...]
    rollbacks: tuple[Rollback, ...]
    effects: tuple[EffectSize, ...]
    headroom: tuple[Headroom, ...]
    baseline: tuple[BaselineWeek, ...]
    health: JudgeHealth
    confidence_level: float
    n_resamples: int
    seed: int
    latest_activity: datetime | None = None

    @property
    def near_misses(self) -> tuple[Headroom, ...]:
        return tuple(h for h in self.headroom if h.near_miss)

    @property
    def empty(self) -> bool:
        """Nothing happened: no rollout, verdict, ingest, data issue or judge event."""
        h = self.health
        return not (
            self.rollouts
            or h.total_verdicts
            or h.ingests
            or h.failed_ingests
            or h.data_issues
            or h.events
            or sum(h.commands.values())
        )

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.rollouts if r.outcome == outcome)

    def frame(self, part: str) -> pd.DataFrame:
        """One part as a DataFrame (``rollouts``, ``rollbacks``, ``effects``,
        ``headroom``, ``baseline``), for notebooks."""
        rows = {
            "rollouts": self.rollouts,
            "rollbacks": self.rollbacks,
            "effects": self.effects,
            "headroom": self.headroom,
            "baseline": self.baseline,
        }
        if part not in rows:
            raise InputError("part", f"expected one of {sorted(rows)}; got {part!r}")
        items: tuple[Any, ...] = rows[part]
        nested = ("stages", "transitions", "timeline")
        cols = [f.name for f in fields(items[0]) if f.name not in nested] if items else []
        return pd.DataFrame([{c: getattr(i, c) for c in cols} for i in items], columns=cols)
