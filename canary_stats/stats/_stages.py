"""Evidence kept across the stages of a rollout: products of per-stage e-values.

Each stage compares the cohorts over its own windows (the traffic split is
constant within a stage, so drift shared by both cohorts cancels). Its test is a
nonnegative supermartingale under the null that starts at 1; stopping one stage
and starting the next at the end of the first is optional continuation, so the
product of the stages' e-values is again a test supermartingale over the whole
rollout, and by Ville's inequality crosses ``1/alpha`` with probability at most
``alpha`` at any check of any stage ([1]_, Sec. 6; [2]_). One guardrail needs one
level over the rollout, not one per stage.

References
----------
.. [1] Ramdas, Grunwald, Vovk, Shafer (2023). Game-theoretic statistics and safe
       anytime-valid inference. Statist. Sci. 38(4), 576-601.
.. [2] Howard, Ramdas, McAuliffe, Sekhon (2021). Time-uniform, nonparametric,
       nonasymptotic confidence sequences. Ann. Statist. 49(2), 1055-1080.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._common import (
    ConfidenceInterval,
    Evidence,
    FloatArray,
    SequentialTestResult,
    scalar_or_array,
    status_from_evidence,
)

__all__ = ["combine_stages"]

_SAME = ("contrast", "margin", "alternative", "alpha", "alpha_pass", "evidence_levels")


def combine_stages(
    results: Sequence[SequentialTestResult], *, confidence_interval: bool = True
) -> SequentialTestResult:
    """One rollout-wide test of a guardrail from the tests of its stages, in order.

    Parameters
    ----------
    results : sequence of SequentialTestResult
        One test per stage of the rollout so far, each on that stage's data only,
        all of the same guardrail (contrast, margin, levels). Earlier stages are
        the tests at the end of the stage; the last may be array-valued (one
        element per look of the current stage).
    confidence_interval : bool, default: True
        Whether to invert the combined evidence into the rollout-wide interval.
        Decisions need only the evidence at the margin (simulations skip it);
        without it, a bound is the margin on the side proven, else infinite.

    Returns
    -------
    SequentialTestResult
        ``fail`` once the product of the stages' violation e-values at the margin
        reaches ``1/alpha``, ``pass`` once that of their compliance e-values
        reaches ``1/alpha_pass``. The interval is the set of contrast values that
        neither product rejects, valid uniformly over all checks of all stages;
        the estimate is the value where violation and compliance evidence
        balance (the stages' size-weighted estimates when the interval is open);
        counts are summed.

    Notes
    -----
    A stage without data contributes an e-value of 1. Each stage's mixture starts
    again from its prior, which costs a little evidence at each boundary; what was
    earned before is kept.
    """
    if not results:
        raise ValueError("`results` must hold at least one stage's test.")
    last = results[-1]
    for i, r in enumerate(results):
        if r.log_evidence is None:
            raise ValueError(f"`results[{i}]` carries no evidence to combine ({r.method}).")
        for name in _SAME:
            if getattr(r, name) != getattr(last, name):
                raise ValueError(
                    f"`results[{i}].{name}` is {getattr(r, name)!r}, the last stage's is "
                    f"{getattr(last, name)!r}: every stage must test the same guardrail."
                )
    if len(results) == 1:
        return last
    evidence = _product([r.log_evidence for r in results if r.log_evidence is not None])
    fail_level, pass_level = last.evidence_levels or (last.alpha, last.alpha_pass)
    c_fail, c_pass = math.log(1.0 / fail_level), math.log(1.0 / pass_level)
    status = status_from_evidence(*evidence(last.margin), fail_level, pass_level)
    n_stable = sum(np.asarray(r.n_stable, dtype=float) for r in results)
    n_canary = sum(np.asarray(r.n_canary, dtype=float) for r in results)
    estimate = _weighted_estimate(results)
    if confidence_interval:
        low, high = _invert(evidence, results, c_fail, c_pass, np.shape(status))
        estimate = _balanced(evidence, low, high, estimate, last.alternative)
    else:  # only which side of the margin is proven: the margin, else open
        at_margin = np.full(np.shape(status), float(last.margin))
        lower_proven = status == ("fail" if last.alternative == "greater" else "pass")
        upper_proven = status == ("pass" if last.alternative == "greater" else "fail")
        low = np.where(lower_proven, at_margin, -np.inf)
        high = np.where(upper_proven, at_margin, np.inf)
    return SequentialTestResult(
        method=f"{last.method}; evidence kept over {len(results)} stages",
        contrast=last.contrast,
        estimate=scalar_or_array(estimate),
        confidence_interval=ConfidenceInterval(scalar_or_array(low), scalar_or_array(high)),
        margin=last.margin,
        alternative=last.alternative,
        status=status.item() if status.ndim == 0 else status,
        n_stable=scalar_or_array(np.asarray(n_stable, dtype=float)),
        n_canary=scalar_or_array(np.asarray(n_canary, dtype=float)),
        alpha=last.alpha,
        alpha_pass=last.alpha_pass,
        resolution=max(float(np.max(r.resolution)) for r in results),
        log_evidence=evidence,
        evidence_levels=last.evidence_levels,
    )


def _product(parts: list[Evidence]) -> Evidence:
    def evidence(value: ArrayLike) -> tuple[FloatArray, FloatArray]:
        pairs = [part(value) for part in parts]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)  # type: ignore[return-value]

    return evidence


def _weighted_estimate(results: Sequence[SequentialTestResult]) -> FloatArray:
    """Stage estimates weighted by effective size (two-sample: harmonic, else canary)."""
    total: Any = 0.0
    weighted: Any = 0.0
    for r in results:
        n_c = np.asarray(r.n_canary, dtype=float)
        n_s = np.asarray(r.n_stable, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = n_c if r.contrast == "absolute" else n_c * n_s / (n_c + n_s)
        est = np.asarray(r.estimate, dtype=float)
        w = np.where(np.isfinite(est) & np.isfinite(w), w, 0.0)
        total = total + w
        weighted = weighted + w * np.nan_to_num(est)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(total) > 0, weighted / total, np.nan)


def _balanced(
    evidence: Evidence, low: FloatArray, high: FloatArray, fallback: FloatArray, alternative: str
) -> FloatArray:
    """The value where violation and compliance evidence balance, inside the interval.

    Stages of unequal precision make a size-weighted average misleading (it can
    fall outside the rollout-wide interval); the point of equal evidence both ways
    is the estimate the combined test itself points to. Falls back to the
    weighted average where the interval is open.
    """
    a, b = np.asarray(low, dtype=float).copy(), np.asarray(high, dtype=float).copy()
    ok = np.isfinite(a) & np.isfinite(b) & (a <= b)
    a, b = np.where(ok, a, 0.0), np.where(ok, b, 1.0)
    sign = 1.0 if alternative == "greater" else -1.0
    for _ in range(60):  # violation - compliance falls as the value grows ("greater")
        mid = 0.5 * (a + b)
        v, c = evidence(mid)
        right = sign * (v - c) > 0
        a, b = np.where(right, mid, a), np.where(right, b, mid)
    return np.where(ok, 0.5 * (a + b), fallback)


def _invert(
    evidence: Evidence,
    results: Sequence[SequentialTestResult],
    c_fail: float,
    c_pass: float,
    shape: tuple[int, ...],
) -> tuple[FloatArray, FloatArray]:
    """The contrast values neither product rejects, by bisection on each side.

    The bracket spans every stage's estimate and bounds (`invert_evidence`).
    """
    last = results[-1]
    ends: list[Any] = [np.asarray(last.margin, dtype=float)]
    for r in results:
        for b in (r.estimate, *r.confidence_interval):
            b_a = np.asarray(b, dtype=float)
            ends.append(np.where(np.isfinite(b_a), b_a, np.nan))
    stacked = np.stack([np.broadcast_to(e, shape) for e in ends])
    lo, hi = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
    span = np.maximum(hi - lo, np.maximum(abs(last.margin), 1e-9))
    left, right = lo - 4.0 * span, hi + 4.0 * span
    if last.contrast == "ratio":
        left = np.maximum(left, 0.0)
    return invert_evidence(
        evidence, left, right, c_fail, c_pass, greater=last.alternative == "greater"
    )


def invert_evidence(
    evidence: Evidence,
    left: FloatArray,
    right: FloatArray,
    c_fail: float,
    c_pass: float,
    *,
    greater: bool,
) -> tuple[FloatArray, FloatArray]:
    """``(low, high)``: the values in ``[left, right]`` neither side's evidence rejects.

    With ``greater`` the violation evidence falls as the hypothesised value grows
    (the lower bound is the largest value it rejects) and the compliance evidence
    grows (the upper bound is the smallest value it rejects); else both mirror.
    """
    fail_side = _root(lambda v: evidence(v)[0], c_fail, left, right, falling=greater)
    pass_side = _root(lambda v: evidence(v)[1], c_pass, left, right, falling=not greater)
    return (fail_side, pass_side) if greater else (pass_side, fail_side)


def _root(f: Any, c: float, left: FloatArray, right: FloatArray, *, falling: bool) -> FloatArray:
    """Boundary of ``{v : f(v) >= c}``: its sup when ``f`` falls, its inf when it grows."""
    a, b = left.copy(), right.copy()
    rejected_a, rejected_b = f(a) >= c, f(b) >= c
    # Nothing rejected on the bracket: no bound on that side; all rejected: the far end.
    none = ~(rejected_a if falling else rejected_b)
    every = rejected_b if falling else rejected_a
    for _ in range(60):
        mid = 0.5 * (a + b)
        rejected = f(mid) >= c
        if falling:  # rejected values lie left of the bound
            a, b = np.where(rejected, mid, a), np.where(rejected, b, mid)
        else:
            a, b = np.where(rejected, a, mid), np.where(rejected, mid, b)
    bound = a if falling else b
    open_end = -np.inf if falling else np.inf
    bound = np.where(none, open_end, bound)
    return np.where(every, right if falling else left, bound)
