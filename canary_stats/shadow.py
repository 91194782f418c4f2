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
from ._verdict import GuardrailVerdict, Verdict
from .errors import EventsError
from .judge import _bounded_var, _evaluate, _fmt_minutes, _guardrail_verdict, _nz, decide
from .policy import Guardrail, Policy, parse_duration
from .sources.files import load_events
from .stats import SequentialTestResult
from .summary import EVENT_COLUMNS, CohortSummary, Moments, Summary
from .summary import _checks as checks
from .summary._types import COHORTS

__all__ = ["analyze_shadow"]

#: Stable and shadow run the same tasks: each cohort is half of the rows.
_SHARE = 0.5
_STABLE, _CANARY, _SHADOW = (COHORTS.index(c) for c in ("stable", "canary", "shadow"))


@dataclass(frozen=True, slots=True)
class _Runs:
    """One version's runs of the paired tasks, in the order of the pairs."""

    success: np.ndarray
    latency_ms: np.ndarray
    tokens: np.ndarray
    eval_score: np.ndarray  # NaN: not scored

    def cohort(self) -> CohortSummary:
        score = self.eval_score[~np.isnan(self.eval_score)]
        return CohortSummary(
            tasks=float(self.success.size),
            successes=float(np.count_nonzero(self.success)),
            latency=self.latency_ms,
            tokens=Moments.from_values(self.tokens),
            eval_score=Moments.from_values(score),
        )


@dataclass(frozen=True, slots=True)
class _Pairs:
    """Tasks run by both versions, and what could not be paired."""

    stable: _Runs
    shadow: _Runs
    unpaired_stable: int
    unpaired_shadow: int
    issues: tuple[str, ...]
    span: timedelta  # from the first to the last row

    @property
    def n(self) -> int:
        return int(self.stable.success.size)

    def describe(self) -> str:
        text = f"{self.n} paired tasks"
        if self.unpaired_stable or self.unpaired_shadow:
            text += (
                f"; {self.unpaired_stable + self.unpaired_shadow} unpaired rows dropped "
                f"({self.unpaired_stable} stable without a shadow run, "
                f"{self.unpaired_shadow} shadow without a stable task)"
            )
        return text


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
    pairs = _pair(_frame(events))
    span = parse_duration(elapsed, "elapsed") if elapsed is not None else pairs.span
    if span < timedelta(0):
        raise EventsError("elapsed", "must not be negative")
    return _judge_pairs(pairs, policy, stage=stage, elapsed=span)


def _frame(events: Any) -> pd.DataFrame:
    if isinstance(events, str | Path):
        events = load_events(events)
    if not isinstance(events, pd.DataFrame):
        raise EventsError(
            "events", f"expected a DataFrame or a path of raw events; got {type(events).__name__}"
        )
    if {"metric", "field", "value"} <= set(events.columns):
        raise EventsError(
            "events",
            "shadow analysis pairs tasks by request_id: it needs raw events, "
            "not per-window aggregates",
        )
    return events


def _pair(df: pd.DataFrame) -> _Pairs:
    """Validate shadow events and pair each shadow row with its stable task."""
    checks.require_columns(df, (*EVENT_COLUMNS[:5], "request_id"), "shadow events")
    codes = checks.cohort_codes(df["cohort"])
    canaries = int(np.count_nonzero(codes == _CANARY))
    if canaries:
        raise EventsError(
            "cohort",
            f"{canaries} rows are labelled 'canary'; shadow analysis pairs 'stable' with "
            "'shadow' rows (judge a canary with analyze)",
        )
    ts = checks.utc_timestamps(df["ts"], "ts")
    no_success = df["success"].isna().to_numpy()
    success = np.zeros(len(df), dtype=bool)
    if not no_success.all():
        success[~no_success] = checks.success_column(df["success"][~no_success])
    latency = checks.numeric_column(df, "latency_ms", low=0.0, nullable=True)
    tokens = checks.numeric_column(df, "tokens", low=0.0, nullable=True)
    score = (
        checks.numeric_column(df, "eval_score", low=0.0, high=1.0, nullable=True)
        if "eval_score" in df.columns
        else np.full(len(df), np.nan)
    )
    rid = df["request_id"].astype("string")
    keys = rid.fillna("").to_numpy(dtype=object)  # rows without an id are never paired
    has_id = rid.notna().to_numpy()
    for code in (_STABLE, _SHADOW):
        ids = rid[(codes == code) & has_id]
        dup = ids.duplicated()
        if dup.any():
            raise EventsError(
                "request_id",
                f"{int(dup.sum())} duplicated values among {COHORTS[code]} rows "
                f"(first: {ids[dup].iloc[0]!r}); each task must appear once per cohort",
            )
    issues = []
    complete = np.ones(len(df), dtype=bool)
    for name, missing in (
        ("success", no_success),
        ("latency_ms", np.isnan(latency)),
        ("tokens", np.isnan(tokens)),
    ):
        if missing.any():
            issues.append(f"{int(missing.sum())} rows have no {name} (partial data)")
            complete &= ~missing
    stable_rows = np.flatnonzero((codes == _STABLE) & complete)
    shadow_rows = np.flatnonzero((codes == _SHADOW) & complete)
    s_idx, h_idx = stable_rows[has_id[stable_rows]], shadow_rows[has_id[shadow_rows]]
    pos = pd.Index(keys[s_idx]).get_indexer(keys[h_idx])
    hit = pos >= 0
    s_pair, h_pair = s_idx[pos[hit]], h_idx[hit]
    order = ts.iloc[s_pair].argsort(kind="stable").to_numpy()  # by the stable task's end
    s_pair, h_pair = s_pair[order], h_pair[order]

    def runs(rows: np.ndarray) -> _Runs:
        return _Runs(success[rows], latency[rows], tokens[rows], score[rows])

    n = s_pair.size
    span = (ts.max() - ts.min()).floor("us").to_pytimedelta() if len(ts) else timedelta(0)
    unpaired = int(stable_rows.size - n), int(shadow_rows.size - n)
    return _Pairs(runs(s_pair), runs(h_pair), *unpaired, tuple(issues), span)


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


def _guardrail(g: Guardrail, p: _Pairs, summary: Summary, policy: Policy) -> GuardrailVerdict:
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


def _judge_pairs(p: _Pairs, policy: Policy, *, stage: int, elapsed: timedelta) -> Verdict:
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
    left = max(0.0, duration.total_seconds() / 60.0 - minutes) if duration else 0.0
    decision = decide(
        [v.status for v in verdicts.values()],
        [v.enough_data for v in verdicts.values()],
        data_problem=hold_reason is not None,
        mode=mode,
        duration_reached=left <= 0,
        untrusted=bool(p.issues),
    )
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
    if short:
        why = f"too little data for {', '.join(short)}; each needs {policy.min_samples} pairs"
    elif left > 0:
        why = (
            f"no violation proven; the stage's minimum duration ({_fmt_minutes(duration)}) "
            f"is not reached ({minutes:.0f} min elapsed)"
        )
    else:
        pending = ", ".join(v.name for v in verdicts.values() if v.status != "pass")
        why = (
            f"not yet proven within margin: {pending}; a prove stage needs every guardrail to pass"
        )
    return Verdict("hold", f"hold: {why} ({pairing}).", eta_minutes=eta, **common)


def _evidence(v: GuardrailVerdict) -> str:
    return (
        f"{v.name} {v.reason}: estimate {v.estimate:.4g}, anytime-valid interval "
        f"[{v.low:.4g}, {v.high:.4g}]"
    )


def _data_problem(p: _Pairs, srm: stats.SampleRatioResult) -> str | None:
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
