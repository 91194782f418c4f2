"""A live check solves a few boundaries with Brent's method; simulations bisect many at once.

Both must give the same numbers: the decision cannot depend on how many looks
were asked for in one call.
"""

from __future__ import annotations

import numpy as np
import pytest

from canary_stats.stats import proportion_bound
from canary_stats.stats._boundaries import _SCALAR_SOLVES, normal_mixture_boundary


@pytest.mark.parametrize("alpha", [0.05, 0.05 / 12, 1e-4])
def test_normal_mixture_boundary_one_by_one_equals_vectorised(alpha: float) -> None:
    n = np.unique(np.geomspace(1, 1e6, 40).round())
    assert n.size > _SCALAR_SOLVES
    together = normal_mixture_boundary(n, alpha=alpha, rho=500.0)
    alone = np.array([float(normal_mixture_boundary(m, alpha=alpha, rho=500.0)) for m in n])
    np.testing.assert_allclose(alone, together, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("alternative", ["less", "greater"])
def test_proportion_bound_one_by_one_equals_vectorised(alternative: str) -> None:
    rng = np.random.default_rng(5)
    n = rng.integers(1, 200_000, size=30).astype(float)
    rate = rng.choice([0.0, 0.5, 0.9, 0.97, 0.999, 1.0], size=30)
    x = np.round(n * rate)
    kwargs = {"bound": 0.97, "alternative": alternative, "alpha": 0.004}
    together = proportion_bound(x, n, **kwargs).confidence_interval
    for i in range(n.size):
        alone = proportion_bound(x[i], n[i], **kwargs).confidence_interval
        assert float(alone.low) == pytest.approx(together.low[i], abs=1e-9)
        assert float(alone.high) == pytest.approx(together.high[i], abs=1e-9)


@pytest.mark.parametrize("alternative", ["less", "greater"])
def test_beta_binomial_scalar_path_equals_the_array_path(alternative: str) -> None:
    from canary_stats.stats._boundaries import beta_binomial_log_evalue

    rng = np.random.default_rng(8)
    n = rng.integers(0, 100_000, size=200).astype(float)
    s = np.floor(n * rng.choice([0.0, 0.3, 0.95, 0.99, 1.0], size=200))
    p0 = rng.choice([0.01, 0.5, 0.95, 0.97, 0.999], size=200)
    arrays = beta_binomial_log_evalue(s, n, p0, alternative=alternative, concentration=40.0)
    for i in range(n.size):
        one = beta_binomial_log_evalue(
            float(s[i]), float(n[i]), float(p0[i]), alternative=alternative, concentration=40.0
        )
        if np.isfinite(arrays[i]):
            assert one == pytest.approx(arrays[i], rel=1e-9, abs=1e-9)
        else:
            assert one == arrays[i] or (np.isnan(one) and np.isnan(arrays[i]))
