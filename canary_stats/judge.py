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

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from . import stats
from ._eta import eta_minutes, tuning
from ._fingerprint import input_fingerprint
from ._split import split_check
from ._stages import (
    _data_end,
    _same_pair,
    _stage_starts,
    as_frame,
    history_before,
    split_stages,
    users_history,
)
from ._trust import silent_canary, untrusted_reason
from ._verdict import GuardrailVerdict, Verdict
from .errors import EventsError
from .policy import Guardrail, Policy, parse_duration
from .sources._pull import Pull
from .sources.files import load_events
from .stats import SequentialTestResult
from .store import Store, StoreView
from .summary import CohortSummary, Summary, UserHistory, summarize, summarize_aggregates

__all__ = [
    "analyze",
    "cohort_ready",
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
    stage_starts: Sequence[datetime | str] | None = None,
    earlier: Sequence[Any] | None = None,
    history: Any = None,
) -> Verdict:
    """Judge the canary against the policy at one check of one stage.

    Parameters
    ----------
    events : DataFrame, path, Summary, Pull, Store, StoreView or DuckDB relation
        Raw events or per-window aggregates of the current stage (or, with
        ``stage_starts``, of the whole rollout). A `Store` (all of it) or a
        ``store.select(...)`` view is summarised in DuckDB, and the verdict is
        appended to the store's audit log with a fingerprint of its inputs. A
        source's `Pull` is judged with the issues it found.
    policy : Policy
        Guardrails, stages and error levels.
    stage : int
        Index of the current stage in ``policy.stages``.
    elapsed : timedelta or str, optional
        Time spent in the stage (default: from the stage's start, or the data's,
        to the end of the data).
    stage_starts : sequence of datetime or ISO-8601 str, optional
        When each stage ``0 .. stage`` of this rollout began. ``events`` then
        holds the rollout's data and is split at these boundaries, each stage
        compared over its own windows; the evidence of all stages is kept.
    earlier : sequence, optional
        Instead of ``stage_starts``: the data of each earlier stage ``0 .. stage
        - 1``, in order (each of the kinds ``events`` accepts, or None). Without
        either, the evidence starts with this stage (a fresh rollout).
    history : DataFrame, path, Store, StoreView or UserHistory, optional
        The users' events before the rollout (their stable cohort's, with user ids):
        each user's earlier mean adjusts the mean metrics' estimates (CUPED),
        which removes most of the spread that per-user routing adds. Default: with
        ``stage_starts``, the data's events in the ``policy.user_history`` before
        the first stage; otherwise none.
    """
    if stage_starts is not None and earlier is not None:
        raise EventsError("stage_starts", "give either stage_starts or earlier, not both")
    policy.check_stage(stage)
    view = events.select() if isinstance(events, Store) else events
    if stage_starts is not None:
        starts = _stage_starts(stage_starts, stage)
        parts = split_stages(view, starts)
        current, stages = parts[-1], parts[:-1]
        if history is None:
            history = history_before(view, starts[0], policy.user_history)
    else:
        current = view
        stages = list(earlier or [])
        _same_pair(view, stages)
    users = users_history(history)
    summary = _summarize(current, policy, users)
    past = [None if h is None else _summarize(h, policy, users) for h in stages]
    if elapsed is not None:
        span = parse_duration(elapsed, "elapsed")
    elif stage_starts is not None:
        span = max(_data_end(summary, starts[-1]) - starts[-1], timedelta(0))
    else:
        span = summary.span
    if span < timedelta(0):
        raise EventsError("elapsed", "must not be negative")
    verdict = judge(summary, policy, stage=stage, elapsed=span, earlier=past)
    if isinstance(view, StoreView) and not view.store.read_only:
        view.store.record_verdict(
            verdict.to_dict(),
            fingerprint=input_fingerprint(summary, policy, stage=stage, elapsed=span, earlier=past),
            release=view.selection.canary,
            stable=view.selection.stable,
        )
    return verdict


