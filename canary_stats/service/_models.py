"""Request and response bodies of the judge service: the JSON contract callers rely on.

Argo Rollouts templates every value as a string, so the stage may come as ``"1"``;
Flagger's ``metadata`` is a ``map[string]string``. The JSON Schemas below say exactly
what is accepted, nothing is coerced beyond them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    model_validator,
)

from ..errors import InputError

__all__ = [
    "ArgoJudgeRequest",
    "Decision",
    "ErrorOut",
    "FlaggerHook",
    "FlaggerMetadata",
    "FlaggerPayload",
    "HealthOut",
    "HookAnswer",
    "ReadyOut",
    "Release",
    "ValidationErrorOut",
    "VerdictOut",
]

Decision = Literal["promote", "hold", "rollback"]

_STAGE_TEXT = re.compile(r"^[0-9]{1,4}$")
# RFC 3339 with a zone: a time without one is an error, not a guess.
_TIME_TEXT = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


def _stage(value: Any) -> int:
    if isinstance(value, str) and _STAGE_TEXT.match(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9999:
        return value
    raise ValueError("expected a stage index (0 = first stage), as a number or a string of digits")


def _zoned_time(value: Any) -> datetime:
    if not isinstance(value, str) or not re.match(_TIME_TEXT, value):
        raise ValueError("expected an RFC 3339 time with a zone, e.g. 2026-11-20T10:00:00Z")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid time") from None


Stage = Annotated[
    int,
    BeforeValidator(_stage),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 9999},
                {"type": "string", "pattern": _STAGE_TEXT.pattern},
            ],
            "description": "Index of the stage in the manifest's rollout plan (0 = first).",
        }
    ),
]
ZonedTime = Annotated[
    datetime,
    BeforeValidator(_zoned_time),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _TIME_TEXT}),
]
#: A release's label value (version, pod-template hash or workload name).
Label = Annotated[str, Field(min_length=1, max_length=253, pattern=_PRINTABLE)]
#: A manifest path on the server, inside the service's manifest directory.
ManifestPath = Annotated[str, Field(min_length=1, max_length=1024, pattern=_PRINTABLE)]
Text = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00]*$")]


class Release(BaseModel):
    """What one verdict is about: a release pair at one stage of a rollout plan."""

    model_config = ConfigDict(frozen=True)

    stable: str
    canary: str
    stage: int
    manifest: str | None = None
    stage_started_at: datetime | None = None
    #: When the rollout's earlier stages began, when the caller knows (the executor).
    stage_starts: tuple[datetime | None, ...] | None = None

    @classmethod
    def of(cls, request: BaseModel) -> Release:
        """The release a request body names (its fields of the same names)."""
        return cls.model_validate(
            {name: getattr(request, name) for name in cls.model_fields if hasattr(request, name)}
        )


def _distinct(stable: str | None, canary: str | None) -> None:
    if stable is not None and stable == canary:
        raise ValueError("canary must differ from stable")


class ArgoJudgeRequest(BaseModel):
    """The ``jsonBody`` of an Argo Rollouts web metric (``method: POST``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"stable": "v41", "canary": "v42", "stage": "1", "rollout": "research-agent"}
            ]
        },
    )

    stable: Label = Field(description="Label value of the stable release's series.")
    canary: Label = Field(description="Label value of the canary release's series.")
    stage: Stage
    manifest: ManifestPath | None = Field(
        default=None, description="Manifest on the server; default: the service's manifest."
    )
    stage_started_at: ZonedTime | None = Field(
        default=None,
        description="When the stage began; default: when the service first saw this "
        "canary at this stage (kept across restarts).",
    )
    stage_starts: list[ZonedTime | None] | None = Field(
        default=None,
        max_length=64,
        description="When each earlier stage (0 .. stage - 1) of this rollout began, null "
        "where unknown; default: when the service first saw the pair at each stage.",
    )
    rollout: Text | None = Field(default=None, description="Informational, for the logs.")
    namespace: Text | None = Field(default=None, description="Informational, for the logs.")

    @model_validator(mode="after")
    def _check(self) -> ArgoJudgeRequest:
        _distinct(self.stable, self.canary)
        if self.stage_starts is not None and len(self.stage_starts) != self.stage:
            raise ValueError(
                f"stage_starts: expected one entry per earlier stage ({self.stage}); "
                f"got {len(self.stage_starts)}"
            )
        return self

    def release(self) -> Release:
        return Release.of(self)


