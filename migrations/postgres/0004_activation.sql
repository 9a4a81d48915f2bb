-- Activation: per-dossier failure counters, staff activation codes, activations in progress,
-- confirmed recovery contacts, and the password itself.

ALTER TABLE accounts ADD COLUMN password_hash TEXT;
ALTER TABLE accounts ADD COLUMN activated_at BIGINT;

-- Counted per submitted dossier number, whether or not it exists (no enumeration).
CREATE TABLE activation_failures (
    dossier_number TEXT    PRIMARY KEY,
    failures       INTEGER NOT NULL,
    locked_at      BIGINT,
    updated_at     BIGINT NOT NULL
);

-- One live code per staff account; printing a new one replaces the old.
CREATE TABLE staff_activation_codes (
    account_id  TEXT    PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    code_digest BYTEA   NOT NULL UNIQUE,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- An activation in progress, keyed by the SHA-256 of the browser's token.
CREATE TABLE activations (
    digest             BYTEA   PRIMARY KEY,
    account_id         TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    dossier_number     TEXT,
    locale             TEXT    NOT NULL,
    email              TEXT,
    phone              TEXT,
    code_digest        BYTEA,
    code_expires_at    BIGINT,
    code_attempts      INTEGER NOT NULL DEFAULT 0,
    email_confirmed_at BIGINT,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL
);
CREATE INDEX activations_expiry ON activations (expires_at);

CREATE TABLE recovery_contacts (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL CHECK (kind IN ('email', 'phone')),
    value        TEXT    NOT NULL,
    confirmed_at BIGINT,
    created_at   BIGINT NOT NULL,
    UNIQUE (account_id, kind, value)
);
