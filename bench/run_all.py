"""Run every benchmark and write ``docs/benchmarks.md``.

Usage::

    make bench                              # the full run, rewrites docs/benchmarks.md
    .venv/bin/python -m bench.run_all --quick   # a smoke test, printed only

The generated part of the document sits between two markers; text after the
end marker (the hand-written reading of the results) is kept on a rerun.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

from . import operating_characteristics as oc
from . import performance as perf
from .scenarios import SCENARIOS, SEED_GUARDRAILS, seed_policy, stage_plan

BEGIN = "<!-- BEGIN GENERATED: python -m bench.run_all -->"
END = "<!-- END GENERATED -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@dataclass(frozen=True, slots=True)
class Config:
    """How much to run: simulated rollouts per scenario and event counts per cohort."""

    runs_null: int
    runs_regression: int
    sizes: tuple[int, ...]


FULL = Config(400, 200, (10_000, 100_000, 1_000_000, 10_000_000))
QUICK = Config(12, 6, (10_000, 100_000))

# Targets of the issue.
FALSE_ROLLBACK_MAX = 0.05
POWER_MIN = 0.95
FALSE_PROMOTION_MAX = 0.05
ORACLE_RATIO_MAX = 1.25  # issue 14: the margin oracle at the same budget (α/4)
TAIL_RATIO_MAX = 1.5  # the tail-only p95 regression
PROMOTED_IN_TIME_MIN = 0.90
ANALYZE_1M_MAX = 0.100
ANALYZE_USERS_1M_MAX = 0.200


# -- formatting ----------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:.1f}%"


def _rate(k: int, n: int) -> str:
    lo, hi = oc.wilson(k, n)
    return f"{_pct(k / n)} ({100 * lo:.1f}–{100 * hi:.1f})"


def _min(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.0f}"


def _ratio(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f}×"


def _yes(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def _ms(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{1000 * seconds:,.0f} ms"


def _mb(n: float) -> str:
    return "—" if math.isnan(n) else f"{n / 2**20:,.0f} MB"


# -- sections ------------------------------------------------------------------------------


def _revision() -> str:
    """The commit the benchmark ran on, and whether canary_stats had local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "canary_stats"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "an unknown revision (git not available)"
    if not head:
        return "an unknown revision (not a git checkout)"
    return f"commit `{head}`" + (" with uncommitted changes" if dirty else "")


def _machine(load_before: tuple[float, float, float]) -> list[str]:
    load_after = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return [
        "## Machine",
        "",
        f"- canary_stats at {_revision()}",
        f"- CPU: {cpu}; `nproc` = {os.cpu_count()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, pandas {pd.__version__}; {platform.platform()}",
        f"- Load average (1 min) {load_before[0]:.2f} at the start, {load_after[0]:.2f} at the "
        "end. The machine is shared: other processes competing for the two cores slow every "
        "timing below, so medians and minima are both reported.",
        "",
    ]


def _by(summaries: list[oc.Summary]) -> dict[tuple[str, str], oc.Summary]:
    return {(s.scenario, s.method): s for s in summaries}


