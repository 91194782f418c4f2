"""The typer application every ``canary-stats`` command hangs off, and its error mapping.

Exit codes: 0 promote, 10 hold, 20 rollback (``analyze``); 2 bad input; 3 a data
source that could not deliver; 1 any other canary_stats error.
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console

from ..errors import CanaryStatsError, InputError, SourceError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_SOURCE",
    "app",
    "err_console",
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
    if isinstance(exc, SourceError):
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
