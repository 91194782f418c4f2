# %% [markdown]
# # Threshold tuning: operating characteristics by simulation
#
# Before a rollout plan goes into a release manifest, simulate it. For a few candidate plans
# (margins, α, stage durations and traffic), this notebook runs many staged rollouts on
# synthetic traffic with `canary_stats.simulate.simulate_rollout` (the decision rule of
# `analyze` at every check, as the judge is polled in production) and measures
#
# * the **false rollback rate**: how often a canary identical to stable is rolled back
#   (the policy's `alpha` bounds it over all guardrails, stages and checks);
# * the **power**: how often a real regression is rolled back, per regression;
# * the **time to decision**: minutes from the start of the rollout to the promotion of a
#   healthy canary, or to the rollback of a regressed one.
#
# Every knob is in the parameters cell below; the default run is small (see the end for the
# Monte-Carlo error and how to scale it up).

# %%
import math
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import timedelta
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from scipy import stats
from tqdm.auto import tqdm

import canary_stats as cs
from canary_stats.simulate import RolloutOutcome, simulate_rollout
from canary_stats.sources.synthetic import Regression, Workload

# %% [markdown]
# ## Parameters
#
# A plan is a set of changes to the seed manifest's rollout section: margins (guardrail
# limits), `alpha`, stage durations and stage traffic shares, e.g.
# `"traffic 5 / 25 %": {"stages": [{"traffic": 1, "duration": "30m"}, {"traffic": 5,
# "duration": "2h"}, {"traffic": 25, "duration": "6h"}, {"traffic": 100}]}`.
# `TASKS_PER_MINUTE` is the service's total traffic; the canaries are
# `canary_stats.sources.synthetic.Regression`s (`success_drop`, `latency_factor`,
# `tail_share` and `tail_factor`, `token_factor`, `eval_drop`).

# %%
SEED = 2026  # one seed for the whole study: the same runs every time
RUNS = 40  # simulated rollouts per plan and canary
JOBS = 2  # worker processes (1: run in this process)
TASKS_PER_MINUTE = 200.0  # agent tasks per minute, both cohorts together
CHECK_EVERY = timedelta(minutes=5)  # how often the judge is polled
MAX_HOLD = 0.5  # a stage still holding after (1 + MAX_HOLD) × its duration: stalled

TARGET_FALSE_ROLLBACK = 0.05  # the recommendation's bounds: at most this many false rollbacks,
TARGET_POWER = 0.90  # at least this share of each regression rolled back,
TARGET_PROMOTED = 0.90  # and at least this share of identical canaries promoted (not stalled)

# Candidate plans: changes to the seed manifest's `spec.rollout` section. Guardrails given
# here replace the seed's guardrail of the same name; other keys replace the seed's value.
PLANS: dict[str, dict[str, Any]] = {
    "seed manifest": {},
    "α = 0.10": {"alpha": 0.10},
    "success ≥ 0.975": {"guardrails": {"task_success_rate": {"min": 0.975}}},
    "stages ½ as long": {
        "stages": [
            {"traffic": 1, "duration": "15m"},
            {"traffic": 10, "duration": "1h"},
            {"traffic": 50, "duration": "3h"},
            {"traffic": 100},
        ]
    },
}

# Canaries to judge: None is a canary identical to stable; the others break one seed limit.
CANARIES: dict[str, Regression | None] = {
    "identical": None,
    "success −3 pts": Regression(success_drop=0.03),  # 0.985 → 0.955; limit 0.97
    "latency ×1.6": Regression(latency_factor=1.6),  # p95 ≈ 5.7 s → 9.1 s; limit 8 s
}

# %% [markdown]
# ## The plans

# %%
ROOT = Path(cs.__file__).resolve().parent.parent  # the checkout (editable install)
MANIFEST = ROOT / "examples" / "research-agent.manifest.yaml"
cs.Policy.from_manifest(MANIFEST)  # validates the whole manifest, not only its rollout
BASE = yaml.safe_load(MANIFEST.read_text())["spec"]["rollout"]


def make_policy(changes: dict[str, Any]) -> cs.Policy:
    rollout = {**BASE, **changes}
    rollout["guardrails"] = {**BASE["guardrails"], **changes.get("guardrails", {})}
    return cs.Policy.from_dict(rollout)


def planned_minutes(policy: cs.Policy) -> float:
    return sum(
        (policy.stages[i].duration or timedelta(0)).total_seconds() / 60
        for i in policy.analysed_stages
    )


policies = {name: make_policy(changes) for name, changes in PLANS.items()}
pd.DataFrame(
    {
        name: {
            "alpha": p.alpha,
            "stages (canary % for minutes)": ", ".join(
                f"{s.traffic:g}% for {s.duration.total_seconds() / 60:g}"
                if s.duration
                else f"{s.traffic:g}%"
                for s in p.stages
            ),
            "planned minutes": planned_minutes(p),
            **{g.name: g.describe() for g in p.guardrails},
        }
        for name, p in policies.items()
    }
).transpose()

