-- Activation: per-dossier failure counters, staff activation codes, activations in progress,
-- confirmed recovery contacts, and the password itself.

ALTER TABLE accounts ADD COLUMN password_hash TEXT;
ALTER TABLE accounts ADD COLUMN activated_at INTEGER;

-- Counted per submitted dossier number, whether or not it exists (no enumeration).
CREATE TABLE activation_failures (
    dossier_number TEXT    PRIMARY KEY,
    failures       INTEGER NOT NULL,
    locked_at      INTEGER,
    updated_at     INTEGER NOT NULL
);

-- One live code per staff account; printing a new one replaces the old.
CREATE TABLE staff_activation_codes (
    account_id  TEXT    PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    code_digest BLOB    NOT NULL UNIQUE,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- An activation in progress, keyed by the SHA-256 of the browser's token.
CREATE TABLE activations (
    digest             BLOB    PRIMARY KEY,
    account_id         TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    dossier_number     TEXT,
    locale             TEXT    NOT NULL,
    email              TEXT,
    phone              TEXT,
    code_digest        BLOB,
    code_expires_at    INTEGER,
    code_attempts      INTEGER NOT NULL DEFAULT 0,
    email_confirmed_at INTEGER,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL
);
CREATE INDEX activations_expiry ON activations (expires_at);

CREATE TABLE recovery_contacts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL CHECK (kind IN ('email', 'phone')),
    value        TEXT    NOT NULL,
    confirmed_at INTEGER,
    created_at   INTEGER NOT NULL,
    UNIQUE (account_id, kind, value)
);
