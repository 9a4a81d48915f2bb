//! Activation, staff codes and recovery contacts, on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use crate::accounts::activation::{ActivationRow, ActivationStore, NewContact};
use crate::locale::Locale;
use crate::mail::OutgoingMail;
use crate::storage::StorageError;
use crate::store::storage_error;

fn activation(row: &PgRow) -> Result<ActivationRow, StorageError> {
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
        code_attempts: row
            .try_get::<i32, _>("code_attempts")
            .map(i64::from)
            .map_err(storage_error)?,
        email_confirmed_at: row.try_get("email_confirmed_at").map_err(storage_error)?,
        expires_at: row.try_get("expires_at").map_err(storage_error)?,
    })
}

#[async_trait]
impl ActivationStore for PostgresStore {
    async fn is_dossier_locked(&self, dossier_number: &str) -> Result<bool, StorageError> {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM activation_failures WHERE dossier_number = $1 AND locked_at IS NOT NULL",
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
        sqlx::query_scalar::<_, i32>(
            "INSERT INTO activation_failures (dossier_number, failures, locked_at, updated_at) \
             VALUES ($1, 1, CASE WHEN 1 >= $2::bigint THEN $3::bigint END, $3) \
             ON CONFLICT (dossier_number) DO UPDATE SET failures = activation_failures.failures + 1, \
             locked_at = COALESCE(activation_failures.locked_at, \
             CASE WHEN activation_failures.failures + 1 >= $2::bigint THEN $3::bigint END), \
             updated_at = $3 RETURNING failures",
        )
        .bind(dossier_number)
        .bind(max)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map(i64::from)
        .map_err(storage_error)
    }

    async fn unlock_dossier(&self, dossier_number: &str) -> Result<bool, StorageError> {
        sqlx::query("DELETE FROM activation_failures WHERE dossier_number = $1")
            .bind(dossier_number)
            .execute(&self.pool)
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
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE SET \
             code_digest = excluded.code_digest, expires_at = excluded.expires_at, \
             created_at = excluded.created_at",
        )
        .bind(account_id)
        .bind(code_digest)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
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
            "DELETE FROM staff_activation_codes WHERE code_digest = $1 AND expires_at > $2 \
             RETURNING account_id",
        )
        .bind(code_digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)
    }

    async fn insert_activation(&self, row: &ActivationRow, now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO activations (digest, account_id, dossier_number, locale, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.digest)
        .bind(&row.account_id)
        .bind(&row.dossier_number)
        .bind(row.locale.tag())
        .bind(now)
        .bind(row.expires_at)
        .execute(&self.pool)
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
             FROM activations WHERE digest = $1 AND expires_at > $2",
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
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        sqlx::query(
            "UPDATE activations SET email = $1, phone = $2, code_digest = $3, code_expires_at = $4, \
             code_attempts = 0, email_confirmed_at = NULL WHERE digest = $5",
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
        sqlx::query_scalar::<_, i32>(
            "UPDATE activations SET code_attempts = code_attempts + 1 WHERE digest = $1 \
             RETURNING code_attempts",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map(|n| n.map_or(i64::MAX, i64::from))
        .map_err(storage_error)
    }

    async fn confirm_activation_email(&self, digest: &[u8], now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE activations SET email_confirmed_at = $1, code_digest = NULL WHERE digest = $2",
        )
        .bind(now)
        .bind(digest)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        let updated = sqlx::query(
            "UPDATE accounts SET state = 'active', password_hash = $1, activated_at = $2, \
             updated_at = $3 WHERE id = $4 AND state = 'pending'",
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
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, kind, value) DO NOTHING",
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
        sqlx::query("DELETE FROM activations WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        sqlx::query(
            "DELETE FROM activation_failures WHERE dossier_number IN \
             (SELECT dossier_number FROM student_records WHERE account_id = $1)",
        )
        .bind(account_id)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        Ok(true)
    }

    async fn list_contacts(&self, account_id: &str) -> Result<Vec<(String, String)>, StorageError> {
        sqlx::query("SELECT kind, value FROM recovery_contacts WHERE account_id = $1 ORDER BY id")
            .bind(account_id)
            .fetch_all(&self.pool)
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
impl crate::accounts::AccountSecretsPurge for PostgresStore {
    async fn purge_expired_account_secrets(&self, now: i64) -> Result<u64, StorageError> {
        let mut purged = 0;
        for statement in [
            "DELETE FROM activations WHERE expires_at <= $1",
            "DELETE FROM staff_activation_codes WHERE expires_at <= $1",
            "DELETE FROM password_resets WHERE expires_at <= $1",
        ] {
            purged += sqlx::query(statement)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(storage_error)?
                .rows_affected();
        }
        Ok(purged)
    }
}
