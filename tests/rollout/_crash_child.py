"""Fakes for the rollout tests (`Rig`: an executor among them), and the crash test's child.

The child (`run_child`) runs a `RolloutExecutor` against a real DuckDB file with a
scripted judge, a clock kept in a file (so a restarted child goes on at the same
reading) and a backend that appends each finished action to a file. Given
``crash_at = (seq, "record" | "action")`` it SIGKILLs itself right after that
transition is written, or right after its action is done.

The test starts children from a ``forkserver`` that has imported this module once:
a fresh interpreter per child would spend ~2 s importing scipy and pandas, and a
crash test needs a few dozen children.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from canary_stats.cli._rollout import queue_command
from canary_stats.errors import SourceUnavailable
from canary_stats.manifest import load_manifest, register_manifest
from canary_stats.rollout import ReleaseLocked, RolloutExecutor, RolloutStatus
from canary_stats.store import Store
from canary_stats.store._rollouts import TransitionRecord

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "research-agent.manifest.yaml"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
NAME = "research-agent"

#: A short plan for the crash test: 5 % then 50 % for 10 min each, then 100 %.
SHORT_STAGES = [
    {"traffic": 5, "duration": "10m"},
    {"traffic": 50, "duration": "10m"},
    {"traffic": 100},
]


# -- manifests and the store ------------------------------------------------------------


def write_manifest(
    directory: Path,
    version: str,
    *,
    stages: list[dict[str, Any]] | None = None,
    auto_rollback: bool = True,
) -> Path:
    """The seed manifest at ``version`` (with its prompt and schema files) in ``directory``."""
    for sub in ("prompts", "schemas"):
        if not (directory / sub).exists():
            shutil.copytree(ROOT / "examples" / sub, directory / sub)
    doc = yaml.safe_load(SEED.read_text())
    doc["metadata"]["version"] = version
    if stages is not None:
        doc["spec"]["rollout"]["stages"] = stages
    doc["spec"]["rollout"]["auto_rollback_on_failure"] = auto_rollback
    path = directory / f"{version}.manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def seed_stable(db: Path, directory: Path, version: str = "v1") -> Path:
    """Register ``version`` and mark it stable: the release the canary is compared with."""
    path = write_manifest(directory, version)
    with Store(db) as store:
        register_manifest(store, load_manifest(path))
        store.set_release_status(NAME, version, "stable")
    return path


@contextlib.contextmanager
def held(db: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the DuckDB file (only duckdb imported: it starts fast)."""
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
        "time.sleep(float(sys.argv[2])); c.close()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        try:
            yield proc
        finally:
            proc.kill()


def log_of(db: Path, rid: str) -> list[TransitionRecord]:
    with Store(db, read_only=True) as store:
        return store.transitions(rid)


# -- fakes -------------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told (``sleep`` advances it)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FileClock:
    """A clock whose offset from `T0` lives in a file, so it survives SIGKILL."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _offset(self) -> float:
        return float(self.path.read_text()) if self.path.exists() else 0.0

    def __call__(self) -> datetime:
        return T0 + timedelta(seconds=self._offset())

    def sleep(self, seconds: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(self._offset() + seconds))
        os.replace(tmp, self.path)


@dataclass
class RecordingBackend:
    """A backend that records each finished action (and appends it to ``log``)."""

    log: Path | None = None
    drained: bool = True
    name: str = "recording"
    actions: list[list[Any]] = field(default_factory=list)

    def _record(self, *action: Any) -> None:
        self.actions.append(list(action))
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(json.dumps(list(action)) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def set_weight(self, percent: float, *, stable: str, canary: str) -> None:
        self._record("set_weight", percent, stable, canary)

    def stop_canary(self, *, drain_timeout: float) -> bool:
        self._record("stop_canary", drain_timeout)
        return self.drained

    def invalidate_caches(self) -> None:
        self._record("invalidate_caches")

    def apply_manifest(self, manifest_text: str, *, version: str) -> None:
        self._record("apply_manifest", version)


def verdict(decision: str, stage: int = 0, *, failing: str | None = None) -> dict[str, Any]:
    """A verdict dict of ``Verdict.to_dict()``'s shape; ``failing`` names a failed guardrail."""
    metrics = {}
    if failing is not None:
        metrics[failing] = {
            "status": "fail", "estimate": 0.91, "interval": [0.88, 0.94], "rule": "min",
            "limit": 0.97, "n_canary": 400, "n_stable": 9000, "reason": "below its minimum",
        }  # fmt: skip
    return {
        "decision": decision, "reason": f"{decision}: scripted", "stage": stage,
        "eta_minutes": 12.0 if decision == "hold" else None, "metrics": metrics,
    }  # fmt: skip


