-- Per proxy: body fields left out of cache keys (a JSON array of dotted paths), how a cached
-- stream is replayed (instant, recorded, or a speed factor), and a daily cap on live spend.
ALTER TABLE proxies ADD COLUMN cache_ignore_fields TEXT NOT NULL DEFAULT '[]';
ALTER TABLE proxies ADD COLUMN cache_stream_replay TEXT NOT NULL DEFAULT 'instant';
ALTER TABLE proxies ADD COLUMN daily_spend_cap_usd DOUBLE CHECK (daily_spend_cap_usd IS NULL OR daily_spend_cap_usd >= 0);
