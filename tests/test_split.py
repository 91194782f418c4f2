"""The split check: users when known, over-dispersion-tolerant task counts otherwise.

Seeded Monte-Carlo: 5000 users of Zipf activity (rank^-1.1, or Zipf–Mandelbrot with
offset 20 as `sources.realistic.UserWorkload`), 200 tasks/min, each task's user drawn
by activity, sticky routing by a uniform number per user, looks every 10 minutes for
4 hours. Tolerances: a healthy split is flagged in none of 200 runs per share (a true
rate of 1.5 % would show at least once with probability 95 %); powers are stated per
scenario, each a few standard errors below what the seeds give.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from canary_stats import stats
from canary_stats._split import split_check
from canary_stats.stats import share_stability
from canary_stats.summary import CohortSummary, Moments, Summary

USERS, RATE, MINUTES = 5000, 200.0, 240
LOOKS = range(10, MINUTES + 1, 10)
SHARES = (0.01, 0.1, 0.5)
RUNS = 200
#: Lower bounds on the share of runs flagged: about 3 standard errors (of 200 runs) below
#: what these seeds gave (0.505, 1.0, 0.92, 0.995, 1.0, 0.915, 1.0).
POWER = {
    "share0.8-0.1-users": 0.40,
    "share0.8-0.5-users": 0.97,
    "x0.1-0.5-tasks": 0.85,
    "drop_half@30-0.1-tasks": 0.95,
    "drop_half@30-0.5-tasks": 0.97,
    "share0.8@30-0.5-tasks": 0.85,
    "drop_half@30-0.5-users": 0.97,
}


@cache
def _activity(offset: float) -> np.ndarray:
    w = (np.arange(1, USERS + 1) + offset) ** -1.1
    return np.cumsum(w / w.sum())


def _traffic(
    p: float, scenario: str, seed: int, *, offset: float = 0.0, start: float = 30.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minute, user and canary flag of every recorded task of one run."""
    rng = np.random.default_rng([seed, round(p * 1000), len(scenario), round(offset)])
    n = rng.poisson(RATE * MINUTES)
    minute = rng.random(n) * MINUTES
    user = np.minimum(np.searchsorted(_activity(offset), rng.random(n), side="right"), USERS - 1)
    u = rng.random(USERS)
    late = minute >= (start if scenario.endswith("@30") else 0.0)
    kind = scenario.split("@")[0]
    share = {"share0.8": np.where(late, 0.8 * p, p), "x0.1": np.where(late, 0.1 * p, p)}
    canary = u[user] < share.get(kind, p)
    keep = ~(canary & late & (rng.random(n) < 0.5)) if kind == "drop_half" else slice(None)
    return minute[keep], user[keep], canary[keep]


def _summaries(p: float, scenario: str, seed: int, *, users: bool, offset: float = 0.0):  # type: ignore[no-untyped-def]
    """One run's stage summary at every look (tasks, users and per-minute counts only)."""
    minute, user, canary = _traffic(p, scenario, seed, offset=offset)
    windows = np.zeros((MINUTES, 2))
    np.add.at(windows, (minute.astype(int), canary.astype(int)), 1.0)
    first = {}  # minute each user is first seen in each cohort
    for flag in (False, True):
        seen = np.full(USERS, np.inf)
        np.minimum.at(seen, user[canary == flag], minute[canary == flag])
        first[flag] = seen
    empty = Moments(0.0, math.nan, math.nan)
    for look in LOOKS:
        w = windows[:look]

        def cohort(flag: bool, w: np.ndarray = w, look: int = look) -> CohortSummary:
            count = float(np.count_nonzero(first[flag] < look)) if users else math.nan
            return CohortSummary(float(w[:, int(flag)].sum()), 0.0, np.empty(0), empty, empty,
                                 users=count)  # fmt: skip

        yield Summary(cohort(False), cohort(True), window_tasks=w)


def flag_rate(
    p: float, scenario: str, *, users: bool, offset: float = 0.0, stability: bool = False
) -> float:
    """Share of runs flagged at any look (srm_alpha 0.001)."""
    flagged = 0
    for seed in range(RUNS):
        for s in _summaries(p, scenario, seed, users=users, offset=offset):
            if split_check(s, p, alpha=0.001, stability=stability).mismatch:
                flagged += 1
                break
    return flagged / RUNS


#: (users known, Zipf–Mandelbrot offset, stability part) of the healthy runs.
HEALTHY = {
    "tasks": (False, 0.0, False),
    "users": (True, 0.0, False),
    "tasks-mandelbrot": (False, 20.0, False),
    "users-mandelbrot": (True, 20.0, False),
    "tasks-stability": (False, 0.0, True),
    "users-stability": (True, 0.0, True),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("users", "offset", "stability"), list(HEALTHY.values()), ids=list(HEALTHY)
)
@pytest.mark.parametrize("share", SHARES)
def test_a_healthy_split_is_almost_never_flagged(
    share: float, users: bool, offset: float, stability: bool
) -> None:
    rate = flag_rate(share, "healthy", users=users, offset=offset, stability=stability)
    assert rate < 0.005


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "share", "users", "stability", "power"),
    [
        # a router giving the canary another share from the start
        ("share0.8", 0.1, True, False, POWER["share0.8-0.1-users"]),  # users: exact
        ("share0.8", 0.5, True, False, POWER["share0.8-0.5-users"]),
        ("x0.1", 0.5, False, False, POWER["x0.1-0.5-tasks"]),  # tasks: only gross ones
        # a canary losing half its tasks from minute 30, or a split moving then
        ("drop_half@30", 0.1, False, True, POWER["drop_half@30-0.1-tasks"]),
        ("drop_half@30", 0.5, False, True, POWER["drop_half@30-0.5-tasks"]),
        ("share0.8@30", 0.5, False, True, POWER["share0.8@30-0.5-tasks"]),
        ("drop_half@30", 0.5, True, True, POWER["drop_half@30-0.5-users"]),  # users kept
    ],
)
def test_a_real_mismatch_is_caught(
    scenario: str, share: float, users: bool, stability: bool, power: float
) -> None:
    assert flag_rate(share, scenario, users=users, stability=stability) >= power


