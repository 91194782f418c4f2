"""``canary-stats rollout run|pause|resume|abort|promote|status``.

``rollout run MANIFEST`` runs (or resumes) the executor. The manual commands are
sibling subcommands naming the release, not the manifest, because they talk to a
rollout running in another process through the store: one process at a time may
open a DuckDB file, so the executor opens it only for moments and each command
opens it briefly (retrying while it is busy), queues itself and exits. The
executor applies queued commands at its next check; ``rollout status`` shows
whether each was applied or refused, and why.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..errors import CanaryStatsError, InputError
from ..policy import parse_duration
from ..rollout import HttpJudge, Judge, RolloutExecutor, RolloutStatus, backend_from_settings
from ..rollout._postmortem import describe_postmortem, fmt_number
from ..rollout._state import fold, rollout_id, with_store
from ..store import DEFAULT_PATH, Store
from ..store._rollouts import Command, CommandRecord
from ._app import EXIT_CODES, EXIT_SOURCE, app, existing_store, fail

__all__ = ["progress_view", "queue_command", "rollout_app", "rollout_report", "status_line"]

rollout_app = typer.Typer(
    help="Run a staged rollout (`rollout run MANIFEST`) and steer it while it runs "
    "(`rollout pause|resume|abort|promote|status NAME`, from another terminal).",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout")


class Kind(StrEnum):
    local = "local"
    command = "command"
    file = "file"


class OnError(StrEnum):
    hold = "hold"
    pause = "pause"
    rollback = "rollback"


class Format(StrEnum):
    text = "text"
    json = "json"


DbOption = Annotated[
    Path, typer.Option("--db", help="The DuckDB store holding the rollout's state.")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to retry while the store is busy.")
]
# Test seams: the CLI's clock and sleep.
_clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731
_sleep: Callable[[float], None] = time.sleep


def _judge(url: str | None, token_file: Path | None) -> Judge | None:
    """The HTTP judge when a URL is given; None means the store judge on ``db``."""
    if url is None:
        if token_file is not None:
            raise InputError("--judge-token-file", "only applies with --judge-url")
        return None
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError("--judge-token-file", f"cannot read it: {exc.strerror}") from None
    return HttpJudge(url, token)


@rollout_app.command("run")
def run(
    manifest: Annotated[Path, typer.Argument(help="The release manifest to roll out.")],
    backend: Annotated[Kind, typer.Option(help="How traffic is moved.")],
    db: DbOption = DEFAULT_PATH,
    stable_version: Annotated[
        str | None, typer.Option(help="Release serving now (default: the store's stable one).")
    ] = None,
    interval: Annotated[str, typer.Option(help="Time between checks, e.g. 1m.")] = "1m",
    judge_url: Annotated[
        str | None, typer.Option(help="Ask this canary-stats service instead of the store.")
    ] = None,
    judge_token_file: Annotated[
        Path | None, typer.Option(help="File holding the service's bearer token.")
    ] = None,
    commands: Annotated[
        Path | None, typer.Option("--commands", help="YAML of the command backend's commands.")
    ] = None,
    weights_file: Annotated[
        Path | None, typer.Option(help="State file the file backend writes.")
    ] = None,
    on_judge_error: Annotated[
        OnError, typer.Option(help="After --max-judge-errors judge failures in a row.")
    ] = OnError.pause,
    max_judge_errors: Annotated[int, typer.Option(min=1)] = 3,
    drain_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds a rollback waits for canary work in flight.")
    ] = 30.0,
    exit_when_paused: Annotated[
        bool,
        typer.Option(
            help="Exit when paused instead of waiting for a command: 3 if the judge was "
            "unavailable, 1 otherwise (run again to go on)."
        ),
    ] = False,
) -> None:
    """Run or resume MANIFEST's staged rollout until promoted (exit 0) or rolled back (20).

    Exit 2 on bad input (including a rolled-back, hence locked, version), 3 when a
    source or the judge fails, 1 otherwise. Stop it any time: the same command
    resumes where it stopped.
    """
    try:
        if backend is Kind.command and commands is None:
            raise InputError("--commands", "the command backend needs its commands file (YAML)")
        if backend is Kind.file and weights_file is None:
            raise InputError("--weights-file", "the file backend needs the file to write")
        every = parse_duration(interval, "--interval")
        judge = _judge(judge_url, judge_token_file)
        executor = RolloutExecutor(
            manifest, store_path=db, stable_version=stable_version,
            backend=backend_from_settings(backend.value, commands=commands, path=weights_file),
            judge=judge, clock=_clock, sleep=_sleep,
            interval=every, on_judge_error=on_judge_error.value,
            max_judge_errors=max_judge_errors, drain_timeout=drain_timeout,
        )  # fmt: skip
    except CanaryStatsError as exc:
        raise fail(exc) from None
    console = Console(width=max(Console().width, 100))
    try:
        # A terminal gets the live view; a log (CI, a pipe) one line per check.
        with executor, Live(console=console, auto_refresh=False) as live:

            def show(status: RolloutStatus) -> None:
                if console.is_terminal:
                    live.update(progress_view(status), refresh=True)
                else:
                    console.print(status_line(status), highlight=False, soft_wrap=True)

            status = executor.run(until_done=not exit_when_paused, on_tick=show)
        if not console.is_terminal:
            console.print(progress_view(status))  # where it ended, in full
    except CanaryStatsError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        console.print("interrupted: run the same command to resume the rollout")
        raise typer.Exit(130) from None
    finally:
        if isinstance(judge, HttpJudge):
            judge.close()
    if status.phase == "promoted":
        raise typer.Exit(EXIT_CODES["promote"])
    if status.phase == "rolled_back":
        raise typer.Exit(EXIT_CODES["rollback"])
    console.print(f"paused: {status.reason}")
    raise typer.Exit(EXIT_SOURCE if status.judge_errors >= max_judge_errors else 1)


def status_line(status: RolloutStatus) -> str:
    """One check as a log line: when, where, and the decision with its reason."""
    where = "" if status.stage is None else f" stage {status.stage + 1}/{status.stages}"
    traffic = "" if status.traffic is None else f" at {status.traffic:g}%"
    said = status.reason
    if status.decision and not said.startswith(f"{status.decision}:"):
        said = f"{status.decision}: {said}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} {status.version} {status.state}{where}{traffic} {said}"


def progress_view(status: RolloutStatus) -> Group:
    """The live display: stage, traffic, per-guardrail evidence, ETA, last decision."""
    colour = {"promoted": "green", "rolled_back": "red", "rolling_back": "red"}.get(
        status.phase, "yellow" if status.phase == "paused" else "cyan"
    )
    stage = "-" if status.stage is None else f"{status.stage + 1}/{status.stages}"
    minutes = status.elapsed.total_seconds() / 60
    of = "" if status.stage_duration is None else f"/{status.stage_duration.total_seconds() / 60:g}"
    eta = (status.verdict or {}).get("eta_minutes")
    head = Text.from_markup(
        f"[bold]{status.name}[/] {status.version} vs stable {status.stable}  "
        f"[bold {colour}]{status.phase.upper()}[/]  stage {stage} at "
        f"{status.traffic if status.traffic is not None else 0:g}%  "
        f"{minutes:.0f}{of} min in stage" + (f"  ETA {eta:g} min" if eta is not None else "")
    )
    table = Table(show_edge=False)
    for col in ("guardrail", "status", "estimate", "anytime-valid interval", "rule"):
        table.add_column(col)
    styles = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}
    for name, m in ((status.verdict or {}).get("metrics") or {}).items():
        low, high = (m.get("interval") or [None, None])[:2]
        table.add_row(
            name, f"[{styles.get(m.get('status'), '')}]{m.get('status')}[/]",
            fmt_number(m.get("estimate")), f"[{fmt_number(low)}, {fmt_number(high)}]",
            f"{m.get('rule', '')} {m.get('limit', '')}",
        )  # fmt: skip
    errors = f" (judge errors in a row: {status.judge_errors})" if status.judge_errors else ""
    last = Text(f"last decision: {status.decision or '-'}{errors} — {status.reason}")
    return Group(head, table, last)


# -- manual commands ---------------------------------------------------------------------


def _resolve(store: Store, name: str, version: str | None) -> str:
    rid = rollout_id(name, version) if version else store.latest_rollout(name)
    if rid is None or not store.transitions(rid):
        raise InputError("NAME", f"no rollout of {name} {version or ''} in {store.path}".strip())
    return rid


def queue_command(
    db: Path,
    name: str,
    command: Command,
    *,
    by: str,
    version: str | None = None,
    timeout: float = 20.0,
) -> CommandRecord:
    """Queue ``command`` for the latest rollout of ``name`` (refused at once if it ended)."""

    def queue(store: Store) -> CommandRecord:
        rid = _resolve(store, name, version)
        state = fold(rid, store.transitions(rid))
        now = datetime.now(UTC)
        store.con.begin()  # queued and, for an ended rollout, refused: both or neither
        try:
            record = store.queue_command(rid, command, requested_by=by, at=now)
            if state.done:
                why = f"the rollout has ended ({state.phase})"
                store.refuse_command(record.id, seq=state.seq, reason=why, at=now)
            store.con.commit()
        except BaseException:
            store.con.rollback()
            raise
        return next(c for c in store.commands(rid) if c.id == record.id)

    return with_store(existing_store(Path(db)), queue, timeout=timeout)


def _command(verb: Command, summary: str) -> None:
    def handler(
        name: Annotated[str, typer.Argument(help="The release name (metadata.name).")],
        db: DbOption = DEFAULT_PATH,
        version: Annotated[
            str | None, typer.Option(help="The rollout's version (default: the latest rollout).")
        ] = None,
        by: Annotated[
            str | None, typer.Option(help="Who asks, for the record (default: your user name).")
        ] = None,
        timeout: TimeoutOption = 20.0,
    ) -> None:
        try:
            record = queue_command(
                db, name, verb, by=by or _user(), version=version, timeout=timeout
            )
        except CanaryStatsError as exc:
            raise fail(exc) from None
        if record.status == "refused":
            typer.echo(f"{verb} refused (command {record.id}): {record.reason}")
            raise typer.Exit(2)
        typer.echo(
            f"{verb} queued (command {record.id}) for {record.rollout_id}; the executor "
            "applies it at its next check (see `canary-stats rollout status`)"
        )

    handler.__doc__ = f"{summary} Exit 0 when queued, 2 when refused, 1 if the store stays busy."
    rollout_app.command(verb)(handler)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_command("pause", "Hold the rollout at its current traffic; no checks until resumed.")
_command("resume", "Go on with a paused rollout.")
_command("abort", "Roll back now (stop the canary, re-apply the stable manifest).")
_command("promote", "Skip the rest of the current stage: start the next one (or promote).")


# -- status --------------------------------------------------------------------------------


def rollout_report(
    db: Path, name: str, *, version: str | None = None, timeout: float = 20.0
) -> dict[str, Any]:
    """State, timeline, commands, postmortem and last logged verdict of a rollout."""

    def read(store: Store) -> dict[str, Any]:
        rid = _resolve(store, name, version)
        state = fold(rid, store.transitions(rid))
        pinned = state.started
        found = store.con.execute(
            "SELECT verdict FROM verdicts WHERE release = ? AND stable = ? "
            "ORDER BY verdict_id DESC LIMIT 1",
            [pinned.get("version"), pinned.get("stable")],
        ).fetchall()
        post = store.postmortems(rollout_id=rid)
        return {
            "rollout_id": rid, "name": pinned.get("name"), "version": pinned.get("version"),
            "stable": pinned.get("stable"), "state": state.last.state if state.last else None,
            "phase": state.phase, "stage": state.stage, "stages": len(pinned.get("stages", [])),
            "traffic": state.traffic,
            "judge_errors": state.judge_errors,
            "transitions": [t.to_dict() for t in state.transitions],
            "commands": [c.to_dict() for c in store.commands(rid)],
            "postmortem": post[0].to_dict() if post else None,
            "last_verdict": json.loads(found[0][0]) if found else None,
        }  # fmt: skip

    report: dict[str, Any] = with_store(
        existing_store(Path(db)), read, read_only=True, timeout=timeout
    )
    return report


@rollout_app.command("status")
def status(
    name: Annotated[str, typer.Argument(help="The release name (metadata.name).")],
    db: DbOption = DEFAULT_PATH,
    version: Annotated[
        str | None, typer.Option(help="The rollout's version (default: the latest rollout).")
    ] = None,
    format: Annotated[Format, typer.Option("--format", help="text or json.")] = Format.text,
    timeout: TimeoutOption = 20.0,
) -> None:
    """Where a rollout stands: state, timeline, manual commands (applied, refused, queued)."""
    try:
        report = rollout_report(db, name, version=version, timeout=timeout)
    except CanaryStatsError as exc:
        raise fail(exc) from None
    if format is Format.json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    traffic = report["traffic"] if report["traffic"] is not None else 0
    stage = "-" if report["stage"] is None else f"{report['stage'] + 1}/{report['stages']}"
    typer.echo(
        f"{report['rollout_id']}: {report['phase']} ({report['state']}), stage {stage} "
        f"at {traffic:g}%, stable {report['stable']}"
    )
    for t in report["transitions"]:
        why = t["detail"].get("reason") or ""
        typer.echo(f"  {t['seq']:>3} {t['recorded_at']} {t['state']:<20} {why}".rstrip())
    for c in report["commands"]:
        why = f": {c['reason']}" if c["reason"] else ""
        typer.echo(f"  command {c['id']} {c['command']} by {c['requested_by']}: {c['status']}{why}")
    if report["postmortem"] is not None:
        for line in describe_postmortem(report["postmortem"]):
            typer.echo(line)
