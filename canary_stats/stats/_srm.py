"""Sequential sample-ratio tests: the split's level, and its stability within a stage.

References
----------
.. [1] Lindon, Malek (2022). Anytime-valid inference for multinomial count data.
       NeurIPS. arXiv:2011.03567.
.. [2] Fabijan, Gupchup, Gupta, Omhover, Qin, Vermeer, Dmitriev (2019). Diagnosing
       sample ratio mismatch in online controlled experiments. KDD.
.. [3] Wasserman, Ramdas, Balakrishnan (2020). Universal inference. PNAS 117(29).
.. [4] McCullagh, Nelder (1989). Generalized Linear Models, 2nd ed., ch. 9
       (quasi-likelihood: the log-likelihood divided by the dispersion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import signal, special

from ._common import check_alpha, check_counts, check_positive_int, scalar_or_array

__all__ = [
    "SampleRatioResult",
    "ShareStabilityResult",
    "sample_ratio_mismatch",
    "share_stability",
    "window_dispersion",
]


@dataclass(frozen=True, slots=True)
class SampleRatioResult:
    """Outcome of the sequential sample-ratio-mismatch test.

    Attributes
    ----------
    observed_share, expected_share : float or ndarray
        Canary share of the units counted (tasks or users), seen and planned.
    log_evalue : float or ndarray
        Log e-value against "the split is as planned"; a test martingale.
    pvalue : float or ndarray
        ``min(1, exp(-log_evalue))``, valid at this look (take the running minimum
        over looks for an always-valid p-value).
    mismatch : bool or ndarray
        Whether the split is proven different from the plan at level ``alpha``.
    unit : str
        What was counted: ``"tasks"`` or ``"users"`` (the unit of assignment).
    recent_share : float or ndarray
        Canary share of the tasks of the latest windows, where a test of the
        share's stability within the stage took part (else NaN).
    """

    observed_share: Any
    expected_share: float
    log_evalue: Any
    pvalue: Any
    mismatch: Any
    unit: str = "tasks"
    recent_share: Any = math.nan


def sample_ratio_mismatch(
    n_stable: ArrayLike,
    n_canary: ArrayLike,
    *,
    expected_share: float,
    alpha: float = 0.001,
    concentration: float = 100.0,
    dispersion: ArrayLike = 1.0,
    herfindahl: float = 0.0,
) -> SampleRatioResult:
    """Test whether the canary's share of units differs from the planned share.

    Parameters
    ----------
    n_stable, n_canary : array_like
        Counts per cohort since the stage began: users (the unit of assignment),
        or tasks.
    expected_share : float
        Planned canary share in (0, 1), e.g. 0.10 for a 10 % stage.
    alpha : float, default: 0.001
        Level of the mismatch decision, valid over all looks.
    concentration : float, default: 100
        Concentration ``k`` of the alternative's beta mixture ``Beta(k p, k (1 - p))``.
    dispersion : array_like, default: 1
        Quasi-binomial scale ``phi >= 1`` of the counts: both are divided by it, so
        units that arrive in bursts of ``phi`` weigh as one [4]_. 1 for users.
    herfindahl : float, default: 0
        For task counts: the Herfindahl index ``H = sum_i w_i^2`` of the users'
        shares ``w_i`` of the traffic (``1 / H`` is the effective number of equally
        active users). Under the plan the canary's share of tasks is then itself
        random, ``Beta(p (1/H - 1), (1 - p) (1/H - 1))``, and the null is that
        distribution rather than the point ``p``. 0 (the default) is the exact
        split of units assigned one by one. Use a ``concentration`` well below
        ``1/H - 1`` with it, or the alternative is narrower than the null.

    Returns
    -------
    SampleRatioResult

    Notes
    -----
    Conditional on the total, the cohort labels of units are binomial with the
    planned share, whatever the time-varying traffic; the beta-binomial Bayes
    factor of [1]_ is then a test martingale, so a mismatch may be checked at
    every look. Users are counted once each [2]_. Tasks of one user all go to
    the same cohort, so task counts are over-dispersed twice over: bursts within
    a window (``dispersion``) and heavy users whose tasks persist across windows
    (``herfindahl``): the second does not shrink with more data, and no level
    test on task counts can tell it from a real mismatch smaller than it.
    """
    p = float(expected_share)
    if not 0.0 < p < 1.0:
        raise ValueError(f"`expected_share` must be in (0, 1); got {expected_share!r}.")
    alpha = check_alpha(alpha)
    k = check_positive_int(concentration, "concentration")
    phi = np.asarray(dispersion, dtype=float)
    if not np.all(np.isfinite(phi)) or np.any(phi < 1.0):
        raise ValueError("`dispersion` must be finite and >= 1.")
    h = float(herfindahl)
    if not 0.0 <= h < 1.0:
        raise ValueError(f"`herfindahl` must be in [0, 1); got {herfindahl!r}.")
    ns, nc = check_counts(n_stable, "n_stable"), check_counts(n_canary, "n_canary")
    xs, xc = ns / phi, nc / phi
    log_bf = _log_beta_marginal(xc, xs, k * p, k * (1.0 - p))
    if h > 0.0:
        kappa = 1.0 / h - 1.0
        log_bf = log_bf - _log_beta_marginal(xc, xs, kappa * p, kappa * (1.0 - p))
    else:
        log_bf = log_bf - xc * math.log(p) - xs * math.log1p(-p)
    total = ns + nc
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.where(total > 0, nc / total, np.nan)
    mismatch = log_bf >= math.log(1.0 / alpha)
    return SampleRatioResult(
        observed_share=scalar_or_array(observed),
        expected_share=p,
        log_evalue=scalar_or_array(log_bf),
        pvalue=scalar_or_array(np.minimum(1.0, np.exp(-log_bf))),
        mismatch=bool(mismatch) if np.ndim(mismatch) == 0 else mismatch,
    )


def _log_beta_marginal(xc: Any, xs: Any, a: float, b: float) -> Any:
    """Log of ``int p^xc (1 - p)^xs dBeta(a, b)`` (the binomial coefficient left out)."""
    return special.betaln(a + xc, b + xs) - special.betaln(a, b)


@dataclass(frozen=True, slots=True)
class ShareStabilityResult:
    """Outcome of the test that the canary's share stayed the same within a stage.

    Attributes
    ----------
    log_evalue : float or ndarray
        Log e-value against "the share is constant over the windows".
    dispersion : float or ndarray
        The quasi-binomial scale estimated from the windows (>= 1).
    mismatch : bool or ndarray
        Whether a change of the share is proven at level ``alpha``.
    """

    log_evalue: Any
    dispersion: Any
    mismatch: Any


#: Forgetting factors of the alternative's share estimates (memories of about 5, 10,
#: 30, 100 and 300 windows: abrupt and gradual changes); the e-value is their average.
MEMORIES = (0.8, 0.9, 0.97, 0.99, 0.997)


def share_stability(
    n_stable: ArrayLike,
    n_canary: ArrayLike,
    *,
    alpha: float = 0.001,
    expected_share: float = 0.5,
    memories: tuple[float, ...] = MEMORIES,
    min_windows: int = 10,
    axis: int = -1,
) -> ShareStabilityResult:
    """Test whether the canary's share of tasks changed during a stage.

    Sticky routing assigns each user to one cohort for the whole stage. Whatever
    the users' activity, while the users keep their habits the canary's share of
    each window's tasks is then one constant ``pi`` (which heavy users make
    differ from the planned share by chance); a canary that starts dropping
    tasks, or a router whose split moves, changes it. So do heavy users that
    come and go in sessions: the test is for traffic of many steady users.

    Parameters
    ----------
    n_stable, n_canary : array_like
        Task counts per window, in time order along ``axis`` (windows of equal
        length; a window without tasks is allowed).
    alpha : float, default: 0.001
        Level of the decision.
    expected_share : float, default: 0.5
        Planned canary share: the centre of the prior of the first prediction.
    memories : tuple of float, default: `MEMORIES`
        Forgetting factors in (0, 1) of the alternative's running estimates.
    min_windows : int, default: 10
        Fewer windows than this give no evidence (``log_evalue`` 0).
    axis : int, default: -1
        The axis of the windows; other axes are independent series (runs, looks).

    Returns
    -------
    ShareStabilityResult

    Notes
    -----
    Universal inference [3]_: the e-value is ``prod_t q_t(C_t) / sup_pi prod_t
    Bin(C_t; N_t, pi)``, where ``q_t`` is the beta-binomial prediction of window
    ``t`` from the earlier windows, discounted by a forgetting factor so that it
    follows a change. The denominator is at least the likelihood of the true
    ``pi``, so under a constant share the e-value is at most a test martingale,
    at every look. Tasks arrive in bursts, so counts are divided by the
    quasi-binomial scale [4]_, estimated from the squared differences of
    successive windows' shares (a change of level moves one difference only) on
    windows merged by 1, 2 and 4 (at least 8, 30 and 30 of them), whichever is
    largest: bursts that straddle windows show at the coarser scales.
    """
    alpha = check_alpha(alpha)
    p = float(expected_share)
    if not 0.0 < p < 1.0:
        raise ValueError(f"`expected_share` must be in (0, 1); got {expected_share!r}.")
    if not memories or not all(0.0 < g < 1.0 for g in memories):
        raise ValueError("`memories` must be forgetting factors in (0, 1).")
    ns = np.moveaxis(check_counts(n_stable, "n_stable"), axis, -1)
    nc = np.moveaxis(check_counts(n_canary, "n_canary"), axis, -1)
    ns, nc = np.broadcast_arrays(ns, nc)
    n = ns + nc
    phi = np.asarray(window_dispersion(nc, n))
    xc, xn = nc / phi[..., None], n / phi[..., None]
    k_tot, n_tot = xc.sum(-1), xn.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.clip(k_tot / n_tot, 1e-300, 1.0 - 1e-16)
        null = special.xlogy(k_tot, share) + special.xlog1py(n_tot - k_tot, -share)
    prior = 2.0  # pseudo-tasks of the first prediction, centred on the planned share
    logs = []
    for gamma in memories:
        # Discounted counts of the windows before each window (lfilter: stable, any length).
        past_c = signal.lfilter([0.0, 1.0], [1.0, -gamma], xc, axis=-1)
        past_n = signal.lfilter([0.0, 1.0], [1.0, -gamma], xn, axis=-1)
        a, b = prior * p + past_c, prior * (1.0 - p) + (past_n - past_c)
        pred = special.betaln(a + xc, b + xn - xc) - special.betaln(a, b)
        logs.append(pred.sum(-1) - null)
    log_e = special.logsumexp(np.stack(logs), axis=0) - math.log(len(memories))
    windows = np.count_nonzero(n > 0, axis=-1)
    log_e = np.where((windows >= min_windows) & (n_tot > 0), log_e, 0.0)
    mismatch = log_e >= math.log(1.0 / alpha)
    return ShareStabilityResult(
        log_evalue=scalar_or_array(log_e),
        dispersion=scalar_or_array(phi),
        mismatch=bool(mismatch) if np.ndim(mismatch) == 0 else mismatch,
    )


#: Window merges the dispersion is measured on, each needing this many merged windows.
_BLOCKS = {1: 8, 2: 30, 4: 30}


def window_dispersion(nc: ArrayLike, n: ArrayLike) -> Any:
    """Quasi-binomial scale (>= 1) of the windows' canary shares, along the last axis.

    ``nc`` and ``n`` are the canary's and all tasks per window, in time order.

    For windows ``t - 1`` and ``t`` of a constant share ``pi``, the difference of
    their shares has variance ``phi pi (1 - pi) (1/N_(t-1) + 1/N_t)``; ``phi``
    is the mean of the squared differences over that. Computed on windows merged
    by each of `_BLOCKS` (with as many merged windows as it needs), the largest kept.
    """
    nc, n = np.broadcast_arrays(np.asarray(nc, dtype=float), np.asarray(n, dtype=float))
    best = np.ones(n.shape[:-1])
    width = n.shape[-1]
    for block, needed in _BLOCKS.items():
        blocks = width // block
        if blocks < needed:
            break
        cut = blocks * block
        bc = nc[..., :cut].reshape(*nc.shape[:-1], blocks, block).sum(-1)
        bn = n[..., :cut].reshape(*n.shape[:-1], blocks, block).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            pi = bc.sum(-1) / bn.sum(-1)
            share = bc / bn
            d2 = np.diff(share, axis=-1) ** 2
            inv = 1.0 / bn[..., 1:] + 1.0 / bn[..., :-1]
            ok = (bn[..., 1:] > 0) & (bn[..., :-1] > 0)
            scale = (pi * (1.0 - pi))[..., None] * inv
            terms = np.where(ok & (scale > 0), d2 / np.where(scale > 0, scale, 1.0), 0.0)
            count = np.count_nonzero(ok & (scale > 0), axis=-1)
            phi = np.where(count > 0, terms.sum(-1) / np.maximum(count, 1), 1.0)
        best = np.maximum(best, np.nan_to_num(phi, nan=1.0))
    return float(best) if best.ndim == 0 else best
