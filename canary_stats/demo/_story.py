"""``canary-stats demo``: the whole story on one machine, in simulated time.

Agent traffic from 50,000 simulated users goes through the sticky router; the
executor walks the seed manifest's stages, the judge reads the DuckDB store at
every check, and the router's weight follows the verdicts. A prompt refactor is
promoted stage by stage; a model upgrade that fails more tasks is rolled back
automatically, with its postmortem. Everything lands in one DuckDB file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from ..errors import InputError
from ..manifest import load_manifest, register_manifest
from ..report import build_report, parse_week, render_html
from ..rollout import LocalBackend, RolloutExecutor, RolloutStatus, Router, SimulatedTraffic
from ..store import Store
from ._releases import DEMO_RELEASES, write_manifests

__all__ = ["DEMO_DB", "DemoOutcome", "run_demo"]

#: The demo's own store, rebuilt by every run.
DEMO_DB = Path("data") / "demo.duckdb"
#: Simulated time between checks.
CHECK_EVERY = timedelta(minutes=5)
#: Stable-only traffic before the first rollout (the baseline).
WARM_UP = timedelta(hours=1)
_SOURCE = "simulated agent traffic"
_MARK = {
    "hold": "[yellow]·[/]",
    "promote": "[green]✓[/]",
    "rollback": "[bold red]✗[/]",
    "error": "[red]![/]",
}


@dataclass
class DemoOutcome:
    """One rollout of the demo: its checks and where it ended."""

    version: str
    checks: list[RolloutStatus] = field(default_factory=list)

    @property
    def final(self) -> RolloutStatus:
        return self.checks[-1]


def _fresh_store(db: Path) -> None:
    """Remove a previous demo store; refuse to touch a store the demo did not make."""
    if not db.exists():
        return
    with Store(db, read_only=True) as store:
        rows = store.con.execute("SELECT DISTINCT source FROM ingests").fetchall()
    sources = {row[0] for row in rows}
    if sources - {_SOURCE}:
        raise InputError(
            "db", f"{db} holds data the demo did not write ({sorted(sources)}); give another --db"
        )
    db.unlink()
    db.with_name(db.name + ".wal").unlink(missing_ok=True)


def run_demo(
    *, seed: int = 7, db: Path = DEMO_DB, console: Console | None = None
) -> list[DemoOutcome]:
    """Roll out the demo releases through the executor; return each rollout's checks."""
    console = console or Console(width=max(Console().width, 110))
    began = time.perf_counter()
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    _fresh_store(db)
    manifests = write_manifests(db.parent / "demo-releases")
    base, *rollouts = DEMO_RELEASES
    with Store(db) as store:
        register_manifest(store, load_manifest(manifests[base.version]))
        store.set_release_status("research-agent", base.version, "stable")
    # Simulated time: the story ends a little before now (its week is this week, but
    # on Monday mornings, when it starts in the last one).
    start = (datetime.now(UTC) - timedelta(hours=14)).replace(minute=0, second=0, microsecond=0)
    router = Router(stable=base.version, canary=rollouts[0].version)
    behaviour = {r.version: r.regression for r in rollouts if r.regression is not None}
    traffic = SimulatedTraffic(router, db, start=start, behaviour=behaviour, rng=seed)
    console.rule("[bold]canary_stats demo: staged rollouts driven by the judge")
    console.print(
        f"Store {db} · {traffic.workload.tasks_per_minute:g} tasks/min from 50,000 users, "
        f"routed by a sticky hash · a check every {CHECK_EVERY.seconds // 60} simulated "
        f"minutes · stages 1% (30 min) → 10% (2 h) → 50% (6 h) → 100%\n"
        f"{base.version} is stable: {base.story}. Marks: · hold  ✓ promote  ✗ rollback\n",
        highlight=False,
    )
    traffic.advance(WARM_UP.total_seconds())
    outcomes = [
        _roll_out(console, db, manifests[r.version], r.story, router, traffic) for r in rollouts
    ]
    _records(console, db, outcomes)
    _weekly_report(console, db, traffic.now())
    console.print(f"The demo took {time.perf_counter() - began:.0f} s.", highlight=False)
    return outcomes


