"""The release manifest as Pydantic models: what a release pins, and the rules it obeys.

Every model is frozen and forbids unknown keys (a typo in ``rollout``, ``prompts``,
``tools``, ``memory`` or ``metadata`` is an error), with two open sections:
``spec.model`` names any number of roles (``primary``, required, ``fallback``,
``local``, ...), each an exact pin; and ``spec.config`` is the release's runtime
configuration, so keys canary_stats does not know (``provider_routing``) are kept as
written and diffed, while the keys below are validated. ``metadata.image`` is the
container image reference the release ships in (``registry/repo:tag`` or
``@sha256:...``); its tag must not be ``latest`` or missing. Paths in ``spec.prompts`` and
``spec.tools[].schema`` are relative to the manifest's directory (``..`` and
absolute paths are refused, so the content hashes stay inside the release); a
trailing slash means a directory, hashed file by file.

Model pins. An id is an exact pin when it carries an explicit version: a dated
snapshot (``gpt-4-turbo-2024-04-09``, ``claude-3-5-sonnet-20241022``), a numeric
revision of 3-4 digits (``gpt-4-0613``, ``gemini-1.5-pro-002``,
``mistral-large-2411``), a version tail of two or more numbers after the family,
the form Anthropic gives snapshots without a date (``claude-sonnet-4-6``,
``claude-2.1``), or an ``@version`` tail (Vertex AI: ``claude-3-5-sonnet-v2@20241022``).

Refused: ``latest`` in any position (``latest``, ``claude-3-opus-latest``,
``x@latest``), bare families (``gpt-4``, ``gpt-4o``, ``gpt-4-turbo``, ``claude``,
``claude-sonnet``, ``claude-3-opus``), and the known moving aliases in
``MOVING_ALIASES`` that look like version tails (``claude-sonnet-4-5`` points
to whichever snapshot Anthropic names; ``gpt-4.1`` likewise). A provider prefix
(``anthropic/``) is ignored when matching aliases, and ``.`` matches ``-``.

``spec.config`` knobs canary_stats checks (all but ``max_tokens_per_task`` optional;
``None`` means the agent runtime's own default; any other key is the runtime's own):

=======================  ====================================================
``max_tokens_per_task``  hard cap on tokens one task may spend (> 0)
``rate_limits``          per tool (or ``model``): ``"20/60s"`` = 20 calls per 60 s
``max_steps_per_task``   cap on agent loop iterations / tool calls per task
``task_timeout``         wall-clock limit of one task (``"10m"``)
``tool_timeout``         limit of one tool call; at most ``task_timeout``
``max_retries``          retries of a failed model or tool call (>= 0)
``temperature``          sampling temperature of the model, in [0, 2]
``flags``                app-specific switches (name -> scalar), versioned and
                         diffed with the release instead of living elsewhere
=======================  ====================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..errors import PolicyError
from ..policy import Policy, parse_duration
from ._yaml import Loc

__all__ = [
    "MOVING_ALIASES",
    "AgentRelease",
    "Config",
    "FileRef",
    "Memory",
    "Metadata",
    "ModelPins",
    "Prompts",
    "RateLimit",
    "Spec",
    "Tool",
    "image_problem",
    "model_pin_problem",
]

#: Ids that look pinned but move (normalised: lower case, ``.`` as ``-``) -> the snapshot.
MOVING_ALIASES: dict[str, str] = {
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "gpt-4-1": "gpt-4.1-2025-04-14",
}

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
_DATE = re.compile(r"(?<![0-9])(20\d\d)-?(\d\d)-?(\d\d)(?![0-9])")
_REVISION = re.compile(r"(?:^|[-_@:])\d{3,4}(?=$|[-_.@:])")
_VERSION_TAIL = re.compile(r"[A-Za-z][A-Za-z0-9]*-\d+(?:[-.]\d+)+$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_NAME = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_TOOL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RATE = re.compile(r"^([1-9]\d*)\s*/\s*(\S+)$")
_ROLE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# OCI image reference: [registry[:port]/]path[:tag][@algorithm:hex]
_IMAGE_NAME = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_IMAGE_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")


def model_pin_problem(model_id: str) -> str | None:
    """Why ``model_id`` is not an exact pin, or ``None`` when it is one."""
    if not _MODEL_ID.match(model_id):
        return f"expected a model id such as claude-sonnet-4-6; got {model_id!r}"
    parts = re.split(r"[-._:/@]", model_id.lower())
    if "latest" in parts:
        return (
            f"{model_id!r} is a moving alias ('latest' follows the newest model): "
            "pin a dated snapshot such as gpt-4-turbo-2024-04-09"
        )
    alias = model_id.lower().rsplit("/", 1)[-1].replace(".", "-")
    if alias in MOVING_ALIASES:
        return f"{model_id!r} is a moving alias: pin the snapshot {MOVING_ALIASES[alias]!r}"
    for y, m, d in _DATE.findall(model_id):
        try:
            date(int(y), int(m), int(d))
        except ValueError:
            return f"{model_id!r} carries a snapshot date {y}-{m}-{d} that is not a calendar day"
    at_version = model_id.rsplit("@", 1)[1] if "@" in model_id else ""
    if at_version or any(r.search(model_id) for r in (_DATE, _REVISION, _VERSION_TAIL)):
        return None
    return (
        f"{model_id!r} names a model family, not a pin: an id must carry a dated snapshot "
        "(-2024-04-09 or -20240409), a version tail (claude-sonnet-4-6) or @version"
    )


def image_problem(image: str) -> str | None:
    """Why ``image`` is not a pinned container image reference, or ``None`` when it is.

    Accepted: ``[registry[:port]/]path:tag`` with a tag other than ``latest``, and
    ``path[:tag]@sha256:<hex>``. Refused: no tag and no digest (that is ``latest``).
    """
    example = "ghcr.io/acme/research-agent:2026.04.19-a3f2c1"
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    name, colon, tag = rest.rpartition(":") if rest.rfind(":") > slash else (rest, "", "")
    if (
        not _IMAGE_NAME.match(name)
        or (colon and not _IMAGE_TAG.match(tag))
        or ("@" in image and not _IMAGE_DIGEST.match(digest))
    ):
        return f"expected an image reference such as {example}; got {image!r}"
    if tag.lower() == "latest":
        return f"{image!r} is a moving tag: pin the release's own tag, such as {example}"
    if not colon and not digest:
        return f"{image!r} has no tag (that means 'latest'): pin one, such as {example}"
    return None


def _fail(message: str, *at: str | int) -> PydanticCustomError:
    """A validation error placed ``at`` a path below the validated field.

    The loader appends ``at`` to Pydantic's location to find the YAML line.
    """
    return PydanticCustomError("manifest", "{reason}", {"reason": message, "at": at})


def _pin(value: str) -> str:
    problem = model_pin_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _image(value: str) -> str:
    problem = image_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _relative(value: str) -> str:
    if not value.strip() or "\\" in value:
        raise ValueError(f"expected a relative path using '/' (a/b.md); got {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts:  # "./" would lock the lock
        raise ValueError(f"{value!r} is not a path inside the manifest's directory")
    return value


def _file(value: str) -> str:
    if value.endswith("/"):
        raise ValueError(f"expected a file, not a directory; got {value!r}")
    return value


def _semver(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected a semantic version as text such as '1.4.0'; got {value!r}")
    if not _SEMVER.match(value):
        hint = " (drop the leading 'v')" if value[:1] in "vV" and _SEMVER.match(value[1:]) else ""
        raise ValueError(
            f"expected a semantic version MAJOR.MINOR.PATCH such as 1.4.0; got {value!r}{hint}"
        )
    return value


def _duration(value: Any) -> timedelta:
    try:
        parsed = parse_duration(value)
    except PolicyError as exc:
        raise ValueError(_policy_message(exc)) from None
    if parsed <= timedelta(0):
        raise ValueError(f"expected a positive duration; got {value!r}")
    return parsed


def _pattern(regex: re.Pattern[str], example: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"expected a name such as {example}; got {value!r}")
        return value

    return AfterValidator(check)


def _policy_message(exc: PolicyError) -> str:
    """A PolicyError's message without its field, which the caller reports itself."""
    message = str(exc).removeprefix(f"{exc.field}: ")
    return message.removeprefix(f"{exc.field.rsplit('.', 1)[-1]}: ")


