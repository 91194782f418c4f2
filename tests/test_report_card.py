"""Eval report cards: the format, its mapping to eval-score rows, and every validation branch."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from canary_stats.errors import EventsError
from canary_stats.sources.report_card import REPORT_CARD_COLUMNS, ReportCard, load_report_card
from canary_stats.store import Store

from .conftest import ROOT, SEED_MANIFEST

CARD: dict[str, Any] = {
    "release": "2026.04.19-a3f2c1",
    "cohort": "canary",
    "harness": "agent-evals 3.2.0",
    "evaluated_at": "2026-11-20T10:00:00Z",
    "tasks": [
        {"task_id": "t-001", "score": 0.93, "ts": "2026-11-20T09:41:07+02:00"},
        {"task_id": "t-002", "score": 0.88},
        {"task_id": "t-003", "score": 1},
    ],
}
DELETE = object()
NAIVE = "timestamps have no time zone; expected UTC, e.g. 2026-11-20T10:00:00Z"
TIMESTAMP = "expected an ISO 8601 timestamp with a zone, e.g. 2026-11-20T10:00:00Z"
RELEASE = "a release name without '/' or spaces, e.g. 2026.04.19-a3f2c1"
SCORE = "expected a number in [0, 1]"


def _edit(*changes: tuple[tuple[str | int, ...], Any]) -> dict[str, Any]:
    """A copy of CARD with the value at each JSON path replaced (or deleted)."""
    card = copy.deepcopy(CARD)
    for path, value in changes:
        *parents, last = path
        target: Any = card
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return card


def _write(directory: Path, card: dict[str, Any] | str) -> Path:
    path = directory / "card.json"
    path.write_text(card if isinstance(card, str) else json.dumps(card), encoding="utf-8")
    return path


def test_card_maps_to_eval_score_rows(tmp_path: Path) -> None:
    got = load_report_card(_write(tmp_path, CARD))
    want = pd.DataFrame(
        {
            "request_id": pd.Series([f"2026.04.19-a3f2c1/t-00{i}" for i in (1, 2, 3)], dtype="str"),
            # A task's own ts (converted to UTC), else the card's evaluated_at.
            "ts": pd.to_datetime(
                ["2026-11-20T07:41:07Z", "2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z"]
            ),
            "release": pd.Series(["2026.04.19-a3f2c1"] * 3, dtype="str"),
            "cohort": pd.Series(["canary"] * 3, dtype="str"),
            "eval_score": [0.93, 0.88, 1.0],
        }
    )
    assert tuple(got.columns) == REPORT_CARD_COLUMNS
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("cohort", [DELETE, None])
def test_cohort_left_to_the_store(tmp_path: Path, cohort: object) -> None:
    got = load_report_card(_write(tmp_path, _edit((("cohort",), cohort))))
    assert got["cohort"].isna().all() and got["cohort"].dtype == "str"


def test_task_ids_repeat_across_releases(tmp_path: Path) -> None:
    a = load_report_card(_write(tmp_path, CARD))
    b = load_report_card(_write(tmp_path, _edit((("release",), "2026.04.20-b4e5d6"))))
    assert set(a["request_id"]).isdisjoint(b["request_id"])


def test_bundled_example_card() -> None:
    version = yaml.safe_load(SEED_MANIFEST.read_text())["metadata"]["version"]
    paths = sorted((ROOT / "data" / "report_cards").glob("*.json"))
    assert [p.stem for p in paths] == [version]
    got = load_report_card(paths[0])
    assert len(got) == 8 and got["request_id"].is_unique and (got["release"] == version).all()
    assert str(got["ts"].dt.tz) == "UTC" and np.all(
        (got["eval_score"] >= 0) & (got["eval_score"] <= 1)
    )


def test_store_ingests_a_card_once(tmp_path: Path) -> None:
    scores = load_report_card(_write(tmp_path, CARD))
    with Store(tmp_path / "canary.duckdb") as store:
        first = store.ingest_eval_scores(scores)
        again = store.ingest_eval_scores(scores)
    assert (first.inserted, again.inserted, again.skipped) == (3, 0, 3)


def test_model_round_trips() -> None:
    card = ReportCard.model_validate_json(json.dumps(CARD))
    assert ReportCard.model_validate_json(card.model_dump_json()) == card


BAD: list[tuple[str, dict[str, Any] | str, str, str]] = [
    # (id, card or raw text, field (None: the file), message)
    (
        "not json",
        '{"release": "r",',
        "",
        "not valid JSON (Invalid JSON: EOF while parsing a value at line 1 column 16)",
    ),
    ("not an object", "[1]", "", "expected a JSON object; got [1]"),
    ("no release", _edit((("release",), DELETE)), "release", f"missing; expected {RELEASE}"),
    ("release with /", _edit((("release",), "a/b")), "release", f"expected {RELEASE}; got 'a/b'"),
    ("release number", _edit((("release",), 2026)), "release", f"expected {RELEASE}; got 2026"),
    (
        "unknown cohort",
        _edit((("cohort",), "blue")),
        "cohort",
        "expected 'stable', 'canary' or 'shadow' (or no cohort key); got 'blue'",
    ),
    (
        "blank harness",
        _edit((("harness",), "  ")),
        "harness",
        "expected a non-empty string naming the eval harness; got '  '",
    ),
    (
        "no harness",
        _edit((("harness",), DELETE)),
        "harness",
        "missing; expected a non-empty string naming the eval harness",
    ),
    (
        "naive evaluated_at",
        _edit((("evaluated_at",), "2026-11-20T10:00:00")),
        "evaluated_at",
        NAIVE,
    ),
    (
        "date only",
        _edit((("evaluated_at",), "2026-11-20")),
        "evaluated_at",
        f"{TIMESTAMP}; got '2026-11-20'",
    ),
    ("no tasks", _edit((("tasks",), [])), "tasks", "expected a non-empty list of tasks; got []"),
    (
        "tasks object",
        _edit((("tasks",), {})),
        "tasks",
        "expected a non-empty list of tasks; got {}",
    ),
    ("task not object", _edit((("tasks", 1), 3)), "tasks[1]", "expected a JSON object; got 3"),
    (
        "empty task id",
        _edit((("tasks", 1, "task_id"), "")),
        "tasks[1].task_id",
        "expected a non-empty string; got ''",
    ),
    (
        "numeric task id",
        _edit((("tasks", 1, "task_id"), 7)),
        "tasks[1].task_id",
        "expected a non-empty string; got 7",
    ),
    ("no score", _edit((("tasks", 1, "score"), DELETE)), "tasks[1].score", f"missing; {SCORE}"),
    ("score above 1", _edit((("tasks", 2, "score"), 1.5)), "tasks[2].score", f"{SCORE}; got 1.5"),
    (
        "negative score",
        _edit((("tasks", 2, "score"), -0.1)),
        "tasks[2].score",
        f"{SCORE}; got -0.1",
    ),
    (
        "score as text",
        _edit((("tasks", 2, "score"), "0.9")),
        "tasks[2].score",
        f"{SCORE}; got '0.9'",
    ),
    ("score as bool", _edit((("tasks", 2, "score"), True)), "tasks[2].score", f"{SCORE}; got True"),
    (
        "NaN score",
        _edit((("tasks", 2, "score"), float("nan"))),
        "tasks[2].score",
        f"{SCORE}; got nan",
    ),
    ("naive task ts", _edit((("tasks", 0, "ts"), "2026-11-20T09:41:07")), "tasks[0].ts", NAIVE),
    (
        "bad task ts",
        _edit((("tasks", 0, "ts"), "2026-13-01T00:00Z")),
        "tasks[0].ts",
        f"{TIMESTAMP}; got '2026-13-01T00:00Z'",
    ),
    (
        "unknown key",
        _edit((("scores",), [])),
        "scores",
        "unknown key; expected only release, cohort, harness, evaluated_at, tasks",
    ),
    (
        "unknown task key",
        _edit((("tasks", 0, "weight"), 2)),
        "tasks[0].weight",
        "unknown key; expected only task_id, score, ts",
    ),
    (
        "duplicate task id",
        _edit((("tasks", 2, "task_id"), "t-001")),
        "tasks[2].task_id",
        "duplicate task id 't-001' (also tasks[0]); expected unique task ids",
    ),
    (
        "two problems",
        _edit((("release",), "a/b"), (("tasks", 0, "score"), 2)),
        "release",
        f"expected {RELEASE}; got 'a/b' (and 1 more problem in the card)",
    ),
]


@pytest.mark.parametrize(
    ("card", "field", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_cards_name_the_json_path(
    tmp_path: Path, card: dict[str, Any] | str, field: str, message: str
) -> None:
    path = _write(tmp_path, card)
    field = field or str(path)
    with pytest.raises(EventsError, match=f"^{re.escape(f'{field}: {message}')}$") as info:
        load_report_card(path)
    assert info.value.field == field


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(EventsError, match=f"^{re.escape(str(path))}: no such file$"):
        load_report_card(path)
