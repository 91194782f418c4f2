"""Input validation of the statistics layer: every branch names its argument."""

from __future__ import annotations

import numpy as np
import pytest

from canary_stats import stats


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: stats.mean_bound(10, 1, 1, bound=1, alternative="up"), "`alternative` must be"),
        (
            lambda: stats.mean_bound(10, 1, 1, bound=1, alternative="less", alpha=1.5),
            "`alpha` must",
        ),
        (lambda: stats.mean_bound(10, 1, -1, bound=1, alternative="less"), "`var_canary` must"),
        (lambda: stats.mean_bound(-1, 1, 1, bound=1, alternative="less"), "`n_canary` must"),
        (lambda: stats.mean_bound(10, 1, 1, bound=np.nan, alternative="less"), "`bound` must"),
        (
            lambda: stats.mean_contrast(
                1, 1, 1, 1, 1, 1, contrast="odds", margin=1, alternative="less"
            ),
            "`contrast` must be one of",
        ),
        (
            lambda: stats.mean_contrast(
                1, 1, 1, 1, 1, 1, contrast="ratio", margin=-1, alternative="less"
            ),
            "`margin` of a ratio must be positive",
        ),
        (lambda: stats.proportion_bound(5, 4, bound=0.9), "`successes` must not exceed `n`"),
        (
            lambda: stats.proportion_bound(3, 4, bound=1.2),
            "`bound` of a proportion must be in (0, 1)",
        ),
        (lambda: stats.proportion_contrast(5, 4, 1, 2, margin=-0.1), "must not exceed"),
        (lambda: stats.quantile_confidence_sequence([1.0, np.nan]), "`data` must not contain NaN"),
        (lambda: stats.quantile_confidence_sequence([1.0, 2.0], q=1.0), "`q` must be in (0, 1)"),
        (lambda: stats.quantile_bound([1.0], bound=1, n_tune=0), "`n_tune` must be a positive"),
        (
            lambda: stats.sample_ratio_mismatch(1, 1, expected_share=0),
            "`expected_share` must be in",
        ),
        (
            lambda: stats.Histogram(np.array([2.0, 1.0]), np.array([1.0, 2.0])),
            "strictly increasing",
        ),
        (lambda: stats.Histogram(np.array([1.0, 2.0]), np.array([2.0, 1.0])), "must be cumulative"),
        (lambda: stats.quantile_contrast_bootstrap([1.0], [1.0, 2.0]), "`stable` must be a 1-D"),
        (
            lambda: stats.mean_contrast_bootstrap([1.0, 2], [1.0, 2.0], n_resamples=5),
            "`n_resamples`",
        ),
    ],
)
def test_validation_messages_name_the_argument(call, message: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_results_broadcast_over_looks() -> None:
    n = np.array([100.0, 1000.0, 10000.0])
    res = stats.proportion_contrast(0.97 * n, n, 0.90 * n, n, margin=-0.02, alpha=0.01)
    assert res.status.tolist() == ["inconclusive", "fail", "fail"]
    widths = np.asarray(res.confidence_interval.high) - np.asarray(res.confidence_interval.low)
    assert np.all(np.diff(widths) < 0)  # the sequence tightens as data accrue


def test_no_failures_yet_is_not_zero_variance() -> None:
    # 40 canary tasks, all successful: a plug-in variance of zero would "prove" anything
    res = stats.proportion_contrast(970, 1000, 40, 40, margin=-0.02, alpha=0.05)
    assert res.status == "inconclusive"


def test_histogram_bounds_are_conservative_and_state_their_resolution() -> None:
    rng = np.random.default_rng(4)
    x = rng.lognormal(7.5, 0.5, 4000)
    edges = np.concatenate([np.geomspace(100, 1e5, 60), [np.inf]])
    raw = stats.quantile_confidence_sequence(x, q=0.95)
    hist = stats.quantile_confidence_sequence(stats.Histogram.from_samples(x, edges), q=0.95)
    assert hist.confidence_interval.low <= raw.confidence_interval.low
    assert hist.confidence_interval.high >= raw.confidence_interval.high
    assert 0 < hist.resolution < 0.15 * hist.estimate
    assert abs(hist.estimate - raw.estimate) <= hist.resolution