def _null_section(summaries: list[oc.Summary], plan: float) -> list[str]:
    rows = []
    for s in summaries:
        if s.scenario != "null" or s.method.startswith("oracle"):
            continue
        rows.append(
            [
                s.method,
                str(s.runs),
                _rate(s.rolled_back, s.runs),
                _min(s.median_rollback),
                _pct(s.promote_rate),
                _pct(s.promoted_by / s.runs),
                _pct(s.stalled / s.runs),
                _min(s.median_promote),
            ]
        )
    out = [
        "### Identical canary (null)",
        "",
        "False rollback is the share of runs rolled back at any check of any stage "
        "(95 % Wilson interval in parentheses). Minutes count from the start of the rollout; "
        f"the plan's stages add up to {plan:.0f} min ({plan / 60:g} h).",
        "",
        *_table(
            [
                "method",
                "runs",
                "false rollback",
                "median min to false rollback",
                "promoted",
                f"promoted within {plan / 60:g} h",
                "stalled",
                "median min to promote",
            ],
            rows,
        ),
    ]
    oracle_rows = []
    for alt in SCENARIOS:
        if not alt.is_regression:
            continue
        cells = [alt.name]
        for ref in oc.REFERENCES:
            o = _by(summaries).get(("null", f"oracle SPRT vs {ref}: {alt.name}"))
            cells.append("—" if o is None else _rate(o.rolled_back, o.runs))
        oracle_rows.append(cells)
    out += [
        "The oracle has no regression to know about under the null, so the SPRT of every "
        "alternative ran on the identical canary, each at its full α = 0.05 (false rejections "
        "at the checks):",
        "",
        *_table(["alternative", "oracle vs stable", "oracle vs margin"], oracle_rows),
    ]
    return out


def _oracle_ratio(
    by: dict[tuple[str, str], oc.Summary], scenario: str, method: str, ref: str
) -> float:
    s, o = by.get((scenario, method)), by.get((scenario, ref))
    if s is None or o is None or o.median_rollback <= 0:
        return math.nan
    return s.median_rollback / o.median_rollback


def _regression_section(summaries: list[oc.Summary]) -> list[str]:
    by = _by(summaries)
    out = [
        "### Regressions",
        "",
        "Power is the share of runs rolled back; false promotion the share promoted to 100 %; "
        "stalled runs neither (a `prove` stage still undecided at twice its duration). Minutes "
        "to rollback count from the start of the rollout, over the runs that rolled back. "
        "'Right guardrail' is the share of rollbacks that named the regressed guardrail. The "
        "ratios divide a method's median minutes to rollback by the oracle's (both looking "
        "every 5 min).",
        "",
    ]
    for sc in SCENARIOS:
        if not sc.is_regression:
            continue
        rows = []
        for s in summaries:
            if s.scenario != sc.name:
                continue
            rows.append(
                [
                    s.method if s.method != oc.CANARY_STATS else f"**{s.method}**",
                    _rate(s.rolled_back, s.runs),
                    _pct(s.promote_rate),
                    _pct(s.stalled / s.runs),
                    _min(s.median_rollback),
                    _min(s.p90_rollback),
                    _pct(s.right_guardrail / s.rolled_back if s.rolled_back else math.nan),
                    _ratio(_oracle_ratio(by, sc.name, s.method, oc.ORACLE_STABLE)),
                    _ratio(_oracle_ratio(by, sc.name, s.method, oc.ORACLE_MARGIN)),
                    _ratio(_oracle_ratio(by, sc.name, s.method, oc.ORACLE_MARGIN_BUDGET)),
                ]
            )
        out += [
            f"#### `{sc.name}`: {sc.description}",
            "",
            *_table(
                [
                    "method",
                    "power",
                    "false promotion",
                    "stalled",
                    "median min to rollback",
                    "p90",
                    "right guardrail",
                    "÷ oracle vs stable",
                    "÷ oracle vs margin",
                    "÷ oracle vs margin at α/4",
                ],
                rows,
            ),
        ]
    return out


def _boundary_section(summaries: list[oc.Summary]) -> list[str]:
    out: list[str] = []
    for sc in SCENARIOS:
        if sc.kind != "boundary":
            continue
        rows = [
            [
                s.method if s.method != oc.CANARY_STATS else f"**{s.method}**",
                _rate(s.rolled_back, s.runs),
                _min(s.median_rollback),
                _pct(s.promote_rate),
                _pct(s.stalled / s.runs),
            ]
            for s in summaries
            if s.scenario == sc.name
        ]
        out += [
            f"### Canary exactly at a limit: `{sc.name}`",
            "",
            f"{sc.description}. Not one of the issue's scenarios: the identical canary sits "
            "far inside every limit, so it cannot show what repeated fixed-horizon looks do "
            "near one. Every rollback here is a false one; a canary at the limit is also "
            "not *proven* within it, so a `prove` stage may hold it until it stalls.",
            "",
            *_table(
                ["method", "false rollback", "median min to rollback", "promoted", "stalled"],
                rows,
            ),
        ]
    return out


