-- CAS single logout (CAS 3.0.3 §2.3.3, DESIGN.md §7). A validated service ticket of a service
-- that wants single logout leaves a target; when the SSO session row goes — logout, expiry purge,
-- helpdesk revocation, password reset, disabled account, leaver — a trigger moves its targets into
-- the outbox in the same transaction, whatever code path deleted it. A job posts them.
CREATE TABLE cas_logout_targets (
    session_id    TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    service_id    TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    name_id       TEXT    NOT NULL,
    session_index TEXT    NOT NULL,
    account_id    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (session_id, session_index)
);

CREATE TABLE cas_logout_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT    NOT NULL,
    account_id      TEXT    NOT NULL,
    service_id      TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    name_id         TEXT    NOT NULL,
    session_index   TEXT    NOT NULL,
    -- Set by the sender when it first claims the row (the injected clock, not the database's).
    created_at      INTEGER,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    delivered_at    INTEGER,
    failed_at       INTEGER,
    last_error      TEXT
);
CREATE INDEX cas_logout_outbox_due ON cas_logout_outbox (next_attempt_at);
CREATE INDEX cas_logout_outbox_account ON cas_logout_outbox (account_id, id);

CREATE TRIGGER sessions_queue_cas_logout BEFORE DELETE ON sessions
BEGIN
    INSERT INTO cas_logout_outbox (session_id, account_id, service_id, url, name_id, session_index,
                                   next_attempt_at)
    SELECT session_id, account_id, service_id, url, name_id, session_index, 0
    FROM cas_logout_targets WHERE session_id = OLD.id;
END;
