"""Seeded Monte-Carlo validation of the statistical guarantees (issue item 7).

Two levels:

* the statistics layer, with many replicate sequences of cumulative statistics
  evaluated at every look in one vectorised call: fail-side error with the truth
  exactly at the margin (b) and time-uniform coverage of every confidence
  sequence (d);
* whole simulated rollouts through the judge: false rollbacks of identical
  cohorts (a), under heavy shared drift (c), and power against realistic
  regressions (e).

Every rate is checked with its Monte-Carlo error accounted for: a claim
"rate <= p" fails only when a one-sided exact binomial test rejects it at level
0.01 (and "rate >= p" likewise). All randomness is seeded.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import NamedTuple

import numpy as np
import pytest
from scipy import stats as sps

from canary_stats import Policy
from canary_stats import stats as cs
from canary_stats.demo import SEED_ROLLOUT
from canary_stats.simulate import RolloutOutcome, simulate_rollout
from canary_stats.sources.synthetic import Regression, Workload

from .conftest import RELATIVE_ROLLOUT

MC_LEVEL = 0.01  # level of the binomial tests that account for Monte-Carlo error
ALPHA = 0.05
Z95 = sps.norm.ppf(0.95)

ABSOLUTE = SEED_ROLLOUT
RELATIVE = RELATIVE_ROLLOUT
POLICIES = {"absolute": ABSOLUTE, "relative": RELATIVE}
CHECK_EVERY = timedelta(minutes=5)
PLANNED_MINUTES = 30 + 120 + 360  # sum of the analysed stages' minimum durations


# -- Monte-Carlo assertions ---------------------------------------------------------------


def assert_rate_at_most(k: int, n: int, p: float, what: str) -> None:
    """Fail when ``k`` of ``n`` proves the true rate exceeds ``p`` (exact test, level 0.01)."""
    pvalue = sps.binomtest(k, n, p, alternative="greater").pvalue
    assert pvalue >= MC_LEVEL, (
        f"{what}: {k}/{n} = {k / n:.4f} exceeds the nominal {p} "
        f"(one-sided binomial p = {pvalue:.2e} < {MC_LEVEL})"
    )


def assert_rate_at_least(k: int, n: int, p: float, what: str) -> None:
    """Fail when ``k`` of ``n`` proves the true rate is below ``p`` (exact test, level 0.01)."""
    pvalue = sps.binomtest(k, n, p, alternative="less").pvalue
    assert pvalue >= MC_LEVEL, (
        f"{what}: {k}/{n} = {k / n:.4f} is below the required {p} "
        f"(one-sided binomial p = {pvalue:.2e} < {MC_LEVEL})"
    )


# -- replicate sequences of cumulative statistics -----------------------------------------
#
# Each helper returns arrays of shape (reps, looks): cumulative statistics of one
# replicate sequence at every look. Flattened, they go to the statistics layer in
# one vectorised call.


def canary_looks(step: int, count: int) -> np.ndarray:
    """Cumulative canary sample sizes at the looks: ``step, 2 step, ..., count * step``."""
    return step * np.arange(1, count + 1)


def stable_looks(canary: np.ndarray, share: float) -> np.ndarray:
    """Stable sample sizes at the same looks for a canary traffic ``share``."""
    return np.round(canary * (1 - share) / share).astype(int)


def cum_successes(rng: np.random.Generator, n: np.ndarray, p: float, reps: int) -> np.ndarray:
    increments = rng.binomial(np.diff(n, prepend=0), p, size=(reps, n.size))
    return np.cumsum(increments, axis=1)


Draw = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


def cum_moments(
    rng: np.random.Generator, n: np.ndarray, draw: Draw, reps: int, chunk: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Running mean and variance (ddof=0) at each look."""
    idx = n - 1
    mean, var = np.empty((reps, n.size)), np.empty((reps, n.size))
    for start in range(0, reps, chunk):
        stop = min(start + chunk, reps)
        x = draw(rng, (stop - start, int(n[-1])))
        m = np.cumsum(x, axis=1)[:, idx] / n
        mean[start:stop] = m
        var[start:stop] = np.maximum(np.cumsum(x * x, axis=1)[:, idx] / n - m * m, 0.0)
    return mean, var


