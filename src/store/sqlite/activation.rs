//! Activation, staff codes and recovery contacts, on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::accounts::activation::{ActivationRow, ActivationStore, NewContact};
use crate::locale::Locale;
use crate::mail::OutgoingMail;
use crate::storage::StorageError;
use crate::store::storage_error;

fn activation(row: &SqliteRow) -> Result<ActivationRow, StorageError> {
    let locale: String = row.try_get("locale").map_err(storage_error)?;
    Ok(ActivationRow {
        digest: row.try_get("digest").map_err(storage_error)?,
        account_id: row.try_get("account_id").map_err(storage_error)?,
        dossier_number: row.try_get("dossier_number").map_err(storage_error)?,
        locale: Locale::from_tag(&locale).unwrap_or_default(),
        email: row.try_get("email").map_err(storage_error)?,
        phone: row.try_get("phone").map_err(storage_error)?,
        code_digest: row.try_get("code_digest").map_err(storage_error)?,
        code_expires_at: row.try_get("code_expires_at").map_err(storage_error)?,
        code_attempts: row.try_get("code_attempts").map_err(storage_error)?,
        email_confirmed_at: row.try_get("email_confirmed_at").map_err(storage_error)?,
        expires_at: row.try_get("expires_at").map_err(storage_error)?,
    })
}

