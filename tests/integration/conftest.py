"""A real Prometheus holding three hours of seeded, backfilled agent traffic.

Releases (values of the ``version`` label), all from 2025-03-03 06:00 UTC for 3 h
at about 200 tasks/min per pair, canary share 10 %:

- ``v1`` stable and ``v2`` a healthy canary (one `generate_events` run);
- ``v3`` a canary whose latencies are 1.5 times longer (another run's canary);
- ``f-stable`` / ``f-canary`` a healthy pair with injected faults (`FAULTS`).

The server is started once per session and always stopped at the end. Without
``prometheus``/``promtool`` the tests fail (``make test`` installs them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from canary_stats.simulate import LATENCY_BUCKETS
from canary_stats.sources.openmetrics import CounterReset, NaNSample, ScrapeGap
from canary_stats.sources.synthetic import Regression, Workload, generate_events

from ._prometheus import MISSING_BINARIES, PrometheusServer, backfill_events, prometheus_binaries

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
END = T0 + timedelta(hours=3)
WINDOW = timedelta(minutes=5)
#: Every fourth default bucket (about 12 % wide): a quarter of the series to backfill.
LATENCY_EDGES = LATENCY_BUCKETS[::4]

#: Faults of the ``f-*`` pair, each in its own stretch of the history.
RESET_AT = T0 + timedelta(minutes=62, seconds=30)  # inside the window 07:00-07:05
NAN_AT = T0 + timedelta(minutes=120)  # a window edge: both windows sharing it see NaN
GAP = (T0 + timedelta(minutes=150), T0 + timedelta(minutes=165))
FAULTS = (
    CounterReset("f-canary", RESET_AT),
    NaNSample("f-stable", NAN_AT, "agent_task_total"),
    ScrapeGap(*GAP, version="f-canary"),
)


@dataclass(frozen=True)
class History:
    url: str
    events: pd.DataFrame  # raw events with a ``release`` column

    def raw(self, stable: str, canary: str) -> pd.DataFrame:
        """The raw events of one stable/canary pair, cohorts as the judge sees them."""
        pair = self.events[self.events["release"].isin([stable, canary])].copy()
        pair["cohort"] = np.where(pair["release"] == stable, "stable", "canary")
        return pair.reset_index(drop=True)


def _events() -> pd.DataFrame:
    def run(
        seed: int, names: tuple[str, str], regression: Regression | None = None
    ) -> pd.DataFrame:
        ev = generate_events(
            Workload(),
            canary_share=0.10,
            duration=END - T0,
            start=T0,
            regression=regression,
            rng=np.random.default_rng(seed),
        )
        return ev.assign(release=np.where(ev["cohort"] == "stable", *names))

    healthy = run(21, ("v1", "v2"))
    slow = run(22, ("-", "v3"), Regression(latency_factor=1.5))
    faulty = run(23, ("f-stable", "f-canary"))
    both = pd.concat([healthy, slow[slow["release"] == "v3"], faulty], ignore_index=True)
    return both.assign(request_id=[f"req-{i:08d}" for i in range(len(both))])


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    if prometheus_binaries() is None:
        pytest.fail(MISSING_BINARIES, pytrace=False)
    events = _events()
    releases = sorted(events["release"].unique())
    tsdb = backfill_events(
        events,
        dict(zip(releases, releases, strict=True)),
        tmp_path_factory.mktemp("prometheus") / "tsdb",
        column="release",
        start=T0,
        end=END,
        latency_buckets=LATENCY_EDGES,
        faults=FAULTS,
    )
    with PrometheusServer(tsdb) as server:
        yield History(server.url, events)