def test_users_are_the_unit_when_known() -> None:
    empty = Moments(0.0, math.nan, math.nan)

    def summary(users: tuple[float, float], tasks: tuple[float, float]) -> Summary:
        s, c = (CohortSummary(t, 0.0, np.empty(0), empty, empty, users=u)
                for u, t in zip(users, tasks, strict=True))  # fmt: skip
        return Summary(s, c)

    # tasks look off (a heavy user on the canary), users are as planned
    ok = split_check(summary((900.0, 100.0), (5000.0, 2500.0)), 0.1, alpha=0.001)
    assert ok.unit == "users" and ok.observed_share == pytest.approx(0.1) and not ok.mismatch
    assert math.isnan(ok.recent_share)  # no windows: no stability part
    bad = split_check(summary((900.0, 50.0), (5000.0, 500.0)), 0.1, alpha=0.001)
    assert bad.mismatch and bad.observed_share == pytest.approx(50 / 950)
    direct = stats.sample_ratio_mismatch(900.0, 50.0, expected_share=0.1, alpha=0.001)
    assert bad.log_evalue == pytest.approx(direct.log_evalue)
    tasks = split_check(summary((math.nan, math.nan), (5000.0, 2500.0)), 0.1, alpha=0.001)
    assert tasks.unit == "tasks" and not tasks.mismatch  # a share heavy users can cause
    assert split_check(summary((math.nan, math.nan), (9900.0, 100.0)), 0.5, alpha=0.001).mismatch


def test_recent_share_reads_the_latest_windows() -> None:
    empty = Moments(0.0, math.nan, math.nan)
    w = np.column_stack([np.full(40, 90.0), np.r_[np.full(30, 10.0), np.full(10, 2.0)]])
    cohort = [CohortSummary(float(w[:, k].sum()), 0.0, np.empty(0), empty, empty) for k in (0, 1)]
    summary = Summary(*cohort, window_tasks=w)
    res = split_check(summary, 0.1, alpha=0.001)
    assert res.recent_share == pytest.approx(2 / 92)
    assert not res.mismatch and res.unit == "tasks"  # the level is one heavy users can cause
    assert split_check(summary, 0.1, alpha=0.001, stability=True).mismatch  # a change is not


def test_share_stability_over_looks_equals_each_look() -> None:
    rng = np.random.default_rng(3)
    n = rng.poisson(200, size=(5, 60)).astype(float)
    c = rng.binomial(n.astype(int), 0.1).astype(float)
    c[:, 40:] = np.floor(c[:, 40:] / 2)
    together = share_stability(n - c, c, expected_share=0.1)
    for k in range(5):
        one = share_stability(n[k] - c[k], c[k], expected_share=0.1)
        assert one.log_evalue == pytest.approx(together.log_evalue[k], rel=1e-12)
        assert one.dispersion == together.dispersion[k]
    assert together.mismatch.all()
    short = share_stability(n[:, :9] - c[:, :9], c[:, :9], expected_share=0.1)
    assert np.all(short.log_evalue == 0.0)  # fewer than min_windows: no evidence


def test_sample_ratio_mismatch_keeps_its_default_and_takes_arrays() -> None:
    old = stats.sample_ratio_mismatch([9000.0, 800.0], [1000.0, 200.0], expected_share=0.1)
    same = stats.sample_ratio_mismatch(
        [9000.0, 800.0], [1000.0, 200.0], expected_share=0.1, dispersion=1.0, herfindahl=0.0
    )
    np.testing.assert_array_equal(old.log_evalue, same.log_evalue)
    assert old.unit == "tasks" and list(old.mismatch) == [False, True]
    wide = stats.sample_ratio_mismatch(
        [800.0, 800.0], [200.0, 200.0], expected_share=0.1, dispersion=[1.0, 4.0]
    )
    assert wide.log_evalue[1] < wide.log_evalue[0]  # bursts: less evidence per task
    spread = stats.sample_ratio_mismatch(800.0, 200.0, expected_share=0.1, herfindahl=0.04,
                                         concentration=1.0)  # fmt: skip
    assert not spread.mismatch  # a share heavy users can cause
    for bad in ({"dispersion": 0.5}, {"herfindahl": 1.0}, {"herfindahl": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            stats.sample_ratio_mismatch(1.0, 1.0, expected_share=0.1, **bad)  # type: ignore[arg-type]
