"""The Prometheus source against a real, backfilled Prometheus (see conftest.py)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

import canary_stats as cs
from canary_stats.errors import SourceResponseError, SourceUnavailable
from canary_stats.sources._pull import DataIssue, Pull
from canary_stats.sources.openmetrics import EVAL_BUCKETS, TOKEN_BUCKETS
from canary_stats.sources.prometheus import PrometheusConfig, PrometheusSource

from ..conftest import RELATIVE_ROLLOUT, to_aggregates
from ._prometheus import Reply, Request, StubServer, forward, free_port, html_reply
from .conftest import END, GAP, LATENCY_EDGES, NAN_AT, RESET_AT, T0, WINDOW, History

KEY = ["window_start", "cohort", "metric", "field", "le"]


def _pull(
    url: str,
    stable: str = "v1",
    canary: str = "v2",
    start: datetime = T0,
    end: datetime = END,
    **config: object,
) -> Pull:
    source = PrometheusSource(PrometheusConfig.from_dict({"url": url, **config}))
    return source.pull(stable=stable, canary=canary, start=start, end=end, window=WINDOW)


def _kinds(pull: Pull) -> set[tuple[str, str | None]]:
    return {(i.kind, i.cohort) for i in pull.issues}


def _window(issue: DataIssue) -> tuple[int, int]:
    """An issue's window as minutes since the start of the history."""
    return (
        int((issue.window_start - T0).total_seconds() // 60),
        int((issue.window_end - T0).total_seconds() // 60),
    )


@pytest.fixture(scope="module")
def healthy(history: History) -> Pull:
    return _pull(history.url)


def test_counts_equal_the_generated_events(history: History, healthy: Pull) -> None:
    # Prometheus 2.x range selectors are closed at both ends, and the scrapes fall on
    # every multiple of 15 s, so each window [t - 5m, t] holds a sample exactly at both
    # edges: increase() sees durationToStart = durationToEnd = 0 and extrapolates by
    # nothing, returning last - first, the events of [t - 5m, t) (a scrape counts the
    # tasks finished strictly before it). So the counts must be exact: nothing is lost.
    # (Prometheus 3 opens the range on the left; the first sample would then be the
    # one 15 s in, and every window would be extrapolated by 300/285.)
    assert healthy.issues == ()
    got = healthy.aggregates
    assert set(got["release"]) == {"v1", "v2"}
    assert got["window_start"].dt.tz is not None
    assert got.groupby("cohort")["window_start"].nunique().to_dict() == {"stable": 36, "canary": 36}
    want = to_aggregates(history.raw("v1", "v2"), LATENCY_EDGES, window="5min")
    want = want[want["field"] != "sum_sq"]
    merged = want.merge(got, on=KEY, how="left", suffixes=("_want", "_got"), validate="1:1")
    assert merged["value_got"].notna().all()
    exact = merged["field"] != "sum"
    np.testing.assert_array_equal(merged.loc[exact, "value_got"], merged.loc[exact, "value_want"])
    np.testing.assert_allclose(
        merged.loc[~exact, "value_got"], merged.loc[~exact, "value_want"], rtol=1e-9
    )


@pytest.mark.parametrize(
    ("metric", "edges"), [("tokens_per_task", TOKEN_BUCKETS), ("eval_score", EVAL_BUCKETS)]
)
def test_bucket_counts_equal_the_generated_events(
    history: History, healthy: Pull, metric: str, edges: np.ndarray
) -> None:
    raw = history.raw("v1", "v2")
    column = "tokens" if metric == "tokens_per_task" else "eval_score"
    raw = raw[raw[column].notna()]
    window = raw["ts"].dt.floor("5min")
    le = edges[len(edges) // 2]
    want = (raw[column] <= le).groupby([window, raw["cohort"]]).sum()
    rows = healthy.aggregates.query("metric == @metric and field == 'bucket' and le == @le")
    got = rows.set_index(["window_start", "cohort"])["value"]
    pd.testing.assert_series_equal(
        got.sort_index(), want.astype(float).sort_index(), check_names=False, check_index_type=False
    )


@pytest.mark.parametrize(
    ("canary", "decision"), [("v2", "promote"), ("v3", "rollback")], ids=["healthy", "regressed"]
)
def test_verdict_from_prometheus_equals_the_verdict_from_raw_events(
    history: History, canary: str, decision: str
) -> None:
    policy = cs.Policy.from_dict(RELATIVE_ROLLOUT)
    pull = _pull(history.url, canary=canary)
    assert pull.issues == ()
    from_raw = cs.analyze(history.raw("v1", canary), policy, stage=1)
    from_prometheus = cs.analyze(pull.aggregates, policy, stage=1)
    assert from_raw.decision == from_prometheus.decision == decision
    if decision == "rollback":
        assert from_prometheus.metrics["p95_latency_ms"].status == "fail"


@pytest.mark.parametrize(
    "release", ['v1"} or vector(1) #', "v1\\", 'v1\\"} or vector(1) #', "v1'} or vector(1)"]
)
def test_release_names_cannot_inject_promql(history: History, release: str) -> None:
    pull = _pull(history.url, canary=release)
    assert _kinds(pull) == set() and pull.unmatched == ("canary",)
    assert set(pull.aggregates["cohort"]) == {"stable"}
    assert (pull.aggregates.query("metric == 'tasks' and field == 'count'")["value"] > 100).all()


def test_unknown_releases_are_empty_not_an_error(history: History) -> None:
    pull = _pull(history.url, stable="v0", canary="v9")
    assert _kinds(pull) == set() and pull.unmatched == ("stable", "canary")
    assert pull.aggregates.empty and list(pull.aggregates.columns)[-1] == "release"


def test_nan_sample(history: History) -> None:
    pull = _pull(
        history.url, "f-stable", "f-canary", T0 + timedelta(minutes=100), NAN_AT + WINDOW * 3
    )
    nan = [i for i in pull.issues if i.kind == "nan"]
    # The NaN sits on the edge of two windows: both increases are NaN.
    assert [(_window(i), i.cohort) for i in nan] == [((115, 120), "stable"), ((120, 125), "stable")]
    assert "tasks.count" in nan[0].detail
    assert {i.kind for i in pull.issues} == {"nan"}


def test_counter_reset(history: History) -> None:
    pull = _pull(
        history.url, "f-stable", "f-canary", T0 + timedelta(minutes=45), RESET_AT + WINDOW * 3
    )
    assert [(i.kind, _window(i), i.cohort) for i in pull.issues] == [
        ("counter_reset", (60, 65), "canary")
    ]


def test_a_cohort_without_scrapes_is_zero_tasks_not_a_gap(history: History) -> None:
    pull = _pull(history.url, "f-stable", "f-canary", GAP[0] - WINDOW * 2, GAP[1] + WINDOW * 2)
    # No canary scrape in [150, 165): the windows ending at 155, 160 and 165 have no
    # canary point at all. That is a canary that finished nothing (data), not an issue.
    assert pull.issues == ()
    canary_ends = set(pull.aggregates.query("cohort == 'canary'")["window_end"])
    assert not {T0 + timedelta(minutes=m) for m in (155, 160, 165)} & canary_ends


def _proxy(upstream: str, change: str, delay_s: float = 0.0) -> StubServer:
    """A proxy in front of the real Prometheus that changes every answer."""

    def respond(request: Request) -> Reply:
        reply = forward(upstream, request)
        doc = json.loads(reply.body)
        if change == "warnings":
            doc["warnings"] = ["store-2 unavailable: partial response"]
        elif change == "vector":
            doc["data"]["resultType"] = "vector"
        return Reply(reply.status, json.dumps(doc).encode(), delay_s=delay_s)

    return StubServer(respond)


def test_partial_response_is_an_issue_and_the_judge_holds(history: History) -> None:
    with _proxy(history.url, "warnings") as proxy:
        pull = _pull(proxy.url)
    partial = [i for i in pull.issues if i.kind == "partial"]
    assert {i.cohort for i in partial} == {"stable", "canary"} and len(pull.issues) == 2
    assert "partial response" in partial[0].detail
    assert (partial[0].window_start, partial[0].window_end) == (T0, END)
    # The numbers themselves look fine; only the issues say they may be incomplete.
    policy = cs.Policy.from_dict(RELATIVE_ROLLOUT)
    assert cs.analyze(pull.aggregates, policy, stage=1).decision == "promote"
    verdict = cs.analyze(pull, policy, stage=1)
    assert verdict.decision == "hold"
    assert "the data cannot be trusted" in verdict.reason and "partial" in verdict.reason


def test_counter_reset_makes_the_judge_hold(history: History) -> None:
    pull = _pull(history.url, "f-stable", "f-canary", end=T0 + timedelta(minutes=90))
    assert {i.kind for i in pull.issues} == {"counter_reset"}
    policy = cs.Policy.from_dict(RELATIVE_ROLLOUT)
    verdict = cs.analyze(pull, policy, stage=0)
    assert verdict.decision == "hold" and "counter_reset" in verdict.reason


def test_wrong_result_type(history: History) -> None:
    with _proxy(history.url, "vector") as proxy, pytest.raises(SourceResponseError) as info:
        _pull(proxy.url)
    assert "expected a matrix, got 'vector'" in str(info.value)


def test_slow_server_times_out(history: History) -> None:
    with _proxy(history.url, "none", delay_s=1.0) as proxy:
        with pytest.raises(SourceUnavailable, match=r"no answer within 0\.2 s"):
            _pull(proxy.url, timeout=0.2, retries=0)


def test_post_is_retried(history: History) -> None:
    calls: list[str] = []
    lock = threading.Lock()

    def respond(request: Request) -> Reply:
        with lock:
            calls.append(request.method)
            first = len(calls) == 1
        if first:
            return Reply(503, b'{"status":"error","errorType":"unavailable","error":"busy"}')
        return forward(history.url, request)

    with StubServer(respond) as flaky:
        pull = _pull(flaky.url, retries=1)
    assert pull.issues == () and calls[:2] == ["POST", "POST"] and len(calls) == 21


def test_server_down() -> None:
    with pytest.raises(SourceUnavailable, match="cannot connect"):
        _pull(f"http://127.0.0.1:{free_port()}", retries=0)


def test_not_prometheus() -> None:
    with StubServer(lambda _: html_reply(200)) as plain, pytest.raises(SourceUnavailable) as info:
        _pull(plain.url, retries=0)
    assert "not a Prometheus API: HTTP 200" in str(info.value)


def test_has_series_tells_a_release_that_ever_reported(history: History) -> None:
    source = PrometheusSource(PrometheusConfig.from_dict({"url": history.url}))
    lookback = timedelta(hours=1)
    assert source.has_series("v1", lookback=lookback, now=END)
    assert source.has_series("v3", lookback=lookback, now=END)
    assert not source.has_series("v9", lookback=lookback, now=END)
    assert not source.has_series('v1"} or vector(1) #', lookback=lookback, now=END)
    # Before the history began, nothing had reported.
    assert not source.has_series("v1", lookback=lookback, now=T0 - timedelta(hours=2))


def test_fractional_increases_are_judged(history: History) -> None:
    """Windows off the scrape grid: increase() extrapolates, as on a live server."""
    from ..test_fractional_counts import _finishes

    start = T0 + timedelta(minutes=30)
    source = PrometheusSource(PrometheusConfig(url=history.url))
    pull = source.pull(
        stable="v1", canary="v3", start=start, end=start + timedelta(minutes=90),
        window=timedelta(seconds=70),
    )  # fmt: skip
    counts = pull.aggregates.query("metric == 'tasks' and field == 'count'")["value"]
    assert (counts != counts.round()).any()  # real increase() counts are fractional
    policy = cs.Policy.from_dict(RELATIVE_ROLLOUT)
    verdict = _finishes(lambda: cs.analyze(pull, policy, stage=1, elapsed="2h"))
    assert verdict.decision in ("hold", "rollback")
    assert verdict.metrics["p95_latency_ms"].status in ("fail", "inconclusive")
