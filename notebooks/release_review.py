# %% [markdown]
# # Release review: one rollout, from its verdicts to its postmortem
#
# Everything the store knows about one release's rollout, for the release owner or the lead who
# wants more than the weekly report's line about it:
#
# 1. **the timeline of verdicts**: every check the judge made, per guardrail, with the estimate,
#    its anytime-valid interval and the limit, the stage boundaries and the decision;
# 2. **effect sizes**: canary vs stable over the last stage the canary was judged in, from the
#    raw events, with bootstrap intervals, side by side with the weekly report's numbers;
# 3. **the evidence behind a rollback**: the postmortem, and the failing guardrail's interval
#    check by check until it crossed the limit.
#
# By default it builds the demo's store (`canary-stats demo`: a prompt refactor that is
# promoted, then a model upgrade that is rolled back) in a temporary directory and reviews the
# rolled-back release. The store is only read; nothing is written outside that directory.

# %%
import json
import math
import shutil
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from scipy import stats

import canary_stats as cs
from canary_stats.demo import run_demo
from canary_stats.report import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, IsoWeek, build_report
from canary_stats.rollout import rollout_id
from canary_stats.stats import BootstrapResult, mean_contrast_bootstrap, quantile_contrast_bootstrap
from canary_stats.store import Store

# %% [markdown]
# ## Parameters
#
# `STORE` is the path of your own store (`None`: build the demo's, which takes about 35 s).
# DuckDB lets only one process hold a file read-write, so review a copy, or the file of a
# stopped service. `NAME` and `VERSION` pick the release (the demo's other rollout,
# `"2026.11.23-prompt"`, was promoted); `SEED` seeds the bootstrap: the same seed gives the
# same intervals.

# %%
STORE: str | None = None
NAME = "research-agent"
VERSION = "2026.11.24-model"
SEED = 0

# %% [markdown]
# ## The rollout
#
# The executor writes each transition of a rollout (`started`, `stage_started`, `promoted`,
# `rolling_back`, ...) to the store before acting on it; the release's manifest, registered at
# the start, holds its guardrails and stages.

# %%
# The weekly report's level and resample count, so its intervals compare like for like.
CONFIDENCE, N_RESAMPLES = DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES

workdir: Path | None = None
if STORE is None:
    workdir = Path(tempfile.mkdtemp(prefix="release-review-"))
    DB = workdir / "demo.duckdb"
    began = time.perf_counter()
    run_demo(db=DB, console=Console(quiet=True, force_jupyter=False))  # no progress widgets
    print(f"built the demo's store in {time.perf_counter() - began:.0f} s")
else:
    DB = Path(STORE)

RID = rollout_id(NAME, VERSION)
with Store(DB, read_only=True) as store:
    transitions = store.transitions(RID)
    releases = {r.version: r for r in store.releases(NAME)}
    postmortems = store.postmortems(rollout_id=RID)
if not transitions or VERSION not in releases:
    known = ", ".join(sorted(releases)) or "none"
    raise cs.InputError("VERSION", f"no rollout of {NAME} {VERSION} in {DB} (releases: {known})")
started = next(t for t in transitions if t.state == "started")
STABLE = str(started.detail.get("stable"))
policy = cs.Policy.from_dict(yaml.safe_load(releases[VERSION].manifest))
guardrails = {g.name: g for g in policy.guardrails}
decided = next((t for t in transitions if t.state in ("promoted", "rolling_back")), None)
ended = next((t for t in transitions if t.state in ("promoted", "rolled_back")), None)
outcome = "in progress" if ended is None else ended.state.replace("_", " ")
stage_starts = {t.stage: t for t in transitions if t.state == "stage_started"}


def hours(at: datetime) -> float:
    """Hours since the rollout started."""
    return (at - started.recorded_at).total_seconds() / 3600


def note(detail: dict[str, Any]) -> str:
    text = next((str(detail[k]) for k in ("reason", "note", "error") if detail.get(k)), "")
    return textwrap.shorten(text, 100, placeholder=" …")


