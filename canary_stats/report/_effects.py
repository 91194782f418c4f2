"""Effect sizes per rollout (bootstrap, raw events) and the headroom of promoted releases.

Effect sizes compare the canary with the stable release it was judged against,
over the last stage the canary was judged in (that stage's start to the decision),
with the project's bootstrap functions at a fixed seed. One stage, not the whole
rollout: the traffic split changes from stage to stage, and pooling stages would
compare cohorts drawn from different hours (shared diurnal drift would show up
as an effect). They describe; they never decide
(a bootstrap interval re-checked at every look would inflate false alarms).

Headroom (near misses) reads the *final* verdict of each promoted rollout: for
every guardrail not failed, how far the estimate moved from "no change" in the
harmful direction, as a share of the distance from "no change" to the limit.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import duckdb
import numpy as np
import yaml

from ..errors import CanaryStatsError
from ..policy import Guardrail, Policy
from ..stats import Histogram, mean_contrast_bootstrap, quantile_contrast_bootstrap
from ..store._query import Selection, summarize_store
from ..summary import CohortSummary
from ._health import bucket_quantile
from ._model import EffectSize, Headroom, RolloutSummary

__all__ = ["EFFECT_METRICS", "read_effects", "read_headroom"]

#: (key, label, contrast, column, statistic) of each effect size.
EFFECT_METRICS = (
    ("success_rate", "success rate, canary − stable", "difference", "success", "mean"),
    ("p95_latency", "p95 latency, canary / stable", "ratio", "latency_ms", "p95"),
    ("tokens_per_task", "tokens per task, canary / stable", "ratio", "tokens", "mean"),
    ("eval_score", "eval score, canary − stable", "difference", "eval_score", "mean"),
)
_HARM_LESS = ("min", "max_drop", "min_ratio")


def _window(r: RolloutSummary) -> dict[str, Any]:
    start = r.stages[-1].start if r.stages else r.started_at
    return {"stable": r.stable, "canary": r.version, "start": start, "end": r.decided_at}


def read_effects(
    con: duckdb.DuckDBPyConnection,
    rollouts: tuple[RolloutSummary, ...],
    *,
    seed: int,
    confidence_level: float,
    n_resamples: int,
) -> tuple[EffectSize, ...]:
    """Bootstrap effect sizes of every rollout from its raw events."""
    out: list[EffectSize] = []
    for r in rollouts:
        cols = con.execute(
            """
            SELECT cohort = 'canary' AS canary, success::DOUBLE AS success, latency_ms, tokens,
                   eval_score
            FROM events
            WHERE ts >= $start AND ($end IS NULL OR ts < $end)
              AND ((cohort = 'stable' AND release = $stable)
                OR (cohort = 'canary' AND release = $canary))
            """,
            _window(r),
        ).fetchnumpy()
        # DuckDB returns a column with NULLs as a masked array: NULL -> NaN (not evaluated).
        cols = {k: np.ma.filled(np.ma.asarray(v, dtype=float), np.nan) for k, v in cols.items()}
        is_canary = cols["canary"] == 1.0
        why = "" if is_canary.size else _no_events(con, r)
        for j, (key, label, contrast, column, stat) in enumerate(EFFECT_METRICS):
            values = np.asarray(cols[column], dtype=float)
            keep = ~np.isnan(values)
            xs, xc = values[keep & ~is_canary], values[keep & is_canary]
            base = (r.rollout_id, r.version, r.stable, key, label, contrast)
            if why or min(xs.size, xc.size) < 2:
                note = why or f"too few events ({xc.size} canary, {xs.size} stable; need 2 each)"
                out.append(EffectSize(*base, None, None, None, xs.size, xc.size, "", note))
                continue
            # One generator per rollout and metric: adding a rollout changes no other number.
            rng = np.random.default_rng([seed, zlib.crc32(r.rollout_id.encode()), j])
            if stat == "p95":
                res = quantile_contrast_bootstrap(
                    xs,
                    xc,
                    q=0.95,
                    contrast=contrast,
                    confidence_level=confidence_level,
                    n_resamples=n_resamples,
                    rng=rng,
                )
            else:
                res = mean_contrast_bootstrap(
                    xs,
                    xc,
                    contrast=contrast,
                    confidence_level=confidence_level,
                    n_resamples=n_resamples,
                    rng=rng,
                )
            ci = res.confidence_interval
            out.append(
                EffectSize(
                    *base,
                    res.estimate,
                    ci.low,
                    ci.high,
                    xs.size,
                    xc.size,
                    f"{res.method} bootstrap",
                )
            )
    return tuple(out)


def _no_events(con: duckdb.DuckDBPyConnection, r: RolloutSummary) -> str:
    """Why there is nothing to bootstrap: aggregates only, or no data at all."""
    rows = con.execute(
        """
        SELECT count(*) FROM aggregate_rows
        WHERE ((cohort = 'stable' AND release = $stable)
            OR (cohort = 'canary' AND release = $canary))
          AND window_start >= $start AND ($end IS NULL OR window_end <= $end)
        """,
        _window(r),
    ).fetchall()
    if rows and rows[0][0]:
        return (
            "only per-window aggregates are stored for this rollout: the bootstrap needs "
            "raw events (one row per task)"
        )
    return "no events or aggregates of this release pair in the rollout's last stage"


# -- headroom of promoted releases (near misses) ------------------------------------------


def read_headroom(
    con: duckdb.DuckDBPyConnection, rollouts: tuple[RolloutSummary, ...]
) -> tuple[Headroom, ...]:
    """Per guardrail of each promoted rollout's final verdict: the headroom it used."""
    out: list[Headroom] = []
    for r in rollouts:
        if r.outcome != "promoted":
            continue
        rows = con.execute(
            "SELECT verdict FROM verdicts WHERE release = ? AND stable = ? "
            "ORDER BY verdict_id DESC LIMIT 1",
            [r.version, r.stable],
        ).fetchall()
        if not rows:
            continue
        verdict = json.loads(rows[0][0])
        guardrails = _guardrails(con, r)
        stable = _stable_cohort(con, r) if r.stages else None
        for name, m in (verdict.get("metrics") or {}).items():
            if isinstance(m, dict):
                out.append(_headroom(r, str(name), m, guardrails.get(str(name)), stable))
    return tuple(out)