class FlaggerHook(StrEnum):
    """Flagger's webhook types (``analysis.webhooks[].type``)."""

    confirm_rollout = "confirm-rollout"
    pre_rollout = "pre-rollout"
    rollout = "rollout"
    confirm_traffic_increase = "confirm-traffic-increase"
    confirm_promotion = "confirm-promotion"
    post_rollout = "post-rollout"
    rollback = "rollback"
    event = "event"


class FlaggerMetadata(BaseModel):
    """The hook's ``metadata`` map: the release to judge, plus anything else Flagger sends.

    ``token`` authenticates the call (Flagger cannot send headers). Event hooks add
    ``eventMessage``, ``eventType`` and ``timestamp``.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str] = Field(init=False)

    stable: Label | None = None
    canary: Label | None = None
    stage: Stage | None = None
    manifest: ManifestPath | None = None
    stage_started_at: ZonedTime | None = None
    token: SecretStr | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _check(self) -> FlaggerMetadata:
        _distinct(self.stable, self.canary)
        return self

    def release(self, *, stage: int | None = None) -> Release:
        """The release pair and stage; a hook that judges needs all three.

        Flagger's metadata is fixed for the whole canary, so the stage usually comes
        from the service's own count of traffic increases (``stage``) instead.
        """
        for name in ("stable", "canary"):
            if getattr(self, name) is None:
                raise InputError(f"metadata.{name}", "required by this hook; set it in metadata")
        if self.stage is None and stage is None:
            raise InputError("metadata.stage", "required by this hook; set it in metadata")
        if self.stage is None:
            return Release.of(self.model_copy(update={"stage": stage}))
        return Release.of(self)

    def extra(self, key: str) -> str | None:
        return (self.__pydantic_extra__ or {}).get(key)


class FlaggerPayload(BaseModel):
    """``CanaryWebhookPayload`` as Flagger POSTs it; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    name: Text
    namespace: Text
    phase: Text = Field(description="The canary's phase, e.g. Progressing, Succeeded, Failed.")
    checksum: Text = ""
    metadata: FlaggerMetadata = Field(default_factory=FlaggerMetadata)


class HookAnswer(BaseModel):
    """What a Flagger hook is told; Flagger reads only the status (2xx = yes)."""

    hook: FlaggerHook
    answer: Literal["yes", "no"]
    decision: Decision | None = None
    reason: str


class GuardrailOut(BaseModel):
    status: Literal["pass", "fail", "inconclusive"]
    estimate: float | None
    interval: tuple[float | None, float | None]
    contrast: str
    rule: str
    limit: float
    margin: float
    n_stable: int
    n_canary: int
    reason: str
    method: str
    resolution: float | None


class SampleRatioOut(BaseModel):
    observed_share: float | None
    expected_share: float
    pvalue: float | None
    mismatch: bool


class AlphaOut(BaseModel):
    fail_per_guardrail_and_stage: float
    pass_per_guardrail: float


class VerdictOut(BaseModel):
    """``Verdict.to_dict()``: Argo's conditions read ``result.decision``.

    A hold the service answers while the verdict is still being computed carries
    no evidence: ``metrics`` is empty and the statistics are null.
    """

    decision: Decision
    reason: str
    stage: int
    mode: Literal["guard", "prove"] | None
    traffic: float | None
    elapsed_minutes: float | None
    eta_minutes: float | None
    n_stable: int
    n_canary: int
    metrics: dict[str, GuardrailOut]
    sample_ratio: SampleRatioOut | None
    data_issues: list[str]
    alpha: AlphaOut | None


class ErrorOut(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """A request the judge cannot use; each entry names the field and what was expected."""

    detail: list[FieldError]


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    ready: bool
    store: Literal["open", "closed"]
    refresher: Literal["alive", "stopped"]
