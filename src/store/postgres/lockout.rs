//! Lockout counters, on PostgreSQL.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use crate::accounts::lockout::{FailureCounter, LockoutPolicy, LockoutStore};
use crate::storage::StorageError;
use crate::store::{lockout_sql, storage_error};

const COLUMNS: &str = "failures, locked_until, hard_locked_at, refused, known, last_failure_at";

/// Reads a counter from a row selecting [`COLUMNS`].
pub(super) fn counter(row: &PgRow) -> Result<FailureCounter, StorageError> {
    Ok(FailureCounter {
        failures: row.try_get("failures").map_err(storage_error)?,
        locked_until: row.try_get("locked_until").map_err(storage_error)?,
        hard_locked_at: row.try_get("hard_locked_at").map_err(storage_error)?,
        refused: row.try_get("refused").map_err(storage_error)?,
        known: row.try_get::<i32, _>("known").map_err(storage_error)? != 0,
        last_failure_at: row.try_get("last_failure_at").map_err(storage_error)?,
    })
}

/// Lifts the locks of every login of an account inside the caller's transaction (a completed
/// password reset, DESIGN.md §6).
pub(super) async fn lift_account_locks(
    conn: &mut sqlx::PgConnection,
    account_id: &str,
) -> Result<(), StorageError> {
    sqlx::query(
        "DELETE FROM failure_counters WHERE identifier IN \
         (SELECT login FROM logins WHERE account_id = $1)",
    )
    .bind(account_id)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(storage_error)
}

/// The counting upsert of one attempt ([`lockout_sql::count_statement`]) for the counter
/// `identifier` and the flag `known` (SQL expressions), returning [`COLUMNS`]; `$3`–`$8` are
/// [`bind_count`]'s.
pub(super) fn count_statement(identifier: &str, known: &str) -> String {
    lockout_sql::count_statement(&lockout_sql::POSTGRES, identifier, known, COLUMNS)
}

/// Binds `$3`–`$8` of [`count_statement`]: the attempt's instant and the policy.
pub(super) fn bind_count<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    now: i64,
    policy: &LockoutPolicy,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let (first_lock, longest) = policy.lock_bounds();
    query
        .bind(now)
        .bind(policy.max_login_failures)
        .bind(first_lock)
        .bind(longest)
        .bind(policy.permanent_lockout_after)
        .bind(now - policy.failure_reset_time.as_secs() as i64)
}

#[async_trait]
impl LockoutStore for PostgresStore {
    async fn find_failure_counter(
        &self,
        identifier: &str,
    ) -> Result<Option<FailureCounter>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM failure_counters WHERE identifier = $1"
        )))
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.as_ref().map(counter).transpose()
    }

    async fn count_attempt(
        &self,
        identifier: &str,
        known: bool,
        now: i64,
        policy: &LockoutPolicy,
    ) -> Result<Option<FailureCounter>, StorageError> {
        let query = sqlx::query(AssertSqlSafe(count_statement("$1", "$2")))
            .bind(identifier)
            .bind(i32::from(known));
        let row = bind_count(query, now, policy)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage_error)?;
        row.as_ref().map(counter).transpose()
    }

    async fn refund_attempt(&self, identifier: &str) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE failure_counters SET failures = failures - 1 \
             WHERE identifier = $1 AND failures > 0",
        )
        .bind(identifier)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn count_refused(
        &self,
        identifier: &str,
    ) -> Result<Option<FailureCounter>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE failure_counters SET refused = refused + 1 WHERE identifier = $1 \
             RETURNING {COLUMNS}"
        )))
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.as_ref().map(counter).transpose()
    }

    async fn delete_failure_counter(&self, identifier: &str) -> Result<bool, StorageError> {
        sqlx::query("DELETE FROM failure_counters WHERE identifier = $1")
            .bind(identifier)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(storage_error)
    }

    async fn purge_unknown_failure_counters(&self, before: i64) -> Result<u64, StorageError> {
        sqlx::query(
            "DELETE FROM failure_counters WHERE known = 0 AND hard_locked_at IS NULL \
             AND last_failure_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(storage_error)
    }
}
