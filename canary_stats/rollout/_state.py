"""The rollout's persisted state: its transition log, folded into where it stands.

Transitions (``rollout_transitions.state``), each written *before* its action:

==========================  ========================================================
state                       action (every one idempotent)
==========================  ========================================================
``started``                 none (the manifest was registered; follow-up: stage 0)
``stage_started``           ``set_weight(traffic)``
``judge_error``             none; ``detail.consecutive`` counts the outage
``judge_recovered``         none (the count is back to 0)
``paused``                  none (no checks until ``resumed``)
``resumed``                 none
``promoted_manually``       none (follow-up: the next stage)
``aborted``                 none (follow-up: ``rolling_back``)
``rolling_back``            ``stop_canary(drain_timeout)`` (weight 0, drain in flight)
``invalidating_caches``     ``invalidate_caches()``
``reapplying_previous``     ``apply_manifest(previous stable manifest)``
``rolled_back``             postmortem written, release marked ``rolled_back`` (locked)
``promoted``                ``set_weight(100)``, release marked ``stable``
==========================  ========================================================

A transition is appended only once the previous one's action is done, so after a
crash only the last one may be unfinished: the executor repeats its action and
never appends it again. A rollback is four such steps, so a crash in the middle
resumes at the step it reached: finished steps are not repeated, and the one in
flight (stopping and draining the canary, invalidating caches, re-applying the
manifest, or locking the release with its postmortem) is repeated once.

The count of consecutive judge errors is durable as the ``consecutive`` of the
last ``judge_error``; ``stage_started``, ``judge_recovered``, ``resumed`` and
``promoted_manually`` reset it. Once it reaches the limit with ``hold``, further
errors write nothing (the count stays at the limit), so an outage does not grow
the log one transition per check.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import InputError, StoreError
from ..store import Store
from ..store._rollouts import CommandRecord, StoreBusy, TransitionRecord

__all__ = [
    "DONE",
    "Lease",
    "Phase",
    "ReleaseLocked",
    "RolloutBusy",
    "RolloutState",
    "RolloutStatus",
    "StoreLocked",
    "command_effect",
    "fold",
    "rollout_id",
    "with_store",
]

Phase = Literal["new", "running", "paused", "rolling_back", "promoted", "rolled_back"]

#: The phase each state puts the rollout in (None: unchanged).
_PHASES: dict[str, Phase | None] = {
    "started": "running",
    "stage_started": "running",
    "judge_error": None,
    "judge_recovered": None,
    "paused": "paused",
    "resumed": "running",
    "promoted_manually": "running",
    "aborted": "rolling_back",
    "rolling_back": "rolling_back",
    "invalidating_caches": "rolling_back",
    "reapplying_previous": "rolling_back",
    "rolled_back": "rolled_back",
    "promoted": "promoted",
}
#: States after which the judge's error count starts again from 0.
_RESETS = frozenset({"stage_started", "judge_recovered", "resumed", "promoted_manually"})
DONE: frozenset[Phase] = frozenset({"promoted", "rolled_back"})


def rollout_id(name: str, version: str) -> str:
    """The id of the rollout of ``version`` of release ``name``."""
    return f"rollout:{name}:{version}"


class ReleaseLocked(InputError):
    """The version was rolled back: it is locked and never rolled out again."""


class StoreLocked(StoreError):
    """The store stayed locked by another process for longer than we wait."""


class RolloutBusy(StoreError):
    """Another executor is running the same rollout."""


@dataclass(frozen=True, slots=True)
class RolloutState:
    """A rollout's transition log folded into where it stands."""

    rollout_id: str
    transitions: tuple[TransitionRecord, ...]
    phase: Phase
    stage: int | None
    traffic: float | None
    stage_started_at: datetime | None
    judge_errors: int

    @property
    def last(self) -> TransitionRecord | None:
        return self.transitions[-1] if self.transitions else None

    @property
    def seq(self) -> int | None:
        return self.transitions[-1].seq if self.transitions else None

    @property
    def done(self) -> bool:
        return self.phase in DONE

    @property
    def stage_starts(self) -> tuple[datetime | None, ...]:
        """When each stage ``0 .. stage`` of this rollout began (None if it never ran).

        A stage started again (after going back to an earlier one) drops the starts
        of the stages after it: their evidence belongs to the earlier attempt.
        """
        starts: dict[int, datetime] = {}
        for t in self.transitions:
            if t.state == "stage_started" and t.stage is not None:
                starts = {k: v for k, v in starts.items() if k < t.stage}
                starts[t.stage] = t.recorded_at
        return tuple(starts.get(k) for k in range((self.stage or 0) + 1))

    @property
    def started(self) -> dict[str, Any]:
        """The ``started`` transition's detail: the rollout's pinned parameters."""
        return self.transitions[0].detail if self.transitions else {}


