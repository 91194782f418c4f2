"""A stable fingerprint of everything a verdict was computed from (for the audit log)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from .policy import Policy
from .stats import Histogram
from .summary import CohortSummary, Summary

__all__ = ["input_fingerprint"]


def _digest(x: Any) -> Any:
    if isinstance(x, Histogram):
        return {"edges": _digest(x.upper_bounds), "counts": _digest(x.counts)}
    if isinstance(x, np.ndarray):
        # Order-free, like every statistic the judge uses: sort before hashing.
        data = np.sort(np.asarray(x, dtype=float)).tobytes()
        return hashlib.sha256(data).hexdigest()
    if isinstance(x, float | np.floating):
        return repr(float(x))
    return x


def _cohort(c: CohortSummary) -> dict[str, Any]:
    users = {}
    if np.all(np.isfinite(np.asarray(c.users, dtype=float))):  # only with user ids
        d = c.design
        users = {
            "users": _digest(c.users),
            "design": [_digest(v) for v in (d.success, d.latency, d.tokens, d.eval_score)],
        }
        a = c.adjustment
        if np.any(np.asarray(a.tokens) != 0) or np.any(np.asarray(a.eval_score) != 0):
            users["adjustment"] = [_digest(a.tokens), _digest(a.eval_score)]
    return users | {
        "tasks": _digest(c.tasks),
        "successes": _digest(c.successes),
        "latency": _digest(c.latency),
        "tokens": [_digest(v) for v in (c.tokens.n, c.tokens.mean, c.tokens.var)],
        "eval": [_digest(v) for v in (c.eval_score.n, c.eval_score.mean, c.eval_score.var)],
    }


def input_fingerprint(
    summary: Summary,
    policy: Policy,
    *,
    stage: int,
    elapsed: timedelta,
    earlier: Sequence[Summary | None] = (),
) -> str:
    """sha256 over the summaries' statistics, the policy, the stage and the time in stage.

    ``earlier`` (the summaries of the rollout's earlier stages) enter only when
    given, so verdicts of a single stage keep the fingerprints they had.
    """
    payload: dict[str, Any] = {
        "stable": _cohort(summary.stable),
        "canary": _cohort(summary.canary),
        "issues": list(summary.issues),
        "policy": policy.model_dump(mode="json"),
        "stage": stage,
        "elapsed_s": elapsed.total_seconds(),
    }
    if earlier:
        payload["earlier"] = [
            None if e is None else {"stable": _cohort(e.stable), "canary": _cohort(e.canary)}
            for e in earlier
        ]
    text = json.dumps(payload, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
