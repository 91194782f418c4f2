"""`render_html`: the weekly report as one self-contained HTML page.

Inline CSS, figures as inline SVG, no scripts, no external URLs (the favicon is
an empty data URL so a browser asks for nothing). Every text from the store is
escaped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape
from types import ModuleType

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

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#1f2328;margin:0 auto;max-width:1060px;
padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.sub{color:#59636e;margin:0 0 12px}
.lead{font-size:15px;background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;
padding:10px 14px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.promoted{color:#1a7f37;font-weight:600}
td.rolled-back{color:#cf222e;font-weight:600}
td.in-progress{color:#9a6700;font-weight:600}
tr.miss td{background:#fff8c5}
.note{color:#59636e;font-size:13px}
figure{margin:8px 0 16px}
figure svg{width:100%;height:auto}
figcaption{color:#59636e;font-size:12px}
code{background:#f6f8fa;padding:0 3px;border-radius:3px}
ul.notes li{margin-bottom:4px;color:#3d444d}
"""
_OUTCOMES = ("promoted", "rolled back", "in progress")


def _cell(value: object) -> str:
    if isinstance(value, int | float):
        return f'<td class="n">{escape(str(value))}</td>'
    text = str(value)
    if text in _OUTCOMES:  # the outcome column, coloured
        return f'<td class="{text.replace(" ", "-")}">{escape(text)}</td>'
    return f"<td>{escape(text)}</td>"


def _table(table: Table, *, header: bool = True) -> str:
    head, rows = table
    body = "".join(
        # A near miss row stands out (its last cell says so).
        ('<tr class="miss">' if head[-1] == "near miss" and row[-1] == "yes" else "<tr>")
        + "".join(_cell(v) for v in row)
        + "</tr>"
        for row in rows
    )
    th = "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead>"
    return f"<table>{th if header else ''}<tbody>{body}</tbody></table>"


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{escape(text)}</p>"


def _code(text: str) -> str:
    """Escaped text with `backticked` words set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def _plots() -> ModuleType | None:
    try:
        from . import _plots
    except ImportError:  # matplotlib is missing: the tables still render
        return None
    return _plots


def _figure(plots: ModuleType | None, make: Callable[[ModuleType], str], caption: str) -> str:
    if plots is None:
        return _p("(Plot omitted: install matplotlib to embed the figures.)", "note")
    return f"<figure>{make(plots)}<figcaption>{escape(caption)}</figcaption></figure>"


def render_html(report: WeeklyReport) -> str:
    """The report as a complete HTML document (a string; write it as UTF-8)."""
    w = report.week
    title = f"canary_stats weekly regression report — {w.label}"
    parts = [
        f"<h1>{escape(title)}</h1>",
        _p(
            f"{w.days} (UTC) · store {report.store} · generated {time_text(report.generated_at)}",
            "sub",
        ),
        f'<p class="lead">{escape(summary_line(report))}</p>',
    ]
    notes: tuple[str, ...] = METHOD_NOTES[:1]
    if not report.empty:
        parts += _sections(report, _plots())
        notes = (NEAR_MISS_RULE, *METHOD_NOTES)
    parts.append("<h2>How to read this report</h2>")
    parts.append('<ul class="notes">' + "".join(f"<li>{_code(n)}</li>" for n in notes) + "</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _sections(report: WeeklyReport, plots: ModuleType | None) -> list[str]:
    out = ["<h2>Releases of the week</h2>"]
    if report.rollouts:
        out += [
            _table(rollouts_table(report)),
            "<h3>Time to decision, per stage</h3>",
            _table(stages_table(report)),
            _figure(
                plots,
                lambda p: p.decision_svg(report.rollouts),
                "Each rollout's stages from its start to the decision (hours).",
            ),
        ]
    else:
        out.append(_p("No rollout ran this week."))
    out.append("<h2>Rollbacks</h2>")
    for b in report.rollbacks:
        out += [
            f"<h3>{escape(b.name)} {escape(b.version)} — rolled back</h3>",
            _table(evidence_table(b)),
            _p(f"Evidence: {evidence_text(b)}. Reason: {b.reason} (from the {b.source})."),
            _table(timeline_table(b.timeline)),
        ]
    if not report.rollbacks:
        out.append(_p("No rollout was rolled back this week."))
    out += _effects(report, plots)
    out += ["<h2>Near misses</h2>", _p(NEAR_MISS_RULE, "note")]
    if report.headroom:
        misses = report.near_misses
        out.append(
            _p(
                f"{len(misses)} near miss(es): "
                + ", ".join(f"{h.version} {h.guardrail} (used {pct(h.used, 0)})" for h in misses)
                if misses
                else "No near miss: every promoted guardrail kept more than half its headroom."
            )
        )
        out.append(_table(headroom_table(report)))
    else:
        out.append(_p("No release was promoted this week."))
    out += ["<h2>Stable baseline, week over week</h2>", _table(baseline_table(report))]
    if any(w.tasks for w in report.baseline):
        out.append(
            _figure(
                plots,
                lambda p: p.trend_svg(report.baseline),
                "The stable cohort per ISO week; a dotted line marks a week in which a newly "
                "promoted release served stable traffic.",
            )
        )
    return out + _health(report)


def _effects(report: WeeklyReport, plots: ModuleType | None) -> list[str]:
    level = f"{report.confidence_level:.0%}"
    out = [
        "<h2>Effect sizes (canary vs stable, bootstrap)</h2>",
        _p(
            f"{level} percentile bootstrap intervals, {report.n_resamples} resamples, seed "
            f"{report.seed}; canary vs the stable release it was compared with, over the "
            "last stage each was judged in, from raw events. Descriptive only: the "
            "decisions used the anytime-valid intervals.",
            "note",
        ),
    ]
    if not report.effects:
        return [*out, _p("No rollout to measure.")]
    out.append(_table(effects_table(report)))
    if any(e.estimate is not None for e in report.effects):
        out.append(
            _figure(
                plots,
                lambda p: p.effects_svg(report.effects),
                f"Estimates with {level} bootstrap intervals; the grey line is no change.",
            )
        )
    return out


def _health(report: WeeklyReport) -> list[str]:
    h = report.health
    out = [
        "<h2>The judge's health</h2>",
        _table(verdicts_table(report)),
        _table(health_table(report), header=False),
    ]
    if h.by_pair:
        out += ["<h3>Verdicts per release pair</h3>", _table(pairs_table(report))]
    if h.failed_ingests:
        out += ["<h3>Failed ingests</h3>", _table(failed_ingests_table(report))]
    if h.data_issues:
        out += ["<h3>Data issues by kind</h3>", _table(issues_table(report))]
    if h.events:
        out += [
            "<h3>Judge errors, pauses and manual steps</h3>",
            _table(judge_events_table(report)),
        ]
    return out
