ALTER TABLE metric_rollups DROP COLUMN saved_usd;
