from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary_stats.cli import app
from canary_stats.sources.synthetic import Regression
from canary_stats.store import Store

from .conftest import SEED_MANIFEST, DemoRun, events

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    bad = events(minutes=120, regression=Regression(success_drop=0.05), seed=31)
    good = events(minutes=120, seed=32)
    paths = {"bad": d / "bad.parquet", "good": d / "good.csv", "broken": d / "broken.csv"}
    bad.to_parquet(paths["bad"])
    good.to_csv(paths["good"], index=False)
    broken = good.copy()
    broken.loc[broken.index[0], "latency_ms"] = -5
    broken.to_csv(paths["broken"], index=False)
    return paths


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_exit_codes(files: dict[str, Path]) -> None:
    code, out = _run("analyze", str(files["bad"]), "--manifest", str(SEED_MANIFEST), "--stage", "1")
    assert code == 20 and json.loads(out)["decision"] == "rollback"
    code, out = _run(
        "analyze",
        str(files["good"]),
        "--manifest",
        str(SEED_MANIFEST),
        "--stage",
        "1",
        "--elapsed",
        "2h",
    )
    assert code == 0 and json.loads(out)["decision"] == "promote"
    code, out = _run(
        "analyze",
        str(files["good"]),
        "--manifest",
        str(SEED_MANIFEST),
        "--stage",
        "1",
        "--elapsed",
        "30m",
    )
    assert code == 10 and json.loads(out)["decision"] == "hold"


def test_bad_input_exits_2_naming_the_field(files: dict[str, Path], tmp_path: Path) -> None:
    code, out = _run(
        "analyze", str(files["broken"]), "--manifest", str(SEED_MANIFEST), "--stage", "1"
    )
    assert code == 2 and "latency_ms" in out
    code, out = _run(
        "analyze", str(files["good"]), "--manifest", str(SEED_MANIFEST), "--stage", "3"
    )
    assert code == 2 and "no stable cohort" in out
    code, out = _run(
        "analyze", str(tmp_path / "nope.parquet"), "--manifest", str(SEED_MANIFEST), "--stage", "0"
    )
    assert code == 2 and "no such file" in out


def test_table_format(files: dict[str, Path]) -> None:
    code, out = _run(
        "analyze",
        str(files["bad"]),
        "--manifest",
        str(SEED_MANIFEST),
        "--stage",
        "1",
        "--format",
        "table",
    )
    assert code == 20 and "ROLLBACK" in out and "task_success_rate" in out
    # The seed's guardrails are absolute except the token ratio: stable counts only there.
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert rows["task_success_rate"].rstrip(" │").endswith("/ —")
    assert not rows["token_spend_delta"].rstrip(" │").endswith("/ —")


@pytest.mark.slow
def test_console_script_reruns_the_demo_over_its_own_store(
    tmp_path: Path, demo_run: DemoRun
) -> None:
    exe = Path(sys.executable).with_name("canary-stats")
    db = tmp_path / "demo.duckdb"
    shutil.copy(demo_run.db, db)  # a store left by an earlier run is rebuilt
    res = subprocess.run(
        [str(exe), "demo", "--seed", "7", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "promoted: promote" in out and "rolled back: rollback" in out
    assert "Postmortem of 2026.11.24-model" in out
    with Store(db, read_only=True) as store:
        runs = store.con.execute("SELECT count(*) FROM postmortems").fetchone()
    assert runs == (1,)  # one run's records, not two


def test_simulate_reports_operating_characteristics() -> None:
    code, out = _run(
        "simulate",
        "--manifest",
        str(SEED_MANIFEST),
        "--runs",
        "3",
        "--regression",
        "success_drop=0.06",
    )
    assert code == 0 and "rolled_back" in out and "task_success_rate" in out
    code, out = _run("simulate", "--manifest", str(SEED_MANIFEST), "--regression", "speed=2")
    assert code == 2 and "unknown field 'speed'" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("success_drop=1.5", "regression.success_drop: expected a drop of the success "
         "probability in [0, 1); got 1.5"),
        ("success_drop=-0.1", "regression.success_drop: expected a drop of the success "
         "probability in [0, 1); got -0.1"),
        ("success_drop=0.99", "regression.success_drop: 0.99 leaves the canary a success rate "
         "of -0.005 (stable's 0.985 minus the drop); expected a drop of at most 0.985"),
        ("eval_drop=0.95", "regression.eval_drop: 0.95 leaves the canary a mean eval score of "
         "-0.02 (stable's 0.93 minus the drop); expected a drop of at most 0.93"),
        ("latency_factor=0", "regression.latency_factor: expected a latency multiplier > 0; "
         "got 0.0"),
        ("tail_share=1.2", "regression.tail_share: expected a share of canary tasks in [0, 1]; "
         "got 1.2"),
        ("tail_factor=-3", "regression.tail_factor: expected a tail latency multiplier > 0; "
         "got -3.0"),
        ("token_factor=nan", "regression.token_factor: expected a token multiplier > 0; got nan"),
        ("eval_drop=inf", "regression.eval_drop: expected a drop of the mean eval score in "
         "[0, 1); got inf"),
    ],
)  # fmt: skip
def test_simulate_refuses_impossible_regressions(change: str, message: str) -> None:
    args = ("simulate", "--manifest", str(SEED_MANIFEST), "--runs", "1", "--regression", change)
    code, out = _run(*args)
    assert code == 2 and message in " ".join(out.split()), out


def test_impossible_regressions_are_refused_in_python_too() -> None:
    from canary_stats.errors import InputError
    from canary_stats.sources.synthetic import Workload, generate_tasks

    with pytest.raises(InputError, match=r"^regression\.success_drop: expected .* got 1\.5$"):
        Regression(success_drop=1.5)
    with pytest.raises(InputError, match=r"leaves the canary a success rate of -0\.1 "):
        generate_tasks(
            Workload(success_rate=0.8),
            canary_share=0.1,
            minutes=1,
            regression=Regression(success_drop=0.9),
        )
    Regression(success_drop=0.0, tail_share=1.0, latency_factor=0.5)  # edges that can happen