def fold(rid: str, transitions: Iterable[TransitionRecord]) -> RolloutState:
    """Replay the log; an unknown state (a newer canary_stats wrote it) is an error."""
    log = tuple(transitions)
    phase: Phase = "new"
    stage: int | None = None
    traffic: float | None = None
    started_at: datetime | None = None
    errors = 0
    for t in log:
        if t.state not in _PHASES:
            raise StoreError(
                f"{rid}: transition {t.seq} has unknown state {t.state!r} "
                "(written by a newer canary_stats?)"
            )
        phase = _PHASES[t.state] or phase
        stage = stage if t.stage is None else t.stage
        traffic = traffic if t.traffic is None else t.traffic
        if t.state == "stage_started":
            started_at = t.recorded_at
        if t.state == "judge_error":
            errors = int(t.detail.get("consecutive", errors + 1))
        elif t.state in _RESETS:
            errors = 0
    return RolloutState(rid, log, phase, stage, traffic, started_at, errors)


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """Where a rollout stands after a check, for progress displays and exit codes.

    ``decision`` and ``verdict`` are the latest judge answer this process saw
    (``"error"`` when the judge failed); ``checked`` says whether the judge was
    asked in this very check; ``reason`` says why the rollout is where it is (the
    verdict's reason, a command, or the transition's reason).
    """

    rollout_id: str
    name: str
    version: str
    stable: str
    state: str
    phase: Phase
    stage: int | None
    stages: int
    traffic: float | None
    stage_started_at: datetime | None
    elapsed: timedelta
    stage_duration: timedelta | None
    judge_errors: int
    decision: str | None
    reason: str
    verdict: dict[str, Any] | None
    checked: bool = False

    @property
    def done(self) -> bool:
        """Promoted or rolled back: nothing more will happen."""
        return self.phase in DONE

    @classmethod
    def of(
        cls,
        state: RolloutState,
        *,
        stable: str,
        stages: list[timedelta | None],
        now: datetime,
        decision: str | None,
        reason: str,
        verdict: dict[str, Any] | None,
        checked: bool = False,
    ) -> RolloutStatus:
        """The status of ``state`` at ``now``; ``stages``: each stage's minimum duration."""
        last = state.last
        assert last is not None, "a rollout has a status once started"
        pinned, stage, started = state.started, state.stage, state.stage_started_at
        return cls(
            rollout_id=state.rollout_id, name=pinned["name"], version=pinned["version"],
            stable=stable, state=last.state, phase=state.phase, stage=stage,
            stages=len(stages), traffic=state.traffic, stage_started_at=started,
            elapsed=max(now - started, timedelta(0)) if started else timedelta(0),
            stage_duration=stages[stage] if stage is not None and stage < len(stages) else None,
            judge_errors=state.judge_errors, decision=decision, reason=reason, verdict=verdict,
            checked=checked,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "name": self.name,
            "version": self.version,
            "stable": self.stable,
            "state": self.state,
            "phase": self.phase,
            "stage": self.stage,
            "stages": self.stages,
            "traffic": self.traffic,
            "stage_started_at": (
                self.stage_started_at.isoformat() if self.stage_started_at else None
            ),
            "elapsed_minutes": round(self.elapsed.total_seconds() / 60, 3),
            "stage_minutes": (
                None if self.stage_duration is None else self.stage_duration.total_seconds() / 60
            ),
            "judge_errors": self.judge_errors,
            "decision": self.decision,
            "reason": self.reason,
            "verdict": self.verdict,
            "checked": self.checked,
        }


