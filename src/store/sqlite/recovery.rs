//! Password resets, on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::accounts::recovery::RecoveryStore;
use crate::mail::OutgoingMail;
use crate::storage::StorageError;
use crate::store::storage_error;

#[async_trait]
impl RecoveryStore for SqliteStore {
    async fn confirmed_emails(&self, account_id: &str) -> Result<Vec<String>, StorageError> {
        sqlx::query_scalar(
            "SELECT value FROM recovery_contacts WHERE account_id = ? AND kind = 'email' \
             AND confirmed_at IS NOT NULL ORDER BY id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)
    }

    async fn replace_password_reset(
        &self,
        account_id: &str,
        digest: &[u8],
        expires_at: i64,
        mails: &[OutgoingMail],
        now: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        // One row per account: a newer link replaces (voids) the older.
        sqlx::query(
            "INSERT INTO password_resets (account_id, digest, expires_at, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET digest = excluded.digest, \
             expires_at = excluded.expires_at, created_at = excluded.created_at",
        )
        .bind(account_id)
        .bind(digest)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        for mail in mails {
            super::mail::insert_mail(&mut *tx, mail, now).await?;
        }
        tx.commit().await.map_err(storage_error)
    }

    async fn find_password_reset(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar(
            "SELECT account_id FROM password_resets WHERE digest = ? AND expires_at > ?",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)
    }

    async fn complete_password_reset(
        &self,
        digest: &[u8],
        password_hash: &str,
        notices: &(dyn for<'a> Fn(&'a str) -> Vec<OutgoingMail> + Send + Sync),
        now: i64,
    ) -> Result<Option<String>, StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        // The delete is the redemption: a link works once.
        let account_id: Option<String> = sqlx::query_scalar(
            "DELETE FROM password_resets WHERE digest = ? AND expires_at > ? RETURNING account_id",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage_error)?;
        let Some(account_id) = account_id else {
            tx.rollback().await.map_err(storage_error)?;
            return Ok(None);
        };
        sqlx::query("UPDATE accounts SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(password_hash)
            .bind(now)
            .bind(&account_id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        let addresses: Vec<String> = sqlx::query_scalar(
            "SELECT value FROM recovery_contacts WHERE account_id = ? AND kind = 'email' \
             AND confirmed_at IS NOT NULL ORDER BY id",
        )
        .bind(&account_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(storage_error)?;
        // Completing a reset ends every session and lifts every lock of the account
        // (DESIGN.md §4, §6).
        super::sessions::end_account_sessions(&mut tx, &account_id).await?;
        super::lockout::lift_account_locks(&mut tx, &account_id).await?;
        for address in &addresses {
            for mail in notices(address) {
                super::mail::insert_mail(&mut *tx, &mail, now).await?;
            }
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(Some(account_id))
    }
}
