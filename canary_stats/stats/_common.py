"""Result types and argument validation shared by the statistics layer."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ConfidenceInterval", "SequentialTestResult"]

Alternative = Literal["less", "greater"]
Status = Literal["pass", "fail", "inconclusive"]
FloatArray = NDArray[np.float64]
#: Log e-values of one stage's data at hypothesised contrast values: (against "within
#: the value", i.e. evidence of a violation; against "beyond it", evidence of compliance).
Evidence = Callable[[ArrayLike], tuple[FloatArray, FloatArray]]


class ConfidenceInterval(NamedTuple):
    """Lower and upper bound of an interval, as in ``scipy.stats``."""

    low: Any
    high: Any


@dataclass(frozen=True, slots=True)
class SequentialTestResult:
    """Anytime-valid test of a guardrail contrast against its margin.

    Attributes
    ----------
    method : str
        Name of the confidence sequence used.
    contrast : {"absolute", "difference", "ratio"}
        What is compared: the canary alone, canary - stable, or canary / stable.
    estimate : float or ndarray
        Point estimate of the contrast.
    confidence_interval : ConfidenceInterval
        Anytime-valid bounds on the contrast. The bound on the harmful side is at
        level ``alpha`` (it decides ``fail``), the other at ``alpha_pass`` (it
        decides ``pass``); each is one-sided and valid at every look.
    margin : float
        The largest tolerated value of the contrast (smallest, when
        ``alternative="less"``).
    alternative : {"less", "greater"}
        The harmful direction: ``"greater"`` when a larger contrast is worse.
    status : str or ndarray of str
        ``"fail"`` when a violation of the margin is proven, ``"pass"`` when
        compliance is proven, ``"inconclusive"`` otherwise.
    n_stable, n_canary : int or ndarray
        Observations per cohort (``n_stable`` is 0 for absolute bounds).
    alpha, alpha_pass : float
        One-sided error levels of the fail and pass decisions.
    resolution : float
        Width of the histogram bucket that limits the bounds (0 for raw samples).
    log_evidence : callable or None
        ``log_evidence(value)`` gives the log e-values of this data against the
        contrast being within ``value`` (evidence of a violation) and against it
        being beyond ``value`` (evidence of compliance), element-wise. Products of
        these over stages are what `combine_stages` tests.
    evidence_levels : tuple of float or None
        The levels ``log_evidence`` is compared with (fail side, pass side); None
        means ``(alpha, alpha_pass)``. A test that spends part of ``alpha``
        elsewhere (the stable quantile's bound) compares its evidence at the rest.
    """

    method: str
    contrast: str
    estimate: Any
    confidence_interval: ConfidenceInterval
    margin: float
    alternative: Alternative
    status: Any
    n_stable: Any
    n_canary: Any
    alpha: float
    alpha_pass: float
    resolution: float = 0.0
    log_evidence: Evidence | None = field(default=None, repr=False, compare=False)
    evidence_levels: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        # A decision needs a finite estimate and a finite bound on the side that makes
        # it (the fail side for fail, the pass side for pass): an overflowed or
        # undefined statistic proves nothing. The other side may still be open (a
        # quantile's upper bound needs more data than its lower one).
        low, high = (np.asarray(b, dtype=float) for b in self.confidence_interval)
        fail_side, pass_side = (low, high) if self.alternative == "greater" else (high, low)
        finite = np.isfinite(np.asarray(self.estimate, dtype=float))
        status = np.asarray(self.status)
        status = np.where(
            ((status == "fail") & ~(finite & np.isfinite(fail_side)))
            | ((status == "pass") & ~(finite & np.isfinite(pass_side))),
            "inconclusive",
            status,
        )
        object.__setattr__(self, "status", status.item() if status.ndim == 0 else status)


def absolute_result(
    method: str,
    estimate: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    *,
    bound: float,
    alternative: Alternative,
    n: ArrayLike,
    alpha: float,
    alpha_pass: float,
    resolution: float = 0.0,
    log_evidence: Evidence | None = None,
) -> SequentialTestResult:
    """The result of a test of the canary alone against an absolute bound."""
    return SequentialTestResult(
        method=method,
        contrast="absolute",
        estimate=scalar_or_array(estimate),
        confidence_interval=ConfidenceInterval(scalar_or_array(low), scalar_or_array(high)),
        margin=bound,
        alternative=alternative,
        status=status_from_bounds(low, high, bound, alternative),
        n_stable=0,
        n_canary=scalar_or_array(n),
        alpha=alpha,
        alpha_pass=alpha_pass,
        resolution=resolution,
        log_evidence=log_evidence,
    )


def clean_log_evidence(log_e: ArrayLike, empty: ArrayLike = False) -> FloatArray:
    """Log e-values safe to add up: none for empty data or NaN, clipped when infinite."""
    a = np.clip(np.nan_to_num(np.asarray(log_e, dtype=float), nan=0.0), -1e6, 1e6)
    return np.where(empty, 0.0, a)


def status_from_evidence(
    violation: ArrayLike, compliance: ArrayLike, fail_level: float, pass_level: float
) -> Any:
    """``fail``/``pass``/``inconclusive`` from log e-values at the margin and their levels."""
    fail = np.asarray(violation) >= np.log(1.0 / fail_level)
    ok = np.asarray(compliance) >= np.log(1.0 / pass_level)
    return np.where(fail, "fail", np.where(ok, "pass", "inconclusive"))


def status_from_bounds(
    low: ArrayLike, high: ArrayLike, margin: float, alternative: Alternative
) -> Any:
    """``fail``/``pass``/``inconclusive`` from the two one-sided bounds."""
    low_a, high_a = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if alternative == "greater":
        fail, ok = low_a > margin, high_a < margin
    else:
        fail, ok = high_a < margin, low_a > margin
    status = np.where(fail, "fail", np.where(ok, "pass", "inconclusive"))
    return status.item() if status.ndim == 0 else status


def bound_levels(alternative: Alternative, alpha: float, alpha_pass: float) -> tuple[float, float]:
    """Error levels of the (lower, upper) bound: the harmful side gets ``alpha``."""
    return (alpha, alpha_pass) if alternative == "greater" else (alpha_pass, alpha)


def decision_iv(
    limit: float, alternative: str, alpha: float, alpha_pass: float | None, name: str = "margin"
) -> tuple[float, Alternative, float, float]:
    """Validate the options every guardrail test shares; ``alpha_pass`` defaults to ``alpha``."""
    limit = check_finite(limit, name)
    alt = check_alternative(alternative)
    alpha = check_alpha(alpha)
    alpha_pass = alpha if alpha_pass is None else check_alpha(alpha_pass, "alpha_pass")
    return limit, alt, alpha, alpha_pass


def scalar_or_array(x: ArrayLike) -> Any:
    """Return a Python float for 0-d input, else the array (scipy's convention)."""
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Validate a one-sided error level."""
    if not isinstance(alpha, int | float) or not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"`{name}` must be a number in (0, 1); got {alpha!r}.")
    return float(alpha)


def check_alternative(alternative: str) -> Alternative:
    """Validate ``alternative`` (the harmful direction)."""
    if alternative not in ("less", "greater"):
        raise ValueError(f"`alternative` must be 'less' or 'greater'; got {alternative!r}.")
    return alternative  # type: ignore[return-value]


def check_finite(value: float, name: str) -> float:
    """Validate a finite scalar option such as a margin."""
    if not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be a finite number; got {value!r}.")
    return float(value)


def check_counts(x: ArrayLike, name: str) -> FloatArray:
    """Validate non-negative finite counts (integers stored as float)."""
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"`{name}` must contain finite, non-negative counts.")
    return a


def check_positive_int(value: float, name: str) -> float:
    """Validate a positive tuning sample size."""
    if not isinstance(value, int | float) or not (float(value) > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a positive number; got {value!r}.")
    return float(value)
