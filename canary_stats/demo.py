"""``canary-stats demo``: two simulated releases through the seed's staged rollout.

Runs on embedded defaults only: the seed manifest's rollout plan, synthetic
traffic at 200 tasks/min, a check every 5 minutes of simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from .policy import Policy
from .simulate import Check, RolloutOutcome, simulate_rollout
from .sources.synthetic import Regression, Workload

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


def run_demo(*, seed: int = 7, console: Console | None = None) -> list[RolloutOutcome]:
    """Simulate the demo releases and print their timelines and a summary."""
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
    return outcomes


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
