"""``canary-stats analyze``, ``simulate`` and ``demo``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from .._verdict import Verdict
from ..errors import CanaryStatsError, InputError
from ..judge import analyze as analyze_events
from ..judge import load_events
from ..policy import Policy
from ..shadow import analyze_shadow
from ..store import Store
from ._app import EXIT_CODES, app, existing_store, fail, parse_time

__all__ = ["verdict_table"]


class OutputFormat(StrEnum):
    json = "json"
    table = "table"


@app.command()
def analyze(
    manifest: Annotated[
        Path, typer.Option(help="Release manifest (YAML) whose spec.rollout is the policy.")
    ],
    stage: Annotated[int, typer.Option(help="Index of the current stage (0 = first).")],
    events: Annotated[
        Path | None,
        typer.Argument(help="Raw events or aggregates: .parquet, .csv or .jsonl (or use --db)."),
    ] = None,
    db: Annotated[
        Path | None, typer.Option("--db", help="Judge from this DuckDB store instead of a file.")
    ] = None,
    stable_version: Annotated[
        str | None, typer.Option(help="With --db: the stable release to compare against.")
    ] = None,
    canary_version: Annotated[
        str | None, typer.Option(help="With --db: the canary release under judgement.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="With --db: when the stage began (ISO 8601 with zone).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="With --db: end of the data to judge (default: all).")
    ] = None,
    elapsed: Annotated[
        str | None,
        typer.Option(help="Time in the stage, e.g. 30m or 2h (default: span of the data)."),
    ] = None,
    stage_starts: Annotated[
        str | None,
        typer.Option(
            "--stage-starts",
            help="When each stage 0..STAGE of this rollout began, comma-separated ISO 8601 "
            "times: the data then holds the whole rollout and the evidence of every stage "
            "is kept (default: the data is the current stage alone).",
        ),
    ] = None,
    format: Annotated[
        OutputFormat, typer.Option("--format", help="json or table.")
    ] = OutputFormat.json,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Shadow mode: the file holds stable and mirrored shadow runs of the same "
            "tasks (cohort 'shadow', same request_id), judged as pairs.",
        ),
    ] = False,
) -> None:
    """Judge a canary; exit 0 promote, 10 hold, 20 rollback, 2 bad input, 3 source down.

    From a file of events or aggregates, or (with --db) from the store, where
    the verdict is also appended to the audit log. With --shadow, from a file of
    mirrored traffic, each task's shadow run paired with its stable run.
    """
    try:
        if (events is None) == (db is None):
            raise InputError("events", "give either an events file or --db FILE, not both")
        policy = Policy.from_manifest(manifest)
        starts = _starts(stage_starts)
        if shadow:
            if events is None:
                raise InputError("--shadow", "shadow mode judges an events file, not --db")
            if starts is not None:
                raise InputError("--stage-starts", "shadow mode judges one stage at a time")
            verdict = analyze_shadow(events, policy, stage=stage, elapsed=elapsed)
        elif db is not None:
            with Store(existing_store(db)) as store:
                view = store.select(
                    stable=stable_version,
                    canary=canary_version,
                    start=parse_time(since, "--since") if since else None,
                    end=parse_time(until, "--until") if until else None,
                )
                verdict = analyze_events(
                    view, policy, stage=stage, elapsed=elapsed, stage_starts=starts
                )
        else:
            assert events is not None  # one of events and --db, checked above
            frame = load_events(events)
            _no_shadow_without_flag(frame)
            verdict = analyze_events(
                frame, policy, stage=stage, elapsed=elapsed, stage_starts=starts
            )
    except CanaryStatsError as exc:
        raise fail(exc) from None
    if format is OutputFormat.json:
        typer.echo(json.dumps(verdict.to_dict(), indent=2))
    else:
        Console(width=max(Console().width, 120)).print(verdict_table(verdict))
    raise typer.Exit(EXIT_CODES[verdict.decision])


def _starts(text: str | None) -> list[str] | None:
    """``--stage-starts`` as a list of times (checked by `analyze`, which names the entry)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise InputError("--stage-starts", f"expected comma-separated ISO 8601 times; got {text!r}")
    return parts


