"""PromQL text for the Prometheus source: names checked, label values escaped.

A label value reaches a query only through `quote`, after `check_label_value`
has refused empty values and control characters. `quote` escapes the two
characters a double-quoted PromQL string gives meaning to (backslash and the
quote itself), so a release named ``v1"} or vector(1) #`` stays one string
literal and cannot add anything to the query.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import timedelta

from ..errors import InputError

__all__ = [
    "check_label_name",
    "check_label_value",
    "check_metric_name",
    "duration_seconds",
    "increase_query",
    "quote",
    "resets_query",
    "selector",
]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
#: Label that `resets_query` adds to keep the series of different counters apart.
_FAMILY = "canary_stats_counter"


def check_label_name(name: str, field: str) -> str:
    """A Prometheus label name that is not reserved (``__*``) and not ``le``."""
    if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
        raise InputError(
            field, f"expected a label name matching [a-zA-Z_][a-zA-Z0-9_]*; got {name!r}"
        )
    if name.startswith("__") or name in ("le", _FAMILY):
        raise InputError(field, f"the label name {name!r} is reserved")
    return name


def check_metric_name(name: str, field: str) -> str:
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise InputError(
            field, f"expected a metric name matching [a-zA-Z_:][a-zA-Z0-9_:]*; got {name!r}"
        )
    return name


def check_label_value(value: str, field: str) -> str:
    """A non-empty label value without control characters (or lone surrogates)."""
    if not isinstance(value, str) or not value:
        raise InputError(field, "expected a non-empty label value")
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InputError(field, f"label values must not contain control characters: {char!r}")
    return value


def duration_seconds(d: timedelta, field: str) -> int:
    """A range or step as whole seconds: the grid of windows is in whole seconds."""
    seconds = d.total_seconds() if isinstance(d, timedelta) else -1.0
    if seconds < 1 or seconds != int(seconds):
        raise InputError(field, f"expected a whole number of seconds >= 1; got {d}")
    return int(seconds)


def quote(value: str) -> str:
    """``value`` as a double-quoted PromQL (and OpenMetrics) string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector(metric: str, matchers: Mapping[str, str]) -> str:
    """``metric{k="v",...}`` with equality matchers only, in a stable order."""
    inner = ",".join(f"{k}={quote(v)}" for k, v in sorted(matchers.items()))
    return f"{metric}{{{inner}}}"


def increase_query(
    metric: str, matchers: Mapping[str, str], *, by: Sequence[str], window_seconds: int
) -> str:
    """``sum by (...) (increase(metric{...}[w]))``: one count per window and group."""
    return f"sum by ({', '.join(by)}) (increase({selector(metric, matchers)}[{window_seconds}s]))"


def resets_query(
    metrics: Sequence[str], matchers: Mapping[str, str], *, by: Sequence[str], window_seconds: int
) -> str:
    """Counter resets per window, summed over several counters.

    Each counter's ``resets`` gets its own value of an extra label before the
    ``or``: ``resets`` drops the metric name, and without it the counters'
    identical label sets would collide and ``or`` would keep only the first.
    """
    parts = [
        f'label_replace(resets({selector(m, matchers)}[{window_seconds}s]), "{_FAMILY}", '
        f'"{m}", "", "")'
        for m in metrics
    ]
    return f"sum by ({', '.join(by)}) ({' or '.join(parts)})"
