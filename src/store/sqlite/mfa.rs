//! Second factors, on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row as _};

use super::SqliteStore;
use crate::accounts::mfa::{FactorSummary, MfaStore, StoredPasskey, StoredTotp};
use crate::storage::StorageError;
use crate::store::storage_error;

/// The counts behind a [`FactorSummary`] of the account `a.id` of the enclosing query.
pub(super) const FACTOR_COUNTS: &str = "(SELECT COUNT(*) FROM mfa_totp WHERE account_id = a.id) AS totp, \
     (SELECT COUNT(*) FROM mfa_passkeys WHERE account_id = a.id AND flagged_at IS NULL) \
     AS passkeys, \
     (SELECT COUNT(*) FROM mfa_recovery_codes WHERE account_id = a.id AND used_at IS NULL) \
     AS codes";

/// The [`FactorSummary`] of a row selecting [`FACTOR_COUNTS`].
pub(super) fn factors_of(row: &SqliteRow) -> Result<FactorSummary, StorageError> {
    Ok(FactorSummary {
        totp: row.try_get::<i64, _>("totp").map_err(storage_error)? > 0,
        passkeys: row.try_get::<i64, _>("passkeys").map_err(storage_error)? as u32,
        recovery_codes: row.try_get::<i64, _>("codes").map_err(storage_error)? as u32,
    })
}

const PASSKEY_COLUMNS: &str = "id, account_id, user_handle, credential_id, name, passkey, \
     created_at, last_used_at, flagged_at";

fn passkey(row: &SqliteRow) -> Result<StoredPasskey, sqlx::Error> {
    Ok(StoredPasskey {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        user_handle: row.try_get("user_handle")?,
        credential_id: row.try_get("credential_id")?,
        name: row.try_get("name")?,
        passkey: row.try_get("passkey")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        flagged_at: row.try_get("flagged_at")?,
    })
}

#[async_trait]
impl MfaStore for SqliteStore {
    async fn factor_summary(&self, account_id: &str) -> Result<FactorSummary, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {FACTOR_COUNTS} FROM (SELECT ?1 AS id) a"
        )))
        .bind(account_id)
        .fetch_one(&self.pool)
        .await
        .map_err(storage_error)?;
        factors_of(&row)
    }

    async fn find_totp(&self, account_id: &str) -> Result<Option<StoredTotp>, StorageError> {
        let row = sqlx::query(
            "SELECT sealed_seed, last_step, created_at, last_used_at FROM mfa_totp \
             WHERE account_id = ?",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.map(|row| {
            Ok(StoredTotp {
                sealed_seed: row.try_get("sealed_seed")?,
                last_step: row.try_get("last_step")?,
                created_at: row.try_get("created_at")?,
                last_used_at: row.try_get("last_used_at")?,
            })
        })
        .transpose()
        .map_err(storage_error)
    }

    async fn put_totp(
        &self,
        account_id: &str,
        sealed_seed: &[u8],
        step: i64,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO mfa_totp (account_id, sealed_seed, last_step, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET \
             sealed_seed = excluded.sealed_seed, last_step = excluded.last_step, \
             created_at = excluded.created_at, last_used_at = NULL",
        )
        .bind(account_id)
        .bind(sealed_seed)
        .bind(step)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(storage_error)?;
        Ok(())
    }

    async fn use_totp_step(
        &self,
        account_id: &str,
        step: i64,
        now: i64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE mfa_totp SET last_step = ?, last_used_at = ? \
             WHERE account_id = ? AND last_step < ?",
        )
        .bind(step)
        .bind(now)
        .bind(account_id)
        .bind(step)
        .execute(&self.writer)
        .await
        .map_err(storage_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_totp(&self, account_id: &str) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM mfa_totp WHERE account_id = ?")
            .bind(account_id)
            .execute(&self.writer)
            .await
            .map_err(storage_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn replace_recovery_codes(
        &self,
        account_id: &str,
        digests: &[[u8; 32]],
        now: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE account_id = ?")
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        for digest in digests {
            sqlx::query(
                "INSERT INTO mfa_recovery_codes (account_id, digest, created_at) VALUES (?, ?, ?)",
            )
            .bind(account_id)
            .bind(digest.as_slice())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        }
        tx.commit().await.map_err(storage_error)
    }

    async fn use_recovery_code(
        &self,
        account_id: &str,
        digest: &[u8],
        now: i64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = ? \
             WHERE account_id = ? AND digest = ? AND used_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .bind(digest)
        .execute(&self.writer)
        .await
        .map_err(storage_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_passkey(&self, passkey: &StoredPasskey) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO mfa_passkeys (id, account_id, user_handle, credential_id, name, passkey, \
             created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&passkey.id)
        .bind(&passkey.account_id)
        .bind(&passkey.user_handle)
        .bind(&passkey.credential_id)
        .bind(&passkey.name)
        .bind(&passkey.passkey)
        .bind(passkey.created_at)
        .execute(&self.writer)
        .await
        .map_err(storage_error)?;
        Ok(())
    }

    async fn list_passkeys(&self, account_id: &str) -> Result<Vec<StoredPasskey>, StorageError> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM mfa_passkeys WHERE account_id = ? \
             ORDER BY created_at, id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&self.pool)
            .await
            .map_err(storage_error)?
            .iter()
            .map(passkey)
            .collect::<Result<_, _>>()
            .map_err(storage_error)
    }

    async fn find_passkey(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<StoredPasskey>, StorageError> {
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM mfa_passkeys WHERE credential_id = ?");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage_error)?
            .as_ref()
            .map(passkey)
            .transpose()
            .map_err(storage_error)
    }

    async fn record_passkey_use(
        &self,
        id: &str,
        passkey: &str,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query("UPDATE mfa_passkeys SET passkey = ?, last_used_at = ? WHERE id = ?")
            .bind(passkey)
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn flag_passkey(&self, credential_id: &[u8], now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE mfa_passkeys SET flagged_at = ? WHERE credential_id = ? AND flagged_at IS NULL",
        )
        .bind(now)
        .bind(credential_id)
        .execute(&self.writer)
        .await
        .map_err(storage_error)?;
        Ok(())
    }

    async fn rename_passkey(
        &self,
        account_id: &str,
        id: &str,
        name: &str,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query("UPDATE mfa_passkeys SET name = ? WHERE account_id = ? AND id = ?")
            .bind(name)
            .bind(account_id)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(storage_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_passkey(&self, account_id: &str, id: &str) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM mfa_passkeys WHERE account_id = ? AND id = ?")
            .bind(account_id)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(storage_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_factors(&self, account_id: &str) -> Result<u64, StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        let mut removed = 0;
        for table in ["mfa_totp", "mfa_passkeys", "mfa_recovery_codes"] {
            let sql = format!("DELETE FROM {table} WHERE account_id = ?");
            removed += sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .execute(&mut *tx)
                .await
                .map_err(storage_error)?
                .rows_affected();
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(removed)
    }
}
