-- Whether a proxy's requests are written to the request log (metrics count them either way).
ALTER TABLE proxies ADD COLUMN log_requests BOOLEAN NOT NULL DEFAULT 1;
