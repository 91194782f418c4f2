"""Rollout persistence: schema v2, the transition log, commands, postmortems, judges."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from canary_stats.errors import SourceResponseError, SourceUnavailable, StoreError
from canary_stats.manifest import load_manifest, register_manifest
from canary_stats.rollout import HttpJudge, RolloutBusy, StoreJudge, StoreLocked
from canary_stats.rollout._state import Lease, command_effect, fold, with_store
from canary_stats.service import Settings, create_app
from canary_stats.store import SCHEMA_VERSION, Store
from canary_stats.store._rollouts import CommandRecord, PostmortemRecord, TransitionRecord
from canary_stats.store._schema import MIGRATIONS

from ._crash_child import (
    RID,
    SEED,
    T0,
    Rig,
    always,
    held,
    log_of,
    seed_stable,
    ticks,
    write_manifest,
)


def test_schema_v2_migrates_a_v1_file(tmp_path: Path) -> None:
    db = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_meta (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
    for statement in MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO schema_meta VALUES (1, now())")
    con.execute(
        "INSERT INTO rollout_transitions VALUES ('judge:x', 1, now(), 'stage_seen', 0, 1, '{}')"
    )
    con.close()
    with Store(db) as store:
        assert store.con.execute("SELECT max(version) FROM schema_meta").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        assert store.count("rollout_transitions") == 1  # v1 data kept
        assert store.count("rollout_commands") == store.count("postmortems") == 0


def test_transitions_are_numbered_per_rollout(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        for state in ("started", "stage_started", "paused"):
            store.append_transition(RID, state, at=T0, stage=0, traffic=1.0, detail={"x": state})
        store.append_transition("rollout:other:v9", "started", at=T0)
        log = store.transitions(RID)
    assert [(t.seq, t.state, t.detail) for t in log] == [
        (1, "started", {"x": "started"}),
        (2, "stage_started", {"x": "stage_started"}),
        (3, "paused", {"x": "paused"}),
    ]
    assert log[0].recorded_at == T0 and log[0].traffic == 1.0


def test_a_command_is_applied_with_its_transition_or_not_at_all(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        store.append_transition(RID, "started", at=T0)
        cmd = store.queue_command(RID, "pause", requested_by="ana", at=T0)
        assert cmd.status == "queued" and cmd.handled_seq is None
        t = store.append_transition(RID, "paused", at=T0, command_id=cmd.id)
        (done,) = store.commands(RID)
        assert (done.status, done.handled_seq) == ("applied", t.seq)
        # Applying it twice is refused, and the transition is rolled back with it.
        with pytest.raises(StoreError, match=f"command {cmd.id} of {RID} is not queued"):
            store.append_transition(RID, "resumed", at=T0, command_id=cmd.id)
        assert [t.state for t in store.transitions(RID)] == ["started", "paused"]
        assert store.commands(RID, queued_only=True) == []


def test_refusal_is_recorded_once(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        cmd = store.queue_command(RID, "resume", requested_by="bo", at=T0)
        assert store.refuse_command(cmd.id, seq=1, reason="not paused (running)", at=T0)
        assert not store.refuse_command(cmd.id, seq=2, reason="again", at=T0)
        (c,) = store.commands(RID)
        assert (c.status, c.handled_seq, c.reason) == ("refused", 1, "not paused (running)")
        with pytest.raises(StoreError, match="expected one of"):
            store.queue_command(RID, "reboot", requested_by="bo", at=T0)  # type: ignore[arg-type]


def test_postmortem_is_written_once(tmp_path: Path) -> None:
    record = PostmortemRecord(
        RID, "research-agent", "v2", "v1", T0, "task_success_rate", 0.91, 0.88, 0.94,
        "rollback: success", {"decision": "rollback"}, [{"seq": 1, "state": "started"}],
    )  # fmt: skip
    with Store(tmp_path / "s.duckdb") as store:
        assert store.record_postmortem(record)
        assert not store.record_postmortem(replace(record, reason="another"))
        assert store.postmortems(name="research-agent") == [record]
        assert store.postmortems(rollout_id="rollout:other:v1") == []


def _t(seq: int, state: str, *, stage: int | None = 0, **detail: Any) -> TransitionRecord:
    return TransitionRecord(RID, seq, T0 + timedelta(minutes=seq), state, stage, 1.0, detail)


def test_fold_replays_phase_stage_and_judge_errors() -> None:
    log = [
        _t(1, "started", stage=None),
        _t(2, "stage_started"),
        _t(3, "judge_error", consecutive=1),
        _t(4, "judge_error", consecutive=2),
    ]
    state = fold(RID, log)
    assert (state.phase, state.stage, state.judge_errors) == ("running", 0, 2)
    assert state.stage_started_at == T0 + timedelta(minutes=2)
    assert fold(RID, [*log, _t(5, "judge_recovered")]).judge_errors == 0
    paused = fold(RID, [*log, _t(5, "paused")])
    assert (paused.phase, paused.judge_errors) == ("paused", 2)
    assert fold(RID, [*log, _t(5, "paused"), _t(6, "resumed")]).judge_errors == 0
    assert fold(RID, [*log, _t(5, "aborted")]).phase == "rolling_back"
    assert fold(RID, [*log, _t(5, "rolling_back"), _t(6, "rolled_back")]).done
    assert fold(RID, []).phase == "new"
    with pytest.raises(StoreError, match="unknown state 'teleported'"):
        fold(RID, [*log, _t(5, "teleported")])


def _cmd(command: str) -> CommandRecord:
    return CommandRecord(RID, 1, command, T0, "ana", None, None, None, None)


@pytest.mark.parametrize(
    ("last", "command", "effect"),
    [
        ("stage_started", "pause", "paused"),
        ("paused", "pause", "already paused"),
        ("paused", "resume", "resumed"),
        ("stage_started", "resume", "not paused (running)"),
        ("paused", "abort", "aborted"),
        ("stage_started", "promote", "promoted_manually"),
        ("rolling_back", "abort", "a rollback is in progress"),
        ("promoted", "pause", "the rollout has ended (promoted)"),
        ("rolled_back", "resume", "the rollout has ended (rolled_back)"),
    ],
)
def test_command_effect(last: str, command: str, effect: str) -> None:
    state = fold(RID, [_t(1, "started", stage=None), _t(2, "stage_started"), _t(3, last)])
    got = command_effect(state, _cmd(command))
    if isinstance(got, str):
        assert got == effect
    else:
        assert got[0] == effect and got[3]["by"] == "ana" and got[1] == 0


def test_with_store_waits_for_another_process_then_gives_up(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    Store(db).close()
    with held(db, 0.8) as proc:
        started = time.monotonic()
        assert with_store(db, lambda s: s.count("postmortems"), timeout=15) == 0
        assert time.monotonic() - started > 0.2  # it did wait for the lock
        assert proc.wait() == 0  # the holder finished; it was not killed
    with held(db, 5), pytest.raises(StoreLocked, match=f"{db}: still locked after 0.3 s"):
        with_store(db, lambda s: None, timeout=0.3)


def test_lease_keeps_a_second_executor_away(tmp_path: Path) -> None:
    first, second = Lease(tmp_path / "s.duckdb", RID), Lease(tmp_path / "s.duckdb", RID)
    first.acquire()
    with pytest.raises(RolloutBusy, match="another executor is running this rollout"):
        second.acquire()
    Lease(tmp_path / "s.duckdb", "rollout:other:v1").acquire()  # other rollouts are free
    first.release()
    assert not first.path.exists()  # a clean release removes the file
    second.acquire()
    assert second.path.exists()
    second.release()


# -- the judge error count across restarts ------------------------------------------------


def test_the_judge_error_count_survives_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("error"))
    with rig.executor() as ex:
        ex.tick()
        ticks(rig, ex, 2)  # two errors
    with rig.executor() as ex:
        status = ticks(rig, ex, 1)[0]
    assert status.phase == "paused" and status.judge_errors == 3
    assert rig.states()[-2:] == ["judge_error", "paused"]


def test_an_outage_held_past_the_limit_pauses_when_restarted_with_pause(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("error"))
    with rig.executor(on_judge_error="hold", max_judge_errors=2) as ex:
        ex.tick()
        assert ticks(rig, ex, 4)[-1].phase == "running"
    assert rig.states().count("judge_error") == 2
    with rig.executor(on_judge_error="pause", max_judge_errors=2) as ex:
        status = ticks(rig, ex, 1)[0]
    assert status.phase == "paused"
    assert [t.detail.get("consecutive") for t in log_of(rig.db, RID)][-3:] == [2, 3, None]


# -- judges --------------------------------------------------------------------------------


def test_store_judge_holds_without_data_and_logs_the_verdict(
    tmp_path: Path, seed_policy: Any
) -> None:
    db = tmp_path / "s.duckdb"
    judge = StoreJudge(db, seed_policy)
    verdict = judge(stable="v1", canary="v2", stage=0, stage_started_at=T0, now=T0)
    assert verdict["decision"] == "hold" and "no canary tasks" in verdict["reason"]
    with Store(db) as store:
        # An open store is used as it is; a clock that went back is zero time in stage.
        again = StoreJudge(store, seed_policy)(
            stable="v1", canary="v2", stage=0, stage_started_at=T0, now=T0 - timedelta(hours=1)
        )
        assert again["elapsed_minutes"] == 0
        assert list(store.verdicts()["release"]) == ["v2", "v2"]


def _http_judge(handler: Any) -> HttpJudge:
    return HttpJudge(
        "http://judge.test/", "s3cret", transport=httpx.MockTransport(handler), timeout=1
    )


def test_http_judge_posts_the_argo_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"decision": "hold", "reason": "hold: wait."})

    judge = _http_judge(handler)
    got = judge(stable="v1", canary="v2", stage=1, stage_started_at=T0, now=T0)
    judge.close()
    assert got["decision"] == "hold"
    (request,) = seen
    assert str(request.url) == "http://judge.test/v1/judge/argo"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert json.loads(request.content) == {
        "stable": "v1", "canary": "v2", "stage": 1, "stage_started_at": "2026-11-23T08:00:00Z",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (httpx.Response(503, text="judge broken"), SourceUnavailable, "HTTP 503: judge broken"),
        (httpx.Response(401), SourceUnavailable, "HTTP 401"),
        (httpx.Response(200, text="<html>"), SourceResponseError, "not JSON"),
        (httpx.Response(200, json={"decision": "maybe"}), SourceResponseError, "decision"),
        (None, SourceUnavailable, "ConnectError: refused"),
    ],
)
def test_http_judge_errors(response: httpx.Response | None, error: type, match: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if response is None:
            raise httpx.ConnectError("refused", request=request)
        return response

    with pytest.raises(error, match=match):
        _http_judge(handler)(stable="v1", canary="v2", stage=0, stage_started_at=T0, now=T0)


def test_http_judge_speaks_the_services_argo_contract(tmp_path: Path) -> None:
    """The real service (uvicorn in a thread) accepts the judge's request as sent."""
    db = tmp_path / "judge.duckdb"
    seed_stable(db, tmp_path)
    with Store(db) as store:  # the service judges only releases it knows
        register_manifest(store, load_manifest(write_manifest(tmp_path, "v2")))
    settings = Settings(db=db, manifest=SEED, token=SecretStr("t0k"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        now = datetime.now(UTC)
        ask = {"stable": "v1", "canary": "v2", "stage": 0, "stage_started_at": now, "now": now}
        with HttpJudge(url, "t0k") as judge:
            verdict = judge(**ask)
            assert verdict["decision"] == "hold" and verdict["stage"] == 0
            with pytest.raises(SourceUnavailable, match=r"HTTP 404: .*'v9' is unknown"):
                judge(**{**ask, "stable": "v9"})
        with HttpJudge(url, "wrong") as wrong, pytest.raises(SourceUnavailable, match="HTTP 401"):
            wrong(**ask)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