after = "" if decided is None else f" after {hours(decided.recorded_at):.1f} h"
print(f"{NAME} {VERSION} against stable {STABLE}: {outcome}{after}")
if decided is not None:
    print(decided.detail.get("reason", ""))
table = pd.DataFrame([t.to_dict() for t in transitions]).set_index("seq")
table["detail"] = table["detail"].map(note)
table.astype({"stage": "Int64"})

# %% [markdown]
# ## Timeline of verdicts
#
# The judge's audit log (table `verdicts`) has one row per check: the release pair it judged
# (`release` is the canary, `stable` the release it was compared with), the `stage` and the
# verdict's JSON with each guardrail's status, estimate and anytime-valid interval. A check's
# time is its stage's start (from the transitions) plus the verdict's `elapsed_minutes`: the
# row's `decided_at` is the wall clock when it was written, which in the demo's simulated time
# is a few seconds for the whole story. Each check looks at all data since its stage began,
# so every interval starts wide again at a stage boundary.

# %%
with Store(DB, read_only=True) as store:
    log = store.con.execute(
        "SELECT verdict_id, stage, decision, verdict FROM verdicts "
        "WHERE release = ? AND stable = ? ORDER BY verdict_id",
        [VERSION, STABLE],
    ).df()


def number(x: Any) -> float:
    return math.nan if x is None else float(x)


frames = []
for v in log.to_dict("records"):
    body, stage = json.loads(v["verdict"]), stage_starts.get(int(v["stage"]))
    if stage is None:  # judged by someone else, in a stage this rollout never ran
        continue
    minute = float(body["elapsed_minutes"])
    at = hours(stage.recorded_at + timedelta(minutes=minute))
    one = pd.DataFrame.from_dict(body["metrics"], orient="index").rename_axis("guardrail")
    one[["low", "high"]] = [[number(x) for x in pair] for pair in one.pop("interval")]
    one = one.reset_index().assign(verdict_id=v["verdict_id"], decision=v["decision"])
    frames.append(one.assign(stage=stage.stage, minute=minute, hours=at))
if not frames:  # e.g. an HTTP judge whose service logs its verdicts in a store of its own
    raise cs.InputError("STORE", f"{DB} holds no verdicts of {VERSION} vs {STABLE}")
checks = pd.concat(frames, ignore_index=True)
checks["estimate"] = checks["estimate"].map(number)  # JSON null (not computed): NaN
checks["limit"] = checks.pop("margin")  # the limit on the contrast (a drop is negative)
decisions = checks.drop_duplicates("verdict_id")
print(f"{len(decisions)} checks in {len(log)} logged verdicts of {VERSION} vs {STABLE}")
decisions.groupby(["stage", "decision"]).size().unstack(fill_value=0)