def _weekly_report(console: Console, db: Path, when: datetime) -> None:
    """The week's report, as an engineering lead would read it on Friday."""
    week = parse_week(None, now=when)
    out = db.with_name(f"{db.stem}-report-{week.label}.html")
    with console.status("writing the weekly report (bootstrap intervals)"):
        out.write_text(render_html(build_report(db, week)))
    console.print(
        f"Weekly report: {out} (`canary-stats report --db {db} --week {week.label} --out ...`; "
        "add --format md for chat or mail).",
        highlight=False,
    )


def _roll_out(
    console: Console,
    db: Path,
    manifest: Path,
    story: str,
    router: Router,
    traffic: SimulatedTraffic,
) -> DemoOutcome:
    executor = RolloutExecutor(
        manifest,
        store_path=db,
        backend=LocalBackend(router),
        clock=traffic.now,
        sleep=traffic.advance,
        interval=CHECK_EVERY,
    )
    outcome = DemoOutcome(executor.version)
    console.print(f"[bold]{executor.version}[/] — {story}")
    with (
        executor,
        Progress(
            TextColumn("  {task.description}"), BarColumn(), console=console, transient=True
        ) as progress,
    ):
        task = progress.add_task("", total=None)

        def on_tick(status: RolloutStatus) -> None:
            outcome.checks.append(status)
            progress.update(
                task,
                description=f"stage {status.stage} at {status.traffic or 0:g}% · "
                f"{traffic.tasks:,} tasks · {status.decision or 'starting'}",
            )

        executor.run(on_tick=on_tick)
    _timeline(console, outcome)
    return outcome


def _timeline(console: Console, outcome: DemoOutcome) -> None:
    # A check's verdict belongs to the stage it was asked in: the one before a promote.
    marks: dict[int, list[str]] = {}
    traffic: dict[int, float] = {}
    asked_in: int | None = None
    for check in outcome.checks:
        if check.stage is not None:
            traffic.setdefault(check.stage, check.traffic or 0.0)
        if check.checked and check.decision is not None and asked_in is not None:
            marks.setdefault(asked_in, []).append(_MARK.get(check.decision, "?"))
        asked_in = check.stage
    for stage, shown in marks.items():
        console.print(f"  stage {stage} {traffic[stage]:>3g}%  {''.join(shown)}")
    final = outcome.final
    colour = "green" if final.state == "promoted" else "red"
    console.print(
        f"  [{colour}]{final.state.replace('_', ' ')}[/]: {final.reason}\n", highlight=False
    )


def _records(console: Console, db: Path, outcomes: list[DemoOutcome]) -> None:
    with Store(db, read_only=True) as store:
        counts = {t: store.count(t) for t in ("events", "verdicts", "rollout_transitions")}
        postmortems = store.postmortems(name="research-agent")
        releases = store.releases("research-agent")
    for pm in postmortems:
        table = Table(title=f"Postmortem of {pm.version} (table postmortems)", show_header=False)
        table.add_row("guardrail", pm.guardrail or "-")
        if pm.estimate is not None:
            interval = f"[{pm.interval_low:.4g}, {pm.interval_high:.4g}]"
            table.add_row("estimate, anytime-valid interval", f"{pm.estimate:.4g} {interval}")
        table.add_row("reason", escape(pm.reason))
        table.add_row("timeline", f"{len(pm.timeline)} transitions, {pm.timeline[0]['state']} "
                      f"→ {pm.timeline[-1]['state']}")  # fmt: skip
        console.print(table)
    console.print(
        "\nReleases: "
        + ", ".join(f"{r.version} ({r.status.replace('_', ' ')})" for r in releases)
        + f"\nRecorded in {db}: {counts['events']:,} events, {counts['verdicts']:,} verdicts "
        f"(the audit log), {counts['rollout_transitions']:,} rollout transitions, "
        f"{len(postmortems)} postmortem(s), over {_simulated_hours(outcomes)} of simulated "
        f"time.\nNext: `canary-stats rollout status research-agent --db {db}`.",
        highlight=False,
    )


def _simulated_hours(outcomes: list[DemoOutcome]) -> str:
    """How much simulated time the rollouts took, e.g. ``"10.2 h"``."""
    checks = [c for o in outcomes for c in o.checks if c.stage_started_at is not None]
    if not checks:
        return "0 h"
    first = min(c.stage_started_at for c in checks if c.stage_started_at is not None)
    last = max(c.stage_started_at + c.elapsed for c in checks if c.stage_started_at is not None)
    return f"{(last - first).total_seconds() / 3600:.1f} h"
