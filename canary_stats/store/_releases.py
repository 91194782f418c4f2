"""Release history: every manifest registered with its hashes, and which one is stable."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import duckdb

from ..errors import ManifestError
from ._schema import first_row

__all__ = [
    "ReleaseRecord",
    "ReleaseStatus",
    "previous_stable",
    "register",
    "releases",
    "set_status",
]

ReleaseStatus = Literal["registered", "stable", "rolled_back"]

_COLUMNS = "name, version, manifest_sha256, manifest, hashes, registered_at, status, status_at"


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """One registered release: its manifest text, hashes and status."""

    name: str
    version: str
    manifest_sha256: str
    manifest: str
    hashes: dict[str, str] = field(default_factory=dict)
    registered_at: datetime | None = None
    status: str = "registered"
    status_at: datetime | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ReleaseRecord:
        name, version, sha, text, hashes, registered, status, status_at = row
        return cls(name, version, sha, text, json.loads(hashes), registered, status, status_at)


def register(con: duckdb.DuckDBPyConnection, release: ReleaseRecord) -> bool:
    """Record a release; True if new. A version is immutable: new content is refused."""
    name, version = release.name, release.version
    found = first_row(
        con.execute(
            "SELECT manifest_sha256 FROM releases WHERE name = ? AND version = ?", [name, version]
        )
    )
    if found is not None:
        if found[0] != release.manifest_sha256:
            raise ManifestError(
                "metadata.version",
                f"{name} {version} is already registered with different content "
                f"({found[0]}); a release is immutable, so give the change a new version",
            )
        return False
    con.execute(
        "INSERT INTO releases (name, version, manifest_sha256, manifest, hashes, registered_at) "
        "VALUES (?, ?, ?, ?, ?, now())",
        [
            name,
            version,
            release.manifest_sha256,
            release.manifest,
            json.dumps(release.hashes, sort_keys=True),
        ],
    )
    return True


def set_status(
    con: duckdb.DuckDBPyConnection, *, name: str, version: str, status: ReleaseStatus
) -> None:
    """Mark a release stable (promoted to 100 %) or rolled back."""
    if status not in ("registered", "stable", "rolled_back"):
        raise ManifestError("status", f"expected registered, stable or rolled_back; got {status!r}")
    row = first_row(
        con.execute(
            "UPDATE releases SET status = ?, status_at = now() "
            "WHERE name = ? AND version = ? RETURNING version",
            [status, name, version],
        )
    )
    if row is None:
        raise ManifestError("metadata.version", f"{name} {version} is not registered")


def previous_stable(
    con: duckdb.DuckDBPyConnection, name: str, *, before: str | None = None
) -> ReleaseRecord | None:
    """The most recently promoted stable release of ``name`` other than ``before``."""
    row = first_row(
        con.execute(
            f"SELECT {_COLUMNS} FROM releases "
            "WHERE name = $name AND status = 'stable' AND ($before IS NULL OR version <> $before) "
            "ORDER BY status_at DESC, registered_at DESC LIMIT 1",
            {"name": name, "before": before},
        )
    )
    return ReleaseRecord.from_row(row) if row else None


def releases(con: duckdb.DuckDBPyConnection, name: str | None = None) -> list[ReleaseRecord]:
    """Registered releases, oldest first."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM releases WHERE $name IS NULL OR name = $name "
        "ORDER BY registered_at, version",
        {"name": name},
    ).fetchall()
    return [ReleaseRecord.from_row(r) for r in rows]
