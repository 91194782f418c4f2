"""Reading a release manifest: YAML with lines, validation, referenced files.

Every problem is a :class:`~canary_stats.errors.ManifestError` whose ``field``
is the YAML path (``spec.model.primary``), or the file for unreadable or
malformed YAML, and whose ``line`` is the 1-based line in the manifest.
"""

from __future__ import annotations

import hashlib
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import ManifestError
from ..policy import Policy
from ._model import AgentRelease, FileRef
from ._yaml import Loc, YamlDocument, dotted, load_yaml

__all__ = ["Manifest", "load_manifest", "parse_manifest", "referenced_files"]


@dataclass(frozen=True)
class Manifest:
    """A validated release manifest and the exact text it was read from.

    ``sha256`` is ``"sha256:<hex>"`` of the manifest's bytes (UTF-8 of ``text``);
    ``lines`` the 1-based line of each YAML path, for errors found later.
    """

    release: AgentRelease
    path: Path
    text: str
    sha256: str
    lines: Mapping[Loc, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def directory(self) -> Path:
        """Where the referenced prompt and schema paths start."""
        return self.path.parent

    def files(self, ref: FileRef) -> tuple[str, ...]:
        """The files ``ref`` stands for (see :func:`referenced_files`), errors with lines."""
        return referenced_files(self.directory, ref, line=self.lines.get(ref.loc))


def load_manifest(path: str | Path, *, check_files: bool = True) -> Manifest:
    """Read, parse and validate the manifest at ``path``.

    With ``check_files`` (the default), every referenced prompt, template,
    example and schema must exist relative to the manifest's directory.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ManifestError(str(p), f"cannot read the manifest: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(str(p), "not UTF-8 text", line=line) from None
    manifest = parse_manifest(text, path=p)
    if check_files:
        for ref in manifest.release.references():
            manifest.files(ref)
    return manifest


def parse_manifest(text: str, *, path: Path) -> Manifest:
    """Validate manifest ``text`` (e.g. read from git history) without touching files.

    ``path`` names the manifest in errors and fixes the directory its paths start from.
    """
    doc = load_yaml(text, source=str(path))
    if not isinstance(doc.data, dict):
        raise ManifestError(
            str(path),
            "expected a mapping with apiVersion, kind, metadata and spec at the top level",
            line=doc.line_of(()),
        )
    try:
        release = AgentRelease.model_validate(doc.data)
    except ValidationError as exc:
        raise _located(exc.errors()[0], doc) from None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Manifest(release, Path(path), text, f"sha256:{digest}", lines=doc.lines)


def referenced_files(directory: Path, ref: FileRef, *, line: int | None = None) -> tuple[str, ...]:
    """The files ``ref`` stands for: POSIX paths from ``directory``, sorted.

    A directory reference expands to its files, recursively, skipping hidden
    files and directories (``.DS_Store``, ``.git``). Raises ManifestError, at
    the reference's YAML path and ``line``, when the file or directory is
    missing, of the other kind, or a directory without files.

    Symbolic links: a release hashes only its own files, so whatever a path
    resolves to must lie inside the manifest's directory. A file symlink that
    resolves inside is allowed (its target's content is hashed under the link's
    path); one resolving outside (``prompts/link.md -> /etc/passwd``), or through
    a symlinked parent that leaves the directory, is refused, and so is a broken
    one. A symlinked directory inside a referenced directory is refused rather
    than followed or skipped (a file would appear under two paths, or a loop);
    the reference itself may be a symlink to a directory inside.
    """
    target = directory / ref.relative
    root = directory.resolve()

    def error(problem: str, path: str = ref.path) -> ManifestError:
        return ManifestError(dotted(ref.loc), f"{path!r} {problem}", line=line)

    def inside(path: Path, name: str) -> None:
        if path.is_symlink() and not path.exists():
            raise error(f"is a broken symbolic link (to {os.readlink(path)})", name)
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            raise error(
                f"resolves to {resolved}, outside the manifest's directory {root}: a release "
                "hashes only its own files (copy the file in instead of linking it)",
                name,
            )

    inside(target, ref.path)
    if not target.exists():
        raise error("does not exist (paths are relative to the manifest's directory)")
    if not ref.is_dir:
        if target.is_dir():
            raise error(f"is a directory: write '{ref.relative}/' for all of its files")
        return (ref.relative,)
    if not target.is_dir():
        raise error("is a file, not a directory: drop the '/'")
    found: list[str] = []
    for top, dirs, files in os.walk(target):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in dirs:
            if Path(top, name).is_symlink():
                link = Path(top, name).relative_to(directory).as_posix()
                raise error(
                    "is a symbolic link to a directory, which is not followed: reference "
                    "the folder it points to itself, or copy its files in",
                    link,
                )
        for name in files:
            file = Path(top, name)
            if name.startswith("."):
                continue
            relative = file.relative_to(directory).as_posix()
            inside(file, relative)
            if file.is_file():
                found.append(relative)
    if not found:
        raise error("holds no files")
    return tuple(sorted(found))


def _located(err: ErrorDetails, doc: YamlDocument) -> ManifestError:
    """The first validation error as a ManifestError at its YAML path and line."""
    loc: Loc = tuple(err["loc"])
    kind, message = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "manifest":
        loc = (*loc, *err.get("ctx", {})["at"])
    if kind == "extra_forbidden" or message == "Extra inputs are not permitted":
        allowed = _keys_at(loc[:-1])
        message = f"unknown key {loc[-1]!r}" + (
            f"; expected one of: {', '.join(allowed)}" if allowed else ""
        )
    elif kind == "missing":
        message = f"required key {loc[-1]!r} is missing"
    elif kind not in ("manifest", "value_error") and not isinstance(err["input"], dict | list):
        message = f"{message}; got {err['input']!r}"
    return ManifestError(dotted(loc), message, line=doc.line_of(_yaml_loc(doc.data, loc)))


def _yaml_loc(data: Any, loc: Loc) -> Loc:
    """``loc`` with list items named by the policy (a guardrail's name) as indices."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, list) and isinstance(part, str):
            part = next(
                (
                    i
                    for i, item in enumerate(node)
                    if isinstance(item, dict) and part in (item.get("name"), item.get("metric"))
                ),
                part,
            )
        out.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(out)


def _keys_at(loc: Loc) -> list[str]:
    """The keys the manifest allows at ``loc`` (for "unknown key" hints)."""
    tp: Any = AgentRelease
    if loc[:2] == ("spec", "rollout"):
        tp, loc = Policy, loc[2:]
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {f.alias or name: f.annotation for name, f in tp.model_fields.items()}
            tp = fields.get(str(part))
        elif get_origin(tp) in (tuple, list) and isinstance(part, int):
            tp = get_args(tp)[0]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
            continue
        members = [a for a in get_args(tp) if a is not type(None)]
        if get_origin(tp) in (Union, types.UnionType) and len(members) == 1:
            tp = members[0]
            continue
        return tp
