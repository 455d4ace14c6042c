-- An admin can disable an account (it cannot sign in; its sessions and tokens stop working at
-- once) and enable it again, or delete it. A deleted account stays as a tombstone: its proxies,
-- deleted proxies and their logs keep a valid owner (proxies.owner_id and deleted_proxies.owner_id
-- reference users), so admins still see and manage them. The tombstone's email is freed for a new
-- account and its password is wiped.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMP;
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMP;
