"""The statistics the judge sees: per-cohort moments, counts and latency data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from ..stats import Histogram

__all__ = [
    "AGGREGATE_COLUMNS",
    "COHORTS",
    "COHORT_SET",
    "EVENT_COLUMNS",
    "LATENCY_MAX_MS",
    "TOKENS_MAX",
    "VALUE_METRICS",
    "Adjustment",
    "CohortSummary",
    "DesignEffects",
    "Moments",
    "Silence",
    "Summary",
]

EVENT_COLUMNS = ("ts", "cohort", "success", "latency_ms", "tokens", "eval_score")
AGGREGATE_COLUMNS = ("window_start", "window_end", "cohort", "metric", "field", "le", "value")
COHORTS = ("stable", "canary", "shadow")
COHORT_SET = pa.array(COHORTS)
#: The metrics a summary carries values of (beyond task and success counts).
VALUE_METRICS = frozenset({"latency_ms", "tokens_per_task", "eval_score"})
#: The data contract's bounds on one task (a week; a billion tokens). Values beyond them
#: are refused wherever events are read: they are corrupt, and their squares could
#: overflow the sums the tests are built on. A manifest's ``max_tokens_per_task`` is the
#: tighter bound the judge checks.
LATENCY_MAX_MS = 7 * 86_400_000.0
TOKENS_MAX = 1e9


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, mean and variance (``ddof=0``) of one metric in one cohort.

    Fields are floats, or arrays of one value per look in simulations.
    """

    n: Any
    mean: Any
    var: Any

    @classmethod
    def from_sums(cls, n: float, total: float, total_sq: float) -> Moments:
        if n <= 0:
            return cls(0.0, float("nan"), float("nan"))
        mean = total / n
        return cls(float(n), float(mean), float(max(total_sq / n - mean * mean, 0.0)))

    def pooled(self, other: Moments) -> Moments:
        """The moments of both samples together (Chan et al.'s parallel update)."""
        n1, n2 = float(self.n), float(other.n)
        if n2 <= 0:
            return self
        if n1 <= 0:
            return other
        n = n1 + n2
        delta = float(other.mean) - float(self.mean)
        mean = float(self.mean) + delta * n2 / n
        var = (n1 * float(self.var) + n2 * float(other.var)) / n + delta * delta * n1 * n2 / (n * n)
        return Moments(n, mean, var)

    @classmethod
    def from_values(cls, x: np.ndarray, *, overwrite_input: bool = False) -> Moments:
        """Moments of a 1-D float sample; ``overwrite_input`` lets it centre ``x`` in place."""
        if x.size == 0:
            return cls(0.0, float("nan"), float("nan"))
        mean = float(x.mean())
        # Two passes: no cancellation when the mean dwarfs the spread. Squares summed
        # by numpy (pairwise) rather than a BLAS dot, whose threads spin on every core.
        centred = np.subtract(x, mean, out=x if overwrite_input else None)
        squares = np.square(centred, out=centred)  # a scratch array either way
        return cls(float(x.size), mean, float(squares.sum()) / x.size)


@dataclass(frozen=True, slots=True)
class DesignEffects:
    """How much per-user clustering inflates the variance of each metric's estimate.

    Each field is the ratio of the user-level (cluster-robust, delta-method)
    variance of the cohort's estimate to the variance it would have if tasks were
    independent, clamped to at least 1: multiply an iid variance by it (or divide
    a sample size by it). Adjusted by users' history (`Adjustment`), ``tokens``
    and ``eval_score`` are the adjusted estimate's, which may be below 1 (the
    history explains differences between users that independent tasks would
    count as noise). ``latency`` is that of the exceedance indicator
    ``latency > p95`` (what the quantile tests count). 1 when users are unknown.
    Floats, or arrays of one value per look in simulations.
    """

    success: Any = 1.0
    latency: Any = 1.0
    tokens: Any = 1.0
    eval_score: Any = 1.0


@dataclass(frozen=True, slots=True)
class Adjustment:
    """What users' history before the rollout adds to each mean metric's estimate.

    The CUPED shift of `summary.adjust_cohorts` (0: no adjustment); the matching
    variance is in `DesignEffects`, which may then be below 1. Floats, or arrays
    of one value per look in simulations.
    """

    tokens: Any = 0.0
    eval_score: Any = 0.0


@dataclass(frozen=True, slots=True)
class CohortSummary:
    """What the judge needs to know about one cohort.

    ``users`` is the number of distinct users (NaN when the data has no user
    ids, as aggregates never do); ``design`` the design effects of per-user
    routing (all 1 without users); ``adjustment`` the shifts of the mean metrics
    by users' history (all 0 without it).
    """

    tasks: Any
    successes: Any
    latency: np.ndarray | Histogram
    tokens: Moments
    eval_score: Moments
    users: Any = math.nan
    design: DesignEffects = field(default_factory=DesignEffects)
    adjustment: Adjustment = field(default_factory=Adjustment)

    @property
    def latency_n(self) -> float:
        lat = self.latency
        return float(lat.n) if isinstance(lat, Histogram) else float(lat.size)

    @classmethod
    def empty(cls) -> CohortSummary:
        nan = Moments(0.0, float("nan"), float("nan"))
        return cls(0.0, 0.0, np.empty(0), nan, nan)


@dataclass(frozen=True, slots=True)
class Silence:
    """How long the canary has finished no task while the stable cohort kept working.

    ``minutes`` runs from the canary's last task (the data's start when it has none)
    to the end of the data; ``stable_tasks`` is what stable finished in that time.
    """

    minutes: float
    stable_tasks: float


@dataclass(frozen=True, slots=True)
class Summary:
    """Both cohorts over one analysis window, with anything that makes it untrustworthy.

    ``issues`` taint the whole summary (the judge holds before anything else);
    ``excluded`` names windows left out of the evidence as untrustworthy (the judge
    holds, but a violation proven on the rest is still a rollback). ``tokens_max``
    is the largest tokens value of any task (a lower bound on it for histograms),
    checked against the manifest's ``max_tokens_per_task``. ``window_tasks`` holds
    the task counts of each window, one row per window in time order, columns
    stable and canary (raw events: clock minutes from the first task's; aggregates:
    their windows); None where unknown. The split check reads it.
    """

    stable: CohortSummary
    canary: CohortSummary
    start: datetime | None = None
    end: datetime | None = None
    issues: tuple[str, ...] = field(default=())
    source: str = "events"
    excluded: tuple[str, ...] = field(default=())
    tokens_max: float = float("nan")
    silence: Silence | None = None
    window_tasks: np.ndarray | None = None

    @property
    def span(self) -> timedelta:
        if self.start is None or self.end is None:
            return timedelta(0)
        return self.end - self.start
