"""Repeated Argo polls answered before FastAPI; unknown stable releases are 404."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from canary_stats.service import JudgeService
from canary_stats.store import ReleaseRecord, Store

from .conftest import HOLD, PROMOTE, STAGE, TOKEN, RunningService, flagger_payload, settings_for

VERDICT_HEADERS = (
    "content-type",
    "x-canary-stats-cache",
    "x-canary-stats-computed-at",
    "x-canary-stats-stage-started-at",
)


def _post_raw(svc: RunningService, body: bytes, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return svc.client.post("/v1/judge/argo", content=body, headers=headers)


class _CountingRoute:
    """Counts calls of `JudgeService.cached`, which only the FastAPI route makes."""

    def __init__(self, service: JudgeService) -> None:
        self.calls = 0
        self._cached = service.cached
        service.cached = self  # type: ignore[method-assign]

    def __call__(self, *args: object) -> object:
        self.calls += 1
        return self._cached(*args)  # type: ignore[arg-type]


def test_a_repeated_body_is_answered_before_fastapi_with_the_same_answer(db: Path) -> None:
    request = PROMOTE.argo_body()
    body = json.dumps(request).encode()
    with RunningService(settings_for(db)) as svc:
        route = _CountingRoute(svc.app.state.service)
        first = _post_raw(svc, body)  # computed in FastAPI's route, which remembers the bytes
        assert route.calls == 1
        fast = _post_raw(svc, body)  # the same bytes: the fast path
        assert route.calls == 1
        # The same request in other bytes goes through FastAPI and hits its cache.
        routed = _post_raw(svc, json.dumps(request, indent=1).encode())
        assert route.calls == 2
    assert [r.status_code for r in (first, fast, routed)] == [200, 200, 200]
    assert first.headers["x-canary-stats-cache"] == "computed"
    assert routed.headers["x-canary-stats-cache"] == "hit"
    assert fast.content == routed.content == first.content
    for name in VERDICT_HEADERS:
        assert fast.headers[name] == routed.headers[name], name
    assert fast.json()["decision"] == "promote"


def test_the_fast_path_never_skips_the_token(db: Path) -> None:
    body = json.dumps(PROMOTE.argo_body()).encode()
    with RunningService(settings_for(db)) as svc:
        assert _post_raw(svc, body).status_code == 200
        for token in (None, "x" + TOKEN, TOKEN[:-1]):
            res = _post_raw(svc, body, token)
            assert res.status_code == 401, token
        lower = svc.client.post(
            "/v1/judge/argo",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": f"bearer {TOKEN}"},
        )
        assert lower.status_code == 200  # the scheme is case-insensitive (FastAPI's path)


def test_a_stale_verdict_is_not_served_by_the_fast_path(db: Path) -> None:
    body = json.dumps(HOLD.argo_body()).encode()
    settings = settings_for(db, refresh_interval=3600, stale_after=1e-6)
    with RunningService(settings) as svc:
        answers = [_post_raw(svc, body) for _ in range(3)]
    assert [a.headers["x-canary-stats-cache"] for a in answers] == ["computed"] * 3


def test_a_changed_body_goes_through_validation(db: Path) -> None:
    good = PROMOTE.argo_body()
    with RunningService(settings_for(db)) as svc:
        for _ in range(2):
            assert _post_raw(svc, json.dumps(good).encode()).status_code == 200
        bad = json.dumps({**good, "stage": 3}).encode()
        assert _post_raw(svc, bad).status_code == 422
        assert _post_raw(svc, b"{not json").status_code in (400, 422)


class TestUnknownReleases:
    def test_an_unknown_stable_is_404_naming_it(self, service: RunningService) -> None:
        res = service.argo({**PROMOTE.argo_body(), "stable": "s-typo"})
        assert res.status_code == 404, res.text
        assert "s-typo" in res.json()["detail"] and "stable" in res.json()["detail"]

    def test_an_unknown_stable_fails_flaggers_start_gate(self, service: RunningService) -> None:
        meta = {**PROMOTE.metadata(), "stable": "s-typo"}
        res = service.flagger("confirm-rollout", flagger_payload(meta))
        assert res.status_code == 404 and "s-typo" in res.json()["detail"]

    def test_a_canary_without_data_is_a_hold_not_an_error(self, service: RunningService) -> None:
        # At a stage's start the canary may not have finished a task yet.
        res = service.argo({**PROMOTE.argo_body(), "canary": "c-not-yet"})
        assert res.status_code == 200
        assert res.json()["decision"] == "hold"

    @pytest.mark.parametrize("how", ["registered", "events"])
    def test_a_stable_is_known_by_registration_or_data(self, db: Path, how: str) -> None:
        with Store(db) as store:
            if how == "registered":
                record = ReleaseRecord("research-agent", "s-registered", "0" * 64, "{}")
                store.register_release(record)
            else:
                renamed = "UPDATE events SET release = 's-registered' WHERE release = 's-ok'"
                store.con.execute(renamed)
        body = {"stable": "s-registered", "canary": "c-ok", "stage": STAGE}
        with RunningService(settings_for(db)) as svc:
            assert svc.argo(body).status_code == 200
