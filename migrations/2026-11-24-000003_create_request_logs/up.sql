-- One row per proxied request. No foreign key: logs outlive the proxies they name.
CREATE TABLE request_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    timestamp TIMESTAMP NOT NULL,
    proxy_id INTEGER NOT NULL,
    proxy_name TEXT NOT NULL,
    provider TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    model TEXT,
    client_ip TEXT NOT NULL,
    status INTEGER NOT NULL,
    latency_ms DOUBLE NOT NULL,
    upstream_latency_ms DOUBLE,
    cache TEXT NOT NULL CHECK (cache IN ('hit', 'miss', 'bypass')),
    failure TEXT,
    stream BOOLEAN NOT NULL,
    request_bytes BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cost_usd DOUBLE,
    prompt_hash TEXT,
    user_agent TEXT,
    error_message TEXT
);
CREATE INDEX request_logs_timestamp ON request_logs (timestamp);
CREATE INDEX request_logs_proxy_timestamp ON request_logs (proxy_id, timestamp);
CREATE INDEX request_logs_status ON request_logs (status);