# %% [markdown]
# ## Simulate
#
# Run `i` uses the same seed under every plan and canary (common random numbers), so
# differences between plans are not blurred by different traffic. Results do not depend on
# `JOBS` or on the order in which the workers finish.

# %%
workload = Workload(tasks_per_minute=TASKS_PER_MINUTE)
seeds = np.random.default_rng(SEED).integers(0, 2**32, size=RUNS)
keys = [(plan, canary, run) for plan in PLANS for canary in CANARIES for run in range(RUNS)]


def simulate_all() -> Iterator[tuple[tuple[str, str, int], RolloutOutcome]]:
    """Every (plan, canary, run) with its outcome, as the runs finish."""
    if JOBS == 1:  # in this process: plain tracebacks, and runnable as a script
        for plan, canary, run in keys:
            out = simulate_rollout(
                policies[plan],
                workload,
                CANARIES[canary],
                check_every=CHECK_EVERY,
                max_hold=MAX_HOLD,
                rng=int(seeds[run]),
            )
            yield (plan, canary, run), out
        return
    # "spawn" starts clean workers: forking a running Jupyter kernel is not safe.
    with ProcessPoolExecutor(JOBS, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(
                simulate_rollout,
                policies[plan],
                workload,
                CANARIES[canary],
                check_every=CHECK_EVERY,
                max_hold=MAX_HOLD,
                rng=int(seeds[run]),
            ): (plan, canary, run)
            for plan, canary, run in keys
        }
        for future in as_completed(futures):
            yield futures[future], future.result()


rows = [
    {
        "plan": plan,
        "canary": canary,
        "run": run,
        "outcome": out.outcome,
        "minutes": out.minutes,
        "stage": out.stage,
        "failed": ", ".join(out.failed),
    }
    for (plan, canary, run), out in tqdm(simulate_all(), total=len(keys), desc="rollouts")
]
results = pd.DataFrame(rows)
# Categories keep the parameters' order in every table and plot.
results["plan"] = pd.Categorical(results["plan"], categories=list(PLANS))
results["canary"] = pd.Categorical(results["canary"], categories=list(CANARIES))
results = results.sort_values(["plan", "canary", "run"], ignore_index=True)
results.groupby(["plan", "canary"], observed=True)["outcome"].value_counts().unstack(fill_value=0)

# %% [markdown]
# ## Operating characteristics
#
# Rates come with 95 % Wilson intervals (the Monte-Carlo error of `RUNS` runs).

# %%


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


summary_rows = []
for (plan, canary), g in results.groupby(["plan", "canary"], observed=True):
    # A healthy canary should be promoted; a regressed one rolled back.
    decided = "promoted" if CANARIES[str(canary)] is None else "rolled_back"
    back = int((g["outcome"] == "rolled_back").sum())
    low, high = wilson(back, len(g))
    summary_rows.append(
        {
            "plan": plan,
            "canary": canary,
            "runs": len(g),
            "rollback rate": back / len(g),
            "ci low": low,
            "ci high": high,
            "promoted": float((g["outcome"] == "promoted").mean()),
            "stalled": float((g["outcome"] == "stalled").mean()),
            "median minutes to decision": g.loc[g["outcome"] == decided, "minutes"].median(),
        }
    )
summary = pd.DataFrame(summary_rows)

fig, axes = plt.subplots(1, len(CANARIES), figsize=(4 * len(CANARIES), 3.8), sharey=True)
for ax, canary in zip(np.atleast_1d(axes), CANARIES, strict=True):
    s = summary[summary["canary"] == canary]
    y = np.arange(len(s))
    err = [s["rollback rate"] - s["ci low"], s["ci high"] - s["rollback rate"]]
    ax.errorbar(s["rollback rate"], y, xerr=err, fmt="o", capsize=3)
    healthy = CANARIES[canary] is None
    target = TARGET_FALSE_ROLLBACK if healthy else TARGET_POWER
    ax.axvline(target, ls="--", color="tab:red", label=f"target {target:g}")
    ax.set_yticks(y, s["plan"])
    ax.invert_yaxis()  # the first plan on top
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(f"{canary}: {'false rollback rate' if healthy else 'power'}", fontsize=10)
    ax.set_xlabel("share of runs rolled back")
    ax.legend(fontsize=8, loc="center right")
fig.tight_layout()
plt.show()

# %% [markdown]
# Time to decision: the share of runs decided by each minute since the rollout began
# (promotion for the identical canary, rollback for the regressions). The dotted lines mark
# each plan's planned duration, the earliest a healthy canary can be promoted.

