"""Sequential sample-ratio-mismatch test on cohort counts.

References
----------
.. [1] Lindon, Malek (2022). Anytime-valid inference for multinomial count data.
       NeurIPS. arXiv:2011.03567.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ._common import check_alpha, check_counts, check_positive_int, scalar_or_array

__all__ = ["SampleRatioResult", "sample_ratio_mismatch"]


@dataclass(frozen=True, slots=True)
class SampleRatioResult:
    """Outcome of the sequential sample-ratio-mismatch test.

    Attributes
    ----------
    observed_share, expected_share : float or ndarray
        Canary share of the tasks, seen and planned.
    log_evalue : float or ndarray
        Log Bayes factor against "the split is as planned"; a test martingale.
    pvalue : float or ndarray
        ``min(1, exp(-log_evalue))``, valid at this look (take the running minimum
        over looks for an always-valid p-value).
    mismatch : bool or ndarray
        Whether the split is proven different from the plan at level ``alpha``.
    """

    observed_share: Any
    expected_share: float
    log_evalue: Any
    pvalue: Any
    mismatch: Any


def sample_ratio_mismatch(
    n_stable: ArrayLike,
    n_canary: ArrayLike,
    *,
    expected_share: float,
    alpha: float = 0.001,
    concentration: float = 100.0,
) -> SampleRatioResult:
    """Test whether the canary's share of tasks differs from the planned share.

    Parameters
    ----------
    n_stable, n_canary : array_like
        Task counts per cohort since the stage began.
    expected_share : float
        Planned canary share in (0, 1), e.g. 0.10 for a 10 % stage.
    alpha : float, default: 0.001
        Level of the mismatch decision, valid over all looks.
    concentration : float, default: 100
        Concentration ``k`` of the Dirichlet (here beta) mixture ``Beta(k p, k (1 - p))``.

    Returns
    -------
    SampleRatioResult

    Notes
    -----
    Conditional on the total, the cohort labels of tasks are binomial with the
    planned share, whatever the time-varying traffic; the beta-binomial Bayes
    factor of [1]_ is then a test martingale, so a mismatch may be checked at
    every look.
    """
    p = float(expected_share)
    if not 0.0 < p < 1.0:
        raise ValueError(f"`expected_share` must be in (0, 1); got {expected_share!r}.")
    alpha = check_alpha(alpha)
    k = check_positive_int(concentration, "concentration")
    ns, nc = check_counts(n_stable, "n_stable"), check_counts(n_canary, "n_canary")
    a_c, a_s = k * p, k * (1.0 - p)
    log_bf = (
        special.betaln(a_c + nc, a_s + ns)
        - special.betaln(a_c, a_s)
        - nc * math.log(p)
        - ns * math.log1p(-p)
    )
    total = ns + nc
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.where(total > 0, nc / total, np.nan)
    mismatch = log_bf >= math.log(1.0 / alpha)
    return SampleRatioResult(
        observed_share=scalar_or_array(observed),
        expected_share=p,
        log_evalue=scalar_or_array(log_bf),
        pvalue=scalar_or_array(np.minimum(1.0, np.exp(-log_bf))),
        mismatch=bool(mismatch) if np.ndim(mismatch) == 0 else mismatch,
    )
