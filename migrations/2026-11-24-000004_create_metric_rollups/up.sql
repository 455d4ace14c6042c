-- Per-proxy, per-minute totals, so dashboards and /api/metrics never scan raw logs.
CREATE TABLE metric_rollups (
    proxy_id INTEGER NOT NULL,
    -- start of the minute, UTC
    minute TIMESTAMP NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    cache_hits BIGINT NOT NULL,
    injected_failures BIGINT NOT NULL,
    upstream_failures BIGINT NOT NULL,
    latency_sum_ms DOUBLE NOT NULL,
    -- JSON array of counts per latency bucket (bounds in src/telemetry/rollup.rs)
    latency_histogram TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd DOUBLE NOT NULL,
    PRIMARY KEY (proxy_id, minute)
);
CREATE INDEX metric_rollups_minute ON metric_rollups (minute);
