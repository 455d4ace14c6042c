-- A deleted proxy's logs and roll-ups are kept. Remembering whose proxy it was lets its owner,
-- not only admins, still read them (proxy ids are never reused: AUTOINCREMENT).
CREATE TABLE deleted_proxies (
    id INTEGER PRIMARY KEY NOT NULL,
    owner_id INTEGER NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    deleted_at TIMESTAMP NOT NULL
);
