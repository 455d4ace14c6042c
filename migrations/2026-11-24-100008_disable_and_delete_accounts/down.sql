-- Tombstones of deleted accounts stay as ordinary rows; their email was renamed and their
-- password wiped, so nobody can sign in as them.
ALTER TABLE users DROP COLUMN deleted_at;
ALTER TABLE users DROP COLUMN disabled_at;
