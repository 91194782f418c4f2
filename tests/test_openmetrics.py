"""The synthetic OpenMetrics exporter: what it renders parses back to the events' totals."""

from __future__ import annotations

import io
import re
import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from canary_stats import simulate
from canary_stats.errors import EventsError, InputError
from canary_stats.sources.openmetrics import (
    LATENCY_BUCKETS,
    CounterReset,
    NaNSample,
    ScrapeGap,
    write_openmetrics,
)
from canary_stats.sources.synthetic import Workload, generate_events

from .integration._prometheus import MISSING_BINARIES, prometheus_binaries

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
VERSIONS = {"stable": "v1", "canary": "v2"}
LINE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+) (\d+)")
LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, str, str], dict[int, float]]


def _render(events: pd.DataFrame, **options: object) -> str:
    buf = io.StringIO()
    write_openmetrics(events, VERSIONS, buf, **options)  # type: ignore[arg-type]
    return buf.getvalue()


def _parse(text: str) -> Samples:
    """(sample name, version, le) -> {unix seconds: value}, checking each line's syntax."""
    out: Samples = defaultdict(dict)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = LINE.fullmatch(line)
        assert m, line
        name, labels, value, ts = m.groups()
        lbl = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in LABEL.findall(labels)}
        out[(name, lbl["version"], lbl.get("le", ""))][int(ts)] = float(value)
    return out


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return generate_events(
        Workload(), canary_share=0.2, duration=timedelta(minutes=20), start=T0, rng=5
    )


@pytest.fixture(scope="module")
def text(events: pd.DataFrame) -> str:
    return _render(events)


@pytest.fixture(scope="module")
def samples(text: str) -> Samples:
    return _parse(text)


def test_totals_at_the_last_scrape_equal_the_events(events: pd.DataFrame, samples: Samples) -> None:
    last = int((T0 + timedelta(minutes=20)).timestamp())
    for cohort, version in VERSIONS.items():
        ev = events[events["cohort"] == cohort]
        scores = ev["eval_score"].dropna()

        def at_end(name: str, le: str = "", v: str = version) -> float:
            return samples[(name, v, le)][last]

        assert at_end("agent_task_total") == len(ev)
        assert at_end("agent_task_success_total") == ev["success"].sum()
        assert at_end("agent_task_duration_ms_count") == len(ev)
        assert at_end("agent_task_duration_ms_bucket", "+Inf") == len(ev)
        assert at_end("agent_task_duration_ms_sum") == pytest.approx(ev["latency_ms"].sum())
        assert at_end("agent_task_tokens_sum") == pytest.approx(ev["tokens"].sum())
        assert at_end("agent_eval_score_count") == len(scores)
        assert at_end("agent_eval_score_sum") == pytest.approx(scores.sum())
        assert at_end("agent_eval_score_bucket", "0.9") == (scores <= 0.9).sum()
        for key, series in samples.items():
            if key[0] == "agent_task_duration_ms_bucket" and key[1] == version and key[2] != "+Inf":
                assert series[last] == (ev["latency_ms"] <= float(key[2])).sum()


def test_scrapes_are_on_the_grid_and_count_events_strictly_before(
    events: pd.DataFrame, samples: Samples
) -> None:
    series = samples[("agent_task_total", "v1", "")]
    times = sorted(series)
    assert times[0] == T0.timestamp() and np.all(np.diff(times) == 15) and len(times) == 81
    ts = events.loc[events["cohort"] == "stable", "ts"]
    for t in times[::7]:
        assert series[t] == (ts < pd.Timestamp(t, unit="s", tz="UTC")).sum()


def test_text_shape(text: str) -> None:
    lines = text.splitlines()
    assert lines[0] == "# TYPE agent_task counter" and text.endswith("# EOF\n")
    types = [line for line in lines if line.startswith("# TYPE")]
    assert types == [
        "# TYPE agent_task counter",
        "# TYPE agent_task_success counter",
        "# TYPE agent_task_duration_ms histogram",
        "# TYPE agent_task_tokens histogram",
        "# TYPE agent_eval_score histogram",
    ]
    assert "NaN" not in text and ".0 " not in text.replace('.0"', "")  # counts are integers


