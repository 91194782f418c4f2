"""Agreement with reference implementations and closed forms at fixed inputs.

* boundaries: the one-sided normal mixture against the two-sided closed form of
  Howard et al. (2021, eq. (14)) and against quadrature of the mixture integral;
  the truncated beta-binomial mixture against quadrature of its prior;
* point estimates against numpy, scipy and statsmodels;
* the sample-ratio-mismatch Bayes factor against the Dirichlet-multinomial formula;
* bootstrap intervals against ``scipy.stats.bootstrap`` (BCa and percentile);
* anytime-valid intervals against fixed-n intervals at the same level: a
  confidence sequence pays for validity at every look, so it must contain them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, special
from scipy import stats as sps
from statsmodels.stats import proportion as smp
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from canary_stats import stats as cs
from canary_stats.stats._quantiles import _rank_thresholds

# -- normal mixture -----------------------------------------------------------------------


def _two_sided_boundary(n: np.ndarray, alpha: float, rho: float) -> np.ndarray:
    """Howard et al. (2021) eq. (14), standardised: |S_n| / sqrt(n) at the boundary."""
    v = n + rho
    return np.sqrt(v / n * np.log(v / (rho * alpha * alpha)))


def _quad_log_evalue(z: float, n: float, rho: float) -> float:
    """log of int_0^inf exp(l S - l^2 n / 2) 2 N(l; 0, 1/rho) dl, by quadrature."""
    s, v = z * math.sqrt(n), n + rho
    peak = max(s / v, 0.0)
    shift = peak * s - peak * peak * v / 2  # log of the integrand's maximum
    width = 40.0 / math.sqrt(v)
    val, err = integrate.quad(
        lambda lam: math.exp(lam * s - lam * lam * v / 2 - shift),
        0.0,
        peak + width,
        points=[peak] if peak > 0 else None,
        epsabs=0.0,
        epsrel=1e-12,
        limit=200,
    )
    assert err < 1e-9 * val
    return math.log(2.0 * math.sqrt(rho / (2 * math.pi))) + shift + math.log(val)


@pytest.mark.parametrize("n", [3.0, 250.0, 10_000.0, 1e6])
@pytest.mark.parametrize("z", [-2.0, 0.0, 0.7, 2.5, 5.0])
@pytest.mark.parametrize("rho", [cs.mixture_precision(10_000, 0.05), 7.5])
def test_normal_mixture_log_evalue_matches_quadrature(z: float, n: float, rho: float) -> None:
    got = float(cs.normal_mixture_log_evalue(z, n, rho=rho))
    assert got == pytest.approx(_quad_log_evalue(z, n, rho), abs=1e-9)


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.05 / 12, 1e-4])
@pytest.mark.parametrize("n_tune", [100.0, 10_000.0])
def test_normal_mixture_boundary_against_two_sided_closed_form(alpha: float, n_tune: float) -> None:
    rho = cs.mixture_precision(n_tune, alpha)
    n = np.geomspace(1.0, 1e7, 60)
    z = cs.normal_mixture_boundary(n, alpha=alpha, rho=rho)
    # The half-normal mixture is the two-sided mixture times 2 Phi(S / sqrt(n + rho)),
    # so its boundary is the closed form at level 2 alpha Phi(.), evaluated at the root:
    phi = sps.norm.cdf(z * np.sqrt(n) / np.sqrt(n + rho))
    np.testing.assert_allclose(z, _two_sided_boundary(n, 2 * alpha * phi, rho), rtol=1e-9)
    # ... which brackets it between the closed forms at 2 alpha and alpha,
    assert np.all(_two_sided_boundary(n, 2 * alpha, rho) <= z)
    assert np.all(z < _two_sided_boundary(n, alpha, rho))
    # and it is the level-alpha crossing of the e-value.
    np.testing.assert_allclose(
        cs.normal_mixture_log_evalue(z, n, rho=rho), math.log(1 / alpha), atol=1e-8
    )


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.001])
def test_mixture_precision_is_the_closed_form_optimum(alpha: float) -> None:
    n_tune = 10_000.0
    rho = cs.mixture_precision(n_tune, alpha)
    # Eppo's form of the same tuning (statistics.md §2.1).
    eppo = n_tune / (math.log(math.log(math.e / alpha**2)) - 2 * math.log(alpha))
    assert rho == pytest.approx(eppo, rel=1e-12)
    # The two-sided boundary at n_tune is within 1e-4 of its minimum over rho.
    width = lambda r: float(_two_sided_boundary(np.array(n_tune), alpha, r))  # noqa: E731
    best = optimize.minimize_scalar(
        lambda log_r: width(math.exp(log_r)),
        bounds=(math.log(n_tune) - 10, math.log(n_tune) + 5),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert width(rho) <= best.fun * (1 + 1e-4)


# -- beta-binomial mixture ------------------------------------------------------------------


def _quad_beta_binomial_log_evalue(s: float, n: float, p0: float, alt: str, k: float) -> float:
    """Truncated Beta(k p0, k (1 - p0)) mixture of L(p) / L(p0), by quadrature."""
    f = n - s
    a, b = k * p0, k * (1 - p0)
    lo, hi = (0.0, p0) if alt == "less" else (p0, 1.0)

    def log_ratio(p: float) -> float:
        out = 0.0
        if s > 0:
            out += s * (math.log(p) - math.log(p0))
        if f > 0:
            out += f * (math.log1p(-p) - math.log1p(-p0))
        return out

    mode = min(max((a + s - 1) / (a + b + n - 2), lo), hi)  # posterior mode, clipped
    shift = log_ratio(mode) + float(sps.beta.logpdf(mode, a, b)) if 0 < mode < 1 else 0.0
    num, _ = integrate.quad(
        lambda p: math.exp(log_ratio(p) + sps.beta.logpdf(p, a, b) - shift),
        lo,
        hi,
        points=[mode] if lo < mode < hi else None,
        epsabs=0.0,
        epsrel=1e-11,
        limit=400,
    )
    mass = sps.beta.cdf(p0, a, b) if alt == "less" else sps.beta.sf(p0, a, b)
    return shift + math.log(num) - math.log(mass)


@pytest.mark.parametrize(
    ("s", "n", "p0", "alt"),
    [
        (0, 0, 0.97, "less"),
        (30, 30, 0.97, "less"),
        (25, 30, 0.97, "less"),
        (940, 1000, 0.97, "less"),
        (995, 1000, 0.97, "greater"),
        (0, 40, 0.5, "less"),
        (40, 40, 0.5, "greater"),
        (900, 1000, 0.95, "less"),  # quantile thresholds: counts below a point
        (980, 1000, 0.95, "greater"),
        (9_300, 10_000, 0.95, "less"),
    ],
)
@pytest.mark.parametrize("k", [cs.mixture_precision(1_000, 0.05), 10.0])
def test_beta_binomial_log_evalue_matches_quadrature(
    s: int, n: int, p0: float, alt: str, k: float
) -> None:
    got = float(cs.beta_binomial_log_evalue(s, n, p0, alternative=alt, concentration=k))
    assert got == pytest.approx(_quad_beta_binomial_log_evalue(s, n, p0, alt, k), abs=1e-7)


def test_beta_binomial_evalue_has_expectation_one_at_the_null_boundary() -> None:
    # Exact expectation at a fixed n at the least favourable null rate p = p0: each
    # L(p) / L(p0) has expectation one there, so their prior mixture does too.
    n, p0, k = 400, 0.97, cs.mixture_precision(1_000, 0.05)
    s = np.arange(n + 1)
    for alt in ("less", "greater"):
        log_e = cs.beta_binomial_log_evalue(s, n, p0, alternative=alt, concentration=k)
        log_mean = special.logsumexp(sps.binom.logpmf(s, n, p0) + log_e)
        assert log_mean == pytest.approx(0.0, abs=1e-9)


# -- sample ratio mismatch ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_stable", "n_canary", "share"),
    [(0, 0, 0.1), (9_000, 1_100, 0.1), (9_000, 1_000, 0.1), (5_120, 4_880, 0.5), (990, 2, 0.01)],
)
def test_srm_log_bayes_factor_matches_the_dirichlet_multinomial_formula(
    n_stable: int, n_canary: int, share: float
) -> None:
    k = 100.0
    res = cs.sample_ratio_mismatch(n_stable, n_canary, expected_share=share, concentration=k)
    a = np.array([k * share, k * (1 - share)])
    x = np.array([n_canary, n_stable], dtype=float)
    # BF = [B(a + x) / B(a)] / prod rho_i^x_i with the multivariate Beta function.
    log_b = lambda v: float(np.sum(special.gammaln(v)) - special.gammaln(np.sum(v)))  # noqa: E731
    expected = log_b(a + x) - log_b(a) - float(x @ np.log([share, 1 - share]))
    assert res.log_evalue == pytest.approx(expected, abs=1e-9)
    # The same Bayes factor by integrating the binomial likelihood ratio over the prior.
    integrand = lambda p: math.exp(  # noqa: E731
        sps.beta.logpdf(p, a[0], a[1])
        + special.xlogy(x[0], p / share)
        + special.xlog1py(x[1], -p)
        - special.xlog1py(x[1], -share)
        - expected
    )
    mode = (a[0] + x[0] - 1) / (a.sum() + x.sum() - 2)
    val, _ = integrate.quad(integrand, 0, 1, points=[mode], epsrel=1e-10, limit=400)
    assert val == pytest.approx(1.0, rel=1e-7)
    assert res.pvalue == pytest.approx(min(1.0, math.exp(-expected)), rel=1e-12)
    assert res.mismatch == (expected >= math.log(1 / 0.001))


def test_srm_flags_a_clear_mismatch_and_not_the_plan() -> None:
    bad = cs.sample_ratio_mismatch(9_000, 1_300, expected_share=0.1)  # 12.6 % canary
    good = cs.sample_ratio_mismatch(9_000, 1_000, expected_share=0.1)
    assert bad.mismatch and not good.mismatch
    assert bad.observed_share == pytest.approx(1_300 / 10_300)
    assert good.log_evalue < 0  # the planned split is evidence for the plan


# -- point estimates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xs", "ns", "xc", "nc"), [(2_910, 3_000, 950, 1_000), (49_300, 50_000, 510, 540)]
)
def test_proportion_estimates_match_statsmodels(xs: int, ns: int, xc: int, nc: int) -> None:
    ref = smp.test_proportions_2indep(xc, nc, xs, ns, compare="diff")
    diff = cs.proportion_contrast(xs, ns, xc, nc, margin=-0.02)
    ratio = cs.proportion_contrast(xs, ns, xc, nc, contrast="ratio", margin=0.98)
    assert diff.estimate == pytest.approx(ref.diff, rel=1e-12)
    assert ratio.estimate == pytest.approx(ref.ratio, rel=1e-12)
    assert cs.proportion_bound(xc, nc, bound=0.97).estimate == pytest.approx(xc / nc)


def test_mean_estimates_match_statsmodels() -> None:
    rng = np.random.default_rng(12345)
    s, c = rng.lognormal(8.0, 0.8, 3_000), rng.lognormal(8.1, 0.8, 700)
    args = (s.size, s.mean(), s.var(), c.size, c.mean(), c.var())
    diff = cs.mean_contrast(*args, margin=100.0, alternative="greater")
    ratio = cs.mean_contrast(*args, contrast="ratio", margin=1.15, alternative="greater")
    compare = CompareMeans(DescrStatsW(c), DescrStatsW(s))
    assert diff.estimate == pytest.approx(compare.d1.mean - compare.d2.mean, rel=1e-12)
    assert ratio.estimate == pytest.approx(c.mean() / s.mean(), rel=1e-12)
    bound = cs.mean_bound(c.size, c.mean(), c.var(), bound=4000.0, alternative="greater")
    assert bound.estimate == pytest.approx(DescrStatsW(c).mean, rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 19, 20, 21, 999, 5_000])
@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_quantile_estimates_match_numpy(n: int, q: float) -> None:
    rng = np.random.default_rng(n)
    s, c = rng.lognormal(7.8, 0.5, n), rng.lognormal(7.9, 0.5, n + 3)
    # The estimate inverts the empirical CDF: numpy's "inverted_cdf" method.
    res = cs.quantile_confidence_sequence(c, q=q)
    assert res.estimate == np.quantile(c, q, method="inverted_cdf")
    ratio = cs.quantile_contrast(s, c, q=q, margin=1.2)
    expected = np.quantile(c, q, method="inverted_cdf") / np.quantile(s, q, method="inverted_cdf")
    assert ratio.estimate == pytest.approx(expected, rel=1e-12)
    if n >= 2:  # the report's bootstrap estimate uses numpy's default (linear) quantile
        boot = cs.quantile_contrast_bootstrap(s, c, q=q, n_resamples=100, rng=0)
        assert boot.estimate == pytest.approx(np.quantile(c, q) / np.quantile(s, q), rel=1e-12)


def test_histogram_quantile_estimate_interpolates_like_prometheus() -> None:
    rng = np.random.default_rng(12345)
    x = rng.lognormal(7.8, 0.5, 4_321)
    edges = np.array([500.0, 1000, 2000, 3000, 4000, 6000, 8000, 12000, np.inf])
    h = cs.Histogram.from_samples(x, edges)
    for q in (0.5, 0.9, 0.95):
        # histogram_quantile(): linear interpolation within the bucket holding rank q n.
        counts, rank = h.counts, q * x.size
        j = int(np.argmax(counts >= rank))
        c_lo, lower = (counts[j - 1], edges[j - 1]) if j > 0 else (0.0, 0.0)
        expected = lower + (edges[j] - lower) * (rank - c_lo) / (counts[j] - c_lo)
        assert cs.quantile_confidence_sequence(h, q=q).estimate == pytest.approx(expected)


# -- bootstrap intervals against scipy ----------------------------------------------------


def test_mean_ratio_poisson_bootstrap_agrees_with_scipy_bca() -> None:
    rng = np.random.default_rng(12345)
    s, c = rng.lognormal(8.0, 0.8, 2_000), rng.lognormal(8.1, 0.8, 2_000)
    got = cs.mean_contrast_bootstrap(s, c, contrast="ratio", n_resamples=2_000, rng=1)
    ref = sps.bootstrap(
        (c, s),
        lambda c, s, axis: c.mean(axis=axis) / s.mean(axis=axis),
        vectorized=True,
        method="BCa",
        n_resamples=4_000,
        rng=np.random.default_rng(2),
    )
    low, high = ref.confidence_interval
    width = high - low
    assert got.estimate == pytest.approx(c.mean() / s.mean(), rel=1e-12)
    assert got.confidence_interval.low == pytest.approx(low, abs=0.05 * width)
    assert got.confidence_interval.high == pytest.approx(high, abs=0.05 * width)
    assert got.standard_error == pytest.approx(ref.standard_error, rel=0.05)


def test_resampling_free_quantile_bootstrap_agrees_with_classic_bootstrap() -> None:
    rng = np.random.default_rng(12345)
    s, c = rng.lognormal(7.8, 0.5, 5_000), rng.lognormal(7.9, 0.5, 5_000)
    got = cs.quantile_contrast_bootstrap(s, c, q=0.95, contrast="ratio", rng=3)
    ref = sps.bootstrap(
        (c, s),
        lambda c, s, axis: np.quantile(c, 0.95, axis=axis) / np.quantile(s, 0.95, axis=axis),
        vectorized=True,
        method="percentile",
        n_resamples=2_000,
        batch=250,
        rng=np.random.default_rng(4),
    )
    low, high = ref.confidence_interval
    width = high - low
    assert got.confidence_interval.low == pytest.approx(low, abs=0.1 * width)
    assert got.confidence_interval.high == pytest.approx(high, abs=0.1 * width)
    assert got.standard_error == pytest.approx(ref.standard_error, rel=0.1)


# -- anytime-valid intervals contain the fixed-n intervals at the same level ---------------
#
# Every sequence below is a 95 % two-sided one (alpha = alpha_pass = 0.025 per side),
# compared with a 95 % fixed-n interval on the same data, at growing sample sizes.

SIZES = [200, 1_000, 10_000, 100_000]
SIDE = {"alpha": 0.025, "alpha_pass": 0.025}


def _contains(outer: tuple[float, float], inner: tuple[float, float]) -> None:
    assert outer[0] < inner[0] and inner[1] < outer[1], f"{outer} does not contain {inner}"


@pytest.mark.parametrize("n", [30, *SIZES])
def test_proportion_bound_contains_clopper_pearson(n: int) -> None:
    x = round(0.97 * n)
    cs_ = cs.proportion_bound(x, n, bound=0.97, n_tune=1_000, **SIDE).confidence_interval
    _contains(tuple(cs_), smp.proportion_confint(x, n, alpha=0.05, method="beta"))


@pytest.mark.parametrize("n", SIZES)
def test_proportion_contrast_contains_wald_interval(n: int) -> None:
    xs, xc = round(0.97 * n), round(0.95 * n)
    for contrast, margin in (("difference", -0.02), ("ratio", 0.98)):
        res = cs.proportion_contrast(xs, n, xc, n, contrast=contrast, margin=margin, **SIDE)
        ref = smp.confint_proportions_2indep(
            xc, n, xs, n, compare="diff" if contrast == "difference" else "ratio", alpha=0.05
        )
        _contains(tuple(res.confidence_interval), ref)


@pytest.fixture(scope="module")
def samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(12345)
    n = SIZES[-1]
    return {
        "score_s": rng.beta(0.93 * 30, 0.07 * 30, n),
        "score_c": rng.beta(0.91 * 30, 0.09 * 30, n),
        "tokens_s": rng.lognormal(8.0, 0.8, n),
        "tokens_c": rng.lognormal(8.1, 0.8, n),
        "latency": rng.lognormal(7.8, 0.5, n),
    }


@pytest.mark.parametrize("n", SIZES)
def test_mean_bound_contains_t_interval(n: int, samples: dict[str, np.ndarray]) -> None:
    x = samples["score_c"][:n]
    res = cs.mean_bound(x.size, x.mean(), x.var(), bound=0.9, alternative="less", **SIDE)
    _contains(tuple(res.confidence_interval), DescrStatsW(x).tconfint_mean(alpha=0.05))


@pytest.mark.parametrize("n", SIZES)
def test_mean_contrast_contains_welch_and_delta_intervals(
    n: int, samples: dict[str, np.ndarray]
) -> None:
    s, c = samples["score_s"][:n], samples["score_c"][: n // 2]
    res = cs.mean_contrast(
        s.size, s.mean(), s.var(), c.size, c.mean(), c.var(), margin=-0.03, alternative="less",
        **SIDE,
    )  # fmt: skip
    welch = CompareMeans(DescrStatsW(c), DescrStatsW(s)).tconfint_diff(alpha=0.05, usevar="unequal")
    _contains(tuple(res.confidence_interval), welch)
    s, c = samples["tokens_s"][:n], samples["tokens_c"][: n // 2]
    res = cs.mean_contrast(
        s.size, s.mean(), s.var(), c.size, c.mean(), c.var(), contrast="ratio", margin=1.15,
        alternative="greater", **SIDE,
    )  # fmt: skip
    # Fixed-n delta-method interval for the log ratio of means.
    se = math.sqrt(
        c.var(ddof=1) / (c.size * c.mean() ** 2) + s.var(ddof=1) / (s.size * s.mean() ** 2)
    )
    log_r, z = math.log(c.mean() / s.mean()), sps.norm.ppf(0.975)
    _contains(tuple(res.confidence_interval), (math.exp(log_r - z * se), math.exp(log_r + z * se)))


@pytest.mark.parametrize("n", SIZES)
def test_quantile_sequence_contains_exact_order_statistic_interval(
    n: int, samples: dict[str, np.ndarray]
) -> None:
    x = samples["latency"][:n]
    res = cs.quantile_confidence_sequence(x, q=0.95, confidence_level=0.95)
    ref = sps.quantile_test(x, q=float(np.median(x)), p=0.95).confidence_interval(0.95)
    _contains(tuple(res.confidence_interval), (ref.low, ref.high))
    # Bucketed data: the interval widens to the bucket edges around the raw one.
    h = cs.Histogram.from_samples(x, np.concatenate([np.geomspace(100, 50_000, 300), [np.inf]]))
    bucketed = cs.quantile_confidence_sequence(h, q=0.95, confidence_level=0.95)
    assert bucketed.confidence_interval.low <= res.confidence_interval.low
    assert bucketed.confidence_interval.high >= res.confidence_interval.high


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.integers(0, 40), min_size=1, max_size=400),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
    n_tune=st.sampled_from([10, 1_000]),
)
def test_quantile_bounds_are_the_order_statistics_of_the_sorted_sample(
    values: list[int], q: float, n_tune: int
) -> None:
    # Two selections place the three ranks (see _bounds_from_samples); ties included,
    # since latencies rounded to the millisecond repeat.
    x = np.asarray(values, dtype=float)
    ordered, n = np.sort(x), x.size
    s_lo, k_up = (float(r[0]) for r in _rank_thresholds(np.array([n]), q, 0.025, 0.025, n_tune))
    res = cs.quantile_confidence_sequence(x, q=q, confidence_level=0.95, n_tune=n_tune)
    assert res.estimate == ordered[max(math.ceil(q * n), 1) - 1]
    assert res.confidence_interval.low == (ordered[int(s_lo)] if s_lo >= 0 else -math.inf)
    assert res.confidence_interval.high == (ordered[int(k_up) - 1] if k_up <= n else math.inf)
