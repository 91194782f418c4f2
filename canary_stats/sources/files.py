"""Raw events or aggregates from files: Parquet, CSV and JSON Lines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import EventsError

__all__ = ["load_events"]


def load_events(path: str | Path) -> pd.DataFrame:
    """Read raw events or aggregates from Parquet, CSV or JSON Lines."""
    p = Path(path)
    if not p.exists():
        raise EventsError(str(p), "no such file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(p)
        if suffix == ".csv":
            return pd.read_csv(p)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(p, lines=True)
    except (ValueError, OSError) as exc:
        raise EventsError(str(p), f"cannot read: {exc}") from None
    raise EventsError(
        str(p), f"unsupported file type {suffix!r}; expected .parquet, .csv or .jsonl"
    )
