"""The typer application every ``canary-stats`` command hangs off, and its error mapping.

Exit codes: 0 promote, 10 hold, 20 rollback (``analyze``); 2 bad input (a missing
store included); 3 a data source that could not deliver or a store file that cannot
be opened; 1 any other canary_stats error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from ..errors import CanaryStatsError, InputError, SourceError, StoreUnreadable

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_SOURCE",
    "app",
    "err_console",
    "existing_store",
    "fail",
    "parse_time",
]

EXIT_CODES = {"promote": 0, "hold": 10, "rollback": 20}
EXIT_BAD_INPUT = 2
EXIT_SOURCE = 3

app = typer.Typer(
    help="Statistical canary analysis for AI-agent releases: promote, hold or rollback.",
    no_args_is_help=True,
    add_completion=False,
)
err_console = Console(stderr=True, soft_wrap=True)


def fail(exc: CanaryStatsError) -> typer.Exit:
    """Print the error and give the exit its code (one place for every command)."""
    err_console.print(f"[bold red]error:[/] {exc}")
    if isinstance(exc, InputError):
        return typer.Exit(EXIT_BAD_INPUT)
    if isinstance(exc, SourceError | StoreUnreadable):
        return typer.Exit(EXIT_SOURCE)
    return typer.Exit(1)


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 time with a zone (``2026-11-20T10:00:00Z``) or ``now``."""
    if value == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            field, f"{value!r} is not a time; expected ISO 8601, e.g. 2026-11-20T10:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise InputError(field, f"{value!r} has no time zone; add Z or an offset such as +00:00")
    return parsed.astimezone(UTC)


def existing_store(db: Path) -> Path:
    """``db`` if it is a file: commands that read never create a store (exit 2)."""
    if not db.is_file():
        what = "is not a file" if db.exists() else "no such store file"
        raise InputError(
            "--db", f"{db}: {what}; check the path (only ingest, serve and rollout run create one)"
        )
    return db
