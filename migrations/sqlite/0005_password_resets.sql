-- Password resets: one live link per account (a newer request replaces the older), stored as the
-- SHA-256 of the 128-bit token.
CREATE TABLE password_resets (
    account_id TEXT    PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    digest     BLOB    NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX password_resets_expiry ON password_resets (expires_at);
