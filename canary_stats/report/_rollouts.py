"""The week's rollouts and rollbacks, from ``rollout_transitions`` and ``postmortems``.

A rollout belongs to a week when it has a transition in it: it started, moved
to another stage, paused, or ended there (a rollout stuck for weeks without a
transition is not listed again and again). Time to decision runs from its
``started`` transition to its ``promoted`` or ``rolling_back`` transition, the
moment the decision was acted on.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb

from ._model import Rollback, RolloutSummary, StageSpan, TransitionLine
from ._week import IsoWeek

__all__ = ["has_table", "read_rollbacks", "read_rollouts", "transition_line"]

#: Transitions that end a rollout, and those that act on a decision.
_ENDED = ("promoted", "rolled_back")
_DECIDED = ("promoted", "rolling_back")
#: A stage ends when the next stage starts or the rollout is decided or aborted.
_STAGE_ENDS = ("stage_started", "promoted", "rolling_back", "aborted")
_REACHED = ("stage_started", "promoted")


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the store has a table (a file of an older schema opened read-only may not)."""
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()
    return bool(rows and rows[0][0])


def transition_line(
    rid: str, seq: int, at: datetime, state: str, stage: Any, traffic: Any, detail: Any
) -> TransitionLine:
    """A transition row with its detail reduced to one human note."""
    parsed = json.loads(detail) if isinstance(detail, str) else dict(detail or {})
    return TransitionLine(
        rid,
        int(seq),
        at,
        str(state),
        None if stage is None else int(stage),
        None if traffic is None else float(traffic),
        _note(str(state), parsed),
    )


def _note(state: str, detail: dict[str, Any]) -> str:
    if state == "started":
        return f"against stable {detail.get('stable', '?')}"
    if state == "judge_error":
        n, limit = detail.get("consecutive"), detail.get("limit")
        return f"error {n} of {limit} in a row: {detail.get('error', '')}".strip()
    if state == "reapplying_previous":
        return f"re-applying {detail.get('version', '?')} (from {detail.get('source', '?')})"
    if state == "invalidating_caches" and "drained" in detail:
        return "canary drained" if detail["drained"] else "drain timed out"
    for key in ("reason", "note", "error"):
        if detail.get(key):
            return str(detail[key])
    return ""


def _minutes(a: datetime, b: datetime | None) -> float | None:
    return None if b is None else (b - a).total_seconds() / 60.0


def read_rollouts(con: duckdb.DuckDBPyConnection, week: IsoWeek) -> tuple[RolloutSummary, ...]:
    """Every rollout with a transition in ``week``, oldest start first."""
    if not has_table(con, "rollout_transitions"):
        return ()
    ids = con.execute(
        "SELECT rollout_id FROM rollout_transitions GROUP BY rollout_id "
        "HAVING count(*) FILTER (WHERE recorded_at >= $start AND recorded_at < $end) > 0 "
        "ORDER BY min(recorded_at), rollout_id",
        {"start": week.start, "end": week.end},
    ).fetchall()
    out = []
    for (rid,) in ids:
        rows = con.execute(
            "SELECT rollout_id, seq, recorded_at, state, stage, traffic, detail "
            "FROM rollout_transitions WHERE rollout_id = ? ORDER BY seq",
            [rid],
        ).fetchall()
        started: dict[str, Any] = next((json.loads(r[6]) for r in rows if r[3] == "started"), {})
        out.append(_summary(str(rid), [transition_line(*r) for r in rows], started))
    return tuple(out)


def _summary(rid: str, lines: list[TransitionLine], started: dict[str, Any]) -> RolloutSummary:
    _, _, id_name, id_version = [*rid.split(":", 3), "", "", ""][:4]
    start = next((t.at for t in lines if t.state == "started"), lines[0].at)
    decided = next((t.at for t in lines if t.state in _DECIDED), None)
    ended = next((t for t in lines if t.state in _ENDED), None)
    outcome = ended.state if ended is not None else "in progress"
    stages = []
    for i, t in enumerate(lines):
        if t.state != "stage_started" or t.stage is None:
            continue
        nxt = next((u for u in lines[i + 1 :] if u.state in _STAGE_ENDS), None)
        end = None if nxt is None else nxt.at
        stages.append(
            StageSpan(
                t.stage,
                t.traffic,
                t.at,
                end,
                _minutes(t.at, end),
                "in progress" if nxt is None else nxt.state,
            )
        )
    traffic = [t.traffic for t in lines if t.state in ("stage_started", "promoted") and t.traffic]
    planned = started.get("stages")
    return RolloutSummary(
        rollout_id=rid,
        name=str(started.get("name") or id_name),
        version=str(started.get("version") or id_version),
        stable=str(started.get("stable") or "?"),
        outcome=outcome,
        last_state=lines[-1].state,
        started_at=start,
        decided_at=decided,
        ended_at=None if ended is None else ended.at,
        decision_minutes=_minutes(start, decided),
        # The promoted transition carries the 100 % stage: it was reached too.
        stages_reached=len({t.stage for t in lines if t.state in _REACHED and t.stage is not None}),
        stages_planned=len(planned) if isinstance(planned, list) else None,
        max_traffic=max(traffic) if traffic else None,
        stages=tuple(stages),
        transitions=tuple(lines),
        judge_errors=sum(t.state == "judge_error" for t in lines),
        pauses=sum(t.state == "paused" for t in lines),
    )


def read_rollbacks(
    con: duckdb.DuckDBPyConnection, rollouts: tuple[RolloutSummary, ...]
) -> tuple[Rollback, ...]:
    """The evidence behind each rolled-back rollout of the week."""
    postmortems: dict[str, tuple[Any, ...]] = {}
    if has_table(con, "postmortems"):
        rows = con.execute(
            "SELECT rollout_id, stable_version, created_at, guardrail, estimate, interval_low, "
            "interval_high, reason, verdict FROM postmortems"
        ).fetchall()
        postmortems = {str(r[0]): tuple(r) for r in rows}
    out = []
    for r in rollouts:
        if r.outcome != "rolled_back":
            continue
        row = postmortems.get(r.rollout_id)
        if row is not None:
            _, stable, at, guardrail, est, low, high, reason, verdict = row
            parsed = json.loads(verdict) if isinstance(verdict, str) else verdict
            rule, limit = _limit(parsed, guardrail)
            out.append(
                Rollback(
                    r.rollout_id,
                    r.name,
                    r.version,
                    stable,
                    at,
                    guardrail,
                    est,
                    low,
                    high,
                    rule,
                    limit,
                    str(reason),
                    r.transitions,
                    "postmortem",
                )
            )
            continue
        rolling = next((t for t in r.transitions if t.state == "rolling_back"), None)
        at = r.ended_at or r.transitions[-1].at
        reason = rolling.note if rolling is not None else "rolled back"
        out.append(
            Rollback(
                r.rollout_id,
                r.name,
                r.version,
                r.stable,
                at,
                None,
                None,
                None,
                None,
                None,
                None,
                reason or "rolled back",
                r.transitions,
                "transitions",
            )
        )
    return tuple(out)


def _limit(verdict: Any, guardrail: str | None) -> tuple[str | None, float | None]:
    """The failed guardrail's rule and limit, from the verdict acted on."""
    if not isinstance(verdict, dict) or guardrail is None:
        return None, None
    metric = (verdict.get("metrics") or {}).get(guardrail)
    if not isinstance(metric, dict):
        return None, None
    limit = metric.get("limit")
    return (
        str(metric["rule"]) if metric.get("rule") is not None else None,
        float(limit) if isinstance(limit, int | float) else None,
    )
