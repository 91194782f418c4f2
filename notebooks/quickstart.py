# %% [markdown]
# # Quickstart: judging a canary with `canary_stats`
#
# The bundled sample (`data/sample_events.parquet`) holds two hours of synthetic agent tasks
# at a 10 % canary share, in which the canary fails 3 points more tasks than stable. This
# notebook
#
# 1. loads the sample and the seed release manifest's rollout policy,
# 2. asks `canary_stats.analyze` for a verdict on the whole stage, and
# 3. replays the stage as the judge saw it: a check every 5 minutes on the data so far,
#    with each guardrail's estimate and anytime-valid interval against its limit.
#
# Only the public API is used; nothing is written to disk.

# %%
from datetime import timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import canary_stats as cs

# The editable install (`make`) puts the package in the checkout, next to data/ and examples/.
ROOT = Path(cs.__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_events.parquet"
MANIFEST = ROOT / "examples" / "research-agent.manifest.yaml"
STAGE = 1  # the seed plan's 10 % stage (2 h), which the sample was made for
CHECK_EVERY = timedelta(minutes=5)

# %% [markdown]
# ## The data and the policy
#
# One row per finished task (`ts`, `cohort`, `success`, `latency_ms`, `tokens`, `eval_score`).
# `load_events` checks the schema and the types; the per-cohort means below are only a first
# look, the judge's statistics come next.

# %%
events = cs.load_events(SAMPLE)
print(f"{len(events):,} tasks from {events['ts'].min()} to {events['ts'].max()}")
events.groupby("cohort").agg(
    tasks=("success", "size"),
    success_rate=("success", "mean"),
    p95_latency_ms=("latency_ms", lambda x: x.quantile(0.95)),
    tokens_per_task=("tokens", "mean"),
    eval_score=("eval_score", "mean"),
)

# %%
policy = cs.Policy.from_manifest(MANIFEST)
print(
    f"stage {STAGE}: {policy.stages[STAGE].traffic:g} % canary, mode {policy.stage_mode(STAGE)}; "
    f"each guardrail fails at α = {policy.alpha_per_test():.4g} "
    f"(α = {policy.alpha} over {len(policy.guardrails)} guardrails × "
    f"{len(policy.analysed_stages)} stages)"
)
pd.DataFrame(
    [(g.name, g.describe(), g.rule, g.value) for g in policy.guardrails],
    columns=["guardrail", "meaning", "rule", "limit"],
)

# %% [markdown]
# ## The verdict on the whole stage

# %%
verdict = cs.analyze(events, policy, stage=STAGE)
print(f"decision: {verdict.decision}")
print(verdict.reason)
pd.DataFrame(
    {
        name: {
            "status": m.status,
            "estimate": m.estimate,
            "low": m.low,
            "high": m.high,
            "limit": m.margin,
            "n canary": int(m.n_canary),
            "n stable": int(m.n_stable),
        }
        for name, m in verdict.metrics.items()
    }
).transpose()

# %% [markdown]
# ## The stage as the judge saw it
#
# In production the judge is polled every few minutes and each check looks at all data since
# the stage began. The intervals are anytime-valid, so looking this often does not inflate
# the false-rollback rate. Here each check re-runs `analyze` on the events up to that time,
# with `elapsed` set to the time in stage. A guardrail fails once its interval lies entirely
# on the wrong side of its limit (dashed); the first failing check is the rollback.

# %%
start = events["ts"].min().floor("min")  # the sample's stage began on this minute
stage_minutes = (events["ts"].max() - start).total_seconds() / 60
step = CHECK_EVERY.total_seconds() / 60
rows = []
for minute in np.arange(step, stage_minutes + step, step):
    so_far = events[events["ts"] < start + pd.Timedelta(minutes=float(minute))]
    check = cs.analyze(so_far, policy, stage=STAGE, elapsed=timedelta(minutes=float(minute)))
    for name, m in check.metrics.items():
        rows.append(
            {
                "minute": minute,
                "decision": check.decision,
                "guardrail": name,
                "status": m.status,
                "estimate": m.estimate,
                "low": m.low,
                "high": m.high,
                "limit": m.margin,
                "contrast": m.contrast,
            }
        )
checks = pd.DataFrame(rows)
decisions = checks.drop_duplicates("minute").set_index("minute")["decision"]
first_rollback = decisions.index[decisions == "rollback"].min()
print(decisions.value_counts().to_string())
print(f"first rollback at minute {first_rollback:g}")

# %%
COLOURS = {"pass": "tab:green", "inconclusive": "tab:grey", "fail": "tab:red"}
YLABEL = {"absolute": "canary value", "ratio": "canary / stable", "difference": "canary − stable"}
names = list(policy.guardrails)
fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(11, 7), sharex=True, squeeze=False)
for ax, g in zip(axes.flat, names, strict=False):
    one = checks[checks["guardrail"] == g.name]
    # Early one-sided intervals may be unbounded on the harmless side: draw what is finite.
    low = one["low"].where(np.isfinite(one["low"]))
    high = one["high"].where(np.isfinite(one["high"]))
    ax.fill_between(one["minute"], low, high, alpha=0.25, label="anytime-valid interval")
    ax.plot(one["minute"], one["estimate"], color="black", lw=1, label="estimate")
    ax.scatter(one["minute"], one["estimate"], c=one["status"].map(COLOURS), s=18, zorder=3)
    ax.axhline(one["limit"].iloc[0], ls="--", color="tab:red", label="limit")
    if pd.notna(first_rollback):
        ax.axvline(first_rollback, color="tab:red", lw=0.8, alpha=0.5, label="first rollback")
    ax.set_title(f"{g.name}\n{g.describe()}", fontsize=10)
    ax.set_ylabel(YLABEL[one["contrast"].iloc[0]])
for ax in axes[-1]:
    ax.set_xlabel("minutes in stage")
for ax in list(axes.flat)[len(names) :]:
    ax.set_visible(False)
axes.flat[0].legend(fontsize=8, loc="lower left")
fig.suptitle(
    f"Stage {STAGE} ({policy.stages[STAGE].traffic:g} % canary): a check every {step:g} min; "
    "points coloured pass / inconclusive / fail",
    fontsize=11,
)
fig.tight_layout()
plt.show()

# %% [markdown]
# Reading the panels: the first check at which the success-rate interval lies wholly below 0.97
# is the rollback (the thin red line); a real rollout would stop there. The other guardrails
# stay inside their limits: green once proven within them, grey while undecided.
# `verdict.to_dict()` is the JSON the CLI and the webhook service return:

# %%
print({k: v for k, v in verdict.to_dict().items() if k != "metrics"})