def test_counter_reset_restarts_every_series_of_one_version(events: pd.DataFrame) -> None:
    at = T0 + timedelta(minutes=10)
    samples = _parse(_render(events, faults=[CounterReset("v2", at)]))
    before = int(at.timestamp()) - 15
    for (name, version, _), series in samples.items():
        if version == "v2":
            assert series[int(at.timestamp())] == 0, name
            assert series[before] >= 0
        if name == "agent_task_total":
            assert (series[int(at.timestamp())] > 0) == (version == "v1")
    ts = events.loc[events["cohort"] == "canary", "ts"]
    end = int((T0 + timedelta(minutes=20)).timestamp())
    want = ((ts >= pd.Timestamp(at)) & (ts < pd.Timestamp(end, unit="s", tz="UTC"))).sum()
    assert samples[("agent_task_total", "v2", "")][end] == want


def test_nan_sample_and_gap(events: pd.DataFrame) -> None:
    at = T0 + timedelta(minutes=5)
    gap = (T0 + timedelta(minutes=12), T0 + timedelta(minutes=13))
    text = _render(
        events,
        faults=[
            NaNSample("v1", at, "agent_task_duration_ms_bucket"),
            ScrapeGap(*gap, version="v2"),
        ],
    )
    samples = _parse(text)
    t = int(at.timestamp())
    nan = {k for k, s in samples.items() if np.isnan(s[t])}
    assert nan and all(k[0] == "agent_task_duration_ms_bucket" and k[1] == "v1" for k in nan)
    assert len(nan) == sum(1 for k in samples if k[:2] == ("agent_task_duration_ms_bucket", "v1"))
    lo, hi = (int(g.timestamp()) for g in gap)
    for (_, version, _), series in samples.items():
        hidden = [s for s in series if lo <= s < hi]
        assert len(hidden) == (0 if version == "v2" else 4)


def test_label_values_are_escaped(events: pd.DataFrame) -> None:
    versions = {"stable": 'v1"} x', "canary": "v2\\"}
    buf = io.StringIO()
    write_openmetrics(events, versions, buf, latency_buckets=[1000.0])
    text = buf.getvalue()
    assert 'version="v1\\"} x"' in text and 'version="v2\\\\"' in text
    assert {k[1] for k in _parse(text)} == set(versions.values())


def test_writes_to_a_file(events: pd.DataFrame, text: str, tmp_path: Path) -> None:
    n = write_openmetrics(events, VERSIONS, tmp_path / "h.om")
    assert (tmp_path / "h.om").read_text() == text
    assert n == sum(1 for line in text.splitlines() if not line.startswith("#"))


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"interval": timedelta(seconds=1.5)}, "interval", "whole number of seconds"),
        ({"start": datetime(2025, 3, 3, 6)}, "start", "timezone-aware"),
        ({"start": T0 + timedelta(minutes=1)}, "start", "events before the first scrape"),
        ({"end": T0}, "end", "at least one scrape interval after start"),
        ({"label": "le"}, "label", "reserved"),
        ({"latency_buckets": [5.0, 1.0]}, "latency_buckets", "increasing"),
        ({"column": "release"}, "release", "missing column"),
        ({"faults": [CounterReset("v3", T0)]}, "faults", "names no exported version"),
    ],
)
def test_bad_options(
    events: pd.DataFrame, options: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        _render(events, **options)
    assert info.value.field == field


def test_bad_events(events: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="no version for cohort values") as info:
        write_openmetrics(events, {"stable": "v1"}, io.StringIO())
    assert info.value.field == "versions"
    broken = events.assign(latency_ms=events["latency_ms"].where(events.index != 3))
    with pytest.raises(EventsError, match="1 rows are NaN") as err:
        _render(broken)
    assert err.value.field == "latency_ms"
    naive = events.assign(ts=events["ts"].dt.tz_localize(None))
    with pytest.raises(EventsError, match="expected zone-aware timestamps") as err:
        _render(naive)
    assert err.value.field == "ts"
    with pytest.raises(InputError, match="control characters") as bad:
        write_openmetrics(events, {"stable": "v1\n", "canary": "v2"}, io.StringIO())
    assert bad.value.field == "versions"


def test_promtool_backfills_it(text: str, tmp_path: Path) -> None:
    binaries = prometheus_binaries()
    if binaries is None:
        pytest.fail(MISSING_BINARIES, pytrace=False)
    (tmp_path / "h.om").write_text(text)
    done = subprocess.run(
        [binaries[1], "tsdb", "create-blocks-from", "openmetrics", "h.om", "tsdb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "NUM SAMPLES" in done.stdout and any((tmp_path / "tsdb").iterdir())


def test_default_latency_buckets_are_the_simulations() -> None:
    # Defined twice only because the data layer must not import the simulation.
    np.testing.assert_array_equal(LATENCY_BUCKETS, simulate.LATENCY_BUCKETS)
