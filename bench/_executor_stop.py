"""Through the executor: a rollback verdict, its write-ahead record in DuckDB, canary at 0.

`bench.rollout` times the backend's stop alone; this times what a real rollout
does around it. A scripted judge promotes the first stage and answers rollback in
the second; the time runs from the moment it returns until the local backend's stop
has returned (the ``rolling_back`` transition written to the store first, as always).
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

import canary_stats as cs
from canary_stats.demo import DEMO_RELEASES, write_manifests
from canary_stats.manifest import load_manifest, register_manifest
from canary_stats.rollout import LocalBackend, RolloutExecutor, Router
from canary_stats.sources.synthetic import Regression, Workload, generate_events
from canary_stats.store import Store

__all__ = ["executor_stops"]


def _rollback_verdict() -> dict[str, Any]:
    """A real rollback verdict (what the judge would return)."""
    events = generate_events(
        Workload(), canary_share=0.5, duration=timedelta(hours=1),
        regression=Regression(success_drop=0.05), rng=np.random.default_rng(3),
    )  # fmt: skip
    manifest = Path(__file__).resolve().parents[1] / "examples" / "research-agent.manifest.yaml"
    verdict = cs.analyze(events, cs.Policy.from_manifest(manifest), stage=1).to_dict()
    assert verdict["decision"] == "rollback", verdict["reason"]
    return verdict


class _Stamped(LocalBackend):
    """The local backend, noting when its stop returned."""

    stopped_at = 0.0

    def stop_canary(self, *, drain_timeout: float) -> bool:
        drained = super().stop_canary(drain_timeout=drain_timeout)
        self.stopped_at = time.perf_counter()
        return drained


def executor_stops(repeats: int) -> list[float]:
    """Seconds from the judge's rollback answer to the canary at 0, per run."""
    verdict = _rollback_verdict()
    promote = {**verdict, "decision": "promote", "reason": "promote: stage passed"}
    return [_one_run(verdict, promote) for _ in range(repeats)]


def _one_run(rollback: dict[str, Any], promote: dict[str, Any]) -> float:
    base, canary, _ = DEMO_RELEASES
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        manifests = write_manifests(Path(tmp) / "releases")
        db = Path(tmp) / "store.duckdb"
        with Store(db) as store:
            register_manifest(store, load_manifest(manifests[base.version]))
            store.set_release_status("research-agent", base.version, "stable")
        router = Router(stable=base.version, canary=canary.version)
        backend = _Stamped(router)
        answered = 0.0

        def judge(*, stage: int, **_: object) -> dict[str, Any]:
            nonlocal answered
            answered = time.perf_counter()
            return rollback if stage == 1 else promote

        hours = iter(range(100))
        start = datetime(2026, 11, 23, 9, tzinfo=UTC)
        with RolloutExecutor(
            manifests[canary.version], store_path=db, backend=backend, judge=judge,
            clock=lambda: start + timedelta(hours=next(hours)), sleep=lambda _: None,
        ) as executor:  # fmt: skip
            while not executor.tick().done:
                pass
        assert not router.accepting_canary and router.weight == 0
        return backend.stopped_at - answered
