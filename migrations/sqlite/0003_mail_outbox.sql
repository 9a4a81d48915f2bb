-- The durable mail outbox (DESIGN.md §4 "Mail and SMS"): a mail is inserted in the same
-- transaction as the action that causes it, then sent by the outbox job with retries.
-- Timestamps are Unix seconds (INTEGER) in both backends.
--
-- A row is queued while sent_at and given_up_at are both NULL. A sender claims it by setting
-- locked_until (a lease: another node may take it again only once the lease has passed) and
-- counting the attempt. Bodies are cleared once the mail is sent or given up, because they carry
-- codes and links.

CREATE TABLE mail_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    text_body       TEXT    NOT NULL,
    html_body       TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER,
    sent_at         INTEGER,
    last_error      TEXT,
    given_up_at     INTEGER
);
-- The sender's question: which queued mails are due? Only queued rows are indexed.
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at, id)
    WHERE sent_at IS NULL AND given_up_at IS NULL;
-- The purge of sent and abandoned mails.
CREATE INDEX mail_outbox_sent ON mail_outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX mail_outbox_given_up ON mail_outbox (given_up_at) WHERE given_up_at IS NOT NULL;
