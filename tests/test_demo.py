"""`canary-stats demo`: the whole story through router, executor and judge, in one DuckDB file."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from canary_stats.demo import DEMO_RELEASES, DemoOutcome, run_demo
from canary_stats.errors import InputError
from canary_stats.store import Store

from .conftest import DemoRun

pytestmark = pytest.mark.slow

BASE, HEALTHY, REGRESSED = (r.version for r in DEMO_RELEASES)


@pytest.fixture
def demo(demo_run: DemoRun) -> tuple[Path, list[DemoOutcome], str]:
    return demo_run.db, demo_run.outcomes, demo_run.text


def test_the_healthy_release_is_promoted_stage_by_stage(
    demo: tuple[Path, list[DemoOutcome], str],
) -> None:
    _, outcomes, _ = demo
    healthy = outcomes[0]
    assert healthy.version == HEALTHY and healthy.final.state == "promoted"
    assert [c.stage for c in healthy.checks if c.decision == "promote"] == [1, 2, 3]
    assert all(c.decision != "rollback" for c in healthy.checks)


def test_the_regressed_release_is_rolled_back_with_a_postmortem(
    demo: tuple[Path, list[DemoOutcome], str],
) -> None:
    db, outcomes, text = demo
    regressed = outcomes[1]
    assert regressed.version == REGRESSED and regressed.final.state == "rolled_back"
    with Store(db, read_only=True) as store:
        (pm,) = store.postmortems(name="research-agent")
        status = {r.version: r.status for r in store.releases("research-agent")}
        canary_after = store.con.execute(
            "SELECT count(*) FROM events WHERE release = ? AND ts > ?", [REGRESSED, pm.created_at]
        ).fetchone()
    assert pm.version == REGRESSED and pm.stable_version == HEALTHY
    assert pm.guardrail == "task_success_rate"
    assert pm.interval_high is not None and pm.interval_high < 0.97  # proven below the limit
    assert pm.timeline[0]["state"] == "started" and pm.timeline[-1]["state"] == "rolled_back"
    assert status == {BASE: "stable", HEALTHY: "stable", REGRESSED: "rolled_back"}
    assert canary_after == (0,)  # the router sent it nothing after the rollback
    assert "Postmortem of " + REGRESSED in text


def test_users_stay_on_the_canary_once_routed_there(
    demo: tuple[Path, list[DemoOutcome], str],
) -> None:
    # The weight only rises during a rollout, so no user goes back to stable.
    db, _, _ = demo
    with Store(db, read_only=True) as store:
        flipped = store.con.execute(
            "SELECT count(*) FROM (SELECT user_id,"
            " min(ts) FILTER (WHERE release = $canary) AS first_canary,"
            " max(ts) FILTER (WHERE release = $stable) AS last_stable"
            " FROM events GROUP BY user_id) WHERE last_stable > first_canary",
            {"canary": HEALTHY, "stable": BASE},
        ).fetchone()
        tagged = store.con.execute(
            "SELECT count(*) FILTER (WHERE release IS NULL OR user_id IS NULL), count(*)"
            " FROM events"
        ).fetchone()
    assert flipped == (0,)
    assert tagged is not None and tagged[0] == 0 and tagged[1] > 100_000


def test_a_store_the_demo_did_not_write_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "mine.duckdb"
    with Store(db) as store:
        store.record_failed_ingest("prometheus http://x", "down", stable="a", canary="b")
    with pytest.raises(InputError, match="did not write"):
        run_demo(db=db, console=Console(file=None, quiet=True))
    assert db.exists()


def test_the_demo_ends_with_the_weekly_report(demo_run: DemoRun) -> None:
    (report,) = demo_run.db.parent.glob("demo-report-*.html")
    html = report.read_text()
    assert "2026.11.24-model" in html and "rolled back" in html
    assert f"Weekly report: {report}" in " ".join(demo_run.text.split())
