"""`build_report`: read one ISO week of a store into a `WeeklyReport`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ..errors import InputError, StoreError
from ..store import Store
from ._effects import read_effects, read_headroom
from ._health import latest_activity, read_baseline, read_health
from ._model import WeeklyReport
from ._rollouts import read_rollbacks, read_rollouts
from ._week import IsoWeek, parse_week

__all__ = ["DEFAULT_CONFIDENCE", "DEFAULT_RESAMPLES", "build_report"]

#: Confidence level of the effect-size intervals, stated in the report.
DEFAULT_CONFIDENCE = 0.95
#: Bootstrap replicates per effect size: enough for 95 % percentile intervals and
#: quick on a week of a few hundred thousand tasks.
DEFAULT_RESAMPLES = 1_000


def build_report(
    store_or_path: Store | str | Path,
    week: str | IsoWeek | None = None,
    *,
    rng: int = 0,
    confidence_level: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    now: datetime | None = None,
) -> WeeklyReport:
    """Read the weekly regression report of one ISO week from a store.

    Parameters
    ----------
    store_or_path : Store or path
        An open store, or the path of a DuckDB file (opened read-only, so the
        file must not be held read-write by another process: report from a copy
        or a stopped service's file).
    week : str or IsoWeek, optional
        ``"2026-W47"``: Monday 00:00 UTC to the next Monday. Default: the week
        of ``now``.
    rng : int
        Seed of the bootstrap (the same seed gives the same intervals).
    confidence_level : float
        Of the effect-size intervals.
    n_resamples : int
        Bootstrap replicates per effect size (at least 100).
    now : datetime, optional
        The report's clock (default: the current time), for the default week
        and the "generated at" line.

    Raises
    ------
    InputError
        ``week`` is not an ISO week (the message has an example), or an option
        is out of range.
    StoreError
        The file cannot be opened.
    """
    clock = now or datetime.now(UTC)
    iso = week if isinstance(week, IsoWeek) else parse_week(week, now=clock)
    if not (isinstance(confidence_level, float) and 0.5 <= confidence_level < 1):
        raise InputError(
            "confidence_level", f"expected a level in [0.5, 1), e.g. 0.95; got {confidence_level!r}"
        )
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 100:
        raise InputError("n_resamples", f"expected an integer >= 100; got {n_resamples!r}")
    if isinstance(rng, bool) or not isinstance(rng, int) or rng < 0:
        raise InputError("rng", f"expected a non-negative integer seed; got {rng!r}")
    if isinstance(store_or_path, Store):
        return _read(store_or_path, iso, clock, rng, confidence_level, n_resamples)
    path = Path(store_or_path)
    if not path.is_file():
        raise StoreError(f"{path}: no such store")
    with Store(path, read_only=True) as store:
        return _read(store, iso, clock, rng, confidence_level, n_resamples)


def _read(
    store: Store,
    week: IsoWeek,
    now: datetime,
    seed: int,
    confidence_level: float,
    n_resamples: int,
) -> WeeklyReport:
    con = store.con.cursor()  # a cursor of its own: the caller's connection stays free
    try:
        # One transaction: every part of the report sees the same snapshot.
        con.begin()
        rollouts = read_rollouts(con, week)
        report = WeeklyReport(
            week=week,
            generated_at=now,
            store=str(store.path),
            rollouts=rollouts,
            rollbacks=read_rollbacks(con, rollouts),
            effects=read_effects(
                con,
                rollouts,
                seed=seed,
                confidence_level=confidence_level,
                n_resamples=n_resamples,
            ),
            headroom=read_headroom(con, rollouts),
            baseline=read_baseline(con, week),
            health=read_health(con, week),
            confidence_level=confidence_level,
            n_resamples=n_resamples,
            seed=seed,
            latest_activity=latest_activity(con),
        )
        con.commit()
    except duckdb.Error as exc:
        raise StoreError(f"{store.path}: cannot read the report's data: {exc}") from exc
    finally:
        con.close()
    return report
