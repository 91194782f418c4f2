"""The CLI and store files: the README's walkthrough, missing and damaged ``--db`` files."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from canary_stats.cli import app
from canary_stats.store import Store

from .conftest import SEED_MANIFEST, events
from .test_store_exact import DAMAGED

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample_events.parquet"
runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception  # a traceback, not a message
    return res.exit_code, res.output


def _walkthrough() -> list[list[str]]:
    """The first bash block of the README's store section, one argv per command."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Data: the store, Prometheus and files", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        line = line.split("  #", 1)[0].strip()
        if line:
            assert line.startswith("canary-stats "), line
            commands.append(shlex.split(line)[1:])
    return commands


def test_the_readme_walkthrough_runs_on_the_bundled_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for rel in ("data/sample_events.parquet", "data/report_cards/2026.04.19-a3f2c1.json",
                "examples"):  # fmt: skip
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    monkeypatch.chdir(tmp_path)
    outputs = []
    for argv in _walkthrough():
        code, out = _run(*argv)
        outputs.append((argv[0], code, out))
    n = len(pd.read_parquet(SAMPLE))
    kinds = [(what, code) for what, code, _ in outputs]
    assert kinds == [("ingest", 0), ("ingest", 0), ("analyze", 20), ("ingest", 0), ("export", 0)]
    first, again = json.loads(outputs[0][2]), json.loads(outputs[3][2])
    assert (first["inserted"], first["skipped"]) == (n, 0)
    assert (again["inserted"], again["skipped"]) == (0, n)  # idempotent
    verdict = json.loads(outputs[2][2])
    assert verdict["decision"] == "rollback" and verdict["n_canary"] > 2000, verdict["reason"]
    assert verdict["metrics"]["task_success_rate"]["status"] == "fail"


def test_events_without_release_are_labelled_by_cohort(tmp_path: Path) -> None:
    bare = tmp_path / "bare.parquet"
    pd.read_parquet(SAMPLE).drop(columns="release").to_parquet(bare)
    db = str(tmp_path / "s.duckdb")
    labels = ["--stable-version", "s1", "--canary-version", "c1"]
    code, out = _run("ingest", "file", str(bare), "--db", db, *labels)
    assert code == 0 and json.loads(out)["skipped"] == 0
    code, out = _run("ingest", "file", str(bare), "--db", db, *labels)
    assert code == 0 and json.loads(out)["inserted"] == 0
    code, out = _run(
        "analyze", "--db", db, "--manifest", str(SEED_MANIFEST), "--stage", "1", *labels
    )
    assert code == 20, out
    code, out = _run("ingest", "file", str(bare), "--db", db)  # unlabelled: other content
    assert code == 2 and "request_id" in out and "release" in out


READERS = {
    "analyze": ["analyze", "--manifest", str(SEED_MANIFEST), "--stage", "1"],
    "export": ["export", "--out", "{tmp}/snap"],
    "rollout status": ["rollout", "status", "research-agent"],
    "rollout pause": ["rollout", "pause", "research-agent", "--timeout", "1"],
    "manifest previous": ["manifest", "previous", str(SEED_MANIFEST)],
    "manifest register": ["manifest", "register", str(SEED_MANIFEST)],
    "report": ["report", "--out", "{tmp}/r.html"],
}


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_missing_store_is_refused_not_created(tmp_path: Path, command: str) -> None:
    db = tmp_path / "typo.duckdb"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in READERS[command]]
    code, out = _run(*argv, "--db", str(db))
    assert code == 2, out
    assert "--db" in out and "typo.duckdb" in out and "no such store" in out
    assert not db.exists()


def test_register_creates_a_store_only_when_asked(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    code, out = _run("manifest", "register", str(SEED_MANIFEST), "--db", str(db), "--create")
    assert code == 0, out
    with Store(db) as store:
        assert store.count("releases") == 1


WRITERS_AND_READERS = {
    "analyze": READERS["analyze"],
    "export": READERS["export"],
    "rollout status": READERS["rollout status"],
    "ingest file": ["ingest", "file", "{tmp}/events.parquet"],
}


@pytest.mark.parametrize("kind", sorted(DAMAGED))
@pytest.mark.parametrize("command", sorted(WRITERS_AND_READERS))
def test_a_damaged_store_exits_3_untouched(tmp_path: Path, kind: str, command: str) -> None:
    db = tmp_path / "store.duckdb"
    DAMAGED[kind](db)
    events(minutes=5).to_parquet(tmp_path / "events.parquet")
    before = db.read_bytes()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in WRITERS_AND_READERS[command]]
    code, out = _run(*argv, "--db", str(db))
    assert code == 3, out
    assert out.count("error:") == 1 and str(db) in out and "Traceback" not in out
    assert db.read_bytes() == before
    assert not (tmp_path / "store.duckdb.wal").exists()
