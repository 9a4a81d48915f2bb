-- OpenID Connect (DESIGN.md §7): clients registered with `sesame client add` (those of the
-- configuration file are not stored), authorization codes, grants (a family of tokens from one
-- code) and their tokens, stored as the SHA-256 of their value, and remembered consents.
-- A grant made from an SSO session dies with it (logout, reset, disable, expiry): its tokens go
-- with it. Back-channel logout reuses the single-logout targets and outbox, with a protocol.
CREATE TABLE oidc_clients (
    id         TEXT    PRIMARY KEY,
    definition TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- A code stays after its redemption (until it is purged, after its expiry) so that a second
-- redemption is recognised and revokes the grant made from it (RFC 6749 §4.1.2).
CREATE TABLE oidc_codes (
    digest         BLOB    PRIMARY KEY,
    client_id      TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    account_id     TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    session_id     TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    scope          TEXT    NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      INTEGER NOT NULL,
    amr            TEXT    NOT NULL,
    acr            TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    redeemed_at    INTEGER
);
CREATE INDEX oidc_codes_expiry ON oidc_codes (expires_at);

CREATE TABLE oidc_grants (
    id         TEXT    PRIMARY KEY,
    client_id  TEXT    NOT NULL,
    account_id TEXT    REFERENCES accounts (id) ON DELETE CASCADE,
    session_id TEXT    REFERENCES sessions (id) ON DELETE CASCADE,
    scope      TEXT    NOT NULL,
    auth_time  INTEGER,
    amr        TEXT    NOT NULL,
    acr        TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    -- The code it was made from (none for client credentials): a replay of the code revokes it.
    code_digest BLOB
);
CREATE INDEX oidc_grants_expiry ON oidc_grants (expires_at);
CREATE INDEX oidc_grants_code ON oidc_grants (code_digest);
CREATE INDEX oidc_grants_session ON oidc_grants (session_id);
CREATE INDEX oidc_grants_account ON oidc_grants (account_id, client_id);

-- A spent refresh token keeps its row (`used_at`) so that a replay revokes the family.
CREATE TABLE oidc_tokens (
    digest     BLOB    PRIMARY KEY,
    grant_id   TEXT    NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('access', 'refresh')),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX oidc_tokens_grant ON oidc_tokens (grant_id);

CREATE TABLE oidc_consents (
    account_id TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, client_id)
);

ALTER TABLE cas_logout_targets ADD COLUMN protocol TEXT NOT NULL DEFAULT 'cas';
ALTER TABLE cas_logout_outbox ADD COLUMN protocol TEXT NOT NULL DEFAULT 'cas';

DROP TRIGGER sessions_queue_cas_logout;
CREATE TRIGGER sessions_queue_cas_logout BEFORE DELETE ON sessions
BEGIN
    INSERT INTO cas_logout_outbox (protocol, session_id, account_id, service_id, url, name_id,
                                   session_index, next_attempt_at)
    SELECT protocol, session_id, account_id, service_id, url, name_id, session_index, 0
    FROM cas_logout_targets WHERE session_id = OLD.id;
END;
