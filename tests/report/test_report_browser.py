"""The HTML report in headless Chromium: no console errors, no requests, a real screenshot.

Needs Debian's ``chromium`` at /usr/bin/chromium and the Python ``playwright``
package (its own browser downloads are never used); ``make test`` installs both,
and without them these tests fail rather than skip.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from canary_stats.report import build_report, render_html

from .conftest import DemoReport

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH = 1200


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), f"no {CHROMIUM}: `make test` installs Debian's chromium"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    """Load a file; return the page, its console/page errors and every request it made."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in
            ("error", "warning") else None)  # fmt: skip
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, problems, requests


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def test_the_report_renders_in_chromium(browser: Any, synthetic_page: str, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(synthetic_page, encoding="utf-8")
    page, problems, requests = open_page(browser, html)
    assert problems == []
    assert requests == [html.as_uri()]  # self-contained: nothing else is fetched
    # Each figure is drawn at a real size, and nothing is wider than the page.
    boxes = page.eval_on_selector_all(
        "figure svg", "els => els.map(e => [e.clientWidth, e.clientHeight])"
    )
    assert len(boxes) == 3 and all(w > 600 and h > 80 for w, h in boxes)
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    assert page.title() == "canary_stats weekly regression report — 2026-W10"
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width == WIDTH and 2_000 < height < 20_000
    assert shot.stat().st_size > 50_000  # tables and figures, not a blank page
    page.close()


def test_the_empty_report_renders_short(browser: Any, synthetic_db: Path, tmp_path: Path) -> None:
    html = tmp_path / "empty.html"
    html.write_text(render_html(build_report(synthetic_db, "2026-W30")), encoding="utf-8")
    page, problems, _ = open_page(browser, html)
    assert problems == []
    assert "Nothing was recorded in 2026-W30" in page.inner_text("body")
    assert page.evaluate("document.body.getBoundingClientRect().height") < 600  # one screen
    page.close()


@pytest.mark.slow
def test_the_demo_report_renders_in_chromium(
    browser: Any, demo_report: DemoReport, tmp_path: Path
) -> None:
    html = tmp_path / "demo.html"
    html.write_text(render_html(demo_report.report), encoding="utf-8")
    page, problems, requests = open_page(browser, html)
    assert problems == [] and requests == [html.as_uri()]
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width == WIDTH and height > 2_000
    text = page.inner_text("body")
    assert "rolled back" in text and "2026.11.24-model" in text
    page.close()
