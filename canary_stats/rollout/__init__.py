"""Orchestration: the sticky traffic router, rollout backends and the executor.

The executor walks a release manifest's stages, sets traffic through a backend,
asks the judge at every check and acts on its verdict; each transition is written
to the store before it is acted on.
"""

from ._backends import (
    Backend,
    BackendError,
    FileBackend,
    LocalBackend,
    backend_from_settings,
)
from ._commands import CommandBackend, CommandSettings
from ._executor import RolloutExecutor, now_utc
from ._judges import HttpJudge, Judge, StoreJudge
from ._router import Route, Router
from ._state import ReleaseLocked, RolloutBusy, RolloutStatus, StoreLocked, rollout_id
from ._traffic import SimulatedTraffic

# Each module's names are added here as the module lands.
__all__: list[str] = [
    "Backend",
    "BackendError",
    "CommandBackend",
    "CommandSettings",
    "FileBackend",
    "HttpJudge",
    "Judge",
    "LocalBackend",
    "ReleaseLocked",
    "RolloutBusy",
    "RolloutExecutor",
    "RolloutStatus",
    "Route",
    "Router",
    "SimulatedTraffic",
    "StoreJudge",
    "StoreLocked",
    "backend_from_settings",
    "now_utc",
    "rollout_id",
]
