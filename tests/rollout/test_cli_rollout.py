"""``canary-stats rollout run|pause|resume|abort|promote|status``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canary_stats.cli import _rollout as cli
from canary_stats.cli import app
from canary_stats.errors import InputError
from canary_stats.rollout import HttpJudge, RolloutExecutor

from ._crash_child import (
    NAME,
    SHORT_STAGES,
    T0,
    FakeClock,
    RecordingBackend,
    ScriptedJudge,
    held,
    seed_stable,
    write_manifest,
)

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["rollout", *args])
    return res.exit_code, res.output


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stable v1 in a store, the canary manifest v2, the CLI on a fake clock."""
    db = tmp_path / "store.duckdb"
    seed_stable(db, tmp_path)
    clock = FakeClock()
    monkeypatch.setattr(cli, "_clock", clock)
    monkeypatch.setattr(cli, "_sleep", clock.sleep)
    script: dict[str, Callable[[int, float], str]] = {"judge": lambda s, m: "promote"}
    monkeypatch.setattr(cli, "_judge", lambda url, token: ScriptedJudge(script["judge"]))
    manifest = write_manifest(tmp_path, "v2", stages=SHORT_STAGES)
    return {"db": db, "manifest": manifest, "clock": clock, "script": script, "dir": tmp_path}


def _start(rig: dict[str, Any], *extra: str) -> tuple[int, str]:
    return _run("run", str(rig["manifest"]), "--db", str(rig["db"]), "--interval", "10m", *extra)


def test_run_promotes_through_the_file_backend(rig: dict[str, Any]) -> None:
    weights = rig["dir"] / "weights.json"
    code, out = _start(rig, "--backend", "file", "--weights-file", str(weights))
    assert code == 0, out
    assert "PROMOTED" in out and "stage 3/3 at 100%" in out
    state = json.loads(weights.read_text())
    assert (state["stable"], state["canary"], state["weight"]) == ("v1", "v2", 100.0)
    code, out = _run("status", NAME, "--db", str(rig["db"]), "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["phase"] == "promoted"
    assert [t["state"] for t in report["transitions"]] == [
        "started", "stage_started", "stage_started", "promoted",
    ]  # fmt: skip


def test_run_rolls_back_with_exit_20_and_status_shows_the_postmortem(
    rig: dict[str, Any],
) -> None:
    rig["script"]["judge"] = lambda stage, minutes: "rollback" if minutes >= 10 else "hold"
    code, out = _start(rig, "--backend", "local")
    assert code == 20, out
    assert "ROLLED_BACK" in out and "rollback: scripted" in out
    code, out = _run("status", NAME, "--db", str(rig["db"]))
    assert code == 0
    assert "rollout:research-agent:v2: rolled_back (rolled_back), stage 1/3 at 0%" in out
    assert "guardrail task_success_rate: estimate 0.91, anytime-valid interval [0.88, 0.94]" in out
    # The version is locked now.
    code, out = _start(rig, "--backend", "local")
    assert code == 2 and "locked" in out


def test_run_exits_3_when_paused_by_an_unavailable_judge(rig: dict[str, Any]) -> None:
    rig["script"]["judge"] = lambda stage, minutes: "error"
    code, out = _start(rig, "--backend", "local", "--max-judge-errors", "2", "--exit-when-paused")
    assert code == 3, out
    assert "paused: judge error 2 in a row" in out and "connection refused" in out


def test_run_exits_1_when_paused_for_a_human(rig: dict[str, Any]) -> None:
    rig["manifest"] = write_manifest(rig["dir"], "v3", stages=SHORT_STAGES, auto_rollback=False)
    rig["script"]["judge"] = lambda stage, minutes: "rollback" if minutes >= 10 else "hold"
    code, out = _start(rig, "--backend", "local", "--exit-when-paused")
    assert code == 1, out
    assert "auto_rollback_on_failure is false" in out.replace("\n", " ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "command"], "--commands: the command backend needs its commands file"),
        (["--backend", "file"], "--weights-file: the file backend needs the file"),
        (["--backend", "local", "--interval", "soon"], "--interval: expected a duration"),
        (["--backend", "local", "--stable-version", "v2"], "cannot be its own stable"),
        (["--backend", "local", "--stable-version", "v0"], "stable_version: --stable-version v0 "
         "is not a release of research-agent registered in the store"),
    ],
)  # fmt: skip
def test_run_bad_input_exits_2(rig: dict[str, Any], args: list[str], message: str) -> None:
    code, out = _start(rig, *args)
    assert code == 2 and message in " ".join(out.split())
    code, out = _run("status", NAME, "--db", str(rig["db"]))
    assert code == 2 and f"no rollout of {NAME}" in out  # nothing started, no traffic moved


