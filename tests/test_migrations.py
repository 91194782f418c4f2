"""Memory migrations: additive statements pass, destructive or unparseable ones are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from canary_stats.errors import ManifestError
from canary_stats.manifest._load import load_manifest
from canary_stats.manifest._migrations import check_migration, check_migration_file

ROOT = Path(__file__).resolve().parents[1]
SEED_MANIFEST = ROOT / "examples" / "research-agent.manifest.yaml"
SEED_MIGRATION = ROOT / "examples" / "migrations" / "memory_v6_to_v7.sql"
DESTRUCTIVE = ROOT / "examples" / "migrations" / "memory_v6_to_v7_destructive.sql"
SEED_MEMORY = "  memory:\n    schema_version: 7\n    migration_from: 6 # backward-compatible\n"


@pytest.mark.parametrize(
    ("sql", "kind", "because"),
    [
        ("DROP TABLE memory_entries", "drop table", "its rows are lost"),
        ("DROP INDEX memory_entries_session", "drop index", "may use"),
        ("ALTER TABLE memory_entries DROP COLUMN summary", "drop column", "summary"),
        ("ALTER TABLE memory_entries RENAME TO memories", "rename table", "old name"),
        ("ALTER TABLE memory_entries RENAME COLUMN created TO created_at", "rename column", "old"),
        ("ALTER TABLE memory_entries ALTER COLUMN score TYPE BIGINT", "alter column type", "type"),
        (
            "ALTER TABLE memory_entries ALTER COLUMN score SET DATA TYPE NUMERIC(4, 3)",
            "alter column type",
            "memory_entries.score",
        ),
        ("ALTER TABLE memory_entries ALTER COLUMN summary SET NOT NULL", "set not null", "NULL"),
        ("ALTER TABLE memory_entries ADD COLUMN model TEXT NOT NULL", "add column", "DEFAULT"),
        ("ALTER TABLE memory_entries ADD COLUMN m TEXT NOT NULL DEFAULT NULL", "add column", "DEF"),
        ("ALTER TABLE memory_entries ADD COLUMN m INT PRIMARY KEY", "add column", "DEFAULT"),
        ("ALTER TABLE memory_entries ALTER COLUMN score DROP DEFAULT", "drop default", "INSERT"),
        ("ALTER TABLE memory_entries ADD CONSTRAINT u UNIQUE (summary)", "add constraint", "rows"),
        ("TRUNCATE memory_entries", "truncate", "rollback cannot restore"),
        ("DELETE FROM memory_entries", "delete", "no WHERE"),
        ("DELETE FROM memory_entries WHERE created < '2026-01-01'", "delete", "retention job"),
        ("UPDATE memory_entries SET summary = ''", "update", "overwrites memory_entries.summary"),
        (
            "INSERT INTO memory_entries (id) VALUES (1)"
            " ON CONFLICT (id) DO UPDATE SET summary = 'x'",
            "insert",
            "overwrites",
        ),
        ("CREATE OR REPLACE VIEW recent AS SELECT 1", "create or replace view", "replaces"),
        ("REVOKE SELECT ON memory_entries FROM agent", "revoke", "not known to be additive"),
    ],
)
def test_destructive_statements_are_refused(sql: str, kind: str, because: str) -> None:
    report = check_migration(f"CREATE TABLE scratch (id INT);\n{sql};")
    assert not report.ok
    (refused,) = report.refused
    assert (refused.index, refused.line, refused.kind) == (2, 2, kind)
    assert refused.sql == sql
    assert because in refused.reason


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE memory_entries FROB summary",  # sqlglot falls back to an opaque Command
        "SELEC 1 FROM memory_entries",
        "ALTER TABLE memory_entries ADD COLUMN",
    ],
)
def test_unparseable_statements_are_refused_not_guessed(sql: str) -> None:
    report = check_migration(f"ALTER TABLE memory_entries ADD COLUMN note TEXT;\n{sql};")
    (refused,) = report.refused
    assert (refused.index, refused.kind) == (2, "unparseable")
    assert "postgres" in refused.reason


def test_untokenizable_file_is_refused() -> None:
    report = check_migration("ALTER TABLE memory_entries ADD COLUMN note TEXT DEFAULT 'oops;")
    (refused,) = report.statements
    assert not refused.allowed and refused.kind == "unparseable"
    assert "tokenized" in refused.reason


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("ALTER TABLE memory_entries ADD COLUMN note TEXT", "add column"),
        ("ALTER TABLE memory_entries ADD note TEXT", "add column"),
        ("ALTER TABLE memory_entries ADD COLUMN rank REAL NOT NULL DEFAULT 1.0", "add column"),
        ("ALTER TABLE memory_entries ADD COLUMN n BIGSERIAL NOT NULL", "add column"),
        ("ALTER TABLE memory_entries ALTER COLUMN summary DROP NOT NULL", "drop not null"),
        ("ALTER TABLE memory_entries ALTER COLUMN score SET DEFAULT 0", "set default"),
        ("CREATE TABLE citations (id BIGINT PRIMARY KEY, url TEXT NOT NULL)", "create table"),
        ("CREATE TABLE IF NOT EXISTS snapshot AS SELECT * FROM memory_entries", "create table"),
        ("CREATE INDEX memory_entries_created ON memory_entries (created)", "create index"),
        ("CREATE VIEW recent AS SELECT * FROM memory_entries", "create view"),
        ("INSERT INTO memory_entries (summary) VALUES ('seeded')", "insert"),
        ("INSERT INTO memory_entries (id) VALUES (1) ON CONFLICT DO NOTHING", "insert"),
        ("COMMENT ON TABLE memory_entries IS 'the agent memory'", "comment"),
        ("BEGIN", "transaction"),
        ("SET search_path TO memory", "set"),
    ],
)
def test_additive_statements_are_accepted(sql: str, kind: str) -> None:
    report = check_migration(f"-- a comment\n{sql}; /* another */\nCOMMIT;")
    assert report.ok, report.summary_lines()
    assert [s.kind for s in report.statements] == [kind, "transaction"]


def test_backfill_writes_only_columns_this_migration_added() -> None:
    sql = """
        ALTER TABLE Memory_Entries ADD COLUMN Source_Url TEXT;
        UPDATE memory_entries SET SOURCE_URL = metadata ->> 'url' WHERE source_url IS NULL;
        UPDATE memory_entries SET source_url = NULL, summary = '';
    """
    backfill, overwrite = check_migration(sql).statements[1:]
    assert backfill.allowed and "source_url" in backfill.reason
    assert not overwrite.allowed and "memory_entries.summary" in overwrite.reason


def test_objects_created_by_the_migration_may_be_changed() -> None:
    sql = """
        CREATE TEMP TABLE staging (id INT, note TEXT);
        INSERT INTO staging VALUES (1, 'x');
        ALTER TABLE staging ALTER COLUMN note SET NOT NULL, DROP COLUMN id;
        UPDATE staging SET note = 'y';
        DELETE FROM staging;
        DROP TABLE staging;
    """
    report = check_migration(sql)
    assert report.ok, report.summary_lines()
    assert report.statements[2].kind == "set not null, drop column"


def test_one_refused_action_refuses_the_whole_alter() -> None:
    sql = "ALTER TABLE memory_entries ADD COLUMN note TEXT, DROP COLUMN summary"
    (statement,) = check_migration(sql).statements
    assert not statement.allowed
    assert statement.kind == "drop column"


def test_long_statements_are_shortened() -> None:
    columns = ", ".join(f"c{i} TEXT" for i in range(60))
    (statement,) = check_migration(f"CREATE TABLE wide ({columns})").statements
    assert len(statement.sql) == 100 and statement.sql.endswith("…")


def test_seed_migration_is_additive_and_bumps_6_to_7() -> None:
    report = check_migration_file(SEED_MIGRATION)
    assert report.ok, report.summary_lines()
    assert (report.from_version, report.to_version) == (6, 7)
    kinds = {s.kind for s in report.statements}
    assert {"add column", "create table", "create index", "update"} <= kinds
    sql = SEED_MIGRATION.read_text()
    assert check_migration(sql, from_version=6, to_version=7).ok
    assert check_migration(sql, from_version=6, to_version=7, dialect="duckdb").ok


def test_seed_migration_is_refused_for_another_version_bump() -> None:
    report = check_migration(SEED_MIGRATION.read_text(), from_version=5, to_version=7)
    assert not report.ok and not report.refused
    assert report.problems == (
        "the header migrates 6 -> 7 but from_version is 5 (spec.memory.migration_from)",
    )
    report = check_migration(SEED_MIGRATION.read_text(), to_version=8)
    assert report.problems[0].endswith("to_version is 8 (spec.memory.schema_version)")


def test_destructive_example_is_refused_statement_by_statement() -> None:
    report = check_migration_file(DESTRUCTIVE)
    assert not report.ok
    assert [s.index for s in report.refused] == [1, 2, 3, 4, 5, 6]
    assert report.summary_lines()[0] == "memory migration 6 -> 7: REFUSED (6 statements)"


@pytest.mark.parametrize(
    ("header", "versions", "problem"),
    [
        ("-- migrate: six -> 7", (None, None), "is not of the form"),
        ("-- migrate: 7 -> 6", (None, None), "7 -> 6 is not a forward schema bump"),
        ("-- migrate: 6 -> 7\n-- migrate: 6 -> 7", (None, None), "2 '-- migrate:' headers"),
        ("-- no header", (7, 7), "not a forward schema bump"),
    ],
)
def test_version_header_problems(
    header: str, versions: tuple[int | None, int | None], problem: str
) -> None:
    sql = f"{header}\nALTER TABLE m ADD COLUMN c INT;"
    report = check_migration(sql, from_version=versions[0], to_version=versions[1])
    assert not report.ok
    assert any(problem in p for p in report.problems), report.problems


def test_header_only_counts_in_the_leading_comments() -> None:
    report = check_migration("CREATE TABLE t (a INT);\n-- migrate: 1 -> 2\n")
    assert (report.from_version, report.to_version) == (None, None)
    assert report.ok


def _seed_copy(tmp_path: Path, memory: str | None = None) -> Path:
    for part in ("prompts", "schemas"):
        shutil.copytree(SEED_MANIFEST.parent / part, tmp_path / part)
    text = SEED_MANIFEST.read_text()
    if memory is not None:
        assert SEED_MEMORY in text
        text = text.replace(SEED_MEMORY, f"  {memory}\n")
    path = tmp_path / "agent.manifest.yaml"
    path.write_text(text)
    return path


def test_versions_come_from_the_manifest(tmp_path: Path) -> None:
    manifest = load_manifest(_seed_copy(tmp_path))
    assert check_migration_file(SEED_MIGRATION, manifest=manifest).ok

    moved = load_manifest(
        _seed_copy(tmp_path / "v8", "memory: {schema_version: 8, migration_from: 7}")
    )
    report = check_migration_file(SEED_MIGRATION, manifest=moved)
    assert (report.from_version, report.to_version) == (7, 8)
    assert report.problems == (
        "the header migrates 6 -> 7 but from_version is 7 (spec.memory.migration_from)",
        "the header migrates 6 -> 7 but to_version is 8 (spec.memory.schema_version)",
        "the file name 'memory_v6_to_v7.sql' migrates 6 -> 7 but from_version is 7 "
        "(spec.memory.migration_from)",
        "the file name 'memory_v6_to_v7.sql' migrates 6 -> 7 but to_version is 8 "
        "(spec.memory.schema_version)",
    )

    silent = load_manifest(_seed_copy(tmp_path / "none", "memory: {schema_version: 7}"))
    report = check_migration_file(SEED_MIGRATION, manifest=silent)
    assert report.problems[0].startswith("spec.memory.migration_from is not set")


def _headerless(tmp_path: Path, name: str) -> Path:
    """The seed migration without its header, under ``name``: the bump is the name's alone."""
    sql = SEED_MIGRATION.read_text().replace("-- migrate: 6 -> 7\n", "", 1)
    path = tmp_path / name
    path.write_text(sql)
    return path


