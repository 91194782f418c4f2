"""What the realistic benchmark knows about each workload class: its truth and its oracle.

For every workload class (`Workload()` and each of `REALISTIC_CLASSES`) this module
measures the stable release's distributions from large seeded samples without the
diurnal cycle (pooled over several user populations), turns the guardrails' margins
into canary regressions (half a margin inside, exactly at a margin, and the issue's
regressions), and builds the margin oracle: a sequential probability ratio test on
the canary's observations that knows the regressed distribution, with the null at
the least favourable point of the guardrail's null.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import optimize, special

from canary_stats import Policy
from canary_stats._plan import Baseline
from canary_stats.sources.realistic import REALISTIC_CLASSES, UserWorkload, _population
from canary_stats.sources.synthetic import Regression, Tasks, Workload

__all__ = [
    "CLASSES",
    "POLICIES",
    "TAIL_FACTOR",
    "Oracle",
    "Scenario",
    "Truth",
    "plan_stages",
    "scenarios",
    "truth",
]

ROOT = Path(__file__).resolve().parent.parent
SEED_MANIFEST = ROOT / "examples" / "research-agent.manifest.yaml"

#: The issue's relative guardrails on the seed's stages.
RELATIVE_GUARDRAILS = {
    "task_success_rate": {"max_drop": 0.02},
    "p95_latency_ms": {"max_ratio": 1.20},
    "tokens_per_task": {"max_ratio": 1.15},
    "eval_score": {"min": 0.90},
}


def _policies() -> dict[str, Policy]:
    seed = Policy.from_manifest(SEED_MANIFEST)
    stages = [
        {"traffic": s.traffic}
        | ({"duration": f"{s.duration.total_seconds() / 60:g}m"} if s.duration else {})
        for s in seed.stages
    ]
    relative = Policy.from_dict({"stages": stages, "guardrails": RELATIVE_GUARDRAILS})
    return {"seed": seed, "relative": relative}


#: The seed manifest as written, and the issue's relative guardrails on its stages.
POLICIES: dict[str, Policy] = _policies()
#: Every workload class: the benchmark's own and the realistic ones of issue 14.
CLASSES: dict[str, Workload | UserWorkload] = {"current": Workload(), **REALISTIC_CLASSES}
#: The tail-only regression multiplies a share of canary latencies by this.
TAIL_FACTOR = 4.0
_SAMPLE = 400_000  # tasks per truth sample
_POPULATIONS = 8  # user populations pooled into it


def plan_stages(policy: Policy) -> list[tuple[int, float, float, float]]:
    """``(stage, share, duration, start)`` in minutes, every stage at its planned length."""
    out, start = [], 0.0
    for i in policy.analysed_stages:
        d = (policy.stages[i].duration or timedelta(hours=1)).total_seconds() / 60
        out.append((i, policy.stages[i].traffic / 100, d, start))
        start += d
    return out


def with_population(w: Workload | UserWorkload, seed: int) -> Workload | UserWorkload:
    """The class with its own population of users for one simulated rollout."""
    return replace(w, population_seed=seed) if isinstance(w, UserWorkload) else w


def _draw(
    w: Workload | UserWorkload, n: int, reg: Regression | None = None, **changes: object
) -> Tasks:
    """``n`` tasks or so of one cohort (the canary when ``reg`` is given), no drift."""
    base = replace(w, diurnal_amplitude=0.0, **changes)  # type: ignore[arg-type]
    pops = _POPULATIONS if isinstance(w, UserWorkload) else 1
    parts = []
    for k in range(pops):
        one = with_population(base, 10_000 + k)
        minutes = n / pops / w.tasks_per_minute
        parts.append(
            one.generate(
                canary_share=1.0 if reg else 0.0, minutes=minutes, regression=reg, rng=7 + k
            )
        )
    cat = {
        f: np.concatenate([getattr(p, f) for p in parts])
        for f in ("minute", "canary", "success", "latency_ms", "tokens", "eval_score")
    }
    users = [p.user for p in parts]
    user = (
        None
        if users[0] is None
        else np.concatenate([u + 100_000 * k for k, u in enumerate(users) if u is not None])
    )
    return Tasks(**cat, user=user)


def _icc(y: np.ndarray, user: np.ndarray | None) -> float:
    """Share of a metric's variance between users (one-way ANOVA)."""
    if user is None:
        return 0.0
    ids, inv, cnt = np.unique(user, return_inverse=True, return_counts=True)
    mean = np.bincount(inv, y) / cnt
    within = float(np.sum((y - mean[inv]) ** 2)) / (y.size - ids.size)
    return max(0.0, 1.0 - within / float(np.var(y)))