def _guardrails(con: duckdb.DuckDBPyConnection, r: RolloutSummary) -> dict[str, Guardrail]:
    """The release's guardrails (metric and quantile), from its registered manifest."""
    rows = con.execute(
        "SELECT manifest FROM releases WHERE name = ? AND version = ?", [r.name, r.version]
    ).fetchall()
    try:
        policy = Policy.from_dict(yaml.safe_load(rows[0][0])) if rows else None
    except (CanaryStatsError, yaml.YAMLError, TypeError):
        policy = None
    return {} if policy is None else {g.name: g for g in policy.guardrails}


def _stable_cohort(con: duckdb.DuckDBPyConnection, r: RolloutSummary) -> CohortSummary | None:
    """The stable cohort over the window the final verdict saw (its stage, to the decision)."""
    last = r.stages[-1]
    selection = Selection(r.stable, r.version, last.start, r.decided_at)
    try:
        summary = summarize_store(con, selection, failure=None)
    except (CanaryStatsError, duckdb.Error):
        return None
    return summary.stable if summary.stable.tasks else None


def _stable_value(g: Guardrail | None, cohort: CohortSummary | None) -> float | None:
    if g is None or cohort is None:
        return None
    if g.metric == "task_success_rate":
        return float(cohort.successes) / float(cohort.tasks)
    if g.metric == "latency_ms":
        return _quantile(cohort.latency, float(g.quantile or 0.95))
    moments = cohort.tokens if g.metric == "tokens_per_task" else cohort.eval_score
    value = float(moments.mean)
    return value if float(moments.n) > 0 and math.isfinite(value) else None


def _quantile(latency: np.ndarray | Histogram, q: float) -> float | None:
    if isinstance(latency, Histogram):
        return bucket_quantile(latency.upper_bounds, latency.counts, q, latency.lower)
    x = np.asarray(latency, dtype=float)
    return float(np.quantile(x, q)) if x.size else None


def _headroom(
    r: RolloutSummary,
    name: str,
    m: dict[str, Any],
    g: Guardrail | None,
    stable: CohortSummary | None,
) -> Headroom:
    rule, contrast = str(m.get("rule", "")), str(m.get("contrast", ""))
    limit = _float(m.get("limit"))
    margin = _float(m.get("margin", limit))  # the limit on the contrast (a drop is negative)
    est = _float(m.get("estimate"))
    estimate = est if math.isfinite(est) else None
    reference: float | None
    if contrast == "ratio":
        reference, source = 1.0, "no change: ratio 1"
    elif contrast == "difference":
        reference, source = 0.0, "no change: difference 0"
    else:
        reference = _stable_value(g, stable)
        source = "stable cohort" if reference is not None else "stable cohort unknown"
    degradation: float | None = None
    headroom: float | None = None
    used: float | None = None
    if reference is not None and estimate is not None and math.isfinite(margin):
        sign = 1.0 if rule in _HARM_LESS else -1.0  # harm is a lower value for these rules
        degradation = sign * (reference - estimate)
        headroom = sign * (reference - margin)
        used = degradation / headroom if headroom > 0 else None
    return Headroom(
        r.rollout_id,
        r.version,
        name,
        str(m.get("status", "")),
        rule,
        limit,
        estimate,
        reference,
        source,
        degradation,
        headroom,
        used,
    )


def _float(x: Any) -> float:
    return float(x) if isinstance(x, int | float) else math.nan