def cum_histogram(
    rng: np.random.Generator,
    n: np.ndarray,
    draw: Draw,
    edges: np.ndarray,
    reps: int,
    chunk: int = 100,
) -> np.ndarray:
    """Cumulative bucket counts (Prometheus ``le`` buckets) at each look: (reps * looks, B)."""
    looks, width = n.size, edges.size
    block = np.searchsorted(n, np.arange(n[-1]), side="right")  # look at which each draw lands
    out = np.empty((reps, looks, width))
    for start in range(0, reps, chunk):
        stop = min(start + chunk, reps)
        r = stop - start
        bucket = np.searchsorted(edges, draw(rng, (r, int(n[-1]))), side="left")
        cell = (np.arange(r)[:, None] * looks + block) * width + bucket
        grid = np.bincount(cell.ravel(), minlength=r * looks * width).reshape(r, looks, width)
        out[start:stop] = np.cumsum(np.cumsum(grid, axis=1), axis=2)
    return out.reshape(reps * looks, width)


def per_look(x: np.ndarray, reps: int) -> np.ndarray:
    """Broadcast per-look sizes to (reps, looks).

    Explicitly: ``mean_bound``/``mean_contrast``/``proportion_contrast`` raise
    IndexError when counts of shape (looks,) meet moments of shape (reps, looks).
    """
    return np.broadcast_to(x, (reps, x.size))


def lognormal(median: float, sigma: float) -> Draw:
    return lambda g, shape: median * np.exp(sigma * g.standard_normal(shape))


def beta_scores(mean: float, concentration: float = 30.0) -> Draw:
    return lambda g, shape: g.beta(mean * concentration, (1 - mean) * concentration, shape)


#: Latency buckets about 3 % wide, with 1.2 an exact power of the width so that a
#: quantile and 1.2 times it both fall on bucket edges.
BUCKET_WIDTH = 1.2 ** (1 / 6)


def buckets_around(q_true: float) -> np.ndarray:
    return np.concatenate([q_true * BUCKET_WIDTH ** np.arange(-50.0, 51.0), [np.inf]])


# -- one function per guardrail test, evaluated at every look of every replicate ----------
#
# Each returns an `Outcome`: per replicate sequence, whether it ever proved a
# violation (fail) or compliance (pass), and the interval at every look.


class Outcome(NamedTuple):
    fail: np.ndarray  # (reps,) bool: "fail" at some look
    passed: np.ndarray  # (reps,) bool: "pass" at some look
    low: np.ndarray  # (reps, looks)
    high: np.ndarray  # (reps, looks)


def _unpack(res: cs.SequentialTestResult, reps: int) -> Outcome:
    def get(x: object) -> np.ndarray:
        return np.asarray(x).reshape(reps, -1)

    status = get(res.status)
    return Outcome(
        (status == "fail").any(axis=1),
        (status == "pass").any(axis=1),
        get(res.confidence_interval.low).astype(float),
        get(res.confidence_interval.high).astype(float),
    )


def run_proportion_contrast(
    p_stable: float,
    p_canary: float,
    *,
    share: float,
    margin: float,
    reps: int,
    seed: int,
    alpha: float = ALPHA,
    alpha_pass: float = ALPHA,
    contrast: str = "difference",
) -> Outcome:
    rng = np.random.default_rng(seed)
    nc = canary_looks(30, 100)
    ns = stable_looks(nc, share)
    xs, xc = cum_successes(rng, ns, p_stable, reps), cum_successes(rng, nc, p_canary, reps)
    res = cs.proportion_contrast(
        xs,
        per_look(ns, reps),
        xc,
        per_look(nc, reps),
        contrast=contrast,
        margin=margin,
        alternative="less",
        alpha=alpha,
        alpha_pass=alpha_pass,
        n_tune=10_000,
    )
    return _unpack(res, reps)


def run_proportion_bound(
    p: float,
    *,
    bound: float,
    reps: int,
    seed: int,
    alpha: float = ALPHA,
    alpha_pass: float = ALPHA,
) -> Outcome:
    rng = np.random.default_rng(seed)
    n = canary_looks(30, 100)
    x = cum_successes(rng, n, p, reps)
    res = cs.proportion_bound(
        x,
        per_look(n, reps),
        bound=bound,
        alternative="less",
        alpha=alpha,
        alpha_pass=alpha_pass,
        n_tune=1_000,
    )
    return _unpack(res, reps)


