"""Seeded end-to-end calibration of the judge over whole simulated rollouts.

Each rate is checked with its Monte-Carlo error accounted for: a claim such as
"false rollback <= 5 %" fails only when an exact one-sided binomial test
rejects it at level 0.01 given the observed count.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

import canary_stats as cs
from canary_stats.simulate import simulate_rollout
from canary_stats.sources.synthetic import Regression

from .conftest import RELATIVE_ROLLOUT, SEED_MANIFEST

pytestmark = pytest.mark.slow


def _at_most(k: int, n: int, p: float) -> bool:
    return binomtest(k, n, p, alternative="greater").pvalue > 0.01


def _at_least(k: int, n: int, p: float) -> bool:
    return binomtest(k, n, p, alternative="less").pvalue > 0.01


@pytest.mark.parametrize("which", ["seed", "relative"])
def test_identical_canary_rarely_rolls_back_and_is_promoted_on_time(which: str) -> None:
    policy = (
        cs.Policy.from_manifest(SEED_MANIFEST)
        if which == "seed"
        else cs.Policy.from_dict(RELATIVE_ROLLOUT)
    )
    runs = 120
    outs = [simulate_rollout(policy, rng=np.random.default_rng([7, i])) for i in range(runs)]
    rollbacks = sum(o.outcome == "rolled_back" for o in outs)
    on_time = sum(o.outcome == "promoted" and o.minutes <= 510 for o in outs)
    assert _at_most(rollbacks, runs, policy.alpha), f"{rollbacks}/{runs} false rollbacks"
    assert _at_least(on_time, runs, 0.90), f"only {on_time}/{runs} promoted within 8.5 h"


@pytest.mark.parametrize(
    "regression",
    [
        Regression(success_drop=0.04),
        Regression(latency_factor=1.4),
        Regression(tail_share=0.10, tail_factor=4.0),
        Regression(token_factor=1.35),
        Regression(eval_drop=0.06),
    ],
    ids=["success", "latency-shift", "latency-tail", "tokens", "eval"],
)
def test_regressions_are_rolled_back_never_promoted(regression: Regression) -> None:
    policy = cs.Policy.from_dict(RELATIVE_ROLLOUT)
    runs = 40
    outs = [
        simulate_rollout(policy, None, regression, rng=np.random.default_rng([9, i]))
        for i in range(runs)
    ]
    rolled = sum(o.outcome == "rolled_back" for o in outs)
    promoted = sum(o.outcome == "promoted" for o in outs)
    assert _at_least(rolled, runs, 0.95), f"power {rolled}/{runs}"
    assert _at_most(promoted, runs, 0.05), f"false promotion {promoted}/{runs}"


def test_canary_exactly_at_the_margin_rolls_back_at_most_alpha() -> None:
    # Success rate exactly 0.02 below stable, checked at 120 looks of a 10 % stage.
    rng = np.random.default_rng(2024)
    reps, looks, per_look = 2000, 120, 200
    alpha = 0.05 / 12
    n_c = rng.binomial(per_look, 0.10, size=(reps, looks)).cumsum(axis=1)
    n_s = looks * 0 + np.arange(1, looks + 1) * per_look - n_c
    x_c = rng.binomial(np.diff(n_c, prepend=0, axis=1), 0.95).cumsum(axis=1)
    x_s = rng.binomial(np.diff(n_s, prepend=0, axis=1), 0.97).cumsum(axis=1)
    res = cs.stats.proportion_contrast(x_s, n_s, x_c, n_c, margin=-0.02, alpha=alpha)
    fails = int((np.asarray(res.status) == "fail").any(axis=1).sum())
    assert _at_most(fails, reps, alpha), f"{fails}/{reps} at the margin"
