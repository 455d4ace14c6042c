CREATE TABLE cache_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    proxy_id INTEGER NOT NULL REFERENCES proxies (id) ON DELETE CASCADE,
    -- hex SHA-256 of the request's canonical form
    cache_key TEXT NOT NULL,
    status INTEGER NOT NULL,
    -- JSON [[name, value], ...]: the content headers replayed on a hit
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    -- JSON array of chunk lengths for a streamed response, replayed chunk by chunk; NULL otherwise
    chunks TEXT,
    size_bytes BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_hit_at TIMESTAMP,
    hit_count BIGINT NOT NULL DEFAULT 0,
    UNIQUE (proxy_id, cache_key)
);

ALTER TABLE proxies ADD COLUMN cache_partition_by_credential BOOLEAN NOT NULL DEFAULT 0;
