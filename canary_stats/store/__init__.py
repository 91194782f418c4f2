"""The DuckDB store: events, aggregates, releases, the verdict audit log, rollout state."""

from ._query import EXACT_LATENCY_LIMIT, LATENCY_RESOLUTION, Selection, summarize_store
from ._releases import ReleaseRecord, ReleaseStatus
from ._schema import SCHEMA_VERSION
from ._store import DEFAULT_PATH, TABLES, IngestResult, Store, StoreView

__all__ = [
    "DEFAULT_PATH",
    "EXACT_LATENCY_LIMIT",
    "LATENCY_RESOLUTION",
    "SCHEMA_VERSION",
    "TABLES",
    "IngestResult",
    "ReleaseRecord",
    "ReleaseStatus",
    "Selection",
    "Store",
    "StoreView",
    "summarize_store",
]
