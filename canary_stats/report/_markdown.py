"""`render_markdown`: the same numbers as the HTML report, as tables for chat or mail.

No plots: each place where the HTML page has a figure says so.
"""

from __future__ import annotations

from ._format import (
    METHOD_NOTES,
    NEAR_MISS_RULE,
    Table,
    baseline_table,
    effects_table,
    evidence_table,
    evidence_text,
    failed_ingests_table,
    headroom_table,
    health_table,
    issues_table,
    judge_events_table,
    pairs_table,
    pct,
    rollouts_table,
    stages_table,
    summary_line,
    time_text,
    timeline_table,
    verdicts_table,
)
from ._model import WeeklyReport

__all__ = ["render_markdown"]

_PLOT = "_(The HTML report has a plot of this.)_"


def _esc(value: object) -> str:
    """A table cell: pipes escaped, line breaks flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> str:
    head, rows = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: WeeklyReport) -> str:
    """The report as Markdown (GitHub-flavoured tables)."""
    w = report.week
    out = [
        f"# canary_stats weekly regression report — {w.label}",
        f"{w.days} (UTC) · store `{report.store}` · generated {time_text(report.generated_at)}",
        f"**{summary_line(report)}**",
    ]
    if not report.empty:
        out += _sections(report)
        notes = "\n".join(f"- {n}" for n in (NEAR_MISS_RULE, *METHOD_NOTES))
        out += ["## How to read this report", notes]
    return "\n\n".join(out) + "\n"


def _sections(report: WeeklyReport) -> list[str]:
    out = ["## Releases of the week"]
    if report.rollouts:
        out += [
            _table(rollouts_table(report)),
            "### Time to decision, per stage",
            _table(stages_table(report)),
            _PLOT,
        ]
    else:
        out.append("No rollout ran this week.")
    out.append("## Rollbacks")
    for b in report.rollbacks:
        out += [
            f"### {b.name} {b.version} — rolled back",
            _table(evidence_table(b)),
            f"Evidence: {evidence_text(b)}. Reason: {b.reason} (from the {b.source}).",
            _table(timeline_table(b.timeline)),
        ]
    if not report.rollbacks:
        out.append("No rollout was rolled back this week.")
    level = f"{report.confidence_level:.0%}"
    out += [
        "## Effect sizes (canary vs stable, bootstrap)",
        f"{level} percentile bootstrap intervals, {report.n_resamples} resamples, seed "
        f"{report.seed}, from raw events; descriptive only (the decisions used the "
        "anytime-valid intervals).",
    ]
    out += [_table(effects_table(report)), _PLOT] if report.effects else ["No rollout to measure."]
    out += ["## Near misses", NEAR_MISS_RULE]
    if report.headroom:
        misses = report.near_misses
        out.append(
            f"{len(misses)} near miss(es): "
            + ", ".join(f"{h.version} {h.guardrail} (used {pct(h.used, 0)})" for h in misses)
            if misses
            else "No near miss: every promoted guardrail kept more than half its headroom."
        )
        out.append(_table(headroom_table(report)))
    else:
        out.append("No release was promoted this week.")
    out += ["## Stable baseline, week over week", _table(baseline_table(report)), _PLOT]
    h = report.health
    out += ["## The judge's health", _table(verdicts_table(report)), _table(health_table(report))]
    if h.by_pair:
        out.append(_table(pairs_table(report)))
    if h.failed_ingests:
        out.append(_table(failed_ingests_table(report)))
    if h.data_issues:
        out.append(_table(issues_table(report)))
    if h.events:
        out.append(_table(judge_events_table(report)))
    return out
