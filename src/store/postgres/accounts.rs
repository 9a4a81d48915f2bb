//! Accounts, logins and feed records, on PostgreSQL.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row as _};

use super::PostgresStore;
use crate::accounts::{
    AccountRecord, AccountState, AccountStore, AccountWithRecords, NewStudent, ProvisioningStore,
    ProvisioningUnit, StaffRecord, StudentContext, StudentRecord,
};
use crate::storage::StorageError;
use crate::store::{parse_column, storage_error};

const ACCOUNT_COLUMNS: &str = "id, login, state, first_name, last_name, birth_date, person_key";

pub(super) fn account(row: &PgRow) -> Result<AccountRecord, StorageError> {
    Ok(AccountRecord {
        id: row.try_get("id").map_err(storage_error)?,
        login: row.try_get("login").map_err(storage_error)?,
        state: parse_column(&row.try_get::<String, _>("state").map_err(storage_error)?)?,
        first_name: row.try_get("first_name").map_err(storage_error)?,
        last_name: row.try_get("last_name").map_err(storage_error)?,
        birth_date: row.try_get("birth_date").map_err(storage_error)?,
        person_key: row.try_get("person_key").map_err(storage_error)?,
    })
}

fn student(row: &PgRow) -> Result<StudentRecord, StorageError> {
    Ok(StudentRecord {
        dossier_number: row.try_get("dossier_number").map_err(storage_error)?,
        account_id: row.try_get("account_id").map_err(storage_error)?,
        component: row.try_get("component").map_err(storage_error)?,
        enrolment_year: row.try_get("enrolment_year").map_err(storage_error)?,
        enrolment_email: row.try_get("enrolment_email").map_err(storage_error)?,
    })
}

fn staff(row: &PgRow) -> Result<StaffRecord, StorageError> {
    Ok(StaffRecord {
        employee_id: row.try_get("employee_id").map_err(storage_error)?,
        account_id: row.try_get("account_id").map_err(storage_error)?,
        department: row.try_get("department").map_err(storage_error)?,
        role: row.try_get("role").map_err(storage_error)?,
        status: row.try_get("status").map_err(storage_error)?,
    })
}

/// The columns of an account with its feed records (aliased, so that another room's query can
/// join them: see [`account_with_records`]), and the joins that bring the records of `a`.
pub(super) const WITH_RECORDS_COLUMNS: &str = "a.id AS a_id, a.login AS a_login, \
    a.state AS a_state, a.first_name AS a_first_name, a.last_name AS a_last_name, \
    a.birth_date AS a_birth_date, a.person_key AS a_person_key, \
    s.dossier_number AS s_dossier_number, s.component AS s_component, \
    s.enrolment_year AS s_enrolment_year, s.enrolment_email AS s_enrolment_email, \
    f.employee_id AS f_employee_id, f.department AS f_department, f.role AS f_role, \
    f.status AS f_status";
pub(super) const WITH_RECORDS_JOIN: &str = "LEFT JOIN student_records s ON s.account_id = a.id \
    LEFT JOIN staff_records f ON f.account_id = a.id";

/// Reads [`WITH_RECORDS_COLUMNS`]; `None` when the row has no account (an outer join).
pub(super) fn account_with_records(
    row: &PgRow,
) -> Result<Option<AccountWithRecords>, StorageError> {
    let Some(id) = row
        .try_get::<Option<String>, _>("a_id")
        .map_err(storage_error)?
    else {
        return Ok(None);
    };
    let get = |column: &str| row.try_get::<String, _>(column).map_err(storage_error);
    let student = match row
        .try_get::<Option<String>, _>("s_dossier_number")
        .map_err(storage_error)?
    {
        None => None,
        Some(dossier_number) => Some(StudentRecord {
            dossier_number,
            account_id: id.clone(),
            component: get("s_component")?,
            enrolment_year: row.try_get("s_enrolment_year").map_err(storage_error)?,
            enrolment_email: row.try_get("s_enrolment_email").map_err(storage_error)?,
        }),
    };
    let staff = match row
        .try_get::<Option<String>, _>("f_employee_id")
        .map_err(storage_error)?
    {
        None => None,
        Some(employee_id) => Some(StaffRecord {
            employee_id,
            account_id: id.clone(),
            department: get("f_department")?,
            role: get("f_role")?,
            status: get("f_status")?,
        }),
    };
    Ok(Some(AccountWithRecords {
        account: AccountRecord {
            login: get("a_login")?,
            state: parse_column(&get("a_state")?)?,
            first_name: get("a_first_name")?,
            last_name: get("a_last_name")?,
            birth_date: get("a_birth_date")?,
            person_key: get("a_person_key")?,
            id,
        },
        student,
        staff,
    }))
}

