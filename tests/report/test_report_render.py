"""`render_html` and `render_markdown`: self-contained, the same numbers, short when empty."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pytest

from canary_stats.report import WeeklyReport, build_report, render_html, render_markdown
from canary_stats.report._format import effects_table, headroom_table, rollouts_table

from .conftest import DemoReport

SECTIONS = (
    "Releases of the week",
    "Rollbacks",
    "Effect sizes",
    "Near misses",
    "Stable baseline, week over week",
    "The judge's health",
    "How to read this report",
)


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"https?://|//cdn|<script|<iframe|@import|url\((?!#)", page)
    # The only link is the empty data-URL favicon; no image or frame loads anything.
    assert re.findall(r"<link[^>]*>", page) == ['<link rel="icon" href="data:,">']
    assert not re.search(r"\b(src|srcset)=", page)


def test_the_html_is_one_self_contained_page(synthetic_page: str) -> None:
    page = synthetic_page
    assert_self_contained(page)
    for section in SECTIONS:
        assert f"<h2>{section}" in page, section
    assert page.count("<svg") == 3  # time to decision, effect sizes, the baseline trend
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert ids and not [i for i, n in Counter(ids).items() if n > 1]  # figures share no id
    refs = set(re.findall(r'(?:href="|url\()#([^")]+)', page))
    assert refs <= set(ids)  # every reference inside a figure points into the page


def test_store_text_is_escaped(synthetic_report: WeeklyReport, synthetic_page: str) -> None:
    page = synthetic_page
    assert "<b>timeout</b>" not in page and "&lt;b&gt;timeout&lt;/b&gt;" in page
    assert "| <b>" not in render_markdown(synthetic_report)  # pipes and text as they are


def test_html_and_markdown_show_the_same_numbers(
    synthetic_report: WeeklyReport, synthetic_page: str
) -> None:
    page, md = synthetic_page, render_markdown(synthetic_report)
    for table in (rollouts_table, effects_table, headroom_table):
        _, rows = table(synthetic_report)
        for row in rows:
            for cell in row:
                assert escape(str(cell)) in page and str(cell) in md, cell
    assert "<svg" not in md and md.count("The HTML report has a plot of this.") == 3
    assert "| task_success_rate |" in md and "near miss(es): v2 task_success_rate" in md


def test_the_rules_are_stated_in_the_report(
    synthetic_report: WeeklyReport, synthetic_page: str
) -> None:
    page, md = synthetic_page, render_markdown(synthetic_report)
    for text in (page, md):
        assert "used at least 50% of its headroom" in text
        assert "95% percentile bootstrap intervals, 300 resamples, seed 0" in text
        assert "Time to decision: from the rollout" in text


def test_an_empty_week_gives_a_short_report(synthetic_db: Path) -> None:
    now = datetime(2026, 8, 1, tzinfo=UTC)
    report = build_report(synthetic_db, "2026-W30", now=now)
    assert report.empty and not report.rollouts and report.health.total_verdicts == 0
    page, md = render_html(report), render_markdown(report)
    assert_self_contained(page)
    message = "Nothing was recorded in 2026-W30: no rollouts, verdicts or ingests."
    assert message in page and message in md
    assert "latest record is from 2026-03-08 22:00 UTC" in md
    assert "<svg" not in page and "<table" not in page and "Rollbacks" not in page
    assert len(page) < 4_000 and len(md.splitlines()) < 10


def test_a_week_with_only_older_data_is_still_empty(synthetic_db: Path) -> None:
    # 2026-W11 follows the busy week: the trend has data, the week itself has none.
    report = build_report(synthetic_db, "2026-W11", n_resamples=100)
    assert report.empty and any(w.tasks for w in report.baseline)
    assert "Nothing was recorded in 2026-W11" in render_markdown(report)


@pytest.mark.slow
def test_the_demo_report_renders_every_part(demo_report: DemoReport) -> None:
    page = render_html(demo_report.report)
    assert_self_contained(page)
    (rollback,) = demo_report.report.rollbacks
    interval = f"[{rollback.low:.4g}, {rollback.high:.4g}]"
    assert f"<td>{rollback.estimate:.4g}</td><td>{interval}</td>" in page
    assert "canary ≥ 0.97" in page and "2026.11.24-model" in page
    assert page.count("<svg") == 3 and 50_000 < len(page) < 1_000_000
    md = render_markdown(demo_report.report)
    assert f"| task_success_rate | {rollback.estimate:.4g} | {interval} |" in md
