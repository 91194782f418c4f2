"""Statistics layer: pure functions over arrays or sufficient statistics.

Decisions use anytime-valid confidence sequences on the contrast that drives the
decision (canary vs stable, or canary vs an absolute bound), one-sided, with the
margin built in. Bootstrap intervals are for reporting effect sizes only.
"""

from ._bootstrap import BootstrapResult, mean_contrast_bootstrap, quantile_contrast_bootstrap
from ._boundaries import (
    beta_binomial_log_evalue,
    mixture_precision,
    normal_mixture_boundary,
    normal_mixture_log_evalue,
)
from ._common import ConfidenceInterval, SequentialTestResult
from ._means import mean_bound, mean_contrast
from ._paired import paired_mean_contrast, paired_proportion_contrast
from ._proportions import proportion_bound, proportion_contrast
from ._quantile_tests import quantile_bound, quantile_contrast
from ._quantiles import Histogram, QuantileSequenceResult, quantile_confidence_sequence
from ._srm import (
    SampleRatioResult,
    ShareStabilityResult,
    sample_ratio_mismatch,
    share_stability,
    window_dispersion,
)
from ._stages import combine_stages

__all__ = [
    "BootstrapResult",
    "ConfidenceInterval",
    "Histogram",
    "QuantileSequenceResult",
    "SampleRatioResult",
    "SequentialTestResult",
    "ShareStabilityResult",
    "beta_binomial_log_evalue",
    "combine_stages",
    "mean_bound",
    "mean_contrast",
    "mean_contrast_bootstrap",
    "mixture_precision",
    "normal_mixture_boundary",
    "normal_mixture_log_evalue",
    "paired_mean_contrast",
    "paired_proportion_contrast",
    "proportion_bound",
    "proportion_contrast",
    "quantile_bound",
    "quantile_confidence_sequence",
    "quantile_contrast",
    "quantile_contrast_bootstrap",
    "sample_ratio_mismatch",
    "share_stability",
    "window_dispersion",
]