def run_mean_contrast(
    draw_stable: Draw,
    draw_canary: Draw,
    *,
    share: float,
    contrast: str,
    margin: float,
    alternative: str,
    reps: int,
    seed: int,
    alpha: float = ALPHA,
    alpha_pass: float = ALPHA,
) -> Outcome:
    rng = np.random.default_rng(seed)
    nc = canary_looks(30, 100)
    ns = stable_looks(nc, share)
    ms, vs = cum_moments(rng, ns, draw_stable, reps)
    mc, vc = cum_moments(rng, nc, draw_canary, reps)
    res = cs.mean_contrast(
        per_look(ns, reps),
        ms,
        vs,
        per_look(nc, reps),
        mc,
        vc,
        contrast=contrast,
        margin=margin,
        alternative=alternative,
        alpha=alpha,
        alpha_pass=alpha_pass,
        n_tune=10_000,
    )
    return _unpack(res, reps)


def run_mean_bound(
    draw: Draw,
    *,
    bound: float,
    reps: int,
    seed: int,
    alpha: float = ALPHA,
    alpha_pass: float = ALPHA,
) -> Outcome:
    rng = np.random.default_rng(seed)
    n = canary_looks(30, 100)
    mean, var = cum_moments(rng, n, draw, reps)
    res = cs.mean_bound(
        per_look(n, reps),
        mean,
        var,
        bound=bound,
        alternative="less",
        alpha=alpha,
        alpha_pass=alpha_pass,
        n_tune=1_000,
    )
    return _unpack(res, reps)


LATENCY_SIGMA = 0.5  # the synthetic workload's log-latency spread


def p95_lognormal(p95: float) -> Draw:
    """Log-normal latencies whose 0.95-quantile is exactly ``p95``."""
    return lognormal(p95 / np.exp(LATENCY_SIGMA * Z95), LATENCY_SIGMA)


def run_quantile_bound(
    p95: float,
    *,
    bound: float,
    reps: int,
    seed: int,
    alpha: float = ALPHA,
    alpha_pass: float = ALPHA,
) -> Outcome:
    rng = np.random.default_rng(seed)
    n = canary_looks(40, 50)
    edges = buckets_around(bound)
    counts = cum_histogram(rng, n, p95_lognormal(p95), edges, reps)
    res = cs.quantile_bound(
        cs.Histogram(edges, counts),
        q=0.95,
        bound=bound,
        alternative="greater",
        alpha=alpha,
        alpha_pass=alpha_pass,
        n_tune=1_000,
    )
    return _unpack(res, reps)


def run_quantile_contrast(
    p95_stable: float,
    p95_canary: float,
    *,
    share: float,
    contrast: str,
    margin: float,
    reps: int,
    seed: int,
    alpha: float = ALPHA,
    alpha_pass: float = ALPHA,
) -> Outcome:
    rng = np.random.default_rng(seed)
    nc = canary_looks(40, 50)
    ns = stable_looks(nc, share)
    edges = buckets_around(p95_stable)
    hs = cum_histogram(rng, ns, p95_lognormal(p95_stable), edges, reps)
    hc = cum_histogram(rng, nc, p95_lognormal(p95_canary), edges, reps)
    res = cs.quantile_contrast(
        cs.Histogram(edges, hs),
        cs.Histogram(edges, hc),
        q=0.95,
        contrast=contrast,
        margin=margin,
        alternative="greater",
        alpha=alpha,
        alpha_pass=alpha_pass,
        n_tune_stable=max(10_000 * (1 - share), 100),
        n_tune_canary=max(10_000 * share, 100),
    )
    return _unpack(res, reps)


# -- (b) a canary exactly at each margin: fail-side error <= alpha over all looks ---------
#
# 2000 replicate sequences x 100 looks (1000 x 50 for the quantile tests, whose
# order-statistic boundaries cost more), at alpha = alpha_pass = 0.05 so the
# Monte-Carlo test has power. Each case also runs 200 sequences with the truth
# well beyond the margin, which must be caught: a harness that can never fail
# would otherwise pass vacuously. Canary looks start at 30 observations (the
# policy's minimum sample) and stable gets (1 - share) / share times as many.

