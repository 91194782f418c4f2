"""Baseline decision rules, each applied at every check to all data since the stage began.

Every baseline rolls back at the first check where its rule fires and otherwise
promotes at the stage's end; none has canary_stats' ``prove`` requirement. The
rules:

- `PointEstimateRule`: the seed's rule, point estimates against the guardrails;
- `KayentaRule`: Kayenta-style Mann-Whitney (and a two-proportion z-test for
  success) per metric at 98 % confidence, re-run at every check;
- `NaiveZRule`: a fixed-horizon one-sided z-test per guardrail at ``0.05 / 4``,
  re-run at every check;
- `OracleSPRT`: Wald's open-ended SPRT that knows the true canary distribution,
  either against the stable distribution (``reference="stable"``) or against the
  closest distribution that still meets the guardrail (``reference="margin"``).
  It keeps its statistic across stages, so it is a lower bound on time to rollback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from scipy import optimize, special, stats

from canary_stats.sources.synthetic import Regression, Workload

from .scenarios import SEED_GUARDRAILS, Scenario, StageTraffic

__all__ = [
    "Alarm",
    "KayentaRule",
    "Monitor",
    "NaiveZRule",
    "OracleSPRT",
    "PointEstimateRule",
]

SUCCESS_MIN = SEED_GUARDRAILS["task_success_rate"]["min"]
P95_MAX = SEED_GUARDRAILS["p95_latency_ms"]["max"]
TOKEN_RATIO_MAX = 1.0 + SEED_GUARDRAILS["token_spend_delta"]["max"]
EVAL_MIN = SEED_GUARDRAILS["eval_score"]["min"]

GUARDRAILS = ("task_success_rate", "p95_latency_ms", "token_spend_delta", "eval_score")


@dataclass(frozen=True, slots=True)
class Alarm:
    """A rollback: when (minutes since the stage began) and which guardrails fired."""

    minute: float
    guardrails: tuple[str, ...]


class Monitor(Protocol):
    """A decision rule watching one rollout, stage after stage."""

    name: str

    def watch(self, stage: StageTraffic) -> Alarm | None:
        """The first alarm in this stage, or ``None`` (promote at the stage's end)."""
        ...


@dataclass(frozen=True, slots=True)
class _Cohort:
    """One cohort's tasks in time order, and how many are visible at each check."""

    success: np.ndarray
    latency: np.ndarray
    tokens: np.ndarray
    scores: np.ndarray  # evaluated tasks only
    n: np.ndarray  # tasks seen at each check
    n_scored: np.ndarray  # evaluated tasks seen at each check

    @classmethod
    def of(cls, stage: StageTraffic, mask: np.ndarray) -> _Cohort:
        t = stage.tasks
        minute = t.minute[mask]
        score = t.eval_score[mask]
        scored = ~np.isnan(score)
        # A task is visible at a check once it has finished before the check's minute.
        return cls(
            success=t.success[mask],
            latency=t.latency_ms[mask],
            tokens=t.tokens[mask],
            scores=score[scored],
            n=np.searchsorted(minute, stage.checks, side="left"),
            n_scored=np.searchsorted(minute[scored], stage.checks, side="left"),
        )

    def cumulative(self, x: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Sum of the first ``n[k]`` values of ``x`` for every check ``k``."""
        c = np.concatenate([[0.0], np.cumsum(x, dtype=float)])
        return c[n]  # type: ignore[no-any-return]


def _cohorts(stage: StageTraffic) -> tuple[_Cohort, _Cohort]:
    return _Cohort.of(stage, ~stage.tasks.canary), _Cohort.of(stage, stage.tasks.canary)


def _mean_var(c: _Cohort, x: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running mean and variance (``ddof=1``) at every check; NaN below two values."""
    s, s2 = c.cumulative(x, n), c.cumulative(x * x, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s / n
        var = np.maximum(s2 - n * mean * mean, 0.0) / (n - 1)
    return np.where(n > 0, mean, np.nan), np.where(n > 1, var, np.nan)


def _first(fired: dict[str, np.ndarray], stage: StageTraffic) -> Alarm | None:
    """The first check at which any guardrail's rule fired."""
    any_fired = np.logical_or.reduce(list(fired.values()))
    if not any_fired.any():
        return None
    k = int(np.argmax(any_fired))
    names = tuple(g for g, f in fired.items() if f[k])
    return Alarm(float(stage.checks[k]), names)


class PointEstimateRule:
    """The seed's rule: roll back as soon as a point estimate breaks a guardrail.

    Parameters
    ----------
    min_samples : int
        Observations each cohort needs before its estimate is used (the seed
        itself uses none; 1 is the literal rule, 30 matches canary_stats).
    """

    def __init__(self, min_samples: int = 30) -> None:
        self.min_samples = max(int(min_samples), 1)
        self.name = f"point estimates (min {self.min_samples})"

    def watch(self, stage: StageTraffic) -> Alarm | None:
        st, ca = _cohorts(stage)
        m = self.min_samples
        with np.errstate(divide="ignore", invalid="ignore"):
            success = ca.cumulative(ca.success, ca.n) / ca.n
            tok_c = ca.cumulative(ca.tokens, ca.n) / ca.n
            tok_s = st.cumulative(st.tokens, st.n) / st.n
            score = ca.cumulative(ca.scores, ca.n_scored) / ca.n_scored
        # The p95 needs the sorted sample; only checks with enough canary data matter.
        p95 = np.full(stage.checks.size, np.nan)
        for k in np.flatnonzero(ca.n >= m):
            p95[k] = np.quantile(ca.latency[: ca.n[k]], 0.95)
        fired = {
            "task_success_rate": (ca.n >= m) & (success < SUCCESS_MIN),
            "p95_latency_ms": (ca.n >= m) & (p95 > P95_MAX),
            "token_spend_delta": (ca.n >= m) & (st.n >= m) & (tok_c > TOKEN_RATIO_MAX * tok_s),
            "eval_score": (ca.n_scored >= m) & (score < EVAL_MIN),
        }
        return _first(fired, stage)


class KayentaRule:
    """Kayenta-style comparison: a significant harmful difference in any metric rolls back.

    Latency, tokens and eval score use a two-sided Mann-Whitney U test
    (`scipy.stats.mannwhitneyu`), success a pooled two-proportion z-test; each
    fires when its two-sided p-value is below ``1 - confidence`` and the canary
    is on the harmful side. There are no margins: Kayenta asks "different from
    stable?", not "beyond the guardrail?".
    """

    def __init__(self, confidence: float = 0.98, min_samples: int = 30) -> None:
        self.level = 1.0 - confidence
        self.min_samples = max(int(min_samples), 1)
        self.name = f"Kayenta Mann-Whitney ({100 * confidence:g}%)"

    def _mw(
        self, stable: np.ndarray, canary: np.ndarray, worse: Literal["greater", "less"]
    ) -> bool:
        if min(stable.size, canary.size) < self.min_samples:
            return False
        res = stats.mannwhitneyu(canary, stable, alternative="two-sided", method="asymptotic")
        if not res.pvalue < self.level:
            return False
        # U of the canary above its null mean: the canary tends to be larger.
        larger = float(res.statistic) > 0.5 * canary.size * stable.size
        return larger if worse == "greater" else not larger

    def _proportions(self, x_s: float, n_s: float, x_c: float, n_c: float) -> bool:
        if min(n_s, n_c) < self.min_samples:
            return False
        pooled = (x_s + x_c) / (n_s + n_c)
        var = pooled * (1 - pooled) * (1 / n_s + 1 / n_c)
        if var <= 0:
            return False
        z = (x_c / n_c - x_s / n_s) / math.sqrt(var)
        return bool(2 * special.ndtr(-abs(z)) < self.level and z < 0)

    def watch(self, stage: StageTraffic) -> Alarm | None:
        st, ca = _cohorts(stage)
        succ_s, succ_c = st.cumulative(st.success, st.n), ca.cumulative(ca.success, ca.n)
        for k, minute in enumerate(stage.checks):
            ns, nc, es, ec = st.n[k], ca.n[k], st.n_scored[k], ca.n_scored[k]
            fired = {
                "task_success_rate": self._proportions(succ_s[k], ns, succ_c[k], nc),
                "p95_latency_ms": self._mw(st.latency[:ns], ca.latency[:nc], "greater"),
                "token_spend_delta": self._mw(st.tokens[:ns], ca.tokens[:nc], "greater"),
                "eval_score": self._mw(st.scores[:es], ca.scores[:ec], "less"),
            }
            if any(fired.values()):
                return Alarm(float(minute), tuple(g for g, f in fired.items() if f))
        return None


class NaiveZRule:
    """A fixed-horizon one-sided z-test per guardrail, re-run at every check.

    Each guardrail is tested at ``alpha / 4`` (Bonferroni over the four) as if
    the current check were the only one; the repeated looks are ignored.

    - success: ``(p - 0.97) / sqrt(0.97 * 0.03 / n)`` below ``-z``;
    - p95: the share of canary latencies above 8000 ms against 0.05 (the
      normal-approximation sign test for a quantile);
    - tokens: ``mean_c - 1.15 mean_s`` over its standard error above ``z``;
    - eval: ``(mean_c - 0.90) / se`` below ``-z``.
    """

    def __init__(self, alpha: float = 0.05, min_samples: int = 30) -> None:
        self.alpha = alpha / len(GUARDRAILS)
        self.z = float(special.ndtri(1.0 - self.alpha))
        self.min_samples = max(int(min_samples), 2)
        self.name = f"naive repeated z (α={alpha:g}/4)"

    def watch(self, stage: StageTraffic) -> Alarm | None:
        st, ca = _cohorts(stage)
        m, z = self.min_samples, self.z
        nc, ns, ne = ca.n.astype(float), st.n.astype(float), ca.n_scored.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = ca.cumulative(ca.success, ca.n) / nc
            z_succ = (p - SUCCESS_MIN) / np.sqrt(SUCCESS_MIN * (1 - SUCCESS_MIN) / nc)
            exceed = ca.cumulative(ca.latency > P95_MAX, ca.n) / nc
            z_p95 = (exceed - 0.05) / math.sqrt(0.05 * 0.95) * np.sqrt(nc)
            m_c, v_c = _mean_var(ca, ca.tokens, ca.n)
            m_s, v_s = _mean_var(st, st.tokens, st.n)
            se = np.sqrt(v_c / nc + TOKEN_RATIO_MAX**2 * v_s / ns)
            z_tok = (m_c - TOKEN_RATIO_MAX * m_s) / se
            m_e, v_e = _mean_var(ca, ca.scores, ca.n_scored)
            z_eval = (m_e - EVAL_MIN) / np.sqrt(v_e / ne)
        fired = {
            "task_success_rate": (nc >= m) & (z_succ < -z),
            "p95_latency_ms": (nc >= m) & (z_p95 > z),
            "token_spend_delta": (nc >= m) & (ns >= m) & (z_tok > z),
            "eval_score": (ne >= m) & (z_eval < -z),
        }
        return _first(fired, stage)


# -- oracle --------------------------------------------------------------------------------

_GRID = (np.arange(20_000) + 0.5) / 20_000  # probability midpoints for expectations


def _growth_optimal_bet(v: np.ndarray, lam_max: float) -> float:
    """``argmax_λ mean(log(1 + λ v))`` on ``[0, lam_max)``: the Kelly bet against the null.

    ``v`` samples the payoff of one unit bet under the true distribution, on a
    grid of quantiles; the optimum's growth rate is the KL-inf of the null.
    """
    if np.mean(v) <= 0:
        return 0.0

    def neg_growth(lam: float) -> float:
        return -float(np.mean(np.log1p(lam * v)))

    res = optimize.minimize_scalar(neg_growth, bounds=(0.0, lam_max * (1 - 1e-6)), method="bounded")
    return float(res.x)


def _bernoulli_llr(hit: np.ndarray, p1: np.ndarray, p0: np.ndarray | float) -> np.ndarray:
    return np.where(hit, np.log(p1 / p0), np.log1p(-p1) - np.log1p(-p0))


def _exceedance(reg: Regression, base: np.ndarray, sigma: float) -> np.ndarray:
    """P(canary latency > P95_MAX) for each task, given its drift-scaled median ``base``."""
    f = reg.latency_factor

    def above(scale: np.ndarray) -> np.ndarray:
        return special.ndtr(-np.log(P95_MAX / scale) / sigma)  # type: ignore[no-any-return]

    return (1 - reg.tail_share) * above(base * f) + reg.tail_share * above(
        base * f * reg.tail_factor
    )


class OracleSPRT:
    """Wald's open-ended SPRT on canary observations, knowing the true regression.

    Parameters
    ----------
    alternative : Scenario
        The regression it knows about (its guardrail names the metric watched).
    workload : Workload
        The stable release's distributions, known exactly, drift included.
    reference : {"stable", "margin"}
        ``"stable"``: the likelihood ratio of the regressed canary against the
        stable distribution (the canary unchanged). ``"margin"``: the
        growth-optimal e-process against the whole null of the guardrail
        (success >= 0.97, P(latency > 8000) <= 0.05, mean tokens <= 1.15 x
        stable, mean eval >= 0.90), nonparametric where the guardrail is: its
        growth rate is the KL-inf, i.e. Lai's lower bound for a test of the
        guardrail as written.
    alpha : float
        Rejects when the log statistic reaches ``log(1 / alpha)`` (Ville).
    continuous : bool
        Look after every observation instead of at the checks.
    """

    def __init__(
        self,
        alternative: Scenario,
        workload: Workload,
        *,
        reference: Literal["stable", "margin"] = "stable",
        alpha: float = 0.05,
        continuous: bool = False,
    ) -> None:
        if alternative.regression is None or alternative.guardrail is None:
            raise ValueError("the oracle needs a regression to know about")
        self.alt = alternative
        self.reg: Regression = alternative.regression
        self.w = workload
        self.reference = reference
        self.threshold = math.log(1.0 / alpha)
        self.continuous = continuous
        self.log_stat = 0.0  # carried across stages: the canary stream goes on
        self.name = f"oracle SPRT vs {reference}" + (" (every task)" if continuous else "")
        self._bet = self._kelly() if reference == "margin" else 0.0

    def _kelly(self) -> float:
        w, reg = self.w, self.reg
        if self.alt.guardrail == "token_spend_delta":
            # X / (1.15 x stable mean): drift cancels, the ratio is a fixed lognormal.
            z = special.ndtri(_GRID)
            s = w.tokens_sigma
            ratio = reg.token_factor / TOKEN_RATIO_MAX * np.exp(s * z - 0.5 * s * s)
            return _growth_optimal_bet(ratio - 1.0, 1.0)
        if self.alt.guardrail == "eval_score":
            mean = w.eval_mean - reg.eval_drop
            x = stats.beta.ppf(
                _GRID, mean * w.eval_concentration, (1 - mean) * w.eval_concentration
            )
            return _growth_optimal_bet(EVAL_MIN - x, 1.0 / (1.0 - EVAL_MIN))
        return 0.0

    def _llr(self, stage: StageTraffic) -> tuple[np.ndarray, np.ndarray]:
        """Minutes and log-likelihood-ratio increments of the canary's observations."""
        w, reg, t = self.w, self.reg, stage.tasks
        can = t.canary
        minute = t.minute[can]
        d = stage.drift(w, minute)
        g = self.alt.guardrail
        if g == "task_success_rate":
            fail = ~t.success[can]
            p_stable = np.clip((1 - w.success_rate) * (1 + d), 1e-9, 1 - 1e-9)
            p1 = np.clip(p_stable + reg.success_drop, 1e-9, 1 - 1e-9)
            if self.reference == "stable":
                return minute, _bernoulli_llr(fail, p1, p_stable)
            p0 = 1.0 - SUCCESS_MIN
            return minute, _bernoulli_llr(fail, np.maximum(p1, p0), p0)  # no bet below the null
        if g == "p95_latency_ms":
            base = w.latency_median_ms * (1 + d)
            lat = t.latency_ms[can]
            if self.reference == "margin":
                p1 = np.clip(_exceedance(reg, base, w.latency_sigma), 1e-12, 1 - 1e-12)
                return minute, _bernoulli_llr(lat > P95_MAX, np.maximum(p1, 0.05), 0.05)
            # Log latency is normal under stable, a two-component mixture under the canary.
            y, s = np.log(lat), w.latency_sigma
            mu = np.log(base)
            shift = math.log(reg.latency_factor)
            log_f0 = stats.norm.logpdf(y, mu, s)
            comps = [stats.norm.logpdf(y, mu + shift, s) + math.log1p(-reg.tail_share)]
            if reg.tail_share > 0:
                tail = stats.norm.logpdf(y, mu + shift + math.log(reg.tail_factor), s)
                comps.append(tail + math.log(reg.tail_share))
            return minute, special.logsumexp(np.stack(comps), axis=0) - log_f0
        if g == "token_spend_delta":
            tok = np.maximum(t.tokens[can], 1.0)
            base = w.tokens_median * (1 + 0.5 * d)
            if self.reference == "margin":
                m0 = TOKEN_RATIO_MAX * base * math.exp(0.5 * w.tokens_sigma**2)
                return minute, np.log1p(self._bet * (tok / m0 - 1.0))
            y, s, mu = np.log(tok), w.tokens_sigma, np.log(base)
            shift = math.log(reg.token_factor)
            return minute, stats.norm.logpdf(y, mu + shift, s) - stats.norm.logpdf(y, mu, s)
        # eval score: only evaluated tasks carry information.
        score = t.eval_score[can]
        scored = ~np.isnan(score)
        x = np.clip(score[scored], 1e-12, 1 - 1e-12)
        minute = minute[scored]
        if self.reference == "margin":
            return minute, np.log1p(self._bet * (EVAL_MIN - x))
        k = w.eval_concentration
        mean0, mean1 = w.eval_mean, w.eval_mean - reg.eval_drop
        llr = stats.beta.logpdf(x, mean1 * k, (1 - mean1) * k) - stats.beta.logpdf(
            x, mean0 * k, (1 - mean0) * k
        )
        return minute, llr

    def watch(self, stage: StageTraffic) -> Alarm | None:
        minute, llr = self._llr(stage)
        keep = minute < stage.duration  # the stage ends at its duration for the oracle too
        minute, path = minute[keep], self.log_stat + np.cumsum(llr[keep])
        if self.continuous:
            hit = np.flatnonzero(path >= self.threshold)
            if hit.size:
                return Alarm(float(minute[hit[0]]), (str(self.alt.guardrail),))
        else:
            n = np.searchsorted(minute, stage.checks, side="left")
            at_checks = np.concatenate([[self.log_stat], path])[n]
            hit = np.flatnonzero(at_checks >= self.threshold)
            if hit.size:
                return Alarm(float(stage.checks[hit[0]]), (str(self.alt.guardrail),))
        self.log_stat = float(path[-1]) if path.size else self.log_stat
        return None