@dataclass(frozen=True, slots=True)
class Truth:
    """A class's stable release, measured: values at drift 0 and the samples behind them."""

    name: str
    workload: Workload | UserWorkload
    fail_rate: float
    p95: float
    tokens_mean: float
    tokens_cv: float
    eval_mean: float
    eval_sd: float
    icc: dict[str, float]
    latency: np.ndarray  # unrounded stable latencies, drift 0
    tokens: np.ndarray
    round_ms: float | None

    def baseline(self, icc: float | None = None) -> Baseline:
        """The healthy release `check_plan` should assume for this class."""
        w = self.workload
        sigma = w.latency_sigma
        extra = {}
        if isinstance(w, UserWorkload):
            sigma = math.hypot(sigma, w.latency_user_sd)
            extra = {"activity_exponent": w.zipf_exponent, "activity_offset": w.zipf_offset}
        if icc is not None:
            extra["icc"] = icc
        return Baseline(
            success_rate=1 - self.fail_rate,
            latency_sigma=sigma,
            latency_p95_ms=self.p95,
            tokens_mean=self.tokens_mean,
            tokens_cv=self.tokens_cv,
            eval_mean=self.eval_mean,
            eval_sd=self.eval_sd,
            **extra,
        )

    def token_ratio(self, factor: float) -> float:
        """Canary over stable mean tokens when every task spends ``factor`` times more."""
        cap = self.workload.max_tokens
        return float(np.mean(np.minimum(np.round(self.tokens * factor), cap))) / self.tokens_mean

    def token_factor(self, ratio: float) -> float:
        """The token multiplier whose capped mean ratio is ``ratio``."""
        return float(optimize.brentq(lambda f: self.token_ratio(f) - ratio, 1.0, 10.0))

    def tail_share(self, p95_ratio: float) -> float:
        """Share of canary tasks ``TAIL_FACTOR`` times slower that raises p95 by ``p95_ratio``."""
        x, t = self.latency, p95_ratio * float(np.quantile(self.latency, 0.95))
        a, b = float(np.mean(x > t)), float(np.mean(TAIL_FACTOR * x > t))
        return (0.05 - a) / (b - a)


@cache
def truth(name: str) -> Truth:
    """Measure class ``name`` (seeded, so every process gets the same numbers)."""
    w = CLASSES[name]
    raw = {"latency_round_ms": None} if isinstance(w, UserWorkload) else {}
    t = _draw(w, _SAMPLE, eval_rate=1.0, **raw)
    lat_obs = t.latency_ms
    round_ms = w.latency_round_ms if isinstance(w, UserWorkload) else None
    if round_ms is not None:
        lat_obs = np.round(lat_obs / round_ms) * round_ms
    q = float(np.quantile(lat_obs, 0.95))
    icc = {
        "success": _icc(t.success.astype(float), t.user),
        "latency > p95": _icc((lat_obs > q).astype(float), t.user),
        "tokens": _icc(t.tokens, t.user),
        "eval": _icc(t.eval_score, t.user),
    }
    return Truth(
        name,
        w,
        float(1 - t.success.mean()),
        q,
        float(t.tokens.mean()),
        float(t.tokens.std() / t.tokens.mean()),
        float(t.eval_score.mean()),
        float(t.eval_score.std()),
        icc,
        t.latency_ms,
        t.tokens,
        round_ms,
    )


def _stage_values(name: str, policy: Policy) -> list[tuple[float, float]]:
    """Stable success rate and p95 per stage over its planned window (drift included)."""
    w = CLASSES[name]
    period = w.diurnal_period.total_seconds() / 60
    out = []
    for _, _, d, start in plan_stages(policy):
        reps = math.ceil(_SAMPLE / 2 / (d * w.tasks_per_minute))  # the window, again and again
        parts = [
            with_population(w, 10_000 + k).generate(
                canary_share=0.0, minutes=d, phase=2 * np.pi * start / period, rng=3 + k
            )
            for k in range(reps)
        ]
        success = np.concatenate([p.success for p in parts])
        latency = np.concatenate([p.latency_ms for p in parts])
        out.append((float(success.mean()), float(np.quantile(latency, 0.95))))
    return out


