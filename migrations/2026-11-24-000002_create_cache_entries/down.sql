DROP TABLE cache_entries;
ALTER TABLE proxies DROP COLUMN cache_partition_by_credential;
