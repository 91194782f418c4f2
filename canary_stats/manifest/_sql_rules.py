"""The ruling on each statement of a memory migration: additive, or refused and why.

Statements are tokenized and parsed one at a time with sqlglot, so each gets its own
ruling and line; objects the migration creates itself may be changed freely after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

__all__ = ["StatementCheck", "rule_all", "shorten"]

_SQL_WIDTH = 100
_SERIAL = {exp.DataType.Type.SERIAL, exp.DataType.Type.BIGSERIAL, exp.DataType.Type.SMALLSERIAL}


@dataclass(frozen=True, slots=True)
class StatementCheck:
    """The ruling on one statement: ``index`` and ``line`` are 1-based."""

    index: int
    line: int
    sql: str  # whitespace collapsed, shortened
    kind: str  # "add column", "drop table", "update", "unparseable", ...
    allowed: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class _Ruling(NamedTuple):
    kind: str
    allowed: bool
    reason: str


def _yes(kind: str, reason: str) -> _Ruling:
    return _Ruling(kind, True, reason)


def _no(kind: str, reason: str) -> _Ruling:
    return _Ruling(kind, False, reason)


@dataclass(slots=True)
class _Created:
    """What this migration created so far: the previous release cannot depend on it."""

    relations: set[str] = field(default_factory=set)
    columns: set[tuple[str, str]] = field(default_factory=set)


def rule_all(sql: str, dialect: Dialect, dialect_name: str) -> tuple[StatementCheck, ...]:
    try:
        tokens = dialect.tokenize(sql)
    except TokenError as err:
        reason = f"cannot be tokenized as {dialect_name} SQL ({err}); refused, not guessed"
        return (StatementCheck(1, 1, shorten(sql), "unparseable", False, reason),)
    created = _Created()
    checks: list[StatementCheck] = []
    for chunk in _split(tokens):
        text = sql[chunk[0].start : chunk[-1].end + 1]
        ruling = _rule_tokens(chunk, sql, dialect, dialect_name, created)
        checks.append(StatementCheck(len(checks) + 1, chunk[0].line, shorten(text), *ruling))
    return tuple(checks)


def _split(tokens: list[Token]) -> list[list[Token]]:
    chunks: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            chunks.append([])
        else:
            chunks[-1].append(token)
    return [chunk for chunk in chunks if chunk]


def _rule_tokens(
    chunk: list[Token], sql: str, dialect: Dialect, dialect_name: str, created: _Created
) -> _Ruling:
    try:
        # Parsing the file's own tokens keeps the parser's line numbers file-relative.
        parsed = [e for e in dialect.parser().parse(chunk, sql) if e is not None]
    except ParseError as err:
        first = err.errors[0] if err.errors else {}
        detail = f"{first.get('description', err)} at line {first.get('line')}"
        return _no("unparseable", f"not valid {dialect_name} SQL: {detail}; refused")
    statement = parsed[0] if len(parsed) == 1 else None
    if statement is None or isinstance(statement, exp.Command):
        # sqlglot falls back to an opaque Command for syntax it does not model.
        return _no("unparseable", f"the {dialect_name} parser does not understand it; refused")
    return _rule(statement, created)


def _rule(statement: exp.Expr, created: _Created) -> _Ruling:
    if isinstance(statement, exp.Create):
        return _rule_create(statement, created)
    if isinstance(statement, exp.Alter):
        return _rule_alter(statement, created)
    if isinstance(statement, (exp.Drop, exp.TruncateTable)):
        return _rule_drop(statement, created)
    if isinstance(statement, exp.Delete):
        return _rule_delete(statement, created)
    if isinstance(statement, exp.Update):
        table = _name(statement.this)
        return _rule_writes("update", table, statement.expressions, created, "backfills")
    if isinstance(statement, exp.Insert):
        return _rule_insert(statement, created)
    if isinstance(statement, exp.Comment):
        return _yes("comment", "documents an object")
    if isinstance(statement, (exp.Transaction, exp.Commit, exp.Rollback)):
        return _yes("transaction", "transaction control")
    if isinstance(statement, exp.Set):
        return _yes("set", "a session setting")
    kind = statement.key.lower()
    return _no(kind, f"{kind.upper()} is not known to be additive; refused, not guessed")


def _rule_create(statement: exp.Create, created: _Created) -> _Ruling:
    kind = str(statement.args.get("kind") or "object").lower()
    target = statement.this
    name = _name(target.this if isinstance(target, exp.Schema) else target)
    if statement.args.get("replace"):
        loss = "its rows are lost" if kind == "table" else "the previous release may read it"
        return _no(f"create or replace {kind}", f"replaces {kind} {name}: {loss}")
    created.relations.add(name)
    return _yes(f"create {kind}", f"creates {kind} {name}; the previous release does not use it")


def _rule_drop(statement: exp.Drop | exp.TruncateTable, created: _Created) -> _Ruling:
    tables = [_name(t) for t in statement.find_all(exp.Table)]
    names = ", ".join(tables)
    if isinstance(statement, exp.TruncateTable):
        kind = "truncate"
        reason = f"empties {names}: its rows are lost and a rollback cannot restore them"
    else:
        what = str(statement.args.get("kind") or "object").lower()
        kind = f"drop {what}"
        loss = "reads: its rows are lost" if what == "table" else "may use"
        reason = f"drops {what} {names}, which the previous release {loss}"
    if tables and all(t in created.relations for t in tables):
        return _yes(kind, f"{names}: created by this migration")
    return _no(kind, reason)


def _rule_delete(statement: exp.Delete, created: _Created) -> _Ruling:
    kind, table = "delete", _name(statement.this)
    if table in created.relations:
        return _yes(kind, f"{table}: created by this migration")
    if statement.args.get("where") is None:
        return _no(kind, f"deletes every row of {table} (no WHERE): the data is lost")
    return _no(
        kind,
        f"deletes rows of {table}, which the previous release reads; a rollback cannot restore"
        " them (prune memory in a retention job, not a migration)",
    )


def _rule_insert(statement: exp.Insert, created: _Created) -> _Ruling:
    target = statement.this
    table = _name(target.this if isinstance(target, exp.Schema) else target)
    if table in created.relations:
        return _yes("insert", f"fills {table}, created by this migration")
    replace = str(statement.args.get("alternative") or "").upper() == "REPLACE"
    if replace or statement.args.get("overwrite"):
        return _no("insert", f"replaces existing rows of {table}")
    conflict = statement.args.get("conflict")
    if conflict is not None and conflict.expressions:  # ON CONFLICT DO UPDATE SET ...
        return _rule_writes("insert", table, conflict.expressions, created, "upserts")
    return _yes("insert", f"adds rows to {table}")


def _rule_writes(
    kind: str, table: str, assignments: list[Any], created: _Created, verb: str
) -> _Ruling:
    """An UPDATE-like write is a backfill only if it writes columns this migration added."""
    if table in created.relations:
        return _yes(kind, f"{verb} {table}, created by this migration")
    columns = [_ident(a.this) for a in assignments if isinstance(a, exp.EQ)]
    old = [c for c in columns if (table, c) not in created.columns]
    if old or not columns:
        return _no(
            kind,
            f"overwrites {table}.{', '.join(old) or '?'}, which the previous release reads;"
            " only columns added by this migration may be backfilled",
        )
    return _yes(kind, f"{verb} {table}.{', '.join(columns)}, added by this migration")


def _rule_alter(statement: exp.Alter, created: _Created) -> _Ruling:
    table = _name(statement.this)
    actions = statement.args.get("actions") or []
    rulings = [_rule_action(action, table, created) for action in actions]
    if not rulings:
        return _no("alter", "an ALTER without a recognised action; refused, not guessed")
    if table in created.relations:
        return _yes(_kinds(rulings), f"{table}: created by this migration")
    refused = [r for r in rulings if not r.allowed]
    shown = refused or rulings
    return _Ruling(_kinds(shown), not refused, "; ".join(r.reason for r in shown))


def _kinds(rulings: list[_Ruling]) -> str:
    return ", ".join(dict.fromkeys(r.kind for r in rulings))


def _rule_action(action: exp.Expr, table: str, created: _Created) -> _Ruling:
    if isinstance(action, exp.ColumnDef):
        return _rule_add_column(action, table, created)
    if isinstance(action, exp.AlterColumn):
        return _rule_alter_column(action, f"{table}.{_ident(action)}")
    if isinstance(action, exp.Drop):
        what = str(action.args.get("kind") or "object").lower()
        names = ", ".join(_ident(t) for t in action.find_all(exp.Column, exp.Table))
        return _no(f"drop {what}", f"drops {what} {table}.{names}, which the previous release uses")
    if isinstance(action, exp.AlterRename):
        return _no("rename table", f"renames {table}; the previous release uses the old name")
    if isinstance(action, exp.RenameColumn):
        column = f"{table}.{_ident(action.this)}"
        return _no("rename column", f"renames {column}; the previous release uses the old name")
    if isinstance(action, exp.AddConstraint):
        return _no(
            "add constraint",
            f"a new constraint on {table} can fail on existing rows and reject the previous"
            " release's writes",
        )
    kind = action.key.lower()
    return _no(kind, f"{kind} on {table} is not known to be additive; refused, not guessed")


def _rule_add_column(column: exp.ColumnDef, table: str, created: _Created) -> _Ruling:
    name = f"{table}.{_ident(column)}"
    created.columns.add((table, _ident(column)))
    kinds = [c.args.get("kind") for c in column.constraints]
    not_null = any(
        isinstance(k, exp.PrimaryKeyColumnConstraint)
        or (isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null"))
        for k in kinds
    )
    filled = any(
        isinstance(k, exp.ComputedColumnConstraint | exp.GeneratedAsIdentityColumnConstraint)
        or (isinstance(k, exp.DefaultColumnConstraint) and not isinstance(k.this, exp.Null))
        for k in kinds
    ) or (isinstance(column.kind, exp.DataType) and column.kind.this in _SERIAL)
    if not_null and not filled:
        return _no(
            "add column",
            f"adds NOT NULL column {name} without a DEFAULT: existing rows have no value and"
            " the previous release's INSERTs, which do not know the column, are rejected",
        )
    return _yes("add column", f"adds {'defaulted' if filled else 'nullable'} column {name}")


def _rule_alter_column(action: exp.AlterColumn, column: str) -> _Ruling:
    args = action.args
    if args.get("dtype") is not None:
        return _no(
            "alter column type", f"changes the type of {column}, which the previous release reads"
        )
    if args.get("allow_null") is False:
        return _no(
            "set not null",
            f"SET NOT NULL on {column}: existing NULLs fail it and the previous release's"
            " NULL writes are rejected",
        )
    if args.get("drop") and args.get("allow_null"):
        return _yes("drop not null", f"relaxes {column}; the previous release's writes still fit")
    if args.get("default") is not None:
        return _yes("set default", f"sets a default on {column}")
    if args.get("drop"):
        return _no("drop default", f"drops the default of {column}, which old INSERTs rely on")
    return _no("alter column", f"this change of {column} is not known to be additive; refused")


def _ident(node: exp.Expr) -> str:
    """An identifier as the database sees it: unquoted ones fold to lower case."""
    ident = node if isinstance(node, exp.Identifier) else node.this
    if isinstance(ident, exp.Identifier):
        return str(ident.this) if ident.quoted else str(ident.this).lower()
    return node.name.lower()


def _name(node: exp.Expr | None) -> str:
    if isinstance(node, exp.Table):
        return ".".join(_ident(part) for part in node.parts)
    return "?" if node is None else _ident(node)


def shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SQL_WIDTH else flat[: _SQL_WIDTH - 1] + "…"
