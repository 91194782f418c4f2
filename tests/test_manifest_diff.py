"""Manifest diffs: component by component, with a risk class and a rollout plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from canary_stats.manifest._diff import ManifestDiff, diff_manifests
from canary_stats.manifest._load import Manifest, load_manifest

ROOT = Path(__file__).resolve().parents[1]
SEED_MANIFEST = ROOT / "examples" / "research-agent.manifest.yaml"
NAME = "agent.manifest.yaml"


def release(where: Path, edits: dict[str, str] | None = None) -> Path:
    """A copy of the seed release in ``where``; ``edits`` replace text in the manifest."""
    for part in ("prompts", "schemas"):
        shutil.copytree(SEED_MANIFEST.parent / part, where / part)
    text = SEED_MANIFEST.read_text()
    for old, new in (edits or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    (where / NAME).write_text(text)
    return where


def load(where: Path) -> Manifest:
    return load_manifest(where / NAME)


def diff(tmp_path: Path, edit: dict[str, str] | None = None) -> tuple[Path, Path]:
    return release(tmp_path / "old"), release(tmp_path / "new", edit)


def by_path(result: ManifestDiff) -> dict[str, tuple[object, object, str]]:
    return {c.path: (c.old, c.new, c.kind) for c in result.changes}


def test_identical_releases_have_no_changes(tmp_path: Path) -> None:
    old, new = diff(tmp_path)
    result = diff_manifests(load(old), load(new))  # same content, two directories
    assert result.changes == ()
    assert (result.risk, result.reasons, result.plan.code) == ("low", (), "none")
    assert result.summary_lines()[0].endswith(": 0 changes, risk low")
    assert diff_manifests(load(old), load(old)).changes == ()


def test_config_only_tweaks_are_low_risk(tmp_path: Path) -> None:
    old, new = diff(tmp_path, {'"20/60s"': '"30/60s"', "100000": "120000"})
    result = diff_manifests(load(old), load(new))
    assert by_path(result) == {
        "rate_limits.web_search": ("20/60s", "30/60s", "changed"),
        "max_tokens_per_task": (100000, 120000, "changed"),
    }
    assert {c.component for c in result.changes} == {"config"}
    assert result.risk == "low"
    assert result.reasons == ("low: runtime config knobs change",)
    assert result.plan.code == "standard_canary"


def test_small_prompt_edit_is_medium_risk(tmp_path: Path) -> None:
    old, new = diff(tmp_path)
    system = new / "prompts" / "system.md"
    system.write_text(system.read_text() + "Cite every source.\n")
    (new / "prompts" / "tasks" / "comparison.md").write_text("Compare {a} and {b}.\n")
    (new / "prompts" / "examples" / "fact_check.md").unlink()
    result = diff_manifests(load(old), load(new))
    kinds = {c.path: (c.kind, c.risk) for c in result.changes}
    assert kinds == {
        "prompts/system.md": ("changed", "medium"),
        "prompts/tasks/comparison.md": ("added", "medium"),
        "prompts/examples/fact_check.md": ("removed", "medium"),
    }
    change = next(c for c in result.changes if c.path == "prompts/system.md")
    assert change.old == f"sha256:{_sha(old / 'prompts' / 'system.md')}"
    assert "+1 -0 lines" in change.reason
    assert (result.risk, result.plan.code) == ("medium", "standard_canary")


def test_prompt_rewrite_means_shadow_first(tmp_path: Path) -> None:
    old, new = diff(tmp_path)
    lines = [f"Rule {i}: answer only from retrieved sources." for i in range(8)]
    (new / "prompts" / "system.md").write_text("\n".join(lines) + "\n")
    result = diff_manifests(load(old), load(new))
    (change,) = result.changes
    assert (change.component, change.kind, change.risk) == ("prompts", "rewritten", "high")
    assert result.plan.code == "shadow_then_canary"
    assert result.plan.text.startswith("Shadow first, then canary: system prompt")


def test_tool_major_bump_is_high_risk(tmp_path: Path) -> None:
    old, new = diff(tmp_path, {"version: 1.4.0": "version: 2.0.0"})
    result = diff_manifests(load(old), load(new))
    assert by_path(result) == {"web_search.version": ("1.4.0", "2.0.0", "major")}
    assert result.risk == "high"
    assert result.reasons == ("high: tool web_search 1.4.0 -> 2.0.0 is a major bump",)
    assert result.plan.code == "careful_canary"


@pytest.mark.parametrize(
    ("version", "kind", "risk"),
    [
        ("1.5.0", "minor", "medium"),
        ("1.4.1", "patch", "low"),
        ("1.4.0-rc.1", "prerelease downgrade", "low"),
        ("1.3.9", "minor downgrade", "medium"),
        ("1.4.0+build.7", "build", "low"),
    ],
)
def test_tool_versions_are_classified(tmp_path: Path, version: str, kind: str, risk: str) -> None:
    old, new = diff(tmp_path, {"version: 1.4.0": f"version: {version}"})
    (change,) = diff_manifests(load(old), load(new)).changes
    assert (change.path, change.kind, change.risk) == ("web_search.version", kind, risk)


def test_tool_schema_change_without_bump_is_flagged(tmp_path: Path) -> None:
    old, new = diff(tmp_path)
    schema = new / "schemas" / "web_search.json"
    schema.write_text(schema.read_text().replace("}", ', "x-note": 1}', 1))
    (change,) = diff_manifests(load(old), load(new)).changes
    assert (change.component, change.path, change.kind) == ("tools", "web_search.schema", "changed")
    assert change.reason.endswith("without a version bump")


def test_tools_added_and_removed(tmp_path: Path) -> None:
    tool = "    - name: web_search\n      version: 1.4.0\n      schema: schemas/web_search.json\n"
    fetch = "    - name: fetch_page\n      version: 0.3.0\n      schema: schemas/web_search.json\n"
    old = release(tmp_path / "old")
    edit = {tool: fetch, 'web_search: "20/60s"': 'fetch_page: "20/60s"'}
    new = release(tmp_path / "new", edit)
    result = diff_manifests(load(old), load(new))
    assert by_path(result) == {
        "web_search": ("1.4.0", None, "removed"),
        "fetch_page": (None, "0.3.0", "added"),
        "rate_limits.web_search": ("20/60s", None, "removed"),
        "rate_limits.fetch_page": (None, "20/60s", "added"),
    }
    assert result.risk == "high"
    assert result.reasons[:2] == (
        "high: tool web_search removed: prompts or stored plans may still call it",
        "medium: new tool fetch_page 0.3.0",
    )
    back = diff_manifests(load(new), load(old))
    assert [c.kind for c in back.changes if c.component == "tools"] == ["removed", "added"]


def test_model_change_means_shadow_first(tmp_path: Path) -> None:
    old, new = diff(tmp_path, {"claude-sonnet-4-6": "claude-opus-4-1-20250805"})
    result = diff_manifests(load(old), load(new))
    (change,) = result.changes
    assert (change.component, change.path) == ("model", "primary")
    assert (change.old, change.new) == ("claude-sonnet-4-6", "claude-opus-4-1-20250805")
    assert (result.risk, result.plan.code) == ("high", "shadow_then_canary")
    assert "the primary model changes" in result.plan.text


def test_fallback_change_is_medium(tmp_path: Path) -> None:
    old, new = diff(tmp_path, {"gpt-4-turbo-2024-04-09": "gpt-4o-2024-08-06"})
    result = diff_manifests(load(old), load(new))
    assert by_path(result) == {
        "fallback": ("gpt-4-turbo-2024-04-09", "gpt-4o-2024-08-06", "changed")
    }
    assert (result.risk, result.plan.code) == ("medium", "standard_canary")


def test_other_model_roles_and_runtime_keys_are_diffed(tmp_path: Path) -> None:
    was, now = "meta-llama-3-70b-instruct:2026-02-01", "meta-llama-3-70b-instruct:2026-03-01"
    old, new = diff(tmp_path, {was: now, "routing: priority_failover": "routing: round_robin"})
    result = diff_manifests(load(old), load(new))
    assert by_path(result) == {
        "local": (was, now, "changed"),
        "provider_routing": ("priority_failover", "round_robin", "changed"),
    }
    assert result.reasons == (
        f"medium: the local model changes ({was} -> {now})",
        "low: runtime config knobs change",
    )


def test_memory_schema_bump_is_high_and_migrates_first(tmp_path: Path) -> None:
    edit = {"schema_version: 7\n    migration_from: 6": "schema_version: 8\n    migration_from: 7"}
    old, new = diff(tmp_path, edit)
    result = diff_manifests(load(old), load(new))
    assert by_path(result) == {
        "schema_version": (7, 8, "changed"),
        "migration_from": (6, 7, "changed"),
    }
    assert result.risk == "high"
    assert result.plan.code == "careful_canary"
    assert "memory migration before the first stage" in result.plan.text


def test_rollout_changes(tmp_path: Path) -> None:
    edit = {
        'duration: "2h"': 'duration: "4h"',
        "auto_rollback_on_failure: true": "auto_rollback_on_failure: false",
    }
    old, new = diff(tmp_path, edit)
    result = diff_manifests(load(old), load(new))
    assert by_path(result) == {
        "stages.1.duration": ("2h", "4h", "changed"),
        "auto_rollback_on_failure": (True, False, "changed"),
    }
    assert result.risk == "medium"
    assert result.reasons[0] == "medium: automatic rollback on failure is switched off"


def test_to_dict_and_summary(tmp_path: Path) -> None:
    old, new = diff(tmp_path, {"version: 1.4.0": "version: 2.0.0", "100000": "90000"})
    result = diff_manifests(load(old), load(new))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["risk"] == "high" and data["plan"]["code"] == "careful_canary"
    assert data["changes"][0] == {
        "component": "tools",
        "path": "web_search.version",
        "old": "1.4.0",
        "new": "2.0.0",
        "kind": "major",
        "risk": "high",
        "reason": "tool web_search 1.4.0 -> 2.0.0 is a major bump",
    }
    lines = result.summary_lines()
    assert any("max_tokens_per_task" in line and "100000 -> 90000" in line for line in lines)
    assert lines[-1].startswith("plan (careful_canary): Careful canary")


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