EVAL_DRAW_STABLE = beta_scores(0.93)


class MarginCase(NamedTuple):
    at_margin: Callable[..., Outcome]  # the truth exactly at the margin
    beyond: Callable[..., Outcome]  # the truth clearly violating it
    reps: int


def _success_drop(share: float) -> MarginCase:
    def run(drop: float) -> Callable[..., Outcome]:
        return functools.partial(
            run_proportion_contrast, 0.985, 0.985 - drop, share=share, margin=-0.02
        )

    return MarginCase(run(0.02), run(0.05), 2000)


def _token_ratio(share: float) -> MarginCase:
    def run(ratio: float) -> Callable[..., Outcome]:
        return functools.partial(
            run_mean_contrast,
            lognormal(3000.0, 0.8),
            lognormal(3000.0 * ratio, 0.8),
            share=share,
            contrast="ratio",
            margin=1.15,
            alternative="greater",
        )

    return MarginCase(run(1.15), run(1.5), 2000)


def _eval_drop(share: float) -> MarginCase:
    def run(drop: float) -> Callable[..., Outcome]:
        return functools.partial(
            run_mean_contrast,
            EVAL_DRAW_STABLE,
            beta_scores(0.93 - drop),
            share=share,
            contrast="difference",
            margin=-0.03,
            alternative="less",
        )

    return MarginCase(run(0.03), run(0.08), 2000)


AT_MARGIN: dict[str, MarginCase] = {
    # task_success_rate {max_drop: 0.02}: difference of rates, stable 0.985
    "success_drop@1%": _success_drop(0.01),
    "success_drop@10%": _success_drop(0.10),
    "success_drop@50%": _success_drop(0.50),
    # task_success_rate {min: 0.97}: exact beta-binomial test
    "success_min": MarginCase(
        functools.partial(run_proportion_bound, 0.97, bound=0.97),
        functools.partial(run_proportion_bound, 0.94, bound=0.97),
        2000,
    ),
    # tokens_per_task {max_ratio: 1.15}: log-normal tokens, true ratio of means 1.15
    "token_ratio@10%": _token_ratio(0.10),
    "token_ratio@50%": _token_ratio(0.50),
    # eval_score {max_drop: 0.03}: Beta scores, means 0.93 and 0.90
    "eval_drop@10%": _eval_drop(0.10),
    # eval_score {min: 0.90}: Beta scores with mean 0.90
    "eval_min": MarginCase(
        functools.partial(run_mean_bound, beta_scores(0.90), bound=0.90),
        functools.partial(run_mean_bound, beta_scores(0.85), bound=0.90),
        2000,
    ),
    # p95_latency_ms {max: 8000}: true p95 8000 ms, 3 % buckets
    "p95_max": MarginCase(
        functools.partial(run_quantile_bound, 8000.0, bound=8000.0),
        functools.partial(run_quantile_bound, 8000.0 * 1.3, bound=8000.0),
        1000,
    ),
    # p95_latency_ms {max_ratio: 1.2}: canary latencies 1.2 x stable's
    "p95_ratio@10%": MarginCase(
        functools.partial(
            run_quantile_contrast, 5000.0, 6000.0, share=0.1, contrast="ratio", margin=1.2
        ),
        functools.partial(
            run_quantile_contrast, 5000.0, 8000.0, share=0.1, contrast="ratio", margin=1.2
        ),
        1000,
    ),
}


@functools.cache
def at_margin(name: str) -> Outcome:
    case = AT_MARGIN[name]
    return case.at_margin(reps=case.reps, seed=1000 + list(AT_MARGIN).index(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(AT_MARGIN))
def test_canary_at_margin_fails_at_most_alpha(name: str) -> None:
    out = at_margin(name)
    assert_rate_at_most(int(out.fail.sum()), out.fail.size, ALPHA, f"{name}: fail at the margin")
    caught = AT_MARGIN[name].beyond(reps=200, seed=1500 + list(AT_MARGIN).index(name)).fail
    assert caught.mean() >= 0.9, f"{name}: only {caught.mean():.3f} caught well beyond the margin"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(AT_MARGIN))
