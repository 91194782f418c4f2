"""The one place where errors become HTTP statuses.

==========================  ======  ============================================
error                       status  meaning for the caller
==========================  ======  ============================================
`Unauthorized`              401     no or a wrong token (``WWW-Authenticate``)
`UnknownHook`               404     not a Flagger hook type
`UnknownRelease`            404     the stable release is unknown to store and source
a body that is not JSON     400     (FastAPI's own answer)
request body / `InputError` 422     the request names something unusable
`StoreError`, other errors  503     the judge itself cannot answer (Argo: Error)
anything unexpected         500     a bug
==========================  ======  ============================================

A "no" is never an error: it is a 200 verdict (Argo) or a 403 (Flagger). 4xx is
not retried by Flagger and counts as a failed check; 5xx is retried.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import CanaryStatsError, InputError
from ._models import ErrorOut, FieldError, ValidationErrorOut

__all__ = [
    "ERROR_RESPONSES",
    "Unauthorized",
    "UnknownHook",
    "UnknownRelease",
    "install_error_handlers",
]

log = logging.getLogger("canary_stats.service")


class Unauthorized(CanaryStatsError):
    """A judge call without the service's token, or with another one."""


class UnknownHook(InputError):
    """A Flagger hook type this service does not know."""


class UnknownRelease(InputError):
    """A release no registration, stored data or source series has ever named."""


#: OpenAPI documentation of the error answers every judge endpoint may give.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body cannot be parsed."},
    401: {"model": ErrorOut, "description": "No token or a wrong one."},
    404: {"model": ErrorOut, "description": "The stable release is unknown."},
    422: {"model": ValidationErrorOut, "description": "The request names something unusable."},
    503: {"model": ErrorOut, "description": "The judge cannot answer (e.g. the store failed)."},
}


def _status(exc: CanaryStatsError) -> int:
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, UnknownHook | UnknownRelease):
        return 404
    if isinstance(exc, InputError):
        return 422
    return 503


async def _canary_stats_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CanaryStatsError)
    status = _status(exc)
    if status == 422:
        assert isinstance(exc, InputError)
        message = str(exc).removeprefix(f"{exc.field}: ")
        body: Any = ValidationErrorOut(
            detail=[FieldError(loc=[exc.field], msg=message, type="input_error")]
        )
    else:
        body = ErrorOut(detail=str(exc))
    if status == 503:
        log.error("%s %s: the judge cannot answer: %s", request.method, request.url.path, exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default echoes the input back; Flagger copies answers into Kubernetes
    # events, and the input may hold the token.
    assert isinstance(exc, RequestValidationError)
    detail = [
        FieldError(loc=list(e.get("loc", ())), msg=str(e.get("msg", "")), type=str(e["type"]))
        for e in exc.errors()
    ]
    return JSONResponse(ValidationErrorOut(detail=detail).model_dump(), status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(ErrorOut(detail="internal error").model_dump(), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CanaryStatsError, _canary_stats_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
