"""The user as the unit of assignment: user ids checked, design effects from per-user sums.

The router assigns users, not tasks, so a heavy user's tasks all land in one
cohort and are correlated (shared success propensity, task mix, token habits).
A cohort's estimate of a ratio metric ``sum(y) / sum(m)`` over its users then
has the delta-method variance of Deng, Knoblich & Lu [1]_, computed from
per-user sums, and the design effect is its ratio to the variance independent
tasks would give.

References
----------
.. [1] Deng, Knoblich, Lu (2018). Applying the delta method in metric analytics:
       a practical guide with novel ideas. KDD.
.. [2] Kish (1965). Survey Sampling. Wiley (the design effect).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike

from ..errors import EventsError
from ._checks import text_column
from ._types import DesignEffects

__all__ = [
    "EXCEEDANCE_QUANTILE",
    "check_user_ids",
    "cohort_users",
    "design_effect",
    "ratio_design_effect",
    "user_codes",
    "user_ids",
]

#: The latency design effect is that of the indicator ``latency > this quantile``.
EXCEEDANCE_QUANTILE = 0.95

_FIX = "give every row one, or drop the column"


def check_user_ids(ids: pa.Array | pa.ChunkedArray) -> bool:
    """Whether the column holds user ids; refuse one that holds them on some rows only.

    A column that is null on every row (or has no rows) holds none. Otherwise
    every row needs a non-empty id: a null, empty or blank (whitespace only) id
    among ids is an `EventsError` naming ``user_id``, how many rows and the first.
    """
    n = len(ids)
    missing = ids.null_count
    if n == 0 or missing == n:
        return False
    if missing:
        row = _first(pc.is_null(ids))
        raise EventsError(
            "user_id", f"{missing:,} of {n:,} rows have no user id (e.g. row {row + 1}); {_FIX}"
        )
    blank = pc.or_(pc.equal(pc.binary_length(ids), 0), pc.utf8_is_space(ids))
    count = pc.sum(blank).as_py() or 0
    if count:
        row = _first(blank)
        raise EventsError(
            "user_id",
            f"{count:,} of {n:,} rows have an empty or blank user id (e.g. "
            f"{ids[row].as_py()!r} in row {row + 1}); give every row a non-empty one, "
            "or drop the column",
        )
    return True


def _first(flags: pa.Array | pa.ChunkedArray) -> int:
    """Position of the first true value (there is one)."""
    return int(pc.index(flags, True).as_py())


def user_ids(events: pd.DataFrame) -> pa.Array | pa.ChunkedArray | None:
    """The checked ``user_id`` column as Arrow text, or None when there are no user ids."""
    if "user_id" not in events.columns:
        return None
    ids = text_column(events, "user_id")
    return ids if check_user_ids(ids) else None


def user_codes(events: pd.DataFrame) -> tuple[np.ndarray, int, np.ndarray] | None:
    """Each row's user as an integer in ``[0, users)``, ``users``, and each code's id (text).

    None without ids.
    """
    if user_ids(events) is None:
        return None
    col = events["user_id"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        labels = np.asarray(col.cat.categories.astype(str), dtype=object)
        return codes.astype(np.intp, copy=False), len(labels), labels
    codes, uniques = pd.factorize(col)
    labels = np.asarray(pd.Index(uniques).astype(str), dtype=object)
    return np.asarray(codes, dtype=np.intp), len(uniques), labels


def ratio_design_effect(
    y: ArrayLike, m: ArrayLike, *, task_var: ArrayLike | None = None, axis: int = -1
) -> Any:
    """Design effect of per-user routing on a ratio metric ``sum(y) / sum(m)``.

    Parameters
    ----------
    y, m : array_like
        Per-user sums, users along ``axis``: the metric's total (successes, tokens,
        scores) and the number of tasks it is over (tasks, scored tasks). Users with
        ``m = 0`` count for nothing (they may pad a fixed-size array).
    task_var : array_like, optional
        Variance (``ddof=0``) of the metric over single tasks; default
        ``R (1 - R)`` with ``R = sum(y) / sum(m)``, right for 0/1 values.
        Broadcast against the result.
    axis : int, default: -1
        The axis of the users; the others are independent series (looks, runs).

    Returns
    -------
    float or ndarray
        ``deff >= 1``; 1 where fewer than two users have tasks or the metric does
        not vary.

    Notes
    -----
    The delta-method variance of ``R`` over ``U`` users [1]_ is
    ``U/(U-1) * sum_i (y_i - R m_i)^2 / M^2`` with ``M = sum(m)``; independent
    tasks give ``s^2 / M`` with ``s^2 = M/(M-1) * task_var``. The design effect is
    their ratio [2]_, which is exactly 1 when every user has one task. It is
    clamped to at least 1: clustering never earns a narrower interval than
    independent tasks would.
    """
    yy = np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    mm = np.moveaxis(np.asarray(m, dtype=float), axis, -1)
    yy, mm = np.broadcast_arrays(yy, mm)
    total_m = mm.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = yy.sum(-1) / total_m
        resid = yy - ratio[..., None] * mm
    ss = np.einsum("...i,...i->...", resid, resid)
    var = ratio * (1.0 - ratio) if task_var is None else task_var
    return design_effect(np.count_nonzero(mm > 0, axis=-1), total_m, ss, var)


def design_effect(
    users: ArrayLike, tasks: ArrayLike, residual_ss: ArrayLike, task_var: ArrayLike
) -> Any:
    """`ratio_design_effect` from its sufficient statistics (the store computes them in SQL).

    ``users`` with tasks, their ``tasks`` (``M``), ``residual_ss`` =
    ``sum_i (y_i - R m_i)^2`` and the per-task variance (``ddof=0``).
    """
    u, big_m, ss, var = (np.asarray(x, dtype=float) for x in (users, tasks, residual_ss, task_var))
    with np.errstate(divide="ignore", invalid="ignore"):
        deff = (u / (u - 1.0)) / (big_m / (big_m - 1.0)) * ss / (big_m * var)
    ok = (u >= 2) & np.isfinite(deff)
    out = np.where(ok, np.maximum(deff, 1.0), 1.0)
    return float(out) if out.ndim == 0 else out


def cohort_users(
    user: np.ndarray,
    n_users: int,
    *,
    success: np.ndarray,
    latency: np.ndarray | None = None,
    tokens: np.ndarray | None = None,
    tokens_var: float = 0.0,
    score: np.ndarray | None = None,
    score_var: float = 0.0,
) -> tuple[float, DesignEffects]:
    """Distinct users and the design effects of one cohort's tasks.

    ``user`` holds each task's user code (`user_codes`), the other arrays that
    task's values (``score`` NaN where not scored). A metric given as None keeps
    its design effect at 1. The latency design effect is that of the indicator
    ``latency > q`` with ``q`` the cohort's `EXCEEDANCE_QUANTILE` (linear
    interpolation, as ``numpy.quantile``).
    """
    m = np.bincount(user, minlength=n_users).astype(float)
    present = np.flatnonzero(m)
    m = m.take(present)

    def sums(weights: np.ndarray) -> np.ndarray:
        return np.bincount(user, weights=weights, minlength=n_users).take(present)

    design = {"success": ratio_design_effect(sums(success), m)}
    if latency is not None and latency.size:
        above = latency > np.quantile(latency, EXCEEDANCE_QUANTILE)
        design["latency"] = ratio_design_effect(sums(above), m)
    if tokens is not None and tokens.size:
        design["tokens"] = ratio_design_effect(sums(tokens), m, task_var=tokens_var)
    if score is not None and score.size:
        scored = ~np.isnan(score)
        design["eval_score"] = ratio_design_effect(
            sums(np.where(scored, score, 0.0)), sums(scored), task_var=score_var
        )
    return float(present.size), DesignEffects(**design)
