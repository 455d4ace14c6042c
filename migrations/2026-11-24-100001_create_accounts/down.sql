DROP INDEX proxies_owner;
ALTER TABLE proxies DROP COLUMN owner_id;
DROP TABLE settings;
DROP TABLE api_tokens;
DROP TABLE sessions;
DROP TABLE users;
