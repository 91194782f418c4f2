"""Per-window counts of both cohorts from Prometheus, through prometheus-api-client.

For every cohort and every window of a grid of ``window`` (multiples of it since
the epoch) the source asks for ``sum by (<cohort_label>[, le]) (increase(m[w]))``
as one range query with ``step = w``: non-overlapping windows of counts, sums and
cumulative bucket counts (DESIGN.md, "Data contracts"). Whatever makes a window
untrustworthy comes back as a `DataIssue` for the judge to hold on; a server that
cannot answer at all raises `SourceUnavailable`, one that answers in the wrong
shape `SourceResponseError`.

Window edges fall on multiples of ``w`` and Prometheus 2.x range selectors
include both ends, so with scrapes aligned to the window edges each ``increase``
is the exact difference of two samples (no extrapolation). Unaligned real scrapes
make every window an estimate that ``increase`` extrapolates to the window edges.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import InputError, SourceResponseError
from ..summary import AGGREGATE_COLUMNS
from ._prometheus_http import Answer, RangeClient
from ._promql import (
    check_label_name,
    check_label_value,
    check_metric_name,
    duration_seconds,
    increase_query,
    resets_query,
    selector,
)
from ._pull import DataIssue, Pull

__all__ = ["BasicAuth", "MetricNames", "PrometheusConfig", "PrometheusSource"]

#: Prometheus refuses range queries of more points than this per series.
_MAX_POINTS = 11_000
_COLUMNS = (*AGGREGATE_COLUMNS, "release")
#: Series every finished task records: a window with tasks but without them is partial.
_EVERY_TASK = (
    "latency_ms.bucket",
    "tokens_per_task.count",
    "tokens_per_task.sum",
    "tokens_per_task.bucket",
)


def _input_error(exc: ValidationError, root: str) -> InputError:
    """The first validation error as an `InputError` naming its field."""
    err = exc.errors()[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, InputError):  # raised by our own validators, field and all
        return cause
    field = ".".join(str(p) for p in err["loc"]) or root
    return InputError(field, err["msg"].removeprefix("Value error, "))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicAuth(_Model):
    user: str
    password: SecretStr


class MetricNames(_Model):
    """Names of the series the agent exports (histograms by their base name)."""

    tasks: str = "agent_task_total"
    successes: str = "agent_task_success_total"
    latency: str = "agent_task_duration_ms"
    tokens: str = "agent_task_tokens"
    eval_score: str = "agent_eval_score"
    #: Milliseconds per unit of the latency histogram (1000 for a ``_seconds`` one).
    latency_unit_ms: float = Field(default=1.0, gt=0)

    @field_validator("tasks", "successes", "latency", "tokens", "eval_score")
    @classmethod
    def _metric_name(cls, v: str, info: ValidationInfo) -> str:
        return check_metric_name(v, f"metrics.{info.field_name}")


class PrometheusConfig(_Model):
    """Where and how to ask Prometheus; `from_file` reads the CLI's ``--config FILE``.

    ``cohort_label`` is the label whose value tells the releases apart: ``version``
    (app-emitted), ``rollouts_pod_template_hash`` (Argo Rollouts) or
    ``destination_workload`` (Flagger with Istio). ``selectors`` adds equality
    matchers (e.g. ``{"app": "research-agent"}``) to every query. ``timeout`` is
    per HTTP request, in seconds; ``retries`` covers refused connections, timeouts
    and 429/5xx answers, POST included.
    """

    url: str
    metrics: MetricNames = MetricNames()
    cohort_label: str = "version"
    selectors: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuth | None = None
    method: Literal["GET", "POST"] = "POST"
    verify_tls: bool = True

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _input_error(exc, "prometheus") from None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        scheme, sep, rest = v.partition("://")
        if scheme not in ("http", "https") or not sep or not rest.strip("/"):
            raise InputError("url", f"expected an http(s) URL of Prometheus; got {v!r}")
        return v.rstrip("/")

    @field_validator("cohort_label")
    @classmethod
    def _cohort_label(cls, v: str) -> str:
        return check_label_name(v, "cohort_label")

    @field_validator("selectors")
    @classmethod
    def _selectors(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            check_label_name(key, f"selectors.{key}")
            check_label_value(value, f"selectors.{key}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PrometheusConfig:
        if self.cohort_label in self.selectors:
            raise InputError(
                f"selectors.{self.cohort_label}", "is the cohort label; each pull sets it"
            )
        if self.bearer_token is not None and self.basic_auth is not None:
            raise InputError("basic_auth", "give bearer_token or basic_auth, not both")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrometheusConfig:
        """Validate a mapping; errors are `InputError`s naming the field."""
        if not isinstance(data, Mapping):
            raise InputError("prometheus", f"expected a mapping; got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _input_error(exc, "prometheus") from None

    @classmethod
    def from_file(cls, path: str | Path) -> PrometheusConfig:
        """Read YAML or JSON; a file holding only a ``prometheus:`` section works too."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(str(p), f"cannot read the config: {exc.strerror}") from None
        try:
            doc = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise InputError(str(p), f"not valid YAML or JSON: {exc}") from None
        if isinstance(doc, dict) and set(doc) == {"prometheus"}:
            doc = doc["prometheus"]
        return cls.from_dict(doc)


