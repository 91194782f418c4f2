"""Per-check user counts and design effects of simulated traffic (the simulator's summaries).

With sticky per-user routing a cohort's tasks come in user clusters: the judge
counts users for the sample-ratio check and shrinks each metric's sample by its
design effect (`canary_stats.summary.ratio_design_effect`). The simulator needs
both at every check of a stage at once: per-user running sums, one row per check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .summary import DesignEffects, UserSums, ratio_design_effect
from .summary._history import per_user_sums
from .summary._users import EXCEEDANCE_QUANTILE

__all__ = ["cohort_users", "running_user_sums"]


def cohort_users(
    user: np.ndarray,
    window: np.ndarray,
    k: int,
    *,
    success: np.ndarray,
    latency: np.ndarray,
    tokens: np.ndarray,
    score: np.ndarray,
) -> tuple[np.ndarray, DesignEffects]:
    """Distinct users and design effects of one cohort at each of ``k`` checks.

    ``window[i]`` is the check from which task ``i`` counts (``k`` = after the
    last); the other arrays hold the cohort's tasks. The latency design effect is
    that of the indicator above the cohort's p95 over the whole stage (the store
    takes the p95 of the data it judges; one stage-wide threshold is close).
    """
    codes = np.unique(user, return_inverse=True)[1]
    users = int(codes.max()) + 1 if codes.size else 0
    if users == 0:
        return np.zeros(k), DesignEffects()

    def running(weights: np.ndarray) -> np.ndarray:
        grid = np.zeros((k + 1, users))
        np.add.at(grid, (window, codes), weights)
        return np.cumsum(grid, axis=0)[:k]  # (checks, users)

    tasks = running(np.ones(codes.size))
    first = np.full(users, k)
    np.minimum.at(first, codes, window)
    seen = np.cumsum(np.bincount(first, minlength=k + 1))[:k].astype(float)
    scored = ~np.isnan(score)
    s0 = np.nan_to_num(score)
    threshold = np.quantile(latency, EXCEEDANCE_QUANTILE) if latency.size else 0.0
    n_scored = running(scored.astype(float))
    deff = DesignEffects(
        success=_deff(running(success.astype(float)), tasks),
        latency=_deff(running((latency > threshold).astype(float)), tasks),
        tokens=_deff(running(tokens), tasks, _task_var(tokens, window, k)),
        eval_score=_deff(running(s0), n_scored, _task_var(s0, window, k, scored)),
    )
    return seen, deff


def _deff(y: np.ndarray, m: np.ndarray, task_var: Any = None) -> Any:
    return ratio_design_effect(y, m, task_var=task_var, axis=-1)


def _task_var(x: np.ndarray, window: np.ndarray, k: int, keep: np.ndarray | None = None) -> Any:
    """Running variance (``ddof=0``) of single tasks' values at each check."""
    w = np.where(keep, 1.0, 0.0) if keep is not None else np.ones(x.size)
    n = np.cumsum(np.bincount(window, weights=w, minlength=k + 1))[:k]
    s1 = np.cumsum(np.bincount(window, weights=w * x, minlength=k + 1))[:k]
    s2 = np.cumsum(np.bincount(window, weights=w * x * x, minlength=k + 1))[:k]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / n
        return np.where(n > 0, np.maximum(s2 / n - mean * mean, 0.0), np.nan)


def running_user_sums(
    user: np.ndarray, window: np.ndarray, k: int, *, tokens: np.ndarray, score: np.ndarray
) -> UserSums:
    """One cohort's per-user sums at each of ``k`` checks (rows), for `adjust_cohorts`."""
    ids, codes = np.unique(user, return_inverse=True)

    def running(weights: np.ndarray) -> np.ndarray:
        grid = np.zeros((k + 1, ids.size))
        np.add.at(grid, (window, codes), weights)
        return np.cumsum(grid, axis=0)[:k]

    return UserSums(ids, *per_user_sums(running, tokens, score))
