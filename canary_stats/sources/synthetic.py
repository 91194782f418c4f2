"""Synthetic agent traffic: stable and canary cohorts with shared drift and regressions.

Both cohorts draw from the same workload; the canary may carry a `Regression`.
A diurnal cycle moves traffic, latency, failures and token spend of *both*
cohorts together (shared drift), which a judge comparing the cohorts over the
same window must not mistake for a regression.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = [
    "Regression",
    "Tasks",
    "Workload",
    "events_frame",
    "generate_events",
    "generate_tasks",
]


#: Each Regression field -> (whether a finite value is possible, what is expected).
_REGRESSION_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "success_drop": (lambda v: 0 <= v < 1, "a drop of the success probability in [0, 1)"),
    "latency_factor": (lambda v: v > 0, "a latency multiplier > 0"),
    "tail_share": (lambda v: 0 <= v <= 1, "a share of canary tasks in [0, 1]"),
    "tail_factor": (lambda v: v > 0, "a tail latency multiplier > 0"),
    "token_factor": (lambda v: v > 0, "a token multiplier > 0"),
    "eval_drop": (lambda v: 0 <= v < 1, "a drop of the mean eval score in [0, 1)"),
}


class _Baseline(Protocol):
    """What `Regression.check` and the diurnal cycle read of a workload."""

    @property
    def success_rate(self) -> float: ...
    @property
    def eval_mean(self) -> float: ...
    @property
    def diurnal_amplitude(self) -> float: ...
    @property
    def diurnal_period(self) -> timedelta: ...


@dataclass(frozen=True, slots=True)
class Regression:
    """How the canary differs from stable (the defaults: not at all).

    Attributes
    ----------
    success_drop : float
        Absolute drop of the task success probability.
    latency_factor : float
        Every canary latency multiplied by this (a whole-distribution shift).
    tail_share, tail_factor : float
        A share of canary tasks whose latency is multiplied by ``tail_factor``
        (a tail-only regression: the median barely moves, p95 does).
    token_factor : float
        Tokens per canary task multiplied by this.
    eval_drop : float
        Absolute drop of the mean eval score.

    Raises
    ------
    InputError
        For a value no canary can have, naming ``regression.<field>``: a drop outside
        [0, 1), a share outside [0, 1], a factor that is not > 0, or a value that is
        not a finite number. `check` also refuses, for a given workload, a drop
        larger than stable's success rate or mean eval score.
    """

    success_drop: float = 0.0
    latency_factor: float = 1.0
    tail_share: float = 0.0
    tail_factor: float = 1.0
    token_factor: float = 1.0
    eval_drop: float = 0.0

    def __post_init__(self) -> None:
        for name, (allowed, expected) in _REGRESSION_RANGES.items():
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and np.isfinite(value) and allowed(value)):
                raise InputError(f"regression.{name}", f"expected {expected}; got {value!r}")

    def check(self, workload: _Baseline) -> None:
        """Refuse a drop that would leave the canary below zero on ``workload``."""
        for name, drop, base, what in (
            ("success_drop", self.success_drop, workload.success_rate, "success rate"),
            ("eval_drop", self.eval_drop, workload.eval_mean, "mean eval score"),
        ):
            if base - drop < 0:
                raise InputError(
                    f"regression.{name}",
                    f"{drop:g} leaves the canary a {what} of {base - drop:g} (stable's "
                    f"{base:g} minus the drop); expected a drop of at most {base:g}",
                )


@dataclass(frozen=True, slots=True)
class Workload:
    """The stable release's traffic and metric distributions."""

    tasks_per_minute: float = 200.0
    success_rate: float = 0.985
    latency_median_ms: float = 2500.0
    latency_sigma: float = 0.5
    tokens_median: float = 3000.0
    tokens_sigma: float = 0.8
    max_tokens: float = 100_000.0
    eval_mean: float = 0.93
    eval_concentration: float = 30.0
    eval_rate: float = 0.8
    diurnal_amplitude: float = 0.3
    diurnal_period: timedelta = field(default=timedelta(hours=24))

    def generate(
        self,
        *,
        canary_share: float,
        minutes: float,
        regression: Regression | None = None,
        phase: float = 0.0,
        rng: np.random.Generator | int | None = None,
    ) -> Tasks:
        """`generate_tasks` on this workload (the interface `UserWorkload` shares)."""
        return generate_tasks(
            self,
            canary_share=canary_share,
            minutes=minutes,
            regression=regression,
            phase=phase,
            rng=rng,
        )


@dataclass(frozen=True, slots=True)
class Tasks:
    """Generated tasks as arrays (minutes since start, cohort flag and metrics).

    ``user`` holds each task's integer user id where the workload has users
    (`UserWorkload`), else None.
    """

    minute: np.ndarray
    canary: np.ndarray
    success: np.ndarray
    latency_ms: np.ndarray
    tokens: np.ndarray
    eval_score: np.ndarray  # NaN where the task was not evaluated
    user: np.ndarray | None = None


def _drift(workload: _Baseline, minutes: np.ndarray, phase: float) -> np.ndarray:
    period = workload.diurnal_period.total_seconds() / 60.0
    return workload.diurnal_amplitude * np.sin(2 * np.pi * minutes / period + phase)


def _check_share(canary_share: float) -> None:
    if not 0.0 <= canary_share <= 1.0:
        raise ValueError(f"`canary_share` must be in [0, 1]; got {canary_share!r}.")


def _arrival_times(gen: np.random.Generator, counts: np.ndarray, minutes: float) -> np.ndarray:
    """Task times from per-minute counts, uniform within each minute, before ``minutes``."""
    per_minute = np.arange(counts.size, dtype=float)
    t = np.repeat(per_minute, counts) + gen.random(int(counts.sum()))
    return t[t < minutes]


