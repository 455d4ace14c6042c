-- Every index is one more B-tree insert per logged request, paid by the writer while proxies are
-- busy. Listings page by id (newest first) and per proxy by (proxy_id, timestamp); a status or
-- time filter without a proxy scans, which the dashboard never does (it reads the roll-ups).
DROP INDEX request_logs_timestamp;
DROP INDEX request_logs_status;
