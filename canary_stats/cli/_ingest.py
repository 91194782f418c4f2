"""``canary-stats ingest prometheus|file`` and ``canary-stats export``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer

from ..errors import CanaryStatsError, InputError, SourceError
from ..policy import parse_duration
from ..sources._pull import Pull
from ..store import DEFAULT_PATH, IngestResult, Store
from ..summary import AGGREGATE_COLUMNS
from ._app import app, existing_store, fail, parse_time

if TYPE_CHECKING:
    from ..sources.prometheus import PrometheusSource

__all__ = ["ingest_app"]

ingest_app = typer.Typer(
    help="Load data into the DuckDB store (idempotent: re-ingesting changes nothing).",
    no_args_is_help=True,
)
app.add_typer(ingest_app, name="ingest")

_DB_HELP = "The DuckDB store (created and migrated when new)."


def _report(result: IngestResult, db: Path, **extra: object) -> None:
    typer.echo(
        json.dumps(
            {
                "db": str(db),
                "ingest_id": result.ingest_id,
                "inserted": result.inserted,
                "skipped": result.skipped,
                "issues": result.issues,
                **extra,
            }
        )
    )


@ingest_app.command("prometheus")
def ingest_prometheus(
    stable_version: Annotated[str, typer.Option(help="Label value of the stable cohort.")],
    canary_version: Annotated[str, typer.Option(help="Label value of the canary cohort.")],
    start: Annotated[str, typer.Option(help="Start, ISO 8601 with zone (or 'now').")],
    end: Annotated[str, typer.Option(help="End, ISO 8601 with zone (or 'now').")],
    url: Annotated[
        str | None, typer.Option(help="Prometheus base URL (overrides the config file).")
    ] = None,
    db: Annotated[Path, typer.Option("--db", help=_DB_HELP)] = DEFAULT_PATH,
    window: Annotated[str, typer.Option(help="Window per sample, e.g. 1m or 5m.")] = "1m",
    config: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON source settings: metric names, labels, selectors, auth."),
    ] = None,
) -> None:
    """Pull per-window counts and histogram buckets for both cohorts from Prometheus.

    When Prometheus cannot be read the store is left as it was, the failure is
    logged, and judging this pair holds until a pull succeeds (exit 3).
    """
    from ..sources.prometheus import PrometheusConfig, PrometheusSource

    try:
        settings = PrometheusConfig.from_file(config) if config else None
        if settings is None:
            if url is None:
                raise InputError("--url", "give --url or a --config file with a url")
            settings = PrometheusConfig(url=url)
        elif url is not None:
            settings = PrometheusConfig.from_dict({**settings.model_dump(), "url": url})
        t0, t1 = parse_time(start, "--start"), parse_time(end, "--end")
        width = parse_duration(window, "--window")
        if width < timedelta(seconds=1):
            raise InputError("--window", "must be at least 1s")
        with Store(db) as store:
            source = f"prometheus {settings.url}"
            try:
                pull = PrometheusSource(settings).pull(
                    stable=stable_version, canary=canary_version, start=t0, end=t1, window=width
                )
            except SourceError as exc:
                store.record_failed_ingest(
                    source, str(exc), stable=stable_version, canary=canary_version
                )
                raise
            if pull.unmatched:
                raise _unmatched(PrometheusSource(settings), pull, stable_version, canary_version)
            result = store.ingest_pull(
                pull, stable=stable_version, canary=canary_version, source=source
            )
    except CanaryStatsError as exc:
        raise fail(exc) from None
    _report(result, db, kinds=sorted({i.kind for i in pull.issues}))


def _unmatched(source: PrometheusSource, pull: Pull, stable: str, canary: str) -> InputError:
    """The error for a pull in which a cohort matched no series at all (nothing is stored)."""
    version = {"stable": stable, "canary": canary}
    which = "; ".join(
        f"{cohort} release {version[cohort]!r} ({source.task_selector(version[cohort])})"
        for cohort in pull.unmatched
    )
    return InputError(
        f"--{pull.unmatched[0]}-version",
        f"no series match {which} between {pull.start:%Y-%m-%dT%H:%M:%SZ} and "
        f"{pull.end:%Y-%m-%dT%H:%M:%SZ}; check the version, the cohort label and the "
        "selectors (nothing was stored)",
    )


@ingest_app.command("file")
def ingest_file(
    path: Annotated[
        Path,
        typer.Argument(
            help="Events or aggregates (.parquet, .csv, .jsonl) or an eval report card (.json)."
        ),
    ],
    db: Annotated[Path, typer.Option("--db", help=_DB_HELP)] = DEFAULT_PATH,
    stable_version: Annotated[
        str | None,
        typer.Option(help="The stable release: of aggregates, or of event rows with no release."),
    ] = None,
    canary_version: Annotated[
        str | None,
        typer.Option(
            help="The canary release: of aggregates, or of event rows with no release "
            "(canary and shadow rows)."
        ),
    ] = None,
) -> None:
    """Load raw events, per-window aggregates or a report card; all or nothing.

    Events keep the release they carry; rows without one take --stable-version or
    --canary-version by cohort, so judging by release finds them. A task already
    stored (same request_id, same content) is skipped; one stored with other content
    (a re-timed or relabelled export) refuses the whole file (exit 2).
    """
    from ..sources.files import load_events
    from ..sources.report_card import load_report_card

    try:
        with Store(db) as store:
            source = f"file {path}"
            if path.suffix.lower() == ".json":
                result = store.ingest_eval_scores(load_report_card(path), source=source)
            else:
                frame = load_events(path)
                if set(AGGREGATE_COLUMNS) <= set(frame.columns):
                    if stable_version is None or canary_version is None:
                        raise InputError(
                            "--stable-version",
                            "aggregates need --stable-version and --canary-version",
                        )
                    result = store.ingest_pull(
                        Pull(frame), stable=stable_version, canary=canary_version, source=source
                    )
                else:
                    frame = _label(frame, stable_version, canary_version)
                    result = store.ingest_events(frame, source=source)
    except CanaryStatsError as exc:
        raise fail(exc) from None
    _report(result, db)


def _label(frame: pd.DataFrame, stable: str | None, canary: str | None) -> pd.DataFrame:
    """Events whose release is missing, labelled by cohort (canary and shadow: ``canary``)."""
    if stable is None and canary is None:
        return frame
    given = frame["release"] if "release" in frame.columns else pd.Series(pd.NA, frame.index)
    cohort = frame["cohort"].astype("string")
    by_cohort = cohort.map({"stable": stable, "canary": canary, "shadow": canary}).astype("string")
    return frame.assign(release=given.astype("string").fillna(by_cohort))


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Directory for the Parquet snapshot.")],
    db: Annotated[Path, typer.Option("--db", help=_DB_HELP)] = DEFAULT_PATH,
) -> None:
    """Write a consistent Parquet snapshot of the store (for notebooks)."""
    try:
        with Store(existing_store(db)) as store:
            paths = store.export(out)
    except CanaryStatsError as exc:
        raise fail(exc) from None
    typer.echo(json.dumps({name: str(p) for name, p in paths.items()}, indent=2))