# -- opening the store briefly, with retries -------------------------------------------

_T = TypeVar("_T")
_LOCKED = ("Could not set lock", "Conflicting lock")


def _locked(exc: StoreError) -> bool:
    return isinstance(exc, StoreBusy) or any(s in str(exc) for s in _LOCKED)


def with_store(
    path: str | Path,
    fn: Callable[[Store], _T],
    *,
    read_only: bool = False,
    timeout: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> _T:
    """Open the store, run ``fn``, close it; retry while another process holds it.

    One process at a time may open a DuckDB file, so the executor and the manual
    command CLI each hold it only for a moment. ``fn`` is retried from scratch
    after a lock or a write conflict (`StoreBusy`, whose transaction rolled back),
    with backoff, for at most ``timeout`` seconds; then `StoreLocked` names the file.
    """
    deadline = monotonic() + timeout
    delay = 0.02
    while True:
        try:
            with Store(path, read_only=read_only) as store:
                return fn(store)
        except StoreError as exc:
            if not _locked(exc):
                raise
            left = deadline - monotonic()
            if left <= 0:
                raise StoreLocked(
                    f"{path}: still locked after {timeout:g} s (another process holds the "
                    f"file: stop it or try again): {exc}"
                ) from None
            sleep(min(delay, left))
            delay = min(delay * 2, 0.5)


class Lease:
    """An exclusive advisory lock on a file beside the store, for one rollout.

    The DuckDB lock is held only for moments, so it does not keep a second
    executor of the same rollout away; this one is held for the executor's life
    and released by the kernel when the process dies (even by SIGKILL). A clean
    release removes the file.
    """

    def __init__(self, store_path: str | Path, rid: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", rid)
        path = Path(store_path)
        self.path = path.with_name(f".{path.name}.{slug}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        while self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RolloutBusy(
                    f"{self.path}: another executor is running this rollout; stop it first "
                    "(steer it with `canary-stats rollout pause|resume|abort|promote`)"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
            else:  # the holder removed the file as we opened it: lock the new one
                os.close(fd)

    def release(self) -> None:
        """Drop the lock and remove its file (removed while held, so no one races it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()


def command_effect(
    state: RolloutState, command: CommandRecord
) -> tuple[str, int | None, float | None, dict[str, Any]] | str:
    """The transition a queued manual command makes, or why it is refused.

    ``pause`` and ``abort`` apply while running or paused (abort rolls back without
    a failed guardrail); ``resume`` only while paused; ``promote`` skips the rest
    of the current stage (the next one starts, or the release is promoted after
    the last). Nothing applies once rolling back or ended.
    """
    if state.done:
        return f"the rollout has ended ({state.phase})"
    if state.phase == "rolling_back":
        return "a rollback is in progress"
    by = command.requested_by
    where = (state.stage, state.traffic)
    if command.command == "pause":
        if state.phase == "paused":
            return "already paused"
        return ("paused", *where, {"by": by, "reason": f"paused by {by}"})
    if command.command == "resume":
        if state.phase != "paused":
            return f"not paused ({state.phase})"
        return ("resumed", *where, {"by": by, "reason": f"resumed by {by}"})
    if command.command == "abort":
        return ("aborted", *where, {"by": by, "reason": f"aborted by {by}"})
    if command.command == "promote":
        return ("promoted_manually", *where, {"by": by, "reason": f"promoted manually by {by}"})
    return f"unknown command {command.command!r}"
