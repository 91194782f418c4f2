"""Bad input: a clear error naming the field, or a hold for missing data."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import canary_stats as cs
from canary_stats.errors import EventsError
from canary_stats.summary import validate_events
from canary_stats.summary._checks import cohort_codes

from .conftest import events


def _bad(df: pd.DataFrame, field: str, message: str) -> None:
    with pytest.raises(EventsError) as info:
        cs.summarize(df)
    assert info.value.field == field
    assert message in str(info.value)


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return events(minutes=10, seed=3)


def test_unknown_cohort_label(base: pd.DataFrame) -> None:
    df = base.copy()
    df.loc[df.index[:3], "cohort"] = "baseline"
    _bad(df, "cohort", "unknown labels ['baseline']")


@pytest.mark.parametrize(
    ("column", "expected"),
    [("latency_ms", "expected in [0, 6.048e+08] (the data contract's bound: a task takes at "
      "most a week)"),
     ("tokens", "expected in [0, 1e+09] (the data contract's bound on one task's tokens)")],
)  # fmt: skip
@pytest.mark.parametrize("value", [np.nan, -1.0, np.inf, 1e308, 1e160])
def test_nan_negative_or_beyond_the_contract(
    base: pd.DataFrame, column: str, expected: str, value: float
) -> None:
    df = base.copy()
    df.loc[df.index[5], column] = value
    _bad(df, column, f"1 rows are NaN, infinite or out of range; {expected}")
    with pytest.raises(EventsError, match=column):
        validate_events(df)  # what the store ingests: refused the same way


def test_eval_scores_outside_unit_interval(base: pd.DataFrame) -> None:
    df = base.copy()
    df.loc[df.index[:2], "eval_score"] = [1.5, -0.1]
    _bad(df, "eval_score", "2 rows are out of range; expected in [0, 1]")


def test_missing_eval_scores_are_fine(base: pd.DataFrame) -> None:
    df = base.copy()
    df["eval_score"] = np.nan
    s = cs.summarize(df)
    assert s.canary.eval_score.n == 0 and s.canary.tasks > 0


def test_duplicated_request_ids(base: pd.DataFrame) -> None:
    df = pd.concat([base, base.iloc[:4]])
    _bad(df, "request_id", "4 duplicated values")


def test_missing_column_and_bad_success(base: pd.DataFrame) -> None:
    _bad(base.drop(columns="latency_ms"), "latency_ms", "missing column")
    df = base.copy()
    df["success"] = df["success"].astype(object)
    df.loc[df.index[0], "success"] = None
    _bad(df, "success", "1 rows are missing")
    df = base.copy()
    df["success"] = 2
    _bad(df, "success", "expected booleans")


def test_unsorted_and_duplicated_timestamps_give_the_same_summary(base: pd.DataFrame) -> None:
    shuffled = base.sample(frac=1.0, random_state=1)
    shuffled.loc[shuffled.index[:10], "ts"] = shuffled["ts"].iloc[0]  # ties are legitimate
    shuffled["ts"] = base["ts"].sample(frac=1.0, random_state=2).to_numpy()
    a, b = cs.summarize(base), cs.summarize(shuffled)
    assert a.canary.tasks == b.canary.tasks and a.stable.successes == b.stable.successes
    assert np.sort(a.canary.latency).tolist() == np.sort(b.canary.latency).tolist()  # type: ignore[arg-type]


def test_bad_timestamps(base: pd.DataFrame) -> None:
    df = base.copy()
    df["ts"] = "yesterday-ish"
    _bad(df, "ts", "expected UTC timestamps")


def test_overlapping_aggregate_windows_are_rejected() -> None:
    row = {"cohort": "canary", "metric": "tasks", "field": "count", "le": np.nan, "value": 5}
    df = pd.DataFrame(
        [
            {**row, "window_start": "2026-01-01T00:00Z", "window_end": "2026-01-01T00:05Z"},
            {**row, "window_start": "2026-01-01T00:03Z", "window_end": "2026-01-01T00:08Z"},
        ]
    )
    _bad(df, "window_start", "windows overlap")


def test_nan_aggregates_are_a_hold_not_an_error(seed_policy: cs.Policy) -> None:
    rows = []
    for cohort, n in (("stable", 9000), ("canary", 1000)):
        base = {
            "window_start": "2026-01-01T00:00Z",
            "window_end": "2026-01-01T02:00Z",
            "cohort": cohort,
        }
        rows += [
            {**base, "metric": "tasks", "field": "count", "le": np.nan, "value": n},
            {**base, "metric": "tasks", "field": "success", "le": np.nan, "value": np.nan},
        ]
    verdict = cs.analyze(pd.DataFrame(rows), seed_policy, stage=1)
    assert verdict.decision == "hold"
    assert "NaN" in verdict.reason and "cannot be trusted" in verdict.reason


@pytest.mark.parametrize("dtype", ["str", "object", "category"])
def test_cohort_column_types_give_the_same_summary(base: pd.DataFrame, dtype: str) -> None:
    ref = cs.summarize(base)
    got = cs.summarize(base.assign(cohort=base["cohort"].astype(dtype)))
    assert (got.canary.tasks, got.stable.successes) == (ref.canary.tasks, ref.stable.successes)
    assert got.canary.tokens == ref.canary.tokens


@pytest.mark.parametrize("dtype", ["str", "object", "category"])
def test_missing_or_unknown_cohorts_name_the_field(base: pd.DataFrame, dtype: str) -> None:
    df = base.assign(cohort=base["cohort"].astype(object))
    df.loc[df.index[0], "cohort"] = None
    _bad(df.assign(cohort=df["cohort"].astype(dtype)), "cohort", "1 rows have no cohort")
    df.loc[df.index[0], "cohort"] = "blue"
    _bad(df.assign(cohort=df["cohort"].astype(dtype)), "cohort", "unknown labels ['blue']")
    empty = pd.Series(pd.Categorical([None] * len(df)), index=df.index)
    _bad(df.assign(cohort=empty), "cohort", "rows have no cohort")


def test_pooled_moments_equal_the_moments_of_both_samples() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.lognormal(8, 0.5, 500), rng.lognormal(8.2, 0.3, 70)
    pooled = cs.Moments.from_values(a).pooled(cs.Moments.from_values(b))
    both = cs.Moments.from_values(np.concatenate([a, b]))
    assert pooled.n == both.n
    assert pooled.mean == pytest.approx(both.mean, rel=1e-12)
    assert pooled.var == pytest.approx(both.var, rel=1e-10)
    empty = cs.Moments.from_values(np.empty(0))
    assert empty.pooled(both) is both and both.pooled(empty) is both


# Labels that share the six-byte width of 'stable' and 'canary' (or come close) probe
# the fast path that reads Arrow's string buffers; object dtype is the reference.
_LABELS = ["stable", "canary", "shadow", "stabl", "stable ", "Canary", "ñanar", "", None]


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(st.sampled_from(_LABELS), min_size=1, max_size=40),
    cut=st.integers(0, 5),
    chunks=st.integers(1, 3),
)
def test_cohort_codes_of_arrow_strings_match_the_general_path(
    labels: list[str | None], cut: int, chunks: int
) -> None:
    # A slice starts the Arrow array at an offset; concatenation makes several chunks.
    parts = [pd.Series(labels, dtype="str").iloc[cut:]] * chunks
    fast = pd.concat(parts, ignore_index=True)
    reference = fast.astype(object)
    try:
        expected = cohort_codes(reference)
    except EventsError as error:
        with pytest.raises(EventsError, match=re.escape(str(error))):
            cohort_codes(fast)
    else:
        assert cohort_codes(fast).tolist() == expected.tolist()


@pytest.mark.parametrize("value", [-np.inf, np.inf, -0.5, 1.5])
def test_nullable_scores_reject_infinities_and_values_outside_the_range(
    base: pd.DataFrame, value: float
) -> None:
    df = base.assign(eval_score=np.nan)  # all missing, except one bad value
    df.loc[df.index[7], "eval_score"] = value
    _bad(df, "eval_score", "1 rows are out of range; expected in [0, 1]")


def test_moments_centre_in_place_only_when_allowed() -> None:
    x = np.random.default_rng(5).lognormal(8, 0.5, 1_001)
    kept = x.copy()
    ref = cs.Moments.from_values(x)
    assert np.array_equal(x, kept)  # the caller's sample is untouched by default
    assert ref.var == pytest.approx(np.var(kept), rel=1e-12)
    assert cs.Moments.from_values(x, overwrite_input=True) == ref
    assert not np.array_equal(x, kept)  # scratch: reused for the centred squares
