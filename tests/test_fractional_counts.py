"""Counts as a real ``increase()`` returns them: fractional, never whole.

Prometheus extrapolates ``increase()`` to the window's edges, so a histogram of
57 scraped tasks comes back as 57.78. Every loop of the statistics layer must end
for such counts; the thresholds are whole ranks and the bounds stay valid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from canary_stats.stats import Histogram, quantile_bound, quantile_contrast
from canary_stats.stats._quantiles import _rank_thresholds

EDGES = np.array([250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, np.inf])


def _finishes(fn: Callable[[], Any], seconds: float = 20.0) -> Any:
    """Run ``fn`` in a thread; fail (rather than hang the suite) if it does not end."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            out["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"did not finish in {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _fractional_histogram(total: float) -> Histogram:
    """Cumulative counts in the proportions of a typical latency histogram."""
    shares = np.array([0.05, 0.2, 0.5, 0.8, 0.93, 0.97, 0.995, 1.0])
    return Histogram(EDGES, shares * total)


def test_the_reported_count_finishes() -> None:
    # n = 57.78 sat at lo = 57, hi = 58.78, mid = 57 forever before the fix.
    h = _fractional_histogram(57.78)
    res = _finishes(lambda: quantile_bound(h, bound=8000.0, alternative="greater"))
    assert res.status in {"pass", "fail", "inconclusive"}
    s_lo, k_up = _finishes(lambda: _rank_thresholds(np.array([57.78]), 0.95, 0.05, 0.05, 1000))
    assert float(s_lo[0]) == int(s_lo[0]) and (float(k_up[0]) == int(k_up[0]) or k_up[0] > 57.78)


def test_contrast_on_fractional_windows_finishes() -> None:
    stable = Histogram(EDGES, np.cumsum([3.4, 10.2, 40.1, 30.7, 9.9, 4.3, 1.2, 0.29])[None, :])
    canary = _fractional_histogram(57.78)
    res = _finishes(
        lambda: quantile_contrast(
            Histogram(EDGES, stable.counts[0]), canary, margin=1.2, contrast="ratio"
        )
    )
    assert res.status in {"pass", "fail", "inconclusive"}


@settings(max_examples=300, deadline=None)
@given(n=st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False))
def test_thresholds_are_whole_ranks_for_any_count(n: float) -> None:
    counts = np.array([n, np.nextafter(n, np.inf), n + 0.5])
    s_lo, k_up = _finishes(lambda: _rank_thresholds(counts, 0.95, 0.025, 0.025, 1000))
    for c, lo, up in zip(counts, s_lo, k_up, strict=True):
        assert lo == np.floor(lo) and -1 <= lo <= np.floor(c)
        assert (up == np.floor(up) and 0 <= up <= np.floor(c)) or up == c + 1.0
        assert lo < up  # the two sides never prove contradictory things


def test_fractional_counts_agree_with_whole_ones() -> None:
    """A fractional count decides as the nearby whole counts do (monotone in between)."""
    whole = _rank_thresholds(np.array([500.0, 501.0]), 0.95, 0.025, 0.025, 1000)
    frac = _rank_thresholds(np.array([500.4]), 0.95, 0.025, 0.025, 1000)
    assert whole[0][0] <= frac[0][0] <= whole[0][1]
    assert whole[1][0] <= frac[1][0] <= whole[1][1]
