"""``canary-stats report``: writes HTML and Markdown, says where, refuses a bad week."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary_stats.cli import EXIT_BAD_INPUT, app

from .conftest import WEEK

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(("fmt", "marker"), [("html", "<!DOCTYPE html>"), ("md", "# canary")])
def test_the_report_is_written_in_both_formats(
    synthetic_db: Path, tmp_path: Path, fmt: str, marker: str
) -> None:
    out = tmp_path / "nested" / f"report.{fmt}"
    code, text = run(
        "report", "--db", str(synthetic_db), "--week", WEEK, "--out", str(out), "--format", fmt,
        "--resamples", "100",
    )  # fmt: skip
    assert code == 0, text
    assert str(out) in text and f"{WEEK}: 4 rollouts" in text
    body = out.read_text(encoding="utf-8")
    assert body.startswith(marker) and "v2" in body and "Near misses" in body


def test_the_default_file_is_named_after_the_week(
    synthetic_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = run("report", "--db", str(synthetic_db), "--week", "2026-W30", "--format", "md")
    assert code == 0, text
    written = tmp_path / "report-2026-W30.md"
    assert "wrote report-2026-W30.md" in text
    assert "Nothing was recorded in 2026-W30" in written.read_text(encoding="utf-8")


@pytest.mark.parametrize("week", ["2026-47", "2026-W99", "next"])
def test_a_bad_week_exits_2_naming_the_option(
    synthetic_db: Path, tmp_path: Path, week: str
) -> None:
    out = tmp_path / "r.html"
    code, text = run("report", "--db", str(synthetic_db), "--week", week, "--out", str(out))
    assert code == EXIT_BAD_INPUT == 2
    assert "--week" in text and "2026-W47" in text
    assert not out.exists()


def test_a_missing_store_exits_2(tmp_path: Path) -> None:
    code, text = run("report", "--db", str(tmp_path / "none.duckdb"), "--week", WEEK)
    assert code == 2 and "--db" in text and "no such store" in text
