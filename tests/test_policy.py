from __future__ import annotations

import pytest

import canary_stats as cs
from canary_stats.errors import ManifestError, PolicyError

from .conftest import RELATIVE_ROLLOUT


def test_seed_manifest_loads_as_written(seed_policy: cs.Policy) -> None:
    g = {x.name: x for x in seed_policy.guardrails}
    assert (g["task_success_rate"].rule, g["task_success_rate"].value) == ("min", 0.97)
    assert (g["p95_latency_ms"].metric, g["p95_latency_ms"].quantile) == ("latency_ms", 0.95)
    # token_spend_delta {max: 0.15} is max_ratio 1.15 on tokens per task
    tok = g["token_spend_delta"]
    assert (tok.metric, tok.rule, tok.value) == (
        "tokens_per_task",
        "max_ratio",
        pytest.approx(1.15),
    )
    assert [s.traffic for s in seed_policy.stages] == [1, 10, 50, 100]
    assert seed_policy.stages[1].duration is not None
    assert seed_policy.stages[1].duration.total_seconds() == 7200
    assert [seed_policy.stage_mode(i) for i in seed_policy.analysed_stages] == [
        "guard",
        "guard",
        "prove",
    ]


def test_alpha_budget_is_split_over_guardrails_not_stages(seed_policy: cs.Policy) -> None:
    # Evidence is kept across the three analysed stages: one level per guardrail.
    assert len(seed_policy.analysed_stages) == 3
    assert seed_policy.alpha_per_test() == pytest.approx(0.05 / 4)
    assert seed_policy.alpha_pass() == pytest.approx(0.05)


def test_explicit_list_form_and_margins() -> None:
    p = cs.Policy.from_dict(
        {
            "stages": [{"traffic": 10, "duration": "1h30m"}, {"traffic": 100}],
            "guardrails": [
                {"metric": "task_success_rate", "max_drop": 0.02},
                {"metric": "p99_latency_ms", "max_ratio": 1.2, "name": "tail"},
            ],
        }
    )
    drop, tail = p.guardrails
    assert (drop.contrast, drop.margin, drop.alternative) == ("difference", -0.02, "less")
    assert (tail.name, tail.quantile, tail.contrast, tail.alternative) == (
        "tail",
        0.99,
        "ratio",
        "greater",
    )
    assert p.stages[0].duration is not None and p.stages[0].duration.total_seconds() == 5400


@pytest.mark.parametrize(
    ("guardrails", "field", "message"),
    [
        ({"latency_p95": {"max": 1}}, "rollout.guardrails", "unknown guardrail 'latency_p95'"),
        (
            {"p95_latency_ms": {"max_ratio": -1.2}},
            "rollout.guardrails.p95_latency_ms",
            "max_ratio must be > 0",
        ),
        (
            {"task_success_rate": {"max_drop": -0.02}},
            "rollout.guardrails.task_success_rate",
            "must be >= 0",
        ),
        (
            {"eval_score": {"min": 0.9}, "task_success_rate": {"min": 97}},
            "rollout.guardrails.task_success_rate",
            "must be in (0, 1)",
        ),
        (
            {"eval_score": {"max_ratio": 1.1}},
            "rollout.guardrails.eval_score",
            "does not apply to eval_score",
        ),
        (
            [{"metric": "eval_score", "min": 0.9}, {"metric": "p95_latency_ms", "max": -5}],
            "rollout.guardrails.p95_latency_ms",
            "max must be > 0",
        ),
        ({"task_success_rate": {}}, "rollout.guardrails", "needs a rule"),
        ({"token_spend_delta": {"min": 0.1}}, "rollout.guardrails", "takes only {max: d}"),
    ],
)
def test_bad_guardrails_name_the_field(guardrails: dict, field: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        cs.Policy.from_dict({**RELATIVE_ROLLOUT, "guardrails": guardrails})
    assert info.value.field == field
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"alpha": 1.5}, "rollout.alpha", "less than 1"),
        ({"alpha": 0}, "rollout.alpha", "greater than 0"),
        ({"stages": [{"traffic": 10}, {"traffic": 5}]}, "rollout", "must rise strictly"),
        ({"stages": [{"traffic": 100}]}, "rollout", "less than 100%"),
        ({"stages": [{"traffic": 10, "duration": "ten minutes"}]}, "rollout.stages.0.duration", ""),
        ({"surprise": 1}, "rollout.surprise", "Extra inputs are not permitted"),
    ],
)
def test_bad_policy_options_name_the_field(change: dict, field: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        cs.Policy.from_dict({**RELATIVE_ROLLOUT, **change})
    assert info.value.field == field
    assert message in str(info.value)


def test_stage_index_is_checked(relative_policy: cs.Policy) -> None:
    with pytest.raises(PolicyError, match="no stable cohort"):
        relative_policy.check_stage(3)
    with pytest.raises(PolicyError, match=r"stage index in 0\.\.3"):
        relative_policy.check_stage(7)


def test_manifest_errors(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        cs.Policy.from_manifest(bad)
    with pytest.raises(PolicyError, match="cannot read"):
        cs.Policy.from_manifest(tmp_path / "missing.yaml")
    norollout = tmp_path / "n.yaml"
    norollout.write_text("spec: {model: {primary: x}}\n")
    with pytest.raises(PolicyError, match="no rollout section"):
        cs.Policy.from_manifest(norollout)
    # A whole manifest is validated first, with the YAML path and line of the problem.
    partial = tmp_path / "p.yaml"
    partial.write_text("apiVersion: agents/v1\nspec: {model: {primary: x}}\n")
    with pytest.raises(ManifestError, match=r"^kind: required key 'kind' is missing \(line 1\)$"):
        cs.Policy.from_manifest(partial)
