"""Guardrail tests on a quantile (p95 latency): against a bound, and canary vs stable.

Both rest on one fact: ``Q(q) > c`` exactly when ``P(X <= c) < q``. So "the
canary's p95 is above ``c``" is a statement about one proportion, the share of
canary tasks at or below ``c``, and a one-sided beta-binomial mixture tests it at
every look ([1]_, Sec. 3; [2]_). For canary vs stable, two tests are averaged
(the mean of e-processes is one): the canary's share at or below the margin
applied to a time-uniform band on the *stable* quantile, against ``q`` ([3]_,
§9.3), and the two cohorts' shares compared at the same point
(`_quantile_cells`), whose errors add in quadrature; the first wins where ties
put a large atom at the stable quantile, the second once the cohorts are of a
size.

References
----------
.. [1] Howard, Ramdas (2022). Sequential estimation of quantiles with applications
       to A/B-testing and best-arm identification. Bernoulli 28(3), 1704-1728.
.. [2] Robbins (1970). Statistical methods related to the law of the iterated
       logarithm. Ann. Math. Statist. 41(5), 1397-1409.
.. [3] canary_stats reference notes, statistics §9.3 (exceedance of a scaled
       stable quantile bound).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._boundaries import beta_binomial_log_evalue, mixture_precision
from ._common import (
    Alternative,
    ConfidenceInterval,
    Evidence,
    FloatArray,
    SequentialTestResult,
    absolute_result,
    bound_levels,
    check_alpha,
    check_positive_int,
    clean_log_evidence,
    decision_iv,
    scalar_or_array,
    status_from_bounds,
    status_from_evidence,
)
from ._quantile_cells import band_levels, cell_evidence, mean_evidence
from ._quantiles import Histogram, _quantile_iv, _sequence
from ._stages import invert_evidence

__all__ = ["quantile_bound", "quantile_contrast"]

#: count_le(c, largest): observations at or below ``c``; for histograms, whose
#: counts are known at bucket edges only, the largest (or smallest) count possible.
Counter = Callable[[FloatArray, bool], FloatArray]


def _counter(data: Any) -> tuple[Counter, FloatArray]:
    """How many observations lie at or below a point, and how many there are."""
    if isinstance(data, Histogram):
        edges, counts = data.upper_bounds, np.asarray(data.counts, dtype=float)

        def from_buckets(c: FloatArray, largest: bool) -> FloatArray:
            shape = np.broadcast_shapes(np.shape(c), counts.shape[:-1])
            c_b = np.broadcast_to(c, shape)
            if largest:  # every observation of the bucket holding c may lie below it
                j = np.minimum(np.searchsorted(edges, c_b, side="left"), edges.size - 1)
            else:  # only buckets that end at or below c surely do
                j = np.searchsorted(edges, c_b, side="right") - 1
            grid = np.broadcast_to(counts, (*shape, edges.size))
            got = np.take_along_axis(grid, np.maximum(j, 0)[..., None], axis=-1)[..., 0]
            return np.where(j < 0, 0.0, got)

        return from_buckets, np.asarray(data.n, dtype=float)
    x = np.asarray(data, dtype=float)
    ordered: list[FloatArray] = []

    def from_samples(c: FloatArray, largest: bool) -> FloatArray:
        c_a = np.asarray(c, dtype=float)
        if c_a.ndim == 0:  # one point (a decision): one pass, no sort
            return np.asarray(float(np.count_nonzero(x <= c_a)))
        if not ordered:  # many points (an interval's search): sort once
            ordered.append(np.sort(x))
        return np.searchsorted(ordered[0], c_a, side="right").astype(float)

    return from_samples, np.asarray(float(x.size))


def _exceedance_evidence(
    count: Counter,
    n: FloatArray,
    q: float,
    deff: FloatArray,
    k_fail: float,
    k_pass: float,
    alternative: Alternative,
    threshold: Callable[[FloatArray, bool], FloatArray],
) -> Evidence:
    """Log e-values that the quantile lies above / below ``threshold(value, harmful)``.

    ``Q > c`` is tested by few observations at or below ``c`` (``P(X <= c) < q``),
    ``Q <= c`` by many (``P(X <= c) > q``); counts are shrunk by the design effect
    (the effective sample of user-clustered data).
    """

    def evidence(value: ArrayLike) -> tuple[FloatArray, FloatArray]:
        v = np.asarray(value, dtype=float)
        c_fail, c_pass = threshold(v, True), threshold(v, False)
        above_fail = alternative == "greater"  # the harmful side is "above"
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s_fail = count(c_fail, above_fail) / deff
            s_pass = count(c_pass, not above_fail) / deff
            n_eff = n / deff
            violation = beta_binomial_log_evalue(
                s_fail, n_eff, q, alternative="less" if above_fail else "greater",
                concentration=k_fail,
            )  # fmt: skip
            compliance = beta_binomial_log_evalue(
                s_pass, n_eff, q, alternative="greater" if above_fail else "less",
                concentration=k_pass,
            )  # fmt: skip
        empty = n <= 0
        return clean_log_evidence(violation, empty), clean_log_evidence(compliance, empty)

    return evidence


def quantile_bound(
    data: ArrayLike | Histogram,
    *,
    q: float = 0.95,
    bound: float,
    alternative: str = "greater",
    alpha: float = 0.05,
    alpha_pass: float | None = None,
    n_tune: float = 1_000,
    design_effect: ArrayLike = 1.0,
) -> SequentialTestResult:
    """Test the canary's ``q``-quantile against an absolute bound at every look.

    ``bound=8000, alternative="greater"`` reads "p95 latency at most 8000 ms":
    ``fail`` once the lower bound of the quantile's confidence sequence exceeds
    8000, ``pass`` once the upper bound is below it. See
    `quantile_confidence_sequence` for the construction. ``design_effect`` (at
    least 1) shrinks the sample to its effective size when observations come in
    correlated clusters (tasks of one user).
    """
    bound, alt, alpha, alpha_pass = decision_iv(bound, alternative, alpha, alpha_pass, "bound")
    n_tune = check_positive_int(n_tune, "n_tune")
    deff = _deff_iv(design_effect, "design_effect")
    a_low, a_high = bound_levels(alt, alpha, alpha_pass)
    cs = _sequence(data, q, a_low, a_high, n_tune, deff)
    data, q, _ = _quantile_iv(data, q)
    count, n = _counter(data)
    evidence = _exceedance_evidence(
        count, n, q, deff, mixture_precision(n_tune, alpha), mixture_precision(n_tune, alpha_pass),
        alt, lambda v, harmful: v,
    )  # fmt: skip
    return absolute_result(
        "quantile CS (order statistics, beta-binomial boundary)",
        cs.estimate,
        *cs.confidence_interval,
        bound=bound,
        alternative=alt,
        n=cs.n,
        alpha=alpha,
        alpha_pass=alpha_pass,
        resolution=float(np.max(cs.resolution)),
        log_evidence=evidence,
    )


def quantile_contrast(
    stable: ArrayLike | Histogram,
    canary: ArrayLike | Histogram,
    *,
    q: float = 0.95,
    contrast: str = "ratio",
    margin: float,
    alternative: str = "greater",
    alpha: float = 0.05,
    alpha_pass: float | None = None,
    n_tune_stable: float = 10_000,
    n_tune_canary: float = 1_000,
    stable_share: float = 0.1,
    stages: int = 1,
    design_effect: tuple[ArrayLike, ArrayLike] = (1.0, 1.0),
) -> SequentialTestResult:
    """Compare the canary's ``q``-quantile with stable's against a margin.

    Parameters
    ----------
    stable, canary : array_like or Histogram
        Observations (or cumulative buckets) per cohort.
    q : float, default: 0.95
        The quantile.
    contrast : {"ratio", "difference"}
        ``Q_canary / Q_stable`` or ``Q_canary - Q_stable``.
    margin : float
        Tolerated contrast, e.g. ``1.20`` for "p95 at most 20 % above stable".
    alternative : {"less", "greater"}
        The harmful direction of the contrast.
    alpha, alpha_pass : float
        One-sided levels of the fail and pass decisions.
    n_tune_stable, n_tune_canary : float
        Per-cohort tuning sample sizes.
    stable_share : float, default: 0.1
        Share of each level spent on the stable quantile's bound; the canary's
        exceedance test gets the rest.
    stages : int, default: 1
        How many stages' evidence will be multiplied (`combine_stages`): each
        stage's stable bound gets ``stable_share / stages`` of the level, so the
        bounds of all stages hold together.
    design_effect : (float, float)
        Design effects of the (stable, canary) samples, at least 1.

    Returns
    -------
    SequentialTestResult

    Notes
    -----
    One-sample part: a violation ``Q_c > r Q_s`` is proven when the canary's share
    of tasks at or below ``r U_s`` is proven below ``q``, with ``U_s`` the upper end
    of a band on the stable quantile: then ``Q_c > r U_s >= r Q_s``. Compliance is
    proven the same way from the band's lower end ``L_s``. Ties (latencies in whole
    seconds) count as "at or below", the conservative side for both.

    Two-sample part (harmful direction "greater"): in every cell of a fixed grid
    that the band reaches, the canary's share at ``r t`` against stable's share at
    ``t`` (see `_quantile_cells`). The two parts' e-processes are averaged.

    Error: the bands fail with probability at most ``stable_share * alpha`` over
    all stages (each side of a band half of its stage's share), the averaged test
    at most the rest. The interval inverts the same evidence by bisection. For the
    harmful direction "less" only the one-sample part is used, with one-sided
    stable bounds, and the interval is ``L_canary / U_s`` to ``U_canary / L_s``.
    """
    margin, alt, alpha, alpha_pass = decision_iv(margin, alternative, alpha, alpha_pass)
    if contrast not in ("ratio", "difference"):
        raise ValueError(f"`contrast` must be 'ratio' or 'difference'; got {contrast!r}.")
    if contrast == "ratio" and margin <= 0:
        raise ValueError(f"`margin` of a ratio must be positive; got {margin!r}.")
    share = check_alpha(stable_share, "stable_share")
    if not isinstance(stages, int) or stages < 1:
        raise ValueError(f"`stages` must be a positive integer; got {stages!r}.")
    deff_s = _deff_iv(design_effect[0], "design_effect[0]")
    deff_c = _deff_iv(design_effect[1], "design_effect[1]")
    fail_s, pass_s = alpha * share / stages, alpha_pass * share / stages
    fail_c, pass_c = alpha * (1.0 - share), alpha_pass * (1.0 - share)
    greater = alt == "greater"
    n_tune_c = check_positive_int(n_tune_canary, "n_tune_canary")
    # The harmful side of the contrast uses the stable bound on the other side.
    sta = _sequence(
        stable, q, *((pass_s, fail_s) if greater else (fail_s, pass_s)),
        check_positive_int(n_tune_stable, "n_tune_stable"), deff_s,
    )  # fmt: skip
    can = _sequence(canary, q, *bound_levels(alt, fail_c, pass_c), n_tune_c, deff_c)
    s_low = np.asarray(sta.confidence_interval.low, dtype=float)
    s_high = np.asarray(sta.confidence_interval.high, dtype=float)
    c_low = np.asarray(can.confidence_interval.low, dtype=float)
    c_high = np.asarray(can.confidence_interval.high, dtype=float)
    fail_ref, pass_ref = (s_high, s_low) if greater else (s_low, s_high)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if contrast == "ratio":
            estimate = np.asarray(can.estimate) / np.asarray(sta.estimate)
            low = np.where(s_high > 0, np.maximum(c_low, 0.0) / s_high, 0.0)
            high = np.where(s_low > 0, c_high / s_low, np.inf)
        else:
            estimate = np.asarray(can.estimate) - np.asarray(sta.estimate)
            low, high = c_low - s_high, c_high - s_low
    low = np.where(np.isnan(low), -np.inf, low)
    high = np.where(np.isnan(high), np.inf, high)

    def thresholds(
        fail_ref: FloatArray, pass_ref: FloatArray
    ) -> Callable[[FloatArray, bool], FloatArray]:
        """The canary's threshold at a contrast value, from the stable bound of each side."""

        def threshold(value: FloatArray, harmful: bool) -> FloatArray:
            ref = fail_ref if harmful else pass_ref
            with np.errstate(invalid="ignore", over="ignore"):
                c = value * ref if contrast == "ratio" else ref + value
            # No stable bound yet: a threshold that proves nothing on either side.
            return np.where(np.isfinite(ref), c, np.inf if harmful == greater else -np.inf)

        return threshold

    canary_data, _, _ = _quantile_iv(canary, q)
    count, n_c = _counter(canary_data)
    method = "canary exceedance of the stable quantile's bound (order statistics)"
    status = status_from_bounds(low, high, margin, alt)
    if greater:  # the cohorts' shares compared at one point (errors add in quadrature)
        stable_data, _, _ = _quantile_iv(stable, q)
        count_s, n_s = _counter(stable_data)
        n_tune_s = check_positive_int(n_tune_stable, "n_tune_stable")
        bands = tuple(
            _band(stable, q, levels, n_tune_s, deff_s) for levels in band_levels(fail_s, pass_s)
        )
        edges = stable_data.upper_bounds if isinstance(stable_data, Histogram) else None
        (_, fail_band_high), (pass_band_low, _) = bands
        # Ties make the shares at a stable atom differ a lot (latencies in whole
        # seconds): there the canary's share against q itself is the stronger test.
        # The mean of the two e-processes is one, valid whichever wins.
        one_sample = _exceedance_evidence(
            count, n_c, q, deff_c, mixture_precision(n_tune_c, fail_c),
            mixture_precision(n_tune_c, pass_c), alt, thresholds(fail_band_high, pass_band_low),
        )  # fmt: skip
        two_sample = cell_evidence(
            count_s, n_s, count, n_c, q=q, deff=(deff_s, deff_c), bands=bands,  # type: ignore[arg-type]
            edges=edges, ratio=contrast == "ratio",
            rho=(mixture_precision(n_tune_s + n_tune_c, fail_c),
                 mixture_precision(n_tune_s + n_tune_c, pass_c)),
        )  # fmt: skip
        evidence = mean_evidence(one_sample, two_sample)
        low, high = _inverted(evidence, low, high, fail_c, pass_c, contrast, margin)
        method = "cohort shares at the stable quantile (two-sample, cells) and canary exceedance"
        status = status_from_evidence(*evidence(np.full(np.shape(low), margin)), fail_c, pass_c)
    else:
        evidence = _exceedance_evidence(
            count, n_c, q, deff_c, mixture_precision(n_tune_c, fail_c),
            mixture_precision(n_tune_c, pass_c), alt, thresholds(fail_ref, pass_ref),
        )  # fmt: skip
    return SequentialTestResult(
        method=method,
        contrast=contrast,
        estimate=scalar_or_array(estimate),
        confidence_interval=ConfidenceInterval(scalar_or_array(low), scalar_or_array(high)),
        margin=margin,
        alternative=alt,
        status=status.item() if np.ndim(status) == 0 else status,
        n_stable=sta.n,
        n_canary=can.n,
        alpha=alpha,
        alpha_pass=alpha_pass,
        resolution=float(np.max(np.maximum(can.resolution, sta.resolution))),
        log_evidence=evidence,
        evidence_levels=(fail_c, pass_c),
    )


def _deff_iv(value: ArrayLike, name: str) -> FloatArray:
    d = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(d)) or np.any(d < 1.0):
        raise ValueError(f"`{name}` must be finite and at least 1; got {value!r}.")
    return d


