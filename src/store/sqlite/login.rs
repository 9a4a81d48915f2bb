//! Login and the helpdesk's account reads and writes, on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;

use super::SqliteStore;
use crate::accounts::{AccountActivity, AccountAdminStore, AccountState, Contact};
use crate::login::LoginStore;
use crate::storage::StorageError;
use crate::store::storage_error;

#[async_trait]
impl LoginStore for SqliteStore {
    async fn upgrade_password_hash(
        &self,
        account_id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StorageError> {
        sqlx::query("UPDATE accounts SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2")
            .bind(account_id)
            .bind(old)
            .bind(new)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(storage_error)
    }

    async fn record_login(
        &self,
        account_id: &str,
        now: i64,
        from: Option<&str>,
    ) -> Result<(), StorageError> {
        let (account_id, from) = (account_id.to_string(), from.map(str::to_string));
        self.grouped(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE accounts SET last_login_at = ?2, last_login_from = ?3 WHERE id = ?1",
                )
                .bind(account_id)
                .bind(now)
                .bind(from)
                .execute(conn)
                .await
                .map(|_| ())
                .map_err(storage_error)
            })
        })
        .await
    }
}

#[async_trait]
impl AccountAdminStore for SqliteStore {
    async fn find_account_activity(
        &self,
        account_id: &str,
    ) -> Result<Option<AccountActivity>, StorageError> {
        let row = sqlx::query(
            "SELECT activated_at, last_login_at, last_login_from, disabled_reason, \
             password_hash IS NOT NULL AS has_password FROM accounts WHERE id = ?1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.map(|row| {
            Ok(AccountActivity {
                activated_at: row.try_get("activated_at").map_err(storage_error)?,
                last_login_at: row.try_get("last_login_at").map_err(storage_error)?,
                last_login_from: row.try_get("last_login_from").map_err(storage_error)?,
                disabled_reason: row.try_get("disabled_reason").map_err(storage_error)?,
                has_password: row.try_get("has_password").map_err(storage_error)?,
            })
        })
        .transpose()
    }

    async fn list_recovery_contacts(&self, account_id: &str) -> Result<Vec<Contact>, StorageError> {
        sqlx::query(
            "SELECT kind, value, confirmed_at IS NOT NULL AS confirmed FROM recovery_contacts \
             WHERE account_id = ?1 ORDER BY kind, id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?
        .iter()
        .map(|row| {
            Ok(Contact {
                kind: row.try_get("kind").map_err(storage_error)?,
                value: row.try_get("value").map_err(storage_error)?,
                confirmed: row.try_get("confirmed").map_err(storage_error)?,
            })
        })
        .collect()
    }

    async fn replace_recovery_contact(
        &self,
        account_id: &str,
        kind: &str,
        value: &str,
        now: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        sqlx::query("DELETE FROM recovery_contacts WHERE account_id = ?1 AND kind = ?2")
            .bind(account_id)
            .bind(kind)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        sqlx::query(
            "INSERT INTO recovery_contacts (account_id, kind, value, confirmed_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?4)",
        )
        .bind(account_id)
        .bind(kind)
        .bind(value)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)
    }

    async fn change_account_state(
        &self,
        account_id: &str,
        state: AccountState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<u64, StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        sqlx::query(
            "UPDATE accounts SET state = ?2, disabled_reason = ?3, updated_at = ?4 WHERE id = ?1",
        )
        .bind(account_id)
        .bind(state.as_str())
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        let ended = if state == AccountState::Disabled {
            super::sessions::end_account_sessions(&mut tx, account_id).await?
        } else {
            0
        };
        tx.commit().await.map_err(storage_error)?;
        Ok(ended)
    }
}
