"""The DuckDB store: events, aggregates, releases, the verdict audit log, rollout state."""

from ._query import EXACT_LATENCY_LIMIT, LATENCY_RESOLUTION, Selection, summarize_store
from ._releases import ReleaseRecord, ReleaseStatus
from ._rollouts import CommandRecord, PostmortemRecord, StoreBusy, TransitionRecord
from ._schema import SCHEMA_VERSION
from ._store import DEFAULT_PATH, TABLES, IngestResult, Store, StoreView

__all__ = [
    "DEFAULT_PATH",
    "EXACT_LATENCY_LIMIT",
    "LATENCY_RESOLUTION",
    "SCHEMA_VERSION",
    "TABLES",
    "CommandRecord",
    "IngestResult",
    "PostmortemRecord",
    "ReleaseRecord",
    "ReleaseStatus",
    "Selection",
    "Store",
    "StoreBusy",
    "StoreView",
    "TransitionRecord",
    "summarize_store",
]
