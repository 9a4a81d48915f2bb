-- Second factors (DESIGN.md §5, issue 7): one TOTP per account (its seed sealed with the master
-- key, and the last time-step accepted, so that a code is accepted once: RFC 6238 §5.2), passkeys
-- (the public part of a WebAuthn credential, as webauthn-rs serialises it) and recovery codes
-- (their SHA-256). Every row dies with its account.
CREATE TABLE mfa_totp (
    account_id   TEXT    PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    sealed_seed  BLOB    NOT NULL,
    last_step    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE TABLE mfa_passkeys (
    id            TEXT    PRIMARY KEY,
    account_id    TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_handle   BLOB    NOT NULL,
    credential_id BLOB    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    passkey       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    -- The authenticator's signature counter went backwards (a cloned credential?).
    flagged_at    INTEGER
);
CREATE INDEX mfa_passkeys_account ON mfa_passkeys (account_id);

CREATE TABLE mfa_recovery_codes (
    account_id TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    digest     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (account_id, digest)
);

-- The factors a CAS ticket's login used (OIDC codes and grants already keep theirs), so that a
-- validation for a service that requires MFA can check them (DESIGN.md §5).
ALTER TABLE cas_tickets ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE cas_proxy_granting_tickets ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