def test_an_unknown_stable_version_names_the_known_ones(rig: dict[str, Any]) -> None:
    code, out = _start(rig, "--backend", "local", "--stable-version", "v1.0")
    text = " ".join(out.split())
    assert code == 2 and "(registered: v1)" in text and "manifest register" in text
    code, out = _start(rig, "--backend", "local", "--stable-version", "v1")  # the known one
    assert code == 0 and "PROMOTED" in out


def test_manual_commands_are_queued_applied_and_refused(rig: dict[str, Any]) -> None:
    db = str(rig["db"])
    code, out = _run("pause", NAME, "--db", db)
    assert code == 2 and f"no rollout of {NAME}" in out
    clock = rig["clock"]
    executor = RolloutExecutor(
        rig["manifest"], store_path=rig["db"], backend=RecordingBackend(), clock=clock,
        judge=ScriptedJudge(lambda s, m: "hold"),
    )  # fmt: skip
    with executor:
        executor.tick()
        code, out = _run("pause", NAME, "--db", db, "--by", "ana")
        assert code == 0 and "pause queued (command 1) for rollout:research-agent:v2" in out
        report = json.loads(_run("status", NAME, "--db", db, "--format", "json")[1])
        assert [(c["command"], c["status"]) for c in report["commands"]] == [("pause", "queued")]
        clock.sleep(60)
        assert executor.tick().phase == "paused"
        assert _run("resume", NAME, "--db", db, "--by", "bo")[0] == 0
        assert _run("resume", NAME, "--db", db, "--by", "bo")[0] == 0
        assert _run("abort", NAME, "--db", db, "--version", "v2")[0] == 0
        clock.sleep(60)
        assert executor.tick().phase == "rolled_back"
    code, out = _run("promote", NAME, "--db", db)
    assert code == 2 and "promote refused (command 5): the rollout has ended (rolled_back)" in out
    code, out = _run("status", NAME, "--db", db)
    assert "command 1 pause by ana: applied" in out
    assert "command 3 resume by bo: refused: not paused (running)" in out
    assert "command 5 promote" in out and "aborted by" in out


def test_a_command_names_the_file_when_it_stays_locked(rig: dict[str, Any]) -> None:
    with RolloutExecutor(
        rig["manifest"], store_path=rig["db"], backend=RecordingBackend(), clock=lambda: T0,
        judge=ScriptedJudge(lambda s, m: "hold"),
    ) as executor:  # fmt: skip
        executor.tick()
    with held(rig["db"], 10):
        code, out = _run("pause", NAME, "--db", str(rig["db"]), "--timeout", "0.3")
    assert code == 1
    assert f"{rig['db']}: still locked after 0.3 s" in out.replace("\n", "")


def test_judge_options(tmp_path: Path) -> None:
    assert cli._judge(None, None) is None  # the store's judge
    token = tmp_path / "token"
    with pytest.raises(InputError, match="--judge-token-file: only applies with --judge-url"):
        cli._judge(None, token)
    with pytest.raises(InputError, match="--judge-token-file: cannot read it"):
        cli._judge("http://judge.test", token)
    token.write_text("s3cret\n")
    judge = cli._judge("http://judge.test", token)
    assert isinstance(judge, HttpJudge) and judge.url == "http://judge.test/v1/judge/argo"
    assert judge._client.headers["Authorization"] == "Bearer s3cret"
    judge.close()


def test_status_line_for_logs() -> None:
    from canary_stats.cli._rollout import status_line
    from canary_stats.rollout._state import RolloutStatus

    fields = {f: None for f in RolloutStatus.__dataclass_fields__}
    status = RolloutStatus(**{  # type: ignore[arg-type]
        **fields, "rollout_id": "rollout:a:v2", "name": "a", "version": "v2", "stable": "v1",
        "state": "stage_started", "phase": "running", "stage": 0, "stages": 4, "traffic": 1.0,
        "judge_errors": 0, "decision": "hold", "reason": "hold: too little data",
    })  # fmt: skip
    line = status_line(status)
    assert line.endswith("v2 stage_started stage 1/4 at 1% hold: too little data")