# %%
COLOURS = {"pass": "tab:green", "inconclusive": "tab:grey", "fail": "tab:red"}
YLABEL = {"absolute": "canary value", "ratio": "canary / stable", "difference": "canary − stable"}
MARKS = {"promote": ("^", "tab:green"), "rollback": ("X", "tab:red")}
names = list(guardrails)
fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(12, 7.5), sharex=True, squeeze=False)
for ax, name in zip(axes.flat, names, strict=False):
    one = checks[checks["guardrail"] == name]
    for _, s in one.groupby("stage"):  # no line across a stage boundary: intervals restart
        ax.fill_between(s["hours"], s["low"], s["high"], alpha=0.25, color="tab:blue", lw=0)
        ax.plot(s["hours"], s["estimate"], color="black", lw=1)
    ax.scatter(one["hours"], one["estimate"], c=one["status"].map(COLOURS), s=14, zorder=3)
    for decision, (marker, colour) in MARKS.items():
        hit = one[one["decision"] == decision]
        ax.scatter(hit["hours"], hit["estimate"], marker=marker, color=colour, s=90, zorder=4)
    limit = one["limit"].iloc[0]
    ax.axhline(limit, ls="--", color="tab:red")
    # Early intervals are wide (or unbounded): frame the estimates and the limit instead.
    lo, hi = min(one["estimate"].min(), limit), max(one["estimate"].max(), limit)
    pad = 0.6 * (hi - lo) or 0.05 * abs(limit) or 0.05
    ax.set_ylim(lo - pad, hi + pad)
    for t in stage_starts.values():
        ax.axvline(hours(t.recorded_at), color="grey", ls=":", lw=1)
    if decided is not None:
        colour = "tab:green" if outcome == "promoted" else "tab:red"
        ax.axvline(hours(decided.recorded_at), color=colour, lw=1.5)
    top = ax.secondary_xaxis("top")
    ticks = [hours(t.recorded_at) for t in stage_starts.values()]
    top.set_xticks(ticks, [f"{t.traffic:g}%" for t in stage_starts.values()], fontsize=8)
    ax.set_title(f"{name}: {guardrails[name].describe()}", fontsize=10)
    ax.set_ylabel(YLABEL[one["contrast"].iloc[0]])
for ax in axes[-1]:
    ax.set_xlabel("hours since the rollout started")
for ax in list(axes.flat)[len(names) :]:
    ax.set_visible(False)
fig.suptitle(
    f"{VERSION} vs {STABLE}: estimate (line), anytime-valid interval (band), limit (dashed); "
    "stages at the top, dotted\npoints pass / inconclusive / fail; ▲ promote, ✕ rollback; "
    f"solid line: {outcome}; bands clipped to the estimates' range",
    fontsize=10,
)
fig.tight_layout()
plt.show()

# %% [markdown]
# Reading the panels: a point turns green once its interval proves the guardrail within the
# limit, red once it proves a violation (a rollback, in any stage); grey is undecided. A *guard*
# stage (each but the last before 100 %) moves on after its minimum duration unless a violation
# is proven, even with an estimate on the wrong side of a limit (as the demo's model upgrade at
# 10 %): too few tasks to prove anything is not harm proven. The last stage is a *prove*
# stage: it promotes only once every guardrail is green.
#
# ## Effect sizes with bootstrap intervals
#
# How different was the canary from stable, and how sure are we? Over the last stage the canary
# was judged in (from its start to the decision: one stage, so both cohorts come from the same
# hours at one traffic split), from the raw events, with `canary_stats.stats`' bootstrap at
# `rng=SEED`. These describe the effect; they decide nothing (see the last section).

# %%
EFFECTS: dict[str, tuple[str, str, str, float | None]] = {
    # metric: (label, contrast, event column, quantile or None for the mean)
    "success_rate": ("success rate, canary − stable", "difference", "success", None),
    "p95_latency": ("p95 latency, canary / stable", "ratio", "latency_ms", 0.95),
    "tokens_per_task": ("tokens per task, canary / stable", "ratio", "tokens", None),
    "eval_score": ("eval score, canary − stable", "difference", "eval_score", None),
}
last_stage = max(stage_starts.values(), key=lambda t: t.seq)
end = None if decided is None else decided.recorded_at
with Store(DB, read_only=True) as store:
    events = store.con.execute(
        """
        SELECT ts, cohort::VARCHAR AS cohort, success::DOUBLE AS success, latency_ms, tokens,
               eval_score
        FROM events
        WHERE ts >= $start AND ($end IS NULL OR ts < $end)
          AND ((cohort = 'stable' AND release = $stable)
            OR (cohort = 'canary' AND release = $canary))
        ORDER BY ts
        """,
        {"start": last_stage.recorded_at, "end": end, "stable": STABLE, "canary": VERSION},
    ).df()


