"""File sources: every format gives the DataFrame's summary; bad files name what is wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import canary_stats as cs
from canary_stats.errors import EventsError
from canary_stats.sources.files import load_events
from canary_stats.stats import Histogram
from canary_stats.summary import AGGREGATE_COLUMNS, Summary

from .conftest import events, to_aggregates

NAIVE = "timestamps have no time zone; expected UTC, e.g. 2026-11-20T10:00:00Z"
NOT_ISO = "expected UTC timestamps in ISO 8601, e.g. 2026-11-20T10:00:00Z"
EVENTS_NEED = (
    "missing column; raw events need columns ['ts', 'cohort', 'success', 'latency_ms', 'tokens']"
)
COHORTS = "expected 'stable', 'canary' or 'shadow'"
BOOLEANS = "expected true or false (or 1 or 0)"
EVENT_ORDER = ["ts", "cohort", "success", "latency_ms", "tokens", "eval_score"]


def _write_jsonl(df: pd.DataFrame, path: Path) -> None:
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            row = {k: v.isoformat() if isinstance(v, pd.Timestamp) else v for k, v in row.items()}
            f.write(json.dumps(row) + "\n")


WRITERS: dict[str, Callable[[pd.DataFrame, Path], None]] = {
    ".parquet": lambda df, path: df.to_parquet(path, index=False),
    ".csv": lambda df, path: df.to_csv(path, index=False),
    ".jsonl": _write_jsonl,
}


def _save(df: pd.DataFrame, directory: Path, suffix: str) -> Path:
    path = directory / f"events{suffix}"
    WRITERS[suffix](df, path)
    return path


def _text(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _fails(path: Path, field: str, message: str) -> None:
    """Loading ``path`` raises an EventsError with exactly this field and message."""
    with pytest.raises(EventsError, match=f"^{re.escape(f'{field}: {message}')}$") as info:
        load_events(path)
    assert info.value.field == field


def _facts(s: Summary) -> list[Any]:
    out: list[Any] = [s.start, s.end, s.issues, s.source]
    for c in (s.stable, s.canary):
        lat = c.latency
        hist = isinstance(lat, Histogram)
        latency = (lat.upper_bounds.tolist(), lat.counts.tolist()) if hist else lat.tolist()
        out += [c.tasks, c.successes, latency, astuple(c.tokens), astuple(c.eval_score)]
    return out


def _same(a: Summary, b: Summary) -> None:
    np.testing.assert_equal(_facts(a), _facts(b))


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    df = events(minutes=10, seed=3)
    return df.assign(
        release=np.where(df["cohort"] == "canary", "v2", "v1"),
        user_id=[f"u{i % 37}" for i in range(len(df))],
    )


@pytest.fixture(scope="module")
def aggregates(base: pd.DataFrame) -> pd.DataFrame:
    agg = to_aggregates(base, np.array([1000.0, 2500.0, 5000.0, 10000.0, np.inf]))
    return agg.assign(release=np.where(agg["cohort"] == "canary", "v2", "v1"))


SMALL = pd.DataFrame(
    {
        "ts": pd.to_datetime(
            ["2026-11-20T10:00:00Z", "2026-11-20T10:00:01Z", "2026-11-20T10:00:02Z"]
        ),
        "cohort": ["stable", "canary", "stable"],
        "success": [True, False, True],
        "latency_ms": [12.5, 3.0, 4.0],
        "tokens": [100.0, 120.0, 90.0],
    }
)


# -- every format gives the same frame and summary ------------------------------------


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_raw_events_round_trip(base: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    loaded = load_events(_save(base.assign(region="eu"), tmp_path, suffix))
    columns = [*EVENT_ORDER, "release", "user_id", "request_id"]
    assert list(loaded.columns) == columns  # contract order; unknown columns dropped
    assert str(loaded["ts"].dt.tz) == "UTC" and loaded["success"].dtype == bool
    pd.testing.assert_frame_equal(loaded, base[columns], check_dtype=False)
    _same(cs.summarize(loaded), cs.summarize(base))


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_aggregates_round_trip(aggregates: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    loaded = load_events(_save(aggregates, tmp_path, suffix))
    assert list(loaded.columns) == [*AGGREGATE_COLUMNS, "release"]
    _same(cs.summarize(loaded), cs.summarize(aggregates))


def test_analyze_reads_a_path_like_the_frame(
    base: pd.DataFrame, tmp_path: Path, seed_policy: cs.Policy
) -> None:
    path = _save(base, tmp_path, ".csv")
    from_file = cs.analyze(path, seed_policy, stage=1).to_dict()
    assert from_file == cs.analyze(base, seed_policy, stage=1).to_dict()


def test_csv_text_types(tmp_path: Path) -> None:
    path = _text(
        tmp_path,
        "typed.csv",
        "ts,cohort,success,latency_ms,tokens,eval_score,request_id\n"
        "2026-11-20T10:00:00Z,stable,true,1200.5,300,0.9,a\n"
        "2026-11-20T11:00:00+01:00,canary,FALSE,900,250,,b\n"
        "2026-11-20 10:00:01.5+00:00,stable,1,1000,100,,c\n"
        "2026-11-20T05:00:02-0500,canary,0,800,50,1,d\n",
    )
    loaded = load_events(path)
    stamps = ["10:00:00", "10:00:00", "10:00:01.5", "10:00:02"]
    assert loaded["ts"].tolist() == [pd.Timestamp(f"2026-11-20T{t}Z") for t in stamps]
    assert loaded["success"].tolist() == [True, False, True, False]
    np.testing.assert_equal(loaded["eval_score"].to_numpy(), [0.9, np.nan, np.nan, 1.0])
    assert loaded["tokens"].dtype == np.float64 and loaded["request_id"].tolist() == list("abcd")


def test_one_offset_everywhere_is_kept_as_the_same_instants(tmp_path: Path) -> None:
    local = SMALL.assign(ts=SMALL["ts"].dt.tz_convert("Europe/Berlin"))
    loaded = load_events(_save(local, tmp_path, ".csv"))
    assert (loaded["ts"] == SMALL["ts"]).all()
    _same(cs.summarize(loaded), cs.summarize(SMALL))


def test_jsonl_keys_left_out_or_null(tmp_path: Path) -> None:
    lines = [
        '{"ts": "2026-11-20T10:00:00Z", "cohort": "stable", "success": true,'
        ' "latency_ms": 12, "tokens": 100, "eval_score": 0.5, "release": null}',
        "",  # blank lines are skipped
        '{"ts": "2026-11-20T10:00:01Z", "cohort": "canary", "success": false,'
        ' "latency_ms": 3.5, "tokens": 120}',
    ]
    loaded = load_events(_text(tmp_path, "sparse.jsonl", "\n".join(lines) + "\n"))
    assert list(loaded.columns) == EVENT_ORDER  # release: null on every line, so absent
    np.testing.assert_equal(loaded["eval_score"].to_numpy(), [0.5, np.nan])


def test_jsonl_prometheus_inf_text(aggregates: pd.DataFrame, tmp_path: Path) -> None:
    text = aggregates.astype({"le": object})
    text.loc[np.isinf(aggregates["le"]), "le"] = "+Inf"
    loaded = load_events(_save(text, tmp_path, ".jsonl"))
    _same(cs.summarize(loaded), cs.summarize(aggregates))


# -- bad input, the same error from every format ------------------------------------

BAD_FRAMES: dict[str, tuple[dict[str, Any], str, str]] = {
    "text in latency": (
        {"latency_ms": ["12.5", "3", "fast"]},
        "latency_ms",
        "expected numbers; 1 rows are not, e.g. 'fast' in row 3",
    ),
    "naive ts": ({"ts": SMALL["ts"].dt.tz_localize(None)}, "ts", NAIVE),
    "ts text": (
        {"ts": ["2026-11-20T10:00:00Z", "yesterday", "2026-11-20T10:00:02Z"]},
        "ts",
        f"{NOT_ISO}; got 'yesterday' in row 2",
    ),
    "ts partly naive": (
        {"ts": ["2026-11-20T10:00:00Z", "2026-11-20T10:00:01", "2026-11-20T10:00:02Z"]},
        "ts",
        NAIVE,
    ),
    "unknown cohort": (
        {"cohort": ["stable", "blue", "canary"]},
        "cohort",
        f"unknown labels ['blue']; {COHORTS}",
    ),
    "no cohort": (
        {"cohort": ["stable", None, "canary"]},
        "cohort",
        f"1 rows have no cohort; {COHORTS}",
    ),
    "success text": (
        {"success": ["true", "yes", "false"]},
        "success",
        f"{BOOLEANS}; 1 rows are not, e.g. 'yes' in row 2",
    ),
    "success missing": (
        {"success": [True, None, False]},
        "success",
        "1 rows are missing; expected true or false",
    ),
}


@pytest.mark.parametrize("suffix", list(WRITERS))
@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_values_name_the_column(tmp_path: Path, suffix: str, case: str) -> None:
    change, field, message = BAD_FRAMES[case]
    _fails(_save(SMALL.assign(**change), tmp_path, suffix), field, message)


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_missing_columns(aggregates: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    _fails(_save(SMALL.drop(columns="tokens"), tmp_path, suffix), "tokens", EVENTS_NEED)
    need = f"missing column; aggregates need columns {list(AGGREGATE_COLUMNS)}"
    _fails(_save(aggregates.drop(columns="le"), tmp_path, suffix), "le", need)


def test_naive_aggregate_windows(aggregates: pd.DataFrame, tmp_path: Path) -> None:
    naive = aggregates.assign(window_start=aggregates["window_start"].dt.tz_localize(None))
    _fails(_save(naive, tmp_path, ".parquet"), "window_start", NAIVE)


def test_typed_columns_of_the_wrong_type(tmp_path: Path) -> None:
    flags = SMALL.assign(tokens=[True, False, True])
    _fails(_save(flags, tmp_path, ".parquet"), "tokens", "expected numbers; got true/false")
    _fails(_save(SMALL.assign(ts=[1, 2, 3]), tmp_path, ".parquet"), "ts", f"{NOT_ISO}; got numbers")
    counts = SMALL.assign(success=[1, 2, 0])
    _fails(
        _save(counts, tmp_path, ".parquet"),
        "success",
        f"{BOOLEANS}; 1 rows are not, e.g. 2 in row 2",
    )


# -- files that cannot be read ------------------------------------------------------


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    _fails(tmp_path / "nope.csv", str(tmp_path / "nope.csv"), "no such file")
    path = _text(tmp_path, "events.txt", "")
    _fails(path, str(path), "unsupported file type '.txt'; expected .parquet, .csv or .jsonl")


def test_truncated_parquet(tmp_path: Path) -> None:
    path = _save(SMALL, tmp_path, ".parquet")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(
        EventsError, match=r"cannot read Parquet \(.+\); truncated or not Parquet\?$"
    ) as info:
        load_events(path)
    assert info.value.field == str(path)


def test_malformed_csv(tmp_path: Path) -> None:
    path = _text(tmp_path, "ragged.csv", "ts,cohort\n2026-11-20T10:00:00Z,stable,extra\n")
    message = (
        "cannot read CSV (CSV parse error: Expected 2 columns, got 3: "
        "2026-11-20T10:00:00Z,stable,extra)"
    )
    _fails(path, str(path), message)
    path = _text(tmp_path, "empty.csv", "")
    _fails(path, str(path), "cannot read CSV (No columns to parse from file)")


def test_broken_json_lines_name_the_line(tmp_path: Path) -> None:
    good = json.dumps(SMALL.iloc[:1].assign(ts="2026-11-20T10:00:00Z").to_dict("records")[0])
    path = _text(tmp_path, "broken.jsonl", f"{good}\n\n{good[:-1]}\n")
    _fails(
        path, str(path), f"line 3 is not valid JSON (Expecting ',' delimiter, column {len(good)})"
    )
    path = _text(tmp_path, "array.jsonl", f"{good}\n[1, 2]\n")
    _fails(path, str(path), "line 2 is not a JSON object")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(good.replace('"stable"', '"stable\xe9"').encode("latin-1") + b"\n")
    at = good.index('"stable"') + len('"stable')
    message = (
        "cannot read JSON Lines "
        f"('utf-8' codec can't decode byte 0xe9 in position {at}: invalid continuation byte)"
    )
    _fails(path, str(path), message)


def test_empty_jsonl_has_no_columns(tmp_path: Path) -> None:
    _fails(_text(tmp_path, "empty.jsonl", "\n"), "ts", EVENTS_NEED)


# -- naive timestamps on the summary path (summary._checks.utc_timestamps) ----------


@pytest.mark.parametrize(
    "ts",
    [
        SMALL["ts"].dt.tz_localize(None),
        SMALL["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S"),
        SMALL["ts"].dt.strftime("%Y-%m-%d"),
    ],
    ids=["datetime64", "text", "dates"],
)
def test_summarize_rejects_naive_timestamps(ts: pd.Series) -> None:
    with pytest.raises(EventsError, match=f"^ts: {re.escape(NAIVE)}$"):
        cs.summarize(SMALL.assign(ts=ts))


def test_summarize_takes_any_offset(base: pd.DataFrame) -> None:
    mixed = base["ts"].dt.tz_convert("America/New_York").astype(str).to_numpy(dtype=object)
    mixed[::2] = base["ts"].iloc[::2].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _same(cs.summarize(base.assign(ts=mixed)), cs.summarize(base))


def test_summarize_without_rows_needs_no_zone() -> None:
    empty = pd.DataFrame({name: pd.Series(dtype=object) for name in EVENT_ORDER})
    assert cs.summarize(empty).canary.tasks == 0