/// The queries both the import transaction and the pool run.
async fn student_by_dossier<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    dossier_number: &str,
) -> Result<Option<StudentRecord>, StorageError> {
    sqlx::query(
        "SELECT dossier_number, account_id, component, enrolment_year, enrolment_email \
         FROM student_records WHERE dossier_number = $1",
    )
    .bind(dossier_number)
    .fetch_optional(executor)
    .await
    .map_err(storage_error)?
    .as_ref()
    .map(student)
    .transpose()
}

async fn staff_by_account<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    account_id: &str,
) -> Result<Option<StaffRecord>, StorageError> {
    sqlx::query(
        "SELECT employee_id, account_id, department, role, status \
         FROM staff_records WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_optional(executor)
    .await
    .map_err(storage_error)?
    .as_ref()
    .map(staff)
    .transpose()
}

async fn account_by_id<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    id: &str,
) -> Result<Option<AccountRecord>, StorageError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(executor)
    .await
    .map_err(storage_error)?
    .as_ref()
    .map(account)
    .transpose()
}

/// The CTEs `a` (a new account, `$1`–`$8`: [`bind_new_account`]) and `l` (its login in the
/// namespace), for a statement that stores an account and its login at once; the account's
/// values are selected `from` (empty: unconditionally).
fn new_account(from: &str) -> String {
    format!(
        "a AS (INSERT INTO accounts (id, login, state, first_name, last_name, birth_date, \
         person_key, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $8 {from} RETURNING id, login), \
         l AS (INSERT INTO logins (login, account_id, created_at) SELECT login, id, $8 FROM a)"
    )
}

/// The CTE `r`: the student record (`$9`–`$13`: [`bind_new_record`]) of the account of `a`.
const NEW_RECORD: &str = "r AS (INSERT INTO student_records (dossier_number, account_id, \
     component, enrolment_year, enrolment_email, updated_at) \
     SELECT $9, $10, $11, $12, $13, $8 FROM a)";

/// Binds `$9`–`$13` of [`NEW_RECORD`], after [`bind_new_account`]'s.
fn bind_new_record<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    record: &'q StudentRecord,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&record.dossier_number)
        .bind(&record.account_id)
        .bind(&record.component)
        .bind(record.enrolment_year)
        .bind(&record.enrolment_email)
}

/// Binds `$1`–`$8` of [`new_account`].
fn bind_new_account<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    account: &'q AccountRecord,
    now: i64,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&account.id)
        .bind(&account.login)
        .bind(account.state.as_str())
        .bind(&account.first_name)
        .bind(&account.last_name)
        .bind(&account.birth_date)
        .bind(&account.person_key)
        .bind(now)
}

