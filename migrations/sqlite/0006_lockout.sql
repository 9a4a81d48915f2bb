-- Lockout (DESIGN.md §6): failures counted per canonical submitted identifier, whether or not an
-- account exists, shared by every node.
CREATE TABLE failure_counters (
    identifier      TEXT    PRIMARY KEY,
    failures        INTEGER NOT NULL,
    locked_until    INTEGER,
    hard_locked_at  INTEGER,
    known           INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL
);
CREATE INDEX failure_counters_last_failure ON failure_counters (last_failure_at);
