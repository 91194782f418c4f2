"""Two releases compared component by component, with a risk class and a rollout plan.

Files are compared by content hash (each manifest's files resolve from its own
directory), so moving a prompt directory without editing it is no change. Within a
directory reference, files are matched by their path inside it.

Risk of each change, and of the diff (the highest):

- **high**: the primary model changes; a prompt file is rewritten (at least
  ``REWRITE_SHARE`` of its lines and ``REWRITE_MIN_LINES`` lines changed); a tool's
  major version moves or a tool is removed; the memory schema version moves; the
  manifests name different agents.
- **medium**: other prompt edits, added or removed prompt files; a new tool, a minor
  bump, a schema file that changed; any other model role (fallback, local, ...);
  automatic rollback switched off.
- **low**: patch bumps, runtime config (the knobs canary_stats knows and the runtime's
  own keys), the rest of the rollout plan.

Plan: a primary-model change or a prompt rewrite changes every answer, which stage
metrics on live users are a costly way to learn about: **shadow first, then canary**.
Other high-risk diffs get a **careful canary**, the rest the **standard canary**.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel

from ._hashes import content_hashes
from ._load import Manifest
from ._model import RateLimit, Tool

__all__ = [
    "REWRITE_MIN_LINES",
    "REWRITE_SHARE",
    "ManifestChange",
    "ManifestDiff",
    "RecommendedPlan",
    "diff_manifests",
]

Risk = Literal["low", "medium", "high"]
Value = str | int | float | bool | None

#: A changed prompt file is a rewrite from this share of its lines changed ...
REWRITE_SHARE = 0.3
#: ... and at least this many (so a two-line template tweak stays an edit).
REWRITE_MIN_LINES = 5

_ORDER: dict[Risk, int] = {"low": 0, "medium": 1, "high": 2}
_ROLES = {
    "system": "system prompt",
    "task_templates": "task template",
    "few_shot_examples": "few-shot example",
}


@dataclass(frozen=True, slots=True)
class ManifestChange:
    """One difference: ``component`` is prompts, tools, model, memory, config, rollout or
    metadata; ``path`` a file or a dotted key inside the component; ``kind`` added,
    removed, changed, rewritten, or for tool versions major, minor, patch, prerelease
    (``... downgrade`` when the version goes back)."""

    component: str
    path: str
    old: Value
    new: Value
    kind: str
    risk: Risk
    reason: str

    def to_dict(self) -> dict[str, Value]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RecommendedPlan:
    """How to roll the new release out: ``code`` for machines, ``text`` for people.

    ``code`` is ``none`` (nothing changed), ``standard_canary``, ``careful_canary`` or
    ``shadow_then_canary``.
    """

    code: str
    text: str


@dataclass(frozen=True, slots=True)
class ManifestDiff:
    """What changed from ``old`` to ``new`` (``name version`` of each), how risky, and how
    to roll it out. ``reasons`` justify ``risk``, most severe first."""

    old: str
    new: str
    changes: tuple[ManifestChange, ...]
    risk: Risk
    reasons: tuple[str, ...]
    plan: RecommendedPlan

    def to_dict(self) -> dict[str, object]:
        return {
            "old": self.old,
            "new": self.new,
            "changes": [c.to_dict() for c in self.changes],
            "risk": self.risk,
            "reasons": list(self.reasons),
            "plan": {"code": self.plan.code, "text": self.plan.text},
        }

    def summary_lines(self) -> list[str]:
        lines = [f"{self.old} -> {self.new}: {len(self.changes)} changes, risk {self.risk}"]
        for c in self.changes:
            move = f"{_short(c.old)} -> {_short(c.new)}"
            lines.append(f"  {c.component:<8} {c.path:<32} {c.kind:<10} {move}")
        lines += [f"  - {reason}" for reason in self.reasons]
        lines.append(f"plan ({self.plan.code}): {self.plan.text}")
        return lines


def diff_manifests(old: Manifest, new: Manifest) -> ManifestDiff:
    """Compare two loaded manifests component by component.

    Reads the files both reference (content hashes, and the lines of changed prompt
    files); raises ManifestError, at the reference, when one is missing.
    """
    a, b = old.release, new.release
    hashes = content_hashes(old), content_hashes(new)
    changes = [
        *_diff_prompts(old, new, hashes),
        *_diff_tools(old, new, hashes),
        *_diff_values("model", a.spec.model.model_dump(), b.spec.model.model_dump()),
        *_diff_values("memory", a.spec.memory.model_dump(), b.spec.memory.model_dump()),
        *_diff_values("config", _flat(a.spec.config), _flat(b.spec.config)),
        *_diff_values("rollout", _flat(a.spec.rollout), _flat(b.spec.rollout)),
        *_diff_values("metadata", {"name": a.metadata.name}, {"name": b.metadata.name}),
    ]
    risk: Risk = max((c.risk for c in changes), key=_ORDER.__getitem__, default="low")
    ranked = sorted(changes, key=lambda c: -_ORDER[c.risk])
    reasons = tuple(dict.fromkeys(f"{c.risk}: {c.reason}" for c in ranked))
    return ManifestDiff(
        old=f"{a.metadata.name} {a.metadata.version}",
        new=f"{b.metadata.name} {b.metadata.version}",
        changes=tuple(changes),
        risk=risk,
        reasons=reasons,
        plan=_plan(changes, risk),
    )


def _plan(changes: list[ManifestChange], risk: Risk) -> RecommendedPlan:
    if not changes:
        return RecommendedPlan(
            "none", "Nothing differs between the two releases: there is nothing to roll out."
        )
    memory = any(c.component == "memory" and c.path == "schema_version" for c in changes)
    migrate = " Apply the additive memory migration before the first stage." if memory else ""
    shadow = [
        c.reason
        for c in changes
        if (c.component, c.path) == ("model", "primary") or c.kind == "rewritten"
    ]
    if shadow:
        why = "; ".join(shadow)
        text = (
            f"Shadow first, then canary: {why}. Mirror live traffic to the new release without"
            f" serving its answers, compare, and only then start the canary stages.{migrate}"
        )
        return RecommendedPlan("shadow_then_canary", text)
    if risk == "high":
        text = (
            "Careful canary: approve each promotion by hand, let every stage run its full"
            f" duration, and keep the previous release ready for rollback.{migrate}"
        )
        return RecommendedPlan("careful_canary", text)
    return RecommendedPlan(
        "standard_canary", f"Standard canary through the manifest's stages.{migrate}"
    )


def _diff_prompts(
    old: Manifest, new: Manifest, hashes: tuple[dict[str, str], dict[str, str]]
) -> list[ManifestChange]:
    before, after = _prompt_files(old, hashes[0]), _prompt_files(new, hashes[1])
    changes: list[ManifestChange] = []
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key), after.get(key)
        role, path, _ = now or before[key]
        digest_old, digest_new = was and was[2], now and now[2]
        if digest_old == digest_new:
            continue
        if was is None or now is None:
            kind = "added" if was is None else "removed"
            reason = f"{role} {path} {kind}"
            changes.append(
                ManifestChange("prompts", path, digest_old, digest_new, kind, "medium", reason)
            )
            continue
        added, removed, share = _churn(old.directory / was[1], new.directory / now[1])
        lines = f"+{added} -{removed} lines"
        if share >= REWRITE_SHARE and added + removed >= REWRITE_MIN_LINES:
            reason = f"{role} {path} rewritten ({share:.0%} of its lines, {lines})"
            changes.append(
                ManifestChange("prompts", path, digest_old, digest_new, "rewritten", "high", reason)
            )
        else:
            reason = f"{role} {path} edited ({lines})"
            changes.append(
                ManifestChange("prompts", path, digest_old, digest_new, "changed", "medium", reason)
            )
    return changes


def _prompt_files(manifest: Manifest, hashes: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """Prompt files keyed by reference and path inside it -> (role, path, hash)."""
    out: dict[str, tuple[str, str, str]] = {}
    for ref in manifest.release.references():
        if ref.loc[:2] != ("spec", "prompts"):
            continue
        field = str(ref.loc[2])
        prefix = f"{ref.relative}/"
        for path, digest in hashes.items():
            if ref.is_dir and path.startswith(prefix):
                out[f"{field}/{path.removeprefix(prefix)}"] = (_ROLES[field], path, digest)
            elif not ref.is_dir and path == ref.relative:
                out[field] = (_ROLES[field], path, digest)
    return out


def _churn(was: Path, now: Path) -> tuple[int, int, float]:
    """Lines added and removed, and their share of both versions' lines."""
    a = was.read_text(encoding="utf-8", errors="replace").splitlines()
    b = now.read_text(encoding="utf-8", errors="replace").splitlines()
    added = removed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += i2 - i1
            added += j2 - j1
    return added, removed, (added + removed) / max(len(a) + len(b), 1)


