"""Raw events or per-window aggregates from files: Parquet, CSV and JSON Lines.

`load_events` returns the data contract's columns (DESIGN.md, "Data contracts"),
each converted to its type, whatever the file format:

| column | type |
|---|---|
| ``ts``, ``window_start``, ``window_end`` | UTC timestamps (text: ISO 8601 with an offset) |
| ``cohort`` | text: ``stable``, ``canary`` or ``shadow`` |
| ``success`` | bool (text: ``true``/``false`` in any case, or ``1``/``0``) |
| ``latency_ms``, ``tokens``, ``eval_score``, ``le``, ``value`` | float (null: NaN) |
| ``metric``, ``field``, ``release``, ``user_id``, ``request_id`` | text (nullable) |

A file with ``metric``, ``field`` and ``value`` columns holds aggregates
(`summary.AGGREGATE_COLUMNS`, optional ``release``); any other holds raw events
(``ts, cohort, success, latency_ms, tokens`` required; ``eval_score, release,
user_id, request_id`` optional). Other columns are dropped. In JSON Lines, a key
that is null or absent on every line counts as a missing column.

The loader checks the schema: the file can be read, the required columns are
there, every value has its column's type, timestamps carry a zone and cohorts
are known. ``user_id`` is all or nothing: a column with a user id on some rows
only, or an empty or blank id, is refused naming the rows; a column that is
null on every row is dropped (no user ids). Value ranges (latency >= 0, eval
scores in [0, 1], unique request ids, non-overlapping windows) are checked where
the frame is used, by `summary.summarize` and `summary.validate_events`. Rows in
messages count records from 1, in file order (a CSV header is not a row).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ..errors import EventsError
from ..summary import AGGREGATE_COLUMNS, EVENT_COLUMNS
from ..summary._checks import cohort_codes, require_columns, utc_timestamps
from ..summary._users import check_user_ids

__all__ = ["load_events"]

#: Optional columns kept when present, after the required ones.
_EVENT_OPTIONAL = ("eval_score", "release", "user_id", "request_id")
_AGGREGATE_OPTIONAL = ("release",)
_TEXT, _NUMBER = pa.string(), pa.float64()
#: The type of every column the contract knows (the Arrow type JSON Lines are read with).
_TYPES: dict[str, pa.DataType] = {
    "ts": _TEXT,
    "window_start": _TEXT,
    "window_end": _TEXT,
    "cohort": _TEXT,
    "success": pa.bool_(),
    "latency_ms": _NUMBER,
    "tokens": _NUMBER,
    "eval_score": _NUMBER,
    "le": _NUMBER,
    "value": _NUMBER,
    "metric": _TEXT,
    "field": _TEXT,
    "release": _TEXT,
    "user_id": _TEXT,
    "request_id": _TEXT,
}
_TIMES = ("ts", "window_start", "window_end")
_TRUTH = {"true": True, "false": False, "1": True, "0": False}


def load_events(path: str | Path) -> pd.DataFrame:
    """Read raw events or per-window aggregates from ``.parquet``, ``.csv`` or ``.jsonl``.

    Raises `EventsError` naming the file (unreadable, malformed, broken JSON line)
    or the column (missing, a value of the wrong type, naive timestamps, an
    unknown cohort) and what was expected.
    """
    p = Path(path)
    if not p.is_file():
        raise EventsError(str(p), "no such file")
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise EventsError(
            str(p), f"unsupported file type {p.suffix!r}; expected .parquet, .csv or .jsonl"
        )
    return _conform(reader(p))


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        names = pq.read_schema(p).names
        return pd.read_parquet(p, columns=[c for c in names if c in _TYPES])
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise EventsError(
            str(p), f"cannot read Parquet ({_first_line(exc)}); truncated or not Parquet?"
        ) from None


def _read_csv(p: Path) -> pd.DataFrame:
    # Everything as text: each column is then converted (and its bad values named) below.
    try:
        return pd.read_csv(p, dtype="str", engine="pyarrow")
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise EventsError(str(p), f"cannot read CSV ({_first_line(exc)})") from None


def _read_jsonl(p: Path) -> pd.DataFrame:
    # Arrow reads fast; explicit types stop it from turning zoned text into naive
    # timestamps. Anything it rejects (a broken line, a value of another type) is
    # re-read line by line, which names the line or leaves the value to `_conform`.
    options = pa_json.ParseOptions(
        explicit_schema=pa.schema(list(_TYPES.items())), unexpected_field_behavior="ignore"
    )
    try:
        table = pa_json.read_json(p, parse_options=options)
        table.validate(full=True)  # the reader lets invalid UTF-8 through
        frame: pd.DataFrame = table.to_pandas()
    except (pa.ArrowException, OSError):
        frame = _read_json_lines(p)
    # Arrow fills keys it never saw with nulls; the line-by-line path leaves them out.
    return frame.drop(columns=[c for c in frame.columns if frame[c].isna().all()])


def _read_json_lines(p: Path) -> pd.DataFrame:
    records = []
    try:
        with p.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line.rstrip("\r\n"))  # columns count within the line
                except json.JSONDecodeError as exc:
                    raise EventsError(
                        str(p), f"line {number} is not valid JSON ({exc.msg}, column {exc.colno})"
                    ) from None
                if not isinstance(record, dict):
                    raise EventsError(str(p), f"line {number} is not a JSON object")
                records.append(record)
    except (OSError, UnicodeDecodeError) as exc:
        raise EventsError(str(p), f"cannot read JSON Lines ({_first_line(exc)})") from None
    return pd.DataFrame.from_records(records)


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".parquet": _read_parquet,
    ".csv": _read_csv,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
}


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    """The contract's columns of ``frame``, each converted to its type."""
    required: tuple[str, ...]
    optional: tuple[str, ...]
    if {"metric", "field", "value"} <= set(frame.columns):
        required, optional, what = AGGREGATE_COLUMNS, _AGGREGATE_OPTIONAL, "aggregates"
    else:
        required, optional, what = EVENT_COLUMNS[:5], _EVENT_OPTIONAL, "raw events"
    require_columns(frame, required, what)
    frame = frame.reset_index(drop=True)  # rows in messages are positions
    out: dict[str, pd.Series] = {}
    for name in (*required, *(c for c in optional if c in frame.columns)):
        col = frame[name]
        if name in _TIMES:
            out[name] = utc_timestamps(col, name)
        elif name == "success":
            out[name] = _booleans(col, name)
        elif _TYPES[name] == _NUMBER:
            out[name] = _numbers(col, name)
        else:
            out[name] = col.astype("str")
    cohort_codes(out["cohort"])  # raises on unknown or missing labels
    if "user_id" in out and not check_user_ids(pa.array(out["user_id"].array, pa.string())):
        del out["user_id"]  # null on every row: no user ids
    return pd.DataFrame(out)


