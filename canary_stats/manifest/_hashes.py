"""Content hashes of what a manifest references, its lock file, and verification.

The lock lives beside the manifest as ``<manifest file name>.lock``: JSON with the
release's name and version, the manifest's own sha256 and one sha256 per
referenced file (directories expanded file by file, hidden files skipped). A
file that changes while the manifest does not is undeclared: a release's
content changes only with a new manifest, whose lock is written again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ManifestError
from ._load import Manifest
from ._yaml import dotted

__all__ = ["VerifyReport", "content_hashes", "lock_path", "verify", "write_lock"]


class _Lock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1]
    name: str
    version: str
    manifest: str
    manifest_sha256: str
    files: dict[str, str]


@dataclass(frozen=True)
class VerifyReport:
    """How the files on disk compare with the lock.

    ``changed``: locked files whose content differs; ``missing``: referenced
    files (or whole references) not on disk; ``added``: referenced files the
    lock does not know (a new file in a template directory); ``dropped``:
    locked files the manifest no longer references; ``manifest_changed``: the
    manifest itself differs from the one locked. ``ok`` when none of these.
    """

    ok: bool = field(init=False)
    manifest: str
    changed: tuple[str, ...]
    missing: tuple[str, ...]
    added: tuple[str, ...]
    manifest_changed: bool
    dropped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = self.changed or self.missing or self.added or self.dropped
        object.__setattr__(self, "ok", not problems and not self.manifest_changed)

    def messages(self) -> list[str]:
        """One sentence per finding; empty when ``ok``."""
        out: list[str] = []
        if self.manifest_changed:
            out.append(
                f"{self.manifest} changed since the lock was written: if this is a new "
                f"release, run `canary-stats manifest hash {self.manifest}` to lock it"
            )
        # Content moves only with a new manifest; without one, a change is undeclared.
        tail = "" if self.manifest_changed else ", but the manifest does not declare it: tampering?"
        out += [f"{f} changed since the lock was written{tail}" for f in self.changed]
        out += [f"{f} appeared since the lock was written{tail}" for f in self.added]
        out += [f"{f} is referenced by the release but missing" for f in self.missing]
        out += [f"{f} is locked but no longer referenced by the manifest" for f in self.dropped]
        return out


def lock_path(manifest: Manifest) -> Path:
    """``research-agent.manifest.yaml`` -> ``research-agent.manifest.yaml.lock`` beside it."""
    return manifest.path.with_name(f"{manifest.path.name}.lock")


def content_hashes(manifest: Manifest) -> dict[str, str]:
    """Each referenced file (POSIX path from the manifest's directory) -> ``"sha256:<hex>"``.

    Sorted by path. Raises ManifestError, at the reference's YAML path, when a
    referenced file or directory is missing.
    """
    files = {f for ref in manifest.release.references() for f in manifest.files(ref)}
    return {f: _sha256(manifest.directory / f) for f in sorted(files)}


def write_lock(manifest: Manifest) -> Path:
    """Write the lock beside the manifest (atomically) and return its path."""
    lock = _Lock(
        format=1,
        name=manifest.release.metadata.name,
        version=manifest.release.metadata.version,
        manifest=manifest.path.name,
        manifest_sha256=manifest.sha256,
        files=content_hashes(manifest),
    )
    path = lock_path(manifest)
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(lock.model_dump(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # a reader sees the old lock or the new one, never half
    return path


def verify(manifest: Manifest) -> VerifyReport:
    """Compare the manifest and the files it references with its lock."""
    lock = _read_lock(lock_path(manifest), manifest.path)
    current: dict[str, str] = {}
    missing: list[str] = []
    for ref in manifest.release.references():
        try:
            files = manifest.files(ref)
        except ManifestError:
            prefix = f"{ref.relative}/"
            if not any(f == ref.relative or f.startswith(prefix) for f in lock.files):
                missing.append(ref.path)  # not locked either: name the reference itself
            continue
        current.update((f, _sha256(manifest.directory / f)) for f in files)
    gone = [f for f in lock.files if f not in current]
    return VerifyReport(
        manifest=str(manifest.path),
        changed=tuple(sorted(f for f, h in current.items() if lock.files.get(f, h) != h)),
        missing=tuple(sorted([*missing, *(f for f in gone if not _is_file(manifest, f))])),
        added=tuple(sorted(f for f in current if f not in lock.files)),
        manifest_changed=lock.manifest_sha256 != manifest.sha256,
        dropped=tuple(sorted(f for f in gone if _is_file(manifest, f))),
    )


def _read_lock(path: Path, manifest: Path) -> _Lock:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            str(path),
            f"no lock file: run `canary-stats manifest hash {manifest}` to write it",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), f"cannot read the lock file: {exc}") from None
    try:
        return _Lock.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = dotted(tuple(err["loc"])) or "the file"
        raise ManifestError(str(path), f"not a valid lock file: {where}: {err['msg']}") from None


def _is_file(manifest: Manifest, name: str) -> bool:
    return (manifest.directory / name).is_file()


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return f"sha256:{hashlib.file_digest(f, 'sha256').hexdigest()}"
