-- What cache hits saved: the cost each hit's answer had when it was first paid for. Minutes rolled
-- up before this column existed start at zero.
ALTER TABLE metric_rollups ADD COLUMN saved_usd DOUBLE NOT NULL DEFAULT 0;
