-- Accounts and the two feeds. Logins (current and former) form one namespace: `logins`.
-- Logins use the "C" collation: byte order, so prefix range scans use the index.

CREATE TABLE accounts (
    id              TEXT    PRIMARY KEY,
    login           TEXT    COLLATE "C" NOT NULL UNIQUE,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'disabled')),
    first_name      TEXT    NOT NULL,
    last_name       TEXT    NOT NULL,
    birth_date      TEXT    NOT NULL,
    person_key      TEXT    NOT NULL,
    disabled_reason TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX accounts_person ON accounts (person_key);

CREATE TABLE logins (
    login      TEXT    COLLATE "C" PRIMARY KEY,
    account_id TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT  NOT NULL
);
CREATE INDEX logins_account ON logins (account_id);

CREATE TABLE student_records (
    dossier_number  TEXT    PRIMARY KEY,
    account_id      TEXT    NOT NULL UNIQUE REFERENCES accounts (id) ON DELETE CASCADE,
    component       TEXT    NOT NULL,
    enrolment_year  INTEGER NOT NULL,
    enrolment_email TEXT,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE staff_records (
    employee_id TEXT    PRIMARY KEY,
    account_id  TEXT    NOT NULL UNIQUE REFERENCES accounts (id) ON DELETE CASCADE,
    department  TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('active', 'left')),
    updated_at  BIGINT  NOT NULL
);
