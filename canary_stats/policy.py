"""The decision policy: guardrails, stages and error levels, from a manifest or a dict.

Guardrails come in the seed's short form (``task_success_rate: {min: 0.97}``)
and in the explicit form (one metric, one rule). The mapping is:

=========================  =========================================================
short form                 meaning
=========================  =========================================================
``task_success_rate``      the canary's success rate; rules ``min``, ``max_drop``,
                           ``min_ratio``
``pNN_latency_ms``         the canary's NN-th latency percentile; rules ``max``,
                           ``max_ratio``, ``max_increase``
``token_spend_delta``      ``{max: d}`` means mean tokens per task at most
                           ``(1 + d)`` x stable, i.e. ``max_ratio: 1 + d``
``tokens_per_task``        mean tokens per task; rules ``max``, ``max_ratio``,
                           ``max_increase``
``eval_score``             mean eval score in [0, 1]; rules ``min``, ``max_drop``,
                           ``min_ratio``
=========================  =========================================================

``min``/``max`` bound the canary alone; ``max_drop``/``max_increase`` bound the
difference canary - stable; ``min_ratio``/``max_ratio`` bound canary / stable.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import PolicyError

__all__ = ["Guardrail", "Policy", "Stage", "parse_duration"]

Metric = Literal["task_success_rate", "latency_ms", "tokens_per_task", "eval_score"]
Rule = Literal["min", "max", "max_drop", "max_increase", "min_ratio", "max_ratio"]

_RULES: dict[str, tuple[str, ...]] = {
    "task_success_rate": ("min", "max_drop", "min_ratio"),
    "latency_ms": ("max", "max_ratio", "max_increase"),
    "tokens_per_task": ("max", "max_ratio", "max_increase"),
    "eval_score": ("min", "max_drop", "min_ratio"),
}
_LATENCY = re.compile(r"^p(\d{1,2}(?:\.\d+)?)_latency_ms$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | timedelta, field: str = "duration") -> timedelta:
    """Parse ``"30m"``, ``"2h"``, ``"1h30m"``, ``"45s"`` or ``"1d"`` into a timedelta."""
    if isinstance(text, timedelta):
        return text
    match = _DURATION.match(str(text).strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise PolicyError(
            field, f"expected a duration such as '30m', '2h' or '1h30m'; got {text!r}"
        )
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Guardrail(_Model):
    """One metric, one rule, one limit."""

    name: str
    metric: Metric
    rule: Rule
    value: float
    quantile: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> Guardrail:
        allowed = _RULES[self.metric]
        if self.rule not in allowed:
            raise ValueError(
                f"rule {self.rule!r} does not apply to {self.metric}; use one of {allowed}"
            )
        if self.metric == "latency_ms" and self.quantile is None:
            raise ValueError("a latency guardrail needs its quantile, e.g. p95_latency_ms")
        v = self.value
        if self.rule in ("max_drop", "max_increase") and v < 0:
            raise ValueError(f"{self.rule} is a tolerated change and must be >= 0; got {v}")
        if self.rule in ("min_ratio", "max_ratio") and v <= 0:
            raise ValueError(f"{self.rule} must be > 0; got {v}")
        if self.metric in ("task_success_rate", "eval_score") and self.rule == "min":
            if not 0 < v < 1:
                raise ValueError(f"min of a rate or score must be in (0, 1); got {v}")
        if self.rule == "max" and v <= 0:
            raise ValueError(f"max must be > 0; got {v}")
        return self

    @property
    def alternative(self) -> Literal["less", "greater"]:
        """The harmful direction of the contrast."""
        return "less" if self.rule in ("min", "max_drop", "min_ratio") else "greater"

    @property
    def contrast(self) -> Literal["absolute", "difference", "ratio"]:
        if self.rule in ("min", "max"):
            return "absolute"
        return "ratio" if self.rule.endswith("ratio") else "difference"

    @property
    def margin(self) -> float:
        """The limit on the contrast (a drop is a negative difference)."""
        return -self.value if self.rule == "max_drop" else self.value

    def describe(self) -> str:
        what = {
            "task_success_rate": "success rate",
            "latency_ms": f"p{100 * (self.quantile or 0):g} latency",
            "tokens_per_task": "tokens per task",
            "eval_score": "eval score",
        }[self.metric]
        return {
            "min": f"canary {what} >= {self.value:g}",
            "max": f"canary {what} <= {self.value:g}",
            "max_drop": f"canary {what} at most {self.value:g} below stable",
            "max_increase": f"canary {what} at most {self.value:g} above stable",
            "min_ratio": f"canary {what} >= {self.value:g} x stable",
            "max_ratio": f"canary {what} <= {self.value:g} x stable",
        }[self.rule]


class Stage(_Model):
    """A rollout stage: canary traffic share in percent and minimum duration."""

    traffic: float = Field(gt=0, le=100)
    duration: timedelta | None = None
    mode: Literal["guard", "prove"] | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)


class Policy(_Model):
    """Everything the judge needs to turn data into a verdict.

    ``alpha`` is the family-wise false-rollback rate over all guardrails and all
    checks of the whole rollout; ``alpha_promote`` bounds the chance that a
    canary violating a guardrail is promoted past a ``prove`` stage.
    ``on_silent_canary`` says what a canary that stops finishing tasks while the
    stable cohort goes on gets: a named hold (default) or a rollback.
    ``max_tokens_per_task`` comes from the manifest's ``spec.config``: a task
    above it is a data problem, and the judge holds. ``user_history`` is how much
    of the users' past (before the rollout) adjusts the mean metrics.
    """

    guardrails: tuple[Guardrail, ...] = Field(min_length=1)
    stages: tuple[Stage, ...] = Field(min_length=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    alpha_promote: float = Field(default=0.05, gt=0, lt=1)
    min_samples: int = Field(default=30, ge=1)
    tuning_samples: int = Field(default=10_000, ge=10)
    srm_alpha: float = Field(default=0.001, gt=0, lt=1)
    strategy: Literal["canary"] = "canary"
    auto_rollback_on_failure: bool = True
    on_silent_canary: Literal["hold", "rollback"] = "hold"
    #: The manifest's ``spec.config.max_tokens_per_task``: tokens above it are corrupt data.
    max_tokens_per_task: float | None = Field(default=None, gt=0, le=1e9)
    #: How far before the rollout's first stage the stable cohort's events are read as
    #: each user's history, the covariate of the mean metrics (CUPED); 0 turns it off.
    user_history: timedelta = timedelta(hours=24)

    @field_validator("user_history", mode="before")
    @classmethod
    def _user_history(cls, v: Any) -> Any:
        span = parse_duration(v, "user_history")
        if span < timedelta(0):
            raise ValueError("user_history must not be negative")
        return span

    @field_validator("guardrails", mode="before")
    @classmethod
    def _guardrails(cls, raw: Any) -> Any:
        return _normalise_guardrails(raw)

    @model_validator(mode="after")
    def _check_stages(self) -> Policy:
        traffic = [s.traffic for s in self.stages]
        if any(b <= a for a, b in itertools.pairwise(traffic)):
            raise ValueError(f"stage traffic must rise strictly; got {traffic}")
        if not self.analysed_stages:
            raise ValueError("at least one stage must send less than 100% to the canary")
        names = [g.name for g in self.guardrails]
        if len(set(names)) != len(names):
            raise ValueError(f"guardrail names must be unique; got {names}")
        return self

    # -- derived quantities -------------------------------------------------
    @property
    def analysed_stages(self) -> tuple[int, ...]:
        """Indices of stages with a stable cohort to compare against."""
        return tuple(i for i, s in enumerate(self.stages) if s.traffic < 100)

    def stage_mode(self, stage: int) -> Literal["guard", "prove"]:
        """``prove`` for the last analysed stage unless set, else ``guard``."""
        explicit = self.stages[stage].mode
        if explicit is not None:
            return explicit
        return "prove" if stage == self.analysed_stages[-1] else "guard"

    def metrics_per_cohort(self) -> dict[str, frozenset[str]]:
        """The metrics whose values the judge reads, per cohort.

        The canary's for every guardrail; the stable cohort's only where a
        guardrail compares the canary with it (a difference or a ratio).
        """
        return {
            "canary": frozenset(g.metric for g in self.guardrails),
            "stable": frozenset(g.metric for g in self.guardrails if g.contrast != "absolute"),
        }

    def alpha_per_test(self) -> float:
        """Fail level of one guardrail over the whole rollout (Bonferroni over guardrails).

        Each guardrail's evidence is one anytime-valid process over all stages
        (per-stage e-values multiplied), so no split over stages is needed.
        """
        return self.alpha / len(self.guardrails)

    def alpha_pass(self) -> float:
        """Pass level of one guardrail over the whole rollout.

        Promotion needs every guardrail to pass (an intersection-union test), so
        no split over guardrails is needed; the pass evidence is kept across
        stages like the fail evidence, so none over stages either.
        """
        return self.alpha_promote

    def check_stage(self, stage: int) -> Stage:
        if not isinstance(stage, int) or not 0 <= stage < len(self.stages):
            raise PolicyError(
                "stage", f"expected a stage index in 0..{len(self.stages) - 1}; got {stage!r}"
            )
        if self.stages[stage].traffic >= 100:
            raise PolicyError(
                "stage",
                f"stage {stage} sends 100% of traffic to the canary: "
                "there is no stable cohort to compare",
            )
        return self.stages[stage]

    # -- constructors -------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Build from a manifest's ``rollout`` section (or a whole manifest)."""
        if not isinstance(data, dict):
            raise PolicyError("rollout", f"expected a mapping; got {type(data).__name__}")
        prefix = "rollout"
        if "spec" in data:
            spec = data.get("spec")
            if not isinstance(spec, dict) or not isinstance(spec.get("rollout"), dict):
                raise PolicyError("spec.rollout", "the manifest has no rollout section")
            config = spec.get("config")
            cap = config.get("max_tokens_per_task") if isinstance(config, dict) else None
            data, prefix = spec["rollout"], "spec.rollout"
            if cap is not None and "max_tokens_per_task" not in data:
                data = {**data, "max_tokens_per_task": cap}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            path = [prefix, *_guardrail_names(err["loc"], data.get("guardrails"))]
            raise PolicyError(
                ".".join(str(p) for p in path), err["msg"].removeprefix("Value error, ")
            ) from None

    @classmethod
    def from_manifest(cls, path: str | Path) -> Policy:
        """The ``spec.rollout`` plan of a release manifest (YAML).

        A whole manifest (``apiVersion``/``kind``) is validated first, so a bad
        model pin or stage plan is reported with its YAML path and line; a bare
        rollout document (only the ``rollout`` mapping) is read as it is.
        """
        p = Path(path)
        try:
            doc = yaml.safe_load(p.read_text())
        except OSError as exc:
            raise PolicyError(str(p), f"cannot read the manifest: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise PolicyError(str(p), f"not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise PolicyError(str(p), "expected a YAML mapping at the top level")
        if "apiVersion" in doc or "kind" in doc:
            from .manifest import load_manifest  # the manifest layer builds on this module

            return load_manifest(p, check_files=False).release.policy()
        return cls.from_dict(doc if "spec" in doc else {"spec": doc})


def _guardrail_names(loc: tuple[Any, ...], raw: Any) -> list[Any]:
    """An error location with the guardrail's name in place of its list index."""
    path = list(loc)
    if len(path) >= 2 and path[0] == "guardrails" and isinstance(path[1], int):
        try:
            path[1] = _normalise_guardrails(raw)[path[1]]["name"]
        except (ValueError, TypeError, IndexError, KeyError):
            pass  # the index is still a precise location
    return path


def _normalise_guardrails(raw: Any) -> Any:
    """Expand the short mapping form into explicit guardrail dicts."""
    if isinstance(raw, list | tuple):
        return [_explicit(item, i) for i, item in enumerate(raw)]
    if not isinstance(raw, dict):
        return raw  # pydantic reports the type error
    out: list[Any] = []
    for key, rules in raw.items():
        if not isinstance(rules, dict) or not rules:
            raise ValueError(f"guardrail {key!r} needs a rule such as {{max: 8000}}")
        for rule, value in rules.items():
            name = key if len(rules) == 1 else f"{key}.{rule}"
            out.append(_from_key(str(key), str(rule), value, name))
    return out


def _explicit(item: Any, index: int) -> Any:
    if not isinstance(item, dict) or "metric" not in item:
        raise ValueError(f"guardrail {index} must be a mapping with a 'metric' and one rule")
    rules = {k: v for k, v in item.items() if k not in ("metric", "name")}
    if len(rules) != 1:
        raise ValueError(f"guardrail {index} must name exactly one rule; got {sorted(rules)}")
    ((rule, value),) = rules.items()
    return _from_key(str(item["metric"]), str(rule), value, str(item.get("name", item["metric"])))


def _from_key(key: str, rule: str, value: Any, name: str) -> dict[str, Any]:
    if key == "token_spend_delta":
        if rule != "max":
            raise ValueError(
                "token_spend_delta takes only {max: d} (tokens at most (1 + d) x stable)"
            )
        if not isinstance(value, int | float) or value <= -1:
            raise ValueError(f"token_spend_delta max must be a number > -1; got {value!r}")
        return {"name": name, "metric": "tokens_per_task", "rule": "max_ratio", "value": 1 + value}
    match = _LATENCY.match(key)
    if match:
        q = float(match.group(1)) / 100
        return {"name": name, "metric": "latency_ms", "rule": rule, "value": value, "quantile": q}
    if key in ("task_success_rate", "tokens_per_task", "eval_score"):
        return {"name": name, "metric": key, "rule": rule, "value": value}
    raise ValueError(
        f"unknown guardrail {key!r}; expected task_success_rate, pNN_latency_ms, "
        "token_spend_delta, tokens_per_task or eval_score"
    )