def _draw_metrics(
    gen: np.random.Generator,
    canary: np.ndarray,
    reg: Regression,
    *,
    p_fail: np.ndarray,
    latency_median: np.ndarray,
    latency_sigma: float,
    tokens_median: np.ndarray,
    tokens_sigma: float,
    max_tokens: float,
    eval_mean: np.ndarray | float,
    eval_concentration: float,
    eval_rate: float,
    binary: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Success, latency, tokens and eval score per task, ``reg`` applied to the canary.

    The location arguments are stable's, per task (drift and any user effect in
    them); the noise is lognormal around them, the score beta (or pass/fail with
    ``binary``) around ``eval_mean``. One function for every workload, so that a
    regression means the same on each.
    """
    n = canary.size
    p_fail = p_fail + np.where(canary, reg.success_drop, 0.0)
    success = gen.random(n) >= np.clip(p_fail, 0.0, 1.0)
    latency = latency_median * np.exp(latency_sigma * gen.standard_normal(n))
    latency *= np.where(canary, reg.latency_factor, 1.0)
    tail = canary & (gen.random(n) < reg.tail_share)
    latency[tail] *= reg.tail_factor
    tokens = tokens_median * np.exp(tokens_sigma * gen.standard_normal(n))
    tokens = np.minimum(np.round(tokens * np.where(canary, reg.token_factor, 1.0)), max_tokens)
    mean = np.clip(eval_mean - np.where(canary, reg.eval_drop, 0.0), 1e-3, 1 - 1e-3)
    if binary:
        score = (gen.random(n) < mean).astype(float)
    else:
        score = gen.beta(mean * eval_concentration, (1 - mean) * eval_concentration)
    score[gen.random(n) >= eval_rate] = np.nan
    return success, latency, tokens, score


def generate_tasks(
    workload: Workload,
    *,
    canary_share: float,
    minutes: float,
    regression: Regression | None = None,
    phase: float = 0.0,
    rng: np.random.Generator | int | None = None,
    assign: Callable[[int], np.ndarray] | None = None,
) -> Tasks:
    """Simulate ``minutes`` of traffic split between stable and canary.

    Arrivals are a Poisson process whose rate follows the diurnal cycle; each
    task goes to the canary with probability ``canary_share``, or as ``assign``
    says: given the number of tasks, it returns their canary flags (a sticky
    router routing each task's user, say).
    """
    _check_share(canary_share)
    reg = regression or Regression()
    reg.check(workload)
    gen = np.random.default_rng(rng)
    per_minute = np.arange(int(np.ceil(minutes)), dtype=float)
    rate = workload.tasks_per_minute * (1 + _drift(workload, per_minute + 0.5, phase))
    t = _arrival_times(gen, gen.poisson(np.maximum(rate, 0.0)), minutes)
    n = t.size
    drift = _drift(workload, t, phase)
    canary = gen.random(n) < canary_share if assign is None else _flags(assign(n), n)
    # Shared drift: busier hours are slower, fail a little more and spend a little more.
    success, latency, tokens, score = _draw_metrics(
        gen,
        canary,
        reg,
        p_fail=(1 - workload.success_rate) * (1 + drift),
        latency_median=workload.latency_median_ms * (1 + drift),
        latency_sigma=workload.latency_sigma,
        tokens_median=workload.tokens_median * (1 + 0.5 * drift),
        tokens_sigma=workload.tokens_sigma,
        max_tokens=workload.max_tokens,
        eval_mean=workload.eval_mean,
        eval_concentration=workload.eval_concentration,
        eval_rate=workload.eval_rate,
    )
    return Tasks(t, canary, success, latency, tokens, score)


def _flags(canary: np.ndarray, n: int) -> np.ndarray:
    flags = np.asarray(canary, dtype=bool)
    if flags.shape != (n,):
        raise ValueError(f"`assign` must return {n} canary flags; got shape {flags.shape}.")
    return flags


def generate_events(
    workload: Workload,
    *,
    canary_share: float,
    duration: timedelta,
    start: datetime | None = None,
    regression: Regression | None = None,
    rng: np.random.Generator | int | None = None,
) -> pd.DataFrame:
    """Raw events (the data contract of DESIGN.md) for ``duration`` of traffic."""
    start = start or datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    tasks = generate_tasks(
        workload,
        canary_share=canary_share,
        minutes=duration.total_seconds() / 60,
        regression=regression,
        rng=rng,
    )
    events = events_frame(tasks, start)
    events["request_id"] = [f"req-{i:08d}" for i in range(tasks.minute.size)]
    return events


def events_frame(tasks: Tasks, start: datetime) -> pd.DataFrame:
    """Generated tasks as raw events (ts, cohort and the metrics) from ``start``.

    Tasks with users also get a ``user_id`` column (``"u00042"`` for user 42).
    """
    events = pd.DataFrame(
        {
            "ts": pd.Timestamp(start) + pd.to_timedelta(tasks.minute, unit="min"),
            "cohort": np.where(tasks.canary, "canary", "stable"),
            "success": tasks.success,
            "latency_ms": tasks.latency_ms.round(1),
            "tokens": tasks.tokens,
            "eval_score": tasks.eval_score,
        }
    )
    if tasks.user is not None:
        # Format each distinct user once: far fewer users than tasks.
        ids, index = np.unique(tasks.user, return_inverse=True)
        labels = np.array([f"u{i:05d}" for i in ids.tolist()], dtype=object)
        events["user_id"] = labels[index]
    return events
