"""Users' history before the rollout as a covariate: less variance from who landed where.

With sticky per-user routing, most of the spread of a cohort's mean tokens or eval
score comes from *which* users the router put in it: a heavy user who spends
twice the tokens moves the cohort's mean by as much as a regression would. Each
user's own mean before the rollout (when every user was on stable) predicts that
user's level, so subtracting it, scaled by a slope fitted on both cohorts, removes
the users' differences and keeps the release's: the CUPED estimator of Deng, Xu,
Kohavi & Walker [1]_ on per-user sums, with the delta-method variance of [2]_.

For cohort ``g`` with per-user sums ``y_i`` over ``m_i`` tasks (or scored tasks)
and covariate ``x_i`` (the user's earlier mean, shrunk toward the pooled mean by
`SHRINK_TASKS` pseudo-tasks), ``R_g = sum(y) / sum(m)`` and ``X_g = sum(m x) /
sum(m)``. The adjusted estimate is ``R_g - theta (X_g - X)`` with ``X`` the
task-weighted covariate mean of both cohorts together (all users, so it does not
depend on who landed where) and ``theta`` the pooled least-squares slope of the
residuals ``y_i - R_g m_i`` on ``m_i (x_i - X_g)``. Its variance is
``U_g / (U_g - 1) * sum_i (e_i - theta z_i)^2 / M_g^2``, reported as a design
effect (ratio to the variance of independent tasks), which may now be below 1.
Random assignment of users makes ``X_g - X`` zero on average, so the adjustment
moves no estimate on average; it only removes noise.

References
----------
.. [1] Deng, Xu, Kohavi, Walker (2013). Improving the sensitivity of online
       controlled experiments by utilizing pre-experiment data. WSDM.
.. [2] Deng, Knoblich, Lu (2018). Applying the delta method in metric analytics:
       a practical guide with novel ideas. KDD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ._types import Adjustment, CohortSummary

__all__ = [
    "HISTORY_METRICS",
    "MIN_HISTORY_USERS",
    "SHRINK_TASKS",
    "HistoryAdjustment",
    "UserHistory",
    "UserSums",
    "adjust_cohorts",
    "history_adjustment",
    "per_user_sums",
]

#: The metrics adjusted by users' history (means of per-task values). Success is
#: judged by exact counts and latency by a quantile; neither is adjusted.
HISTORY_METRICS = ("tokens_per_task", "eval_score")
#: A user's earlier mean counts as this many pseudo-tasks at the pooled mean, so a
#: user seen once before is barely trusted and a user never seen gets the pool's.
SHRINK_TASKS = 1.0
#: Below this many users with history in either cohort, nothing is adjusted.
MIN_HISTORY_USERS = 30


def per_user_sums(
    add: Callable[[np.ndarray], Any], tokens: ArrayLike, eval_score: ArrayLike
) -> tuple[Any, Any, Any, Any]:
    """Tasks, tokens, scored tasks and scores (NaN: not scored), each summed per user by ``add``."""
    score = np.asarray(eval_score, dtype=float)
    scored = ~np.isnan(score)
    return (
        add(np.ones(score.size)),
        add(np.asarray(tokens, dtype=float)),
        add(scored.astype(float)),
        add(np.where(scored, score, 0.0)),
    )


@dataclass(frozen=True, slots=True)
class UserHistory:
    """Each user's tasks before the rollout: per-user counts and sums of the mean metrics.

    ``ids`` are sorted and unique (strings from events, integers in simulations);
    ``tokens_n``/``tokens_sum`` count and add up their tasks' tokens,
    ``eval_n``/``eval_sum`` their scored tasks' eval scores.
    """

    ids: np.ndarray
    tokens_n: np.ndarray
    tokens_sum: np.ndarray
    eval_n: np.ndarray
    eval_sum: np.ndarray

    @property
    def users(self) -> int:
        return int(self.ids.size)

    @classmethod
    def empty(cls) -> UserHistory:
        z = np.zeros(0)
        return cls(np.array([], dtype=object), z, z, z, z)

    @classmethod
    def from_values(cls, user: ArrayLike, tokens: ArrayLike, eval_score: ArrayLike) -> UserHistory:
        """From one row per earlier task: its user, tokens and eval score (NaN: not scored)."""
        # Hash, then sort the few distinct ids (np.unique would sort every row's).
        codes, uniques = pd.factorize(np.asarray(user))
        order = np.argsort(np.asarray(uniques), kind="stable")
        ids = np.asarray(uniques)[order]
        codes = np.argsort(order)[codes]
        n = ids.size

        def add(w: np.ndarray) -> np.ndarray:
            return np.bincount(codes, weights=w, minlength=n)

        return cls(ids, *per_user_sums(add, tokens, eval_score))

    @classmethod
    def from_events(cls, events: pd.DataFrame) -> UserHistory:
        """From raw events: the stable cohort's rows with a user id (the others are not history)."""
        if "user_id" not in events.columns or not len(events):
            return cls.empty()
        rows = events[(events["cohort"].astype(str) == "stable") & events["user_id"].notna()]
        score = (
            pd.to_numeric(rows["eval_score"], errors="coerce").to_numpy(dtype=float)
            if "eval_score" in rows.columns
            else np.full(len(rows), np.nan)
        )
        return cls.from_values(
            rows["user_id"].astype(str).to_numpy(),
            pd.to_numeric(rows["tokens"], errors="coerce").to_numpy(dtype=float),
            score,
        )

    def covariate(self, ids: ArrayLike, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Each of ``ids``' shrunk earlier mean of ``metric``, and whether it has history."""
        n, total = (
            (self.tokens_n, self.tokens_sum)
            if metric == "tokens_per_task"
            else (self.eval_n, self.eval_sum)
        )
        want = np.asarray(ids)
        if not self.ids.size or n.sum() <= 0 or not want.size:
            return np.full(want.shape, np.nan), np.zeros(want.shape, dtype=bool)
        pooled = total.sum() / n.sum()
        at = np.clip(np.searchsorted(self.ids, want), 0, self.ids.size - 1)
        known = self.ids[at] == want
        n_i = np.where(known, n[at], 0.0)
        s_i = np.where(known, total[at], 0.0)
        x = (s_i + SHRINK_TASKS * pooled) / (n_i + SHRINK_TASKS)
        return x, known & (n_i > 0)


@dataclass(frozen=True, slots=True)
class HistoryAdjustment:
    """What users' history does to each cohort's mean: a shift and a design effect.

    ``shift_*`` is added to the cohort's mean; ``deff_*`` is the adjusted
    estimate's variance over that of independent tasks. ``applied`` is False (and
    the shifts 0) where there was too little history: the caller keeps its own
    design effects there. Floats, or arrays of one value per look.
    """

    shift_stable: Any
    shift_canary: Any
    deff_stable: Any
    deff_canary: Any
    theta: Any
    applied: Any


def history_adjustment(
    stable: tuple[ArrayLike, ArrayLike, ArrayLike],
    canary: tuple[ArrayLike, ArrayLike, ArrayLike],
    *,
    task_var: tuple[ArrayLike, ArrayLike],
    known: tuple[ArrayLike, ArrayLike] | None = None,
    min_users: int = MIN_HISTORY_USERS,
) -> HistoryAdjustment:
    """The CUPED shift and design effect of both cohorts' means (see the module notes).

    Parameters
    ----------
    stable, canary : tuple of array_like
        ``(y, m, x)`` per cohort, users along the last axis: each user's sum of the
        metric and number of tasks in the data judged (leading axes: looks), and
        the user's covariate (broadcast). Users with ``m = 0`` count for nothing.
    task_var : tuple of array_like
        Variance (``ddof=0``) of single tasks' values, stable then canary.
    known : tuple of array_like, optional
        Per user, whether the covariate comes from history (default: all do); a
        cohort needs ``min_users`` such users with tasks for the adjustment.
    """
    parts = []
    for (y, m, x), has in zip((stable, canary), known or (True, True), strict=True):
        yy, mm = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(m, dtype=float))
        xx = np.broadcast_to(np.asarray(x, dtype=float), mm.shape)
        hh = np.broadcast_to(np.asarray(has, dtype=bool), mm.shape)
        parts.append((yy, mm, np.nan_to_num(xx), np.count_nonzero(hh & (mm > 0), axis=-1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        grand = sum(np.einsum("...i,...i->...", m, x) for _, m, x, _ in parts) / sum(
            m.sum(-1) for _, m, _, _ in parts
        )
        cross: Any = 0.0
        sq: Any = 0.0
        pieces = []
        for y, m, x, _ in parts:
            big_m = m.sum(-1)
            ratio, cov = y.sum(-1) / big_m, np.einsum("...i,...i->...", m, x) / big_m
            e = y - ratio[..., None] * m
            z = m * (x - cov[..., None])
            cross = cross + np.einsum("...i,...i->...", e, z)
            sq = sq + np.einsum("...i,...i->...", z, z)
            pieces.append((big_m, cov, e, z, np.count_nonzero(m > 0, axis=-1)))
        theta = cross / sq
        out = []
        for (big_m, cov, e, z, users), var in zip(pieces, task_var, strict=True):
            r = e - theta[..., None] * z
            v = users / (users - 1.0) * np.einsum("...i,...i->...", r, r) / (big_m * big_m)
            iid = big_m / (big_m - 1.0) * np.asarray(var, dtype=float) / big_m
            out.append((-theta * (cov - grand), v / iid))
    ok = np.isfinite(theta) & (parts[0][3] >= min_users) & (parts[1][3] >= min_users)
    for shift, deff in out:
        ok = ok & np.isfinite(shift) & np.isfinite(deff) & (deff > 0)
    (s_s, d_s), (s_c, d_c) = out
    return HistoryAdjustment(
        _pick(ok, s_s, 0.0),
        _pick(ok, s_c, 0.0),
        _pick(ok, d_s, 1.0),
        _pick(ok, d_c, 1.0),
        _pick(ok, theta, 0.0),
        ok.item() if np.ndim(ok) == 0 else ok,
    )


def _pick(ok: Any, value: Any, fallback: float) -> Any:
    a = np.where(ok, value, fallback)
    return float(a) if a.ndim == 0 else a


@dataclass(frozen=True, slots=True)
class UserSums:
    """One cohort's per-user sums in the data judged, users along the last axis.

    ``ids`` the users (as in `UserHistory.ids`); ``tokens_n``/``tokens_sum`` their
    tasks and tokens, ``eval_n``/``eval_sum`` their scored tasks and scores.
    Leading axes (looks, in simulations) broadcast against the ids.
    """

    ids: np.ndarray
    tokens_n: Any
    tokens_sum: Any
    eval_n: Any
    eval_sum: Any


def adjust_cohorts(
    stable: CohortSummary,
    canary: CohortSummary,
    sums: tuple[UserSums, UserSums],
    history: UserHistory,
) -> tuple[CohortSummary, CohortSummary]:
    """Both cohorts with their mean metrics adjusted by users' history, where there is enough.

    Each metric of `HISTORY_METRICS` gets its shift (`Adjustment`) and its adjusted
    design effect; where the adjustment does not apply, the cohort keeps its own.
    """
    shifts: dict[str, dict[str, Any]] = {"stable": {}, "canary": {}}
    deffs: dict[str, dict[str, Any]] = {"stable": {}, "canary": {}}
    for metric, n_field, s_field, field_name in (
        ("tokens_per_task", "tokens_n", "tokens_sum", "tokens"),
        ("eval_score", "eval_n", "eval_sum", "eval_score"),
    ):
        moments = [getattr(c, field_name) for c in (stable, canary)]
        if any(np.all(np.asarray(mo.n, dtype=float) <= 0) for mo in moments):
            continue
        args = []
        knowns = []
        for s in sums:
            x, known = history.covariate(s.ids, metric)
            args.append((getattr(s, s_field), getattr(s, n_field), x))
            knowns.append(known)
        adj = history_adjustment(
            args[0],
            args[1],
            task_var=(moments[0].var, moments[1].var),
            known=(knowns[0], knowns[1]),
        )
        for name, cohort, shift, deff in (
            ("stable", stable, adj.shift_stable, adj.deff_stable),
            ("canary", canary, adj.shift_canary, adj.deff_canary),
        ):
            own = getattr(cohort.design, field_name)
            shifts[name][field_name] = shift
            deffs[name][field_name] = (
                np.where(adj.applied, deff, own)
                if np.ndim(adj.applied)
                else (deff if adj.applied else own)
            )
    out = []
    for name, cohort in (("stable", stable), ("canary", canary)):
        out.append(
            replace(
                cohort,
                design=replace(cohort.design, **deffs[name]),
                adjustment=Adjustment(**shifts[name]),
            )
        )
    return out[0], out[1]