def _targets(
    summaries: list[oc.Summary], plan: float, ms: list[perf.Measurement] | None
) -> list[str]:
    by = _by(summaries)
    rows = []
    null = by[("null", oc.CANARY_STATS)]
    rows.append(
        [
            f"false rollback of an identical canary ≤ {_pct(FALSE_ROLLBACK_MAX)}",
            f"{_rate(null.rolled_back, null.runs)}",
            _yes(null.rollback_rate <= FALSE_ROLLBACK_MAX),
        ]
    )
    for sc in SCENARIOS:
        if not sc.is_regression:
            continue
        s = by[(sc.name, oc.CANARY_STATS)]
        rows.append(
            [
                f"`{sc.name}`: power ≥ {_pct(POWER_MIN)}, false promotion ≤ "
                f"{_pct(FALSE_PROMOTION_MAX)}",
                f"power {_rate(s.rolled_back, s.runs)}, false promotion {_pct(s.promote_rate)}",
                _yes(s.rollback_rate >= POWER_MIN and s.promote_rate <= FALSE_PROMOTION_MAX),
            ]
        )
    for sc in SCENARIOS:
        if not sc.is_regression:
            continue
        r = _oracle_ratio(by, sc.name, oc.CANARY_STATS, oc.ORACLE_MARGIN_BUDGET)
        r_s = _oracle_ratio(by, sc.name, oc.CANARY_STATS, oc.ORACLE_STABLE)
        r_m = _oracle_ratio(by, sc.name, oc.CANARY_STATS, oc.ORACLE_MARGIN)
        s, o = by[(sc.name, oc.CANARY_STATS)], by[(sc.name, oc.ORACLE_MARGIN_BUDGET)]
        limit = TAIL_RATIO_MAX if sc.name == "tail" else ORACLE_RATIO_MAX
        rows.append(
            [
                f"`{sc.name}`: median min to rollback ≤ {limit}× the margin oracle at α/4",
                f"{_min(s.median_rollback)} vs {_min(o.median_rollback)} min = {_ratio(r)} "
                f"(oracle vs margin at α: {_ratio(r_m)}; oracle vs stable at α: {_ratio(r_s)})",
                _yes(r <= limit),
            ]
        )
    share = null.promoted_by / null.runs
    rows.append(
        [
            f"healthy canary promoted within {plan / 60:g} h in ≥ {_pct(PROMOTED_IN_TIME_MIN)} "
            "of runs",
            f"{_pct(share)} (median {_min(null.median_promote)} min)",
            _yes(share >= PROMOTED_IN_TIME_MIN),
        ]
    )
    if ms is not None:
        one = next(
            (m for m in ms if m.n_per_cohort == 1_000_000 and not (m.categorical or m.users)),
            None,
        )
        cat = next((m for m in ms if m.n_per_cohort == 1_000_000 and m.categorical), None)
        who = next((m for m in ms if m.n_per_cohort == 1_000_000 and m.users), None)
        rows.append(
            [
                f"`analyze` on 1M + 1M events ≤ {_ms(ANALYZE_1M_MAX)} (median)",
                "not measured"
                if one is None
                else f"median {_ms(one.median)}, best {_ms(one.minimum)}"
                + ("" if cat is None else f" (categorical cohort: median {_ms(cat.median)})"),
                "**not measured**" if one is None else _yes(one.median <= ANALYZE_1M_MAX),
            ]
        )
        rows.append(
            [
                f"`analyze` on 1M + 1M events with `user_id` on every row ≤ "
                f"{_ms(ANALYZE_USERS_1M_MAX)} (median)",
                "not measured"
                if who is None
                else f"median {_ms(who.median)}, best {_ms(who.minimum)}",
                "**not measured**" if who is None else _yes(who.median <= ANALYZE_USERS_1M_MAX),
            ]
        )
    return ["## Targets", "", *_table(["target", "measured", "verdict"], rows)]