class PrometheusSource:
    """Pull per-window aggregates of a stable and a canary release from Prometheus."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config

    def pull(
        self, *, stable: str, canary: str, start: datetime, end: datetime, window: timedelta
    ) -> Pull:
        """Aggregates of the windows of the grid of ``window`` inside ``[start, end]``.

        ``start`` and ``end`` are floored to multiples of ``window`` since the
        epoch, so repeated pulls cut the same windows. The frame has the columns
        of ``summary.AGGREGATE_COLUMNS`` plus ``release`` (the label value).
        Warnings and infos, counter resets, gaps, NaN values and cohorts without
        any series come back as ``Pull.issues``.
        """
        releases = {
            "stable": check_label_value(stable, "stable"),
            "canary": check_label_value(canary, "canary"),
        }
        if stable == canary:
            raise InputError("canary", "must differ from the stable release")
        w = duration_seconds(window, "window")
        first = math.floor(_epoch(start, "start") / w) * w
        last = math.floor(_epoch(end, "end") / w) * w
        if (last - first) // w > _MAX_POINTS:
            raise InputError("window", f"more than {_MAX_POINTS} windows; use a longer window")
        if last <= first:  # no whole window yet
            return Pull(_frame([], w), (), start=_utc(first), end=_utc(first))
        found = _Findings(w, first, last)
        # One client (and session) per pull: the hook's state is never shared by threads.
        client = RangeClient(self.config)
        try:
            for cohort, release in releases.items():
                self._pull_cohort(client, found, cohort, release)
        finally:
            client.close()
        return Pull(
            _frame(found.series, w),
            found.issues(),
            unmatched=found.unmatched(),
            start=_utc(first),
            end=_utc(last),
        )

    def task_selector(self, release: str) -> str:
        """The PromQL selector of ``release``'s task counter, as the pull asks for it."""
        cfg = self.config
        matchers = {**cfg.selectors, cfg.cohort_label: check_label_value(release, "release")}
        return selector(cfg.metrics.tasks, matchers)

    def has_series(self, release: str, *, lookback: timedelta, now: datetime) -> bool:
        """Whether Prometheus holds any task series of ``release`` in the ``lookback``.

        Tells a misspelt or never-deployed release from one that merely has no
        recent windows (``present_over_time`` over the task counter).
        """
        cfg = self.config
        seconds = duration_seconds(lookback, "lookback")
        query = f"group(present_over_time({self.task_selector(release)}[{seconds}s]))"
        client = RangeClient(cfg)
        try:
            answer = client.matrix(query, now, now, 60)
        finally:
            client.close()
        return any(series.get("values") for series in answer.result)

    def _pull_cohort(
        self, client: RangeClient, found: _Findings, cohort: str, release: str
    ) -> None:
        cfg, m = self.config, self.config.metrics
        label = cfg.cohort_label
        matchers = {**cfg.selectors, label: release}
        plan = (
            ("tasks", "count", m.tasks),
            ("tasks", "success", m.successes),
            ("latency_ms", "bucket", f"{m.latency}_bucket"),
            ("tokens_per_task", "count", f"{m.tokens}_count"),
            ("tokens_per_task", "sum", f"{m.tokens}_sum"),
            ("tokens_per_task", "bucket", f"{m.tokens}_bucket"),
            ("eval_score", "count", f"{m.eval_score}_count"),
            ("eval_score", "sum", f"{m.eval_score}_sum"),
            ("eval_score", "bucket", f"{m.eval_score}_bucket"),
        )
        span = (_utc(found.first + found.w), _utc(found.last), found.w)
        for metric, fld, series in plan:
            by = (label, "le") if fld == "bucket" else (label,)
            answer = client.matrix(
                increase_query(series, matchers, by=by, window_seconds=found.w), *span
            )
            scale = m.latency_unit_ms if metric == "latency_ms" else 1.0
            found.add(cohort, release, f"{metric}.{fld}", answer, client.url, scale)
        counters = (
            m.tasks,
            m.successes,
            *(f"{n}_count" for n in (m.latency, m.tokens, m.eval_score)),
        )
        query = resets_query(counters, matchers, by=(label,), window_seconds=found.w)
        found.add_resets(cohort, client.matrix(query, *span), client.url)


