"""Number formats and the report's fixed wording, shared by the HTML and Markdown renderers.

Both renderers format every number through these helpers, so the two formats
always show the same digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from ._model import (
    NEAR_MISS_SHARE,
    EffectSize,
    Rollback,
    RolloutSummary,
    TransitionLine,
    WeeklyReport,
)

__all__ = [
    "DASH",
    "METHOD_NOTES",
    "NEAR_MISS_RULE",
    "Table",
    "baseline_table",
    "effect_text",
    "effects_table",
    "evidence_table",
    "evidence_text",
    "failed_ingests_table",
    "headroom_table",
    "health_table",
    "interval_text",
    "issues_table",
    "judge_events_table",
    "minutes_text",
    "num",
    "outcome_text",
    "pairs_table",
    "pct",
    "rollouts_table",
    "rule_text",
    "stages_table",
    "summary_line",
    "time_text",
    "timeline_table",
    "verdicts_table",
]

DASH = "—"

#: A table: its header and its rows of cells.
Table = tuple[tuple[str, ...], list[tuple[object, ...]]]

NEAR_MISS_RULE = (
    "A near miss is a promoted release whose final verdict (the last one the judge logged for "
    "the release pair) has a guardrail that did not fail, yet whose point estimate used at least "
    f"{NEAR_MISS_SHARE:.0%} of its headroom. With R the no-change reference (0 for a "
    "difference, 1 for a ratio, and for an absolute limit the stable cohort's own value over "
    "the same stage window), L the limit on the same scale and E the estimate, both measured "
    "in the harmful direction: degradation = E − R, headroom = L − R, used = degradation / "
    f"headroom; a near miss has degradation > 0 and used ≥ {NEAR_MISS_SHARE:g}."
)

METHOD_NOTES = (
    "Week: Monday 00:00 UTC to the next Monday 00:00 UTC (ISO 8601). A rollout is listed "
    "when it has a transition in the week (it started, changed stage, paused or ended there); "
    "its outcome is as the store stands now.",
    "Time to decision: from the rollout's `started` transition to its `promoted` or "
    "`rolling_back` transition (the decision acted on). A stage lasts from its "
    "`stage_started` transition to the next stage, the decision or an abort; pauses count.",
    "Effect sizes: the canary against the stable release it was judged against, over the "
    "last stage it was judged in (that stage's start to the decision, or to now while in "
    "progress; one stage, so both cohorts share its hours and split), from raw events (one "
    "row per task; eval scores are the events' sampled scores). Means (success rate, tokens "
    "per task, eval score) use a Poisson bootstrap, the p95 latency ratio a resampling-free "
    "order-statistics bootstrap; percentile intervals. They are fixed-horizon descriptions: "
    "the decisions were taken on anytime-valid intervals, shown with each rollback.",
    "Stable baseline: the stable cohort (whichever release served it) per week: success "
    "rate, p95 latency, mean tokens per task, mean eval score, from raw events, or from "
    "per-window aggregates in a week without raw events (p95 then interpolated within the "
    "histogram bucket).",
    "Judge health: verdicts logged in the week by decision; ingests started in the week; data "
    "issues of windows overlapping it; judge errors, pauses and manual steps from the rollout "
    "transitions. Data lag: per successful ingest, its finish time minus the newest task (or "
    "window end) it carried, as recorded in the store.",
)

_RULES = {
    "min": "canary ≥ {v:g}",
    "max": "canary ≤ {v:g}",
    "max_drop": "at most {v:g} below stable",
    "max_increase": "at most {v:g} above stable",
    "min_ratio": "canary ≥ {v:g} × stable",
    "max_ratio": "canary ≤ {v:g} × stable",
}


def num(x: float | None, digits: int = 4) -> str:
    """``digits`` significant digits, or a dash for a missing value."""
    if x is None or not math.isfinite(x):
        return DASH
    return f"{x:.{digits}g}"


def pct(x: float | None, decimals: int = 2) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    return f"{100 * x:.{decimals}f}%"


def time_text(t: datetime | None) -> str:
    return DASH if t is None else f"{t:%Y-%m-%d %H:%M} UTC"


def minutes_text(m: float | None) -> str:
    """``"8 h 30 min"``, ``"45 min"``."""
    if m is None or not math.isfinite(m):
        return DASH
    total = round(m)
    hours, minutes = divmod(total, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def rule_text(rule: str | None, limit: float | None) -> str:
    if rule is None or limit is None:
        return DASH
    return _RULES.get(rule, f"{rule} {{v:g}}").format(v=limit)


def interval_text(low: float | None, high: float | None) -> str:
    return f"[{num(low)}, {num(high)}]"


def _signed(x: float, scale: float, decimals: int, unit: str) -> str:
    return f"{x * scale:+.{decimals}f}{unit}".replace("-", "−")


def effect_text(e: EffectSize, value: float | None) -> str:
    """A rate difference in percentage points, a score difference, or a ratio."""
    if value is None or not math.isfinite(value):
        return DASH
    if e.metric == "success_rate":
        return _signed(value, 100, 3, " pp")
    if e.contrast == "difference":
        return _signed(value, 1, 4, "")
    return f"{value:.4f}×"


def outcome_text(r: RolloutSummary) -> str:
    return {"promoted": "promoted", "rolled_back": "rolled back"}.get(r.outcome, "in progress")


def evidence_text(b: Rollback) -> str:
    """``task_success_rate 0.9578 [0.9468, 0.9697] vs canary ≥ 0.97``."""
    if b.guardrail is None:
        return "no guardrail proven violated (aborted or judge outage)"
    return (
        f"{b.guardrail} {num(b.estimate)} {interval_text(b.low, b.high)} vs "
        f"{rule_text(b.rule, b.limit)}"
    )


def summary_line(report: WeeklyReport) -> str:
    """One sentence for the top of the report."""
    if report.empty:
        last = report.latest_activity
        since = f" The store's latest record is from {time_text(last)}." if last else ""
        nothing = "no rollouts, verdicts or ingests"
        return f"Nothing was recorded in {report.week.label}: {nothing}.{since}"
    n = len(report.rollouts)
    h = report.health
    parts = [
        f"{n} rollout{'s' if n != 1 else ''}: {report.count('promoted')} promoted, "
        f"{report.count('rolled_back')} rolled back, {report.count('in progress')} in progress",
        f"{len(report.near_misses)} near miss{'es' if len(report.near_misses) != 1 else ''}",
        f"{h.total_verdicts} verdicts ({pct(h.hold_share, 1)} holds)",
        f"{len(h.failed_ingests)} failed ingests",
        f"{h.count('judge_error')} judge errors",
    ]
    return "; ".join(parts) + "."


# -- the tables both renderers show (same cells, so the same numbers) ------------------


def rollouts_table(report: WeeklyReport) -> Table:
    head = ("release", "version", "compared with stable", "outcome", "stages reached",
            "started", "ended", "time to decision")  # fmt: skip
    rows: list[tuple[object, ...]] = [
        (r.name, r.version, r.stable, outcome_text(r), r.reached, time_text(r.started_at),
         time_text(r.ended_at), minutes_text(r.decision_minutes))
        for r in report.rollouts
    ]  # fmt: skip
    return head, rows


def stages_table(report: WeeklyReport) -> Table:
    head = ("version", "stage", "traffic", "started", "lasted", "ended by")
    rows: list[tuple[object, ...]] = [
        (r.version, s.stage, f"{s.traffic or 0:g}%", time_text(s.start), minutes_text(s.minutes),
         s.ended_by.replace("_", " "))
        for r in report.rollouts
        for s in r.stages
    ]  # fmt: skip
    return head, rows


def evidence_table(b: Rollback) -> Table:
    head = ("guardrail", "estimate", "anytime-valid interval", "limit", "rolled back at",
            "compared with stable")  # fmt: skip
    row = (b.guardrail or DASH, num(b.estimate), interval_text(b.low, b.high),
           rule_text(b.rule, b.limit), time_text(b.at), b.stable or DASH)  # fmt: skip
    return head, [row]


def timeline_table(lines: Sequence[TransitionLine]) -> Table:
    head = ("#", "at", "state", "stage", "traffic", "note")
    rows: list[tuple[object, ...]] = [
        (t.seq, time_text(t.at), t.state.replace("_", " "), DASH if t.stage is None else t.stage,
         DASH if t.traffic is None else f"{t.traffic:g}%", t.note or DASH)
        for t in lines
    ]  # fmt: skip
    return head, rows


def effects_table(report: WeeklyReport) -> Table:
    """One row per effect; a rollout with no effect at all for one reason gets one row."""
    level = f"{report.confidence_level:.0%}"
    head = ("version", "effect", "estimate", f"{level} interval", "n canary", "n stable",
            "method", "note")  # fmt: skip
    rows: list[tuple[object, ...]] = []
    for rollout in dict.fromkeys(e.rollout_id for e in report.effects):
        effects = [e for e in report.effects if e.rollout_id == rollout]
        if all(e.estimate is None for e in effects) and len({e.note for e in effects}) == 1:
            e = effects[0]
            rows.append((e.version, "all four", DASH, DASH, e.n_canary, e.n_stable, DASH, e.note))
            continue
        rows += [
            (e.version, e.label, effect_text(e, e.estimate),
             f"[{effect_text(e, e.low)}, {effect_text(e, e.high)}]", e.n_canary, e.n_stable,
             e.method or DASH, e.note or DASH)
            for e in effects
        ]  # fmt: skip
    return head, rows


def headroom_table(report: WeeklyReport) -> Table:
    head = ("version", "guardrail", "final status", "limit", "estimate", "reference",
            "degradation", "headroom", "used", "near miss")  # fmt: skip
    rows: list[tuple[object, ...]] = [
        (h.version, h.guardrail, h.status, rule_text(h.rule, h.limit), num(h.estimate),
         f"{num(h.reference)} ({h.reference_source})", num(h.degradation), num(h.headroom),
         pct(h.used, 0), "yes" if h.near_miss else "no")
        for h in report.headroom
    ]  # fmt: skip
    return head, rows


def baseline_table(report: WeeklyReport) -> Table:
    head = ("week", "tasks", "success rate", "p95 latency (ms)", "tokens per task",
            "eval score", "stable releases", "from")  # fmt: skip
    rows: list[tuple[object, ...]] = [
        (w.week, w.tasks, pct(w.success_rate), num(w.p95_latency_ms), num(w.tokens_per_task),
         num(w.eval_score), ", ".join(w.releases) or DASH, w.source)
        for w in report.baseline
    ]  # fmt: skip
    return head, rows


def verdicts_table(report: WeeklyReport) -> Table:
    h = report.health
    rows: list[tuple[object, ...]] = [(d, n) for d, n in sorted(h.verdicts.items())]
    rows.append(("holds share", pct(h.hold_share, 1)))
    return ("verdicts", "count"), rows


def pairs_table(report: WeeklyReport) -> Table:
    return ("release", "stable", "promote", "hold", "rollback"), list(report.health.by_pair)


def health_table(report: WeeklyReport) -> Table:
    h = report.health
    lag = (
        f"median {minutes_text(h.lag.median_minutes)}, max {minutes_text(h.lag.max_minutes)} "
        f"over {h.lag.ingests} ingests"
        if h.lag
        else "not derivable (no successful ingest with data in the week)"
    )
    commands = ", ".join(f"{k} {v}" for k, v in sorted(h.commands.items())) or "0"
    rows: list[tuple[object, ...]] = [
        ("ingests", str(h.ingests)),
        ("failed ingests", str(len(h.failed_ingests))),
        ("data issues (windows)", str(sum(n for _, n in h.data_issues))),
        ("judge errors", str(h.count("judge_error"))),
        ("pauses", str(h.count("paused"))),
        ("manual commands", commands),
        ("data lag", lag),
    ]
    return ("judge input and outages", "this week"), rows


def failed_ingests_table(report: WeeklyReport) -> Table:
    rows: list[tuple[object, ...]] = [
        (time_text(t), s, d) for t, s, d in report.health.failed_ingests
    ]
    return ("failed ingest started", "source", "error"), rows


def issues_table(report: WeeklyReport) -> Table:
    return ("data issue", "windows"), list(report.health.data_issues)


def judge_events_table(report: WeeklyReport) -> Table:
    rows: list[tuple[object, ...]] = [
        (t.rollout_id, time_text(t.at), t.state.replace("_", " "), t.note or DASH)
        for t in report.health.events
    ]
    return ("rollout", "at", "state", "note"), rows