/// The context of a student row (see `ProvisioningUnit::student_context`) as one row: the
/// dossier's record and its account, the ids of the accounts of the same person (only for a
/// dossier without a record) and the logins in `[base, upper)`, given as SQL expressions.
fn student_context_sql(dossier: &str, person_key: &str, base: &str, upper: &str) -> String {
    format!(
        "SELECT s.dossier_number, s.account_id, s.component, s.enrolment_year, \
         s.enrolment_email, a.id, a.login, a.state, a.first_name, a.last_name, a.birth_date, \
         a.person_key, \
         ARRAY(SELECT p.id FROM accounts p WHERE s.dossier_number IS NULL \
         AND p.person_key = {person_key} ORDER BY p.created_at, p.id) AS same_person, \
         ARRAY(SELECT l.login FROM logins l WHERE l.login >= {base} AND l.login < {upper}) \
         AS logins \
         FROM (SELECT 1) AS one \
         LEFT JOIN student_records s ON s.dossier_number = {dossier} \
         LEFT JOIN accounts a ON a.id = s.account_id"
    )
}

/// A row of [`student_context_sql`]; `logins` only when a base was given.
fn student_context_of(row: &PgRow, with_logins: bool) -> Result<StudentContext, StorageError> {
    let existing = match row
        .try_get::<Option<String>, _>("dossier_number")
        .map_err(storage_error)?
    {
        None => None,
        Some(_) => {
            let has_account = row
                .try_get::<Option<String>, _>("id")
                .map_err(storage_error)?
                .is_some();
            Some((
                student(row)?,
                has_account.then(|| account(row)).transpose()?,
            ))
        }
    };
    Ok(StudentContext {
        existing,
        same_person: row.try_get("same_person").map_err(storage_error)?,
        logins: with_logins
            .then(|| row.try_get("logins"))
            .transpose()
            .map_err(storage_error)?,
    })
}

/// One import transaction.
pub struct PostgresProvisioning {
    tx: crate::store::pool::Tx<Postgres>,
}

#[async_trait]
impl ProvisioningStore for PostgresStore {
    async fn begin_provisioning(&self) -> Result<Box<dyn ProvisioningUnit>, StorageError> {
        let tx = self.pool.begin().await.map_err(storage_error)?;
        Ok(Box::new(PostgresProvisioning { tx }))
    }
}

