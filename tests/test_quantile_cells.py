"""The two-sample quantile evidence: valid at the margin, tighter than per-cohort bounds.

Seeded simulations of sequential looks; rates are checked against their level with
binomial room (a true rate at the level fails with chance below 0.1 %).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from canary_stats import stats
from canary_stats.simulate import EVENT_LATENCY_BUCKETS
from canary_stats.sources.openmetrics import LATENCY_BUCKETS

LOOKS = np.linspace(500, 20_000, 12).astype(int)  # canary tasks at each look
ALPHA, ALPHA_PASS = 0.05, 0.05


def _hist(x: np.ndarray, edges: np.ndarray) -> stats.Histogram:
    """Cumulative histograms of the first ``n`` values at every look."""
    b = np.searchsorted(edges, x, side="left")
    rows = [np.bincount(b[:n], minlength=edges.size).cumsum() for n in LOOKS]
    return stats.Histogram(edges, np.asarray(rows, dtype=float))


def _ever(status: np.ndarray, what: str) -> bool:
    return bool(np.any(np.asarray(status) == what))


def _rollout(rng: np.random.Generator, ratio: float, edges: np.ndarray, share: int) -> np.ndarray:
    """Statuses at every look: stable ``share`` times the canary, canary p95 ``ratio`` x."""
    n = int(LOOKS[-1])
    canary = np.exp(rng.normal(np.log(2200.0 * ratio), 0.5, n))
    stable_all = np.exp(rng.normal(np.log(2200.0), 0.5, n * share))
    b_s = np.searchsorted(edges, stable_all, side="left")
    rows = [np.bincount(b_s[: m * share], minlength=edges.size).cumsum() for m in LOOKS]
    stable = stats.Histogram(edges, np.asarray(rows, dtype=float))
    res = stats.quantile_contrast(
        stable, _hist(canary, edges), q=0.95, margin=1.2, alpha=ALPHA, alpha_pass=ALPHA_PASS
    )
    return np.asarray(res.status)


def _at_most(n: int, p: float) -> int:
    return int(sps.binom.isf(0.001, n, p))


@pytest.mark.parametrize("edges", [LATENCY_BUCKETS, EVENT_LATENCY_BUCKETS], ids=["3%", "1%"])
@pytest.mark.parametrize("share", [1, 9])
def test_canary_exactly_at_the_margin_is_rarely_decided_wrongly(
    edges: np.ndarray, share: int
) -> None:
    """p95 exactly 1.2 x stable: neither "fail" nor "pass" beyond its level."""
    rng = np.random.default_rng([14, share, edges.size])
    runs = 150
    fails = passes = 0
    for _ in range(runs):
        status = _rollout(rng, 1.2, edges, share)
        fails += _ever(status, "fail")
        passes += _ever(status, "pass")
    assert fails <= _at_most(runs, ALPHA), fails
    assert passes <= _at_most(runs, ALPHA_PASS), passes


def test_half_margin_proven_where_per_cohort_bounds_are_not() -> None:
    """Equal cohorts, p95 1.1 x stable, 20,000 tasks each on the 1 % grid: proven within."""
    rng = np.random.default_rng(7)
    proven = sum(_ever(_rollout(rng, 1.1, EVENT_LATENCY_BUCKETS, 1), "pass") for _ in range(40))
    assert proven >= 36, proven


def test_raw_observations_and_fine_histograms_agree() -> None:
    rng = np.random.default_rng(3)
    s = np.exp(rng.normal(np.log(2200.0), 0.5, 30_000))
    c = np.exp(rng.normal(np.log(2200.0 * 1.1), 0.5, 30_000))
    raw = stats.quantile_contrast(s, c, margin=1.2, design_effect=(3.0, 3.0))
    edges = EVENT_LATENCY_BUCKETS
    binned = stats.quantile_contrast(
        stats.Histogram(edges, np.bincount(np.searchsorted(edges, s), minlength=edges.size)
                        .cumsum().astype(float)),
        stats.Histogram(edges, np.bincount(np.searchsorted(edges, c), minlength=edges.size)
                        .cumsum().astype(float)),
        margin=1.2, design_effect=(3.0, 3.0),
    )  # fmt: skip
    assert raw.status == binned.status
    # Buckets cost at most a few of their widths on each end of the interval.
    assert abs(np.log(raw.confidence_interval.high / binned.confidence_interval.high)) < 0.04
    assert abs(np.log(raw.confidence_interval.low / binned.confidence_interval.low)) < 0.04
    assert binned.confidence_interval.low <= raw.estimate <= binned.confidence_interval.high


def test_a_regression_past_the_margin_is_proven() -> None:
    """p95 1.35 x stable (the margin 1.2 passed by 12 %), equal cohorts: a violation."""
    rng = np.random.default_rng(8)
    failed = sum(_ever(_rollout(rng, 1.35, EVENT_LATENCY_BUCKETS, 1), "fail") for _ in range(40))
    assert failed >= 36, failed
