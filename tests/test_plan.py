"""``check_plan`` and ``manifest check-plan``: will a rollout plan work at this traffic?"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

import canary_stats as cs
from canary_stats import stats
from canary_stats._eta import eta_minutes
from canary_stats._plan import (
    Baseline,
    check_plan,
    crossing_n,
    design_effect,
    detection_minutes,
)
from canary_stats._verdict import GuardrailVerdict
from canary_stats.cli import app
from canary_stats.errors import InputError

from .conftest import SEED_MANIFEST

runner = CliRunner()


@pytest.fixture(scope="module")
def seed() -> cs.Policy:
    return cs.Policy.from_manifest(SEED_MANIFEST)


def _check_plan(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["manifest", "check-plan", str(SEED_MANIFEST), *args])
    return res.exit_code, res.output


def test_the_seed_plan_at_200_tasks_a_minute_with_20_percent_scored_is_feasible(
    seed: cs.Policy,
) -> None:
    plan = check_plan(seed, tasks_per_min=200, eval_share=0.2)
    assert plan.feasible and plan.problems == ()
    assert plan.fail_level == pytest.approx(0.05 / 4) and plan.pass_level == 0.05
    assert [s.index for s in plan.stages] == [0, 1, 2]
    assert [s.mode for s in plan.stages] == ["guard", "guard", "prove"]
    assert plan.expected_minutes == pytest.approx(plan.planned_minutes) == 510
    first = {r.guardrail: r for r in plan.stages[0].guardrails}
    assert first["task_success_rate"].canary == pytest.approx(60)  # 200 x 1 % x 30 min
    assert first["eval_score"].canary == pytest.approx(12) and not first["eval_score"].enough
    assert first["token_spend_delta"].stable == pytest.approx(200 * 0.99 * 30)
    # Evidence carries: samples accumulate over the stages.
    last = {r.guardrail: r for r in plan.stages[2].guardrails}
    assert last["eval_score"].canary == pytest.approx(12 + 480 + 7200)
    by_name = {g.name: g for g in plan.guardrails}
    assert by_name["eval_score"].enough_from == 1
    assert any("eval_score: 12 of 30 scores by the end of stage 0" in w for w in plan.warnings)
    for g in plan.guardrails:
        assert g.prove_after is not None and g.prove_after <= 360
        assert g.detect_after is not None and g.detected_in is not None
    assert by_name["task_success_rate"].regression == pytest.approx(0.955)  # 0.97 - 0.015
    assert by_name["token_spend_delta"].regression == pytest.approx(1.30)  # 1 + 2 x 0.15


def test_two_percent_scored_at_15_tasks_a_minute_is_infeasible_and_says_why(
    seed: cs.Policy,
) -> None:
    plan = check_plan(seed, tasks_per_min=15, eval_share=0.02)
    assert not plan.feasible
    (why,) = [p for p in plan.problems if p.startswith("eval_score")]
    # 15 x 50 % = 7.5 canary tasks/min, 2 % scored: 0.6 + 3.6 + 54 = 58 scores by 6 h.
    assert "scoring 2 % of 7.5 canary tasks/min gives 58 scores by the end of stage 2" in why
    assert "(50 % for 6 h), the prove stage" in why and "takes about 130" in why
    stage0 = [p for p in plan.problems if p.startswith("stage 0")]
    assert stage0 and "4 of 30 tasks" in stage0[0]  # 0.15 canary tasks/min for 30 min
    assert not {g.name: g for g in plan.guardrails}["eval_score"].feasible


def test_a_prove_stage_whose_guardrail_cannot_reach_its_minimum() -> None:
    policy = cs.Policy.from_dict(
        {
            "stages": [{"traffic": 1, "duration": "30m"}, {"traffic": 100}],
            "guardrails": {"eval_score": {"min": 0.9}, "task_success_rate": {"max_drop": 0.02}},
        }
    )
    plan = check_plan(policy, tasks_per_min=15, eval_share=0.02)
    why = next(p for p in plan.problems if p.startswith("eval_score"))
    assert why == (
        "eval_score: scoring 2 % of 0.15 canary tasks/min gives 0 scores by the end of "
        "stage 0 (1 % for 30 min), the prove stage; needs 30"
    )


def test_a_healthy_value_outside_an_absolute_bound_can_never_be_proven(seed: cs.Policy) -> None:
    plan = check_plan(seed, tasks_per_min=200, baseline=Baseline(success_rate=0.9))
    assert not plan.feasible
    assert any(
        p.startswith("task_success_rate: the healthy value assumed (0.9)") for p in plan.problems
    )
    assert {g.name: g for g in plan.guardrails}["task_success_rate"].regression is None


def _first_crossings(
    delta: float, sigma: float, alpha: float, rho: float, runs: int, horizon: int, seed: int
) -> np.ndarray:
    """First n at which the normal-mixture test rejects, on simulated increments."""
    rng = np.random.default_rng(seed)
    n = np.arange(1, horizon + 1, dtype=float)
    boundary = stats.normal_mixture_boundary(n, alpha=alpha, rho=rho)
    z = np.cumsum(rng.normal(delta, sigma, (runs, horizon)), axis=1) / (sigma * np.sqrt(n))
    above = z >= boundary
    return np.where(above.any(axis=1), above.argmax(axis=1) + 1.0, np.inf)


@pytest.mark.parametrize(
    ("delta", "sigma", "alpha", "n_tune"),
    [(0.1, 1.0, 0.0125, 1_000), (0.2, 1.0, 0.05, 100), (0.015, 0.17, 0.0125, 10_000)],
)
def test_detection_time_agrees_with_a_simulated_normal_mixture_test(
    delta: float, sigma: float, alpha: float, n_tune: float
) -> None:
    rho = stats.mixture_precision(n_tune, alpha)
    predicted = detection_minutes(delta, sigma, per_min=1.0, alpha=alpha, rho=rho)
    simulated = np.median(_first_crossings(delta, sigma, alpha, rho, 400, 4 * int(predicted), 7))
    assert predicted == pytest.approx(simulated, rel=0.25)
    # The expected path's crossing (no first-passage correction) is the upper end.
    assert (
        crossing_n(lambda n: delta * np.sqrt(n) / sigma, alpha=alpha, rho=rho, n_max=1e9)
        >= predicted
    )


def test_evidence_carried_from_an_earlier_stage_matches_a_simulated_product() -> None:
    """Stage A (fixed length, its own mixture) then stage B: their e-values multiply."""
    delta, alpha, n_a = 0.08, 0.0125, 300
    rho_a, rho_b = stats.mixture_precision(100, alpha), stats.mixture_precision(1000, alpha)
    rng = np.random.default_rng(3)
    runs, horizon = 400, 6000
    n_b = np.arange(1, horizon + 1, dtype=float)
    target = math.log(1 / alpha)
    totals = []
    for _ in range(runs):
        s_a = np.cumsum(rng.normal(delta, 1.0, n_a))
        z_a = s_a / np.sqrt(np.arange(1, n_a + 1))
        log_a = stats.normal_mixture_log_evalue(z_a, np.arange(1, n_a + 1), rho=rho_a)
        if (log_a >= target).any():
            totals.append(float(np.argmax(log_a >= target) + 1))
            continue
        z_b = np.cumsum(rng.normal(delta, 1.0, horizon)) / np.sqrt(n_b)
        hit = log_a[-1] + stats.normal_mixture_log_evalue(z_b, n_b, rho=rho_b) >= target
        totals.append(n_a + float(np.argmax(hit) + 1) if hit.any() else math.inf)
    carried = float(stats.normal_mixture_log_evalue(delta * math.sqrt(n_a), n_a, rho=rho_a))
    predicted = n_a + crossing_n(
        lambda n: delta * np.sqrt(n), alpha=alpha, rho=rho_b, n_max=1e7, carried=carried,
        median=True,
    )  # fmt: skip
    assert predicted == pytest.approx(np.median(totals), rel=0.25)


def test_detection_is_faster_for_larger_effects_and_more_traffic(seed: cs.Policy) -> None:
    rho = stats.mixture_precision(1000, 0.0125)
    times = [detection_minutes(d, 1.0, per_min=10, alpha=0.0125, rho=rho) for d in (0.05, 0.1, 0.2)]
    assert times[0] > times[1] > times[2] > 0
    assert detection_minutes(0.1, 1.0, per_min=20, alpha=0.0125, rho=rho) < times[1]
    assert detection_minutes(-0.1, 1.0, per_min=20, alpha=0.0125, rho=rho) == math.inf
    plans = [check_plan(seed, tasks_per_min=r, eval_share=0.2) for r in (100, 200, 400)]
    for name in [g.name for g in seed.guardrails]:
        detect = [{g.name: g for g in p.guardrails}[name].detect_after for p in plans]
        assert all(t is not None for t in detect)
        assert detect[0] > detect[1] > detect[2], (name, detect)


def test_few_users_lengthen_times_by_the_design_effect(seed: cs.Policy) -> None:
    assert design_effect(1000, 5000, icc=0.0) == 1.0
    assert design_effect(2000, 50, icc=0.02) > design_effect(1000, 50, icc=0.02) > 1.0
    assert design_effect(1000, 50, icc=0.02) > design_effect(1000, 50_000, icc=0.02)
    tasks = check_plan(seed, tasks_per_min=200, eval_share=0.2)
    users = check_plan(seed, tasks_per_min=200, eval_share=0.2, users=200)
    assert all(s.design_effect == 1.0 for s in tasks.stages)
    assert all(s.design_effect > 1.0 for s in users.stages)
    before = {g.name: g for g in tasks.guardrails}
    for g in users.guardrails:
        assert g.detect_after is not None and before[g.name].detect_after is not None
        assert g.detect_after > before[g.name].detect_after, g.name
    slow, fast = users.guardrails[0].prove_after, tasks.guardrails[0].prove_after
    assert slow is not None and fast is not None and slow > fast
    few = check_plan(seed, tasks_per_min=200, users=50)
    assert any("stage 0 (1 % for 30 min): 1 % of 50 users" in w for w in few.warnings)


def test_eta_of_a_prove_stage_hold_is_the_plans_crossing(seed: cs.Policy) -> None:
    """A guardrail heading for a pass: the ETA solves the same crossing from its interval."""
    alpha = seed.alpha_pass()
    n_now, estimate, margin = 900.0, 0.93, 0.90
    rho = stats.mixture_precision(max(seed.tuning_samples * 0.5, 100.0), alpha)
    b_now = float(stats.normal_mixture_boundary(n_now, alpha=alpha, rho=rho))
    sigma = 0.6
    low = estimate - b_now * sigma / math.sqrt(n_now)
    assert low < margin  # not yet proven
    v = GuardrailVerdict(
        name="eval_score", metric="eval_score", rule="min", limit=margin, margin=margin,
        contrast="absolute", alternative="less", status="inconclusive", estimate=estimate,
        low=low, high=1.0, n_stable=0.0, n_canary=n_now, reason="", method="", resolution=0.0,
        description="", enough_data=True,
    )  # fmt: skip
    tasks = replace(v, name="task_success_rate", metric="task_success_rate", status="pass",
                    n_canary=4500.0, n_stable=4500.0)  # fmt: skip
    eta = eta_minutes([v, tasks], "prove", 0.0, 100.0, 0.5, seed)
    per_min = 100.0 * 0.5 * (n_now / 4500.0)  # canary scores a minute
    expected = detection_minutes(
        estimate - margin, sigma, per_min=per_min, alpha=alpha, rho=rho, n0=n_now
    )
    assert eta == pytest.approx(expected, rel=1e-6) and eta > 0
    # In a guard stage a guardrail short of its own minimum is carried: no wait for it.
    short = replace(v, enough_data=False, n_canary=5.0)
    assert eta_minutes([short, tasks], "guard", 12.0, 100.0, 0.5, seed) == pytest.approx(12.0)


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"tasks_per_min": -5}, "tasks_per_min", "must be a number > 0; got -5"),
        ({"tasks_per_min": 0}, "tasks_per_min", "must be a number > 0; got 0"),
        ({"tasks_per_min": 200, "eval_share": 0}, "eval_share", "must be in (0, 1]; got 0"),
        ({"tasks_per_min": 200, "eval_share": 1.5}, "eval_share", "must be in (0, 1]; got 1.5"),
        ({"tasks_per_min": 200, "users": 0}, "users", "must be a whole number >= 1; got 0"),
    ],
)
def test_check_plan_iv(seed: cs.Policy, kwargs: dict[str, float], field: str, message: str) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(f'{field}: {message}')}$") as err:
        check_plan(seed, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_baseline_iv() -> None:
    with pytest.raises(InputError, match=r"^baseline.success_rate: must be a number in \(0, 1\)"):
        Baseline(success_rate=1.2)
    with pytest.raises(InputError, match=r"^baseline.icc: must be a number in \[0, 1\)"):
        Baseline(icc=-0.1)


def test_cli_exit_codes_and_json() -> None:
    code, out = _check_plan("--tasks-per-min", "200", "--eval-share", "0.2")
    assert code == 0, out
    assert out.startswith(f"{SEED_MANIFEST}: feasible at 200 tasks/min")
    assert "stage 2 (50 % for 6 h), prove" in out and "eval_score" in out
    code, out = _check_plan("--tasks-per-min", "200", "--eval-share", "0.2", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["feasible"] is True
    assert len(doc["stages"]) == 3 and all(len(s["guardrails"]) == 4 for s in doc["stages"])
    code, out = _check_plan("--tasks-per-min", "15", "--eval-share", "0.02", "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["feasible"] is False
    assert any(p.startswith("eval_score:") for p in doc["problems"])
    code, out = _check_plan("--tasks-per-min", "15", "--eval-share", "0.02")
    assert code == 1 and "not feasible: eval_score: scoring 2 %" in out
    code, out = _check_plan("--tasks-per-min", "200", "--users", "5000")
    assert code == 0 and "5000 users" in out and "design effect" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tasks-per-min", "-5"], "--tasks-per-min: must be a number > 0"),
        (["--tasks-per-min", "200", "--eval-share", "0"], "--eval-share: must be in (0, 1]"),
        (["--tasks-per-min", "200", "--eval-share", "1.5"], "--eval-share: must be in (0, 1]"),
        (["--tasks-per-min", "200", "--users", "0"], "--users: must be a whole number >= 1"),
        (["--tasks-per-min", "200", "--assume", "success_rate=2"], "--assume: success_rate must"),
        (["--tasks-per-min", "200", "--assume", "colour=2"], "--assume: expected NAME=VALUE"),
    ],
)
def test_cli_bad_input_names_the_option(args: list[str], expected: str) -> None:
    code, out = _check_plan(*args)
    assert code == 2 and expected in " ".join(out.split()), out
    code, out = _check_plan(*args, "--json")
    assert code == 2 and json.loads(out)["error"]["field"] == expected.split(":")[0]
