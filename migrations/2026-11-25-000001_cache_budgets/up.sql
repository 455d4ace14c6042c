-- When an entry was last stored or hit: the cache budgets evict the least recently used first.
-- Kept in an index with the size, so finding what to evict and summing a proxy's bytes never
-- reads the bodies.
ALTER TABLE cache_entries ADD COLUMN last_used_at TIMESTAMP NOT NULL DEFAULT '1970-01-01 00:00:00';
UPDATE cache_entries SET last_used_at = COALESCE(last_hit_at, created_at);
CREATE INDEX cache_entries_lru ON cache_entries (proxy_id, last_used_at, size_bytes);