ModelId = Annotated[StrictStr, AfterValidator(_pin)]
ImageRef = Annotated[StrictStr, AfterValidator(_image)]
RelPath = Annotated[StrictStr, AfterValidator(_relative)]
FilePath = Annotated[StrictStr, AfterValidator(_relative), AfterValidator(_file)]
Semver = Annotated[str, BeforeValidator(_semver)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Model):
    """At most ``count`` calls per ``window``; written ``"20/60s"``."""

    count: int = Field(gt=0)
    window: timedelta

    @classmethod
    def parse(cls, text: Any) -> RateLimit:
        match = _RATE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"expected a rate limit such as '20/60s' (calls/window); got {text!r}")
        count, window = int(match.group(1)), match.group(2)
        try:
            # "20/s" reads as 20 per second
            seconds = _duration(window if window[0].isdigit() else f"1{window}")
        except ValueError:
            raise ValueError(f"{text!r} has no valid window (such as 60s, 1m or 1h)") from None
        return cls(count=count, window=seconds)

    def __str__(self) -> str:
        return f"{self.count}/{int(self.window.total_seconds())}s"


class Metadata(_Model):
    name: Annotated[StrictStr, _pattern(_NAME, "research-agent")]
    version: Annotated[StrictStr, _pattern(_RELEASE, "2026.04.19-a3f2c1")]
    image: ImageRef | None = None


