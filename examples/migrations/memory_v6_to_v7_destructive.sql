-- migrate: 6 -> 7
-- A counter-example for the docs: the same v7 written destructively. Every statement
-- below breaks v6, which still runs beside the canary and is the rollback target, and
-- check_migration refuses each one, naming it and why.

-- v6 reads `summary`: dropping it breaks v6 and loses the data for good.
ALTER TABLE memory_entries DROP COLUMN summary;

-- v6 queries `created` by its old name.
ALTER TABLE memory_entries RENAME COLUMN created TO created_at;

-- v6 writes integer scores; the new type rejects or silently rounds them.
ALTER TABLE memory_entries ALTER COLUMN score TYPE NUMERIC(4, 3);

-- v6's INSERTs do not know the column, so they fail.
ALTER TABLE memory_entries ADD COLUMN embedding_model TEXT NOT NULL;

-- Rows a rollback to v6 needs; nothing brings them back.
DELETE FROM memory_entries WHERE created < now() - INTERVAL '90 days';

DROP TABLE memory_scratchpad;