def _perf_section(res: perf.PerformanceResult) -> list[str]:
    rows = []
    for m in res.measurements:
        rows.append(
            [
                f"{m.n_per_cohort:,}",
                "user_id" if m.users else "categorical" if m.categorical else "string",
                str(m.repeats),
                _ms(m.median),
                _ms(m.minimum),
                _ms(m.median - m.judge_median),
                _ms(m.judge_median),
                f"{1e9 * m.median / (2 * m.n_per_cohort):,.0f} ns",
                _mb(m.frame_bytes),
                _mb(m.peak_rss_increase),
                _mb(m.peak_traced),
                m.decision,
                f"{m.load:.1f}",
            ]
        )
    out = [
        "## 2. Performance of `analyze` on raw events",
        "",
        f"`canary_stats.analyze(events, policy, stage={perf.STAGE})` with the seed policy on a "
        "pandas DataFrame of raw events (`ts` UTC timestamps, `cohort` as pandas' default "
        "string dtype, `success` bool, `latency_ms`, `tokens`, `eval_score` float with 20 % "
        "NaN), the same number of events per cohort, built with numpy "
        "(`bench/performance.py`); one size is repeated with `cohort` as a pandas "
        "Categorical, which is what a dictionary-encoded source could hand over, and once "
        f"with a `user_id` on every row ({perf.USERS_PER_COHORT:,} users per cohort, each in "
        "one cohort, Zipf-like activity): user counts and design effects come from one more "
        "grouping by cohort and user. Each size "
        "runs in a fresh process. `analyze` is "
        "`summarize` (raw events → sufficient statistics) then `judge` (statistics → "
        "verdict); `judge` is timed on its own, interleaved with `analyze`, and the "
        "`summarize` column is the difference of the medians. Peak RSS is the resident "
        "memory above the level before a first, cold call (sampled every 2 ms; it sees every "
        "allocator); traced is tracemalloc's peak (Python objects and numpy buffers; skipped "
        "above 1M per cohort, where its own bookkeeping distorts the call). 'Load' is the "
        "1-minute load average after the size's runs. The verdict is `hold` because equal "
        "cohorts do not match the 10 % split planned for stage 1 (sample-ratio mismatch); "
        "every guardrail is still evaluated, so the cost is that of a full verdict.",
        "",
        *_table(
            [
                "events per cohort",
                "cohort / users",
                "runs",
                "median",
                "best",
                "summarize",
                "judge",
                "per event",
                "DataFrame",
                "peak RSS",
                "traced peak",
                "verdict",
                "load",
            ],
            rows,
        ),
    ]
    for n, why in res.failures.items():
        out += [f"- {n:,} per cohort could not be measured: {why}", ""]
    slope = perf.loglog_slope(res.measurements)
    out += [
        f"Log-log slope of median time against size from 100k per cohort up: **{slope:.2f}** "
        "(1 = linear).",
        "",
        f"Where the time goes at {res.profile_n:,} + {res.profile_n:,} string-cohort events "
        "(cProfile, top functions by own time).",
        "",
        *_table(
            ["function", "calls", "own time", "share"],
            (
                [f"`{r['function']}`", str(r["calls"]), _ms(r["tottime"]), _pct(r["share"])]
                for r in res.profile
            ),
        ),
    ]
    return out


