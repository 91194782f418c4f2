"""Operating characteristics on every workload class: issue 14's targets, class by class.

For the seed manifest as written and for the issue's relative guardrails on the
seed's stages, on `Workload()` ("current") and on each of `REALISTIC_CLASSES`:
an identical canary, a healthy one inside every margin by half of it, a canary
exactly at each margin, and five regressions, each beside the margin oracle held
to the same budget (`bench._realistic_model.Oracle`). `check_plan` says which
classes the plan can work on; for the others one run with full verdicts shows
what the judge says instead of promoting.

Usage::

    .venv/bin/python -m bench.realistic          # full run: its block of docs/benchmarks.md
    .venv/bin/python -m bench.realistic --quick  # a few runs, printed only
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from canary_stats._plan import Plan, check_plan
from canary_stats.simulate import simulate_rollout
from canary_stats.sources.realistic import UserWorkload

from . import _realistic_model as model
from ._doc import DOC, emit
from .operating_characteristics import wilson

__all__ = ["FULL", "QUICK", "Config", "Record", "main", "render", "run"]

BEGIN = "<!-- BEGIN GENERATED: python -m bench.realistic -->"
END = "<!-- END GENERATED: realistic -->"


@dataclass(frozen=True, slots=True)
class Config:
    """Simulated rollouts per scenario kind."""

    null: int  # identical canary
    margin: int  # exactly at one margin
    healthy: int  # inside every margin by half
    regression: int
    classes: tuple[str, ...] = tuple(model.CLASSES)

    def runs(self, kind: str) -> int:
        return int(getattr(self, "null" if kind == "null" else kind))


#: About 0.5 s per rollout on a 20,000-user class (the simulator tracks distinct users),
#: so the counts of issue 14 (400 and 400) would take about 5 hours on 2 cores; the 400
#: null runs on the current workload are section 1's.
FULL = Config(null=100, margin=50, healthy=60, regression=40)
QUICK = Config(null=1, margin=1, healthy=1, regression=1, classes=("current", "low-traffic"))

FALSE_ROLLBACK_MAX, POWER_MIN, FALSE_PROMOTION_MAX, ON_TIME_MIN = 0.05, 0.95, 0.05, 0.90
RATIO_MAX, TAIL_RATIO_MAX, ON_TIME_FACTOR = 1.25, 1.5, 1.25


@dataclass(frozen=True, slots=True)
class Record:
    """One simulated rollout: canary_stats' outcome and the oracle's rollback time."""

    policy: str
    cls: str
    scenario: str
    outcome: str
    minutes: float
    failed: tuple[str, ...]
    oracle: float  # minutes to the oracle's rollback; NaN without one (or no oracle)


def _seed(*keys: int) -> int:
    return int(np.random.SeedSequence([2026, 14, *keys]).generate_state(1)[0])


def _index(policy: str, cls: str, scenario: str) -> tuple[int, int, int]:
    names = [s.name for s in model.scenarios(policy, cls)]
    return list(model.POLICIES).index(policy), list(model.CLASSES).index(cls), names.index(scenario)


def _one(item: tuple[str, str, str, int]) -> Record:
    policy_name, cls, name, run = item
    policy = model.POLICIES[policy_name]
    sc = next(s for s in model.scenarios(policy_name, cls) if s.name == name)
    seed = _seed(*_index(policy_name, cls, name), run)
    workload = model.with_population(model.CLASSES[cls], seed % 2**31)
    out = simulate_rollout(policy, workload, model.for_population(sc, policy, workload), rng=seed)
    oracle = math.nan
    if sc.kind == "regression":
        oracle = model.Oracle(policy, cls, sc).run(policy, workload, _seed(9, seed))
    return Record(policy_name, cls, name, out.outcome, out.minutes, tuple(out.failed), oracle)


def _verdict_run(item: tuple[str, str]) -> tuple[str, str, str, str]:
    """One identical-canary rollout with full verdicts: how it ended and the last reason."""
    policy_name, cls = item
    workload = model.with_population(model.CLASSES[cls], 1)
    out = simulate_rollout(model.POLICIES[policy_name], workload, None, rng=1, verdicts=True)
    last = out.checks[-1].verdict
    reason = "" if last is None else last.reason
    where = f"{out.outcome} at stage {out.stage} after {out.minutes:.0f} min"
    return policy_name, cls, where, reason


def _pairs() -> list[tuple[str, str]]:
    return [(p, c) for p in model.POLICIES for c in model.CLASSES]


def run(cfg: Config, *, jobs: int = 2) -> tuple[list[Record], list[tuple[str, str, str, str]]]:
    """Every scenario of every (policy, class) pair whose stable meets the policy."""
    infeasible = [(p, c) for p, c in _pairs() if c in cfg.classes and not _plan(p, c).feasible]
    # Where check-plan says no, one run with full verdicts shows what the judge says.
    work = [
        (p, c, sc.name, r)
        for p, c in _pairs()
        if c in cfg.classes and model.stable_violates(model.POLICIES[p], c) is None
        if (p, c) not in infeasible
        for sc in model.scenarios(p, c)
        for r in range(cfg.runs(sc.kind))
    ]
    records: list[Record] = []
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        verdicts = pool.map(_verdict_run, infeasible)
        for i, rec in enumerate(pool.map(_one, work, chunksize=8), start=1):
            records.append(rec)
            if i % 500 == 0 or i == len(work):
                elapsed = time.perf_counter() - started
                print(f"  {i}/{len(work)} runs, {elapsed:.0f} s", file=sys.stderr, flush=True)
        return records, list(verdicts)


# -- summaries -----------------------------------------------------------------------------


def _plan(policy: str, cls: str, icc: float | None = None) -> Plan:
    w, tr = model.CLASSES[cls], model.truth(cls)
    users = w.users if isinstance(w, UserWorkload) else None
    return check_plan(
        model.POLICIES[policy],
        tasks_per_min=w.tasks_per_minute,
        eval_share=w.eval_rate,
        users=users,
        baseline=tr.baseline(icc),
    )


@dataclass(frozen=True, slots=True)
class Row:
    """One scenario on one class under one policy, over its runs."""

    scenario: model.Scenario
    runs: int
    back: int
    promoted: int
    on_time: int
    right: int
    median: float
    oracle_hits: int
    oracle_median: float

    @property
    def ratio(self) -> float:
        ok = self.oracle_median > 0 and math.isfinite(self.oracle_median)
        return self.median / self.oracle_median if ok else math.nan


def _median(x: list[float]) -> float:
    return float(np.median(x)) if x else math.nan


def summarise(records: Iterable[Record]) -> dict[tuple[str, str], list[Row]]:
    """Rows per (policy, class), in scenario order."""
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.policy, r.cls, r.scenario), []).append(r)
    out: dict[tuple[str, str], list[Row]] = {}
    ran = {(p, c) for p, c, _ in groups}
    for p, c in _pairs():
        if (p, c) not in ran:
            continue
        plan = sum(d for _, _, d, _ in model.plan_stages(model.POLICIES[p]))
        rows = []
        for sc in model.scenarios(p, c):
            rs = groups.get((p, c, sc.name), [])
            if not rs:
                continue
            back = [r for r in rs if r.outcome == "rolled_back"]
            prom = [r for r in rs if r.outcome == "promoted"]
            hits = [r.oracle for r in rs if math.isfinite(r.oracle)]
            rows.append(
                Row(
                    sc,
                    len(rs),
                    len(back),
                    len(prom),
                    sum(r.minutes <= ON_TIME_FACTOR * plan + 1e-9 for r in prom),
                    sum(sc.guardrail in r.failed for r in back),
                    _median([r.minutes for r in back]),
                    len(hits),
                    _median(hits),
                )
            )
        if rows:
            out[(p, c)] = rows
    return out


# -- rendering -----------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:.1f} %"


def _rate(k: int, n: int) -> str:
    return f"{k}/{n} = {_pct(k / n)} (≤ {_pct(wilson(k, n)[1])})" if n else "—"


def _num(x: float, unit: str = "") -> str:
    return "—" if math.isnan(x) else f"{x:.0f}{unit}" if not unit else f"{x:.2f}{unit}"


def _mark(ok: bool, text: str) -> str:
    return f"{'met' if ok else '**missed**'} ({text})"


def _targets(rows: list[Row]) -> list[str]:
    """The six targets of issue 14 on one (policy, class)."""
    by_kind: dict[str, list[Row]] = {}
    for r in rows:
        by_kind.setdefault(r.scenario.kind, []).append(r)
    null = by_kind["null"][0]
    margin = max(by_kind["margin"], key=lambda r: r.back / r.runs)
    healthy = [null, *by_kind["healthy"]]
    worst_time = min(healthy, key=lambda r: r.on_time / r.runs)
    regs = by_kind["regression"]
    weak = min(regs, key=lambda r: r.back / r.runs)
    loose = max(regs, key=lambda r: r.promoted / r.runs)
    slow = [r for r in regs if not r.scenario.name.startswith("tail")]
    slowest = max(slow, key=lambda r: -1 if math.isnan(r.ratio) else r.ratio)
    tail = next(r for r in regs if r.scenario.name.startswith("tail"))
    ratio_ok = all(not math.isnan(r.ratio) and r.ratio <= RATIO_MAX for r in slow)
    return [
        _mark(null.back / null.runs <= FALSE_ROLLBACK_MAX, _pct(null.back / null.runs)),
        _mark(
            margin.back / margin.runs <= FALSE_ROLLBACK_MAX,
            f"{_pct(margin.back / margin.runs)}, {margin.scenario.name}",
        ),
        _mark(
            worst_time.on_time / worst_time.runs >= ON_TIME_MIN,
            f"{_pct(worst_time.on_time / worst_time.runs)}, {worst_time.scenario.name}",
        ),
        _mark(
            weak.back / weak.runs >= POWER_MIN,
            f"{_pct(weak.back / weak.runs)}, {weak.scenario.name}",
        ),
        _mark(
            loose.promoted / loose.runs <= FALSE_PROMOTION_MAX,
            f"{_pct(loose.promoted / loose.runs)}, {loose.scenario.name}",
        ),
        _mark(ratio_ok, f"{_num(slowest.ratio, '×')}, {slowest.scenario.name}"),
        _mark(not math.isnan(tail.ratio) and tail.ratio <= TAIL_RATIO_MAX, _num(tail.ratio, "×")),
    ]


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return [*out, *("| " + " | ".join(r) + " |" for r in rows), ""]


def _class_line(cls: str) -> str:
    w, tr = model.CLASSES[cls], model.truth(cls)
    who = f"{w.users} users" if isinstance(w, UserWorkload) else "independent tasks"
    icc = (
        ", ".join(f"{k} {v:.2f}" for k, v in tr.icc.items()) if isinstance(w, UserWorkload) else "—"
    )
    return (
        f"{w.tasks_per_minute:g}/min, {100 * w.eval_rate:g} % scored, {who}; stable success "
        f"{1 - tr.fail_rate:.3f}, p95 {tr.p95:.0f} ms, tokens {tr.tokens_mean:.0f}, eval "
        f"{tr.eval_mean:.3f}; ICC {icc}"
    )


def _feasibility(classes: tuple[str, ...]) -> list[str]:
    rows = []
    for p, c in _pairs():
        if c not in classes:
            continue
        plan, tr = _plan(p, c), model.truth(c)
        top = max(tr.icc.values())
        measured = _plan(p, c, top) if top > 0 else plan
        why = "; ".join(plan.problems) or "—"
        at_icc = "—" if top == 0 else ("yes" if measured.feasible else "no") + f" (ICC {top:.2f})"
        rows.append([p, c, "yes" if plan.feasible else "**no**", why, at_icc])
    return _table(
        [
            "policy",
            "class",
            "check-plan feasible",
            "problems",
            "feasible at the class's largest measured ICC",
        ],
        rows,
    )


def render(
    records: list[Record],
    verdicts: list[tuple[str, str, str, str]],
    cfg: Config,
    *,
    seconds: float,
    quick: bool,
) -> str:
    """The generated block of docs/benchmarks.md."""
    summary = summarise(records)
    feasible = {(p, c): _plan(p, c).feasible for p, c in _pairs() if c in cfg.classes}
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    plan = sum(d for _, _, d, _ in model.plan_stages(model.POLICIES["seed"]))
    lines = [
        BEGIN,
        "",
        "## 6. Realistic workloads (issue 14's targets)",
        "",
        f"Generated by `python -m bench.realistic{' --quick' if quick else ''}` on {when} in "
        f"{seconds / 60:.1f} min on {os.cpu_count()} CPUs (2 worker processes). Rerun with "
        "`.venv/bin/python -m bench.realistic` (this block only; `--quick` prints a smoke "
        "run), or `.venv/bin/python -m bench.run_all --realistic`, which runs it after the "
        "other benchmarks.",
        "",
        f"Runs per scenario: identical canary {cfg.null}, at a margin {cfg.margin}, healthy "
        f"{cfg.healthy}, regressions {cfg.regression}; fixed seeds; every run draws a new "
        "user population (`population_seed`). Policies: **seed** is "
        "`examples/research-agent.manifest.yaml` as written; **relative** is the seed's "
        "stages with `task_success_rate: {max_drop: 0.02}`, `p95_latency_ms: {max_ratio: "
        "1.20}`, `tokens_per_task: {max_ratio: 1.15}`, `eval_score: {min: 0.90}`. α = 0.05 "
        f"family-wise. The plan's stages add up to {plan:.0f} min; on time is within "
        f"{ON_TIME_FACTOR:g} × that ({ON_TIME_FACTOR * plan:.0f} min).",
        "",
        "Margins: relative rules are scale-free (a drop of 0.02, ×1.2 latency); the token "
        "factor is solved so that the capped mean ratio is exactly the target; an absolute "
        "bound is measured from stable at its worst planned stage (drift included), except "
        "the eval score's on per-user classes: the judge adjusts it by the users' history "
        "(24 h before the rollout, simulated for every run) and so judges the run's own "
        "users, whose mean is where that margin is placed. The "
        f"tail-only change multiplies a share of canary latencies by {model.TAIL_FACTOR:g}, "
        "the share solved on the class's latencies so that p95 rises by 30 %.",
        "",
        "The oracle: Wald's SPRT on the canary's observations of the regressed metric, "
        "knowing the class's regressed distribution (averaged over user populations, drift "
        "included), with the null at the least favourable point of the guardrail's null "
        "(failure rate at the margin; p95: the canary's exceedance of the bound at exactly "
        "5 %; mean tokens and eval score: the growth-optimal bet against every distribution "
        "with its mean at the margin), rejecting at log(4/α), its statistic kept across "
        "stages, looking every 5 min, every stage at its planned length.",
        "",
        "### Classes and plans",
        "",
        *_table(["class", "what"], ([c, _class_line(c)] for c in cfg.classes)),
        "`check_plan` with the class's measured baseline (means, spreads, activity) and its "
        "default ICC of 0.02; the last column gives the same plan at the class's largest "
        "per-metric ICC (the plan takes one for all metrics):",
        "",
        *_feasibility(cfg.classes),
        "### Targets",
        "",
        "Targets are required where `check_plan` calls the plan feasible (marked *required*).",
        "",
        *_table(
            [
                "policy",
                "class",
                "required",
                "false rollback ≤ 5 %",
                "at a margin ≤ 5 %",
                "promoted on time ≥ 90 %",
                "power ≥ 95 %",
                "false promotion ≤ 5 %",
                f"median ÷ oracle ≤ {RATIO_MAX}×",
                f"tail ÷ oracle ≤ {TAIL_RATIO_MAX}×",
            ],
            (
                [p, c, "*required*" if feasible[(p, c)] else "no", *_targets(rows)]
                for (p, c), rows in summary.items()
            ),
        ),
    ]
    for (p, c), rows in summary.items():
        lines += [f"#### {p} / {c}", "", _class_line(c), ""]
        lines += _table(
            [
                "scenario",
                "canary",
                "rolled back",
                "promoted",
                "on time",
                "right guardrail",
                "median min to rollback",
                "oracle power",
                "oracle median",
                "÷ oracle",
            ],
            (
                [
                    r.scenario.name,
                    r.scenario.description,
                    _rate(r.back, r.runs),
                    _pct(r.promoted / r.runs),
                    _pct(r.on_time / r.runs),
                    _pct(r.right / r.back) if r.back and r.scenario.guardrail else "—",
                    _num(r.median),
                    _pct(r.oracle_hits / r.runs) if r.scenario.kind == "regression" else "—",
                    _num(r.oracle_median),
                    _num(r.ratio, "×"),
                ]
                for r in rows
            ),
        )
    lines += ["### Where the plan is infeasible: one identical-canary run with full verdicts", ""]
    lines += _table(
        ["policy", "class", "how it ended", "the judge's last reason"],
        ([p, c, where, reason.replace("|", "/")] for p, c, where, reason in verdicts),
    )
    skipped = [
        f"{p} / {c}: {why}"
        for p, c in _pairs()
        if c in cfg.classes
        if (why := model.stable_violates(model.POLICIES[p], c))
    ]
    if skipped:
        lines += [
            "No scenarios where stable itself breaks an absolute guardrail (any canary "
            "like it is a true violation): " + "; ".join(skipped) + ".",
            "",
        ]
    return "\n".join([*lines, END, ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.realistic", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a few runs; print only")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--output", type=Path, default=None, help=f"markdown file (default {DOC})")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    started = time.perf_counter()
    records, verdicts = run(cfg, jobs=args.jobs)
    text = render(records, verdicts, cfg, seconds=time.perf_counter() - started, quick=args.quick)
    emit(text, args.output or (None if args.quick else DOC), BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