def test_the_file_name_carries_the_bump_too(tmp_path: Path) -> None:
    manifest = load_manifest(_seed_copy(tmp_path))  # migration_from 6, schema_version 7
    wrong = _headerless(tmp_path, "memory_v3_to_v4.sql")
    report = check_migration_file(wrong, manifest=manifest)
    assert not report.ok and not report.refused
    assert report.problems == (
        "the file name 'memory_v3_to_v4.sql' migrates 3 -> 4 but from_version is 6 "
        "(spec.memory.migration_from)",
        "the file name 'memory_v3_to_v4.sql' migrates 3 -> 4 but to_version is 7 "
        "(spec.memory.schema_version)",
    )
    alone = check_migration_file(wrong)  # no manifest: the name gives the versions
    assert (alone.from_version, alone.to_version, alone.ok) == (3, 4, True)
    for name in ("memory_v6_to_v7.sql", "memory-v6-to-v7.sql", "memory_v6_to_v7_backfill.sql"):
        named = check_migration_file(_headerless(tmp_path, name), manifest=manifest)
        assert named.ok, (name, named.problems)
    unnamed = check_migration_file(_headerless(tmp_path, "add_citations.sql"), manifest=manifest)
    assert unnamed.ok  # neither name nor header: the manifest's bump stands


