"""Operating characteristics of canary_stats' decision rule against the baselines.

For every scenario and seed, canary_stats runs through
`canary_stats.simulate.simulate_rollout` and every baseline watches the same
synthetic traffic (same workload, stage plan, checks and random stream), so the
methods differ only in their decision rules.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from canary_stats.simulate import simulate_rollout
from canary_stats.sources.synthetic import Workload

from .baselines import KayentaRule, Monitor, NaiveZRule, OracleSPRT, PointEstimateRule
from .scenarios import CHECK_EVERY, SCENARIOS, Scenario, generate_stage, seed_policy, stage_plan

__all__ = [
    "CANARY_STATS",
    "ORACLE_MARGIN",
    "ORACLE_MARGIN_BUDGET",
    "ORACLE_STABLE",
    "Record",
    "Summary",
    "run",
    "summarise",
]

CANARY_STATS = "canary_stats"
ORACLE_STABLE = "oracle SPRT vs stable"
ORACLE_MARGIN = "oracle SPRT vs margin"
# Held to canary_stats' error budget for one guardrail over the whole rollout (α/4:
# four guardrails, evidence kept across stages): issue 14's yardstick.
ORACLE_MARGIN_BUDGET = f"oracle SPRT vs margin at α={seed_policy().alpha_per_test():.4g}"
REFERENCES: tuple[Literal["stable", "margin"], ...] = ("stable", "margin")


@dataclass(frozen=True, slots=True)
class Record:
    """How one method's rollout ended in one simulated run."""

    scenario: str
    method: str
    seed: int
    outcome: str  # "rolled_back", "promoted" or "stalled"
    minutes: float  # since the rollout began
    guardrails: tuple[str, ...] = ()


def _monitors(scenario: Scenario, workload: Workload) -> list[Monitor]:
    monitors: list[Monitor] = [
        PointEstimateRule(min_samples=1),
        PointEstimateRule(min_samples=30),
        KayentaRule(),
        NaiveZRule(),
    ]
    if scenario.kind == "boundary":
        return monitors  # no regression for an oracle to know about, nor a null to check
    if scenario.is_regression:
        for ref in REFERENCES:
            for continuous in (False, True):
                monitors.append(
                    OracleSPRT(scenario, workload, reference=ref, continuous=continuous)
                )
        # The same oracle held to canary_stats' error budget for one guardrail over the
        # rollout, to separate the price of that budget from the price of the method.
        oracle = OracleSPRT(
            scenario, workload, reference="margin", alpha=seed_policy().alpha_per_test()
        )
        oracle.name = ORACLE_MARGIN_BUDGET
        monitors.append(oracle)
        return monitors
    # Under the null the oracle has no regression to know about: run the SPRT of every
    # alternative, each at its full alpha, to show that none rejects more than alpha.
    for alt in SCENARIOS:
        if not alt.is_regression:
            continue
        for ref in REFERENCES:
            oracle = OracleSPRT(alt, workload, reference=ref)
            oracle.name = f"{oracle.name}: {alt.name}"
            monitors.append(oracle)
    return monitors


def _method_names(scenario: Scenario) -> list[str]:
    return [m.name for m in _monitors(scenario, Workload())]


def _baselines(scenario: Scenario, workload: Workload, seed: int) -> list[Record]:
    """Walk the stages with every baseline on one stream of traffic."""
    policy = seed_policy()
    active = _monitors(scenario, workload)
    gen = np.random.default_rng(seed)
    records: list[Record] = []
    total = 0.0
    for stage, share, duration in stage_plan(policy):
        traffic = generate_stage(
            workload,
            scenario.regression,
            stage=stage,
            share=share,
            duration=duration,
            start=total,
            gen=gen,
        )
        still = []
        for m in active:
            alarm = m.watch(traffic)
            if alarm is None:
                still.append(m)
            else:
                minutes = total + alarm.minute
                records.append(
                    Record(scenario.name, m.name, seed, "rolled_back", minutes, alarm.guardrails)
                )
        active = still
        if not active:
            break
        total += duration  # every baseline promotes at the stage's last check
    records += [Record(scenario.name, m.name, seed, "promoted", total) for m in active]
    return records