Kind = Literal["null", "healthy", "margin", "regression"]
#: LLR increments of a stage's canary tasks, given the tasks and their drift.
Increments = Callable[[Tasks, np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A canary to judge on one class under one policy."""

    name: str
    kind: Kind
    regression: Regression | None
    guardrail: str | None  # the guardrail it sits at or violates
    description: str


def _at(policy: Policy, tr: Truth, share: float) -> dict[str, tuple[str, dict[str, float]]]:
    """Per guardrail: how far ``share`` of its margin is, as `Regression` fields."""
    out: dict[str, tuple[str, dict[str, float]]] = {}
    stages = (
        _stage_values(tr.name, policy)
        if any(
            g.contrast == "absolute" and g.metric in ("task_success_rate", "latency_ms")
            for g in policy.guardrails
        )
        else []
    )
    for g in policy.guardrails:
        m, v = g.metric, g.value
        if m == "task_success_rate" and g.rule == "max_drop":
            out[g.name] = (f"success −{share * v:.3g}", {"success_drop": share * v})
        elif m == "task_success_rate" and g.rule == "min":
            worst = min(s for s, _ in stages)
            drop = share * (worst - v)
            out[g.name] = (f"success {worst:.4f} → {worst - drop:.4f}", {"success_drop": drop})
        elif m == "latency_ms" and g.rule == "max_ratio":
            f = 1 + share * (v - 1)
            out[g.name] = (f"latency ×{f:.3g}", {"latency_factor": f})
        elif m == "latency_ms" and g.rule == "max":
            worst = max(p for _, p in stages)
            f = (worst + share * (v - worst)) / worst
            out[g.name] = (
                f"latency ×{f:.3g} (worst-stage p95 {worst:.0f} → {worst * f:.0f} ms)",
                {"latency_factor": f},
            )
        elif m == "tokens_per_task" and g.rule == "max_ratio":
            f = tr.token_factor(1 + share * (v - 1))
            out[g.name] = (
                f"tokens ×{f:.4g} (mean ratio {1 + share * (v - 1):.4g})",
                {"token_factor": f},
            )
        elif m == "eval_score" and g.rule == "min":
            drop = share * (tr.eval_mean - v)
            out[g.name] = (
                f"eval {tr.eval_mean:.4f} → {tr.eval_mean - drop:.4f}",
                {"eval_drop": drop},
            )
        else:
            raise NotImplementedError(f"{g.name}: {g.rule} on {m}")
    return out


def for_population(sc: Scenario, policy: Policy, w: Workload | UserWorkload) -> Regression | None:
    """The scenario's canary for one run's users (its own population).

    An absolute bound on the mean eval score is a statement about the users the
    release serves: adjusted by their history, the judge estimates the mean over
    *these* users, whose level differs from population to population by more than
    its interval. "At the margin" and "half a margin inside" are therefore placed
    against the run's own population mean, not the classes' average.
    """
    reg = sc.regression
    bound = next(
        (g.value for g in policy.guardrails
         if g.metric == "eval_score" and g.contrast == "absolute" and g.rule == "min"),
        None,
    )  # fmt: skip
    if reg is None or not reg.eval_drop or bound is None or not isinstance(w, UserWorkload):
        return reg
    share = {"margin": 1.0, "healthy": 0.5}.get(sc.kind)
    if share is None or (sc.kind == "margin" and sc.guardrail != _eval_name(policy)):
        return reg
    pop = _population(w)
    activity = np.diff(pop.cumulative, prepend=0.0)
    mean = float(activity @ pop.eval_mean)
    return replace(reg, eval_drop=max(share * (mean - bound), 0.0))


def _eval_name(policy: Policy) -> str | None:
    return next((g.name for g in policy.guardrails if g.metric == "eval_score"), None)


def stable_violates(policy: Policy, name: str) -> str | None:
    """Why stable itself breaks an absolute guardrail of ``policy`` on class ``name``."""
    tr = truth(name)
    for g in policy.guardrails:
        if g.contrast != "absolute":
            continue
        if g.metric == "task_success_rate" and 1 - tr.fail_rate < g.value:
            return f"stable's success rate {1 - tr.fail_rate:.3f} is below {g.value:g}"
        if g.metric == "latency_ms" and tr.p95 > g.value:
            return f"stable's p95 {tr.p95:.0f} ms is above {g.value:g} ms"
        if g.metric == "eval_score" and tr.eval_mean < g.value:
            return f"stable's mean eval score {tr.eval_mean:.3f} is below {g.value:g}"
    return None


@cache
def scenarios(policy_name: str, name: str) -> tuple[Scenario, ...]:
    """Identical, healthy by half a margin, at each margin, and the issue's regressions."""
    policy, tr = POLICIES[policy_name], truth(name)
    half, at = _at(policy, tr, 0.5), _at(policy, tr, 1.0)
    fields: dict[str, float] = {k: v for _, f in half.values() for k, v in f.items()}
    out = [
        Scenario("identical", "null", None, None, "identical canary"),
        Scenario(
            "healthy",
            "healthy",
            Regression(**fields),
            None,
            "inside every margin by half: " + "; ".join(d for d, _ in half.values()),
        ),
    ]
    out += [Scenario(f"at {g}", "margin", Regression(**f), g, d) for g, (d, f) in at.items()]
    names = {g.metric: g.name for g in policy.guardrails}
    share = tr.tail_share(1.3)
    tok = tr.token_ratio(1.25)
    out += [
        Scenario(
            "success −3 pp",
            "regression",
            Regression(success_drop=0.03),
            names["task_success_rate"],
            "success −0.03",
        ),
        Scenario(
            "latency ×1.3",
            "regression",
            Regression(latency_factor=1.3),
            names["latency_ms"],
            "every latency ×1.3 (p95 ×1.3)",
        ),
        Scenario(
            "tail p95 ×1.3",
            "regression",
            Regression(tail_share=share, tail_factor=TAIL_FACTOR),
            names["latency_ms"],
            f"{100 * share:.2f} % of tasks ×{TAIL_FACTOR:g} slower (p95 ×1.3)",
        ),
        Scenario(
            "tokens ×1.25",
            "regression",
            Regression(token_factor=1.25),
            names["tokens_per_task"],
            f"tokens ×1.25 (capped mean ratio {tok:.3f})",
        ),
        Scenario(
            "eval −0.04",
            "regression",
            Regression(eval_drop=0.04),
            names["eval_score"],
            f"eval {tr.eval_mean:.3f} → {tr.eval_mean - 0.04:.3f}",
        ),
    ]
    return tuple(out)


# -- the margin oracle -----------------------------------------------------------------------


def _kelly(payoff: np.ndarray, lam_max: float) -> float:
    """``argmax_λ mean(log(1 + λ v))`` on ``[0, lam_max)``: the bet against the null's edge."""
    if float(np.mean(payoff)) <= 0:
        return 0.0
    res = optimize.minimize_scalar(
        lambda lam: -float(np.mean(np.log1p(lam * payoff))),
        bounds=(0.0, lam_max * (1 - 1e-6)),
        method="bounded",
    )
    return float(res.x)


def _bernoulli(hit: np.ndarray, p1: np.ndarray, p0: np.ndarray) -> np.ndarray:
    p0 = np.clip(p0, 1e-12, 1 - 1e-12)
    p1 = np.clip(np.maximum(p1, p0), 1e-12, 1 - 1e-12)  # no bet on the safe side of the null
    return np.where(hit, np.log(p1 / p0), np.log1p(-p1) - np.log1p(-p0))  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class _Cohort:
    """The canary's users at one share: activity weights (summing to 1) and their effects."""

    weight: np.ndarray
    fail: np.ndarray
    latency: np.ndarray
    tokens: np.ndarray
    eval_mean: np.ndarray

    @classmethod
    def of(cls, w: Workload | UserWorkload, share: float) -> _Cohort:
        if not isinstance(w, UserWorkload):
            one = np.ones(1)
            return cls(one, one * (1 - w.success_rate), one, one, one * w.eval_mean)
        pop = _population(w)  # the generator's own users: who the canary serves at ``share``
        on = pop.u < share
        weight = np.diff(pop.cumulative, prepend=0.0)[on]
        return cls(
            weight / weight.sum(),
            1 - pop.success[on],
            pop.latency[on],
            pop.tokens[on],
            pop.eval_mean[on],
        )

    def survival(self, w: Workload | UserWorkload, reg: Regression, x: np.ndarray) -> np.ndarray:
        """P(latency > x) of the canary's tasks under ``reg`` at drift 0 (before rounding)."""
        # Users binned by their latency effect (256 bins: the mixture to about 1e-4).
        log_effect = np.log(self.latency)
        edges = np.linspace(log_effect.min() - 1e-9, log_effect.max() + 1e-9, 257)
        mass = np.histogram(log_effect, edges, weights=self.weight)[0]
        centre = 0.5 * (edges[1:] + edges[:-1])
        scale = (np.log(w.latency_median_ms * reg.latency_factor) + centre)[:, None]
        lx = np.log(x)[None, :]

        def above(shift: float) -> np.ndarray:
            return special.ndtr(-(lx - scale - shift) / w.latency_sigma)  # type: ignore[no-any-return]

        s = (1 - reg.tail_share) * above(0.0)
        if reg.tail_share > 0:
            s = s + reg.tail_share * above(math.log(reg.tail_factor))
        return np.asarray(mass @ s)

    def tokens_mean(self, w: Workload | UserWorkload, factor: float, drift: float) -> float:
        """Mean capped tokens of the canary's tasks with every task ``factor`` times more."""
        gen = np.random.default_rng(5)  # the same draws at every drift: a smooth curve
        n = 50_000
        user = np.searchsorted(np.cumsum(self.weight), gen.random(n) * (1 - 1e-12))
        median = w.tokens_median * (1 + 0.5 * drift) * self.tokens[user]
        if isinstance(w, UserWorkload) and w.tokens_tail_share > 0:
            runaway = gen.random(n) < w.tokens_tail_share
            tail = np.minimum(1 + gen.pareto(w.tokens_tail_alpha, n), w.max_tokens)
            median = np.where(runaway, median * tail, median)
        x = median * np.exp(w.tokens_sigma * gen.standard_normal(n))
        return float(np.mean(np.minimum(np.round(x * factor), w.max_tokens)))


class Oracle:
    """Wald's SPRT for one guardrail that knows the canary's regressed distribution.

    It knows the class and, on per-user classes, which users the canary serves
    (their activity and effects), so it knows the canary's distribution before
    and after the release. The null is the least favourable point of the
    guardrail's null for that canary: the same users with the release exactly at
    the margin (the scenario "at <guardrail>"), or the literal bound for an
    absolute success or latency rule. Failures: Bernoulli likelihood ratio; p95:
    the canary's exceedance of the margin's p95 (drift and rounding included) as a
    Bernoulli; mean tokens and eval score: a growth-optimal bet against every
    distribution with the margin's mean (nonparametric). It rejects at
    ``log(len(guardrails) / alpha)``, keeps its statistic across stages and looks
    at the judge's 5-minute checks; every stage ends at its planned duration.
    """

    def __init__(self, policy: Policy, name: str, sc: Scenario) -> None:
        assert sc.regression is not None and sc.guardrail is not None
        self.tr, self.reg = truth(name), sc.regression
        self.g = next(g for g in policy.guardrails if g.name == sc.guardrail)
        at = next(s for s in scenarios(_name_of(policy), name) if s.name == f"at {self.g.name}")
        assert at.regression is not None
        self.margin: Regression = at.regression
        self.threshold = math.log(len(policy.guardrails) / policy.alpha)
        g, tr, reg = self.g, self.tr, self.reg
        self.bet = 0.0
        if g.metric == "tokens_per_task":
            cap = tr.workload.max_tokens
            x = np.minimum(np.round(tr.tokens * reg.token_factor), cap)
            m0 = float(np.mean(np.minimum(np.round(tr.tokens * self.margin.token_factor), cap)))
            self.bet = _kelly(x / m0 - 1, 1.0)
        elif g.metric == "eval_score":
            s = _draw(tr.workload, _SAMPLE // 4, reg, eval_rate=1.0).eval_score
            m0 = tr.eval_mean - self.margin.eval_drop
            self.bet = _kelly(m0 - s, 1 / (1 - m0))

    def _stage(self, w: Workload | UserWorkload, share: float) -> Increments:
        """A function of (tasks, drift) giving the LLR increments of one stage."""
        g, reg, m = self.g, self.reg, self.margin
        c = _Cohort.of(w, share)
        absolute = g.contrast == "absolute"
        if g.metric == "task_success_rate":
            p = float(c.weight @ c.fail)

            def success(t: Tasks, d: np.ndarray) -> np.ndarray:
                p0 = np.full(d.shape, 1 - g.value) if absolute else p * (1 + d) + m.success_drop
                return _bernoulli(~t.success, p * (1 + d) + reg.success_drop, p0)

            return success
        if g.metric == "latency_ms":
            grid = np.geomspace(w.latency_median_ms / 4, w.latency_median_ms * 60, 500)
            base = c.survival(w, Regression(), grid)
            q0 = float(np.interp(-0.05, -base, grid))  # the canary's own p95 at drift 0
            s1, s0 = c.survival(w, reg, grid), c.survival(w, m, grid)
            step = getattr(w, "latency_round_ms", None)

            def latency(t: Tasks, d: np.ndarray) -> np.ndarray:
                bound = np.full(d.shape, g.value) if absolute else g.value * q0 * (1 + d)
                edge = bound if step is None else step * (np.floor(bound / step) + 0.5)
                x = edge / (1 + d)
                p1 = np.interp(x, grid, s1)
                p0 = np.full(d.shape, 0.05) if absolute else np.interp(x, grid, s0)
                return _bernoulli(t.latency_ms > bound, p1, p0)

            return latency
        if g.metric == "tokens_per_task":
            ds = np.linspace(-0.35, 0.35, 6)
            m0 = np.array([c.tokens_mean(w, m.token_factor, float(x)) for x in ds])

            def tokens(t: Tasks, d: np.ndarray) -> np.ndarray:
                return np.asarray(np.log1p(self.bet * (t.tokens / np.interp(d, ds, m0) - 1)))

            return tokens
        mean0 = float(c.weight @ np.clip(c.eval_mean - m.eval_drop, 1e-3, 1 - 1e-3))
        bet = min(self.bet, 0.99 / (1 - mean0))

        def score(t: Tasks, d: np.ndarray) -> np.ndarray:
            x = np.nan_to_num(t.eval_score, nan=mean0)  # an unscored task bets nothing
            return np.asarray(np.log1p(bet * (mean0 - x)))

        return score

    def run(self, policy: Policy, workload: Workload | UserWorkload, rng: int) -> float:
        """Minutes from the rollout's start to the oracle's rollback (NaN: none)."""
        gen = np.random.default_rng(rng)
        period = workload.diurnal_period.total_seconds() / 60
        log_stat = 0.0
        for _, share, duration, start in plan_stages(policy):
            phase = 2 * np.pi * start / period
            t = workload.generate(
                canary_share=share, minutes=duration, regression=self.reg, phase=phase, rng=gen
            )
            keep = np.flatnonzero(t.canary)
            keep = keep[np.argsort(t.minute[keep], kind="stable")]
            t = Tasks(
                *(
                    getattr(t, f)[keep]
                    for f in ("minute", "canary", "success", "latency_ms", "tokens", "eval_score")
                )
            )
            drift = workload.diurnal_amplitude * np.sin(2 * np.pi * t.minute / period + phase)
            inc = self._stage(workload, share)(t, drift)
            path = log_stat + np.concatenate([[0.0], np.cumsum(inc)])
            checks = np.arange(5.0, duration + 1e-9, 5.0)
            at = path[np.searchsorted(t.minute, checks, side="left")]
            hit = np.flatnonzero(at >= self.threshold)
            if hit.size:
                return start + float(checks[hit[0]])
            log_stat = float(path[-1])
        return math.nan


def _name_of(policy: Policy) -> str:
    return next(k for k, v in POLICIES.items() if v is policy)
