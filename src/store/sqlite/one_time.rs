//! One-time values, on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::one_time::OneTimeStore;
use crate::storage::StorageError;
use crate::store::storage_error;

#[async_trait]
impl OneTimeStore for SqliteStore {
    async fn insert_one_time_value(
        &self,
        purpose: &str,
        digest: &[u8],
        payload: &str,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO one_time_values (purpose, digest, payload, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(purpose)
        .bind(digest)
        .bind(payload)
        .bind(expires_at)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn redeem_one_time_value(
        &self,
        purpose: &str,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<String>, StorageError> {
        // One statement: the delete is the redemption, so two redeemers cannot both succeed.
        sqlx::query_scalar(
            "DELETE FROM one_time_values WHERE purpose = ? AND digest = ? AND expires_at > ? \
             RETURNING payload",
        )
        .bind(purpose)
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(storage_error)
    }

    async fn find_one_time_value(
        &self,
        purpose: &str,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar(
            "SELECT payload FROM one_time_values WHERE purpose = ? AND digest = ? \
             AND expires_at > ?",
        )
        .bind(purpose)
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)
    }

    async fn purge_expired_one_time_values(&self, now: i64) -> Result<u64, StorageError> {
        sqlx::query("DELETE FROM one_time_values WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected())
            .map_err(storage_error)
    }
}
