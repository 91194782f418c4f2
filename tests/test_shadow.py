"""Shadow mode: pairing rules, holds, the paired tests against references, and the verdict."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special
from scipy import stats as sps

import canary_stats as cs
from canary_stats import stats
from canary_stats.shadow import analyze_shadow
from canary_stats.sources import Regression, Workload, generate_events, generate_shadow_events

BOTH = Regression(token_factor=1.3, success_drop=0.04)


def shadow_events(
    minutes: float = 10,
    regression: Regression = Regression(),  # noqa: B008 (frozen)
    seed: int = 1,
    correlation: float = 0.8,
) -> pd.DataFrame:
    return generate_shadow_events(
        Workload(),
        regression=regression,
        duration=timedelta(minutes=minutes),
        rng=np.random.default_rng(seed),
        correlation=correlation,
    )


def as_canary(df: pd.DataFrame) -> pd.DataFrame:
    """The same tasks as two independent cohorts, for `analyze` (ids repeat across cohorts)."""
    return df.drop(columns="request_id").replace({"cohort": {"shadow": "canary"}})


# -- pairing rules --------------------------------------------------------------------------


def test_unpaired_rows_are_dropped_and_counted(relative_policy: cs.Policy) -> None:
    df = shadow_events(seed=2)
    n = int((df["cohort"] == "stable").sum())
    shadow_ids = df.loc[df["cohort"] == "shadow", "request_id"]
    lost = df.index[df["request_id"].isin(shadow_ids.iloc[:5]) & (df["cohort"] == "shadow")]
    orphan = df.index[df["request_id"].isin(shadow_ids.iloc[5:8]) & (df["cohort"] == "stable")]
    cut = df.drop(index=lost.union(orphan))
    v = analyze_shadow(cut, relative_policy, stage=1)
    assert v.n_canary == v.n_stable == n - 8
    assert "8 unpaired rows dropped (5 stable without a shadow run, 3 shadow without" in v.reason
    assert f"{n - 8} paired tasks" in v.reason
    success = v.metrics["task_success_rate"]
    assert success.n_canary == n - 8 and f"paired, {n - 8} pairs" in success.reason
    # Rows arriving in any order pair the same way.
    shuffled = cut.sample(frac=1.0, random_state=3)
    assert analyze_shadow(shuffled, relative_policy, stage=1).to_dict() == v.to_dict()


def test_rows_without_request_id_are_unpaired(relative_policy: cs.Policy) -> None:
    df = shadow_events(seed=3)
    df.loc[df.index[df["cohort"] == "shadow"][:3], "request_id"] = None
    v = analyze_shadow(df, relative_policy, stage=1)
    # Their stable tasks lose their mirror too.
    assert "6 unpaired rows dropped (3 stable without a shadow run, 3 shadow without" in v.reason
    assert v.n_canary == (df["cohort"] == "stable").sum() - 3


@pytest.mark.parametrize("cohort", ["stable", "shadow"])
def test_duplicated_request_ids_are_refused(relative_policy: cs.Policy, cohort: str) -> None:
    df = shadow_events(minutes=2, seed=4)
    row = df[df["cohort"] == cohort].iloc[[0]]
    with pytest.raises(cs.EventsError, match=f"1 duplicated values among {cohort} rows") as err:
        analyze_shadow(pd.concat([df, row]), relative_policy)
    assert err.value.field == "request_id"


@pytest.mark.parametrize("column", ["request_id", "tokens", "cohort"])
def test_missing_columns_are_named(relative_policy: cs.Policy, column: str) -> None:
    df = shadow_events(minutes=1, seed=5).drop(columns=column)
    with pytest.raises(cs.EventsError, match="missing column") as err:
        analyze_shadow(df, relative_policy)
    assert err.value.field == column


def test_canary_rows_and_aggregates_are_refused(relative_policy: cs.Policy) -> None:
    df = shadow_events(minutes=1, seed=6)
    mixed = df.replace({"cohort": {"shadow": "canary"}})
    with pytest.raises(cs.EventsError, match=r"labelled 'canary'.*judge a canary with analyze"):
        analyze_shadow(mixed, relative_policy)
    agg = pd.DataFrame({"metric": ["tasks"], "field": ["count"], "value": [1.0]})
    with pytest.raises(cs.EventsError, match="needs raw events"):
        analyze_shadow(agg, relative_policy)
    with pytest.raises(cs.EventsError, match="expected a DataFrame"):
        analyze_shadow([1, 2], relative_policy)  # type: ignore[arg-type]
    with pytest.raises(cs.EventsError, match="latency_ms: 1 rows are out of range"):
        analyze_shadow(
            df.assign(latency_ms=np.r_[-1.0, df["latency_ms"].iloc[1:]]), relative_policy
        )


def test_files_and_elapsed(relative_policy: cs.Policy, tmp_path: Path) -> None:
    df = shadow_events(minutes=20, seed=7)
    path = tmp_path / "shadow.parquet"
    df.to_parquet(path)
    v = analyze_shadow(path, relative_policy, stage=1)
    assert v.to_dict() == analyze_shadow(df, relative_policy, stage=1).to_dict()
    assert v.elapsed_minutes == pytest.approx(20, abs=0.5)
    assert analyze_shadow(df, relative_policy, stage=1, elapsed="2h").elapsed_minutes == 120
    with pytest.raises(cs.InputError, match="elapsed"):
        analyze_shadow(df, relative_policy, elapsed="soon")


# -- holds ----------------------------------------------------------------------------------


def test_too_little_data_holds_per_guardrail(relative_policy: cs.Policy) -> None:
    df = shadow_events(minutes=0.1, seed=8)  # a handful of tasks, clear regression
    few = shadow_events(minutes=0.1, regression=BOTH, seed=8)
    for data in (df, few):
        v = analyze_shadow(data, relative_policy, stage=1, elapsed="3h")
        assert v.decision == "hold" and "too little data" in v.reason
        assert "each needs 30 pairs" in v.reason
        m = v.metrics["tokens_per_task"]
        assert m.reason == f"too little data ({int(v.n_canary)} paired tasks; need 30)"
        assert v.eta_minutes is not None and v.eta_minutes > 0
    unscored = analyze_shadow(shadow_events(seed=8).drop(columns="eval_score"), relative_policy)
    assert (
        unscored.metrics["eval_score"].reason
        == "too little data (0 pairs with both scored; need 30)"
    )


def test_nan_or_missing_values_hold_even_with_a_violation(relative_policy: cs.Policy) -> None:
    df = shadow_events(minutes=20, regression=BOTH, seed=9)
    assert analyze_shadow(df, relative_policy, stage=1).decision == "rollback"
    for column in ("latency_ms", "tokens", "success"):
        broken = df.astype({"success": object}) if column == "success" else df.copy()
        broken.loc[broken.index[:3], column] = None
        v = analyze_shadow(broken, relative_policy, stage=1)
        assert v.decision == "hold" and "cannot be trusted" in v.reason
        assert v.data_issues == (f"3 rows have no {column} (partial data)",)


def test_empty_and_unmatched_data_hold(relative_policy: cs.Policy) -> None:
    df = shadow_events(minutes=5, seed=10)
    v = analyze_shadow(df.iloc[:0], relative_policy, stage=1, elapsed="3h")
    assert v.decision == "hold" and "no stable tasks" in v.reason
    only = analyze_shadow(df[df["cohort"] == "stable"], relative_policy, stage=1, elapsed="3h")
    assert only.decision == "hold" and "no shadow tasks" in only.reason
    renamed = df.assign(request_id=np.where(df["cohort"] == "shadow", "x", "") + df["request_id"])
    v = analyze_shadow(renamed, relative_policy, stage=1, elapsed="3h")
    assert v.decision == "hold" and "no shadow row shares its request_id" in v.reason


def test_lost_mirrors_hold_but_a_violation_still_rolls_back(relative_policy: cs.Policy) -> None:
    for reg, expected in ((Regression(), "hold"), (BOTH, "rollback")):
        df = shadow_events(minutes=30, regression=reg, seed=11)
        shadow = df.index[df["cohort"] == "shadow"]
        cut = df.drop(index=shadow[::10])  # a tenth of the shadow runs never recorded
        v = analyze_shadow(cut, relative_policy, stage=1, elapsed="3h")
        assert v.decision == expected and v.to_dict()["sample_ratio"]["mismatch"] is True
        if expected == "hold":
            assert "mirror mismatch" in v.reason and "may be its failures" in v.reason


# -- decisions ------------------------------------------------------------------------------


def test_identical_shadow_promotes_after_the_stage_duration(relative_policy: cs.Policy) -> None:
    df = shadow_events(minutes=30, seed=12)
    early = analyze_shadow(df, relative_policy, stage=1)
    assert early.decision == "hold" and "minimum duration" in early.reason
    assert early.eta_minutes == pytest.approx(90, abs=1)
    done = analyze_shadow(df, relative_policy, stage=1, elapsed="2h")
    assert done.decision == "promote" and "guard stage" in done.reason
    proven = analyze_shadow(df, relative_policy, stage=2, elapsed="6h")  # prove stage
    assert proven.decision == "promote", proven.reason
    assert all(m.status == "pass" for m in proven.metrics.values())


def test_paired_analysis_rolls_back_where_two_cohorts_cannot_yet(
    relative_policy: cs.Policy,
) -> None:
    # 7 minutes: with one level per guardrail over the rollout (alpha / 4), the
    # unpaired test proves the violation at 8.
    df = shadow_events(minutes=7, regression=BOTH, seed=0)
    v = analyze_shadow(df, relative_policy, stage=1)
    assert v.decision == "rollback"
    assert "task_success_rate violates" in v.reason and "tokens_per_task violates" in v.reason
    assert "(paired, " in v.metrics["tokens_per_task"].reason
    assert v.metrics["tokens_per_task"].method == "asymptotic normal-mixture CS (paired)"
    # The same tasks as two independent cohorts (analyze at the 50 % stage: same tuning).
    u = cs.analyze(as_canary(df), relative_policy, stage=2)
    assert u.decision == "hold"
    # Measured width ratios: 0.76 (success), 0.50 (tokens); asserted with margin.
    for name, most in (("task_success_rate", 0.85), ("tokens_per_task", 0.6)):
        p, q = v.metrics[name], u.metrics[name]
        assert p.estimate == pytest.approx(q.estimate, rel=1e-12)
        assert p.high - p.low < most * (q.high - q.low)


def test_absolute_and_quantile_guardrails_match_analyze(
    seed_policy: cs.Policy, relative_policy: cs.Policy
) -> None:
    df = shadow_events(minutes=15, regression=Regression(success_drop=0.02, tail_share=0.1,
                                                         tail_factor=3), seed=13)  # fmt: skip
    for policy, names in (
        (seed_policy, ("task_success_rate", "p95_latency_ms", "eval_score")),
        (relative_policy, ("p95_latency_ms",)),
    ):
        v = analyze_shadow(df, policy, stage=0)
        u = cs.analyze(as_canary(df), policy, stage=2)  # a 50 % canary: the same tuning
        for name in names:
            a, b = v.metrics[name].to_dict(), u.metrics[name].to_dict()
            assert a.pop("reason").startswith(b.pop("reason"))
            assert a == b
        how = "the shadow's runs alone" if policy is seed_policy else "unpaired two-cohort"
        assert how in v.metrics["p95_latency_ms"].reason


def test_verdict_json_matches_analyze(relative_policy: cs.Policy) -> None:
    df = shadow_events(minutes=5, seed=14)
    d = analyze_shadow(df, relative_policy, stage=1).to_dict()
    ref = cs.analyze(as_canary(df), relative_policy, stage=1).to_dict()
    assert set(d) == set(ref)
    for name, m in d["metrics"].items():
        assert set(m) == set(ref["metrics"][name])
    json.dumps(d, allow_nan=False)
    assert d["alpha"] == ref["alpha"] and d["sample_ratio"]["expected_share"] == 0.5


# -- the paired tests against references ----------------------------------------------------


def _normal_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated pairs with a known mean difference of 0.3."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(10.0, 2.0, n)
    return xs, xs + rng.normal(0.3, 1.0, n)


def _moments(xs: np.ndarray, xc: np.ndarray) -> tuple[float, ...]:
    cov = float(np.mean((xs - xs.mean()) * (xc - xc.mean())))
    return xs.size, xs.mean(), xs.var(), xc.mean(), xc.var(), cov


def test_paired_interval_against_scipy_and_the_unpaired_test() -> None:
    alpha, truth = 0.05, 0.3
    for seed in range(5):
        xs, xc = _normal_pairs(800, seed)
        n, ms, vs, mc, vc, cov = _moments(xs, xc)
        r = stats.paired_mean_contrast(
            n, ms, vs, mc, vc, cov, margin=0.0, alternative="greater", alpha=alpha
        )
        low, high = r.confidence_interval
        assert r.estimate == pytest.approx(float(np.mean(xc - xs)), rel=1e-12)
        # Fixed-n one-sided bounds (the paired t-interval at the same level) are tighter,
        # and valid only at one look; both contain the truth here.
        t_low = sps.ttest_rel(xc, xs, alternative="greater").confidence_interval(1 - alpha).low
        t_high = sps.ttest_rel(xc, xs, alternative="less").confidence_interval(1 - alpha).high
        assert low < t_low < truth < t_high < high
        # The two-sample test of the same data ignores the covariance: far wider.
        u = stats.mean_contrast(
            n, ms, vs, n, mc, vc, margin=0.0, alternative="greater", alpha=alpha, n_tune=20_000
        )
        assert (u.confidence_interval.high - u.confidence_interval.low) > 2 * (high - low)


def test_paired_interval_equals_the_mixture_formula_by_hand() -> None:
    """statistics.md 2.1: rho from N_tune, then the one-sided normal-mixture e-value."""
    xs, xc = _normal_pairs(800, 21)
    n, ms, vs, mc, vc, cov = _moments(xs, xc)
    alpha, n_tune = 0.01, 5000
    r = stats.paired_mean_contrast(
        n, ms, vs, mc, vc, cov, margin=0.0, alternative="greater", alpha=alpha, n_tune=n_tune
    )
    la = math.log(1 / alpha)
    rho = n_tune / (2 * la + math.log(1 + 2 * la))

    def log_e(s: float) -> float:  # half-normal mixture over lambda > 0
        v = n + rho
        return float(
            math.log(2 * math.sqrt(rho / v)) + s * s / (2 * v) + special.log_ndtr(s / v**0.5)
        )

    s = optimize.brentq(lambda s: log_e(s) - la, 0.0, 200.0)
    half = s / math.sqrt(n) * math.sqrt((vc + vs - 2 * cov) / n)
    d = mc - ms
    assert r.confidence_interval == pytest.approx((d - half, d + half), rel=1e-9)
    # The closed form of statistics.md (two-sided at 2 alpha) is the same up to Phi(.) ~ 1.
    z_closed = math.sqrt((n + rho) / n * math.log((n + rho) / (rho * (2 * alpha) ** 2)))
    assert z_closed < s / math.sqrt(n) < 1.01 * z_closed


def test_paired_ratio_interval_is_the_fieller_set_of_the_decision() -> None:
    xs, xc = _normal_pairs(800, 22)
    n, ms, vs, mc, vc, cov = _moments(xs, xc)
    r = stats.paired_mean_contrast(
        n, ms, vs, mc, vc, cov, contrast="ratio", margin=1.0, alternative="greater"
    )
    diff = stats.paired_mean_contrast(n, ms, vs, mc, vc, cov, margin=0.0, alternative="greater")
    z = (diff.estimate - diff.confidence_interval.low) / math.sqrt((vc + vs - 2 * cov) / n)
    for end in r.confidence_interval:  # at each end the linear test sits on its boundary
        se = math.sqrt((vc - 2 * end * cov + end * end * vs) / n)
        assert abs(mc - end * ms) / se == pytest.approx(z, rel=1e-9)
    assert r.estimate == pytest.approx(mc / ms) and r.status == diff.status == "fail"
    for margin in (r.confidence_interval.low * 0.999, r.confidence_interval.low * 1.001):
        at = stats.paired_mean_contrast(
            n, ms, vs, mc, vc, cov, contrast="ratio", margin=margin, alternative="greater"
        )
        assert (at.status == "fail") == (margin < r.confidence_interval.low)


def test_paired_proportions_match_the_mean_test_and_resist_rare_discordance() -> None:
    rng = np.random.default_rng(23)
    hard = rng.random(20_000) < 0.03
    s = ~hard | (rng.random(hard.size) < 0.3)
    c = s & (rng.random(hard.size) > 0.02)  # the canary also fails 2 % of stable's successes
    table = (c.size, s.sum(), c.sum(), (s & c).sum())
    p = stats.paired_proportion_contrast(*table, margin=-0.01, alternative="less")
    m = stats.paired_mean_contrast(
        *_moments(s.astype(float), c.astype(float)), margin=-0.01, alternative="less"
    )
    assert p.estimate == pytest.approx(m.estimate, rel=1e-12) and p.status == m.status == "fail"
    assert p.confidence_interval == pytest.approx(tuple(m.confidence_interval), rel=2e-3)
    # No discordant pair at all: the plug-in variance is 0, the shrunk one is not.
    same = stats.paired_proportion_contrast(200, 197, 197, 197, margin=0.0, alternative="less")
    assert same.status == "inconclusive"
    assert same.confidence_interval.low < -0.01 and same.confidence_interval.high > 0.01
    # On the margin, the variance is floored at |m| (1 - |m|), the least it can be there.
    edge = stats.paired_proportion_contrast(
        5000, 4900, 4900, 4900, margin=-0.05, alternative="less"
    )
    z = stats.normal_mixture_boundary(5000, alpha=0.05, rho=stats.mixture_precision(1e4, 0.05))
    assert edge.confidence_interval.low == pytest.approx(-z * math.sqrt(0.05 * 0.95 / 5000))


def test_paired_input_validation() -> None:
    with pytest.raises(ValueError, match="`successes_both` must lie between"):
        stats.paired_proportion_contrast(10, 5, 5, 6, margin=-0.1)
    with pytest.raises(ValueError, match="`successes_both` must lie between"):
        stats.paired_proportion_contrast(10, 8, 8, 5, margin=-0.1)
    with pytest.raises(ValueError, match="must not exceed `n`"):
        stats.paired_proportion_contrast(10, 11, 5, 5, margin=-0.1)
    with pytest.raises(ValueError, match="`contrast` must be one of"):
        stats.paired_mean_contrast(1, 1, 1, 1, 1, 0, contrast="log", margin=0, alternative="less")
    with pytest.raises(ValueError, match="`margin` of a ratio must be positive"):
        stats.paired_mean_contrast(1, 1, 1, 1, 1, 0, contrast="ratio", margin=0, alternative="less")
    with pytest.raises(ValueError, match="`var_canary` must be finite and non-negative"):
        stats.paired_mean_contrast(5, 1, 1, 1, -1, 0, margin=0, alternative="less")
    with pytest.raises(ValueError, match="`cov` must be finite"):
        stats.paired_mean_contrast(5, 1, 1, 1, 1, np.nan, margin=0, alternative="less")
    empty = stats.paired_mean_contrast(0, 0, 0, 0, 0, 0, margin=0, alternative="less")
    assert empty.status == "inconclusive" and math.isnan(empty.estimate)


# -- synthetic shadow traffic ---------------------------------------------------------------


def test_generated_pairs_share_difficulty_and_carry_the_regression() -> None:
    reg = Regression(token_factor=1.3, latency_factor=1.1, eval_drop=0.05)
    df = shadow_events(minutes=60, regression=reg, seed=24)
    s = df[df["cohort"] == "stable"].set_index("request_id").sort_index()
    h = df[df["cohort"] == "shadow"].set_index("request_id").sort_index()
    assert s.index.equals(h.index) and len(df) == 2 * len(s)
    assert s["eval_score"].isna().equals(h["eval_score"].isna())  # scored together or not
    assert h["tokens"].mean() / s["tokens"].mean() == pytest.approx(1.3, rel=0.02)
    assert h["latency_ms"].median() / s["latency_ms"].median() == pytest.approx(1.1, rel=0.03)
    scored = s["eval_score"].notna()
    drop = s.loc[scored, "eval_score"].mean() - h.loc[scored, "eval_score"].mean()
    assert drop == pytest.approx(0.05, abs=0.005)
    for col in ("latency_ms", "tokens"):
        rho = sps.spearmanr(s[col], h[col]).statistic
        assert rho == pytest.approx(0.8, abs=0.03)  # the latent correlation, rank-preserved
    # The stable cohort keeps the marginals of the two-cohort generator (same drift).
    two = generate_events(Workload(), canary_share=0.0, duration=timedelta(minutes=60), rng=25)
    assert s["success"].mean() == pytest.approx(two["success"].mean(), abs=0.003)
    for col in ("latency_ms", "tokens"):
        assert s[col].median() == pytest.approx(two[col].median(), rel=0.03)
    assert s["eval_score"].mean() == pytest.approx(two["eval_score"].mean(), abs=0.003)
    independent = shadow_events(minutes=20, seed=24, correlation=0.0)
    a = independent[independent["cohort"] == "stable"].set_index("request_id").sort_index()
    b = independent[independent["cohort"] == "shadow"].set_index("request_id").sort_index()
    assert abs(sps.spearmanr(a["tokens"], b["tokens"]).statistic) < 0.05
    with pytest.raises(ValueError, match="`correlation` must be in"):
        shadow_events(correlation=1.5)


def test_cli_judges_shadow_traffic_as_pairs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from canary_stats.cli import app

    events = generate_shadow_events(
        Workload(),
        regression=Regression(token_factor=1.5),
        duration=timedelta(hours=3),
        rng=3,
    )
    path = tmp_path / "shadow.parquet"
    events.to_parquet(path)
    manifest = Path(__file__).resolve().parents[1] / "examples" / "research-agent.manifest.yaml"
    args = ["analyze", str(path), "--manifest", str(manifest), "--stage", "1", "--shadow"]
    res = CliRunner().invoke(app, args)
    verdict = json.loads(res.stdout)
    assert res.exit_code == 20, res.stdout
    assert verdict["decision"] == "rollback"
    assert "paired" in verdict["metrics"]["token_spend_delta"]["reason"]
    without = CliRunner().invoke(app, ["analyze", "--db", str(tmp_path / "x.duckdb"), "--manifest",
                                       str(manifest), "--stage", "1", "--shadow"])  # fmt: skip
    assert without.exit_code == 2 and "--shadow" in without.output
    # The shadow file judged as a canary's: exit 2 with the hint, not a hold.
    plain = CliRunner().invoke(app, args[:-1])
    assert plain.exit_code == 2, plain.output
    assert "shadow file" in plain.output and "--shadow" in plain.output