def _diff_tools(
    old: Manifest, new: Manifest, hashes: tuple[dict[str, str], dict[str, str]]
) -> list[ManifestChange]:
    before = {t.name: t for t in old.release.spec.tools}
    after = {t.name: t for t in new.release.spec.tools}
    changes: list[ManifestChange] = []
    for name in [*before, *(n for n in after if n not in before)]:
        was, now = before.get(name), after.get(name)
        if was is None and now is not None:
            reason = f"new tool {name} {now.version}"
            changes.append(
                ManifestChange("tools", name, None, now.version, "added", "medium", reason)
            )
        elif now is None and was is not None:
            reason = f"tool {name} removed: prompts or stored plans may still call it"
            changes.append(
                ManifestChange("tools", name, was.version, None, "removed", "high", reason)
            )
        elif was is not None and now is not None:
            changes += _tool_changes(name, was, now, hashes)
    return changes


def _tool_changes(
    name: str, was: Tool, now: Tool, hashes: tuple[dict[str, str], dict[str, str]]
) -> list[ManifestChange]:
    changes = (
        [] if was.version == now.version else [_version_change(name, was.version, now.version)]
    )
    # Hash keys are normalised paths (``a//b.json`` is ``a/b.json``).
    old_key, new_key = (PurePosixPath(t.schema_path).as_posix() for t in (was, now))
    digest_old, digest_new = hashes[0][old_key], hashes[1][new_key]
    if digest_old != digest_new:
        bump = "" if changes else " without a version bump"
        reason = f"tool {name} schema {now.schema_path} changed{bump}"
        changes.append(
            ManifestChange(
                "tools", f"{name}.schema", digest_old, digest_new, "changed", "medium", reason
            )
        )
    return changes


