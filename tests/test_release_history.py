"""Release history: releases in the store, the previous stable one, and git as a fallback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary_stats.cli import app
from canary_stats.errors import ManifestError
from canary_stats.manifest import (
    load_manifest,
    previous_from_git,
    previous_release,
    register_manifest,
)
from canary_stats.store import Store

from .conftest import SEED_MANIFEST

runner = CliRunner()


def _release(directory: Path, version: str, model: str = "claude-sonnet-4-6") -> Path:
    """The seed manifest (and its files) in ``directory`` with another version and model."""
    if not (directory / "prompts").exists():
        for part in ("prompts", "schemas"):
            shutil.copytree(SEED_MANIFEST.parent / part, directory / part)
    text = SEED_MANIFEST.read_text()
    text = text.replace("version: 2026.04.19-a3f2c1", f"version: {version}")
    text = text.replace("primary: claude-sonnet-4-6", f"primary: {model}")
    path = directory / "agent.manifest.yaml"
    path.write_text(text)
    return path


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_register_is_idempotent_and_versions_are_immutable(tmp_path: Path) -> None:
    path = _release(tmp_path, "v1")
    with Store(tmp_path / "s.duckdb") as store:
        assert register_manifest(store, load_manifest(path)) is True
        assert register_manifest(store, load_manifest(path)) is False
        (tmp_path / "prompts" / "system.md").write_text("changed\n")
        path.write_text(path.read_text() + "# same version, new content\n")
        with pytest.raises(ManifestError, match="already registered with different content"):
            register_manifest(store, load_manifest(path))
        (record,) = store.releases("research-agent")
    assert record.version == "v1" and record.status == "registered"
    assert "prompts/system.md" in record.hashes


def test_the_previous_stable_release_is_the_rollback_target(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        for version in ("v1", "v2", "v3"):
            register_manifest(store, load_manifest(_release(tmp_path / version, version)))
        assert store.previous_stable("research-agent", before="v3") is None
        store.set_release_status("research-agent", "v1", "stable")
        store.set_release_status("research-agent", "v2", "stable")
        current = load_manifest(tmp_path / "v3" / "agent.manifest.yaml")
        found = previous_release(current, store=store)
        assert found is not None and (found.version, found.source) == ("v2", "store")
        store.set_release_status("research-agent", "v2", "rolled_back")
        found = previous_release(current, store=store)
        assert found is not None and found.version == "v1"
        with pytest.raises(ManifestError, match="v9 is not registered"):
            store.set_release_status("research-agent", "v9", "stable")


def test_git_history_gives_the_last_other_version(tmp_path: Path) -> None:
    path = _release(tmp_path, "v1")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "v1")
    _release(tmp_path, "v2", model="claude-3-5-sonnet-20241022")
    _git(tmp_path, "commit", "-qam", "v2")
    path.write_text(path.read_text() + "# a comment, same version\n")
    _git(tmp_path, "commit", "-qam", "comment")
    found = previous_from_git(load_manifest(path))
    assert found is not None and found.version == "v1" and found.source.startswith("git ")
    assert "claude-sonnet-4-6" in found.manifest_text


def test_cli_register_and_previous(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    old = _release(tmp_path / "old", "v1")
    new = _release(tmp_path / "new", "v2")
    for path in (old, new):
        res = runner.invoke(app, ["manifest", "hash", str(path)])
        assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["manifest", "register", str(old), "--db", str(db), "--stable", "--create"]
    )
    assert res.exit_code == 0 and "as stable" in res.output
    res = runner.invoke(app, ["manifest", "register", str(new), "--db", str(db)])
    assert res.exit_code == 0
    res = runner.invoke(
        app, ["manifest", "previous", str(new), "--db", str(db), "--format", "json"]
    )
    doc = json.loads(res.output)
    assert res.exit_code == 0 and (doc["version"], doc["source"]) == ("v1", "store")
    res = runner.invoke(app, ["manifest", "previous", str(old), "--db", str(db)])
    assert res.exit_code == 2 and "no previous release" in res.output
