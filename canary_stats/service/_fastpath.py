"""Repeated Argo polls answered from the verdict cache before FastAPI runs.

Argo Rollouts sends the same JSON body at every check of a stage. Once FastAPI has
validated a body and the judge has a verdict for it (`JudgeService.remember`), the
same bytes with a valid token are answered here from the cache: no routing, no
parsing, no validation, no dependency injection. That is most of the cost of a
cached answer, and what keeps the latency tail short under load. Anything else
(a new body, a stale verdict, a wrong token, another path) goes on to FastAPI
unchanged, so every error answer still comes from one place.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._engine import JudgeService, Served

__all__ = ["ARGO_PATH", "ArgoFastPath"]

ARGO_PATH = "/v1/judge/argo"


class ArgoFastPath:
    """ASGI middleware: a cached verdict for a known request body, else the app."""

    def __init__(self, app: ASGIApp, service: JudgeService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ARGO_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        hit = self.service.cached_body(body) if self._authorized(scope) else None
        if hit is not None:
            await _send(send, *hit)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _authorized(self, scope: Scope) -> bool:
        settings = self.service.settings
        if settings.insecure_no_auth:
            return True
        if settings.token is None:
            return False
        expected = b"Bearer " + settings.token.get_secret_value().encode()
        for name, value in scope["headers"]:
            if name == b"authorization":
                # Constant time, as in `check_token`; a mismatch goes on to FastAPI's 401.
                return hmac.compare_digest(value, expected)
        return False


async def _send(send: Send, body: bytes, served: Served) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in served.headers().items()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
