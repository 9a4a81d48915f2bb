-- Foundation: master key fingerprint, signing keys, audit trail, one-time values.
-- Timestamps are Unix seconds (BIGINT) in both backends.

CREATE TABLE master_key (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    fingerprint BYTEA    NOT NULL,
    created_at  BIGINT   NOT NULL
);

CREATE TABLE signing_keys (
    kid                TEXT   PRIMARY KEY,
    algorithm          TEXT   NOT NULL CHECK (algorithm IN ('RS256', 'ES256', 'EdDSA')),
    state              TEXT   NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    private_key_sealed BYTEA  NOT NULL,
    public_key_der     BYTEA  NOT NULL,
    created_at         BIGINT NOT NULL,
    activated_at       BIGINT,
    retired_at         BIGINT
);
-- At most one current and one next key per algorithm, even with several nodes starting at once.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (algorithm) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (algorithm) WHERE state = 'next';

CREATE TABLE audit_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    subject TEXT,
    source  TEXT,
    details TEXT   NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
CREATE INDEX audit_events_action ON audit_events (action, id);

CREATE TABLE one_time_values (
    purpose    TEXT   NOT NULL,
    digest     BYTEA  NOT NULL,
    payload    TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, digest)
);
CREATE INDEX one_time_values_expiry ON one_time_values (expires_at);
