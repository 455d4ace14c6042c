ALTER TABLE proxies DROP COLUMN daily_spend_cap_usd;
ALTER TABLE proxies DROP COLUMN cache_stream_replay;
ALTER TABLE proxies DROP COLUMN cache_ignore_fields;
