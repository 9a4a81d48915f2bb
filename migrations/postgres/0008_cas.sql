-- CAS (DESIGN.md §7): the services registered with `sesame service add` (those of the
-- configuration file are not stored), service/proxy tickets and proxy-granting tickets, stored as
-- the SHA-256 of their value. Every ticket dies with its SSO session.
CREATE TABLE cas_services (
    id         TEXT    PRIMARY KEY,
    definition TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE cas_tickets (
    digest         BYTEA   PRIMARY KEY,
    kind           TEXT    NOT NULL CHECK (kind IN ('ST', 'PT')),
    service        TEXT    NOT NULL,
    account_id     TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    session_id     TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    from_new_login INTEGER NOT NULL,
    auth_time      BIGINT  NOT NULL,
    long_term      INTEGER NOT NULL,
    proxies        TEXT    NOT NULL DEFAULT '[]',
    expires_at     BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX cas_tickets_expiry ON cas_tickets (expires_at);
CREATE INDEX cas_tickets_session ON cas_tickets (session_id);

-- Proxy-granting tickets (CAS 3.0.3 §3.3): used many times, until their SSO session ends.
-- `proxies` is the chain of callback URLs, most recent first (§2.6.2).
CREATE TABLE cas_proxy_granting_tickets (
    digest     BYTEA   PRIMARY KEY,
    service_id TEXT    NOT NULL,
    account_id TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    proxies    TEXT    NOT NULL,
    auth_time  BIGINT  NOT NULL,
    long_term  INTEGER NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX cas_pgt_session ON cas_proxy_granting_tickets (session_id);