def test_canary_at_margin_passes_at_most_alpha_pass(name: str) -> None:
    # The other side of the same sequences: exactly at the margin, compliance must
    # not be proven more often than alpha_pass (this bounds false promotions).
    out = at_margin(name)
    assert_rate_at_most(
        int(out.passed.sum()), out.passed.size, ALPHA, f"{name}: pass at the margin"
    )


# -- (d) coverage, uniformly over all looks ----------------------------------------------
#
# Each sequence is built with alpha = alpha_pass = 0.025 on its two sides: a 95 %
# confidence sequence. It misses when the true value leaves the interval at any
# look. Truths differ from the margins above; the margins do not matter here.

COVERAGE_ALPHA = 0.025
NOMINAL_MISS = 2 * COVERAGE_ALPHA


def _coverage_cases() -> dict[str, tuple[Callable[..., Outcome], float]]:
    """name -> (run, true value of the contrast)."""
    level = {"alpha": COVERAGE_ALPHA, "alpha_pass": COVERAGE_ALPHA}
    return {
        "proportion_bound": (
            functools.partial(run_proportion_bound, 0.985, bound=0.97, **level),
            0.985,
        ),
        "proportion_contrast difference@10%": (
            functools.partial(
                run_proportion_contrast, 0.985, 0.975, share=0.1, margin=-0.02, **level
            ),
            0.975 - 0.985,
        ),
        "proportion_contrast ratio@10%": (
            functools.partial(
                run_proportion_contrast,
                0.985,
                0.975,
                share=0.1,
                margin=0.98,
                contrast="ratio",
                **level,
            ),
            0.975 / 0.985,
        ),
        "mean_bound": (
            functools.partial(run_mean_bound, beta_scores(0.93), bound=0.90, **level),
            0.93,
        ),
        "mean_contrast difference@50%": (
            functools.partial(
                run_mean_contrast,
                EVAL_DRAW_STABLE,
                beta_scores(0.91),
                share=0.5,
                contrast="difference",
                margin=-0.03,
                alternative="less",
                **level,
            ),
            0.91 - 0.93,
        ),
        "mean_contrast ratio@10%": (
            functools.partial(
                run_mean_contrast,
                lognormal(3000.0, 0.8),
                lognormal(3300.0, 0.8),
                share=0.1,
                contrast="ratio",
                margin=1.15,
                alternative="greater",
                **level,
            ),
            1.1,
        ),
        "quantile_contrast ratio@50%": (
            functools.partial(
                run_quantile_contrast,
                5000.0,
                5000.0 * BUCKET_WIDTH**3,
                share=0.5,
                contrast="ratio",
                margin=1.2,
                **level,
            ),
            BUCKET_WIDTH**3,
        ),
        "quantile_contrast difference@50%": (
            functools.partial(
                run_quantile_contrast,
                5000.0,
                5000.0 * BUCKET_WIDTH**3,
                share=0.5,
                contrast="difference",
                margin=1000.0,
                **level,
            ),
            5000.0 * BUCKET_WIDTH**3 - 5000.0,
        ),
    }


COVERAGE = _coverage_cases()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COVERAGE))
def test_confidence_sequence_covers_at_every_look(name: str) -> None:
    run, truth = COVERAGE[name]
    reps = 1000 if name.startswith("quantile") else 2000
    _, _, low, high = run(reps=reps, seed=2000 + list(COVERAGE).index(name))
    assert np.all(np.isfinite(low[:, -1])) and np.all(np.isfinite(high[:, -1]))
    miss = ((low > truth) | (high < truth)).any(axis=1)
    assert_rate_at_most(int(miss.sum()), reps, NOMINAL_MISS, f"{name}: miss rate over all looks")


# The quantile confidence sequence itself, raw samples and histograms. For raw
# samples the sequence is [X_(s+1), X_(k)] with ranks that depend only on n, so for
# continuous data it misses Q exactly when #{X <= Q} <= s or #{X < Q} >= k. A
# histogram with edges Q - eps, Q + eps (and inf) has the same miss events almost
# surely, and is vectorised over looks: it gives the high-precision estimate, and a
# smaller run through the raw-sample path checks that the two agree event by event.

