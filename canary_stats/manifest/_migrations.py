"""Memory migrations during a rollout: additive only, checked with a real SQL parser.

While a release rolls out, the previous release keeps running on the same memory store,
and a rollback re-deploys it there. So a migration may only *add*: new tables, indexes,
views, nullable (or defaulted) columns, rows, and backfills of the columns it adds itself.
Whatever removes, renames, retypes or tightens something the previous release reads is
refused, naming the statement (1-based index, line, SQL) and the reason.

``DELETE`` is refused on every table the migration did not create, with or without a
``WHERE``: the rollback target reads those rows and nothing brings them back, and what a
``WHERE`` matches depends on data the checker cannot see (``WHERE 1 = 1`` matches all).
Pruning memory is the agent's retention job, not a schema migration's. ``UPDATE`` (and
``INSERT ... ON CONFLICT DO UPDATE``) may only write columns this migration added.

Statements the parser does not understand are refused, never guessed, and so are kinds not
known to be additive (``GRANT``/``REVOKE``, ``MERGE``, a ``SELECT`` that may call a function
with side effects). When sqlglot falls back to an opaque command it also logs a warning on the
``sqlglot`` logger.

The version bump is read from up to three places, which must all agree: the manifest's
``spec.memory`` (``migration_from`` -> ``schema_version``), the file name
(``memory_v6_to_v7.sql``: ``v<from>_to_v<to>`` between ``_``, ``-`` or ``.``, also
``memory_v6_to_v7_backfill.sql``) and the optional header ``-- migrate: 6 -> 7`` in the
leading comments. A file whose name or header says ``3 -> 4`` is refused against a
6 -> 7 manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqlglot.dialects.dialect import Dialect

from ..errors import ManifestError
from ._sql_rules import StatementCheck, rule_all

if TYPE_CHECKING:
    from ._load import Manifest

__all__ = [
    "DEFAULT_DIALECT",
    "MigrationReport",
    "StatementCheck",
    "check_migration",
    "check_migration_file",
]

# Postgres' grammar is the common ground of agent memory stores (Postgres, DuckDB, pgvector)
# and the one sqlglot parses most completely (multi-action ALTER TABLE).
DEFAULT_DIALECT = "postgres"
_HEADER = re.compile(r"--\s*migrate\s*:(.*)", re.IGNORECASE)  # a comment, not SQL
_HEADER_VALUE = re.compile(r"\s*(\d+)\s*->\s*(\d+)\s*")
_NAME_BUMP = re.compile(r"(?:^|[_.-])v(\d+)[_-]to[_-]v(\d+)(?=$|[_.-])", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """Every statement's ruling plus file-level problems (a version bump that disagrees)."""

    statements: tuple[StatementCheck, ...]
    from_version: int | None
    to_version: int | None
    problems: tuple[str, ...] = ()
    dialect: str = DEFAULT_DIALECT

    @property
    def refused(self) -> tuple[StatementCheck, ...]:
        return tuple(s for s in self.statements if not s.allowed)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.refused

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "dialect": self.dialect,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "problems": list(self.problems),
            "statements": [s.to_dict() for s in self.statements],
        }

    def summary_lines(self) -> list[str]:
        bump = " -> ".join(
            "?" if v is None else str(v) for v in (self.from_version, self.to_version)
        )
        count = f"{len(self.statements)} statement{'' if len(self.statements) == 1 else 's'}"
        lines = [f"memory migration {bump}: {'additive' if self.ok else 'REFUSED'} ({count})"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [
            f"  #{s.index} (line {s.line}) {s.kind}: {s.sql} -- {s.reason}" for s in self.refused
        ]
        return lines


def check_migration(
    sql: str,
    *,
    from_version: int | None = None,
    to_version: int | None = None,
    dialect: str = DEFAULT_DIALECT,
    file_name: str | None = None,
) -> MigrationReport:
    """Rule on every statement of ``sql`` and check the version bump.

    ``from_version`` / ``to_version`` are the manifest's ``spec.memory.migration_from`` and
    ``schema_version``; a ``-- migrate: N -> M`` header in ``sql`` and a ``_vN_to_vM`` in
    ``file_name`` (the file ``sql`` was read from) must agree with them and each other.
    """
    try:
        parser = Dialect.get_or_raise(dialect)
    except ValueError as err:
        raise ManifestError("dialect", f"unknown SQL dialect {dialect!r}: {err}") from None
    first, last, problems = _versions(sql, from_version, to_version, file_name)
    return MigrationReport(rule_all(sql, parser, dialect), first, last, problems, dialect)


def check_migration_file(
    path: str | Path, *, manifest: Manifest | None = None, dialect: str = DEFAULT_DIALECT
) -> MigrationReport:
    """:func:`check_migration` on a file; with ``manifest``, versions from its ``spec.memory``."""
    path = Path(path)
    try:
        sql = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(str(path), f"cannot read the migration: {err}") from None
    if manifest is None:
        return check_migration(sql, dialect=dialect, file_name=path.name)
    memory = manifest.release.spec.memory
    report = check_migration(
        sql,
        from_version=memory.migration_from,
        to_version=memory.schema_version,
        dialect=dialect,
        file_name=path.name,
    )
    if memory.migration_from is not None:
        return report
    # A migration the manifest does not announce is itself a mismatch.
    unannounced = "spec.memory.migration_from is not set: the manifest announces no migration"
    return replace(report, problems=(unannounced, *report.problems))


def _versions(
    sql: str, from_version: int | None, to_version: int | None, file_name: str | None
) -> tuple[int | None, int | None, tuple[str, ...]]:
    problems: list[str] = []
    claims: list[tuple[str, int, int]] = []  # (who says so, from, to)
    headers: list[tuple[int, int]] = []
    for raw in sql.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break  # the header lives in the leading comment block only
        match = _HEADER.fullmatch(line)
        if match is None:
            continue
        value = _HEADER_VALUE.fullmatch(match.group(1))
        if value is None:
            problems.append(f"header {line!r} is not of the form '-- migrate: N -> M'")
        else:
            headers.append((int(value.group(1)), int(value.group(2))))
    if len(headers) > 1:
        problems.append(f"{len(headers)} '-- migrate:' headers; expected at most one")
    if headers:
        claims.append(("the header", *headers[0]))
    named = _NAME_BUMP.search(Path(file_name).stem) if file_name else None
    if named is not None:
        claims.append((f"the file name {file_name!r}", int(named.group(1)), int(named.group(2))))
    for who, claim_from, claim_to in claims:
        for name, given, claimed in (
            ("from", from_version, claim_from),
            ("to", to_version, claim_to),
        ):
            if given is not None and given != claimed:
                problems.append(
                    f"{who} migrates {claim_from} -> {claim_to} but {name}_version is {given}"
                    f" (spec.memory.{'migration_from' if name == 'from' else 'schema_version'})"
                )
    if len(claims) == 2 and claims[0][1:] != claims[1][1:] and from_version is None is to_version:
        (a, a_from, a_to), (b, b_from, b_to) = claims
        problems.append(f"{a} migrates {a_from} -> {a_to} but {b} says {b_from} -> {b_to}")
    if claims:
        from_version = claims[0][1] if from_version is None else from_version
        to_version = claims[0][2] if to_version is None else to_version
    if from_version is not None and to_version is not None and to_version <= from_version:
        problems.append(f"{from_version} -> {to_version} is not a forward schema bump")
    return from_version, to_version, tuple(problems)