def _numbers(col: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(col.dtype):
        raise EventsError(name, "expected numbers; got true/false")
    if pd.api.types.is_numeric_dtype(col.dtype):
        return pd.Series(col.to_numpy(dtype=np.float64, na_value=np.nan), name=name)
    x = pd.to_numeric(col, errors="coerce").astype(np.float64)
    _reject(col, (x.isna() & col.notna()).to_numpy(), name, "expected numbers")
    return x


def _booleans(col: pd.Series, name: str) -> pd.Series:
    if col.dtype == bool:
        return col
    missing = col.isna().to_numpy()
    if missing.any():
        raise EventsError(name, f"{int(missing.sum())} rows are missing; expected true or false")
    if pd.api.types.is_numeric_dtype(col.dtype):
        x = col.to_numpy(dtype=np.float64)
        _reject(col, ~np.isin(x, (0.0, 1.0)), name, "expected true or false (or 1 or 0)")
        return pd.Series(x == 1.0, name=name)
    flags = col.astype("str").str.strip().str.lower().map(_TRUTH)
    _reject(col, flags.isna().to_numpy(), name, "expected true or false (or 1 or 0)")
    return flags.astype(bool)


def _reject(col: pd.Series, bad: np.ndarray, name: str, expected: str) -> None:
    """Raise for the rows flagged ``bad``, showing the first as an example."""
    if bad.any():
        row = int(bad.argmax())
        value = col.iloc[row]
        value = value.item() if isinstance(value, np.generic) else value  # 2, not np.int64(2)
        raise EventsError(
            name, f"{expected}; {int(bad.sum())} rows are not, e.g. {value!r} in row {row + 1}"
        )


def _first_line(exc: BaseException) -> str:
    """The gist of a library's error (pandas and Arrow append pages of advice)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
