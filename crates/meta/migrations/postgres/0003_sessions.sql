-- As migrations/sqlite/0003_sessions.sql, for PostgreSQL. Web sessions for the management API: the SHA-256 of the session secret, never the secret.
CREATE TABLE sessions (
    secret_hash  TEXT COLLATE "C" PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions(expires_at);
