//! Signing keys and the master key fingerprint, on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::keys::{KeyStore, StoredSigningKey};
use crate::storage::StorageError;
use crate::store::{parse_column, storage_error};

fn signing_key(row: &SqliteRow) -> Result<StoredSigningKey, StorageError> {
    Ok(StoredSigningKey {
        kid: row.try_get("kid").map_err(storage_error)?,
        algorithm: parse_column(
            &row.try_get::<String, _>("algorithm")
                .map_err(storage_error)?,
        )?,
        state: parse_column(&row.try_get::<String, _>("state").map_err(storage_error)?)?,
        private_key_sealed: row.try_get("private_key_sealed").map_err(storage_error)?,
        public_key_der: row.try_get("public_key_der").map_err(storage_error)?,
        created_at: row.try_get("created_at").map_err(storage_error)?,
        activated_at: row.try_get("activated_at").map_err(storage_error)?,
        retired_at: row.try_get("retired_at").map_err(storage_error)?,
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn find_master_key_fingerprint(&self) -> Result<Option<Vec<u8>>, StorageError> {
        sqlx::query_scalar("SELECT fingerprint FROM master_key WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(storage_error)
    }

    async fn insert_master_key_fingerprint(
        &self,
        fingerprint: &[u8],
        at: i64,
    ) -> Result<(), StorageError> {
        sqlx::query("INSERT INTO master_key (id, fingerprint, created_at) VALUES (1, ?, ?)")
            .bind(fingerprint)
            .bind(at)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn list_signing_keys(&self) -> Result<Vec<StoredSigningKey>, StorageError> {
        sqlx::query(
            "SELECT kid, algorithm, state, private_key_sealed, public_key_der, created_at, \
             activated_at, retired_at FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?
        .iter()
        .map(signing_key)
        .collect()
    }

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, state, private_key_sealed, public_key_der, \
             created_at, activated_at, retired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.kid)
        .bind(key.algorithm.as_str())
        .bind(key.state.as_str())
        .bind(&key.private_key_sealed)
        .bind(&key.public_key_der)
        .bind(key.created_at)
        .bind(key.activated_at)
        .bind(key.retired_at)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn promote_signing_key(&self, kid: &str, at: i64) -> Result<bool, StorageError> {
        // BEGIN IMMEDIATE takes the write lock up front, so two nodes cannot interleave.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        let algorithm: Option<String> = sqlx::query_scalar(
            "SELECT algorithm FROM signing_keys WHERE kid = ? AND state = 'next'",
        )
        .bind(kid)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage_error)?;
        let Some(algorithm) = algorithm else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE signing_keys SET state = 'retired', retired_at = ? \
             WHERE algorithm = ? AND state = 'current'",
        )
        .bind(at)
        .bind(&algorithm)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        sqlx::query(
            "UPDATE signing_keys SET state = 'current', activated_at = ? \
             WHERE kid = ? AND state = 'next'",
        )
        .bind(at)
        .bind(kid)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        Ok(true)
    }

    async fn delete_signing_keys_retired_before(
        &self,
        cutoff: i64,
    ) -> Result<Vec<String>, StorageError> {
        sqlx::query_scalar(
            "DELETE FROM signing_keys WHERE state = 'retired' AND retired_at < ? RETURNING kid",
        )
        .bind(cutoff)
        .fetch_all(&self.writer)
        .await
        .map_err(storage_error)
    }
}
