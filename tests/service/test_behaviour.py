"""Caching, the deadline, a source that is down, restarts and the background refresher."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from canary_stats import Verdict, analyze
from canary_stats.service import JudgeService, Release
from canary_stats.sources.prometheus import PrometheusConfig
from canary_stats.store import Store

from .conftest import (
    HOLD,
    PROMOTE,
    ROLLBACK,
    STAGE,
    RunningService,
    flagger_payload,
    settings_for,
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_stale_verdict_is_computed_on_demand(db: Path) -> None:
    with RunningService(settings_for(db, refresh_interval=3600, stale_after=0.3)) as svc:
        body = PROMOTE.argo_body()
        first = svc.argo(body)
        cached = svc.argo(body)
        time.sleep(0.4)
        fresh = svc.argo(body)
    assert first.headers["X-Canary-Stats-Cache"] == "computed"
    assert cached.headers["X-Canary-Stats-Cache"] == "hit"
    assert (
        cached.headers["X-Canary-Stats-Computed-At"] == first.headers["X-Canary-Stats-Computed-At"]
    )
    assert fresh.headers["X-Canary-Stats-Cache"] == "computed"
    assert fresh.headers["X-Canary-Stats-Computed-At"] > first.headers["X-Canary-Stats-Computed-At"]
    assert fresh.json()["decision"] == "promote"


def test_a_slow_judge_answers_hold_within_the_deadline(db: Path) -> None:
    release = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Verdict:
        release.wait(5)
        return analyze(*args, **kwargs)

    settings = settings_for(db, deadline=0.3, refresh_interval=3600)
    with RunningService(settings, analyze_fn=slow) as svc:
        began = time.monotonic()
        res = svc.argo(PROMOTE.argo_body(stage_started_at="2026-11-26T00:00:00Z"))
        took = time.monotonic() - began
        assert res.status_code == 200
        verdict = res.json()
        assert verdict["decision"] == "hold"
        assert "still being computed" in verdict["reason"]
        assert res.headers["X-Canary-Stats-Cache"] == "pending"
        assert 0.3 <= took < 1.5
        assert svc.metric("canary_stats_deadline_holds_total") == 1
        flagger = svc.flagger("confirm-promotion", _meta_payload())
        assert flagger.status_code == 403  # a pending verdict is a hold: no
        release.set()
        for _ in range(50):  # the computation goes on and fills the cache
            res = svc.argo(PROMOTE.argo_body(stage_started_at="2026-11-26T00:00:00Z"))
            if res.headers["X-Canary-Stats-Cache"] != "pending":
                break
            time.sleep(0.05)
        assert res.json()["decision"] == "promote"


def _meta_payload() -> dict[str, Any]:
    return flagger_payload(PROMOTE.metadata(stage_started_at="2026-11-26T00:00:00Z"))


def test_a_source_that_is_down_holds_with_the_reason(db: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    prometheus = PrometheusConfig(url=url, timeout=1, retries=0)
    with RunningService(settings_for(db, prometheus=prometheus)) as svc:
        res = svc.argo(PROMOTE.argo_body())  # promote data, but the pull failed
        assert res.status_code == 200
        verdict = res.json()
        assert verdict["decision"] == "hold"
        assert "the latest ingest from prometheus" in verdict["reason"]
        assert url in verdict["reason"] and "failed" in verdict["reason"]
        assert svc.metric("canary_stats_source_errors_total") >= 1
    with Store(db) as store:
        ingests = store.con.execute("SELECT status, source FROM ingests").fetchall()
    assert ("failed", f"prometheus {url}") in ingests


def test_a_source_that_is_down_cannot_call_a_stable_unknown(db: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    prometheus = PrometheusConfig(url=url, timeout=1, retries=0)
    with RunningService(settings_for(db, prometheus=prometheus)) as svc:
        res = svc.argo({**PROMOTE.argo_body(), "stable": "s-only-in-prometheus"})
    assert res.status_code == 200  # not 404: the source could not be asked
    assert res.json()["decision"] == "hold"


def test_a_restart_keeps_the_stage_start(db: Path) -> None:
    body = {"stable": PROMOTE.stable, "canary": PROMOTE.canary, "stage": STAGE}
    with RunningService(settings_for(db)) as svc:
        first = svc.argo(body)
        began = first.headers["X-Canary-Stats-Stage-Started-At"]
    assert first.json()["decision"] == "hold"  # just began: minimum duration not reached
    time.sleep(0.2)
    with RunningService(settings_for(db)) as svc:
        again = svc.argo(body)
    assert again.headers["X-Canary-Stats-Stage-Started-At"] == began
    assert again.json()["elapsed_minutes"] * 60 >= 0.2
    with Store(db) as store:
        rows = store.con.execute(
            "SELECT rollout_id, state, stage FROM rollout_transitions"
        ).fetchall()
    assert rows == [('judge:["s-ok", "c-ok"]', "stage_seen", STAGE)]


def test_the_refresher_recomputes_active_releases(db: Path) -> None:
    body = HOLD.argo_body()  # one stage start for every request
    with RunningService(settings_for(db, refresh_interval=0.1, stale_after=60)) as svc:
        first = svc.argo(body)
        computed = first.headers["X-Canary-Stats-Computed-At"]
        deadline = time.monotonic() + 5
        while svc.metric("canary_stats_verdicts_total", decision="hold") < 3:
            assert time.monotonic() < deadline, "no background refresh"
            time.sleep(0.05)
        later = svc.argo(body)
        assert svc.metric("canary_stats_active_releases") == 1
    assert later.headers["X-Canary-Stats-Cache"] == "hit"
    assert later.headers["X-Canary-Stats-Computed-At"] > computed


def test_releases_not_asked_about_are_forgotten(db: Path) -> None:
    service = JudgeService(settings_for(db, active_minutes=1e-6, refresh_interval=3600))
    service.start()
    try:
        assert service.ready() == (True, True)
        service.verdict(Release(stable=HOLD.stable, canary=HOLD.canary, stage=STAGE))
        time.sleep(0.01)
        service.refresh()
        assert service.metrics.registry.get_sample_value("canary_stats_active_releases") == 0
    finally:
        service.stop()
    assert service.ready() == (False, False)


def test_readyz_and_judging_are_503_when_the_judge_is_down(db: Path) -> None:
    with RunningService(settings_for(db)) as svc:
        svc.app.state.service.stop()
        res = svc.client.get("/readyz")
        assert res.status_code == 503
        assert res.json() == {"ready": False, "store": "closed", "refresher": "stopped"}
        assert svc.argo(PROMOTE.argo_body()).status_code == 503
        assert svc.client.get("/healthz").status_code == 200


def test_flagger_never_rolls_back_when_the_judge_is_down(db: Path) -> None:
    with RunningService(settings_for(db)) as svc:
        svc.app.state.service.stop()
        res = svc.flagger("rollback", flagger_payload(ROLLBACK.metadata()))
        assert not 200 <= res.status_code <= 202  # Flagger's "yes" is 200-202


def test_an_unknown_stable_is_not_asked_about_on_every_poll(db: Path) -> None:
    """A 404 is remembered: neither polls nor the refresher ask Prometheus again at once."""
    from tests.integration._prometheus import StubServer, json_reply

    empty = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    with StubServer(lambda request: json_reply(empty)) as prometheus:
        source = PrometheusConfig(url=prometheus.url, timeout=2, retries=0)
        settings = settings_for(db, prometheus=source, refresh_interval=0.05)
        with RunningService(settings) as svc:
            body = {**PROMOTE.argo_body(), "stable": "s-typo"}
            assert svc.argo(body).status_code == 404
            asked = len(prometheus.requests)
            assert asked >= 1  # it was asked once: the store alone did not know the release
            for _ in range(5):
                assert svc.argo(body).status_code == 404
            time.sleep(0.5)  # ten refresh cycles
            assert len(prometheus.requests) == asked
