"""The executor's state machine, with a scripted judge, a recording backend and a fake clock."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from canary_stats.cli._rollout import queue_command
from canary_stats.errors import InputError
from canary_stats.rollout import ReleaseLocked, RolloutExecutor, RolloutStatus
from canary_stats.sources.synthetic import Workload, generate_events
from canary_stats.store import Store

from ._crash_child import NAME, RID, SHORT_STAGES, T0, Rig, always, log_of, ticks


def test_promotes_through_every_seed_stage_after_each_minimum_duration(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("promote"))
    with rig.executor(interval=timedelta(minutes=30)) as ex:
        status = ex.run()
    assert status.done and status.phase == "promoted" and status.traffic == 100
    log = log_of(rig.db, RID)
    assert [(t.state, t.stage, t.traffic) for t in log] == [
        ("started", None, None),
        ("stage_started", 0, 1.0),
        ("stage_started", 1, 10.0),
        ("stage_started", 2, 50.0),
        ("promoted", 3, 100.0),
    ]
    # Each stage lasted exactly its minimum (30 min, 2 h, 6 h) at a 30 min interval.
    starts = [t.recorded_at - T0 for t in log[1:]]
    assert starts == [
        timedelta(0),
        timedelta(minutes=30),
        timedelta(hours=2.5),
        timedelta(hours=8.5),
    ]
    assert [a[1] for a in rig.backend.actions] == [1.0, 10.0, 50.0, 100.0]
    assert all(a[0] == "set_weight" and a[2:] == ["v1", "v2"] for a in rig.backend.actions)
    assert rig.release_status() == "stable"
    # The judge was never asked at the reading a stage began.
    assert all(minutes > 0 for _, minutes in rig.judge.calls)
    assert status.checked  # the last check asked the judge (and promoted)


def test_holds_until_the_stage_minimum_duration(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("promote"))
    with rig.executor() as ex:
        ex.tick()
        seen = [s.stage for s in ticks(rig, ex, 4)]
    # Checks at 10, 20 min hold (stage 0 lasts 30 min); at 30 min stage 1 begins.
    assert seen == [0, 0, 1, 1]
    assert rig.judge.calls[:3] == [(0, 10.0), (0, 20.0), (0, 30.0)]


def test_rollback_stops_drains_reapplies_locks_and_writes_a_postmortem(tmp_path: Path) -> None:
    rig = Rig(tmp_path, lambda stage, m: "rollback" if stage == 1 and m >= 20 else "promote")
    rig.backend.drained = False
    with rig.executor(drain_timeout=7.0) as ex:
        status = ex.run()
    assert status.phase == "rolled_back" and status.traffic == 0
    assert rig.states() == [
        "started", "stage_started", "stage_started", "rolling_back", "invalidating_caches",
        "reapplying_previous", "rolled_back",
    ]  # fmt: skip
    assert rig.backend.actions[-3:] == [
        ["stop_canary", 7.0], ["invalidate_caches"], ["apply_manifest", "v1"],
    ]  # fmt: skip
    assert log_of(rig.db, RID)[4].detail == {"drained": False}
    assert rig.release_status() == "rolled_back"
    with Store(rig.db) as store:
        (pm,) = store.postmortems(name=NAME)
    assert (pm.rollout_id, pm.version, pm.stable_version) == (RID, "v2", "v1")
    assert (pm.guardrail, pm.estimate, pm.interval_low, pm.interval_high) == (
        "task_success_rate", 0.91, 0.88, 0.94,
    )  # fmt: skip
    assert pm.reason == "rollback: scripted" and pm.verdict is not None
    assert pm.verdict["decision"] == "rollback"
    assert [t["state"] for t in pm.timeline] == rig.states()
    assert pm.created_at == T0 + timedelta(minutes=50)  # 30 min in stage 0, 20 in stage 1


def test_a_rolled_back_version_is_locked(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("rollback"))
    with rig.executor() as ex:
        assert ex.run().phase == "rolled_back"
    with pytest.raises(ReleaseLocked, match=r"v2 was rolled back at .* locked"):
        rig.executor()
    with pytest.raises(InputError, match="already the stable release"):
        RolloutExecutor(tmp_path / "v1.manifest.yaml", store_path=rig.db, backend=rig.backend)


def test_without_auto_rollback_a_failure_pauses_for_a_human(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("rollback"), auto_rollback=False)
    with rig.executor() as ex:
        ex.tick()
        status = ticks(rig, ex, 1)[0]
        assert status.phase == "paused" and "auto_rollback_on_failure is false" in status.reason
        assert ex.run(until_done=False).phase == "paused"  # returns at once when paused
        calls = len(rig.judge.calls)
        rig.queue("abort", by="lead")
        status = ticks(rig, ex, 1)[0]
    assert len(rig.judge.calls) == calls  # a paused rollout is not judged
    assert status.phase == "rolled_back"
    assert rig.states()[-6:] == [
        "paused", "aborted", "rolling_back", "invalidating_caches", "reapplying_previous",
        "rolled_back",
    ]  # fmt: skip
    with Store(rig.db) as store:
        (pm,) = store.postmortems()
    assert pm.reason == "aborted by lead" and pm.guardrail is None


def test_a_stage_without_canary_data_holds_end_to_end(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("hold"))
    events = generate_events(
        Workload(), canary_share=0.05, duration=timedelta(hours=2), start=T0,
        rng=np.random.default_rng(3),
    )  # fmt: skip
    stable = events[events.cohort == "stable"].assign(release="v1")
    with Store(rig.db) as store:
        store.ingest_events(stable)
    with rig.executor(judge=None) as ex:  # the store's judge, on real data
        ex.tick()
        statuses = ticks(rig, ex, 3, minutes=50)
    assert {s.decision for s in statuses} == {"hold"}
    assert all("no canary tasks" in (s.verdict or {})["reason"] for s in statuses)
    assert statuses[-1].stage == 0 and statuses[-1].elapsed == timedelta(hours=2.5)
    assert rig.states() == ["started", "stage_started"]
    with Store(rig.db) as store:
        assert list(store.verdicts()["decision"]) == ["hold"] * 3


@pytest.mark.parametrize("then", ["hold", "pause", "rollback"])
def test_judge_outage_holds_then_acts_after_n_errors(tmp_path: Path, then: str) -> None:
    outage = {"on": True}
    rig = Rig(tmp_path, lambda s, m: "error" if outage["on"] else "hold")
    with rig.executor(on_judge_error=then, max_judge_errors=3) as ex:
        ex.tick()
        statuses = ticks(rig, ex, 4)
        assert [s.decision for s in statuses] == ["error"] * 4
        phases = [s.phase for s in statuses]
        errors = [t.detail["consecutive"] for t in log_of(rig.db, RID) if t.state == "judge_error"]
        assert errors == [1, 2, 3]  # the durable count stops at the limit
        if then == "hold":
            assert phases == ["running"] * 4 and len(rig.judge.calls) == 4
            outage["on"] = False
            assert ticks(rig, ex, 1)[0].decision == "hold"
            assert rig.states()[-1] == "judge_recovered"
        elif then == "pause":
            assert phases == ["running", "running", "paused", "paused"]
            assert len(rig.judge.calls) == 3 and rig.states()[-1] == "paused"
        else:
            assert phases[2] == "rolled_back" and rig.states()[-1] == "rolled_back"
            with Store(rig.db) as store:
                (pm,) = store.postmortems()
            assert pm.reason.startswith("judge unavailable: ") and pm.guardrail is None


def test_clock_jumps(tmp_path: Path) -> None:
    answer = {"stage 0": "hold"}
    rig = Rig(tmp_path, lambda s, m: answer["stage 0"] if s == 0 else "hold", stages=SHORT_STAGES)
    with rig.executor() as ex:
        ex.tick()
        rig.clock.now = T0 - timedelta(hours=3)  # backwards: zero time in stage, no restart
        status = ex.tick()
        assert (status.stage, status.elapsed) == (0, timedelta(0))
        assert rig.judge.calls[-1] == (0, 0.0)
        rig.clock.now = T0 + timedelta(minutes=5)
        assert ex.tick().elapsed == timedelta(minutes=5)  # still from the original start
        rig.clock.now = T0 + timedelta(days=1)  # forward past the duration, but a hold
        assert ex.tick().stage == 0
        answer["stage 0"] = "promote"
        rig.clock.now += timedelta(minutes=1)
        status = ex.tick()
    assert status.stage == 1 and status.stage_started_at == T0 + timedelta(days=1, minutes=1)
    assert rig.states() == ["started", "stage_started", "stage_started"]


def test_manual_commands(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("hold"))
    with rig.executor() as ex:
        ex.tick()
        for command in ("resume", "pause", "pause"):
            rig.queue(command)
        rig.clock.sleep(600)
        status = ex.tick()
        assert status.phase == "paused" and status.reason == "paused by ana"
        assert not status.checked  # no check while paused
        rig.queue("resume")
        rig.queue("promote", by="lead")
        rig.clock.sleep(600)
        status = ex.tick()
        assert (status.phase, status.stage, status.traffic) == ("running", 1, 10.0)
        # The human decided this check: the judge's last "hold" is not shown beside it.
        assert status.decision is None and status.reason == "promoted manually by lead"
        from canary_stats.cli._rollout import status_line

        assert "hold" not in status_line(status) and "promoted manually by lead" in status_line(
            status
        )
        rig.queue("abort", by="lead")
        rig.clock.sleep(600)
        assert ex.tick().phase == "rolled_back"
        rig.queue("resume")
        ex.tick()
    with Store(rig.db) as store:
        outcomes = [(c.command, c.status, c.reason) for c in store.commands(RID)]
    assert outcomes == [
        ("resume", "refused", "not paused (running)"),
        ("pause", "applied", None),
        ("pause", "refused", "already paused"),
        ("resume", "applied", None),
        ("promote", "applied", None),
        ("abort", "applied", None),
        ("resume", "refused", "the rollout has ended (rolled_back)"),
    ]
    assert rig.states()[:7] == [
        "started", "stage_started", "paused", "resumed", "promoted_manually", "stage_started",
        "aborted",
    ]  # fmt: skip


def test_concurrent_commands_are_each_handled_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, always("hold"))
    rounds, threads = 4, 4
    barrier = threading.Barrier(threads + 1)
    statuses: list[RolloutStatus] = []

    def queue(i: int) -> None:
        barrier.wait()
        for r in range(rounds):
            command = "pause" if (i + r) % 2 else "resume"
            queue_command(rig.db, NAME, command, by=f"user{i}")  # retries a busy store

    with rig.executor() as ex:
        ex.tick()
        workers = [threading.Thread(target=queue, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        while any(w.is_alive() for w in workers) or len(statuses) < 3:
            rig.clock.sleep(60)
            statuses.append(ex.tick())  # ticks race the queuers
        for w in workers:
            w.join()
        ex.tick()
    with Store(rig.db) as store:
        commands = store.commands(RID)
    log = log_of(rig.db, RID)
    assert len(commands) == rounds * threads and all(c.status != "queued" for c in commands)
    applied = [c for c in commands if c.status == "applied"]
    # Every applied command caused exactly one transition, of its own kind, in queue order.
    by_seq = {t.seq: t for t in log}
    assert [by_seq[c.handled_seq].state for c in applied] == [
        {"pause": "paused", "resume": "resumed"}[c.command] for c in applied
    ]
    assert len({c.handled_seq for c in applied}) == len(applied)
    assert len(log) == 2 + len(applied)
    assert [t.state for t in log[2:]] == ["paused", "resumed"] * (len(applied) // 2) + (
        ["paused"] if len(applied) % 2 else []
    )