QUANTILE_LOOKS = np.unique(np.round(np.geomspace(20, 5000, 40)).astype(int))


def _quantile_sample(rng: np.random.Generator, reps: int) -> np.ndarray:
    return p95_lognormal(5000.0)(rng, (reps, int(QUANTILE_LOOKS[-1])))


def _narrow_histogram_miss(x: np.ndarray, q_true: float, eps: float) -> np.ndarray:
    reps = x.shape[0]
    edges = np.array([q_true - eps, q_true + eps, np.inf])
    below = np.cumsum(x[:, :, None] <= edges[:2], axis=1)[:, QUANTILE_LOOKS - 1]
    counts = np.concatenate([below, per_look(QUANTILE_LOOKS, reps)[..., None]], axis=2)
    res = cs.quantile_confidence_sequence(
        cs.Histogram(edges, counts.reshape(-1, 3)), q=0.95, confidence_level=0.95
    )
    low = np.asarray(res.confidence_interval.low).reshape(reps, -1)
    high = np.asarray(res.confidence_interval.high).reshape(reps, -1)
    return (low > q_true) | (high < q_true)


@pytest.mark.slow
def test_quantile_confidence_sequence_covers_at_every_look() -> None:
    reps, q_true = 2000, 5000.0
    rng = np.random.default_rng(3001)
    miss = np.zeros(reps, dtype=bool)
    for start in range(0, reps, 250):
        x = _quantile_sample(rng, 250)
        miss[start : start + 250] = _narrow_histogram_miss(x, q_true, 1e-6).any(axis=1)
    assert_rate_at_most(int(miss.sum()), reps, NOMINAL_MISS, "p95 CS miss rate over all looks")


@pytest.mark.slow
def test_quantile_confidence_sequence_raw_samples_match_histogram_events() -> None:
    reps, q_true = 100, 5000.0
    rng = np.random.default_rng(3002)
    x = _quantile_sample(rng, reps)
    expected = _narrow_histogram_miss(x, q_true, 1e-6)
    looks = QUANTILE_LOOKS[::3]
    cols = np.searchsorted(QUANTILE_LOOKS, looks)
    raw = np.empty((reps, looks.size), dtype=bool)
    for i in range(reps):
        for j, n in enumerate(looks):
            ci = cs.quantile_confidence_sequence(x[i, :n], q=0.95).confidence_interval
            raw[i, j] = ci.low > q_true or ci.high < q_true
    np.testing.assert_array_equal(raw, expected[:, cols])


@pytest.mark.slow
def test_quantile_confidence_sequence_histogram_covers_at_every_look() -> None:
    reps, q_true = 1000, 5000.0
    rng = np.random.default_rng(3003)
    edges = buckets_around(q_true * BUCKET_WIDTH**0.5)  # truth inside a bucket
    counts = cum_histogram(rng, QUANTILE_LOOKS, p95_lognormal(q_true), edges, reps)
    res = cs.quantile_confidence_sequence(cs.Histogram(edges, counts), q=0.95)
    low = np.asarray(res.confidence_interval.low).reshape(reps, -1)
    high = np.asarray(res.confidence_interval.high).reshape(reps, -1)
    miss = ((low > q_true) | (high < q_true)).any(axis=1)
    assert_rate_at_most(int(miss.sum()), reps, NOMINAL_MISS, "bucketed p95 CS miss rate")


# -- whole rollouts -------------------------------------------------------------------------


def rollouts(
    policy: str,
    n: int,
    seed: int,
    workload: Workload | None = None,
    regression: Regression | None = None,
) -> list[RolloutOutcome]:
    pol = Policy.from_dict(POLICIES[policy])
    rng = np.random.default_rng(seed)
    return [
        simulate_rollout(pol, workload, regression, check_every=CHECK_EVERY, rng=rng)
        for _ in range(n)
    ]


@functools.cache
def healthy(policy: str) -> tuple[RolloutOutcome, ...]:
    """Identical cohorts over the whole rollout, shared by the tests of (a)."""
    return tuple(rollouts(policy, 160, seed={"absolute": 11, "relative": 12}[policy]))


