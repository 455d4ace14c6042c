ALTER TABLE proxies DROP COLUMN log_requests;
