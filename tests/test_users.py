"""The user as the unit of assignment: the user_id rule, distinct users, design effects."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import canary_stats as cs
from canary_stats.errors import EventsError
from canary_stats.sources.files import load_events
from canary_stats.summary import DesignEffects, ratio_design_effect, validate_events

from .conftest import events, to_aggregates

FIX = "give every row one, or drop the column"


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return events(minutes=20, seed=5)


def clustered(n_users: int = 150, seed: int = 0, minutes: float = 60) -> pd.DataFrame:
    """Events whose users have their own success rate, latency and token habits (Zipf-active)."""
    rng = np.random.default_rng(seed)
    df = events(minutes=minutes, seed=seed + 1)
    w = np.arange(1, n_users + 1) ** -1.1
    user = rng.choice(n_users, size=len(df), p=w / w.sum())
    fail = 1 / (1 + np.exp(-(-3.0 + 1.2 * rng.standard_normal(n_users))))
    df["success"] = rng.random(len(df)) >= fail[user]
    df["latency_ms"] *= np.exp(0.5 * rng.standard_normal(n_users))[user]
    df["tokens"] = np.round(df["tokens"] * np.exp(0.6 * rng.standard_normal(n_users))[user])
    df["eval_score"] = np.clip(df["eval_score"] + 0.05 * rng.standard_normal(n_users)[user], 0, 1)
    df["user_id"] = pd.array([f"u{i:04d}" for i in user], dtype="str")
    return df


# -- the rule: every row a user id, or none ------------------------------------------


def _refused(df: pd.DataFrame, message: str) -> None:
    for read in (cs.summarize, validate_events):
        with pytest.raises(EventsError) as info:
            read(df)
        assert info.value.field == "user_id"
        assert message in str(info.value)


def test_rows_without_a_user_id_among_rows_with_one_are_refused(base: pd.DataFrame) -> None:
    df = base.assign(user_id=[f"u{i % 7}" for i in range(len(base))])
    df.loc[df.index[[3, 10, 11]], "user_id"] = None
    _refused(df, f"3 of {len(df):,} rows have no user id (e.g. row 4); {FIX}")


@pytest.mark.parametrize("blank", ["", " ", "\t", "\u00a0 "])
def test_empty_or_blank_user_ids_are_refused(base: pd.DataFrame, blank: str) -> None:
    df = base.assign(user_id=[f"u{i % 7}" for i in range(len(base))])
    df.loc[df.index[[2, 5]], "user_id"] = blank
    _refused(df, f"2 of {len(df):,} rows have an empty or blank user id (e.g. {blank!r} in row 3)")


def test_user_ids_must_be_text(base: pd.DataFrame) -> None:
    _refused(base.assign(user_id=np.arange(len(base))), "expected text")


def test_a_column_of_nulls_is_no_user_ids(base: pd.DataFrame) -> None:
    summary = cs.summarize(base.assign(user_id=None))
    assert math.isnan(summary.stable.users) and math.isnan(summary.canary.users)
    assert summary.canary.design == DesignEffects()
    table = validate_events(base.assign(user_id=None))
    assert table["user_id"].null_count == len(base)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_files_apply_the_rule_with_rows_counted_from_one(
    base: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    df = base.assign(
        ts=base["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        user_id=[f"u{i % 7}" for i in range(len(base))],
    )
    path = tmp_path / f"events{suffix}"

    def save(frame: pd.DataFrame) -> None:
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(path)
        else:
            frame.to_json(path, orient="records", lines=True)

    save(df)
    assert load_events(path)["user_id"].tolist() == df["user_id"].tolist()
    partial = df.copy()
    partial.loc[partial.index[[0, 8]], "user_id"] = None
    save(partial)
    with pytest.raises(EventsError, match=f"user_id: 2 of {len(df):,} rows have no user id "):
        load_events(path)
    blank = df.copy()
    blank.loc[blank.index[4], "user_id"] = "   "
    save(blank)
    with pytest.raises(EventsError, match=r"empty or blank user id \(e.g. '   ' in row 5\)"):
        load_events(path)
    save(df.assign(user_id=None))
    assert "user_id" not in load_events(path).columns  # null on every row: no user ids


# -- users and design effects ----------------------------------------------------------


def _direct(df: pd.DataFrame, cohort: str) -> tuple[float, dict[str, float]]:
    """Users and design effects by a direct pandas computation (the formula, spelled out)."""
    c = df[df["cohort"] == cohort]
    q = np.quantile(c["latency_ms"].to_numpy(), 0.95)
    scored = c["eval_score"].notna()
    per_user = (
        pd.DataFrame(
            {
                "user": c["user_id"],
                "m": 1.0,
                "success": c["success"].astype(float),
                "latency": (c["latency_ms"] > q).astype(float),
                "tokens": c["tokens"],
                "eval_score": c["eval_score"].fillna(0.0),
                "scored": scored.astype(float),
            }
        )
        .groupby("user")
        .sum()
    )

    def deff(y: pd.Series, m: pd.Series, values: pd.Series) -> float:
        users, total = (m > 0).sum(), m.sum()
        r = y.sum() / total
        cluster = users / (users - 1) * ((y - r * m) ** 2).sum() / total**2
        iid = values.var(ddof=1) / total
        return max(1.0, cluster / iid)

    return float(len(per_user)), {
        "success": deff(per_user["success"], per_user["m"], c["success"].astype(float)),
        "latency": deff(per_user["latency"], per_user["m"], (c["latency_ms"] > q).astype(float)),
        "tokens": deff(per_user["tokens"], per_user["m"], c["tokens"]),
        "eval_score": deff(per_user["eval_score"], per_user["scored"], c["eval_score"][scored]),
    }


def test_users_and_design_effects_equal_the_direct_computation() -> None:
    df = clustered()
    summary = cs.summarize(df)
    for name in ("stable", "canary"):
        got = getattr(summary, name)
        users, design = _direct(df, name)
        assert got.users == users
        for metric, value in design.items():
            assert getattr(got.design, metric) == pytest.approx(value, rel=1e-9), metric


def test_clustered_users_inflate_the_variance_and_iid_users_do_not() -> None:
    summary = cs.summarize(clustered())
    for c in (summary.stable, summary.canary):
        d = c.design
        assert d.success > 1.5 and d.latency > 1.5 and d.tokens > 1.5, d
    iid = events(minutes=60, seed=9)
    unique = cs.summarize(iid.assign(user_id=[f"t{i}" for i in range(len(iid))]))
    assert unique.stable.users == (iid["cohort"] == "stable").sum()
    for c in (unique.stable, unique.canary):  # one task a user: exactly the iid variance
        for metric in ("success", "latency", "tokens", "eval_score"):
            assert getattr(c.design, metric) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(4)  # many tasks a user, but tasks independent of users
    shared = cs.summarize(iid.assign(user_id=[f"u{i}" for i in rng.integers(0, 400, len(iid))]))
    for c in (shared.stable, shared.canary):
        for metric in ("success", "latency", "tokens", "eval_score"):
            assert 1.0 <= getattr(c.design, metric) < 1.35, (metric, c.design)


def test_design_effects_only_for_the_metrics_kept() -> None:
    summary = cs.summarize(clustered(), metrics={"stable": (), "canary": ("latency_ms",)})
    assert summary.stable.design.success > 1.5  # task and success counts are always kept
    assert summary.stable.design.latency == summary.stable.design.tokens == 1.0
    assert summary.canary.design.latency > 1.5 and summary.canary.design.tokens == 1.0


def test_a_cohort_without_tasks_has_no_users_and_no_inflation(base: pd.DataFrame) -> None:
    df = base[base["cohort"] == "stable"].assign(user_id="someone")
    summary = cs.summarize(df)
    assert summary.stable.users == 1.0 and summary.canary.users == 0.0
    assert summary.stable.design == summary.canary.design == DesignEffects()  # < 2 users


def test_aggregates_have_no_users(base: pd.DataFrame) -> None:
    agg = to_aggregates(base, np.array([1000.0, 2500.0, 5000.0, 10000.0, np.inf]), "5min")
    summary = cs.summarize(agg)
    assert math.isnan(summary.stable.users) and summary.canary.design == DesignEffects()
    windows = summary.window_tasks
    assert windows is not None and windows.shape == (4, 2)
    counts = base.groupby([base["ts"].dt.floor("5min"), "cohort"]).size().unstack()
    np.testing.assert_array_equal(windows, counts[["stable", "canary"]].to_numpy())


def test_window_tasks_count_each_clock_minute(base: pd.DataFrame) -> None:
    windows = cs.summarize(base).window_tasks
    assert windows is not None
    minute = base["ts"].dt.floor("min")
    counts = base.groupby([minute, "cohort"]).size().unstack(fill_value=0)
    full = counts.reindex(pd.date_range(minute.min(), minute.max(), freq="min"), fill_value=0)
    np.testing.assert_array_equal(windows, full[["stable", "canary"]].to_numpy())


# -- the vectorised helper ---------------------------------------------------------------


def test_ratio_design_effect_over_looks_equals_each_look() -> None:
    rng = np.random.default_rng(11)
    looks, users = 7, 300
    m = rng.poisson(rng.gamma(0.5, 8.0, size=(looks, users)))
    p = rng.beta(8, 2, size=users)
    y = rng.binomial(m, p)
    tok_var = rng.uniform(1e5, 1e6, size=looks)
    together = ratio_design_effect(y, m)
    tokens = ratio_design_effect(y * 3000.0, m, task_var=tok_var)
    assert together.shape == tokens.shape == (looks,)
    for k in range(looks):
        assert together[k] == ratio_design_effect(y[k], m[k])
        assert tokens[k] == ratio_design_effect(y[k] * 3000.0, m[k], task_var=tok_var[k])
    assert np.all(together > 1.0)  # users differ in success: clustering
    np.testing.assert_array_equal(ratio_design_effect(y.T, m.T, axis=0), together)


def test_ratio_design_effect_edge_cases() -> None:
    assert ratio_design_effect([5.0], [9.0]) == 1.0  # one user: nothing to estimate
    assert ratio_design_effect([0.0, 0.0], [3.0, 4.0]) == 1.0  # no variation
    assert ratio_design_effect([], []) == 1.0
    # a padded array: users with no tasks count for nothing
    y, m = np.array([1.0, 3.0, 0.0, 2.0]), np.array([4.0, 5.0, 0.0, 6.0])
    assert ratio_design_effect(y, m) == ratio_design_effect(y[[0, 1, 3]], m[[0, 1, 3]])
