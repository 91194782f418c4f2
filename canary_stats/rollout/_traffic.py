"""Simulated agent traffic through the sticky router, in simulated time.

The demo and the end-to-end tests drive the executor with it: `SimulatedTraffic.now`
is the executor's clock and `SimulatedTraffic.advance` its ``sleep``, so waiting
for the next check generates that much traffic instead. A rollout planned over
hours then runs in seconds, through the same router, store and judge as a real one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ..sources.synthetic import Regression, Workload, events_frame, generate_tasks
from ..store import Store
from ._router import Router

__all__ = ["SimulatedTraffic"]


class SimulatedTraffic:
    """Tasks from a population of users, routed by ``router`` and written to the store.

    Parameters
    ----------
    router : Router
        Sends each task to stable or canary by its user's bucket; the backend
        moves its weight as the rollout goes.
    store_path : path
        The DuckDB store the events go to (opened for each batch, as the
        executor opens it for each check).
    start : datetime
        Simulated time of the first task.
    workload : Workload
        Traffic volume and the stable release's metric distributions.
    behaviour : mapping of version to Regression
        How a release differs from the workload when it is the canary
        (releases not named behave like stable).
    users : int
        Size of the user population (ids ``user-0`` ...).
    rng : Generator or int, optional
        Seed of the traffic.
    """

    def __init__(
        self,
        router: Router,
        store_path: str | Path,
        *,
        start: datetime,
        workload: Workload | None = None,
        behaviour: Mapping[str, Regression] | None = None,
        users: int = 50_000,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("`start` must be timezone-aware (UTC).")
        self.router = router
        self.store_path = Path(store_path)
        self.workload = workload or Workload()
        self.behaviour = dict(behaviour or {})
        self.tasks = 0
        self._users = np.array([f"user-{i}" for i in range(users)], dtype=object)
        self._rng = np.random.default_rng(rng)
        # Request ids unique across runs that share a store (ingestion drops repeats).
        self._prefix = f"sim{self._rng.integers(1 << 48):012x}"
        self._start = start
        self._now = start

    def now(self) -> datetime:
        """The simulated time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of traffic happen and store it; the clock moves on by as much."""
        if not math.isfinite(seconds) or seconds <= 0:
            return
        events = self._events(seconds / 60.0)
        if len(events):
            with Store(self.store_path) as store:
                store.ingest_events(events, source="simulated agent traffic")
        self._now += timedelta(seconds=seconds)

    def _events(self, minutes: float) -> pd.DataFrame:
        router, gen = self.router, self._rng
        users: list[np.ndarray] = []

        def assign(n: int) -> np.ndarray:
            users.append(self._users[gen.integers(len(self._users), size=n)])
            canary, _ = router.route_many(users[0])
            return canary

        period = self.workload.diurnal_period.total_seconds() / 60.0
        elapsed = (self._now - self._start).total_seconds() / 60.0
        tasks = generate_tasks(
            self.workload,
            canary_share=0.0,
            minutes=minutes,
            regression=self.behaviour.get(router.canary),
            phase=2 * math.pi * elapsed / period,  # the diurnal cycle carries on
            rng=gen,
            assign=assign,
        )
        n = tasks.minute.size
        ids = np.arange(self.tasks, self.tasks + n)
        self.tasks += n
        events = events_frame(tasks, self._now)
        events["release"] = np.where(tasks.canary, router.canary, router.stable)
        events["user_id"] = users[0]
        events["request_id"] = [f"{self._prefix}-{i}" for i in ids]
        return events
