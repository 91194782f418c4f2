"""The webhook judge service for Argo Rollouts and Flagger (FastAPI, one process).

>>> from canary_stats.service import Settings, create_app
>>> app = create_app(Settings(db="data/canary_stats.duckdb", token="..."))  # doctest: +SKIP

Endpoints: ``POST /v1/judge/argo`` (200 with the verdict JSON),
``POST /v1/judge/flagger/{hook}`` (2xx yes, 403 no), ``/metrics``, ``/healthz``,
``/readyz`` and ``/openapi.json``. ``canary-stats serve`` runs it with uvicorn.
"""

from ._app import create_app
from ._engine import JudgeService, Served
from ._errors import Unauthorized, UnknownHook
from ._models import (
    ArgoJudgeRequest,
    FlaggerHook,
    FlaggerMetadata,
    FlaggerPayload,
    HookAnswer,
    Release,
    VerdictOut,
)
from ._settings import Settings, load_settings
from ._storage import stage_start

__all__ = [
    "ArgoJudgeRequest",
    "FlaggerHook",
    "FlaggerMetadata",
    "FlaggerPayload",
    "HookAnswer",
    "JudgeService",
    "Release",
    "Served",
    "Settings",
    "Unauthorized",
    "UnknownHook",
    "VerdictOut",
    "create_app",
    "load_settings",
    "stage_start",
]
