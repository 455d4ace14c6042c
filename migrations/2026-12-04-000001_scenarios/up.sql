ALTER TABLE request_logs ADD COLUMN scenario TEXT;
