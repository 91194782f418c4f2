"""Where the executor's verdicts come from: the store in this process, or the service.

A judge is any callable taking the release pair, the stage, when it began and
when the rollout's earlier stages began (the evidence of all of them is kept),
returning the verdict's JSON form (``Verdict.to_dict()``). A judge that cannot
answer raises a `CanaryStatsError` (e.g. `SourceUnavailable`); the executor counts
that as a hold and acts after several in a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from .._stages import earlier_views, history_before, rollout_start
from ..errors import SourceResponseError, SourceUnavailable
from ..judge import analyze
from ..policy import Policy
from ..store import Store
from ._state import with_store

__all__ = ["HttpJudge", "Judge", "StoreJudge"]


class Judge(Protocol):
    """Asked once per check; returns a verdict dict (``decision``, ``reason``, ...)."""

    def __call__(
        self,
        *,
        stable: str,
        canary: str,
        stage: int,
        stage_started_at: datetime,
        now: datetime,
        stage_starts: Sequence[datetime | None] = (),
    ) -> dict[str, Any]: ...


class StoreJudge:
    """`analyze` on the store's data since the stage began; the verdict is logged there.

    Given a path, the store is opened for each check only (the manual command CLI
    needs the file between checks); given an open `Store`, that one is used.
    """

    def __init__(self, store: str | Path | Store, policy: Policy) -> None:
        self.store = store
        self.policy = policy

    def __call__(
        self,
        *,
        stable: str,
        canary: str,
        stage: int,
        stage_started_at: datetime,
        now: datetime,
        stage_starts: Sequence[datetime | None] = (),
    ) -> dict[str, Any]:
        # A clock that went backwards is zero time in the stage, never negative.
        elapsed = max(now - stage_started_at, timedelta(0))

        def check(store: Store) -> dict[str, Any]:
            view = store.select(stable=stable, canary=canary, start=stage_started_at)
            earlier = earlier_views(
                store, stable=stable, canary=canary, starts=_padded(stage_starts, stage),
                current=stage_started_at,
            )  # fmt: skip
            history = history_before(
                view, rollout_start(earlier, stage_started_at), self.policy.user_history
            )
            return analyze(
                view, self.policy, stage=stage, elapsed=elapsed, earlier=earlier, history=history
            ).to_dict()

        if isinstance(self.store, Store):
            return check(self.store)
        return with_store(self.store, check)


class HttpJudge:
    """The project's judge service: ``POST {url}/v1/judge/argo`` with a bearer token.

    Any transport error or non-2xx answer raises `SourceUnavailable` naming the URL;
    a 2xx body that is not a verdict raises `SourceResponseError`. ``transport`` is
    for tests (``httpx.MockTransport``).
    """

    PATH = "/v1/judge/argo"

    def __init__(
        self, url: str, token: str | None, timeout: float = 10.0, *, transport: Any = None
    ) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - httpx ships with the service extras
            raise SourceUnavailable(url, "the HTTP judge needs httpx: pip install httpx") from None
        base = url.rstrip("/")
        self.url = base if base.endswith(self.PATH) else base + self.PATH
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)
        self._httpx = httpx

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(
        self,
        *,
        stable: str,
        canary: str,
        stage: int,
        stage_started_at: datetime,
        now: datetime,
        stage_starts: Sequence[datetime | None] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "stable": stable, "canary": canary, "stage": stage,
            "stage_started_at": _stamp(stage_started_at),
        }  # fmt: skip
        if any(s is not None for s in stage_starts):
            body["stage_starts"] = [
                None if s is None else _stamp(s) for s in _padded(stage_starts, stage)
            ]
        try:
            response = self._client.post(self.url, json=body)
        except self._httpx.HTTPError as exc:
            raise SourceUnavailable(self.url, f"{type(exc).__name__}: {exc}") from None
        if not response.is_success:
            detail = response.text[:500].strip()
            raise SourceUnavailable(
                self.url, f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
            )
        try:
            verdict = response.json()
        except ValueError:
            raise SourceResponseError(self.url, "the answer is not JSON") from None
        if not isinstance(verdict, dict) or verdict.get("decision") not in (
            "promote",
            "hold",
            "rollback",
        ):
            raise SourceResponseError(
                self.url, "expected a verdict with decision promote, hold or rollback"
            )
        return verdict


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _padded(starts: Sequence[datetime | None], stage: int) -> list[datetime | None]:
    """One start (or None) per earlier stage ``0 .. stage - 1``."""
    got = list(starts)[:stage]
    return got + [None] * (stage - len(got))