def _setup_section(runs_null: int, runs_reg: int) -> list[str]:
    policy = seed_policy()
    plan = ", ".join(
        f"{100 * share:g}% for {d / 60:g} h" if d >= 60 else f"{100 * share:g}% for {d:g} min"
        for _, share, d in stage_plan(policy)
    )
    guard = ", ".join(f"`{k}: {v}`" for k, v in SEED_GUARDRAILS.items())
    return [
        "## 1. Operating characteristics",
        "",
        f"Seed policy (`Policy.from_dict` of the seed manifest's rollout section): stages {plan}, "
        f"then 100 %; guardrails {guard}; α = {policy.alpha:g} family-wise, "
        f"{policy.alpha_per_test():.5f} per guardrail over the rollout (evidence kept across "
        "stages); the last stage before 100 % "
        "is a `prove` stage. Traffic: `canary_stats.sources.synthetic.Workload()` defaults "
        "(200 tasks/min, success 0.985, lognormal latency with median 2.5 s and σ 0.5 so p95 "
        "≈ 5.7 s, lognormal tokens, beta eval scores with mean 0.93 on 80 % of tasks, a 24 h "
        "diurnal cycle of ±30 % that moves both cohorts). A check every 5 min, each stage "
        "compared over its own windows, its evidence multiplied onto the earlier stages'. "
        f"{runs_null} runs of the identical canary, {runs_reg} of each "
        "regression; seeds depend only on scenario and run.",
        "",
        "Methods:",
        "",
        "- **canary_stats**: `canary_stats.simulate.simulate_rollout(policy, workload, "
        "regression, check_every=5 min, rng=seed)`: the judge's decision rule at every check.",
        "- **point estimates**: the seed's rule: roll back as soon as a point estimate breaks "
        "a guardrail (canary success < 0.97, canary p95 > 8000 ms, canary mean tokens > 1.15 "
        "× stable, canary mean eval < 0.90), promote at the stage's end. '(min 1)' is the "
        "literal rule; '(min 30)' waits for the 30 observations per cohort that canary_stats "
        "requires (`min_samples`).",
        "- **Kayenta Mann-Whitney (98%)**: per check, `scipy.stats.mannwhitneyu` (two-sided, "
        "asymptotic) on latency, tokens and eval score, and a pooled two-proportion z-test on "
        "success; roll back when any p < 0.02 with the canary on the harmful side. No margins. "
        "Min 30 per cohort.",
        "- **naive repeated z**: a fixed-horizon one-sided z-test per guardrail at α = 0.05/4, "
        "re-run at every check (success vs 0.97 with the null variance; p95 as the share above "
        "8000 ms vs 0.05; tokens as `mean_c − 1.15·mean_s` over its standard error; eval vs "
        "0.90). Min 30 per cohort.",
        "- **oracle SPRT vs stable**: Wald's open-ended SPRT (reject at log(1/α), α = 0.05, "
        "β → 0) on every canary observation of the regressed metric, with the exact "
        "likelihood ratio of the true canary distribution against the stable one (drift "
        "included). It knows the regression and which metric it hits, tests one metric at "
        "full α, and keeps its statistic across stages; it is the lower bound the issue asks "
        "for. '(every task)' looks after each observation instead of every 5 min.",
        "- **oracle SPRT vs margin**: the same oracle against the guardrail's null instead of "
        "the stable distribution: the growth-optimal (Kelly) bet on the true canary "
        "distribution against every distribution that still meets the guardrail (failure "
        "rate ≤ 0.03; P(latency > 8000 ms) ≤ 0.05, nonparametric; mean tokens ≤ 1.15 × the "
        "known stable mean, nonparametric for non-negative values; mean eval ≥ 0.90, "
        "nonparametric on [0, 1]). Its growth rate is the KL-inf of the guardrail's null, so "
        "it is Lai's lower bound for a test of the guardrail as written (with stable known); "
        "a valid test cannot detect a canary just past the margin as fast as the oracle vs "
        "stable, which is told what 'no regression' looks like.",
        f"- **{oc.ORACLE_MARGIN_BUDGET}**: the margin oracle held to canary_stats' "
        "error budget for one guardrail over the whole rollout (α/4: four guardrails, "
        "evidence kept across stages). Any test that bounds false rollback over all four "
        "guardrails at α pays at least this much for one of them; the targets compare "
        "canary_stats with it (≤ 1.25×, the tail-only change ≤ 1.5×).",
        "",
        "Baselines and canary_stats see the same tasks: the baselines regenerate each stage "
        "with `generate_tasks` from the same seed, horizon and diurnal phase as "
        "`simulate_rollout` (common random numbers for as long as both promote at the same "
        "checks). Baselines have no `prove` requirement: they promote at every stage's end.",
        "",
    ]


