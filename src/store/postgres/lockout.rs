//! Lockout counters, on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row as _;

use super::PostgresStore;
use crate::accounts::lockout::{FailureCounter, LockoutStore};
use crate::storage::StorageError;
use crate::store::storage_error;

#[async_trait]
impl LockoutStore for PostgresStore {
    async fn find_failure_counter(
        &self,
        identifier: &str,
    ) -> Result<Option<FailureCounter>, StorageError> {
        let row = sqlx::query(
            "SELECT failures, locked_until, hard_locked_at FROM failure_counters \
             WHERE identifier = $1",
        )
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.map(|row| {
            Ok(FailureCounter {
                failures: row.try_get("failures").map_err(storage_error)?,
                locked_until: row.try_get("locked_until").map_err(storage_error)?,
                hard_locked_at: row.try_get("hard_locked_at").map_err(storage_error)?,
            })
        })
        .transpose()
    }

    async fn increment_failures(
        &self,
        identifier: &str,
        known: bool,
        now: i64,
    ) -> Result<i64, StorageError> {
        // One statement: concurrent failures on any node all count (DESIGN.md §6).
        sqlx::query_scalar(
            "INSERT INTO failure_counters (identifier, failures, known, last_failure_at) \
             VALUES ($1, 1, $2, $3) ON CONFLICT (identifier) DO UPDATE SET \
             failures = failure_counters.failures + 1, \
             known = GREATEST(failure_counters.known, excluded.known), \
             last_failure_at = excluded.last_failure_at RETURNING failures",
        )
        .bind(identifier)
        .bind(i32::from(known))
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(storage_error)
    }

    async fn extend_lock(
        &self,
        identifier: &str,
        locked_until: Option<i64>,
        hard: bool,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE failure_counters SET \
             locked_until = GREATEST(COALESCE(locked_until, 0), COALESCE($2::bigint, 0)), \
             hard_locked_at = CASE WHEN $3 THEN COALESCE(hard_locked_at, $4) ELSE hard_locked_at END \
             WHERE identifier = $1",
        )
        .bind(identifier)
        .bind(locked_until)
        .bind(hard)
        .bind(now)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(storage_error)
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
