"""The rollout executor: walk the manifest's stages, ask the judge, act, persist every step.

Each check (`RolloutExecutor.tick`) does, in order:

1. **Resume.** The first check of a process repeats the action of the rollout's
   last transition (a crash may have come between writing it and acting on it),
   then writes the follow-ups a transition implies (``started`` -> stage 0,
   ``aborted`` -> ``rolling_back`` -> ... -> ``rolled_back``).
2. **Manual commands**, queued by ``canary-stats rollout pause|resume|abort|promote``,
   in the order queued; each becomes a transition (written with the command marked
   applied in one transaction) or is refused with the reason.
3. **The judge**, when running (not paused, not rolling back). A promote verdict
   moves to the next stage only once the stage's minimum duration has passed by
   the injected clock; the final stage (100 %) is ``promoted``. A rollback verdict
   rolls back when the manifest's ``auto_rollback_on_failure`` is true; otherwise
   the rollout is ``paused`` for a human to ``abort``, ``resume`` or ``promote``.
   A judge that raises counts as a hold; after ``max_judge_errors`` in a row the
   executor does ``on_judge_error`` (``hold``: keep holding, ``pause`` or
   ``rollback``). No transition is written for a hold.

The judge is asked at most once per clock reading of a stage: not when the stage
began at this reading, nor again after a judge error recorded at it. That keeps a
restart at the same instant from checking twice. A clock that jumps backwards
counts as zero time in the stage (the stage is never restarted); one that jumps
forward satisfies the duration, but promotion still needs a promote verdict.

The store is opened only for moments (`with_store`), so the manual command CLI
can reach it; backend actions run with it closed. A `BackendError` stops the
executor; running it again retries the action (every action is idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ..errors import CanaryStatsError, InputError
from ..manifest import load_manifest
from ..store import Store
from ..store._rollouts import CommandRecord, TransitionRecord
from ._backends import Backend
from ._judges import Judge, StoreJudge
from ._postmortem import build_postmortem
from ._start import check_options, pin_rollout
from ._state import (
    Lease,
    RolloutState,
    RolloutStatus,
    command_effect,
    fold,
    rollout_id,
    with_store,
)

__all__ = ["OnJudgeError", "RolloutExecutor", "now_utc"]

OnJudgeError = Literal["hold", "pause", "rollback"]


def now_utc() -> datetime:
    """The wall clock, in UTC (the executor's default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Next:
    """A transition to write: its state, stage, traffic and detail."""

    state: str
    stage: int | None = None
    traffic: float | None = None
    detail: dict[str, Any] | None = None


class RolloutExecutor:
    """Run one release's staged rollout from its manifest (see the module docstring).

    Use as a context manager (or `close` it): it holds the rollout's `Lease`.

    Parameters
    ----------
    manifest : path
        The release manifest; registered in the store at start (a version's content
        is immutable there). Its ``metadata.version`` is the canary.
    store_path : path
        The DuckDB store holding the rollout's state, commands and postmortem.
    backend : Backend
        Moves traffic (`LocalBackend`, `CommandBackend`, `FileBackend`).
    judge : Judge, optional
        Default: `StoreJudge` on ``store_path`` with the manifest's policy.
    stable_version : str, optional
        Default: the store's latest stable release of the manifest's name. A
        resumed rollout keeps the stable version it started with.
    clock, sleep : callables
        Injected time (tests); ``sleep`` waits ``interval`` between checks in `run`.
    on_judge_error, max_judge_errors
        What to do after that many judge errors in a row.
    drain_timeout : float
        Seconds a rollback waits for canary work in flight.
    store_timeout : float
        Seconds to keep retrying while another process holds the store.
    """

    def __init__(
        self,
        manifest: str | Path,
        *,
        store_path: str | Path,
        backend: Backend,
        judge: Judge | None = None,
        stable_version: str | None = None,
        clock: Callable[[], datetime] = now_utc,
        sleep: Callable[[float], None] = time.sleep,
        interval: timedelta = timedelta(minutes=1),
        on_judge_error: OnJudgeError = "pause",
        max_judge_errors: int = 3,
        drain_timeout: float = 30.0,
        store_timeout: float = 20.0,
    ) -> None:
        check_options(
            interval=interval, on_judge_error=on_judge_error,
            max_judge_errors=max_judge_errors, drain_timeout=drain_timeout,
        )  # fmt: skip
        self.manifest = load_manifest(manifest)
        self.policy = self.manifest.release.policy()
        meta = self.manifest.release.metadata
        self.name, self.version = meta.name, meta.version
        self.rollout_id = rollout_id(self.name, self.version)
        self.store_path = Path(store_path)
        self.backend, self.clock, self.sleep, self.interval = backend, clock, sleep, interval
        self.on_judge_error, self.max_judge_errors = on_judge_error, max_judge_errors
        self.drain_timeout, self.store_timeout = float(drain_timeout), store_timeout
        self._lease = Lease(self.store_path, self.rollout_id)
        self._lease.acquire()
        try:
            self.pinned: dict[str, Any] = self._db(
                lambda s: pin_rollout(s, self.manifest, stable_version=stable_version)
            )
        except BaseException:
            self._lease.release()
            raise
        self.stable: str = self.pinned["stable"]
        self.judge: Judge = judge if judge is not None else StoreJudge(self.store_path, self.policy)
        self._acted_seq: int | None = None  # None: the last transition's action is redone
        self._carry: dict[str, Any] = {}  # the last action's result, for the next detail
        self._decision: str | None = None
        self._reason = ""
        self._verdict: dict[str, Any] | None = None

    def close(self) -> None:
        """Let another executor take this rollout over (the store is not held)."""
        self._lease.release()

    def __enter__(self) -> RolloutExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _db(self, fn: Callable[[Store], Any]) -> Any:
        return with_store(self.store_path, fn, timeout=self.store_timeout)

    def run(
        self,
        until_done: bool = True,
        *,
        on_tick: Callable[[RolloutStatus], None] | None = None,
    ) -> RolloutStatus:
        """Check, wait ``interval``, repeat; return once promoted or rolled back.

        With ``until_done=False`` it also returns as soon as the rollout is paused
        (waiting for a human), instead of waiting for their command.
        """
        while True:
            status = self.tick()
            if on_tick is not None:
                on_tick(status)
            if status.done or (not until_done and status.phase == "paused"):
                return status
            self.sleep(self.interval.total_seconds())

    def tick(self) -> RolloutStatus:
        """One check: resume, handle queued commands, ask the judge, act."""
        now = self.clock()
        rid = self.rollout_id
        log, queued = self._db(lambda s: (s.transitions(rid), s.commands(rid, queued_only=True)))
        state = fold(rid, log)
        if state.last is None:
            state = self._write(state, _Next("started", detail=self.pinned), now)
        elif self._acted_seq != state.seq:
            self._reason = f"resumed at {state.last.state}"
            self._carry = self._act(state, state.last)
            self._acted_seq = state.seq
            self._after_action(state.last)
        state = self._follow_ups(state, now)
        state = self._commands(state, queued, now)
        checked = self._may_check(state, now)
        if checked:
            state = self._check(state, now)
        return self._status(state, now, checked)

    def _may_check(self, state: RolloutState, now: datetime) -> bool:
        last = state.last
        if state.phase != "running" or state.stage is None:
            return False  # paused, rolling back or ended: nothing to judge
        if state.stage_started_at == now:
            return False  # the stage began at this reading: nothing to judge yet
        return not (last is not None and last.state == "judge_error" and last.recorded_at == now)

    # -- writing and acting -------------------------------------------------------------

    def _write(
        self, state: RolloutState, nxt: _Next, now: datetime, command_id: int | None = None
    ) -> RolloutState:
        """Write-ahead: append the transition, then perform its action."""
        detail = {**(nxt.detail or {})}
        record: TransitionRecord = self._db(
            lambda s: s.append_transition(
                self.rollout_id, nxt.state, at=now, stage=nxt.stage, traffic=nxt.traffic,
                detail=detail, command_id=command_id,
            )
        )  # fmt: skip
        state = fold(self.rollout_id, (*state.transitions, record))
        self._after_record(record)
        self._carry = self._act(state, record)
        self._acted_seq = record.seq
        self._after_action(record)
        return state

    def _after_record(self, record: TransitionRecord) -> None:
        """Hook: the transition is durable, its action not yet done (crash tests)."""

    def _after_action(self, record: TransitionRecord) -> None:
        """Hook: the transition's action is done (crash tests)."""

    def _act(self, state: RolloutState, t: TransitionRecord) -> dict[str, Any]:
        """Perform ``t``'s action; each one is idempotent (see `_state`)."""
        if t.state == "stage_started":
            assert t.traffic is not None
            self.backend.set_weight(t.traffic, stable=self.stable, canary=self.version)
        elif t.state == "promoted":
            self.backend.set_weight(100.0, stable=self.stable, canary=self.version)
            self._db(lambda s: s.set_release_status(self.name, self.version, "stable"))
        elif t.state == "rolling_back":
            return {"drained": self.backend.stop_canary(drain_timeout=self.drain_timeout)}
        elif t.state == "invalidating_caches":
            self.backend.invalidate_caches()
        elif t.state == "reapplying_previous":
            previous = self.pinned["previous"]
            self.backend.apply_manifest(previous["manifest"], version=previous["version"])
        elif t.state == "rolled_back":
            record = build_postmortem(
                state, name=self.name, version=self.version, stable=self.stable,
                created_at=t.recorded_at,
            )  # fmt: skip

            def lock(s: Store) -> None:
                s.record_postmortem(record)  # a repeat keeps the first entry
                s.set_release_status(self.name, self.version, "rolled_back")

            self._db(lock)
        return {}

    def _follow_ups(self, state: RolloutState, now: datetime) -> RolloutState:
        """Write the transitions the last one implies, until none does."""
        while (nxt := self._follow_up(state)) is not None:
            state = self._write(state, nxt, now)
        return state

    def _follow_up(self, state: RolloutState) -> _Next | None:
        last = state.last
        if last is None:
            return None
        if last.state == "started":
            return _Next("stage_started", 0, self.policy.stages[0].traffic)
        if last.state == "promoted_manually":
            return self._next_stage(state, {"reason": last.detail.get("reason")})
        if last.state == "aborted":
            return self._rolling_back(state, str(last.detail.get("reason")))
        if last.state == "judge_error" and last.detail.get("consecutive", 0) >= last.detail.get(
            "limit", self.max_judge_errors
        ):
            then, why = last.detail.get("then"), f"judge unavailable: {last.detail.get('error')}"
            if then == "pause":
                return _Next("paused", state.stage, state.traffic, {"reason": why})
            if then == "rollback":
                return self._rolling_back(state, why)
        if last.state == "rolling_back":
            return _Next("invalidating_caches", state.stage, 0.0, dict(self._carry))
        if last.state == "invalidating_caches":
            previous = self.pinned.get("previous")
            if previous is None:
                why = "no previous stable manifest known: canary stopped, nothing re-applied"
                return _Next("rolled_back", state.stage, 0.0, {"note": why})
            detail = {"version": previous["version"], "source": previous["source"]}
            return _Next("reapplying_previous", state.stage, 0.0, detail)
        if last.state == "reapplying_previous":
            return _Next("rolled_back", state.stage, 0.0)
        return None

    def _next_stage(self, state: RolloutState, detail: dict[str, Any]) -> _Next:
        k = (state.stage if state.stage is not None else -1) + 1
        stages = self.policy.stages
        if k >= len(stages) or stages[k].traffic >= 100:
            return _Next("promoted", k if k < len(stages) else None, 100.0, detail)
        return _Next("stage_started", k, stages[k].traffic, detail)

    def _rolling_back(
        self, state: RolloutState, reason: str, verdict: dict[str, Any] | None = None
    ) -> _Next:
        self._reason = reason
        return _Next("rolling_back", state.stage, 0.0, {"reason": reason, "verdict": verdict})

    # -- commands and checks ------------------------------------------------------------

    def _commands(
        self, state: RolloutState, queued: list[CommandRecord], now: datetime
    ) -> RolloutState:
        """Apply or refuse the commands queued when the check began, in order."""
        for cmd in queued:
            effect = command_effect(state, cmd)
            if isinstance(effect, str):
                self._refuse(cmd.id, state.seq, effect, now)
                continue
            nxt = _Next(*effect)
            # A human's command, not the judge, decides this check: the judge's last
            # decision ("hold") must not be shown beside it.
            self._decision, self._verdict = None, None
            self._reason = str(
                (nxt.detail or {}).get("reason") or f"{cmd.command} by {cmd.requested_by}"
            )
            state = self._write(state, nxt, now, command_id=cmd.id)
            state = self._follow_ups(state, now)
        return state

    def _refuse(self, command_id: int, seq: int | None, reason: str, now: datetime) -> None:
        self._db(lambda s: s.refuse_command(command_id, seq=seq, reason=reason, at=now))

    def _check(self, state: RolloutState, now: datetime) -> RolloutState:
        stage = state.stage
        assert stage is not None and state.stage_started_at is not None
        elapsed = max(now - state.stage_started_at, timedelta(0))
        try:
            verdict = self.judge(
                stable=self.stable, canary=self.version, stage=stage,
                stage_started_at=state.stage_started_at, now=now,
                stage_starts=state.stage_starts[:stage],
            )  # fmt: skip
            decision = verdict.get("decision") if isinstance(verdict, dict) else None
            if decision not in ("promote", "hold", "rollback"):
                raise InputError("verdict", f"expected a verdict dict; got {verdict!r:.200}")
        except CanaryStatsError as exc:
            return self._judge_failed(state, exc, now)
        self._verdict, self._decision = verdict, decision
        self._reason = str(verdict.get("reason", ""))
        if state.judge_errors:
            state = self._write(state, _Next("judge_recovered", state.stage, state.traffic), now)
        summary = {"decision": decision, "reason": self._reason}
        if decision == "rollback":
            if self.policy.auto_rollback_on_failure:
                state = self._write(state, self._rolling_back(state, self._reason, verdict), now)
                return self._follow_ups(state, now)
            self._reason += (
                " auto_rollback_on_failure is false: paused for a human "
                "(canary-stats rollout abort|resume|promote)."
            )
            detail = {"reason": self._reason, "verdict": verdict}
            return self._write(state, _Next("paused", state.stage, state.traffic, detail), now)
        duration = self.policy.stages[stage].duration or timedelta(0)
        if decision == "promote" and elapsed >= duration:
            summary["elapsed_minutes"] = round(elapsed.total_seconds() / 60, 3)
            return self._write(state, self._next_stage(state, summary), now)
        return state

    def _judge_failed(self, state: RolloutState, exc: Exception, now: datetime) -> RolloutState:
        n = state.judge_errors + 1
        self._decision, self._verdict = "error", None
        self._reason = f"judge error {n} in a row (a hold): {exc}"
        if n > self.max_judge_errors and self.on_judge_error == "hold":
            return state  # holding on: the durable count stays at the limit
        detail = {
            "consecutive": n, "limit": self.max_judge_errors, "then": self.on_judge_error,
            "error": str(exc)[:1000],
        }  # fmt: skip
        state = self._write(state, _Next("judge_error", state.stage, state.traffic, detail), now)
        return self._follow_ups(state, now)

    def _status(self, state: RolloutState, now: datetime, checked: bool) -> RolloutStatus:
        last = state.last
        assert last is not None
        return RolloutStatus.of(
            state, stable=self.stable, stages=[s.duration for s in self.policy.stages], now=now,
            decision=self._decision, verdict=self._verdict, checked=checked,
            reason=self._reason or str(last.detail.get("reason") or last.state),
        )  # fmt: skip
