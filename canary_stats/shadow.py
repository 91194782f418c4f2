"""Shadow mode: each task also run by the shadow version, judged as paired samples.

Before a risky release meets users, each stable task can be mirrored to it and
the shadow's answer discarded. Both runs of a task share its difficulty, so a
paired test needs fewer tasks than two independent cohorts (1.5x to 2.7x fewer
in ``tests/test_shadow_validation.py``).

Data: raw events (DESIGN.md) with ``cohort`` ``stable`` or ``shadow`` and a
``request_id`` shared by a shadow row and the stable row it mirrors. Every
stable task is expected to be mirrored: to mirror a sample of tasks, pass only
those tasks' stable rows.

How each guardrail is judged (error levels, minimum samples, decision rule and
`Verdict` as in `canary_stats.analyze`):

- relative success rate, tokens and eval score: **paired**, on the per-task
  contrast ``d = x_shadow - r x_stable - c`` (``r`` the ratio margin or 1, ``c``
  the difference margin or 0); eval score over pairs where both runs are scored;
- relative latency quantile (p95): the **unpaired** two-cohort test of
  `analyze`, since a quantile of differences is not a difference of quantiles
  and has no simple paired form;
- absolute bounds (min/max): the shadow's runs alone, exactly as `analyze`
  judges a canary.

The two runs of a task make the cohorts equally large, so tuning sizes are those
of a 50 % canary whatever the stage's traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import stats
from ._eta import eta_minutes, tuning
from ._shadow_pairs import Pairs, pair_tasks, shadow_frame
from ._verdict import GuardrailVerdict, Verdict
from .errors import EventsError
from .judge import (
    _bounded_var,
    _evaluate,
    _guardrail_verdict,
    _nz,
    _waiting_reason,
    decide_verdicts,
    minutes_left,
)
from .policy import Guardrail, Policy, parse_duration
from .stats import SequentialTestResult
from .summary import Moments, Summary

__all__ = ["analyze_shadow"]

#: Stable and shadow run the same tasks: each cohort is half of the rows.
_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class _PairedCounts:
    """The 2 x 2 table of outcomes over ``n`` pairs (fields may be arrays of looks)."""

    n: Any
    stable: Any
    shadow: Any
    both: Any

    @classmethod
    def from_outcomes(cls, stable: np.ndarray, shadow: np.ndarray) -> _PairedCounts:
        count = np.count_nonzero
        return cls(stable.size, count(stable), count(shadow), count(stable & shadow))


@dataclass(frozen=True, slots=True)
class _PairedMoments:
    """Per-version means and variances and their covariance (``ddof=0``) over pairs."""

    n: Any
    mean_stable: Any
    var_stable: Any
    mean_shadow: Any
    var_shadow: Any
    cov: Any

    @classmethod
    def from_values(cls, stable: np.ndarray, shadow: np.ndarray) -> _PairedMoments:
        if stable.size == 0:
            return cls(0.0, np.nan, np.nan, np.nan, np.nan, np.nan)
        ds, dh = stable - stable.mean(), shadow - shadow.mean()  # two passes: no cancellation
        n = float(stable.size)
        return cls(
            n, float(stable.mean()), ds @ ds / n, float(shadow.mean()), dh @ dh / n, ds @ dh / n
        )


def analyze_shadow(
    events: pd.DataFrame | str | Path,
    policy: Policy,
    *,
    stage: int = 0,
    elapsed: timedelta | str | None = None,
) -> Verdict:
    """Judge a shadow version on mirrored traffic, one paired test per guardrail.

    Parameters
    ----------
    events : DataFrame or path
        Raw events since the stage began, ``cohort`` ``stable`` or ``shadow``,
        each shadow row sharing its ``request_id`` with the stable row it mirrors.
    policy : Policy
        Guardrails, stages and error levels (the same as for `analyze`).
    stage : int, default: 0
        Index of the current stage in ``policy.stages``: its mode, minimum
        duration and share of the error level apply.
    elapsed : timedelta or str, optional
        Time spent in the stage (default: the span of the events).

    Returns
    -------
    Verdict
        As `analyze` returns it; ``n_stable`` and ``n_canary`` count the pairs.
        Reasons name each guardrail's test and its pairs, and the unpaired rows.

    Raises
    ------
    EventsError
        A missing column, a ``canary`` row, a value out of range, or a
        ``request_id`` repeated within a cohort.

    Notes
    -----
    Rows that cannot be paired (a shadow run not recorded, a stable task without
    its mirror, a row without ``request_id``) are dropped and counted. Their
    balance is tested like a sample ratio: if the shadow recorded markedly fewer
    runs than stable has tasks, the verdict holds (the lost runs may be the
    shadow's failures), though a proven violation still rolls back. A missing
    ``success``, ``latency_ms`` or ``tokens`` makes the data partial: a hold.
    Relative latency-quantile guardrails use `analyze`'s unpaired two-cohort
    test (a quantile has no simple paired form; see the module docstring).
    """
    pairs = pair_tasks(shadow_frame(events))
    span = parse_duration(elapsed, "elapsed") if elapsed is not None else pairs.span
    if span < timedelta(0):
        raise EventsError("elapsed", "must not be negative")
    return _judge_pairs(pairs, policy, stage=stage, elapsed=span)


def _paired_test(
    g: Guardrail, policy: Policy, data: _PairedCounts | _PairedMoments
) -> SequentialTestResult:
    """The paired test of a relative guardrail; fields of ``data`` may be arrays of looks."""
    opts: dict[str, Any] = {
        "contrast": g.contrast,
        "margin": g.margin,
        "alternative": g.alternative,
        "alpha": policy.alpha_per_test(),
        "alpha_pass": policy.alpha_pass(),
        # Tuned at the pairs of the two-cohort test's tuning size (each pair is two tasks).
        "n_tune": tuning(policy, _SHARE)[1],
    }
    if isinstance(data, _PairedCounts):
        return stats.paired_proportion_contrast(data.n, data.stable, data.shadow, data.both, **opts)
    m = data
    v_s, v_h, cov = m.var_stable, m.var_shadow, m.cov
    if g.metric == "eval_score":
        # Bounded scores: one pseudo-pair of the largest variance, as `analyze` adds
        # one pseudo-observation per cohort (it shrinks the covariance by n / (n + 1)).
        n = np.asarray(m.n, dtype=float)
        v_s = _bounded_var(Moments(n, m.mean_stable, v_s))
        v_h = _bounded_var(Moments(n, m.mean_shadow, v_h))
        cov = n * np.nan_to_num(np.asarray(cov, dtype=float)) / (n + 1)
    return stats.paired_mean_contrast(
        m.n, _nz(m.mean_stable), _nz(v_s), _nz(m.mean_shadow), _nz(v_h), _nz(cov), **opts
    )


def _guardrail(g: Guardrail, p: Pairs, summary: Summary, policy: Policy) -> GuardrailVerdict:
    if g.contrast == "absolute" or g.metric == "latency_ms":
        how = (
            "the shadow's runs alone"
            if g.contrast == "absolute"
            else "unpaired two-cohort test: a quantile ratio has no paired form"
        )
        v = _guardrail_verdict(g, _evaluate(g, summary, policy, _SHARE), policy)
        used = f"{p.n} paired tasks"
    else:
        data: _PairedCounts | _PairedMoments
        if g.metric == "task_success_rate":
            data = _PairedCounts.from_outcomes(p.stable.success, p.shadow.success)
        elif g.metric == "tokens_per_task":
            data = _PairedMoments.from_values(p.stable.tokens, p.shadow.tokens)
        else:
            scored = ~np.isnan(p.stable.eval_score) & ~np.isnan(p.shadow.eval_score)
            data = _PairedMoments.from_values(
                p.stable.eval_score[scored], p.shadow.eval_score[scored]
            )
        v = _guardrail_verdict(g, _paired_test(g, policy, data), policy)
        how = "paired"
        used = f"{int(data.n)} pairs" + (
            " with both runs scored" if g.metric == "eval_score" else ""
        )
    if v.status == "inconclusive" and not v.enough_data:
        n = int(v.n_canary)  # the pairs, or the shadow's runs alone
        what = "paired tasks"
        if g.metric == "eval_score":
            what = "scored shadow runs" if g.contrast == "absolute" else "pairs with both scored"
        return replace(v, reason=f"too little data ({n} {what}; need {policy.min_samples})")
    return replace(v, reason=f"{v.reason} ({how}, {used})")


def _judge_pairs(p: Pairs, policy: Policy, *, stage: int, elapsed: timedelta) -> Verdict:
    """Turn paired runs into a `Verdict` with the decision rule of `analyze`."""
    stage_obj = policy.check_stage(stage)
    mode = policy.stage_mode(stage)
    minutes = elapsed.total_seconds() / 60.0
    summary = Summary(p.stable.cohort(), p.shadow.cohort(), issues=p.issues)
    verdicts = {g.name: _guardrail(g, p, summary, policy) for g in policy.guardrails}
    # Mirror balance: every stable task should have one recorded shadow run.
    srm = stats.sample_ratio_mismatch(
        p.n + p.unpaired_stable,
        p.n + p.unpaired_shadow,
        expected_share=_SHARE,
        alpha=policy.srm_alpha,
    )
    common: dict[str, Any] = dict(
        stage=stage, mode=mode, traffic=stage_obj.traffic, elapsed_minutes=minutes,
        metrics=verdicts, srm=srm, data_issues=p.issues, n_stable=float(p.n),
        n_canary=float(p.n), alpha=policy.alpha_per_test(), alpha_pass=policy.alpha_pass(),
    )  # fmt: skip
    hold_reason = _data_problem(p, srm)
    duration = stage_obj.duration
    left = minutes_left(duration, minutes)
    decision = decide_verdicts(
        verdicts.values(), data_problem=hold_reason is not None, mode=mode, left=left,
        untrusted=bool(p.issues),
    )  # fmt: skip
    pairing = p.describe()
    if decision == "rollback":
        failed = "; ".join(_evidence(v) for v in verdicts.values() if v.status == "fail")
        return Verdict("rollback", f"rollback: the shadow {failed} ({pairing}).", **common)
    if decision == "promote":
        why = {
            "guard": "no guardrail violated by the shadow",
            "prove": "the shadow is proven within every guardrail's margin",
        }[mode]
        return Verdict(
            "promote",
            f"promote: {why} after {minutes:.0f} min ({mode} stage; {pairing}).",
            **common,
        )
    if hold_reason:
        return Verdict("hold", f"hold: {hold_reason} ({pairing}).", **common)
    rate = 2 * p.n / minutes if minutes > 0 else 0.0  # rows per minute, both versions
    eta = eta_minutes(verdicts.values(), mode, left, rate, _SHARE, policy)
    short = [v.name for v in verdicts.values() if not v.enough_data]
    too_little = f"too little data for {', '.join(short)}; each needs {policy.min_samples} pairs"
    why = _waiting_reason(
        verdicts.values(), too_little if short else None, left=left, duration=duration,
        minutes=minutes, policy=policy,
    )  # fmt: skip
    return Verdict("hold", f"hold: {why} ({pairing}).", eta_minutes=eta, **common)


def _evidence(v: GuardrailVerdict) -> str:
    return (
        f"{v.name} {v.reason}: estimate {v.estimate:.4g}, anytime-valid interval "
        f"[{v.low:.4g}, {v.high:.4g}]"
    )


def _data_problem(p: Pairs, srm: stats.SampleRatioResult) -> str | None:
    if p.issues:
        return "the data cannot be trusted: " + "; ".join(p.issues)
    for name, rows in (("stable", p.n + p.unpaired_stable), ("shadow", p.n + p.unpaired_shadow)):
        if rows == 0:
            return f"no {name} tasks in the data yet"
    if p.n == 0:
        return "no shadow row shares its request_id with a stable task yet"
    if srm.mismatch:
        return (
            f"mirror mismatch: the shadow recorded {p.n + p.unpaired_shadow} runs for "
            f"{p.n + p.unpaired_stable} stable tasks (p = {srm.pvalue:.1e}); unrecorded "
            "shadow runs may be its failures"
        )
    return None