def _summary(outs: list[RolloutOutcome] | tuple[RolloutOutcome, ...]) -> str:
    counts = Counter(o.outcome for o in outs)
    failed = Counter(name for o in outs for name in o.failed)
    return f"outcomes {dict(counts)}, failed guardrails {dict(failed)}"


# (a) identical cohorts: family-wise false rollback <= alpha; healthy runs promote on time.


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["absolute", "relative"])
def test_identical_cohorts_false_rollback_at_most_alpha(policy: str) -> None:
    outs = healthy(policy)
    k = sum(o.outcome == "rolled_back" for o in outs)
    assert_rate_at_most(k, len(outs), ALPHA, f"{policy}: false rollbacks ({_summary(outs)})")


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["absolute", "relative"])
def test_identical_cohorts_promoted_within_plan(policy: str) -> None:
    outs = healthy(policy)
    limit = PLANNED_MINUTES + CHECK_EVERY.total_seconds() / 60
    k = sum(o.outcome == "promoted" and o.minutes <= limit for o in outs)
    assert_rate_at_least(
        k, len(outs), 0.90, f"{policy}: promoted within {limit:g} min ({_summary(outs)})"
    )


# (c) heavy shared drift moves both cohorts: still no more than alpha false rollbacks.
# Relative guardrails only: drift genuinely moves the canary's own p95 across the
# absolute bound (p95 ~ 5700 ms x 1.6 at peak > 8000 ms), which is a real violation
# of an absolute guardrail, not a false alarm.


@pytest.mark.slow
def test_shared_drift_does_not_cause_rollbacks() -> None:
    drift = Workload(diurnal_amplitude=0.6, diurnal_period=timedelta(hours=4))
    outs = rollouts("relative", 120, seed=21, workload=drift)
    k = sum(o.outcome == "rolled_back" for o in outs)
    assert_rate_at_most(k, len(outs), ALPHA, f"drift: false rollbacks ({_summary(outs)})")


# (e) regressions clearly beyond the margins: rolled back by the right guardrail in
# >= 95 % of runs by the end of the rollout, promoted in <= 5 %.

REGRESSIONS = {
    # relative policy: margins 0.02 drop, p95 x1.2, tokens x1.15, eval 0.03 drop
    ("relative", "success_drop"): (Regression(success_drop=0.04), "task_success_rate"),
    ("relative", "latency_shift"): (Regression(latency_factor=1.4), "p95_latency_ms"),
    ("relative", "latency_tail"): (Regression(tail_share=0.10, tail_factor=4), "p95_latency_ms"),
    ("relative", "token_inflation"): (Regression(token_factor=1.35), "tokens_per_task"),
    ("relative", "eval_drop"): (Regression(eval_drop=0.06), "eval_score"),
    # absolute policy: success >= 0.97 (stable 0.985), p95 <= 8000 (stable ~5700),
    # tokens <= 1.15 x stable, eval >= 0.90 (stable 0.93)
    ("absolute", "success_drop"): (Regression(success_drop=0.04), "task_success_rate"),
    ("absolute", "latency_shift"): (Regression(latency_factor=1.8), "p95_latency_ms"),
    ("absolute", "latency_tail"): (Regression(tail_share=0.10, tail_factor=4), "p95_latency_ms"),
    ("absolute", "token_inflation"): (Regression(token_factor=1.35), "token_spend_delta"),
    ("absolute", "eval_drop"): (Regression(eval_drop=0.06), "eval_score"),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("policy", "kind"), list(REGRESSIONS), ids=[f"{p}-{k}" for p, k in REGRESSIONS]
)
def test_regression_is_rolled_back(policy: str, kind: str) -> None:
    regression, guardrail = REGRESSIONS[policy, kind]
    n = 60
    outs = rollouts(
        policy, n, seed=31 + list(REGRESSIONS).index((policy, kind)), regression=regression
    )
    caught = sum(o.outcome == "rolled_back" and guardrail in o.failed for o in outs)
    promoted = sum(o.outcome == "promoted" for o in outs)
    what = f"{policy}/{kind} ({_summary(outs)})"
    assert_rate_at_least(caught, n, 0.95, f"{what}: rolled back by {guardrail}")
    assert_rate_at_most(promoted, n, 0.05, f"{what}: false promotions")
