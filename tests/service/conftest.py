"""A real judge service on a loopback port, over a temporary DuckDB store seeded with events.

Every pair of releases is seeded with its own stable version, so one pair's stable
traffic never mixes with another's (which would look like a sample-ratio mismatch).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from canary_stats.service import Settings, create_app
from canary_stats.sources.synthetic import Regression, Workload, generate_events
from canary_stats.store import Store

from ..conftest import SEED_MANIFEST

TOKEN = "test-" + secrets.token_hex(16)
#: Seeded minutes of traffic, ending when the store is seeded.
MINUTES = 125
#: Stage 1 of the seed manifest: 10 % of traffic for at least 2 h, a guard stage.
STAGE = 1

#: Release pairs in the seeded store: (stable, canary).
HEALTHY = ("s-ok", "c-ok")
REGRESSED = ("s-bad", "c-bad")


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Scenario:
    """A release pair and a stage start that make the judge answer ``decision``."""

    decision: str
    stable: str
    canary: str
    minutes_in_stage: float

    def started(self) -> str:
        return iso(datetime.now(UTC) - timedelta(minutes=self.minutes_in_stage))

    def argo_body(self, **extra: Any) -> dict[str, Any]:
        body = {"stable": self.stable, "canary": self.canary, "stage": str(STAGE)}
        return {**body, "stage_started_at": self.started(), **extra}

    def metadata(self, **extra: str) -> dict[str, str]:
        meta = {"stable": self.stable, "canary": self.canary, "stage": str(STAGE)}
        return {**meta, "stage_started_at": self.started(), "token": TOKEN, **extra}


PROMOTE = Scenario("promote", *HEALTHY, minutes_in_stage=121)
HOLD = Scenario("hold", *HEALTHY, minutes_in_stage=10)  # minimum duration not reached
ROLLBACK = Scenario("rollback", *REGRESSED, minutes_in_stage=121)
SCENARIOS = {s.decision: s for s in (PROMOTE, HOLD, ROLLBACK)}


def flagger_payload(metadata: dict[str, str], phase: str = "Progressing") -> dict[str, Any]:
    return {
        "name": "research-agent",
        "namespace": "agents",
        "phase": phase,
        "checksum": "abc123",
        "metadata": metadata,
    }


class RunningService:
    """uvicorn serving one app in a thread, on a socket bound before it starts."""

    def __init__(self, settings: Settings, **app_options: Any) -> None:
        self.settings = settings
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.app = create_app(settings, **app_options)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the judge service did not start")
            time.sleep(0.01)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def argo(self, body: dict[str, Any], token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.post("/v1/judge/argo", json=body, headers=headers)

    def flagger(self, hook: str, payload: dict[str, Any]) -> httpx.Response:
        return self.client.post(f"/v1/judge/flagger/{hook}", json=payload)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        for family in text_string_to_metric_families(self.client.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0


def _seed(path: Path) -> None:
    start = datetime.now(UTC) - timedelta(minutes=MINUTES)
    with Store(path) as store:
        for (stable, canary), regression, seed in (
            (HEALTHY, None, 1),
            (REGRESSED, Regression(success_drop=0.05), 31),
        ):
            df = generate_events(
                Workload(),
                canary_share=0.10,
                duration=timedelta(minutes=MINUTES),
                start=start,
                regression=regression,
                rng=np.random.default_rng(seed),
            )
            df["release"] = np.where(df["cohort"] == "canary", canary, stable)
            df["request_id"] = canary + "-" + df["request_id"]
            store.ingest_events(df, source=f"seed {canary}")


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "seed.duckdb"
    _seed(path)
    return path


@pytest.fixture
def db(seeded_store: Path, tmp_path: Path) -> Path:
    """A private copy of the seeded store (the service owns its file)."""
    path = tmp_path / "judge.duckdb"
    shutil.copy(seeded_store, path)
    return path


def settings_for(db: Path, **options: Any) -> Settings:
    return Settings(db=db, manifest=SEED_MANIFEST, token=SecretStr(TOKEN), **options)


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, seeded_store: Path
) -> Iterator[RunningService]:
    """One service shared by the tests that do not change its settings."""
    path = tmp_path_factory.mktemp("judge") / "judge.duckdb"
    shutil.copy(seeded_store, path)
    with RunningService(settings_for(path)) as running:
        yield running