def test_the_file_name_and_header_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "memory_v3_to_v4.sql"
    shutil.copy(SEED_MIGRATION, path)  # its header says 6 -> 7
    report = check_migration_file(path)
    assert report.problems == (
        "the header migrates 6 -> 7 but the file name 'memory_v3_to_v4.sql' says 3 -> 4",
    )
    backwards = check_migration_file(_headerless(tmp_path, "memory_v7_to_v6.sql"))
    assert backwards.problems == ("7 -> 6 is not a forward schema bump",)


def test_bad_dialect_and_unreadable_file_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"^dialect: unknown SQL dialect 'nosuchsql'"):
        check_migration("SELECT 1", dialect="nosuchsql")
    missing = tmp_path / "nope.sql"
    with pytest.raises(ManifestError, match="cannot read the migration") as err:
        check_migration_file(missing)
    assert err.value.field == str(missing)


def test_to_dict_is_json_ready() -> None:
    report = check_migration_file(DESTRUCTIVE)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["from_version"] == 6
    assert data["statements"][0] == {
        "index": 1,
        "line": 7,
        "sql": "ALTER TABLE memory_entries DROP COLUMN summary",
        "kind": "drop column",
        "allowed": False,
        "reason": "drops column memory_entries.summary, which the previous release uses",
    }
