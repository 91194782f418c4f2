"""The endpoints; each handler only translates between HTTP and `JudgeService`.

Handlers are plain ``def``: DuckDB and the Prometheus client block, so FastAPI
runs them in its thread pool. The Argo endpoint is the exception: it answers a
cached verdict on the event loop and hands only a miss to a worker thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from ._auth import bearer, check_token
from ._engine import JudgeService
from ._errors import ERROR_RESPONSES, UnknownHook
from ._flagger import answer_hook
from ._metrics import CONTENT_TYPE_LATEST
from ._models import (
    ArgoJudgeRequest,
    ErrorOut,
    FlaggerHook,
    FlaggerPayload,
    HealthOut,
    HookAnswer,
    ReadyOut,
    VerdictOut,
)

__all__ = ["router"]

router = APIRouter()


async def _service(request: Request) -> JudgeService:
    service: JudgeService = request.app.state.service
    return service


Service = Annotated[JudgeService, Depends(_service)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def _argo_auth(service: Service, credentials: Bearer) -> None:
    check_token(service.settings, credentials.credentials if credentials else None)


@router.post(
    "/v1/judge/argo",
    response_model=VerdictOut,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(_argo_auth)],
    tags=["judge"],
)
async def judge_argo(body: ArgoJudgeRequest, service: Service, request: Request) -> Any:
    """The verdict for an Argo Rollouts web metric: always 200 when the judge can answer.

    Use ``successCondition: result.decision == "promote"`` and
    ``failureCondition: result.decision == "rollback"``; a hold is Inconclusive.
    """
    release = body.release()
    served = service.cached(release)
    if served is None:
        served = await run_in_threadpool(service.verdict, release)
    # The same bytes again will be answered from the cache before FastAPI (`_fastpath`).
    service.remember(await request.body(), release)
    # The verdict dict is `VerdictOut` already (a test holds them equal): sending it as
    # is skips re-validating a cached verdict on every poll, most of a hit's cost.
    return JSONResponse(served.verdict, headers=served.headers())


_HOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    202: {"model": HookAnswer, "description": "Yes (event hooks)."},
    403: {"model": HookAnswer, "description": "No: hold, or the hook's condition is not met."},
    404: {"model": ErrorOut, "description": "Not a Flagger hook type, or an unknown stable."},
}


@router.post(
    "/v1/judge/flagger/{hook}",
    response_model=HookAnswer,
    responses=_HOOK_RESPONSES,
    tags=["judge"],
)
def judge_flagger(
    hook: Annotated[
        str,
        Path(
            description="The webhook's type.",
            json_schema_extra={"enum": [h.value for h in FlaggerHook]},
        ),
    ],
    payload: FlaggerPayload,
    service: Service,
    credentials: Bearer,
    response: Response,
) -> HookAnswer:
    """A Flagger webhook: 2xx is yes, 403 is no (see the table in the service docs)."""
    try:
        kind = FlaggerHook(hook)
    except ValueError:
        known = ", ".join(h.value for h in FlaggerHook)
        raise UnknownHook("hook", f"unknown hook {hook!r}; expected one of {known}") from None
    token = payload.metadata.token
    presented = credentials.credentials if credentials else None
    check_token(service.settings, presented or (token.get_secret_value() if token else None))
    result = answer_hook(service, kind, payload)
    response.status_code = result.status
    return result.body


@router.get("/healthz", response_model=HealthOut, tags=["health"])
def healthz() -> HealthOut:
    """Liveness: the process answers."""
    return HealthOut()


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready."}},
    tags=["health"],
)
def readyz(service: Service, response: Response) -> ReadyOut:
    """Readiness: the store is open and the background refresher runs."""
    store_open, alive = service.ready()
    if not (store_open and alive):
        response.status_code = 503
    return ReadyOut(
        ready=store_open and alive,
        store="open" if store_open else "closed",
        refresher="alive" if alive else "stopped",
    )


@router.get("/metrics", include_in_schema=False)
def metrics(service: Service) -> Response:
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