def _band(
    stable: Any, q: float, levels: tuple[float, float], n_tune: float, deff: FloatArray
) -> tuple[FloatArray, FloatArray]:
    seq = _sequence(stable, q, *levels, n_tune, deff)
    return (
        np.asarray(seq.confidence_interval.low, dtype=float),
        np.asarray(seq.confidence_interval.high, dtype=float),
    )


def _inverted(
    evidence: Evidence,
    low: FloatArray,
    high: FloatArray,
    fail: float,
    pass_: float,
    contrast: str,
    margin: float,
) -> tuple[FloatArray, FloatArray]:
    """The interval of the two-sample evidence (harmful side "greater"), by bisection.

    The per-cohort interval brackets the search: whichever test is tighter, the
    values it leaves open lie near it.
    """
    shape = np.broadcast_shapes(np.shape(low), np.shape(high))
    lo = np.broadcast_to(np.where(np.isfinite(low), low, np.nan), shape)
    hi = np.broadcast_to(np.where(np.isfinite(high), high, np.nan), shape)
    span = np.where(np.isfinite(hi - lo), hi - lo, 0.0) + abs(margin) + 1e-9
    mid = np.where(np.isfinite(lo), lo, np.where(np.isfinite(hi), hi, margin))
    left = np.where(np.isfinite(lo), lo, mid) - 2.0 * span
    right = np.where(np.isfinite(hi), hi, mid) + 2.0 * span
    if contrast == "ratio":
        left = np.maximum(left, 0.0)
    return invert_evidence(
        evidence, left, right, np.log(1.0 / fail), np.log(1.0 / pass_), greater=True
    )
