"""The weekly regression report: what shipped, what was rolled back and why, effect sizes, trends.

``build_report(store, "2026-W47")`` reads one ISO week of a store into a
`WeeklyReport`; `render_html` turns it into one self-contained HTML page (inline
CSS, plots embedded as inline SVG, no scripts, no external URLs) and
`render_markdown` into tables for chat or mail.
"""

from ._data import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, build_report
from ._html import render_html
from ._markdown import render_markdown
from ._model import (
    NEAR_MISS_SHARE,
    BaselineWeek,
    DataLag,
    EffectSize,
    Headroom,
    JudgeHealth,
    Rollback,
    RolloutSummary,
    StageSpan,
    TransitionLine,
    WeeklyReport,
)
from ._week import IsoWeek, parse_week

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "NEAR_MISS_SHARE",
    "BaselineWeek",
    "DataLag",
    "EffectSize",
    "Headroom",
    "IsoWeek",
    "JudgeHealth",
    "Rollback",
    "RolloutSummary",
    "StageSpan",
    "TransitionLine",
    "WeeklyReport",
    "build_report",
    "parse_week",
    "render_html",
    "render_markdown",
]
