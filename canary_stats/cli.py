"""The ``canary-stats`` command line.

Exit codes of ``analyze``: 0 promote, 10 hold, 20 rollback, 2 bad input.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._verdict import Verdict
from .errors import CanaryStatsError, InputError
from .judge import analyze as analyze_events
from .policy import Policy

__all__ = ["EXIT_CODES", "app"]

EXIT_CODES = {"promote": 0, "hold": 10, "rollback": 20}
EXIT_BAD_INPUT = 2

app = typer.Typer(
    help="Statistical canary analysis for AI-agent releases: promote, hold or rollback.",
    no_args_is_help=True,
    add_completion=False,
)
_err = Console(stderr=True, soft_wrap=True)


class OutputFormat(StrEnum):
    json = "json"
    table = "table"


def _fail(exc: CanaryStatsError) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(EXIT_BAD_INPUT if isinstance(exc, InputError) else 1)


@app.command()
def analyze(
    events: Annotated[
        Path, typer.Argument(help="Raw events or aggregates: .parquet, .csv or .jsonl.")
    ],
    manifest: Annotated[
        Path, typer.Option(help="Release manifest (YAML) whose spec.rollout is the policy.")
    ],
    stage: Annotated[int, typer.Option(help="Index of the current stage (0 = first).")],
    elapsed: Annotated[
        str | None,
        typer.Option(help="Time in the stage, e.g. 30m or 2h (default: span of the data)."),
    ] = None,
    format: Annotated[
        OutputFormat, typer.Option("--format", help="json or table.")
    ] = OutputFormat.json,
) -> None:
    """Judge a canary from its events; exit 0 promote, 10 hold, 20 rollback, 2 bad input."""
    try:
        policy = Policy.from_manifest(manifest)
        verdict = analyze_events(events, policy, stage=stage, elapsed=elapsed)
    except CanaryStatsError as exc:
        raise _fail(exc) from None
    if format is OutputFormat.json:
        typer.echo(json.dumps(verdict.to_dict(), indent=2))
    else:
        Console(width=max(Console().width, 120)).print(verdict_table(verdict))
    raise typer.Exit(EXIT_CODES[verdict.decision])


def verdict_table(verdict: Verdict) -> Table:
    """A human view of one verdict."""
    colour = {"promote": "green", "hold": "yellow", "rollback": "red"}[verdict.decision]
    table = Table(
        title=f"[bold {colour}]{verdict.decision.upper()}[/]  stage {verdict.stage} "
        f"({verdict.traffic:g}%, {verdict.mode}), {verdict.elapsed_minutes:.0f} min",
        caption=verdict.reason,
        caption_justify="left",
    )
    for col in (
        "guardrail",
        "status",
        "estimate",
        "anytime-valid interval",
        "limit",
        "n canary / stable",
    ):
        table.add_column(col)
    styles = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}
    for m in verdict.metrics.values():
        table.add_row(
            m.name,
            f"[{styles[m.status]}]{m.status}[/]",
            f"{m.estimate:.4g}",
            f"[{m.low:.4g}, {m.high:.4g}]",
            m.description,
            f"{m.n_canary:.0f} / {m.n_stable:.0f}",
        )
    return table


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 7,
) -> None:
    """Simulate a healthy and a regressed release through the staged rollout."""
    from .demo import run_demo

    run_demo(seed=seed)


def main() -> None:  # pragma: no cover - console entry point
    app()
