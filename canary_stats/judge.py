"""The judge: the only place where statistics become promote, hold or rollback.

Decision at a check (DESIGN.md, "The verdict"):

0. numbers that cannot be trusted at all (values beyond the manifest's bounds,
   broken histograms, overflow) -> **hold**: no decision rests on them;
1. any guardrail ``fail`` -> **rollback** (on the windows that can be trusted:
   failed or partial scrapes, resets and NaN windows are left out and named);
2. left-out windows, a cohort without data, a silent canary or a sample-ratio
   mismatch -> **hold** (a silent canary rolls back where the rollout says
   ``on_silent_canary: rollback``);
3. stage minimum duration reached and the stage's requirement met -> **promote**
   (``guard``: no violation proven and minimum samples reached; ``prove``: every
   guardrail ``pass``);
4. otherwise **hold**, with ``eta_minutes`` when it can be projected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import stats
from ._eta import eta_minutes, tuning
from ._fingerprint import input_fingerprint
from ._trust import silent_canary, untrusted_reason
from ._verdict import GuardrailVerdict, Verdict
from .errors import EventsError
from .policy import Guardrail, Policy, parse_duration
from .sources._pull import Pull
from .sources.files import load_events
from .stats import SequentialTestResult
from .store import Store, StoreView
from .summary import Summary, summarize, summarize_aggregates

__all__ = [
    "analyze",
    "decide",
    "decide_verdicts",
    "effective_status",
    "judge",
    "load_events",
    "minutes_left",
]


def analyze(
    events: Any,
    policy: Policy,
    *,
    stage: int,
    elapsed: timedelta | str | None = None,
) -> Verdict:
    """Judge the canary against the policy at one check of one stage.

    Parameters
    ----------
    events : DataFrame, path, Summary, Pull, Store, StoreView or DuckDB relation
        Raw events or per-window aggregates since the stage began. A `Store`
        (all of it) or a ``store.select(...)`` view is summarised in DuckDB, and
        the verdict is appended to the store's audit log with a fingerprint of
        its inputs. A source's `Pull` is judged with the issues it found.
    policy : Policy
        Guardrails, stages and error levels.
    stage : int
        Index of the current stage in ``policy.stages``.
    elapsed : timedelta or str, optional
        Time spent in the stage (default: the span of the data).
    """
    view = events.select() if isinstance(events, Store) else events
    if isinstance(view, StoreView):
        summary = view.summary()
    elif isinstance(events, Summary):
        summary = events
    elif isinstance(events, Pull):
        pulled = summarize_aggregates(events.trusted())
        found = tuple(issue.describe() for issue in events.issues)
        summary = replace(pulled, excluded=pulled.excluded + found)
    else:
        if isinstance(events, str | Path):
            events = load_events(events)
        elif hasattr(events, "df") and callable(events.df):  # a DuckDB relation
            events = events.df()
        if not isinstance(events, pd.DataFrame):
            raise EventsError(
                "events",
                f"expected a DataFrame, a file path or a Summary; got {type(events).__name__}",
            )
        summary = summarize(events, metrics=policy.metrics_per_cohort())
    span = parse_duration(elapsed, "elapsed") if elapsed is not None else summary.span
    if span < timedelta(0):
        raise EventsError("elapsed", "must not be negative")
    verdict = judge(summary, policy, stage=stage, elapsed=span)
    if isinstance(view, StoreView) and not view.store.read_only:
        view.store.record_verdict(
            verdict.to_dict(),
            fingerprint=input_fingerprint(summary, policy, stage=stage, elapsed=span),
            release=view.selection.canary,
            stable=view.selection.stable,
        )
    return verdict


def judge(summary: Summary, policy: Policy, *, stage: int, elapsed: timedelta) -> Verdict:
    """Turn a `Summary` into a `Verdict` (see the module docstring)."""
    stage_obj = policy.check_stage(stage)
    share = stage_obj.traffic / 100.0
    mode = policy.stage_mode(stage)
    minutes = elapsed.total_seconds() / 60.0
    results = {g.name: _evaluate(g, summary, policy, share) for g in policy.guardrails}
    srm = stats.sample_ratio_mismatch(
        summary.stable.tasks, summary.canary.tasks, expected_share=share, alpha=policy.srm_alpha
    )
    verdicts = {g.name: _guardrail_verdict(g, results[g.name], policy) for g in policy.guardrails}
    taint = untrusted_reason(summary, policy)
    if taint is not None:  # no guardrail is decided on numbers that cannot be trusted
        unjudged = "not judged: the data cannot be trusted"
        verdicts = {
            k: replace(v, status="inconclusive", reason=unjudged) for k, v in verdicts.items()
        }
    common = {
        "stage": stage,
        "mode": mode,
        "traffic": stage_obj.traffic,
        "elapsed_minutes": minutes,
        "metrics": verdicts,
        "srm": srm,
        "data_issues": summary.issues + summary.excluded,
        "n_stable": summary.stable.tasks,
        "n_canary": summary.canary.tasks,
        "alpha": policy.alpha_per_test(),
        "alpha_pass": policy.alpha_pass(),
    }

    silent = silent_canary(summary, share)
    hold_reason = _data_problem(summary, srm, silent)
    duration = stage_obj.duration
    left = minutes_left(duration, minutes)
    decision = decide_verdicts(
        verdicts.values(), data_problem=hold_reason is not None, mode=mode, left=left,
        untrusted=taint is not None,
    )  # fmt: skip
    if taint is not None:
        return Verdict("hold", f"hold: the data cannot be trusted: {taint}.", **common)
    if decision == "hold" and silent is not None and policy.on_silent_canary == "rollback":
        return Verdict("rollback", f"rollback: {silent} (on_silent_canary: rollback).", **common)
    if decision == "rollback":
        failed = [v for v in verdicts.values() if v.status == "fail"]
        return Verdict(
            "rollback", "rollback: " + "; ".join(v.evidence() for v in failed) + ".", **common
        )
    if decision == "promote":
        if mode == "guard":
            why = (
                f"no guardrail violated after {minutes:.0f} min at {stage_obj.traffic:g}% "
                f"with {summary.canary.tasks:.0f} canary tasks (guard stage)"
            )
        else:
            why = (
                f"every guardrail proven within its margin after {minutes:.0f} min "
                f"at {stage_obj.traffic:g}% (prove stage)"
            )
        return Verdict("promote", f"promote: {why}.", **common)
    if hold_reason:
        return Verdict("hold", f"hold: {hold_reason}.", **common)
    rate = (summary.stable.tasks + summary.canary.tasks) / minutes if minutes > 0 else 0.0
    eta = eta_minutes(verdicts.values(), mode, left, rate, share, policy)
    short = [v for v in verdicts.values() if not v.enough_data]
    names = ", ".join(f"{v.name} ({v.n_canary:.0f} canary, {v.n_stable:.0f} stable)" for v in short)
    too_little = f"too little data for {names}; each cohort needs {policy.min_samples}"
    why = _waiting_reason(
        verdicts.values(), too_little if short else None, left=left, duration=duration,
        minutes=minutes,
    )  # fmt: skip
    return Verdict("hold", f"hold: {why}.", eta_minutes=eta, **common)


def _waiting_reason(
    verdicts: Iterable[GuardrailVerdict],
    too_little: str | None,
    *,
    left: float,
    duration: timedelta | None,
    minutes: float,
) -> str:
    """Why a stage with trusted data still holds: too little data, time, or proof."""
    if too_little is not None:
        return too_little
    if left > 0:
        return (
            f"no violation proven; the stage's minimum duration ({_fmt_minutes(duration)}) "
            f"is not reached ({minutes:.0f} min elapsed)"
        )
    pending = ", ".join(v.name for v in verdicts if v.status != "pass")
    return f"not yet proven within margin: {pending}; a prove stage needs every guardrail to pass"


def _fmt_minutes(d: timedelta | None) -> str:
    m = (d or timedelta(0)).total_seconds() / 60
    return f"{m / 60:g} h" if m >= 60 else f"{m:g} min"


def _data_problem(summary: Summary, srm: stats.SampleRatioResult, silent: str | None) -> str | None:
    if summary.excluded:
        left_out = "; ".join(summary.excluded)
        return f"some of the data cannot be trusted and is left out of the evidence: {left_out}"
    if silent is not None:
        return silent
    for name, c in (("canary", summary.canary), ("stable", summary.stable)):
        if c.tasks == 0:
            return f"no {name} tasks in the data yet"
    if srm.mismatch:
        return (
            f"sample ratio mismatch: canary share {100 * srm.observed_share:.2f}% vs planned "
            f"{100 * srm.expected_share:g}% (p = {srm.pvalue:.1e}); the split cannot be trusted"
        )
    return None


def _bounded_var(m: Any) -> Any:
    """Variance of a [0, 1] score with one pseudo-observation of the largest variance."""
    return (np.asarray(m.n) * np.nan_to_num(m.var) + 0.25) / (np.asarray(m.n) + 1)


def _evaluate(g: Guardrail, s: Summary, policy: Policy, share: float) -> SequentialTestResult:
    n_two, n_can, n_sta = tuning(policy, share)
    opts: dict[str, Any] = {
        "alternative": g.alternative,
        "alpha": policy.alpha_per_test(),
        "alpha_pass": policy.alpha_pass(),
    }
    st, ca = s.stable, s.canary
    if g.metric == "task_success_rate":
        if g.contrast == "absolute":
            return stats.proportion_bound(
                ca.successes, ca.tasks, bound=g.margin, n_tune=n_can, **opts
            )
        return stats.proportion_contrast(
            st.successes,
            st.tasks,
            ca.successes,
            ca.tasks,
            contrast=g.contrast,
            margin=g.margin,
            n_tune=n_two,
            **opts,
        )
    if g.metric == "latency_ms":
        q = float(g.quantile or 0.95)
        if g.contrast == "absolute":
            return stats.quantile_bound(ca.latency, q=q, bound=g.margin, n_tune=n_can, **opts)
        return stats.quantile_contrast(
            st.latency,
            ca.latency,
            q=q,
            contrast=g.contrast,
            margin=g.margin,
            n_tune_stable=n_sta,
            n_tune_canary=n_can,
            **opts,
        )
    m_s, m_c = (
        (st.tokens, ca.tokens) if g.metric == "tokens_per_task" else (st.eval_score, ca.eval_score)
    )
    bounded = g.metric == "eval_score"
    v_s = _bounded_var(m_s) if bounded else m_s.var
    v_c = _bounded_var(m_c) if bounded else m_c.var
    if g.contrast == "absolute":
        return stats.mean_bound(
            m_c.n, _nz(m_c.mean), _nz(v_c), bound=g.margin, n_tune=n_can, **opts
        )
    return stats.mean_contrast(
        m_s.n,
        _nz(m_s.mean),
        _nz(v_s),
        m_c.n,
        _nz(m_c.mean),
        _nz(v_c),
        contrast=g.contrast,
        margin=g.margin,
        n_tune=n_two,
        **opts,
    )


def _nz(x: Any) -> Any:
    return np.nan_to_num(np.asarray(x, dtype=float))


def effective_status(g: Guardrail, r: SequentialTestResult, policy: Policy) -> tuple[Any, Any]:
    """Status after the minimum-sample rule, and whether the minimum is reached.

    Below the minimum sample a ``pass`` is never trusted, and neither is a
    ``fail`` from an asymptotic method; exact methods (beta-binomial, quantile
    order statistics) may fail at any size, so a catastrophe is caught early.
    Works element-wise on arrays.
    """
    n_c = np.asarray(r.n_canary, dtype=float)
    enough = n_c >= policy.min_samples
    if g.contrast != "absolute":
        enough = enough & (np.asarray(r.n_stable, dtype=float) >= policy.min_samples)
    exact = "(exact)" in r.method or "order statistics" in r.method
    status = np.asarray(r.status)
    distrust = ~enough & ((status == "pass") | ((status == "fail") & (not exact)))
    return np.where(distrust, "inconclusive", status), enough


def decide(
    statuses: list[str],
    enough: list[bool],
    *,
    data_problem: bool,
    mode: str,
    duration_reached: bool,
    untrusted: bool = False,
) -> str:
    """The decision rule of DESIGN.md, on plain values (shared by `judge` and simulations).

    ``untrusted`` (numbers that cannot be relied on at all) holds even before a
    proven violation: the numbers behind that proof are the ones in doubt. Windows
    left out of the evidence, like a sample-ratio mismatch, are a ``data_problem``:
    they do not stop a rollback proven on the rest (a crashing canary causes both).
    """
    if untrusted:
        return "hold"
    if "fail" in statuses:
        return "rollback"
    if data_problem or not all(enough) or not duration_reached:
        return "hold"
    if mode == "guard" or all(s == "pass" for s in statuses):
        return "promote"
    return "hold"


def minutes_left(duration: timedelta | None, minutes: float) -> float:
    """Minutes until a stage of ``duration`` is over (0 without a duration)."""
    return max(0.0, duration.total_seconds() / 60.0 - minutes) if duration else 0.0


def decide_verdicts(
    verdicts: Iterable[GuardrailVerdict],
    *,
    data_problem: bool,
    mode: str,
    left: float,
    untrusted: bool,
) -> str:
    """`decide` on guardrail verdicts with ``left`` minutes of the stage to go."""
    verdicts = list(verdicts)
    return decide(
        [v.status for v in verdicts], [v.enough_data for v in verdicts],
        data_problem=data_problem, mode=mode, duration_reached=left <= 0, untrusted=untrusted,
    )  # fmt: skip


def _guardrail_verdict(g: Guardrail, r: SequentialTestResult, policy: Policy) -> GuardrailVerdict:
    n_s, n_c = float(r.n_stable), float(r.n_canary)
    status_a, enough_a = effective_status(g, r, policy)
    status, enough = str(status_a), bool(enough_a)
    low, high = float(r.confidence_interval.low), float(r.confidence_interval.high)
    if status == "fail":
        reason = f"violates '{g.describe()}'"
    elif status == "pass":
        reason = f"proven within '{g.describe()}'"
    elif not enough:
        reason = f"too little data ({n_c:.0f} canary, {n_s:.0f} stable; need {policy.min_samples})"
    else:
        reason = f"not yet decided against '{g.describe()}'"
    return GuardrailVerdict(
        name=g.name,
        metric=g.metric,
        rule=g.rule,
        limit=g.value,
        margin=r.margin,
        contrast=r.contrast,
        alternative=r.alternative,
        status=status,
        estimate=float(r.estimate),
        low=low,
        high=high,
        n_stable=n_s,
        n_canary=n_c,
        reason=reason,
        method=r.method,
        resolution=float(r.resolution),
        description=g.describe(),
        enough_data=enough,
    )
