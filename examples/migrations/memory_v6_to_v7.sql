-- migrate: 6 -> 7
-- Memory schema v7 of research-agent (release 2026.04.19-a3f2c1). Additive only: the
-- v6 release (the rollback target) keeps reading and writing these tables unchanged
-- while v7 rolls out, so every change below is one v6 can ignore.
-- Check it with: canary_stats.manifest.check_migration_file(path, manifest=...)

BEGIN;

-- v7 remembers which search result an entry was distilled from; v6 never sets it.
ALTER TABLE memory_entries ADD COLUMN source_url TEXT;

-- v7 ranks entries by relevance; v6's INSERTs, which omit the column, get the default.
ALTER TABLE memory_entries ADD COLUMN relevance DOUBLE PRECISION NOT NULL DEFAULT 1.0;

-- Citations collected per task: a new table that only v7 reads.
CREATE TABLE IF NOT EXISTS memory_citations (
    citation_id BIGINT PRIMARY KEY,
    entry_id BIGINT NOT NULL REFERENCES memory_entries (entry_id),
    url TEXT NOT NULL,
    retrieved_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS memory_citations_entry ON memory_citations (entry_id);

-- Backfill the new column from the URL v6 kept in its metadata JSON, where there is one.
UPDATE memory_entries
SET source_url = metadata ->> 'url'
WHERE source_url IS NULL AND metadata ->> 'url' IS NOT NULL;

COMMENT ON COLUMN memory_entries.source_url IS 'web_search result the entry came from (v7)';

COMMIT;
