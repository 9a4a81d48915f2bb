-- Foundation: master key fingerprint, signing keys, audit trail, one-time values.
-- Timestamps are Unix seconds (INTEGER) in both backends.

CREATE TABLE master_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid                TEXT    PRIMARY KEY,
    algorithm          TEXT    NOT NULL CHECK (algorithm IN ('RS256', 'ES256', 'EdDSA')),
    state              TEXT    NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    private_key_sealed BLOB    NOT NULL,
    public_key_der     BLOB    NOT NULL,
    created_at         INTEGER NOT NULL,
    activated_at       INTEGER,
    retired_at         INTEGER
);
-- At most one current and one next key per algorithm, even with several nodes starting at once.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (algorithm) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (algorithm) WHERE state = 'next';

CREATE TABLE audit_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    subject TEXT,
    source  TEXT,
    details TEXT    NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
CREATE INDEX audit_events_action ON audit_events (action, id);

CREATE TABLE one_time_values (
    purpose    TEXT    NOT NULL,
    digest     BLOB    NOT NULL,
    payload    TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (purpose, digest)
);
CREATE INDEX one_time_values_expiry ON one_time_values (expires_at);