class ScriptedJudge:
    """Answers from ``script(stage, minutes in stage)``: a decision or ``"error"``."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.calls: list[tuple[int, float]] = []

    def __call__(
        self,
        *,
        stable: str,
        canary: str,
        stage: int,
        stage_started_at: datetime,
        now: datetime,
        stage_starts: Any = (),
    ) -> dict[str, Any]:
        minutes = max((now - stage_started_at).total_seconds(), 0.0) / 60
        self.calls.append((stage, minutes))
        answer = self.script(stage, minutes)
        if answer == "error":
            raise SourceUnavailable("http://judge.test", "connection refused")
        return verdict(answer, stage, failing="task_success_rate" if answer == "rollback" else None)


# -- an executor with fakes around it, for the in-process tests ---------------------------

RID = f"rollout:{NAME}:v2"


class Rig:
    """A store with stable v1, the canary manifest v2, and the fakes around an executor."""

    def __init__(self, tmp: Path, script: Callable[[int, float], str], **manifest: Any) -> None:
        self.db = tmp / "store.duckdb"
        seed_stable(self.db, tmp)
        self.manifest = write_manifest(tmp, "v2", **manifest)
        self.clock, self.backend = FakeClock(), RecordingBackend()
        self.judge = ScriptedJudge(script)

    def executor(self, **kw: Any) -> RolloutExecutor:
        opts: dict[str, Any] = {"interval": timedelta(minutes=10), "judge": self.judge, **kw}
        return RolloutExecutor(
            self.manifest, store_path=self.db, backend=self.backend, clock=self.clock,
            sleep=self.clock.sleep, **opts,
        )  # fmt: skip

    def states(self) -> list[str]:
        return [t.state for t in log_of(self.db, RID)]

    def queue(self, command: str, by: str = "ana") -> None:
        with Store(self.db) as store:
            store.queue_command(RID, command, requested_by=by, at=self.clock())  # type: ignore[arg-type]

    def release_status(self) -> str:
        with Store(self.db, read_only=True) as store:
            return {r.version: r.status for r in store.releases(NAME)}["v2"]


def always(decision: str) -> Callable[[int, float], str]:
    return lambda stage, minutes: decision


def ticks(rig: Rig, ex: RolloutExecutor, n: int, minutes: float = 10) -> list[RolloutStatus]:
    """``n`` checks, each ``minutes`` after the previous one."""
    out = []
    for _ in range(n):
        rig.clock.sleep(60 * minutes)
        out.append(ex.tick())
    return out


# -- the crash test's scenarios ----------------------------------------------------------


def rollback_script(stage: int, minutes: float) -> str:
    """Stage 0: one judge error at 5 min, promote at 10; stage 1: roll back at 10 min."""
    if stage == 0:
        return "error" if minutes == 5 else ("promote" if minutes >= 10 else "hold")
    return "rollback" if minutes >= 10 else "hold"


def promote_script(stage: int, minutes: float) -> str:
    return "promote" if minutes >= 10 else "hold"


SCRIPTS = {"rollback": rollback_script, "promote": promote_script}


class CrashingExecutor(RolloutExecutor):
    """Kills its own process at one transition point."""

    crash_at: tuple[int, str] | None = None

    def _after_record(self, record: TransitionRecord) -> None:
        if self.crash_at == (record.seq, "record"):
            os.kill(os.getpid(), signal.SIGKILL)

    def _after_action(self, record: TransitionRecord) -> None:
        if self.crash_at == (record.seq, "action"):
            os.kill(os.getpid(), signal.SIGKILL)


def run_child(request: dict[str, Any]) -> None:
    """One child's life: start or resume the rollout, run it to the end or die trying.

    Exits 0 when the rollout ended, 3 when the release was already locked (killed
    after the last action of a rollback), 4 when it paused, 1 on any other error.
    """
    work = Path(request["work"])
    with (work / "actions.jsonl").open("a") as f:
        f.write(json.dumps(["# start"]) + "\n")
    clock = FileClock(work / "clock.txt")
    try:
        executor = CrashingExecutor(
            Path(request["manifest"]), store_path=Path(request["db"]),
            backend=RecordingBackend(work / "actions.jsonl"),
            judge=ScriptedJudge(SCRIPTS[request["scenario"]]), clock=clock, sleep=clock.sleep,
            interval=timedelta(minutes=5), max_judge_errors=2, drain_timeout=1.5,
        )  # fmt: skip
    except ReleaseLocked:
        sys.exit(3)
    crash = request.get("crash_at")
    executor.crash_at = None if crash is None else (int(crash[0]), str(crash[1]))
    with executor:
        status = executor.run(until_done=False)  # paused: exit, as nobody will resume it
    sys.exit(0 if status.done else 4)


def queue_commands(db: str, by: str, commands: list[str]) -> None:
    """A separate process queueing manual commands (the concurrency test)."""
    for command in commands:
        queue_command(Path(db), NAME, command, by=by)  # type: ignore[arg-type]
