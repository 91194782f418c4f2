"""Crash and resume: SIGKILL the executor at every transition point, restart, compare.

For each scenario, an uninterrupted child run gives the reference. Then two chains
of children: one killed right after each transition is written (before its
action), one right after each action. After a kill the next child resumes the
rollout (and is killed at the next point), until a last child finishes it. The
final transition log, commands, postmortem and release status must equal the
reference; the backend's actions must equal it too, except that an action cut
off by a kill-after-action is done once more (every action is idempotent).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from canary_stats.rollout import RolloutExecutor
from canary_stats.store import Store

from ._crash_child import (
    NAME,
    RID,
    SHORT_STAGES,
    T0,
    FakeClock,
    RecordingBackend,
    ScriptedJudge,
    queue_commands,
    run_child,
    seed_stable,
    write_manifest,
)

#: States whose action calls the backend (``rolled_back``'s is in the store only).
BACKEND_ACTIONS = {
    "stage_started", "promoted", "rolling_back", "invalidating_caches", "reapplying_previous",
}  # fmt: skip
#: Commands queued before the rollout starts, per scenario.
QUEUED = {"rollback": ["pause", "resume"], "promote": ["promote"]}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ctx() -> Iterator[multiprocessing.context.ForkServerContext]:
    """Children forked from a server that imported canary_stats once (~2 s saved each)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENBLAS_NUM_THREADS", "1")  # a single-threaded server forks safely
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["tests.rollout._crash_child"])
        yield context


def _setup(work: Path, scenario: str) -> dict[str, Any]:
    work.mkdir()
    db = work / "store.duckdb"
    seed_stable(db, work)
    manifest = write_manifest(work, "v2", stages=SHORT_STAGES)
    with Store(db) as store:
        for i, command in enumerate(QUEUED[scenario]):
            store.queue_command(RID, command, requested_by=f"op{i}", at=T0)  # type: ignore[arg-type]
    return {"work": str(work), "db": str(db), "manifest": str(manifest), "scenario": scenario}


def _child(ctx: Any, request: dict[str, Any], crash_at: tuple[int, str] | None) -> int:
    proc = ctx.Process(target=run_child, args=({**request, "crash_at": crash_at},))
    proc.start()
    proc.join(timeout=60)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        pytest.fail(f"child stuck at {crash_at}")
    code: int = proc.exitcode
    return code


def _outcome(request: dict[str, Any]) -> dict[str, Any]:
    with Store(Path(request["db"]), read_only=True) as store:
        return {
            "log": [
                (t.seq, t.recorded_at, t.state, t.stage, t.traffic, t.detail)
                for t in store.transitions(RID)
            ],
            "commands": [(c.id, c.command, c.status, c.handled_seq) for c in store.commands(RID)],
            "postmortems": [p.to_dict() for p in store.postmortems()],
            "releases": [(r.version, r.status) for r in store.releases(NAME)],
        }


def _segments(request: dict[str, Any]) -> list[list[list[Any]]]:
    """The backend's actions, one list per child process."""
    segments: list[list[list[Any]]] = []
    for line in (Path(request["work"]) / "actions.jsonl").read_text().splitlines():
        action = json.loads(line)
        if action == ["# start"]:
            segments.append([])
        else:
            segments[-1].append(action)
    return segments


@pytest.mark.parametrize("scenario", ["rollback", "promote"])
def test_killed_at_every_transition_point_resumes_to_the_same_end(
    ctx: Any, tmp_path: Path, scenario: str
) -> None:
    reference = _setup(tmp_path / "reference", scenario)
    assert _child(ctx, reference, None) == 0
    expected = _outcome(reference)
    ((expected_actions),) = _segments(reference)
    states = {seq: state for seq, _, state, *_ in expected["log"]}
    final = "rolled_back" if scenario == "rollback" else "promoted"
    assert expected["log"][-1][2] == final and len(states) >= 5

    for phase in ("record", "action"):
        request = _setup(tmp_path / phase, scenario)
        for seq in states:
            assert _child(ctx, request, (seq, phase)) == -9, f"not killed at {seq} {phase}"
            # The child died exactly there: the transition is durable, nothing after it.
            assert [t[0] for t in _outcome(request)["log"]] == list(range(1, seq + 1))
        # Killed after the last action of a rollback, the release is already locked.
        locked = phase == "action" and final == "rolled_back"
        assert _child(ctx, request, None) == (3 if locked else 0)
        assert _outcome(request) == expected, f"kills after each {phase}"

        segments = _segments(request)
        assert len(segments) == len(states) + 1
        actions: list[list[Any]] = []
        for seq, segment in zip(states, segments, strict=False):
            actions += segment
            if phase == "action" and states[seq] in BACKEND_ACTIONS:
                # The next child repeats the action it cannot know was done...
                assert segments[seq][0] == segment[-1], f"no repeat after {states[seq]}"
                segments[seq] = segments[seq][1:]  # ...and only that one
        actions += segments[-1]
        assert actions == expected_actions, f"kills after each {phase}"


def test_commands_from_several_processes_are_each_applied_once(ctx: Any, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    seed_stable(db, tmp_path)
    manifest = write_manifest(tmp_path, "v2")
    clock = FakeClock()
    executor = RolloutExecutor(
        manifest, store_path=db, backend=RecordingBackend(), clock=clock, sleep=clock.sleep,
        judge=ScriptedJudge(lambda stage, minutes: "hold"), interval=timedelta(minutes=1),
    )  # fmt: skip
    with executor:
        executor.tick()
        # Each process queues pause, resume, pause, resume while this one keeps checking:
        # the processes and the executor take turns at the DuckDB file lock.
        children = [
            ctx.Process(target=queue_commands, args=(str(db), f"op{i}", ["pause", "resume"] * 2))
            for i in range(4)
        ]
        for child in children:
            child.start()
        while any(child.is_alive() for child in children):
            clock.sleep(60)
            executor.tick()
        assert [child.exitcode for child in children] == [0] * 4
        executor.tick()
    with Store(db) as store:
        commands = store.commands(RID)
        log = store.transitions(RID)
    assert len(commands) == 16 and {c.requested_by for c in commands} == {
        f"op{i}" for i in range(4)
    }
    assert all(c.status in ("applied", "refused") for c in commands)
    applied = [c for c in commands if c.status == "applied"]
    assert sorted(c.handled_seq for c in applied) == [t.seq for t in log[2:]]
    assert [t.state for t in log[2:]] == [
        {"pause": "paused", "resume": "resumed"}[c.command] for c in applied
    ]