class Prompts(_Model):
    system: FilePath
    task_templates: RelPath | None = None
    few_shot_examples: RelPath | None = None


class Tool(_Model):
    name: Annotated[StrictStr, _pattern(_TOOL, "web_search")]
    version: Semver
    schema_path: FilePath = Field(alias="schema")


class ModelPins(_Model):
    """The model of each role: ``primary`` (required), ``fallback``, ``local`` or any other
    role name (lower case, ``_``), every one an exact pin."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, ModelId]

    primary: ModelId
    fallback: ModelId | None = None

    @model_validator(mode="before")
    @classmethod
    def _roles(cls, raw: Any) -> Any:
        for role in raw if isinstance(raw, dict) else ():
            if not (isinstance(role, str) and _ROLE.match(role)):
                raise _fail(f"expected a role name such as local or fallback; got {role!r}", role)
        return raw

    @model_validator(mode="after")
    def _distinct(self) -> ModelPins:
        if self.fallback == self.primary:
            raise _fail(f"the fallback is the primary model {self.primary!r}", "fallback")
        return self

    def roles(self) -> dict[str, str]:
        """Every role -> its pinned model id: primary, fallback, then the others as written."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Memory(_Model):
    schema_version: StrictInt = Field(ge=1)
    migration_from: StrictInt | None = None

    @model_validator(mode="after")
    def _one_step(self) -> Memory:
        prev = self.schema_version - 1
        if self.migration_from is not None and self.migration_from != prev:
            msg = f"must be schema_version - 1 = {prev} (one step per release)"
            raise _fail(f"{msg}; got {self.migration_from}", "migration_from")
        return self


