"""``canary-stats report``: the weekly regression report, as HTML or Markdown."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import CanaryStatsError, InputError
from ..store import DEFAULT_PATH
from ._app import app, existing_store, fail

__all__ = ["ReportFormat"]


class ReportFormat(StrEnum):
    html = "html"
    md = "md"


@app.command()
def report(
    db: Annotated[
        Path, typer.Option("--db", help="The DuckDB store (opened read-only).")
    ] = DEFAULT_PATH,
    week: Annotated[
        str | None,
        typer.Option(help="ISO week, e.g. 2026-W47 (Monday to Monday, UTC); default: this week."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="File to write (default: report-WEEK.html or .md here)."),
    ] = None,
    format: Annotated[
        ReportFormat,
        typer.Option("--format", help="html (one self-contained page, plots embedded) or md."),
    ] = ReportFormat.html,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the bootstrap intervals.")] = 0,
    resamples: Annotated[
        int, typer.Option(min=100, help="Bootstrap resamples per effect size.")
    ] = 1_000,
) -> None:
    """Write the weekly regression report: releases and decisions, rollbacks with their
    evidence, effect sizes with bootstrap intervals, near misses, the stable baseline's
    trend and the judge's health.
    """
    from ..report import build_report, parse_week, render_html, render_markdown

    try:
        try:
            iso = parse_week(week)
        except InputError as exc:  # name the option as typed
            raise InputError("--week", str(exc).removeprefix("week: ")) from None
        data = build_report(existing_store(db), iso, rng=seed, n_resamples=resamples)
        text = render_html(data) if format is ReportFormat.html else render_markdown(data)
        target = out or Path(f"report-{iso.label}.{format.value}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError("--out", f"cannot write {target}: {exc.strerror}") from None
    except CanaryStatsError as exc:
        raise fail(exc) from None
    typer.echo(f"wrote {target} ({format.value}, {iso.label}: {len(data.rollouts)} rollouts)")