def cohorts(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The column's non-missing values in the stable and in the canary cohort."""
    x = frame[column].astype(float)
    keep = x.notna()
    stable, canary = keep & (frame["cohort"] == "stable"), keep & (frame["cohort"] == "canary")
    return x[stable].to_numpy(), x[canary].to_numpy()


def contrast_bootstrap(
    stable: np.ndarray, canary: np.ndarray, contrast: str, q: float | None
) -> BootstrapResult:
    options: dict[str, Any] = {"contrast": contrast, "confidence_level": CONFIDENCE}
    options |= {"n_resamples": N_RESAMPLES, "rng": SEED}
    if q is None:
        return mean_contrast_bootstrap(stable, canary, **options)
    return quantile_contrast_bootstrap(stable, canary, q=q, **options)


effect_rows = []
for metric, (_, contrast, column, q) in EFFECTS.items():
    xs, xc = cohorts(events, column)
    res = contrast_bootstrap(xs, xc, contrast, q) if min(xs.size, xc.size) >= 2 else None
    low, high = (math.nan, math.nan) if res is None else res.confidence_interval
    estimate = math.nan if res is None else res.estimate
    effect_rows.append((metric, estimate, low, high, xs.size, xc.size))
effects = pd.DataFrame(
    effect_rows, columns=["metric", "estimate", "low", "high", "n_stable", "n_canary"]
).set_index("metric")
n = events["cohort"].value_counts()
print(
    f"stage {last_stage.stage} ({last_stage.traffic:g}% canary), {hours(last_stage.recorded_at):g}"
    f" h to {'now' if end is None else f'{hours(end):g} h'} after the start: {n.get('canary', 0):,}"
    f" canary and {n.get('stable', 0):,} stable tasks; {CONFIDENCE:.0%} intervals"
)

# %% [markdown]
# The weekly report (`canary_stats.report.build_report`) computes the same effect sizes for
# every rollout of a week. Read it for the week of this rollout's decision and put both side
# by side: the estimates and the task counts must be identical (same events, same window); the
# intervals differ only by Monte-Carlo error, because the report seeds each rollout's and
# metric's bootstrap its own way.

# %%
week = IsoWeek.containing(end or transitions[-1].recorded_at)
with Store(DB, read_only=True) as store:
    report = build_report(
        store, week, rng=SEED, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES
    )
reported = report.frame("effects")
reported = reported[reported["rollout_id"] == RID].set_index("metric")
mine = effects.astype(float)
theirs = reported.reindex(index=mine.index, columns=mine.columns).astype(float)
INTERVAL, TASKS = ["estimate", "low", "high"], ["n_stable", "n_canary"]
shown = mine["estimate"].notna() & theirs["estimate"].notna()
width = (mine["high"] - mine["low"])[shown]
gap = ((mine[["low", "high"]] - theirs[["low", "high"]]).abs().max(axis=1)[shown] / width).max()
agree = (
    shown.any()
    and np.allclose(mine.loc[shown, "estimate"], theirs.loc[shown, "estimate"], rtol=1e-9)
    and (mine[TASKS] == theirs[TASKS]).all(axis=None)
    and gap < 0.25  # about 8 Monte-Carlo standard errors at 1,000 resamples
)
assert agree, f"the effect sizes disagree with the weekly report of {week.label}"
print(
    f"week {week.label}: the effect sizes agree with the weekly report: same estimates and task "
    f"counts; interval ends differ by at most {gap:.1%} of an interval's width"
)
side_by_side = pd.concat(
    {"this notebook": mine[INTERVAL], "weekly report": theirs[INTERVAL], "tasks": effects[TASKS]},
    axis=1,
)
side_by_side.set_axis([EFFECTS[m][0] for m in side_by_side.index]).round(5)

# %%
fig, axes = plt.subplots(len(EFFECTS), 1, figsize=(8, 1.3 * len(EFFECTS) + 1), squeeze=False)
for ax, metric in zip(axes[:, 0], EFFECTS, strict=True):
    title, contrast = EFFECTS[metric][:2]
    for y, frame in enumerate((mine, theirs)):
        mid, left, right = frame.loc[metric, INTERVAL].to_numpy(dtype=float)
        ax.errorbar(mid, y, xerr=[[mid - left], [right - mid]], fmt="o", capsize=4, color=f"C{y}")
    ax.axvline(1.0 if contrast == "ratio" else 0.0, color="grey", ls=":", label="no change")
    ax.set_yticks([0, 1], ["this notebook", "weekly report"])
    ax.set_ylim(1.6, -0.6)  # the notebook on top
    ax.set_title(title, fontsize=10, loc="left")
axes[0, 0].legend(fontsize=8, loc="upper right")
fig.suptitle(f"{VERSION} vs {STABLE}, stage {last_stage.stage}: {CONFIDENCE:.0%} bootstrap")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The evidence behind a rollback
#
# When the executor rolls a release back it writes a postmortem: the guardrail that failed,
# its estimate and anytime-valid interval at the check that proved the violation, the limit
# and the reason, with the rollout's whole timeline. Then the failing guardrail over the checks
# of the final stage until its anytime-valid interval crossed the limit, with the fixed-horizon
# bootstrap interval a dashboard would draw from the same events at each check, for comparison.

# %%
postmortem = postmortems[0] if postmortems else None
FAILED = None if postmortem is None else postmortem.guardrail


def evidence() -> pd.DataFrame | None:
    """The postmortem's evidence as a table; None (saying why) when there is none."""
    if postmortem is None:
        rolling = next((t.detail for t in transitions if t.state == "rolling_back"), None)
        why = "there was no rollback, so there is no postmortem"
        if rolling is not None:  # rolled back without a postmortem (an older store)
            why = f"it has no postmortem: {note(rolling)}"
        print(f"{VERSION} was {outcome}: {why}.")
        return None
    if FAILED is None:  # an abort or a judge outage: nothing was proven
        print(f"{VERSION} was rolled back, no guardrail proven violated: {postmortem.reason}")
        return None
    proved = postmortem.verdict or {}
    proof = proved.get("metrics", {}).get(FAILED, {})
    print(f"postmortem of {VERSION}: rolled back on {FAILED}")
    low, high = number(postmortem.interval_low), number(postmortem.interval_high)
    return pd.Series(
        {
            "rolled back at": postmortem.created_at,
            "stage": f"{proved.get('stage')} ({number(proved.get('traffic')):g}% canary), "
            f"after {number(proved.get('elapsed_minutes')):g} min",
            "guardrail": f"{FAILED}: {guardrails[FAILED].describe()}",
            "estimate": f"{number(postmortem.estimate):.4g}",
            "anytime-valid interval": f"[{low:.4g}, {high:.4g}] ({proof.get('method')})",
            "limit": proof.get("limit"),
            "reason": postmortem.reason,
        },
        name=RID,
    ).to_frame()


evidence()

# %%
COLUMN = {"task_success_rate": "success", "latency_ms": "latency_ms", "tokens_per_task": "tokens"}
COLUMN["eval_score"] = "eval_score"


def fixed_horizon(g: cs.Guardrail, frame: pd.DataFrame) -> tuple[float, float]:
    """A one-look bootstrap interval of the guardrail's contrast on these events."""
    xs, xc = cohorts(frame, COLUMN[g.metric])
    if xc.size < 2 or (g.contrast != "absolute" and xs.size < 2):
        return math.nan, math.nan
    if g.contrast != "absolute":  # canary vs stable: the project's bootstrap
        ci = contrast_bootstrap(xs, xc, g.contrast, g.quantile).confidence_interval
        return ci.low, ci.high
    q = g.quantile  # canary vs a bound: a one-sample bootstrap of the canary's statistic
    statistic: Callable[..., Any] = (
        np.mean if q is None else (lambda x, axis: np.quantile(x, q, axis=axis))
    )
    options = {"n_resamples": N_RESAMPLES, "rng": SEED, "confidence_level": CONFIDENCE}
    ci = stats.bootstrap((xc,), statistic, method="percentile", batch=200, **options)
    return float(ci.confidence_interval.low), float(ci.confidence_interval.high)


final = checks[(checks["guardrail"] == FAILED) & (checks["stage"] == last_stage.stage)]
crossed = final.loc[final["status"] == "fail", "minute"].min()
if FAILED is None or pd.isna(crossed):
    print(f"{VERSION} was {outcome}: no guardrail failed in the verdict log, nothing to plot.")
else:
    g = guardrails[FAILED]
    final = final[final["minute"] <= crossed].sort_values("minute").reset_index(drop=True)
    limit = final["limit"].iloc[0]
    boot = [
        fixed_horizon(g, events[events["ts"] < last_stage.recorded_at + timedelta(minutes=m)])
        for m in final["minute"]
    ]
    final["boot low"], final["boot high"] = zip(*boot, strict=True)
    # Harm lies below the limit for min / max_drop / min_ratio rules, above it for the others.
    harmful = final["boot high"] < limit if g.alternative == "less" else final["boot low"] > limit
    first_boot = final.loc[harmful, "minute"].min()
    print(
        f"{len(final)} checks in stage {last_stage.stage} until the anytime-valid interval of "
        f"{FAILED} crossed the limit {limit:g} at minute {crossed:g} (one-sided, at "
        f"α = {policy.alpha_per_test():.2g} per guardrail and stage: α = {policy.alpha} split "
        f"over {len(policy.guardrails)} guardrails × {len(policy.analysed_stages)} stages)\n"
        f"a {CONFIDENCE:.0%} bootstrap interval recomputed at every check excluded the limit "
        + (f"first at minute {first_boot:g}" if pd.notna(first_boot) else "at no check")
    )
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x, est, valid = final["minute"], final["estimate"], "anytime-valid interval (decides)"
    ax.fill_between(x, final["low"], final["high"], alpha=0.3, lw=0, label=valid)
    ax.plot(x, est, "o-", color="black", ms=4, label="estimate")
    yerr = [est - final["boot low"], final["boot high"] - est]
    one_look = f"{CONFIDENCE:.0%} bootstrap interval (one look each)"
    ax.errorbar(x, est, yerr, fmt="none", ecolor="tab:orange", capsize=5, label=one_look)
    ax.axhline(limit, ls="--", color="tab:red", label=f"limit: {g.describe()}")
    ax.axvline(crossed, color="tab:red", lw=1.5, label="rollback")
    ax.set_xlabel(f"minutes in stage {last_stage.stage} ({last_stage.traffic:g}% canary)")
    ax.set_ylabel(YLABEL[g.contrast])
    ax.set_title(f"{FAILED} of {VERSION}, check by check", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# **Why the anytime-valid interval decided, and not the bootstrap one.** The judge looks every
# few minutes and acts at the first look that convinces it, so what counts is the chance of
# being fooled at *any* look. A 95 % bootstrap interval is honest about one look at a sample
# size fixed in advance. Recomputed at every check it gets a fresh chance, each time, to land on
# the wrong side of the limit by luck, and the chances add up: a canary exactly at its limit,
# checked 20 times, would be rolled back about a quarter of the time instead of one time in
# forty. The anytime-valid interval (a confidence sequence) is built so that the chance it
# *ever* misses the true value, at any check and however the rollout stops, stays below its
# error level, and the judge splits its false-rollback budget α over all guardrails and stages.
# That is why it is wider than the bootstrap interval and crosses the limit later, and why its
# crossing is proof: the release was rolled back because the canary was shown to be on the
# wrong side of the limit at the stated level, not because one of many looks was unlucky. The
# bootstrap intervals remain the better *description* of how large the effect was once the
# stage is over (the table above, and the weekly report); describing is all they are used for.
# If the release was promoted, the two cells above say so instead.

# %%
if workdir is not None:  # the demo's store was built for this review only
    shutil.rmtree(workdir)
    print(f"removed the demo's store ({workdir})")
