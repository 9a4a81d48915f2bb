//! Lockout counters, on SQLite.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::group::Batch;
use crate::accounts::lockout::{FailureCounter, LockoutPolicy, LockoutStore};
use crate::storage::StorageError;
use crate::store::storage_error;

const COLUMNS: &str = "failures, locked_until, hard_locked_at, refused, known, last_failure_at";

pub(super) fn counter(row: &SqliteRow) -> Result<FailureCounter, StorageError> {
    Ok(FailureCounter {
        failures: row.try_get("failures").map_err(storage_error)?,
        locked_until: row.try_get("locked_until").map_err(storage_error)?,
        hard_locked_at: row.try_get("hard_locked_at").map_err(storage_error)?,
        refused: row.try_get("refused").map_err(storage_error)?,
        known: row.try_get::<i64, _>("known").map_err(storage_error)? != 0,
        last_failure_at: row.try_get("last_failure_at").map_err(storage_error)?,
    })
}

/// Lifts the locks of every login of an account inside the caller's transaction (a completed
/// password reset, DESIGN.md §6).
pub(super) async fn lift_account_locks(
    conn: &mut sqlx::SqliteConnection,
    account_id: &str,
) -> Result<(), StorageError> {
    sqlx::query(
        "DELETE FROM failure_counters WHERE identifier IN \
         (SELECT login FROM logins WHERE account_id = ?)",
    )
    .bind(account_id)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(storage_error)
}

/// The counting upsert of one attempt (DESIGN.md §6), for the identifier and the "known" flag
/// given as SQL expressions (parameters, or subqueries of a batch), its other parameters `$3` to
/// `$8` bound by [`bind_count`]. One statement: the lock test, the count and the new lock cannot
/// be separated by a concurrent attempt on any node. The `WHERE` of the upsert refuses a locked
/// identifier; all right-hand sides read the row as it was before this attempt. A counter whose
/// last failure is older than the reset time counts from zero again, for real and unknown
/// identifiers alike (otherwise an old count would tell a real account from an unknown one,
/// whose counter is purged); never a hard lock, never during a lock (the `WHERE` refuses those
/// first). Parameters are written `$N` so that the statement can follow another in a batch.
pub(super) fn count_statement(identifier: &str, known: &str) -> String {
    let stale = "failure_counters.last_failure_at < $8";
    let failures = format!("(CASE WHEN {stale} THEN 0 ELSE failure_counters.failures END)");
    let lock = format!("(CASE WHEN {stale} THEN 0 ELSE failure_counters.lock_seconds END)");
    let until = format!("(CASE WHEN {stale} THEN NULL ELSE failure_counters.locked_until END)");
    format!(
        "INSERT INTO failure_counters \
           (identifier, failures, known, last_failure_at, lock_seconds, locked_until, hard_locked_at) \
         VALUES ({identifier}, 1, {known}, $3, \
           CASE WHEN 1 >= $4 THEN $5 ELSE 0 END, \
           CASE WHEN 1 >= $4 THEN $3 + $5 END, \
           CASE WHEN 1 >= $7 THEN $3 END) \
         ON CONFLICT (identifier) DO UPDATE SET \
           failures = {failures} + 1, \
           known = MAX(failure_counters.known, excluded.known), \
           last_failure_at = excluded.last_failure_at, \
           lock_seconds = CASE \
             WHEN {failures} + 1 < $4 THEN 0 \
             WHEN {lock} = 0 THEN $5 \
             ELSE MIN({lock} * 2, $6) END, \
           locked_until = CASE \
             WHEN {failures} + 1 < $4 THEN {until} \
             WHEN {lock} = 0 THEN $3 + $5 \
             ELSE $3 + MIN({lock} * 2, $6) END, \
           hard_locked_at = CASE WHEN {failures} + 1 >= $7 THEN $3 \
             ELSE failure_counters.hard_locked_at END \
         WHERE failure_counters.hard_locked_at IS NULL \
           AND (failure_counters.locked_until IS NULL OR failure_counters.locked_until <= $3) \
         RETURNING {COLUMNS}"
    )
}

/// Binds `$3` to `$8` of [`count_statement`], after its first two parameters.
pub(super) fn bind_count(query: Batch, now: i64, policy: &LockoutPolicy) -> Batch {
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
impl LockoutStore for SqliteStore {
    async fn find_failure_counter(
        &self,
        identifier: &str,
    ) -> Result<Option<FailureCounter>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM failure_counters WHERE identifier = ?"
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
        // One statement (DESIGN.md §6): a job of the group commit.
        let identifier = identifier.to_string();
        let policy = *policy;
        let row = self
            .grouped(move |conn| {
                Box::pin(async move {
                    let sql = count_statement("$1", "$2");
                    let query = sqlx::query(AssertSqlSafe(sql))
                        .bind(identifier)
                        .bind(i32::from(known));
                    bind_count(query, now, &policy)
                        .fetch_optional(conn)
                        .await
                        .map_err(storage_error)
                })
            })
            .await?;
        row.as_ref().map(counter).transpose()
    }

    async fn refund_attempt(&self, identifier: &str) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE failure_counters SET failures = failures - 1 \
             WHERE identifier = ? AND failures > 0",
        )
        .bind(identifier)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn count_refused(
        &self,
        identifier: &str,
    ) -> Result<Option<FailureCounter>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE failure_counters SET refused = refused + 1 WHERE identifier = ? \
             RETURNING {COLUMNS}"
        )))
        .bind(identifier)
        .fetch_optional(&self.writer)
        .await
        .map_err(storage_error)?;
        row.as_ref().map(counter).transpose()
    }

    async fn delete_failure_counter(&self, identifier: &str) -> Result<bool, StorageError> {
        sqlx::query("DELETE FROM failure_counters WHERE identifier = ?")
            .bind(identifier)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(storage_error)
    }

    async fn purge_unknown_failure_counters(&self, before: i64) -> Result<u64, StorageError> {
        sqlx::query(
            "DELETE FROM failure_counters WHERE known = 0 AND hard_locked_at IS NULL \
             AND last_failure_at < ?",
        )
        .bind(before)
        .execute(&self.writer)
        .await
        .map(|r| r.rows_affected())
        .map_err(storage_error)
    }
}
