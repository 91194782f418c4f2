"""Shared fixtures: the seed manifest, policies and small synthetic event sets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import canary_stats as cs
from canary_stats.demo import SEED_ROLLOUT, DemoOutcome, run_demo
from canary_stats.sources.synthetic import Regression, Workload, generate_events

ROOT = Path(__file__).resolve().parents[1]
SEED_MANIFEST = ROOT / "examples" / "research-agent.manifest.yaml"

#: The seed's rollout plan with guardrails relative to stable instead of absolute limits.
RELATIVE_ROLLOUT = {
    "stages": SEED_ROLLOUT["stages"],
    "guardrails": {
        "task_success_rate": {"max_drop": 0.02},
        "p95_latency_ms": {"max_ratio": 1.2},
        "tokens_per_task": {"max_ratio": 1.15},
        "eval_score": {"max_drop": 0.03},
    },
}


@pytest.fixture
def seed_policy() -> cs.Policy:
    return cs.Policy.from_manifest(SEED_MANIFEST)


@pytest.fixture
def relative_policy() -> cs.Policy:
    return cs.Policy.from_dict(RELATIVE_ROLLOUT)


def events(
    share: float = 0.10,
    minutes: float = 120,
    regression: Regression | None = None,
    seed: int = 1,
) -> pd.DataFrame:
    return generate_events(
        Workload(),
        canary_share=share,
        duration=timedelta(minutes=minutes),
        regression=regression,
        rng=np.random.default_rng(seed),
    )


#: Token and eval-score buckets for Prometheus-style aggregates (no sum of squares).
TOKEN_BUCKETS = np.append(np.geomspace(100, 200_000, 120), np.inf)
EVAL_BUCKETS = np.append(np.linspace(0.05, 1.0, 20), np.inf)


def _cumulative(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(x), edges, side="right")


def to_aggregates(
    df: pd.DataFrame, edges: np.ndarray, window: str = "5min", *, prometheus: bool = False
) -> pd.DataFrame:
    """Bin raw events into non-overlapping windows, Prometheus style (cumulative buckets).

    With ``prometheus=True`` tokens and eval scores come as histograms (count, sum and
    buckets, no sum of squares), as a Prometheus pull delivers them.
    """
    rows = []
    ts = pd.to_datetime(df["ts"], utc=True)
    start = ts.dt.floor(window)
    width = pd.Timedelta(window)
    for (w, cohort), g in df.assign(_w=start).groupby(["_w", "cohort"]):
        end = w + width
        base = {"window_start": w, "window_end": end, "cohort": cohort, "le": np.nan}
        rows.append({**base, "metric": "tasks", "field": "count", "value": len(g)})
        rows.append(
            {**base, "metric": "tasks", "field": "success", "value": int(g["success"].sum())}
        )
        lat = g["latency_ms"].to_numpy()
        for le, count in zip(edges, _cumulative(lat, edges), strict=True):
            rows.append(
                {**base, "metric": "latency_ms", "field": "bucket", "le": le, "value": count}
            )
        tok = g["tokens"].to_numpy(dtype=float)
        score = g["eval_score"].dropna().to_numpy(dtype=float)
        for metric, x, bounds in (
            ("tokens_per_task", tok, TOKEN_BUCKETS),
            ("eval_score", score, EVAL_BUCKETS),
        ):
            rows.append({**base, "metric": metric, "field": "count", "value": x.size})
            rows.append({**base, "metric": metric, "field": "sum", "value": x.sum()})
            if not prometheus:
                rows.append({**base, "metric": metric, "field": "sum_sq", "value": (x * x).sum()})
                continue
            for le, count in zip(bounds, _cumulative(x, bounds), strict=True):
                rows.append({**base, "metric": metric, "field": "bucket", "le": le, "value": count})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class DemoRun:
    """The demo's store after one full run (shared: the run takes about half a minute)."""

    db: Path
    outcomes: list[DemoOutcome]
    text: str


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    db = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    console = Console(record=True, width=120)
    outcomes = run_demo(db=db, console=console)
    return DemoRun(db, outcomes, console.export_text())
