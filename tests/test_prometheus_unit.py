"""The Prometheus source without Prometheus: queries, escaping, configuration, answers.

Answers come from a tiny real HTTP server (`StubServer`) playing Prometheus, so
the real client, session, retries and timeouts are exercised, not a mock of them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from canary_stats.errors import InputError, SourceResponseError, SourceUnavailable
from canary_stats.sources._promql import (
    check_label_value,
    increase_query,
    quote,
    resets_query,
    selector,
)
from canary_stats.sources._pull import Pull
from canary_stats.sources.prometheus import PrometheusConfig, PrometheusSource

from .integration._prometheus import Reply, Request, StubServer, free_port, html_reply, json_reply

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
W = timedelta(minutes=5)
CLOSED = f"http://127.0.0.1:{free_port()}"


# -- PromQL text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("v1", '"v1"'),
        ('v1"} or vector(1) #', '"v1\\"} or vector(1) #"'),
        ("v1\\", '"v1\\\\"'),
        ('v1\\"}', '"v1\\\\\\"}"'),
        ("v1'} or vector(1)", '"v1\'} or vector(1)"'),
        ("ünï ✓", '"ünï ✓"'),
    ],
)
def test_quote_escapes_backslash_and_quote(value: str, literal: str) -> None:
    assert quote(value) == literal
    # Reading the literal back the way PromQL does gives the value again.
    inner = literal[1:-1]
    assert re.fullmatch(r'(?:[^"\\]|\\["\\])*', inner)
    assert re.sub(r"\\(.)", r"\1", inner) == value


@pytest.mark.parametrize("value", ["", "a\nb", "a\rb", "\x00", "tab\t", "\x7f", "\x85", "\ud800"])
def test_label_values_without_control_characters(value: str) -> None:
    with pytest.raises(InputError) as info:
        check_label_value(value, "canary")
    assert info.value.field == "canary"


def test_queries() -> None:
    matchers = {"version": "v2", "app": 'a"b'}
    assert selector("m", matchers) == 'm{app="a\\"b",version="v2"}'
    assert (
        increase_query("agent_task_total", matchers, by=("version",), window_seconds=300)
        == 'sum by (version) (increase(agent_task_total{app="a\\"b",version="v2"}[300s]))'
    )
    q = resets_query(["a_total", "b_count"], {"version": "v2"}, by=("version",), window_seconds=60)
    assert q == (
        'sum by (version) (label_replace(resets(a_total{version="v2"}[60s]), '
        '"canary_stats_counter", "a_total", "", "") or label_replace(resets(b_count'
        '{version="v2"}[60s]), "canary_stats_counter", "b_count", "", ""))'
    )


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"url": "prometheus:9090"}, "url", "expected an http(s) URL"),
        ({"url": "http://"}, "url", "expected an http(s) URL"),
        ({"cohort_label": "pod-hash"}, "cohort_label", "expected a label name"),
        ({"cohort_label": "le"}, "cohort_label", "reserved"),
        ({"cohort_label": "__name__"}, "cohort_label", "reserved"),
        ({"selectors": {"app": "a\nb"}}, "selectors.app", "control characters"),
        ({"selectors": {"app": ""}}, "selectors.app", "non-empty"),
        ({"selectors": {"bad key": "x"}}, "selectors.bad key", "expected a label name"),
        ({"selectors": {"version": "v1"}}, "selectors.version", "is the cohort label"),
        ({"metrics": {"tasks": "tasks-total"}}, "metrics.tasks", "expected a metric name"),
        ({"metrics": {"latency_unit_ms": 0}}, "metrics.latency_unit_ms", "greater than 0"),
        ({"metrics": {"task": "x"}}, "metrics.task", "Extra inputs are not permitted"),
        ({"timeout": 0}, "timeout", "greater than 0"),
        ({"retries": -1}, "retries", "greater than or equal to 0"),
        ({"method": "PUT"}, "method", "'GET' or 'POST'"),
        ({"basic_auth": {"user": "u"}}, "basic_auth.password", "Field required"),
        (
            {"bearer_token": "t", "basic_auth": {"user": "u", "password": "p"}},
            "basic_auth",
            "not both",
        ),
        ({"urll": "http://x"}, "urll", "Extra inputs are not permitted"),
    ],
)
def test_config_errors_name_the_field(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as info:
        PrometheusConfig.from_dict({"url": "http://prometheus:9090", **changes})
    assert info.value.field == field


def test_config_defaults_and_direct_construction() -> None:
    cfg = PrometheusConfig(url="https://prometheus.example/")
    assert cfg.url == "https://prometheus.example" and cfg.method == "POST"
    assert cfg.cohort_label == "version" and cfg.metrics.tasks == "agent_task_total"
    with pytest.raises(InputError) as info:
        PrometheusConfig(url="ftp://x")
    assert info.value.field == "url"


def test_config_from_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "prometheus:\n  url: http://prom:9090\n  cohort_label: rollouts_pod_template_hash\n"
        "  selectors: {app: research-agent}\n  bearer_token: s3cret\n"
    )
    cfg = PrometheusConfig.from_file(tmp_path / "p.yaml")
    assert cfg.selectors == {"app": "research-agent"} and "s3cret" not in repr(cfg)
    (tmp_path / "p.json").write_text(json.dumps({"url": "http://prom:9090", "retries": 0}))
    assert PrometheusConfig.from_file(tmp_path / "p.json").retries == 0
    (tmp_path / "bad.yaml").write_text("url: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML") as info:
        PrometheusConfig.from_file(tmp_path / "bad.yaml")
    assert info.value.field == str(tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="cannot read"):
        PrometheusConfig.from_file(tmp_path / "missing.yaml")


# -- pull arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"canary": ""}, "canary", "non-empty"),
        ({"canary": "v2\n"}, "canary", "control characters"),
        ({"stable": "v\x00"}, "stable", "control characters"),
        ({"canary": "v1"}, "canary", "must differ"),
        ({"start": datetime(2025, 3, 3)}, "start", "timezone-aware"),
        ({"window": timedelta(seconds=0.5)}, "window", "whole number of seconds"),
        ({"window": timedelta(seconds=1), "end": T0 + timedelta(days=1)}, "window", "11000"),
    ],
)
def test_pull_arguments(changes: dict[str, Any], field: str, message: str) -> None:
    args: dict[str, Any] = {
        "stable": "v1", "canary": "v2", "start": T0, "end": T0 + timedelta(hours=1), "window": W,
    }  # fmt: skip
    with pytest.raises(InputError, match=message) as info:
        PrometheusSource(PrometheusConfig(url=CLOSED)).pull(**{**args, **changes})
    assert info.value.field == field


def test_no_whole_window_asks_nothing() -> None:
    # The closed port would raise if anything were asked.
    source = PrometheusSource(PrometheusConfig(url=CLOSED, retries=0))
    pull = source.pull(stable="v1", canary="v2", start=T0, end=T0 + W / 2, window=W)
    assert pull.aggregates.empty and pull.issues == ()


# -- answers from a server playing Prometheus ------------------------------------------

_RELEASE = re.compile(r'version="((?:[^"\\]|\\.)*)"')


def fake_prometheus(
    value: Callable[[str, str, int], str | None] = lambda release, query, t: "1",
    extra: dict[str, Any] | None = None,
) -> Callable[[Request], Reply]:
    """Answer every range query with one series per release (and per ``le`` for buckets).

    ``value(release, query, t)`` gives each sample; None leaves the sample out.
    ``extra`` is merged into the top level of every answer (e.g. ``warnings``).
    """

    def respond(request: Request) -> Reply:
        p = request.params
        step = int(p["step"].removesuffix("s"))
        times = range(int(p["start"]), int(p["end"]) + 1, step)
        release = _RELEASE.search(p["query"])
        name = release.group(1) if release else "?"
        les = ["250.0", "+Inf"] if ", le)" in p["query"] else [None]
        result = []
        for le in les:
            samples = [[t, value(name, p["query"], t)] for t in times]
            metric = {"version": name} | ({"le": le} if le else {})
            points = [s for s in samples if s[1] is not None]
            if "resets(" in p["query"]:
                points = [[t, "0"] for t in times]
            if points:
                result.append({"metric": metric, "values": points})
        doc = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return json_reply(doc | (extra or {}))

    return respond


def _pull(url: str, hours: float = 1, **config: Any) -> Pull:
    source = PrometheusSource(PrometheusConfig.from_dict({"url": url, "retries": 0, **config}))
    end = T0 + timedelta(hours=hours)
    return source.pull(stable="v1", canary="v2", start=T0, end=end, window=W)


def test_frame_and_requests() -> None:
    with StubServer(fake_prometheus()) as server:
        pull = _pull(server.url, bearer_token="s3cret", metrics={"latency_unit_ms": 1000})
    frame = pull.aggregates
    assert list(frame.columns) == [
        "window_start", "window_end", "cohort", "metric", "field", "le", "value", "release",
    ]  # fmt: skip
    assert str(frame["window_start"].dt.tz) == "UTC" and frame["value"].dtype == float
    assert frame.groupby("cohort")["window_end"].nunique().to_dict() == {"canary": 12, "stable": 12}
    assert frame["window_start"].min() == T0 and frame["window_end"].max() == T0 + 12 * W
    assert set(frame.query("metric == 'latency_ms'")["le"]) == {250_000.0, float("inf")}
    eval_buckets = frame.query("metric == 'eval_score' and field == 'bucket'")
    assert set(eval_buckets["le"]) == {250.0, float("inf")}
    assert frame.query("field != 'bucket'")["le"].isna().all()
    assert dict(zip(frame["cohort"], frame["release"], strict=True)) == {
        "stable": "v1",
        "canary": "v2",
    }
    assert pull.issues == ()
    first = server.requests[0]
    assert first.method == "POST" and len(server.requests) == 20
    assert first.headers["Authorization"] == "Bearer s3cret"
    assert first.params["step"] == "300s" and first.params["timeout"] == "10s"
    assert int(first.params["start"]) == T0.timestamp() + 300
    assert int(first.params["end"]) == (T0 + timedelta(hours=1)).timestamp()


def test_selectors_and_basic_auth_reach_the_server() -> None:
    with StubServer(fake_prometheus()) as server:
        _pull(
            server.url,
            cohort_label="rollouts_pod_template_hash",
            selectors={"app": "research-agent"},
            basic_auth={"user": "judge", "password": "pw"},
            method="GET",
        )
    first = server.requests[0]
    assert first.method == "GET" and first.headers["Authorization"].startswith("Basic ")
    assert first.params["query"] == (
        "sum by (rollouts_pod_template_hash) (increase(agent_task_total"
        '{app="research-agent",rollouts_pod_template_hash="v1"}[300s]))'
    )


def test_warnings_and_infos_are_partial() -> None:
    extra = {"warnings": ["partial response"], "infos": ["metric might not be a counter"]}
    with StubServer(fake_prometheus(extra=extra)) as server:
        pull = _pull(server.url)
    assert [(i.kind, i.cohort, i.detail) for i in pull.issues] == [
        ("partial", "canary", "info: metric might not be a counter"),
        ("partial", "canary", "warning: partial response"),
        ("partial", "stable", "info: metric might not be a counter"),
        ("partial", "stable", "warning: partial response"),
    ]


def test_nan_gap_and_empty() -> None:
    hole = int((T0 + 2 * W).timestamp())

    def value(release: str, query: str, t: int) -> str | None:
        if release == "v1" and t == hole:
            return "NaN" if "success" in query else None
        return "1"

    with StubServer(fake_prometheus(value)) as server:
        pull = _pull(server.url)
    issues = [(i.kind, i.cohort, i.window_end) for i in pull.issues]
    # No task counter, only a NaN: the NaN is the issue, not a gap (no tasks were counted).
    assert issues == [("nan", "stable", T0 + 2 * W)]
    assert "tasks.success" in pull.issues[0].detail

    with StubServer(fake_prometheus(lambda release, q, t: None if release == "v2" else "3")) as s:
        pull = _pull(s.url)
    # A cohort without any series is no window issue: it is named for the caller.
    assert pull.issues == () and pull.unmatched == ("canary",)
    assert (pull.start, pull.end) == (T0, T0 + timedelta(hours=1))


def test_windows_without_tasks_are_data_and_partial_scrapes_are_gaps() -> None:
    quiet, partial = int((T0 + 2 * W).timestamp()), int((T0 + 3 * W).timestamp())

    def value(release: str, query: str, t: int) -> str | None:
        if release == "v2" and t == quiet:
            return None  # the canary reported nothing at all: zero tasks, no issue
        if release == "v2" and t == partial and "duration" in query:
            return None  # tasks counted, latency missing: a partial scrape
        return "1"

    with StubServer(fake_prometheus(value)) as server:
        pull = _pull(server.url)
    assert [(i.kind, i.cohort, i.window_end) for i in pull.issues] == [
        ("gap", "canary", T0 + 3 * W)
    ]
    assert "latency_ms.bucket" in pull.issues[0].detail
    kept = pull.trusted()
    assert (T0 + 3 * W) not in set(kept["window_end"]) and (T0 + 2 * W) in set(kept["window_end"])


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (json_reply({"status": "success", "data": {"resultType": "vector", "result": []}}),
         SourceResponseError, "expected a matrix, got 'vector'"),
        (json_reply({"status": "success", "data": {"resultType": "matrix", "result": [{}]}}),
         SourceResponseError, "malformed matrix result"),
        (json_reply({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1, "many"]]}]}}),
         SourceResponseError, "is not a number"),
        (json_reply({"status": "error", "errorType": "bad_data", "error": "parse error"}, 400),
         SourceResponseError, "HTTP 400 bad_data: parse error"),
        (json_reply({"status": "error", "errorType": "unavailable", "error": "busy"}, 503),
         SourceUnavailable, "HTTP 503 unavailable: busy"),
        (json_reply({"status": "error", "errorType": "execution", "error": "oom"}, 422),
         SourceUnavailable, "HTTP 422 execution: oom"),
        (json_reply({"hello": "world"}), SourceUnavailable, "not a Prometheus API: HTTP 200"),
        (Reply(200, b"not json", "text/plain"), SourceUnavailable, "not a Prometheus API"),
        (html_reply(404), SourceUnavailable, "not a Prometheus API: HTTP 404"),
    ],
)  # fmt: skip
def test_answers_of_the_wrong_shape(reply: Reply, error: type[Exception], message: str) -> None:
    with StubServer(lambda _: reply) as server, pytest.raises(error, match=re.escape(message)):
        _pull(server.url)


def test_slow_server_times_out() -> None:
    with StubServer(lambda _: json_reply({}, delay_s=2.0)) as server:
        begin = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"no answer within 0\.2 s") as info:
            _pull(server.url, timeout=0.2)
        assert time.monotonic() - begin < 1.5
    assert info.value.source == server.url


def _flaky(first: Reply) -> Callable[[Request], Reply]:
    """Answer ``first`` to the first request, like Prometheus to the others."""
    ok = fake_prometheus()
    seen: list[Request] = []

    def respond(request: Request) -> Reply:
        seen.append(request)
        return first if len(seen) == 1 else ok(request)

    return respond


@pytest.mark.parametrize(
    "first",
    [
        json_reply({"status": "error", "errorType": "unavailable", "error": "busy"}, 503),
        json_reply({}, delay_s=1.0),  # a read timeout
        Reply(429, b"{}", delay_s=0.0),
    ],
    ids=["503", "timeout", "429"],
)
def test_post_is_retried(first: Reply) -> None:
    with StubServer(_flaky(first)) as server:
        begin = time.monotonic()
        pull = _pull(server.url, retries=1, timeout=0.5)
        assert time.monotonic() - begin < 5
    assert pull.issues == () and len(server.requests) == 21
    assert server.requests[0].method == server.requests[1].method == "POST"


def test_retry_after_is_not_obeyed() -> None:
    # A proxy asking for a minute's pause must not stall the judge for a minute.
    body = b'{"status":"error","errorType":"unavailable","error":"later"}'
    reply = Reply(503, body, headers={"Retry-After": "60"})
    with StubServer(_flaky(reply)) as server:
        begin = time.monotonic()
        _pull(server.url, retries=1)
        assert time.monotonic() - begin < 5


def test_retries_give_up() -> None:
    reply = json_reply({"status": "error", "errorType": "unavailable", "error": "busy"}, 503)
    with StubServer(lambda _: reply) as server, pytest.raises(SourceUnavailable, match="busy"):
        _pull(server.url, retries=1)
    assert len(server.requests) == 2


def test_server_down() -> None:
    with pytest.raises(SourceUnavailable, match="cannot connect") as info:
        _pull(CLOSED)
    assert info.value.source == CLOSED