def _one_run(args: tuple[str, int]) -> list[Record]:
    name, seed = args
    scenario = next(s for s in SCENARIOS if s.name == name)
    workload = Workload()
    out = simulate_rollout(
        seed_policy(), workload, scenario.regression, check_every=CHECK_EVERY, rng=seed
    )
    ours = Record(name, CANARY_STATS, seed, out.outcome, out.minutes, tuple(out.failed))
    return [ours, *_baselines(scenario, workload, seed)]


def _seed(scenario_index: int, run: int, base: int) -> int:
    return int(np.random.SeedSequence([base, scenario_index, run]).generate_state(1)[0])


def run(
    runs_null: int, runs_regression: int, *, jobs: int | None = None, base_seed: int = 2026
) -> list[Record]:
    """Simulate every scenario; ``runs_null`` identical-canary runs, ``runs_regression`` others.

    Runs are spread over ``jobs`` processes (default: all CPUs); seeds depend only
    on the scenario and run index, so results do not depend on ``jobs``.
    """
    work = [
        (s.name, _seed(i, r, base_seed))
        for i, s in enumerate(SCENARIOS)
        for r in range(runs_null if s.is_null else runs_regression)
    ]
    jobs = jobs or os.cpu_count() or 1
    records: list[Record] = []
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for i, batch in enumerate(pool.map(_one_run, work, chunksize=4), start=1):
            records += batch
            if i % 50 == 0 or i == len(work):
                elapsed = time.perf_counter() - started
                print(f"  {i}/{len(work)} runs, {elapsed:.0f} s", file=sys.stderr, flush=True)
    return records


# -- summaries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """One method in one scenario, over all runs."""

    scenario: str
    method: str
    runs: int
    rolled_back: int
    promoted: int
    stalled: int
    promoted_by: int  # promoted within the plan's total duration
    median_rollback: float  # minutes since the rollout began; NaN without rollbacks
    p90_rollback: float
    median_promote: float
    right_guardrail: int  # rollbacks naming the regressed guardrail

    @property
    def rollback_rate(self) -> float:
        return self.rolled_back / self.runs

    @property
    def promote_rate(self) -> float:
        return self.promoted / self.runs


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _median(x: Sequence[float]) -> float:
    return float(np.median(x)) if len(x) else math.nan


def summarise(records: Iterable[Record], plan_minutes: float) -> list[Summary]:
    """Aggregate records per scenario and method, in first-seen order."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.scenario, r.method), []).append(r)
    guardrail = {s.name: s.guardrail for s in SCENARIOS}
    # Tables list the methods in a fixed order: canary_stats, the baselines, the oracles.
    scenario_rank = {s.name: i for i, s in enumerate(SCENARIOS)}
    method_rank = {
        s.name: {m: i for i, m in enumerate([CANARY_STATS, *_method_names(s)])} for s in SCENARIOS
    }
    out = []
    for (scenario, method), rs in groups.items():
        back = [r for r in rs if r.outcome == "rolled_back"]
        prom = [r for r in rs if r.outcome == "promoted"]
        back_min = [r.minutes for r in back]
        out.append(
            Summary(
                scenario=scenario,
                method=method,
                runs=len(rs),
                rolled_back=len(back),
                promoted=len(prom),
                stalled=sum(r.outcome == "stalled" for r in rs),
                promoted_by=sum(r.minutes <= plan_minutes + 1e-9 for r in prom),
                median_rollback=_median(back_min),
                p90_rollback=float(np.percentile(back_min, 90)) if back_min else math.nan,
                median_promote=_median([r.minutes for r in prom]),
                right_guardrail=sum(guardrail[scenario] in r.guardrails for r in back),
            )
        )
    out.sort(key=lambda s: (scenario_rank[s.scenario], method_rank[s.scenario].get(s.method, 99)))
    return out
