"""How long until a decision: the plan's boundary-crossing model on the observed effect.

`check_plan` projects a rollout before it runs from assumed values; a verdict that
holds projects the same way from what it sees. Each undecided guardrail's test
crosses its boundary once ``delta sqrt(n) / sigma >= b(n)``
(`canary_stats._plan.detection_minutes`), with ``delta`` the observed distance of
the estimate from the margin, ``sigma`` the spread per unit of intrinsic time that
its anytime-valid interval implies, and ``n`` growing at the current traffic.
"""

from __future__ import annotations

import math
from typing import Any

from . import stats
from ._plan_model import detection_minutes, tuning, tuning_size
from ._verdict import GuardrailVerdict
from .policy import Policy

__all__ = ["eta_minutes", "tuning"]


def eta_minutes(
    verdicts: Any, mode: str, left: float, rate: float, share: float, policy: Policy
) -> float | None:
    """Minutes until a decision at the current traffic, or None when none is in sight.

    The latest of: the stage's minimum duration (``left``), the cohort's minimum
    tasks and, in a ``prove`` stage, each undecided guardrail's minimum and proof;
    or sooner, the first guardrail heading for a rollback. A guard stage carries a
    guardrail short of its own minimum (sparse eval scores) instead of waiting. The
    cohort's minimum is projected from the counts of the task-level guardrails.
    ``rate`` is tasks per minute of both cohorts; eval scores arrive at the share
    of tasks scored so far.
    """
    if rate <= 0:
        return None
    verdicts = list(verdicts)
    tasks = [v for v in verdicts if v.metric != "eval_score"]
    tasks_c = max((v.n_canary for v in tasks), default=0.0)
    tasks_s = max((v.n_stable for v in tasks), default=0.0)
    need = float(policy.min_samples)
    waits = [left, _wait(need - tasks_c, rate * share), _wait(need - tasks_s, rate * (1 - share))]
    to_rollback: list[float] = []
    for v in verdicts:
        if v.status != "inconclusive":
            continue
        density = min(v.n_canary / tasks_c, 1.0) if v.metric == "eval_score" and tasks_c else 1.0
        if not v.enough_data:
            if mode == "guard":
                continue  # carried to the next stage
            waits.append(_wait(need - v.n_canary, rate * share * density))
            if v.contrast != "absolute":
                waits.append(_wait(need - v.n_stable, rate * (1 - share) * density))
            continue
        heading_fail = (v.estimate > v.margin) == (v.alternative == "greater")
        if not heading_fail and mode == "guard":
            continue
        t = _projected_minutes(v, rate * density, share, heading_fail, policy)
        if heading_fail:
            if t is not None:
                to_rollback.append(t)
        elif t is None:
            return None
        else:
            waits.append(t)
    promote_at = max(waits)
    return min([promote_at, *to_rollback]) if to_rollback else promote_at


def _wait(missing: float, per_min: float) -> float:
    return missing / per_min if missing > 0 and per_min > 0 else 0.0


def _projected_minutes(
    v: GuardrailVerdict, per_min: float, share: float, heading_fail: bool, policy: Policy
) -> float | None:
    """The plan's crossing solve from the observed estimate and interval.

    The interval's half-width on the deciding side is ``b(n) sigma / sqrt(n)`` at the
    level of that decision, which gives ``sigma``; ``delta`` is the estimate's
    distance from the margin. Two-sample contrasts run on both cohorts' count, a
    guardrail on the canary alone on the canary's.
    """
    one_sample = v.contrast == "absolute"
    n_now = v.n_canary if one_sample else v.n_stable + v.n_canary
    per_min = per_min * (share if one_sample else 1.0)
    distance = abs(v.estimate - v.margin)
    upper_side = (v.alternative == "greater") != heading_fail
    half = abs((v.high if upper_side else v.low) - v.estimate)
    if not (math.isfinite(half) and half > 0 and distance > 0 and n_now > 0 and per_min > 0):
        return None
    alpha = policy.alpha_per_test() if heading_fail else policy.alpha_pass()
    rho = stats.mixture_precision(tuning_size(v.metric, v.contrast, policy, share), alpha)
    b_now = float(stats.normal_mixture_boundary(n_now, alpha=alpha, rho=rho))
    sigma = half * math.sqrt(n_now) / b_now
    t = detection_minutes(distance, sigma, per_min=per_min, alpha=alpha, rho=rho, n0=n_now)
    return t if math.isfinite(t) else None