def _no_shadow_without_flag(events: pd.DataFrame) -> None:
    """Shadow runs without canary rows are a shadow file: say so instead of holding."""
    if "cohort" not in events.columns:
        return  # aggregates or a broken file: the judge names what is wrong
    cohorts = events["cohort"].astype("string")
    shadow = int((cohorts == "shadow").sum())
    if shadow and not (cohorts == "canary").any():
        raise InputError(
            "cohort",
            f"{shadow} shadow rows and no canary rows: this is a shadow file; "
            "judge mirrored traffic with --shadow",
        )


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
            # An absolute guardrail reads the canary alone: stable has no count there.
            f"{m.n_canary:.0f} / " + ("—" if m.contrast == "absolute" else f"{m.n_stable:.0f}"),
        )
    return table


@app.command()
def simulate(
    manifest: Annotated[
        Path, typer.Option(help="Release manifest whose rollout plan to simulate.")
    ],
    runs: Annotated[int, typer.Option(min=1, help="Number of simulated rollouts.")] = 50,
    regression: Annotated[
        list[str] | None,
        typer.Option(
            help="Canary regression, e.g. success_drop=0.03, latency_factor=1.3, "
            "tail_share=0.1, tail_factor=3, token_factor=1.2, eval_drop=0.05 (repeatable)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first run.")] = 0,
) -> None:
    """Operating characteristics of the manifest's rollout plan on synthetic traffic."""
    from ..simulate import simulate_rollout
    from ..sources.synthetic import Regression

    try:
        policy = Policy.from_manifest(manifest)
        changes = _parse_regression(regression or [])
        reg = Regression(**changes)
        outcomes = [simulate_rollout(policy, None, reg, rng=seed + i) for i in range(runs)]
    except CanaryStatsError as exc:
        raise fail(exc) from None
    what = ", ".join(f"{k}={v:g}" for k, v in changes.items()) or "identical to stable"
    table = Table(title=f"{runs} simulated rollouts of {manifest.name}; canary: {what}")
    for col in ("outcome", "share", "median minutes", "guardrails that failed"):
        table.add_column(col)
    for kind in ("promoted", "rolled_back", "stalled"):
        chosen = [o for o in outcomes if o.outcome == kind]
        if not chosen:
            continue
        minutes = sorted(o.minutes for o in chosen)[len(chosen) // 2]
        failed = sorted({name for o in chosen for name in o.failed})
        table.add_row(kind, f"{len(chosen) / runs:.1%}", f"{minutes:.0f}", ", ".join(failed))
    Console(width=max(Console().width, 120)).print(table)


def _parse_regression(items: list[str]) -> dict[str, float]:
    from dataclasses import fields

    from ..sources.synthetic import Regression

    known = {f.name for f in fields(Regression)}
    out: dict[str, float] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in known:
            raise InputError(
                "--regression", f"unknown field {key!r}; expected one of {sorted(known)}"
            )
        try:
            out[key] = float(value)
        except ValueError:
            raise InputError("--regression", f"{key} needs a number, e.g. {key}=1.2") from None
    return out


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 7,
    db: Annotated[
        Path,
        typer.Option("--db", help="The demo's own DuckDB store, rebuilt on every run."),
    ] = Path("data/demo.duckdb"),
) -> None:
    """Roll out a healthy and a regressed release through the router, executor and judge.

    Simulated agent traffic, compressed time: the healthy release is promoted stage by
    stage, the regressed one rolled back automatically with its postmortem.
    """
    from ..demo import run_demo

    try:
        run_demo(seed=seed, db=db)
    except CanaryStatsError as exc:
        raise fail(exc) from None
