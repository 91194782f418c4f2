"""Where a rollback goes: the previous stable release, from the store or from git.

A rollback is "deploy the previous manifest". The store knows which releases were
promoted; without one, the manifest file's own git history does, as the seed's
rollback script assumes (the last committed version that differs from this one).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ManifestError
from ..store import ReleaseRecord, Store
from ._hashes import content_hashes
from ._load import Manifest

__all__ = ["PreviousRelease", "previous_from_git", "previous_release", "register_manifest"]


@dataclass(frozen=True, slots=True)
class PreviousRelease:
    """The manifest to roll back to, and where it was found."""

    manifest_text: str
    name: str
    version: str
    source: str  # "store" or "git <commit>"


def register_manifest(store: Store, manifest: Manifest) -> bool:
    """Record the release and its content hashes in the store; True if it was new."""
    meta = manifest.release.metadata
    record = ReleaseRecord(
        name=meta.name,
        version=meta.version,
        manifest_sha256=manifest.sha256,
        manifest=manifest.text,
        hashes=content_hashes(manifest),
    )
    return store.register_release(record)


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
        )
    except FileNotFoundError:
        raise ManifestError("git", "git is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise ManifestError("git", exc.stderr.strip() or f"git {args[0]} failed") from None
    return done.stdout


def previous_from_git(manifest: Manifest) -> PreviousRelease | None:
    """The newest committed version of the manifest file with another ``metadata.version``."""
    path = manifest.path.resolve()
    root = Path(_git(path.parent, "rev-parse", "--show-toplevel").strip())
    relative = path.relative_to(root).as_posix()
    current = manifest.release.metadata.version
    for commit in _git(root, "log", "--format=%H", "--", relative).split():
        text = _git(root, "show", f"{commit}:{relative}")
        # Only name and version are read: a release deployed under older rules (a pin
        # refused today, say) is still the manifest that was running.
        try:
            meta = (yaml.safe_load(text) or {}).get("metadata") or {}
        except (yaml.YAMLError, AttributeError):
            continue  # not a manifest at that revision
        name, version = meta.get("name"), meta.get("version")
        if isinstance(name, str) and version is not None and str(version) != current:
            return PreviousRelease(text, name, str(version), f"git {commit[:12]}")
    return None


def previous_release(manifest: Manifest, *, store: Store | None = None) -> PreviousRelease | None:
    """The rollback target: the store's previous stable release, else git history."""
    meta = manifest.release.metadata
    if store is not None:
        record = store.previous_stable(meta.name, before=meta.version)
        if record is not None:
            return PreviousRelease(record.manifest, record.name, record.version, "store")
    try:
        return previous_from_git(manifest)
    except ManifestError:
        return None  # not in a git checkout: nothing to fall back to
