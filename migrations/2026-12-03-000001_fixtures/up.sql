-- The cache mode `refresh` (always ask the upstream, record over the old answer); a proxy may be
-- bound to a directory of fixture files, and may be declared in a config file (whose entries
-- win at the next start). SQLite cannot change a CHECK in place: the table is rebuilt (the
-- migrations run with foreign keys off, see src/db/mod.rs).
-- Proxy ids are never reused (AUTOINCREMENT): the counter outlives the rebuilt table.
CREATE TEMP TABLE kept_proxy_sequence AS
    SELECT seq FROM sqlite_sequence WHERE name = 'proxies';
CREATE TABLE proxies_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    provider TEXT NOT NULL,
    port INTEGER NOT NULL UNIQUE CHECK (port BETWEEN 1 AND 65535),
    description TEXT NOT NULL DEFAULT '',
    -- JSON array of strings
    tags TEXT NOT NULL DEFAULT '[]',
    upstream_url TEXT,
    desired_state TEXT NOT NULL DEFAULT 'stopped' CHECK (desired_state IN ('running', 'stopped')),
    last_error TEXT,
    -- JSON object, the failure-config contract of the admin API
    failure_config TEXT NOT NULL DEFAULT '{}',
    cache_enabled BOOLEAN NOT NULL DEFAULT 1,
    cache_mode TEXT NOT NULL DEFAULT 'read_write' CHECK (cache_mode IN ('read_write', 'replay_only', 'refresh')),
    cache_ttl_seconds BIGINT CHECK (cache_ttl_seconds IS NULL OR cache_ttl_seconds > 0),
    vertex_service_account_file TEXT,
    aws_region TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    cache_partition_by_credential BOOLEAN NOT NULL DEFAULT 0,
    emulator_ttft_ms INTEGER NOT NULL DEFAULT 200 CHECK (emulator_ttft_ms >= 0),
    emulator_tokens_per_second INTEGER NOT NULL DEFAULT 50 CHECK (emulator_tokens_per_second > 0),
    owner_id INTEGER REFERENCES users (id),
    log_requests BOOLEAN NOT NULL DEFAULT 1,
    cache_fixtures_dir TEXT,
    declared_in TEXT
);
INSERT INTO proxies_rebuilt (id, name, provider, port, description, tags, upstream_url, desired_state, last_error,
    failure_config, cache_enabled, cache_mode, cache_ttl_seconds, vertex_service_account_file,
    aws_region, created_at, updated_at, cache_partition_by_credential, emulator_ttft_ms,
    emulator_tokens_per_second, owner_id, log_requests)
    SELECT id, name, provider, port, description, tags, upstream_url, desired_state, last_error,
    failure_config, cache_enabled, cache_mode, cache_ttl_seconds, vertex_service_account_file,
    aws_region, created_at, updated_at, cache_partition_by_credential, emulator_ttft_ms,
    emulator_tokens_per_second, owner_id, log_requests FROM proxies;
DROP TABLE proxies;
ALTER TABLE proxies_rebuilt RENAME TO proxies;
CREATE INDEX proxies_owner ON proxies (owner_id);
DELETE FROM sqlite_sequence WHERE name = 'proxies';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'proxies', MAX(COALESCE((SELECT seq FROM kept_proxy_sequence), 0),
                          COALESCE((SELECT MAX(id) FROM proxies), 0));
DROP TABLE kept_proxy_sequence;

-- What a fixture file holds beyond the answer: the request, its cassette, model, usage and the
-- timing of a stream's chunks (JSON; NULL for entries stored before fixtures).
ALTER TABLE cache_entries ADD COLUMN recording TEXT;
