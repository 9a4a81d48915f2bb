-- SSO sessions (DESIGN.md §5): one row per browser session, shared by every node. The cookie value
-- itself is never stored, only its SHA-256; `id` is a separate public handle for the helpdesk.
CREATE TABLE sessions (
    id              TEXT    PRIMARY KEY,
    digest          BYTEA   NOT NULL UNIQUE,
    account_id      TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL CHECK (kind IN ('standard', 'public', 'remembered')),
    auth_time       BIGINT  NOT NULL,
    factors         TEXT    NOT NULL,
    last_seen_at    BIGINT  NOT NULL,
    idle_expires_at BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    client_ip       TEXT,
    user_agent      TEXT
);
CREATE INDEX sessions_account ON sessions (account_id);
CREATE INDEX sessions_idle_expiry ON sessions (idle_expires_at);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- The applications a session logged into (CAS services, OIDC clients), for single logout.
CREATE TABLE session_services (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    protocol   TEXT    NOT NULL,
    service    TEXT    NOT NULL,
    first_at   BIGINT  NOT NULL,
    last_at    BIGINT  NOT NULL,
    PRIMARY KEY (session_id, protocol, service)
);

-- Last successful login, for the helpdesk.
ALTER TABLE accounts ADD COLUMN last_login_at BIGINT;
ALTER TABLE accounts ADD COLUMN last_login_from TEXT;

-- Where an audited request came from, beyond its client address (`source`).
ALTER TABLE audit_events ADD COLUMN user_agent TEXT;
ALTER TABLE audit_events ADD COLUMN request_id TEXT;
CREATE INDEX audit_events_at ON audit_events (at);

-- Lockout: the current temporary lock length (doubled in the same statement that counts), and the
-- attempts refused while locked (not failures: no password was checked).
ALTER TABLE failure_counters ADD COLUMN lock_seconds BIGINT NOT NULL DEFAULT 0;
ALTER TABLE failure_counters ADD COLUMN refused BIGINT NOT NULL DEFAULT 0;
