"""The FastAPI application: `create_app` wires settings, the judge and the endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..judge import analyze
from ._engine import Analyze, JudgeService
from ._errors import install_error_handlers
from ._fastpath import ArgoFastPath
from ._routes import router
from ._settings import Settings

__all__ = ["MAX_BODY_BYTES", "create_app"]

#: Argo and Flagger bodies are a few hundred bytes; anything this large is not a caller.
MAX_BODY_BYTES = 64 * 1024

_DESCRIPTION = """\
Promote / hold / rollback verdicts for Argo Rollouts (web metric provider) and
Flagger (webhooks), precomputed in the background from one DuckDB store.

The judge endpoints need the service's token: `Authorization: Bearer <token>`, or
for Flagger `metadata.token`. `/healthz`, `/readyz`, `/metrics` and this document
need none; keep them inside the cluster with a network policy.
"""


class _BodyLimit:
    """Refuse bodies above `MAX_BODY_BYTES` by their Content-Length (plain ASGI: cheap)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                    detail = f"body of {int(value)} bytes exceeds the limit of {MAX_BODY_BYTES}"
                    await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, analyze_fn: Analyze = analyze) -> FastAPI:
    """The judge service; the store opens on startup and closes on shutdown.

    ``analyze_fn`` replaces `canary_stats.analyze` (tests inject a slow judge).
    Run it as one process (one uvicorn worker): it owns the DuckDB file.
    """
    service = JudgeService(settings, analyze_fn=analyze_fn)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)  # opening and migrating the store blocks
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="canary_stats judge",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.service = service

    # The last added runs first: oversized bodies are refused before the fast path reads them.
    app.add_middleware(ArgoFastPath, service=service)
    app.add_middleware(_BodyLimit)
    install_error_handlers(app)
    app.include_router(router)
    return app
