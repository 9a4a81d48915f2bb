//! CAS single-logout targets and outbox, on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::cas::logout::{LogoutStatus, LogoutStore, LogoutTarget, PendingLogout};
use crate::storage::StorageError;
use crate::store::storage_error;

fn pending(row: &SqliteRow) -> Result<PendingLogout, StorageError> {
    Ok(PendingLogout {
        id: row.try_get("id").map_err(storage_error)?,
        target: LogoutTarget {
            protocol: crate::store::parse_column(
                &row.try_get::<String, _>("protocol")
                    .map_err(storage_error)?,
            )?,
            session_id: row.try_get("session_id").map_err(storage_error)?,
            account_id: row.try_get("account_id").map_err(storage_error)?,
            service_id: row.try_get("service_id").map_err(storage_error)?,
            url: row.try_get("url").map_err(storage_error)?,
            name_id: row.try_get("name_id").map_err(storage_error)?,
            session_index: row.try_get("session_index").map_err(storage_error)?,
        },
        attempts: i64::from(row.try_get::<i32, _>("attempts").map_err(storage_error)?),
        created_at: row.try_get("created_at").map_err(storage_error)?,
    })
}

#[async_trait]
impl LogoutStore for SqliteStore {
    async fn record_logout_target(
        &self,
        target: &LogoutTarget,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO cas_logout_targets (session_id, service_id, url, name_id, session_index, \
             account_id, created_at, protocol) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (session_id, session_index) DO NOTHING",
        )
        .bind(&target.session_id)
        .bind(&target.service_id)
        .bind(&target.url)
        .bind(&target.name_id)
        .bind(&target.session_index)
        .bind(&target.account_id)
        .bind(now)
        .bind(target.protocol.as_str())
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn claim_due_logouts(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<PendingLogout>, StorageError> {
        // The lease is the next attempt time: another node skips the row until it passes (SQLite
        // has one writer at a time, so the statement itself is the claim).
        sqlx::query(
            "UPDATE cas_logout_outbox SET next_attempt_at = ?1, created_at = COALESCE(created_at, ?2) \
             WHERE id IN (SELECT id FROM cas_logout_outbox \
                 WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?2 \
                 ORDER BY id LIMIT ?3) \
             RETURNING id, protocol, session_id, account_id, service_id, url, name_id, session_index, \
             attempts, created_at",
        )
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await
        .map_err(storage_error)?
        .iter()
        .map(pending)
        .collect()
    }

    async fn mark_logout_delivered(&self, id: i64, now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE cas_logout_outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
        )
        .bind(id)
        .bind(now)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn mark_logout_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE cas_logout_outbox SET attempts = attempts + 1, last_error = ?2, \
             next_attempt_at = COALESCE(?3, next_attempt_at), \
             failed_at = CASE WHEN ?3 IS NULL THEN ?4 ELSE NULL END WHERE id = ?1",
        )
        .bind(id)
        .bind(error.chars().take(500).collect::<String>())
        .bind(retry_at)
        .bind(now)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn list_logouts_of_account(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<LogoutStatus>, StorageError> {
        sqlx::query(
            "SELECT service_id, session_id, attempts, created_at, delivered_at, failed_at, \
             last_error FROM cas_logout_outbox WHERE account_id = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?
        .iter()
        .map(|row| {
            let delivered: Option<i64> = row.try_get("delivered_at").map_err(storage_error)?;
            let failed: Option<i64> = row.try_get("failed_at").map_err(storage_error)?;
            Ok(LogoutStatus {
                service_id: row.try_get("service_id").map_err(storage_error)?,
                session_id: row.try_get("session_id").map_err(storage_error)?,
                state: match (delivered, failed) {
                    (Some(_), _) => "delivered",
                    (None, Some(_)) => "failed",
                    _ => "pending",
                },
                attempts: i64::from(row.try_get::<i32, _>("attempts").map_err(storage_error)?),
                queued_at: row.try_get("created_at").map_err(storage_error)?,
                finished_at: delivered.or(failed),
                last_error: row.try_get("last_error").map_err(storage_error)?,
            })
        })
        .collect()
    }

    async fn purge_finished_logouts(&self, before: i64) -> Result<u64, StorageError> {
        sqlx::query("DELETE FROM cas_logout_outbox WHERE COALESCE(delivered_at, failed_at) < ?1")
            .bind(before)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected())
            .map_err(storage_error)
    }
}
