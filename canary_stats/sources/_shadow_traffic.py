"""Synthetic shadow traffic: every stable task mirrored to a shadow version.

Each task has a difficulty per metric that both of its runs share: a hard task
is slow, costly, likely to fail and scored low whoever runs it. A run's latent
value is ``sqrt(c) h + sqrt(1 - c) e`` with the task's ``h`` and the run's own
noise ``e`` (both standard normal), so the two runs of a task are correlated
with coefficient ``c`` on the latent scale. That correlation is what a paired
analysis exploits. Each metric keeps the marginal distribution of
`canary_stats.sources.synthetic` (the stable cohort looks exactly like its
stable cohort); the `Regression` applies to the shadow runs only.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from scipy import special

from .synthetic import Regression, Workload, _drift

__all__ = ["generate_shadow_events"]

#: Latent rows: success, latency, tokens, eval score.
_SUCCESS, _LATENCY, _TOKENS, _EVAL = range(4)


def generate_shadow_events(
    workload: Workload,
    *,
    regression: Regression = Regression(),  # noqa: B008 (frozen, immutable default)
    duration: timedelta,
    start: datetime | None = None,
    rng: np.random.Generator | int | None = None,
    correlation: float = 0.8,
) -> pd.DataFrame:
    """Raw events for ``duration`` of traffic, each task run by stable and by the shadow.

    Parameters
    ----------
    workload : Workload
        Arrival rate (with its diurnal drift) and the stable metric distributions.
    regression : Regression, optional
        How the shadow differs from stable (default: not at all).
    duration : timedelta
        Length of the traffic.
    start : datetime, optional
        Time of the first possible task (default: 2026-11-23 08:00 UTC).
    rng : numpy Generator or seed, optional
        Source of randomness.
    correlation : float, default: 0.8
        Correlation in [0, 1] of a task's two runs on the latent scale.

    Returns
    -------
    DataFrame
        Two rows per task (``cohort`` ``"stable"`` and ``"shadow"``) sharing a
        ``request_id``, sorted by ``ts``. Both runs start together; each row's
        ``ts`` is its own end. A task is evaluated for both runs or for neither
        (``eval_score`` NaN).
    """
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"`correlation` must be in [0, 1]; got {correlation!r}.")
    regression.check(workload)
    gen = np.random.default_rng(rng)
    start = start or datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    minutes = duration.total_seconds() / 60
    per_minute = np.arange(math.ceil(minutes), dtype=float)
    rate = workload.tasks_per_minute * (1 + _drift(workload, per_minute + 0.5, 0.0))
    counts = gen.poisson(np.maximum(rate, 0.0))
    t = np.repeat(per_minute, counts) + gen.random(int(counts.sum()))
    t = t[t < minutes]
    n = t.size
    drift = _drift(workload, t, 0.0)
    task = gen.standard_normal((4, n))
    shared, own = math.sqrt(correlation), math.sqrt(1.0 - correlation)
    evaluated = gen.random(n) < workload.eval_rate
    runs = {
        cohort: _run(
            workload, reg, drift, shared * task + own * gen.standard_normal((4, n)), evaluated, gen
        )
        for cohort, reg in (("stable", Regression()), ("shadow", regression))
    }
    began = t - runs["stable"]["latency_ms"] / 60_000.0  # the mirror starts with the task
    ends = {"stable": t, "shadow": began + runs["shadow"]["latency_ms"] / 60_000.0}
    request_id = np.array([f"req-{i:08d}" for i in range(n)], dtype=object)
    frames = [
        pd.DataFrame(
            {
                "ts": pd.Timestamp(start) + pd.to_timedelta(ends[cohort], unit="min"),
                "cohort": cohort,
                "success": run["success"],
                "latency_ms": run["latency_ms"].round(1),
                "tokens": run["tokens"],
                "eval_score": run["eval_score"],
                "request_id": request_id,
            }
        )
        for cohort, run in runs.items()
    ]
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values("ts", kind="stable", ignore_index=True)


def _run(
    workload: Workload,
    reg: Regression,
    drift: np.ndarray,
    latent: np.ndarray,
    evaluated: np.ndarray,
    gen: np.random.Generator,
) -> dict[str, np.ndarray]:
    """One version's runs of every task, from their latent values (higher: harder)."""
    n = drift.size
    p_fail = np.clip((1 - workload.success_rate) * (1 + drift) + reg.success_drop, 0.0, 1.0)
    # The hardest share p_fail of the latent distribution fails: P(fail) is exactly p_fail.
    success = special.ndtr(latent[_SUCCESS]) < 1.0 - p_fail
    latency = (
        workload.latency_median_ms
        * (1 + drift)
        * np.exp(workload.latency_sigma * latent[_LATENCY])
        * reg.latency_factor
    )
    tail = gen.random(n) < reg.tail_share
    latency[tail] *= reg.tail_factor
    tokens = (
        workload.tokens_median
        * (1 + 0.5 * drift)
        * np.exp(workload.tokens_sigma * latent[_TOKENS])
        * reg.token_factor
    )
    tokens = np.minimum(np.round(tokens), workload.max_tokens)
    mean = float(np.clip(workload.eval_mean - reg.eval_drop, 1e-3, 1 - 1e-3))
    k = workload.eval_concentration
    # Beta marginal through the normal quantile (a Gaussian copula); hard tasks score low.
    score = np.full(n, np.nan)  # not evaluated
    score[evaluated] = special.betaincinv(
        mean * k, (1 - mean) * k, special.ndtr(-latent[_EVAL][evaluated])
    )
    return {"success": success, "latency_ms": latency, "tokens": tokens, "eval_score": score}
