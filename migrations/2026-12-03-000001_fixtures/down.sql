ALTER TABLE cache_entries DROP COLUMN recording;
ALTER TABLE proxies DROP COLUMN declared_in;
ALTER TABLE proxies DROP COLUMN cache_fixtures_dir;
