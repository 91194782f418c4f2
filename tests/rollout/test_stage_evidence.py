"""The executor's judges keep evidence across the stages of one rollout, and only of it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from canary_stats.rollout import HttpJudge, StoreJudge
from canary_stats.rollout._state import fold
from canary_stats.sources.synthetic import Workload, generate_events
from canary_stats.store import Store
from canary_stats.store._rollouts import TransitionRecord

from ._crash_child import RID, T0


def _t(seq: int, state: str, stage: int | None) -> TransitionRecord:
    return TransitionRecord(RID, seq, T0 + timedelta(minutes=10 * seq), state, stage, 1.0, {})


def test_stage_starts_come_from_this_rollouts_transitions() -> None:
    log = [
        _t(1, "started", None),
        _t(2, "stage_started", 0),
        _t(3, "promoted", 0),
        _t(4, "stage_started", 1),
        _t(5, "stage_started", 2),
    ]
    assert fold(RID, log).stage_starts == tuple(T0 + timedelta(minutes=m) for m in (20, 40, 50))
    # Back to stage 1 (a human, or a re-run): stage 2's earlier attempt is dropped.
    again = fold(RID, [*log, _t(6, "stage_started", 1)])
    assert again.stage_starts == (T0 + timedelta(minutes=20), T0 + timedelta(minutes=60))
    assert fold(RID, [_t(1, "started", None)]).stage_starts == (None,)


def _two_stages(db: Path) -> None:
    """Stage 0 (1 %) for 30 minutes from T0, then stage 1 (10 %) for an hour."""
    with Store(db) as store:
        for share, start, minutes, seed in (
            (0.01, T0, 30, 1),
            (0.10, T0 + timedelta(minutes=30), 60, 2),
        ):
            df = generate_events(
                Workload(), canary_share=share, duration=timedelta(minutes=minutes), start=start,
                rng=np.random.default_rng(seed),
            )  # fmt: skip
            df["release"] = np.where(df["cohort"] == "canary", "v2", "v1")
            df["request_id"] = f"s{seed}-" + df["request_id"].astype(str)
            store.ingest_events(df)


def test_store_judge_multiplies_the_earlier_stages_evidence(
    tmp_path: Path, seed_policy: Any
) -> None:
    db = tmp_path / "s.duckdb"
    _two_stages(db)
    judge = StoreJudge(db, seed_policy)
    ask: dict[str, Any] = {"stable": "v1", "canary": "v2", "stage": 1}
    ask["now"] = T0 + timedelta(minutes=90)
    began = T0 + timedelta(minutes=30)
    kept = judge(**ask, stage_started_at=began, stage_starts=[T0])
    fresh = judge(**ask, stage_started_at=began)
    # A start after the current stage's belongs to another rollout: evidence starts fresh.
    broken = judge(**ask, stage_started_at=began, stage_starts=[began + timedelta(minutes=1)])
    for name, m in kept["metrics"].items():
        assert "evidence kept over 2 stages" in m["method"], name
        assert m["n_canary"] > fresh["metrics"][name]["n_canary"], name
        assert "over 2 stages" not in fresh["metrics"][name]["method"]
    assert broken["metrics"] == fresh["metrics"]


def test_http_judge_sends_the_earlier_starts() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"decision": "hold", "reason": "hold: wait."})

    with HttpJudge("http://judge.test", None, transport=httpx.MockTransport(handler)) as judge:
        judge(stable="v1", canary="v2", stage=2, stage_started_at=T0, now=T0,
              stage_starts=[T0 - timedelta(hours=3)])  # fmt: skip
        judge(stable="v1", canary="v2", stage=1, stage_started_at=T0, now=T0)
    assert seen[0]["stage_starts"] == [
        pd.Timestamp(T0 - timedelta(hours=3)).isoformat().replace("+00:00", "Z"),
        None,
    ]
    assert "stage_starts" not in seen[1]
