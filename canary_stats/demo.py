"""``canary-stats demo``: two simulated releases through the seed's staged rollout.

Runs on embedded defaults only: the seed manifest's rollout plan, synthetic
traffic at 200 tasks/min, a check every 5 minutes of simulated time. Then the
bundled sample events go into the DuckDB store and are judged from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from .judge import analyze
from .policy import Policy
from .simulate import Check, RolloutOutcome, simulate_rollout
from .sources.files import load_events
from .sources.synthetic import Regression, Workload
from .store import DEFAULT_PATH, Store

__all__ = ["SEED_ROLLOUT", "run_demo"]

#: The seed manifest's rollout section, embedded so the demo needs no files.
SEED_ROLLOUT: dict[str, Any] = {
    "strategy": "canary",
    "stages": [
        {"traffic": 1, "duration": "30m"},
        {"traffic": 10, "duration": "2h"},
        {"traffic": 50, "duration": "6h"},
        {"traffic": 100},
    ],
    "guardrails": {
        "task_success_rate": {"min": 0.97},
        "p95_latency_ms": {"max": 8000},
        "token_spend_delta": {"max": 0.15},
        "eval_score": {"min": 0.90},
    },
    "auto_rollback_on_failure": True,
}


@dataclass(frozen=True)
class _Release:
    name: str
    story: str
    regression: Regression | None


RELEASES = (
    _Release("2026.11.23-healthy", "a prompt refactor that changes nothing measurable", None),
    _Release(
        "2026.11.23-regressed",
        "a 'minor' model upgrade: 2.5 points more failed tasks, slower tail",
        Regression(success_drop=0.025, tail_share=0.05, tail_factor=2.0),
    ),
)
_SYMBOL = {"hold": "[yellow]·[/]", "promote": "[green]✓[/]", "rollback": "[bold red]✗[/]"}


def _timeline(console: Console, policy: Policy, outcome: RolloutOutcome) -> None:
    for stage in sorted({c.stage for c in outcome.checks}):
        checks = [c for c in outcome.checks if c.stage == stage]
        marks = "".join(_SYMBOL[c.decision] for c in checks)
        last = checks[-1]
        traffic = policy.stages[stage].traffic
        console.print(f"  stage {stage} {traffic:>3g}% {policy.stage_mode(stage):5}  {marks}")
        if last.verdict is not None:
            console.print(
                f"           at {last.minute:.0f} min: {last.verdict.reason}", highlight=False
            )


#: The bundled sample: two hours at 10 % canary with a 3-point success drop.
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample_events.parquet"


def run_demo(
    *, seed: int = 7, console: Console | None = None, db: Path = DEFAULT_PATH
) -> list[RolloutOutcome]:
    """Simulate the demo releases, then judge the bundled sample from the DuckDB store."""
    console = console or Console(width=max(Console().width, 110))
    policy = Policy.from_dict(SEED_ROLLOUT)
    workload = Workload()
    console.rule("[bold]canary_stats demo")
    console.print(
        "Rollout 1% (30 min) → 10% (2 h) → 50% (6 h) → 100%, "
        f"{workload.tasks_per_minute:g} tasks/min, "
        f"a check every 5 min; family-wise false-rollback α = {policy.alpha:g}.\n"
        "Timeline marks: · hold  ✓ promote  ✗ rollback\n",
        highlight=False,
    )
    outcomes = []
    for i, release in enumerate(RELEASES):
        with Progress(
            TextColumn("  simulating {task.description}"),
            BarColumn(),
            TextColumn("{task.fields[where]}"),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(release.name, total=None, where="")

            def tick(check: Check, task_id: TaskID = task) -> None:
                progress.update(
                    task_id, advance=1, where=f"stage {check.stage}, {check.minute:.0f} min"
                )

            outcome = simulate_rollout(
                policy,
                workload,
                release.regression,
                check_every=timedelta(minutes=5),
                verdicts=True,
                on_check=tick,
                rng=seed + i,
            )
        console.print(f"[bold]{release.name}[/] — {release.story}")
        _timeline(console, policy, outcome)
        console.print()
        outcomes.append(outcome)
    _summary(console, outcomes)
    if SAMPLE.exists():
        _from_the_store(console, policy, db)
    return outcomes


def _from_the_store(console: Console, policy: Policy, db: Path) -> None:
    console.print()
    console.rule("[bold]From the DuckDB store")
    with Store(db) as store:
        result = store.ingest_events(load_events(SAMPLE), source=f"file {SAMPLE.name}")
        verdict = analyze(store.select(), policy, stage=1)
        logged = store.count("verdicts")
    console.print(
        f"Ingested {SAMPLE.name} into {db}: {result.inserted:,} new events, "
        f"{result.skipped:,} already stored (re-running the demo adds none).\n"
        f"Stage 1 judged from the store: [bold]{verdict.decision}[/] — {verdict.reason}\n"
        f"The verdict is entry {logged} of the audit log (table `verdicts`, with the "
        "fingerprint of its inputs). Next: `canary-stats analyze --db "
        f"{db} --manifest examples/research-agent.manifest.yaml --stage 1 --format table`.",
        highlight=False,
    )


def _summary(console: Console, outcomes: list[RolloutOutcome]) -> None:
    table = Table(title="Summary")
    for col in ("release", "outcome", "simulated time", "checks"):
        table.add_column(col, no_wrap=True)
    table.add_column("evidence (estimate, anytime-valid interval)")
    for release, outcome in zip(RELEASES, outcomes, strict=True):
        last = outcome.checks[-1].verdict
        evidence = ""
        if outcome.outcome == "rolled_back" and last is not None:
            evidence = "; ".join(last.metrics[name].brief() for name in outcome.failed)
        colour = {"promoted": "green", "rolled_back": "red", "stalled": "yellow"}[outcome.outcome]
        table.add_row(
            release.name,
            f"[{colour}]{outcome.outcome.replace('_', ' ')}[/] at stage {outcome.stage}",
            f"{outcome.minutes / 60:.1f} h",
            str(len(outcome.checks)),
            evidence,
        )
    console.print(table)