# %%
fig, axes = plt.subplots(1, len(CANARIES), figsize=(4 * len(CANARIES), 3.8), sharey=True)
for ax, canary in zip(np.atleast_1d(axes), CANARIES, strict=True):
    decided = "promoted" if CANARIES[canary] is None else "rolled_back"
    for i, plan in enumerate(PLANS):
        g = results[(results["plan"] == plan) & (results["canary"] == canary)]
        minutes = np.sort(g.loc[g["outcome"] == decided, "minutes"].to_numpy())
        share = np.arange(1, minutes.size + 1) / len(g)
        # Narrower lines for later plans keep coinciding curves visible.
        style = {"color": f"C{i}", "lw": max(3.0 - 0.6 * i, 1.0), "alpha": 0.85}
        ax.step(np.r_[0.0, minutes], np.r_[0.0, share], where="post", label=plan, **style)
        if decided == "promoted":
            ax.axvline(planned_minutes(policies[plan]), ls=":", color=f"C{i}")
    ax.set_title(f"{canary}: share {decided.replace('_', ' ')}", fontsize=10)
    ax.set_xlabel("minutes since the rollout began")
    ax.set_ylim(0, 1.02)
np.atleast_1d(axes)[0].legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Recommendation
#
# A plan qualifies when its false rollback rate is at most `TARGET_FALSE_ROLLBACK`, its power
# at least `TARGET_POWER` for every regression and at least `TARGET_PROMOTED` of the identical
# canaries are promoted (point estimates); among those, the one that promotes a healthy canary
# soonest is recommended. Check the intervals before you trust a close call.
#
# A *stalled* rollout is one whose stage kept holding past `(1 + MAX_HOLD)` times its duration:
# neither harm proven nor the stage's requirement met (too few samples in a short,
# low-traffic stage, or a prove stage that cannot yet show every guardrail within its margin).
# It is not a promotion, but it needs a person, so it counts against a plan.

# %%
table = pd.DataFrame(index=pd.Index(list(PLANS), name="plan"))
for canary in CANARIES:
    s = summary[summary["canary"] == canary].set_index("plan")
    if CANARIES[canary] is None:
        table["false rollback %"] = 100 * s["rollback rate"]
        table["false rollback 95% CI high %"] = 100 * s["ci high"]
        table["healthy promoted %"] = 100 * s["promoted"]
        table["min to promote (median)"] = s["median minutes to decision"]
    else:
        table[f"power % {canary}"] = 100 * s["rollback rate"]
        table[f"min to rollback {canary} (median)"] = s["median minutes to decision"]
power = table.filter(like="power %")
table["meets targets"] = (
    (table["false rollback %"] <= 100 * TARGET_FALSE_ROLLBACK)
    & (table["healthy promoted %"] >= 100 * TARGET_PROMOTED)
    & (power >= 100 * TARGET_POWER).all(axis=1)
)
ranked = table[table["meets targets"]].sort_values(["min to promote (median)", "false rollback %"])
table["recommended"] = table.index == (ranked.index[0] if len(ranked) else None)
if len(ranked):
    print(f"recommended: {ranked.index[0]}")
else:
    print("recommended: none of the plans meets the targets; widen the search")
table.round(1)

# %% [markdown]
# ## Monte-Carlo error and scaling up
#
# Each rate above is a binomial proportion over `RUNS` runs, so its standard error is
# `sqrt(p (1 - p) / RUNS)`. With the default 40 runs that is up to ±7.9 points (at p = 0.5),
# ±3.4 points at p = 0.05 or 0.95, and **0 false rollbacks in 40 runs still allows a true rate
# of up to 8.8 %** (upper end of the 95 % Wilson interval): the default run can catch a badly
# tuned plan, not certify α = 0.05. To pin a rate near 5 % down to ±1 point (95 % interval)
# you need about 1.96² · 0.05 · 0.95 / 0.01² ≈ 1,800 runs of the identical canary; a power
# near 90 % to ±3 points needs about 400 runs per regression.
#
# To scale up, raise `RUNS` (and add plans or canaries) in the parameters cell and set `JOBS`
# to your core count. One simulated rollout of the seed plan costs about 0.1–0.2 s of one
# core at 200 tasks per minute, roughly in proportion to the planned duration and the traffic,
# so 1,000 runs per plan and canary for this grid take about 20–40 core-minutes. Keep `SEED`
# fixed while comparing plans, and change it to check that a conclusion is not a fluke.
# The cell below prints the error of the current run.

# %%
for p in (TARGET_FALSE_ROLLBACK, TARGET_POWER):
    se = math.sqrt(p * (1 - p) / RUNS)
    print(f"standard error of a rate near {p:g} over {RUNS} runs: ±{se:.3f}")
print(f"0 of {RUNS} runs: the true rate may still be up to {wilson(0, RUNS)[1]:.3f}")