def _version_change(name: str, old: str, new: str) -> ManifestChange:
    a, b = _semver(old), _semver(new)
    levels = [lvl for lvl, x, y in zip(("major", "minor", "patch"), a, b, strict=False) if x != y]
    level = levels[0] if levels else "prerelease" if a != b else "build"
    risk: Risk = "high" if level == "major" else "medium" if level == "minor" else "low"
    kind = f"{level} downgrade" if b < a else level
    reason = f"tool {name} {old} -> {new} is a {level} " + ("downgrade" if b < a else "bump")
    return ManifestChange("tools", f"{name}.version", old, new, kind, risk, reason)


def _semver(version: str) -> tuple[int, int, int, tuple[int, str]]:
    """Sortable, build metadata ignored; a release sorts after its pre-releases."""
    numbers, dash, pre = version.partition("+")[0].partition("-")
    major, minor, patch = (int(x) for x in numbers.split("."))
    return major, minor, patch, (0 if dash else 1, pre)


def _diff_values(
    component: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[ManifestChange]:
    changes: list[ManifestChange] = []
    for key in [*before, *(k for k in after if k not in before)]:
        was, now = before.get(key), after.get(key)
        if was == now:
            continue
        kind = "added" if was is None else "removed" if now is None else "changed"
        risk, reason = _value_risk(component, key, was, now)
        changes.append(ManifestChange(component, key, was, now, kind, risk, reason))
    return changes


def _value_risk(component: str, key: str, was: Value, now: Value) -> tuple[Risk, str]:
    move = f"{_short(was)} -> {_short(now)}"
    if component == "model":
        if key == "primary":
            return "high", f"the primary model changes ({move}): every answer changes"
        return "medium", f"the {key} model changes ({move})"
    if component == "memory":
        if key == "schema_version":
            return "high", f"the memory schema moves {move}: both releases share the store"
        return "medium", f"spec.memory.{key} changes ({move})"
    if component == "metadata":
        return "high", f"the manifests name different agents ({move})"
    if component == "rollout":
        if key == "auto_rollback_on_failure" and now is not True:
            return "medium", "automatic rollback on failure is switched off"
        return "low", "the rollout plan changes"
    return "low", "runtime config knobs change"


def _flat(value: Any, prefix: str = "") -> dict[str, Value]:
    """Nested config as dotted keys with JSON scalars: ``rate_limits.web_search: "20/60s"``."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, RateLimit):
        return {prefix: str(value)}
    if isinstance(value, BaseModel):
        fields = ((name, getattr(value, name)) for name in type(value).model_fields)
        items = [*fields, *(value.model_extra or {}).items()]  # the runtime's own config keys
    elif isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return {prefix: _scalar(value)}
    out: dict[str, Value] = {}
    for key, item in items:
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _scalar(value: Any) -> Value:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _short(value: Value) -> str:
    text = "-" if value is None else str(value)
    return f"{text[:19]}…" if text.startswith("sha256:") else text