def _epoch(t: datetime, field: str) -> float:
    if not isinstance(t, datetime) or t.tzinfo is None:
        raise InputError(field, "expected a timezone-aware datetime")
    return t.timestamp()


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class _Series(NamedTuple):
    """One series of a query's answer: window ends and values, and what they are."""

    ends: np.ndarray
    values: np.ndarray
    cohort: str
    metric: str
    field: str
    le: float
    release: str


class _Findings:
    """Rows and evidence of trouble collected over one pull."""

    def __init__(self, w: int, first: int, last: int) -> None:
        self.w, self.first, self.last = w, first, last
        self.series: list[_Series] = []
        self.present: dict[tuple[str, str], set[float]] = defaultdict(set)
        self.bad: dict[tuple[float, str], set[str]] = defaultdict(set)
        self.resets: dict[tuple[float, str], float] = {}
        self.notes: dict[tuple[str, str], None] = {}  # ordered set of (cohort, note)
        self.tasks: dict[str, dict[float, float]] = defaultdict(dict)  # tasks per window end
        self.active: dict[str, set[float]] = defaultdict(set)  # window ends with any value > 0

    def add(
        self, cohort: str, release: str, name: str, answer: Answer, url: str, scale: float
    ) -> None:
        """Rows of one query (``name`` is ``metric.field``), one array pair per series."""
        self.notes.update(dict.fromkeys((cohort, note) for note in answer.notes))
        metric, fld = name.split(".")
        for series in answer.result:
            ends, values = _points(series, name, url)
            le_text = series["metric"].get("le")
            le = _number(le_text, name, url) * scale if le_text is not None else math.nan
            self.present[(cohort, name)].update(ends.tolist())
            self.active[cohort].update(ends[values > 0].tolist())
            if name == "tasks.count":
                for end, v in zip(ends.tolist(), values.tolist(), strict=True):
                    self.tasks[cohort][end] = self.tasks[cohort].get(end, 0.0) + v
            for end in ends[~np.isfinite(values)].tolist():
                self.bad[(end, cohort)].add(name)
            self.series.append(_Series(ends, values, cohort, metric, fld, le, release))

    def add_resets(self, cohort: str, answer: Answer, url: str) -> None:
        self.notes.update(dict.fromkeys((cohort, note) for note in answer.notes))
        for series in answer.result:
            ends, values = _points(series, "resets", url)
            for end, n in zip(ends.tolist(), values.tolist(), strict=True):
                if n > 0:
                    self.resets[(end, cohort)] = n

    def issues(self) -> tuple[DataIssue, ...]:
        out = [DataIssue(_utc(self.first), _utc(self.last), c, "partial", n) for c, n in self.notes]
        out += self._gaps()
        for (end, cohort), names in self.bad.items():
            detail = f"NaN or infinite values in {', '.join(sorted(names))}"
            out.append(self._issue(end, cohort, "nan", detail))
        for (end, cohort), n in self.resets.items():
            detail = f"{n:g} counter resets (a restarted process?); increase() bridges them"
            out.append(self._issue(end, cohort, "counter_reset", detail))
        return tuple(sorted(out, key=lambda i: (i.window_start, i.cohort or "", i.kind, i.detail)))

    def _gaps(self) -> list[DataIssue]:
        """Windows in which a cohort finished tasks but lacks a series every task records.

        A window without tasks is data (zero tasks), not a gap, and so is a cohort
        without any series (it is named in ``Pull.unmatched``). A gap is a partial
        scrape: tasks counted but no latency or tokens for them (when the pull
        found those series at all), or values without the task counter.
        """
        out: list[DataIssue] = []
        exported = {name for (_, name), ends in self.present.items() if ends} & set(_EVERY_TASK)
        for cohort in ("stable", "canary"):
            counted = self.present[(cohort, "tasks.count")]
            for end in sorted(set().union(*(self.present[(cohort, n)] for n in exported))
                              | counted | self.active[cohort]):  # fmt: skip
                if self.tasks[cohort].get(end, 0.0) > 0:
                    lacking = [n for n in sorted(exported) if end not in self.present[(cohort, n)]]
                elif end not in counted and end in self.active[cohort]:
                    lacking = ["tasks.count"]
                else:
                    continue
                if lacking:
                    detail = f"tasks without samples of {', '.join(lacking)}"
                    out.append(self._issue(end, cohort, "gap", detail))
        return out

    def unmatched(self) -> tuple[str, ...]:
        """Cohorts that no series of the pull matched (a misspelt release or selector?)."""
        seen = {cohort for (cohort, _), ends in self.present.items() if ends}
        return tuple(c for c in ("stable", "canary") if c not in seen)

    def _issue(self, end: float, cohort: str, kind: str, detail: str) -> DataIssue:
        return DataIssue(_utc(end - self.w), _utc(end), cohort, kind, detail)


