"""Data sources: files, report cards, synthetic and realistic traffic, OpenMetrics rendering.

The Prometheus source lives in `canary_stats.sources.prometheus` and is imported
only where it is used (it pulls in requests and urllib3).
"""

from ._shadow_traffic import generate_shadow_events
from .files import load_events
from .openmetrics import (
    EVAL_BUCKETS,
    TOKEN_BUCKETS,
    CounterReset,
    NaNSample,
    ScrapeGap,
    write_openmetrics,
)
from .realistic import REALISTIC_CLASSES, UserWorkload
from .report_card import REPORT_CARD_COLUMNS, ReportCard, TaskScore, load_report_card
from .synthetic import Regression, Workload, generate_events, generate_tasks

__all__ = [
    "EVAL_BUCKETS",
    "REALISTIC_CLASSES",
    "REPORT_CARD_COLUMNS",
    "TOKEN_BUCKETS",
    "CounterReset",
    "NaNSample",
    "Regression",
    "ReportCard",
    "ScrapeGap",
    "TaskScore",
    "UserWorkload",
    "Workload",
    "generate_events",
    "generate_shadow_events",
    "generate_tasks",
    "load_events",
    "load_report_card",
    "write_openmetrics",
]
