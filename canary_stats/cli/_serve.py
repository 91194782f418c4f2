"""``canary-stats serve``: the webhook judge for Argo Rollouts and Flagger."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CanaryStatsError
from ._app import app, fail

__all__ = ["serve"]


@app.command()
def serve(
    db: Annotated[
        Path | None, typer.Option("--db", help="The DuckDB store (this process owns it).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8080].")] = None,
    host: Annotated[str | None, typer.Option(help="Address [default: 127.0.0.1].")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML settings (environment CANARY_STATS_* wins)."),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Default release manifest (requests may name another).")
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Serve without a token (only behind a network policy)."
        ),
    ] = False,
) -> None:
    """Serve promote / hold / rollback verdicts over HTTP, precomputed in the background.

    Options win over CANARY_STATS_* environment variables, which win over --config.
    Without a token (CANARY_STATS_TOKEN or token_file) it refuses to start unless
    --insecure-no-auth is given. Exit 2 on bad settings.
    """
    import uvicorn

    from ..service import create_app, load_settings

    given: dict[str, Any] = {"db": db, "port": port, "host": host, "manifest": manifest}
    overrides = {name: value for name, value in given.items() if value is not None}
    if insecure_no_auth:
        overrides["insecure_no_auth"] = True
    try:
        settings = load_settings(config, **overrides)
    except CanaryStatsError as exc:
        raise fail(exc) from None
    # uvicorn configures only its own loggers; the judge logs events and source errors.
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s"
    )
    # One worker: the process owns the DuckDB file (a second one could not open it).
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        workers=1,
    )
