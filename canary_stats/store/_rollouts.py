"""Rollout state in the store: the transition log, manual commands and postmortems.

The executor's transitions are appended with the next sequence number computed in
the same statement (and, for a transition caused by a manual command, the command
marked handled in the same transaction), so a transition is never lost or written
twice. Commands are queued by other processes while the executor runs: each gets
an id from a sequence, so concurrent queuers never collide.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar

import duckdb

from ..errors import StoreError
from ._schema import first_row

__all__ = [
    "COMMANDS",
    "Command",
    "CommandRecord",
    "PostmortemRecord",
    "StoreBusy",
    "TransitionRecord",
    "append_transition",
    "commands",
    "latest_rollout",
    "postmortems",
    "queue_command",
    "record_postmortem",
    "refuse_command",
    "transitions",
]

Command = Literal["pause", "resume", "abort", "promote"]
COMMANDS: tuple[Command, ...] = ("pause", "resume", "abort", "promote")

_P = ParamSpec("_P")
_T = TypeVar("_T")


class StoreBusy(StoreError):
    """A concurrent transaction touched the same rows; retrying is safe."""


def _busy(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """DuckDB's write-write conflicts as `StoreBusy` (the transaction was rolled back)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(*args, **kwargs)
        except duckdb.TransactionException as exc:
            raise StoreBusy(f"concurrent update, retry: {exc}") from exc

    return wrapper


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One row of ``rollout_transitions``; ``detail`` is its parsed JSON."""

    rollout_id: str
    seq: int
    recorded_at: datetime
    state: str
    stage: int | None
    traffic: float | None
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> TransitionRecord:
        rid, seq, at, state, stage, traffic, detail = row
        return cls(
            rid,
            int(seq),
            at,
            state,
            None if stage is None else int(stage),
            None if traffic is None else float(traffic),
            json.loads(detail),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the postmortem's timeline and ``rollout status``)."""
        return {
            "seq": self.seq,
            "recorded_at": self.recorded_at.isoformat(),
            "state": self.state,
            "stage": self.stage,
            "traffic": self.traffic,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One manual command and what became of it."""

    rollout_id: str
    id: int
    command: str
    requested_at: datetime
    requested_by: str
    handled_seq: int | None
    handled_at: datetime | None
    outcome: str | None
    reason: str | None

    @property
    def status(self) -> str:
        """``queued``, ``applied`` or ``refused``."""
        return self.outcome or "queued"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "requested_at": self.requested_at.isoformat(),
            "requested_by": self.requested_by,
            "status": self.status,
            "handled_seq": self.handled_seq,
            "handled_at": self.handled_at.isoformat() if self.handled_at else None,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class PostmortemRecord:
    """Why a rollout was rolled back, with the evidence and the whole timeline."""

    rollout_id: str
    name: str
    version: str
    stable_version: str | None
    created_at: datetime
    guardrail: str | None
    estimate: float | None
    interval_low: float | None
    interval_high: float | None
    reason: str
    verdict: dict[str, Any] | None
    timeline: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "name": self.name,
            "version": self.version,
            "stable_version": self.stable_version,
            "created_at": self.created_at.isoformat(),
            "guardrail": self.guardrail,
            "estimate": self.estimate,
            "interval": [self.interval_low, self.interval_high],
            "reason": self.reason,
            "verdict": self.verdict,
            "timeline": self.timeline,
        }


_TRANSITION_COLUMNS = "rollout_id, seq, recorded_at, state, stage, traffic, detail"
_COMMAND_COLUMNS = (
    "rollout_id, id, command, requested_at, requested_by, handled_seq, handled_at, outcome, reason"
)


@_busy
def append_transition(
    con: duckdb.DuckDBPyConnection,
    rollout_id: str,
    state: str,
    *,
    at: datetime,
    stage: int | None = None,
    traffic: float | None = None,
    detail: dict[str, Any] | None = None,
    command_id: int | None = None,
) -> TransitionRecord:
    """Append the rollout's next transition; with ``command_id``, mark it applied.

    The sequence number is ``max(seq) + 1`` computed by the insert itself; the
    key (rollout_id, seq) refuses a second writer that raced to the same number.
    """
    con.begin()
    try:
        row = first_row(
            con.execute(
                f"INSERT INTO rollout_transitions SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, "
                f"?, ? FROM rollout_transitions WHERE rollout_id = ? "
                f"RETURNING {_TRANSITION_COLUMNS}",
                [rollout_id, at, state, stage, traffic, json.dumps(detail or {}), rollout_id],
            )
        )
        assert row is not None  # an INSERT ... SELECT of an aggregate yields one row
        record = TransitionRecord.from_row(row)
        if command_id is not None:
            done = first_row(
                con.execute(
                    "UPDATE rollout_commands SET handled_seq = ?, handled_at = ?, "
                    "outcome = 'applied' WHERE id = ? AND rollout_id = ? AND outcome IS NULL "
                    "RETURNING id",
                    [record.seq, at, command_id, rollout_id],
                )
            )
            if done is None:
                raise StoreError(f"command {command_id} of {rollout_id} is not queued")
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return record


def transitions(con: duckdb.DuckDBPyConnection, rollout_id: str) -> list[TransitionRecord]:
    """The rollout's transitions, oldest first."""
    rows = con.execute(
        f"SELECT {_TRANSITION_COLUMNS} FROM rollout_transitions WHERE rollout_id = ? ORDER BY seq",
        [rollout_id],
    ).fetchall()
    return [TransitionRecord.from_row(r) for r in rows]


def latest_rollout(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The id of the most recently started rollout of release ``name``."""
    row = first_row(
        con.execute(
            "SELECT rollout_id FROM rollout_transitions WHERE state = 'started' "
            "AND json_extract_string(detail, '$.name') = ? "
            "ORDER BY recorded_at DESC, rollout_id DESC LIMIT 1",
            [name],
        )
    )
    return None if row is None else str(row[0])


@_busy
def queue_command(
    con: duckdb.DuckDBPyConnection,
    rollout_id: str,
    command: Command,
    *,
    requested_by: str,
    at: datetime,
) -> CommandRecord:
    """Queue a manual command for the executor's next check."""
    if command not in COMMANDS:
        raise StoreError(f"command: expected one of {COMMANDS}; got {command!r}")
    row = first_row(
        con.execute(
            "INSERT INTO rollout_commands (rollout_id, command, requested_at, requested_by) "
            f"VALUES (?, ?, ?, ?) RETURNING {_COMMAND_COLUMNS}",
            [rollout_id, command, at, requested_by],
        )
    )
    assert row is not None
    return _command(row)


def commands(
    con: duckdb.DuckDBPyConnection, rollout_id: str, *, queued_only: bool = False
) -> list[CommandRecord]:
    """The rollout's commands in the order they were queued."""
    rows = con.execute(
        f"SELECT {_COMMAND_COLUMNS} FROM rollout_commands WHERE rollout_id = ? "
        "AND (NOT ? OR outcome IS NULL) ORDER BY id",
        [rollout_id, queued_only],
    ).fetchall()
    return [_command(r) for r in rows]


@_busy
def refuse_command(
    con: duckdb.DuckDBPyConnection, command_id: int, *, seq: int | None, reason: str, at: datetime
) -> bool:
    """Mark a queued command refused (``seq``: the transition in force); False if handled."""
    row = first_row(
        con.execute(
            "UPDATE rollout_commands SET handled_seq = ?, handled_at = ?, outcome = 'refused', "
            "reason = ? WHERE id = ? AND outcome IS NULL RETURNING id",
            [seq, at, reason, command_id],
        )
    )
    return row is not None


def _command(row: tuple[Any, ...]) -> CommandRecord:
    rid, cid, command, at, by, seq, handled_at, outcome, reason = row
    return CommandRecord(
        rid, int(cid), command, at, by, None if seq is None else int(seq), handled_at, outcome,
        reason,
    )  # fmt: skip


@_busy
def record_postmortem(con: duckdb.DuckDBPyConnection, record: PostmortemRecord) -> bool:
    """Store a postmortem; False (and nothing changes) if the rollout already has one."""
    row = first_row(
        con.execute(
            "INSERT OR IGNORE INTO postmortems VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING rollout_id",
            [
                record.rollout_id,
                record.name,
                record.version,
                record.stable_version,
                record.created_at,
                record.guardrail,
                record.estimate,
                record.interval_low,
                record.interval_high,
                record.reason,
                None if record.verdict is None else json.dumps(record.verdict, sort_keys=True),
                json.dumps(record.timeline),
            ],
        )
    )
    return row is not None


def postmortems(
    con: duckdb.DuckDBPyConnection, *, name: str | None = None, rollout_id: str | None = None
) -> list[PostmortemRecord]:
    """Postmortems, oldest first, optionally of one release name or one rollout."""
    rows = con.execute(
        "SELECT * FROM postmortems WHERE ($name IS NULL OR name = $name) "
        "AND ($rid IS NULL OR rollout_id = $rid) ORDER BY created_at, rollout_id",
        {"name": name, "rid": rollout_id},
    ).fetchall()
    return [_postmortem(r) for r in rows]


def _postmortem(row: tuple[Any, ...]) -> PostmortemRecord:
    rid, name, version, stable, at, guardrail, estimate, low, high, reason, verdict, tl = row
    parsed = None if verdict is None else json.loads(verdict)
    return PostmortemRecord(
        rid, name, version, stable, at, guardrail, estimate, low, high, reason, parsed,
        json.loads(tl),
    )  # fmt: skip
