DROP INDEX cache_entries_lru;
ALTER TABLE cache_entries DROP COLUMN last_used_at;