def _number(text: Any, name: str, url: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise SourceResponseError(url, f"{name}: {text!r} is not a number") from None


def _points(series: dict[str, Any], name: str, url: str) -> tuple[np.ndarray, np.ndarray]:
    """Window ends and values of one series (``[[ts, "value"], ...]``) as float arrays."""
    try:
        points = np.array(series["values"], dtype=object).reshape(-1, 2)
        return points[:, 0].astype(float), points[:, 1].astype(float)
    except (TypeError, ValueError) as exc:
        raise SourceResponseError(url, f"a sample of {name} is not a number: {exc}") from None


def _frame(series: list[_Series], w: int) -> pd.DataFrame:
    """The aggregates frame, column by column from the per-series arrays."""
    sizes = [s.ends.size for s in series]
    ends = np.concatenate([np.empty(0), *(s.ends for s in series)])

    def column(name: str, dtype: type) -> np.ndarray:  # one value per series, repeated
        return np.repeat(np.array([getattr(s, name) for s in series], dtype=dtype), sizes)

    return pd.DataFrame(
        {
            "window_start": pd.to_datetime(ends - w, unit="s", utc=True),
            "window_end": pd.to_datetime(ends, unit="s", utc=True),
            "cohort": column("cohort", str),
            "metric": column("metric", str),
            "field": column("field", str),
            "le": column("le", float),
            "value": np.concatenate([np.empty(0), *(s.values for s in series)]),
            "release": column("release", str),
        },
        columns=list(_COLUMNS),
    )
