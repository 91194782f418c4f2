"""Two-sample evidence on a quantile contrast: canary vs stable at the same point.

`quantile_contrast` can prove ``Q_c <= r Q_s`` by comparing the canary's share at
or below ``r L_s`` (``L_s`` a lower bound of the stable quantile) with ``q``: the
errors of the stable bound and of the canary's share then add up *linearly*, and
once the cohorts are of a size (a 50 % stage) the stable bound costs as much as
the canary. The evidence here compares the two cohorts' shares directly, so their
errors add in quadrature.

Let ``t* = Q_s``, so ``F_s(t*) >= q`` and ``F_s(t*-) <= q``. Then

- ``F_c(r t*) >= F_s(t*)`` implies ``F_c(r t*) >= q``, that is ``Q_c <= r Q_s``;
- ``F_c(r t*) < F_s(t*-)`` implies ``F_c(r t*) < q``, that is ``Q_c > r Q_s``.

``t*`` is unknown but fixed. On a fixed grid of cells ``[t_j, t_j+1]``, the
difference of the two cohorts' empirical shares at the ends of the cell that
holds ``t*`` is a two-sample difference of proportions, tested at every look
by a normal mixture ([1]_); a band that covers ``t*`` (the stable quantile's
confidence sequence, at a small share of the level) says which cells may hold
it, and a side is proven only when it is proven in *every* cell of the band.
The false-proof chance is at most that of the band plus that of the one test
in the cell of ``t*``: no union over cells is paid. ``F_c(r t) - F_s(t)`` hardly
moves across the band when the two distributions differ by a scale, so a wide
band costs little. Per-user clustering enters through the design effects.

References
----------
.. [1] Howard, Ramdas, McAuliffe, Sekhon (2021). Time-uniform, nonparametric,
       nonasymptotic confidence sequences. Ann. Statist. 49(2), 1055-1080.
.. [2] Vovk, Wang (2021). E-values: calibration, combination and applications.
       Ann. Statist. 49(3), 1736-1754.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from ._boundaries import normal_mixture_log_evalue
from ._common import Evidence, FloatArray

__all__ = ["GRID_STEP", "MAX_CELLS", "band_levels", "cell_evidence", "mean_evidence"]

#: Log-spacing of the fixed grid used for raw observations (0.5 % steps).
GRID_STEP = 0.005
#: A band spanning more cells than this proves nothing yet (early looks).
MAX_CELLS = 64

#: count(c, largest): observations at or below ``c`` (bounds of it for histograms).
Counter = Callable[[FloatArray, bool], FloatArray]


def _cells(
    low: FloatArray, high: FloatArray, edges: FloatArray | None
) -> tuple[FloatArray, FloatArray]:
    """The grid cells ``[t_j, t_j+1]`` meeting the band, shape ``(MAX_CELLS, *looks)``.

    Cells past the band's last one are NaN; a band that is open, not positive or
    wider than `MAX_CELLS` cells yields no cell at all.
    """
    lo, hi = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi >= lo)
    lo_s, hi_s = np.where(ok, lo, 1.0), np.where(ok, hi, 1.0)
    k = np.arange(MAX_CELLS).reshape((MAX_CELLS,) + (1,) * lo.ndim)
    if edges is None:  # the fixed geometric grid exp(j h)
        first = np.floor(np.log(lo_s) / GRID_STEP)
        last = np.ceil(np.log(hi_s) / GRID_STEP)
        j = first + k
        t_lo, t_hi = np.exp(j * GRID_STEP), np.exp((j + 1) * GRID_STEP)
        count = last - first
    else:  # the histogram's own edges: cells are buckets (with the floor at 0)
        grid = np.concatenate([[0.0], edges[np.isfinite(edges)]])
        first = np.searchsorted(grid, lo_s, side="right") - 1
        last = np.searchsorted(grid, hi_s, side="left")
        ok &= last < grid.size
        j = np.minimum(first + k, grid.size - 2)
        t_lo, t_hi = grid[j], grid[j + 1]
        count = last - first
    ok &= count <= MAX_CELLS
    use = ok & (k < np.maximum(count, 1))
    return np.where(use, t_lo, np.nan), np.where(use, t_hi, np.nan)


def cell_evidence(
    count_s: Counter,
    n_s: FloatArray,
    count_c: Counter,
    n_c: FloatArray,
    *,
    q: float,
    deff: tuple[FloatArray, FloatArray],
    bands: tuple[tuple[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    edges: FloatArray | None,
    ratio: bool,
    rho: tuple[float, float],
) -> Evidence:
    """Log e-values that ``Q_c > value * Q_s`` (violation) and ``<=`` (compliance).

    ``bands`` are the stable quantile's bands for the violation and the
    compliance side (each at its own level); ``edges`` the stable histogram's
    bucket edges, or None for raw observations. ``ratio`` chooses ``r t`` or
    ``t + r`` as the canary's point. Only the harmful direction "greater".
    """
    d_s, d_c = (np.asarray(d, dtype=float) for d in deff)
    ns, nc = np.asarray(n_s, dtype=float), np.asarray(n_c, dtype=float)
    cells = [_cells(*band, edges) for band in bands]
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(q * (1.0 - q) * (d_s / ns + d_c / nc))
        n_eff = ns / d_s + nc / d_c
    empty = ~((ns > 0) & (nc > 0) & np.isfinite(se) & (se > 0))

    def at(t: FloatArray, value: FloatArray) -> FloatArray:
        return value * t if ratio else t + value

    def side(value: FloatArray, violation: bool) -> FloatArray:
        t_lo, t_hi = cells[0] if violation else cells[1]
        present = np.isfinite(t_lo)
        if violation:  # F_c(r t*) <= F_c(r t_hi) < F_s(t_lo) <= F_s(t*-)
            c_point, s_point = at(np.where(present, t_hi, 0.0), value), t_lo
        else:  # F_c(r t*) >= F_c(r t_lo) >= F_s(t_hi) >= F_s(t*)
            c_point, s_point = at(np.where(present, t_lo, 0.0), value), t_hi
        s_point = np.where(present, s_point, 0.0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            share_c = count_c(c_point, violation) / nc
            share_s = count_s(s_point, not violation) / ns
            z = (share_s - share_c if violation else share_c - share_s) / se
            log_e = normal_mixture_log_evalue(z, n_eff, rho=rho[0] if violation else rho[1])
        log_e = np.where(present, log_e, np.inf)  # the minimum runs over present cells
        weakest = np.min(log_e, axis=0)
        proven_nowhere = ~np.any(present, axis=0)
        out = np.where(proven_nowhere | empty, 0.0, weakest)
        return np.where(np.isnan(out), 0.0, out)

    def evidence(value: ArrayLike) -> tuple[FloatArray, FloatArray]:
        v = np.asarray(value, dtype=float)
        return side(v, True), side(v, False)

    return evidence


def band_levels(fail: float, pass_: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per-side levels of the two bands: each side of a band gets half of its level."""
    return (0.5 * fail, 0.5 * fail), (0.5 * pass_, 0.5 * pass_)


def mean_evidence(first: Evidence, second: Evidence) -> Evidence:
    """The average of two e-processes: one again, about as strong as the better one.

    Costs ``log 2`` of evidence against the better alone ([2]_: the mean of e-values
    is an e-value, and of test supermartingales a test supermartingale).
    """
    half = float(np.log(0.5))

    def evidence(value: ArrayLike) -> tuple[FloatArray, FloatArray]:
        (v1, c1), (v2, c2) = first(value), second(value)
        return np.logaddexp(v1, v2) + half, np.logaddexp(c1, c2) + half

    return evidence
