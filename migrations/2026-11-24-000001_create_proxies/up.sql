-- Proxy ids are never reused (AUTOINCREMENT) so that request logs, which outlive a deleted
-- proxy, never point at a different proxy later.
CREATE TABLE proxies (
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
    cache_mode TEXT NOT NULL DEFAULT 'read_write' CHECK (cache_mode IN ('read_write', 'replay_only')),
    cache_ttl_seconds BIGINT CHECK (cache_ttl_seconds IS NULL OR cache_ttl_seconds > 0),
    vertex_service_account_file TEXT,
    aws_region TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