#[async_trait]
impl ProvisioningUnit for PostgresProvisioning {
    async fn savepoint(&mut self) -> Result<(), StorageError> {
        sqlx::query("SAVEPOINT feed_row")
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn release_savepoint(&mut self) -> Result<(), StorageError> {
        sqlx::query("RELEASE SAVEPOINT feed_row")
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn rollback_to_savepoint(&mut self) -> Result<(), StorageError> {
        sqlx::query("ROLLBACK TO SAVEPOINT feed_row")
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn find_student(
        &mut self,
        dossier_number: &str,
    ) -> Result<Option<StudentRecord>, StorageError> {
        student_by_dossier(&mut *self.tx, dossier_number).await
    }

    async fn find_staff(&mut self, employee_id: &str) -> Result<Option<StaffRecord>, StorageError> {
        sqlx::query(
            "SELECT employee_id, account_id, department, role, status \
             FROM staff_records WHERE employee_id = $1",
        )
        .bind(employee_id)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(storage_error)?
        .as_ref()
        .map(staff)
        .transpose()
    }

    async fn find_account(&mut self, id: &str) -> Result<Option<AccountRecord>, StorageError> {
        account_by_id(&mut *self.tx, id).await
    }

    async fn find_staff_by_account(
        &mut self,
        account_id: &str,
    ) -> Result<Option<StaffRecord>, StorageError> {
        staff_by_account(&mut *self.tx, account_id).await
    }

    async fn has_student_record(&mut self, account_id: &str) -> Result<bool, StorageError> {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM student_records WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(&mut *self.tx)
            .await
            .map(|n| n > 0)
            .map_err(storage_error)
    }

    async fn find_accounts_by_person(
        &mut self,
        person_key: &str,
    ) -> Result<Vec<AccountRecord>, StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE person_key = $1 ORDER BY created_at, id"
        )))
        .bind(person_key)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(storage_error)?
        .iter()
        .map(account)
        .collect()
    }

    async fn logins_with_prefix(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // Logins are [a-z0-9.-]: every login starting with `prefix` sorts below `prefix~`.
        sqlx::query_scalar("SELECT login FROM logins WHERE login >= $1 AND login < $2")
            .bind(prefix)
            .bind(format!("{prefix}~"))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(storage_error)
    }

    async fn student_context(
        &mut self,
        dossier_number: &str,
        person_key: &str,
        login_base: Option<&str>,
    ) -> Result<StudentContext, StorageError> {
        // One round trip for what was up to four: an import reads this for each of 50,000 rows.
        // Logins are [a-z0-9.-]: every login starting with the base sorts below `base~`; no
        // base, an empty range.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM ({}) AS ctx",
            student_context_sql("$1", "$2", "$3", "$4")
        )))
        .bind(dossier_number)
        .bind(person_key)
        .bind(login_base.unwrap_or(""))
        .bind(
            login_base
                .map(|base| format!("{base}~"))
                .unwrap_or_default(),
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(storage_error)?;
        student_context_of(&row, login_base.is_some())
    }

    async fn insert_new_student_or_context(
        &mut self,
        account: &AccountRecord,
        record: &StudentRecord,
        base: &str,
        now: i64,
    ) -> Result<NewStudent, StorageError> {
        // One round trip: the context read in a CTE, the account, its login and its record
        // inserted by data-modifying CTEs only when the context leaves the row nothing else to
        // do (no record for the dossier, no account of the same person, the login not among
        // the base's), then the context and whether they were.
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH ctx AS ({}), {}, {NEW_RECORD} \
             SELECT ctx.*, (SELECT COUNT(*) FROM a) AS inserted FROM ctx",
            student_context_sql("$9", "$7", "$15", "$14"),
            new_account(
                "FROM ctx WHERE ctx.dossier_number IS NULL AND cardinality(ctx.same_person) = 0 \
                 AND NOT ($2 = ANY (ctx.logins))"
            ),
        )));
        let row = bind_new_record(bind_new_account(query, account, now), record)
            .bind(format!("{base}~"))
            .bind(base)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(storage_error)?;
        if row.try_get::<i64, _>("inserted").map_err(storage_error)? > 0 {
            return Ok(NewStudent::Inserted);
        }
        student_context_of(&row, true).map(|context| NewStudent::Context(Box::new(context)))
    }

    async fn insert_student_account(
        &mut self,
        account: &AccountRecord,
        record: &StudentRecord,
        now: i64,
    ) -> Result<(), StorageError> {
        // One round trip for the account, its login and its record.
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH {}, {NEW_RECORD} SELECT COUNT(*) FROM a",
            new_account("")
        )));
        bind_new_record(bind_new_account(query, account, now), record)
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn insert_account(
        &mut self,
        account: &AccountRecord,
        now: i64,
    ) -> Result<(), StorageError> {
        // One round trip: an import creates thousands of accounts.
        bind_new_account(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH {} SELECT COUNT(*) FROM a",
                new_account("")
            ))),
            account,
            now,
        )
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn insert_login(
        &mut self,
        login: &str,
        account_id: &str,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query("INSERT INTO logins (login, account_id, created_at) VALUES ($1, $2, $3)")
            .bind(login)
            .bind(account_id)
            .bind(now)
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn update_account_identity(
        &mut self,
        account: &AccountRecord,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE accounts SET login = $1, first_name = $2, last_name = $3, birth_date = $4, \
             person_key = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&account.login)
        .bind(&account.first_name)
        .bind(&account.last_name)
        .bind(&account.birth_date)
        .bind(&account.person_key)
        .bind(now)
        .bind(&account.id)
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn set_account_state(
        &mut self,
        account_id: &str,
        state: AccountState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE accounts SET state = $1, disabled_reason = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(now)
        .bind(account_id)
        .execute(&mut *self.tx)
        .await
        .map_err(storage_error)?;
        // A leaver's sessions end with the import that disables the account (DESIGN.md §3).
        if state == AccountState::Disabled {
            super::sessions::end_account_sessions(&mut self.tx, account_id).await?;
        }
        Ok(())
    }

    async fn upsert_student(
        &mut self,
        record: &StudentRecord,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO student_records (dossier_number, account_id, component, enrolment_year, \
             enrolment_email, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (dossier_number) DO UPDATE SET component = excluded.component, \
             enrolment_year = excluded.enrolment_year, enrolment_email = excluded.enrolment_email, \
             updated_at = excluded.updated_at",
        )
        .bind(&record.dossier_number)
        .bind(&record.account_id)
        .bind(&record.component)
        .bind(record.enrolment_year)
        .bind(&record.enrolment_email)
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn upsert_staff(&mut self, record: &StaffRecord, now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO staff_records (employee_id, account_id, department, role, status, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (employee_id) DO UPDATE SET department = excluded.department, \
             role = excluded.role, status = excluded.status, updated_at = excluded.updated_at",
        )
        .bind(&record.employee_id)
        .bind(&record.account_id)
        .bind(&record.department)
        .bind(&record.role)
        .bind(&record.status)
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        self.tx.commit().await.map_err(storage_error)
    }

    async fn rollback(self: Box<Self>) -> Result<(), StorageError> {
        self.tx.rollback().await.map_err(storage_error)
    }
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn find_account_by_login(
        &self,
        login: &str,
    ) -> Result<Option<AccountRecord>, StorageError> {
        sqlx::query(
            "SELECT a.id, a.login, a.state, a.first_name, a.last_name, a.birth_date, a.person_key \
             FROM logins l JOIN accounts a ON a.id = l.account_id WHERE l.login = $1",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?
        .as_ref()
        .map(account)
        .transpose()
    }

    async fn find_account_by_id(&self, id: &str) -> Result<Option<AccountRecord>, StorageError> {
        account_by_id(&self.pool, id).await
    }

    async fn find_staff_by_employee(
        &self,
        employee_id: &str,
    ) -> Result<Option<StaffRecord>, StorageError> {
        sqlx::query(
            "SELECT employee_id, account_id, department, role, status \
             FROM staff_records WHERE employee_id = $1",
        )
        .bind(employee_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?
        .as_ref()
        .map(staff)
        .transpose()
    }

    async fn find_student_by_dossier(
        &self,
        dossier_number: &str,
    ) -> Result<Option<StudentRecord>, StorageError> {
        student_by_dossier(&self.pool, dossier_number).await
    }

    async fn find_staff_of_account(
        &self,
        account_id: &str,
    ) -> Result<Option<StaffRecord>, StorageError> {
        staff_by_account(&self.pool, account_id).await
    }

    async fn find_account_with_records(
        &self,
        id: &str,
    ) -> Result<Option<AccountWithRecords>, StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WITH_RECORDS_COLUMNS} FROM accounts a {WITH_RECORDS_JOIN} WHERE a.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?
        .map(|row| account_with_records(&row))
        .transpose()
        .map(Option::flatten)
    }

    async fn find_student_of_account(
        &self,
        account_id: &str,
    ) -> Result<Option<StudentRecord>, StorageError> {
        sqlx::query(
            "SELECT dossier_number, account_id, component, enrolment_year, enrolment_email \
             FROM student_records WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?
        .as_ref()
        .map(student)
        .transpose()
    }

    async fn find_password_hash(&self, account_id: &str) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar::<_, Option<String>>("SELECT password_hash FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await
            .map(Option::flatten)
            .map_err(storage_error)
    }

    async fn list_logins(&self, account_id: &str) -> Result<Vec<String>, StorageError> {
        sqlx::query_scalar(
            "SELECT l.login FROM logins l JOIN accounts a ON a.id = l.account_id \
             WHERE l.account_id = $1 ORDER BY (l.login = a.login) DESC, l.created_at, l.login",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)
    }

    async fn count_accounts(&self) -> Result<u64, StorageError> {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await
            .map(|n| n as u64)
            .map_err(storage_error)
    }
}