class Config(_Model):
    """The runtime configuration: the knobs in the module docstring are checked, any
    other key is the agent runtime's own and kept as written (``model_extra``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    max_tokens_per_task: StrictInt = Field(gt=0)
    rate_limits: dict[str, RateLimit] = {}
    max_steps_per_task: StrictInt | None = Field(default=None, gt=0)
    task_timeout: Duration | None = None
    tool_timeout: Duration | None = None
    max_retries: StrictInt | None = Field(default=None, ge=0)
    temperature: StrictFloat | None = Field(default=None, ge=0, le=2)
    flags: dict[str, StrictStr | StrictBool | StrictInt | StrictFloat] = {}

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rates(cls, raw: Any) -> Any:
        out: dict[str, RateLimit] = {}
        for key, text in raw.items() if isinstance(raw, dict) else ():
            try:
                out[key] = RateLimit.parse(text)
            except ValueError as exc:
                raise _fail(str(exc), key) from None
        return out if isinstance(raw, dict) else raw  # Pydantic reports a wrong type

    @field_validator("flags", mode="before")
    @classmethod
    def _scalars(cls, raw: Any) -> Any:
        # Checked here: Pydantic would report one error per member of the union.
        for key, value in raw.items() if isinstance(raw, dict) else ():
            if not isinstance(value, str | bool | int | float):
                raise _fail(f"a flag is text, a number or true/false; got {value!r}", key)
        return raw

    @model_validator(mode="after")
    def _timeouts(self) -> Config:
        task, tool = self.task_timeout, self.tool_timeout
        if task is not None and tool is not None and tool > task:
            raise _fail(f"a tool call ({tool}) cannot outlast its task ({task})", "tool_timeout")
        return self


class Spec(_Model):
    prompts: Prompts
    tools: tuple[Tool, ...]
    model: ModelPins
    memory: Memory
    config: Config
    rollout: dict[str, Any]

    @field_validator("rollout")
    @classmethod
    def _rollout(cls, raw: dict[str, Any]) -> dict[str, Any]:
        if "spec" in raw:  # Policy.from_dict would read it as a whole manifest
            raise _fail("Extra inputs are not permitted", "spec")
        _check_traffic(raw.get("stages"))
        try:
            Policy.from_dict(raw)
        except PolicyError as exc:
            at = exc.field.split(".")[1:]  # below "rollout"
            raise _fail(_policy_message(exc), *(int(p) if p.isdigit() else p for p in at)) from None
        return raw

    @model_validator(mode="after")
    def _cross(self) -> Spec:
        names = [t.name for t in self.tools]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _fail(f"tool {name!r} is declared twice", "tools", i, "name")
        for key in self.config.rate_limits:
            if key != "model" and key not in names:
                known = ", ".join(names) or "none"
                msg = f"{key!r} is neither a declared tool ({known}) nor 'model'"
                raise _fail(msg, "config", "rate_limits", key)
        return self


def _check_traffic(stages: Any) -> None:
    """Traffic rises strictly and ends at 100%: a plan that never completes is a typo."""
    traffic: list[float] = []
    for stage in stages if isinstance(stages, list) else ():
        t = stage.get("traffic") if isinstance(stage, dict) else None
        if not isinstance(t, int | float) or isinstance(t, bool):
            return  # Policy reports the shape
        traffic.append(t)
    for i in range(1, len(traffic)):
        if traffic[i] <= traffic[i - 1]:
            sends = f"stage {i} sends {traffic[i]:g}% after {traffic[i - 1]:g}%"
            raise _fail(f"{sends}: traffic must rise strictly", "stages", i, "traffic")
    if traffic and traffic[-1] != 100:
        msg = f"the last stage must send 100% of traffic to the canary; got {traffic[-1]:g}%"
        raise _fail(msg, "stages", len(traffic) - 1, "traffic")


@dataclass(frozen=True)
class FileRef:
    """A file or directory (trailing ``/``) the manifest references, and where."""

    loc: Loc
    path: str

    @property
    def is_dir(self) -> bool:
        return self.path.endswith("/")

    @property
    def relative(self) -> str:
        """The normalised POSIX path from the manifest's directory."""
        return PurePosixPath(self.path).as_posix()


class AgentRelease(_Model):
    """One deployable release: prompts, tools, model pins, memory, config, rollout."""

    api_version: Literal["agents/v1"] = Field(alias="apiVersion")
    kind: Literal["AgentRelease"]
    metadata: Metadata
    spec: Spec

    def policy(self) -> Policy:
        """The rollout plan as the judge's policy (validated when the model was built)."""
        cap = {"max_tokens_per_task": self.spec.config.max_tokens_per_task}
        return Policy.from_dict({"spec": {"rollout": self.spec.rollout, "config": cap}})

    def references(self) -> tuple[FileRef, ...]:
        """Every referenced prompt, template, example and schema path, in manifest order."""
        prompts = self.spec.prompts.model_dump(exclude_none=True)  # in field order
        refs = [FileRef(("spec", "prompts", key), path) for key, path in prompts.items()]
        tools = enumerate(self.spec.tools)
        refs += [FileRef(("spec", "tools", i, "schema"), t.schema_path) for i, t in tools]
        return tuple(refs)
