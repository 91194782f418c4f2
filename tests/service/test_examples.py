"""examples/argo and examples/flagger work as written against the real service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

import canary_stats as cs
from canary_stats.service import FlaggerHook
from canary_stats.service._models import ArgoJudgeRequest, FlaggerMetadata

from ..conftest import ROOT, SEED_MANIFEST
from .conftest import (
    HOLD,
    PROMOTE,
    ROLLBACK,
    STAGE,
    TOKEN,
    RunningService,
    Scenario,
    flagger_payload,
    settings_for,
)

EXAMPLES = ROOT / "examples"
ARGS = re.compile(r"\{\{args\.([a-z-]+)\}\}")
CONDITION = re.compile(r'^result\.(\w+) == "(\w+)"$')


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _render(template: Any, args: dict[str, str]) -> Any:
    """Argo's {{args.x}} substitution, applied to every string of a template."""
    if isinstance(template, dict):
        return {k: _render(v, args) for k, v in template.items()}
    if isinstance(template, list):
        return [_render(v, args) for v in template]
    if isinstance(template, str):
        return ARGS.sub(lambda m: args[m.group(1)], template)
    return template


def _holds(condition: str, result: dict[str, Any]) -> bool:
    match = CONDITION.match(condition)
    assert match, f"unexpected condition {condition!r}"
    return bool(result[match.group(1)] == match.group(2))


def _argo_phase(metric: dict[str, Any], result: dict[str, Any]) -> str:
    if _holds(metric["failureCondition"], result):
        return "Failed"
    return "Successful" if _holds(metric["successCondition"], result) else "Inconclusive"


def test_the_rollout_steps_match_the_manifest_plan() -> None:
    policy = cs.Policy.from_manifest(SEED_MANIFEST)
    steps = _yaml(EXAMPLES / "argo" / "rollout.yaml")["spec"]["strategy"]["canary"]["steps"]
    weights = [s["setWeight"] for s in steps if "setWeight" in s]
    stages = [
        {a["name"]: a.get("value") for a in s["analysis"]["args"]}["stage"]
        for s in steps
        if "analysis" in s
    ]
    assert weights == [s.traffic for s in policy.stages[:-1]]
    assert stages == [str(i) for i in range(len(policy.stages) - 1)]


@pytest.mark.parametrize("scenario", [PROMOTE, HOLD, ROLLBACK], ids=lambda s: s.decision)
def test_the_analysis_template_drives_the_service(
    service: RunningService, scenario: Scenario
) -> None:
    template = _yaml(EXAMPLES / "argo" / "analysis-template.yaml")
    (metric,) = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert (web["method"], urlparse(web["url"]).path) == ("POST", "/v1/judge/argo")
    assert web["timeoutSeconds"] <= 10 and web["jsonPath"] == "{$}"
    args = {"stage": str(STAGE), "stable-hash": scenario.stable,
            "canary-hash": scenario.canary, "judge-token": TOKEN}  # fmt: skip
    body = _render(web["jsonBody"], args)
    ArgoJudgeRequest.model_validate(body)  # every field is one the service takes
    headers = {h["key"]: h["value"] for h in _render(web["headers"], args)}
    res = service.client.post(
        "/v1/judge/argo",
        json={**body, "stage_started_at": scenario.started()},
        headers=headers,
    )
    assert res.status_code == 200, res.text
    expected = {"promote": "Successful", "hold": "Inconclusive", "rollback": "Failed"}
    assert _argo_phase(metric, res.json()) == expected[scenario.decision]


def _webhooks() -> list[dict[str, Any]]:
    canary = _yaml(EXAMPLES / "flagger" / "canary.yaml")
    policy = cs.Policy.from_manifest(SEED_MANIFEST)
    assert canary["spec"]["analysis"]["stepWeights"] == [s.traffic for s in policy.stages[:-1]]
    hooks: list[dict[str, Any]] = canary["spec"]["analysis"]["webhooks"]
    return hooks


def test_every_flagger_webhook_names_its_own_endpoint() -> None:
    hooks = _webhooks()
    assert {h["type"] for h in hooks} == {h.value for h in FlaggerHook} - {"pre-rollout"}
    for hook in hooks:
        assert urlparse(hook["url"]).path == f"/v1/judge/flagger/{hook['type']}"
        assert int(hook.get("timeout", "10s").removesuffix("s")) <= 10
        FlaggerMetadata.model_validate(hook["metadata"])


def test_the_canary_hooks_drive_the_service(db: Path) -> None:
    allowed = {  # what each hook may answer for each decision (contracts.md §2.3)
        "confirm-traffic-increase": {"promote": 200, "hold": 403, "rollback": 403},
        "confirm-promotion": {"promote": 200, "hold": 403, "rollback": 403},
        "rollout": {"promote": 200, "hold": 200, "rollback": 403},
        "rollback": {"promote": 403, "hold": 403, "rollback": 200},
    }
    with RunningService(settings_for(db)) as running:
        for scenario in (PROMOTE, ROLLBACK):
            for hook in _webhooks():
                # The stage is pinned here; counting it is tested in test_endpoints.
                meta = {**hook["metadata"], "stable": scenario.stable,
                        "canary": scenario.canary, "token": TOKEN, "stage": str(STAGE),
                        "stage_started_at": scenario.started()}  # fmt: skip
                res = running.flagger(hook["type"], flagger_payload(meta))
                if hook["type"] in allowed:
                    decision = res.json()["decision"]
                    assert decision == scenario.decision, res.text
                    assert res.status_code == allowed[hook["type"]][decision]
                else:
                    assert res.status_code in (200, 202), res.text