#[async_trait]
impl ActivationStore for SqliteStore {
    async fn is_dossier_locked(&self, dossier_number: &str) -> Result<bool, StorageError> {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM activation_failures WHERE dossier_number = ? AND locked_at IS NOT NULL",
        )
        .bind(dossier_number)
        .fetch_one(&self.pool)
        .await
        .map(|n| n > 0)
        .map_err(storage_error)
    }

    async fn record_dossier_failure(
        &self,
        dossier_number: &str,
        max: i64,
        now: i64,
    ) -> Result<i64, StorageError> {
        // One statement: concurrent failures are all counted (DESIGN.md §6).
        sqlx::query_scalar(
            "INSERT INTO activation_failures (dossier_number, failures, locked_at, updated_at) \
             VALUES (?1, 1, CASE WHEN 1 >= ?2 THEN ?3 END, ?3) \
             ON CONFLICT (dossier_number) DO UPDATE SET failures = failures + 1, \
             locked_at = COALESCE(locked_at, CASE WHEN failures + 1 >= ?2 THEN ?3 END), \
             updated_at = ?3 RETURNING failures",
        )
        .bind(dossier_number)
        .bind(max)
        .bind(now)
        .fetch_one(&self.writer)
        .await
        .map_err(storage_error)
    }

    async fn unlock_dossier(&self, dossier_number: &str) -> Result<bool, StorageError> {
        sqlx::query("DELETE FROM activation_failures WHERE dossier_number = ?")
            .bind(dossier_number)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(storage_error)
    }

    async fn replace_staff_code(
        &self,
        account_id: &str,
        code_digest: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO staff_activation_codes (account_id, code_digest, expires_at, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET \
             code_digest = excluded.code_digest, expires_at = excluded.expires_at, \
             created_at = excluded.created_at",
        )
        .bind(account_id)
        .bind(code_digest)
        .bind(expires_at)
        .bind(now)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn redeem_staff_code(
        &self,
        code_digest: &[u8],
        now: i64,
    ) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar(
            "DELETE FROM staff_activation_codes WHERE code_digest = ? AND expires_at > ? \
             RETURNING account_id",
        )
        .bind(code_digest)
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(storage_error)
    }

    async fn insert_activation(&self, row: &ActivationRow, now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO activations (digest, account_id, dossier_number, locale, created_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.digest)
        .bind(&row.account_id)
        .bind(&row.dossier_number)
        .bind(row.locale.tag())
        .bind(now)
        .bind(row.expires_at)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn find_activation(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<ActivationRow>, StorageError> {
        sqlx::query(
            "SELECT digest, account_id, dossier_number, locale, email, phone, code_digest, \
             code_expires_at, code_attempts, email_confirmed_at, expires_at \
             FROM activations WHERE digest = ? AND expires_at > ?",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?
        .as_ref()
        .map(activation)
        .transpose()
    }

    async fn set_activation_contact(
        &self,
        digest: &[u8],
        email: &str,
        phone: &str,
        code_digest: &[u8],
        code_expires_at: i64,
        mails: &[OutgoingMail],
        now: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        sqlx::query(
            "UPDATE activations SET email = ?, phone = ?, code_digest = ?, code_expires_at = ?, \
             code_attempts = 0, email_confirmed_at = NULL WHERE digest = ?",
        )
        .bind(email)
        .bind(phone)
        .bind(code_digest)
        .bind(code_expires_at)
        .bind(digest)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        // The mails are queued in the same transaction: no code without its mail, and the
        // reverse (DESIGN.md §4).
        for mail in mails {
            super::mail::insert_mail(&mut *tx, mail, now).await?;
        }
        tx.commit().await.map_err(storage_error)
    }

    async fn record_code_attempt(&self, digest: &[u8]) -> Result<i64, StorageError> {
        sqlx::query_scalar(
            "UPDATE activations SET code_attempts = code_attempts + 1 WHERE digest = ? \
             RETURNING code_attempts",
        )
        .bind(digest)
        .fetch_optional(&self.writer)
        .await
        .map(|n| n.unwrap_or(i64::MAX))
        .map_err(storage_error)
    }

    async fn confirm_activation_email(&self, digest: &[u8], now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE activations SET email_confirmed_at = ?, code_digest = NULL WHERE digest = ?",
        )
        .bind(now)
        .bind(digest)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn complete_activation(
        &self,
        account_id: &str,
        password_hash: &str,
        contacts: &[NewContact],
        now: i64,
    ) -> Result<bool, StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        let updated = sqlx::query(
            "UPDATE accounts SET state = 'active', password_hash = ?, activated_at = ?, \
             updated_at = ? WHERE id = ? AND state = 'pending'",
        )
        .bind(password_hash)
        .bind(now)
        .bind(now)
        .bind(account_id)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?
        .rows_affected();
        if updated != 1 {
            tx.rollback().await.map_err(storage_error)?;
            return Ok(false);
        }
        for contact in contacts {
            sqlx::query(
                "INSERT INTO recovery_contacts (account_id, kind, value, confirmed_at, created_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, kind, value) DO NOTHING",
            )
            .bind(account_id)
            .bind(contact.kind)
            .bind(&contact.value)
            .bind(contact.confirmed.then_some(now))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        }
        sqlx::query("DELETE FROM activations WHERE account_id = ?")
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        sqlx::query(
            "DELETE FROM activation_failures WHERE dossier_number IN \
             (SELECT dossier_number FROM student_records WHERE account_id = ?)",
        )
        .bind(account_id)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        Ok(true)
    }

    async fn list_contacts(&self, account_id: &str) -> Result<Vec<(String, String)>, StorageError> {
        sqlx::query("SELECT kind, value FROM recovery_contacts WHERE account_id = ? ORDER BY id")
            .bind(account_id)
            .fetch_all(&self.writer)
            .await
            .map_err(storage_error)?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("kind").map_err(storage_error)?,
                    row.try_get("value").map_err(storage_error)?,
                ))
            })
            .collect()
    }
}

#[async_trait]
impl crate::accounts::AccountSecretsPurge for SqliteStore {
    async fn purge_expired_account_secrets(&self, now: i64) -> Result<u64, StorageError> {
        let mut purged = 0;
        for statement in [
            "DELETE FROM activations WHERE expires_at <= ?",
            "DELETE FROM staff_activation_codes WHERE expires_at <= ?",
            "DELETE FROM password_resets WHERE expires_at <= ?",
        ] {
            purged += sqlx::query(statement)
                .bind(now)
                .execute(&self.writer)
                .await
                .map_err(storage_error)?
                .rows_affected();
        }
        Ok(purged)
    }
}
