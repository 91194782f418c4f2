"""How long until a decision: projected from how fast the bounds shrink."""

from __future__ import annotations

import math
from typing import Any

from . import stats
from ._verdict import GuardrailVerdict
from .policy import Policy

__all__ = ["eta_minutes", "tuning"]


def tuning(policy: Policy, share: float) -> tuple[float, float, float]:
    """Tuning sizes fixed before the data: both cohorts, canary alone, stable alone."""
    n = float(policy.tuning_samples)
    return n, max(n * share, 100.0), max(n * (1 - share), 100.0)


def eta_minutes(
    verdicts: Any, mode: str, left: float, rate: float, share: float, policy: Policy
) -> float | None:
    """Minutes until a decision at the current traffic, projected from the bounds' shrinkage."""
    if rate <= 0:
        return None
    waits = [left]
    to_rollback: list[float] = []
    n_two, n_can, _ = tuning(policy, share)
    for v in verdicts:
        if v.status != "inconclusive":
            continue
        per_min = rate * share if v.contrast == "absolute" else rate
        n_now = v.n_canary if v.contrast == "absolute" else v.n_stable + v.n_canary
        if not v.enough_data:
            need = max(policy.min_samples - v.n_canary, 0) / max(rate * share, 1e-9)
            need = max(
                need, max(policy.min_samples - v.n_stable, 0) / max(rate * (1 - share), 1e-9)
            )
            waits.append(need)
            continue
        heading_fail = (v.estimate > v.margin) == (v.alternative == "greater")
        if not heading_fail and mode == "guard":
            continue
        n_tune = n_can if v.contrast == "absolute" else n_two
        t = _projected_minutes(v, n_now, per_min, heading_fail, n_tune, policy)
        if heading_fail:
            if t is not None:
                to_rollback.append(t)
        elif t is None:
            return None
        else:
            waits.append(t)
    promote_at = max(waits)
    return min([promote_at, *to_rollback]) if to_rollback else promote_at


def _projected_minutes(
    v: GuardrailVerdict,
    n_now: float,
    per_min: float,
    heading_fail: bool,
    n_tune: float,
    policy: Policy,
) -> float | None:
    distance = abs(v.estimate - v.margin)
    upper_side = (v.alternative == "greater") != heading_fail
    bound = v.high if upper_side else v.low
    half = abs(bound - v.estimate)
    if not (math.isfinite(half) and distance > 0 and n_now > 0 and per_min > 0):
        return None
    alpha = policy.alpha_per_test() if heading_fail else policy.alpha_pass()
    rho = stats.mixture_precision(n_tune, alpha)
    z_now = float(stats.normal_mixture_boundary(n_now, alpha=alpha, rho=rho))
    for factor in (1.1**k for k in range(1, 100)):
        n = n_now * factor
        z = float(stats.normal_mixture_boundary(n, alpha=alpha, rho=rho))
        if half * math.sqrt(1 / factor) * z / z_now < distance:
            return (n - n_now) / per_min
    return None
