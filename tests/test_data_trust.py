"""What the judge trusts: untrustworthy windows are left out, a proven violation stays a
rollback, a window without tasks is data, a silent canary is named, and values beyond the
documented bounds are a hold, never a pass."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import canary_stats as cs
from canary_stats.demo import SEED_ROLLOUT
from canary_stats.errors import EventsError
from canary_stats.sources._pull import DataIssue, Pull
from canary_stats.sources.synthetic import Regression
from canary_stats.store import Store
from canary_stats.summary import LATENCY_MAX_MS, TOKENS_MAX

from .conftest import RELATIVE_ROLLOUT, SEED_MANIFEST, events, to_aggregates


def _seed() -> Path:
    return SEED_MANIFEST


EDGES = np.array([500.0, 1000, 2000, 4000, 8000, 16000, np.inf])


def _pull(df: pd.DataFrame, release: dict[str, str], *issues: DataIssue) -> Pull:
    frame = to_aggregates(df, EDGES, prometheus=True)
    frame["release"] = frame["cohort"].map(release)
    start, end = frame["window_start"].min(), frame["window_end"].max()
    return Pull(frame, issues, start=start.to_pydatetime(), end=end.to_pydatetime())


def _issue(frame: pd.DataFrame, index: int, kind: str = "nan") -> DataIssue:
    starts = sorted(frame["window_start"].unique())
    start = pd.Timestamp(starts[index]).to_pydatetime()
    return DataIssue(start, start + timedelta(minutes=5), "canary", kind, "test")


PAIR = {"stable": "v1", "canary": "v2"}


class TestAProvenViolationIsARollback:
    """Item 2: issues in some windows do not turn a proven violation into a hold."""

    def test_in_memory_pull(self, seed_policy: cs.Policy) -> None:
        df = events(regression=Regression(success_drop=0.05), seed=3)
        clean = _pull(df, PAIR)
        bad = _pull(df, PAIR, _issue(clean.aggregates, 3), _issue(clean.aggregates, 7, "partial"))
        verdict = cs.analyze(bad, seed_policy, stage=1, elapsed="2h")
        assert verdict.decision == "rollback", verdict.reason
        assert verdict.metrics["task_success_rate"].status == "fail"
        assert any("nan" in i for i in verdict.data_issues)
        # Without the violation, the same issues hold and are named.
        healthy = events(seed=3)
        fine = _pull(healthy, PAIR)
        held = cs.analyze(
            _pull(healthy, PAIR, _issue(fine.aggregates, 3)), seed_policy, stage=1, elapsed="2h"
        )
        assert held.decision == "hold" and "left out of the evidence" in held.reason
        # The window is really left out: its tasks are not counted.
        assert held.n_canary < cs.analyze(fine, seed_policy, stage=1, elapsed="2h").n_canary

    def test_through_the_store(self, seed_policy: cs.Policy, tmp_path: Path) -> None:
        df = events(regression=Regression(success_drop=0.05), seed=4)
        first, later = df[df["ts"] < df["ts"].min() + pd.Timedelta("60min")], df
        with Store(tmp_path / "s.duckdb") as store:
            store.ingest_pull(_pull(first, PAIR), source="t", **PAIR)
            pulled = _pull(later, PAIR)
            late = _issue(pulled.aggregates, -1, "partial")
            store.ingest_pull(_pull(later, PAIR, late), source="t", **PAIR)
            verdict = cs.analyze(store.select(**PAIR), seed_policy, stage=1, elapsed="2h")
        assert verdict.decision == "rollback", verdict.reason
        assert any("partial" in i for i in verdict.data_issues)


class TestSilentCanary:
    def _quiet_end(self) -> pd.DataFrame:
        df = events(minutes=90, seed=5)
        cut = df["ts"].min() + pd.Timedelta("60min")
        return df[(df["cohort"] == "stable") | (df["ts"] < cut)]

    def test_is_a_named_hold_by_default(self, seed_policy: cs.Policy, tmp_path: Path) -> None:
        df = self._quiet_end()
        for data in (df, _pull(df, PAIR)):
            verdict = cs.analyze(data, seed_policy, stage=1, elapsed="3h")
            assert verdict.decision == "hold"
            assert "canary silent for 3" in verdict.reason, verdict.reason
            assert verdict.data_issues == ()  # windows without canary tasks are no issue
        with Store(tmp_path / "s.duckdb") as store:
            store.ingest_pull(_pull(df, PAIR), source="t", **PAIR)
            stored = cs.analyze(store.select(**PAIR), seed_policy, stage=1, elapsed="3h")
            store.ingest_events(df.assign(release=df["cohort"].map(PAIR)), source="t")
            from_events = cs.analyze(
                store.select(**PAIR, source="events"), seed_policy, stage=1, elapsed="3h"
            )
        assert "canary silent" in stored.reason and "canary silent" in from_events.reason

    def test_rolls_back_where_the_rollout_says_so(self) -> None:
        policy = cs.Policy.from_dict({**SEED_ROLLOUT, "on_silent_canary": "rollback"})
        verdict = cs.analyze(self._quiet_end(), policy, stage=1, elapsed="3h")
        assert verdict.decision == "rollback" and "on_silent_canary" in verdict.reason

    def test_a_short_pause_at_low_traffic_is_not_silence(self, seed_policy: cs.Policy) -> None:
        df = events(share=0.01, minutes=60, seed=6)
        last = df.loc[df["cohort"] == "canary", "ts"].max()
        # At 1 % a few minutes without a canary task are expected; nothing is called silent.
        df = df[df["ts"] <= last + pd.Timedelta("1min")]
        assert "silent" not in cs.analyze(df, seed_policy, stage=0).reason


def test_a_clean_repull_replaces_the_windows_issues(seed_policy: cs.Policy, tmp_path: Path) -> None:
    """Item 3: issues of a pull that matched nothing do not outlive a clean re-pull."""
    df = events(seed=7)
    clean = _pull(df, PAIR)
    broken = Pull(
        clean.aggregates[clean.aggregates["cohort"] == "stable"],
        (_issue(clean.aggregates, 0, "partial"), _issue(clean.aggregates, 5, "gap")),
        start=clean.start,
        end=clean.end,
    )
    with Store(tmp_path / "s.duckdb") as store:
        store.ingest_pull(broken, source="t", **PAIR)
        assert store.count("data_issues") == 2
        store.ingest_pull(clean, source="t", **PAIR)
        assert store.count("data_issues") == 0
        verdict = cs.analyze(store.select(**PAIR), seed_policy, stage=1, elapsed="2h")
    assert verdict.data_issues == () and "cannot be trusted" not in verdict.reason


class TestBounds:
    """Item 1: values beyond the documented bounds never decide."""

    @pytest.mark.parametrize(("cohort", "value"), [("stable", 1e308), ("canary", 1e160)])
    def test_beyond_the_contract_is_refused(self, cohort: str, value: float) -> None:
        df = events(minutes=30, seed=8)
        df.loc[df.index[df["cohort"] == cohort][0], "tokens"] = value
        with pytest.raises(EventsError, match="tokens"):
            cs.analyze(df, cs.Policy.from_manifest(_seed()), stage=1)

    @pytest.mark.parametrize("cohort", ["stable", "canary"])
    def test_above_max_tokens_per_task_is_a_hold(self, seed_policy: cs.Policy, cohort: str) -> None:
        assert seed_policy.max_tokens_per_task == 100_000
        df = events(regression=Regression(success_drop=0.05), seed=9)
        assert cs.analyze(df, seed_policy, stage=1).decision == "rollback"
        df.loc[df.index[df["cohort"] == cohort][0], "tokens"] = 5e8
        verdict = cs.analyze(df, seed_policy, stage=1)
        assert verdict.decision == "hold"
        assert "above max_tokens_per_task (100000)" in verdict.reason

    def test_aggregates_with_impossible_token_sums_hold(self, seed_policy: cs.Policy) -> None:
        frame = _pull(events(seed=10), PAIR).aggregates
        sums = (frame["metric"] == "tokens_per_task") & (frame["field"] == "sum")
        frame.loc[sums & (frame["cohort"] == "stable"), "value"] = 1e300
        verdict = cs.analyze(frame.drop(columns="release"), seed_policy, stage=1, elapsed="2h")
        assert verdict.decision == "hold" and "cannot be trusted" in verdict.reason
        assert verdict.metrics["token_spend_delta"].status != "pass"

    def test_no_overflow_decides_in_the_statistics_layer(self) -> None:
        for stable, canary in ((1e308, 50.0), (50.0, 1e160), (1e308, 1e308)):
            for contrast in ("ratio", "difference"):
                r = cs.stats.mean_contrast(
                    100, stable, 1e300, 100, canary, 1e300, contrast=contrast,
                    margin=1.15 if contrast == "ratio" else 10.0, alternative="greater",
                )  # fmt: skip
                low, high = r.confidence_interval
                if r.status != "inconclusive":
                    assert np.isfinite([r.estimate, low if r.status == "fail" else high]).all()


# -- properties over frames at the edges of what the types allow ---------------------

_LATENCY = st.sampled_from([0.0, 1e-300, 1.0, 7999.0, 8000.0, 8001.0, LATENCY_MAX_MS])
_TOKENS = st.sampled_from([0.0, 1e-300, 1.0, 99_999.0, 100_000.0, TOKENS_MAX])
_SCORE = st.sampled_from([None, 0.0, 1e-300, 0.9, 1.0])
_ROW = st.tuples(st.sampled_from(["stable", "canary"]), st.booleans(), _LATENCY, _TOKENS, _SCORE)
_POLICIES = (cs.Policy.from_manifest(_seed()), cs.Policy.from_dict(RELATIVE_ROLLOUT))


def _frame(rows: list[tuple[str, bool, float, float, float | None]], repeat: int) -> pd.DataFrame:
    rows = rows * repeat  # ties: every value many times over
    t0 = pd.Timestamp("2026-11-20T10:00:00Z")
    return pd.DataFrame(
        {
            "ts": [t0 + pd.Timedelta(seconds=i) for i in range(len(rows))],
            "cohort": [r[0] for r in rows],
            "success": [r[1] for r in rows],
            "latency_ms": [r[2] for r in rows],
            "tokens": [r[3] for r in rows],
            "eval_score": pd.array([r[4] for r in rows], dtype="Float64"),
        }
    )


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_ROW, min_size=1, max_size=12), repeat=st.sampled_from([1, 7, 60]))
def test_no_decision_rests_on_a_non_finite_number(
    rows: list[tuple[str, bool, float, float, float | None]], repeat: int
) -> None:
    df = _frame(rows, repeat)
    for policy in _POLICIES:
        for stage in policy.analysed_stages:
            verdict = cs.analyze(df, policy, stage=stage, elapsed="6h")
            for g in verdict.metrics.values():
                if g.status in ("pass", "fail"):
                    side = g.low if (g.status == "fail") == (g.alternative == "greater") else g.high
                    assert np.isfinite([g.estimate, side]).all(), (g.name, g)
            if verdict.decision == "promote":
                assert all(g.enough_data for g in verdict.metrics.values()) or (
                    verdict.mode == "guard"
                )


@settings(max_examples=40, deadline=None)
@given(
    extra=st.lists(
        st.tuples(st.sampled_from(["stable", "canary"]), st.sampled_from([1e5 + 1, 5e8, 1e9])),
        min_size=1,
        max_size=5,
    ),
    seed=st.integers(0, 3),
)
def test_rows_beyond_the_bounds_never_turn_a_rollback_into_a_promote(
    extra: list[tuple[str, float]], seed: int
) -> None:
    policy = _POLICIES[0]
    df = events(minutes=60, regression=Regression(success_drop=0.06), seed=seed)
    assert cs.analyze(df, policy, stage=1, elapsed="2h").decision == "rollback"
    last = df.iloc[-1]
    added = pd.DataFrame(
        [{**last.to_dict(), "cohort": c, "tokens": t, "request_id": f"x{i}"}
         for i, (c, t) in enumerate(extra)]
    )  # fmt: skip
    verdict = cs.analyze(pd.concat([df, added], ignore_index=True), policy, stage=1, elapsed="2h")
    assert verdict.decision == "hold" and "max_tokens_per_task" in verdict.reason


@pytest.mark.slow
def test_a_healthy_canary_is_never_called_silent_at_any_look(seed_policy: cs.Policy) -> None:
    """Seeded: 1 % and 10 % traffic, a look every minute; no healthy canary is silent."""
    looks = silent = 0
    for seed, share in ((11, 0.01), (12, 0.01), (13, 0.10)):
        df = events(share=share, minutes=120, seed=seed)
        t0 = df["ts"].min()
        stage = 0 if share == 0.01 else 1
        for minute in range(6, 121):
            part = df[df["ts"] < t0 + pd.Timedelta(minutes=minute)]
            looks += 1
            silent += "silent" in cs.analyze(part, seed_policy, stage=stage).reason
    assert looks == 345 and silent == 0
