-- A proxy may be bound to a directory of fixture files, and may be declared in a config file
-- (whose entries win at the next start).
ALTER TABLE proxies ADD COLUMN cache_fixtures_dir TEXT;
ALTER TABLE proxies ADD COLUMN declared_in TEXT;
-- What a fixture file holds beyond the answer: the request, its cassette, model, usage and the
-- timing of a stream's chunks (JSON; NULL for entries stored before fixtures).
ALTER TABLE cache_entries ADD COLUMN recording TEXT;