def _summarize(events: Any, policy: Policy, history: UserHistory | None = None) -> Summary:
    """The `Summary` of any input `analyze` accepts (mean metrics adjusted by ``history``)."""
    if isinstance(events, Store):
        events = events.select()
    if isinstance(events, StoreView):
        return events.summary(history=history)
    if isinstance(events, Summary):
        return events
    if isinstance(events, Pull):
        pulled = summarize_aggregates(events.trusted())
        found = tuple(issue.describe() for issue in events.issues)
        return replace(pulled, excluded=pulled.excluded + found)
    return summarize(as_frame(events), metrics=policy.metrics_per_cohort(), history=history)


def judge(
    summary: Summary,
    policy: Policy,
    *,
    stage: int,
    elapsed: timedelta,
    earlier: Sequence[Summary | None] = (),
) -> Verdict:
    """Turn a `Summary` into a `Verdict` (see the module docstring).

    ``earlier`` holds the summaries of this rollout's earlier stages, one per
    stage ``0 .. stage - 1`` (None for a stage without data): each guardrail's
    evidence is the product of every stage's, each stage compared over its own
    windows.
    """
    stage_obj = policy.check_stage(stage)
    share = stage_obj.traffic / 100.0
    mode = policy.stage_mode(stage)
    minutes = elapsed.total_seconds() / 60.0
    history = _history(earlier, stage)
    results = {
        g.name: stats.combine_stages(
            [_evaluate(g, s, policy, policy.stages[k].traffic / 100.0) for k, s in history]
            + [_evaluate(g, summary, policy, share)]
        )
        for g in policy.guardrails
    }
    srm = split_check(summary, share, alpha=policy.srm_alpha)
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
    ready = cohort_ready(summary.stable.tasks, summary.canary.tasks, policy)
    decision = decide_verdicts(
        verdicts.values(), data_problem=hold_reason is not None, mode=mode, left=left,
        untrusted=taint is not None, cohort_ready=ready,
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
            carried = [v for v in verdicts.values() if not v.enough_data]
            if carried:
                why += "; carried forward: " + "; ".join(
                    f"{v.name}: {_short_of(v, policy)}, judged from the next stage on"
                    for v in carried
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
    names = "; ".join(f"{v.name}: {_short_of(v, policy)}" for v in short)
    too_little = f"too little data for {names}" if short else None
    if mode == "guard":  # guardrails short of data are carried; the cohort is not
        too_little = None if ready else (
            f"too little data: {summary.canary.tasks:.0f} canary and "
            f"{summary.stable.tasks:.0f} stable tasks in this stage; each cohort needs "
            f"{policy.min_samples}"
        )  # fmt: skip
    why = _waiting_reason(
        verdicts.values(), too_little, left=left, duration=duration, minutes=minutes,
        policy=policy,
    )  # fmt: skip
    return Verdict("hold", f"hold: {why}.", eta_minutes=eta, **common)


def _short_of(v: GuardrailVerdict, policy: Policy) -> str:
    """``12 of 30 scores`` (the cohort furthest from its minimum), over the rollout."""
    unit = {"eval_score": "scores", "latency_ms": "latencies"}.get(v.metric, "tasks")
    cohorts = [("canary", v.n_canary)]
    if v.contrast != "absolute":
        cohorts.append(("stable", v.n_stable))
    name, n = min(cohorts, key=lambda c: c[1])
    return f"{n:.0f} of {policy.min_samples} {name} {unit}"


def cohort_ready(n_stable: Any, n_canary: Any, policy: Policy) -> Any:
    """Whether both cohorts have their minimum tasks in this stage (element-wise)."""
    n_s, n_c = np.asarray(n_stable, dtype=float), np.asarray(n_canary, dtype=float)
    return (n_s >= policy.min_samples) & (n_c >= policy.min_samples)


def _waiting_reason(
    verdicts: Iterable[GuardrailVerdict],
    too_little: str | None,
    *,
    left: float,
    duration: timedelta | None,
    minutes: float,
    policy: Policy,
) -> str:
    """Why a stage with trusted data still holds: too little data, time, or proof."""
    if too_little is not None:
        return too_little
    if left > 0:
        return (
            f"no violation proven; the stage's minimum duration ({_fmt_minutes(duration)}) "
            f"is not reached ({minutes:.0f} min elapsed)"
        )
    pending = ", ".join(
        v.name if v.enough_data else f"{v.name} ({_short_of(v, policy)})"
        for v in verdicts
        if v.status != "pass"
    )
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
            f"sample ratio mismatch: canary share {100 * srm.observed_share:.2f}% of "
            f"{srm.unit} vs planned {100 * srm.expected_share:g}% (p = {srm.pvalue:.1e}); "
            "the split cannot be trusted"
        )
    return None


def _history(earlier: Sequence[Summary | None], stage: int) -> list[tuple[int, Summary]]:
    """The earlier stages that have data, with their indices."""
    if len(earlier) not in (0, stage):
        raise EventsError(
            "earlier",
            f"expected one summary per earlier stage (0..{stage - 1}), got {len(earlier)}",
        )
    return [(k, s) for k, s in enumerate(earlier) if s is not None]


def _bounded_var(m: Any) -> Any:
    """Variance of a [0, 1] score with one pseudo-observation of the largest variance."""
    return (np.asarray(m.n) * np.nan_to_num(m.var) + 0.25) / (np.asarray(m.n) + 1)


def _evaluate(g: Guardrail, s: Summary, policy: Policy, share: float) -> SequentialTestResult:
    """One stage's test of one guardrail, on that stage's data alone.

    With user ids, each cohort's counts are shrunk by the metric's design effect
    (user-level uncertainty), and a mean adjusted by users' history says so in
    its method; the result reports the observed counts.
    """
    result = _test(g, s, policy, share)
    n_s, n_c = _observed(g, s.stable), _observed(g, s.canary)
    shape = np.shape(result.n_canary)
    field = "tokens" if g.metric == "tokens_per_task" else g.metric
    adjusted = _shifted(s.canary, field) or _shifted(s.stable, field)
    return replace(
        result,
        method=result.method + ("; adjusted by users' history (CUPED)" if adjusted else ""),
        n_stable=result.n_stable if g.contrast == "absolute" else _like(n_s, shape),
        n_canary=_like(n_c, shape),
    )


def _observed(g: Guardrail, c: CohortSummary) -> Any:
    if g.metric == "latency_ms":
        lat = c.latency
        return lat.n if isinstance(lat, stats.Histogram) else float(np.size(lat))
    if g.metric == "task_success_rate":
        return c.tasks
    return (c.tokens if g.metric == "tokens_per_task" else c.eval_score).n


def _like(n: Any, shape: tuple[int, ...]) -> Any:
    a = np.broadcast_to(np.asarray(n, dtype=float), shape)
    return float(a) if a.ndim == 0 else np.array(a)


def _design(c: CohortSummary, metric: str) -> Any:
    """The cohort's design effect for ``metric`` (1 without user ids).

    At least 1, except for a mean adjusted by users' history, whose variance may
    be below that of independent tasks (a floor keeps a degenerate one finite).
    """
    design = getattr(c, "design", None)
    field = {"task_success_rate": "success", "latency_ms": "latency"}.get(metric, metric)
    field = "tokens" if field == "tokens_per_task" else field
    floor = _ADJUSTED_DEFF_FLOOR if _shifted(c, field) else 1.0
    return np.maximum(np.asarray(getattr(design, field, 1.0), dtype=float), floor)


#: The smallest design effect an adjusted mean may claim (a variance cut 100-fold).
_ADJUSTED_DEFF_FLOOR = 0.01


def _shifted(c: CohortSummary, field: str) -> bool:
    adj = getattr(c, "adjustment", None)
    return (
        adj is not None
        and field in ("tokens", "eval_score")
        and bool(np.any(np.asarray(getattr(adj, field)) != 0))
    )


def _mean(c: CohortSummary, metric: str) -> Any:
    """The cohort's mean of a mean metric, adjusted by users' history where it was."""
    field = "tokens" if metric == "tokens_per_task" else "eval_score"
    adj = getattr(c, "adjustment", None)
    shift = 0.0 if adj is None else getattr(adj, field)
    return _nz(getattr(c, field).mean) + np.asarray(shift, dtype=float)


def _test(g: Guardrail, s: Summary, policy: Policy, share: float) -> SequentialTestResult:
    n_two, n_can, n_sta = tuning(policy, share)
    opts: dict[str, Any] = {
        "alternative": g.alternative,
        "alpha": policy.alpha_per_test(),
        "alpha_pass": policy.alpha_pass(),
    }
    st, ca = s.stable, s.canary
    d_s, d_c = _design(st, g.metric), _design(ca, g.metric)
    if g.metric == "task_success_rate":
        if g.contrast == "absolute":
            return stats.proportion_bound(
                ca.successes / d_c, ca.tasks / d_c, bound=g.margin, n_tune=n_can, **opts
            )
        return stats.proportion_contrast(
            st.successes / d_s,
            st.tasks / d_s,
            ca.successes / d_c,
            ca.tasks / d_c,
            contrast=g.contrast,
            margin=g.margin,
            n_tune=n_two,
            **opts,
        )
    if g.metric == "latency_ms":
        q = float(g.quantile or 0.95)
        if g.contrast == "absolute":
            return stats.quantile_bound(
                ca.latency, q=q, bound=g.margin, n_tune=n_can, design_effect=d_c, **opts
            )
        return stats.quantile_contrast(
            st.latency,
            ca.latency,
            q=q,
            contrast=g.contrast,
            margin=g.margin,
            n_tune_stable=n_sta,
            n_tune_canary=n_can,
            stages=len(policy.analysed_stages),
            design_effect=(d_s, d_c),
            **opts,
        )
    m_s, m_c = (
        (st.tokens, ca.tokens) if g.metric == "tokens_per_task" else (st.eval_score, ca.eval_score)
    )
    bounded = g.metric == "eval_score"
    v_s = _bounded_var(m_s) if bounded else m_s.var
    v_c = _bounded_var(m_c) if bounded else m_c.var
    n_s, n_c = np.asarray(m_s.n, dtype=float) / d_s, np.asarray(m_c.n, dtype=float) / d_c
    mean_s, mean_c = _mean(st, g.metric), _mean(ca, g.metric)
    if g.contrast == "absolute":
        return stats.mean_bound(n_c, mean_c, _nz(v_c), bound=g.margin, n_tune=n_can, **opts)
    return stats.mean_contrast(
        n_s,
        mean_s,
        _nz(v_s),
        n_c,
        mean_c,
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
    cohort_ready: bool | None = None,
) -> str:
    """The decision rule of DESIGN.md, on plain values (shared by `judge` and simulations).

    ``untrusted`` (numbers that cannot be relied on at all) holds even before a
    proven violation: the numbers behind that proof are the ones in doubt. Windows
    left out of the evidence, like a sample-ratio mismatch, are a ``data_problem``:
    they do not stop a rollback proven on the rest (a crashing canary causes both).
    A ``guard`` stage promotes once both cohorts have their minimum tasks in the
    stage (``cohort_ready``; default: every guardrail has its minimum); guardrails
    still short of theirs are carried to the next stage. A ``prove`` stage needs
    every guardrail to pass, which needs its minimum.
    """
    if untrusted:
        return "hold"
    if "fail" in statuses:
        return "rollback"
    if data_problem or not duration_reached:
        return "hold"
    if mode == "guard":
        ready = all(enough) if cohort_ready is None else cohort_ready
        return "promote" if ready else "hold"
    if all(s == "pass" for s in statuses) and all(enough):
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
    cohort_ready: bool | None = None,
) -> str:
    """`decide` on guardrail verdicts with ``left`` minutes of the stage to go."""
    verdicts = list(verdicts)
    return decide(
        [v.status for v in verdicts], [v.enough_data for v in verdicts],
        data_problem=data_problem, mode=mode, duration_reached=left <= 0, untrusted=untrusted,
        cohort_ready=None if cohort_ready is None else bool(cohort_ready),
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