def render(
    records: list[oc.Record],
    runs_null: int,
    runs_reg: int,
    perf_res: perf.PerformanceResult | None,
    *,
    load_before: tuple[float, float, float],
    seconds: float,
    quick: bool,
) -> str:
    """The generated part of ``docs/benchmarks.md``."""
    plan = sum(d for _, _, d in stage_plan(seed_policy()))
    summaries = oc.summarise(records, plan)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "",
        "# Benchmarks",
        "",
        f"Generated by `python -m bench.run_all{' --quick' if quick else ''}` on {when} in "
        f"{seconds / 60:.1f} min. Do not edit between the markers; the reading of the results "
        "is after them.",
        "",
        "## How to rerun",
        "",
        "```sh",
        "make bench                                  # every benchmark (~1.5 h on 2 cores), "
        "rewrites this file",
        ".venv/bin/python -m bench.run_all           # sections 1-2 only (~10-15 min)",
        ".venv/bin/python -m bench.run_all --quick   # smoke test: few runs, small sizes, "
        "printed only",
        ".venv/bin/python -m bench.realistic         # section 6 only (~1 h)",
        "```",
        "",
        "Options: `--jobs N` (processes for the simulations, default all CPUs), `--skip-perf`, "
        "`--skip-oc`, `--output PATH`. `make bench` then runs `bench.data_layer`, "
        "`bench.service`, `bench.rollout` and `bench.realistic`, each rewriting its own "
        "block of this file.",
        "",
        *_machine(load_before),
    ]
    if records:
        lines += _targets(summaries, plan, perf_res.measurements if perf_res else None)
        lines += _setup_section(runs_null, runs_reg)
        lines += _null_section(summaries, plan)
        lines += _regression_section(summaries)
        lines += _boundary_section(summaries)
    if perf_res is not None:
        lines += _perf_section(perf_res)
    lines += [END, ""]
    return "\n".join(lines)


def write(doc: Path, generated: str) -> None:
    """Replace the generated block of ``doc``, keeping the text after it."""
    tail = "\n## Reading of the results\n\n(To be written after the run.)\n"
    if doc.exists():
        old = doc.read_text()
        if END in old:
            tail = old.split(END, 1)[1].lstrip("\n")
            tail = "\n" + tail if tail else ""
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(generated.rstrip("\n") + "\n" + tail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    p.add_argument("--quick", action="store_true", help="few runs and small sizes; print only")
    p.add_argument("--jobs", type=int, default=None, help="processes for the simulations")
    p.add_argument("--skip-perf", action="store_true", help="no performance benchmark")
    p.add_argument("--skip-oc", action="store_true", help="no operating characteristics")
    p.add_argument("--output", type=Path, default=None, help=f"markdown file (default {DOC})")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    started = time.perf_counter()
    records: list[oc.Record] = []
    if not args.skip_oc:
        print("operating characteristics ...", file=sys.stderr, flush=True)
        records = oc.run(cfg.runs_null, cfg.runs_regression, jobs=args.jobs)
    perf_res = None
    if not args.skip_perf:
        print("performance ...", file=sys.stderr, flush=True)
        perf_res = perf.run(list(cfg.sizes))
    text = render(
        records,
        cfg.runs_null,
        cfg.runs_regression,
        perf_res,
        load_before=load_before,
        seconds=time.perf_counter() - started,
        quick=args.quick,
    )
    output = args.output or (None if args.quick else DOC)
    if output is None:
        print(text)
    else:
        write(output, text)
        print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
