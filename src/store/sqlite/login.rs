//! Login and the helpdesk's account reads and writes, on SQLite.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Row as _};

use super::SqliteStore;
use super::accounts::account;
use super::group::Statements;
use super::mfa::{FACTOR_COUNTS, factors_of};
use crate::accounts::lockout::{LockoutPolicy, LockoutStore};
use crate::accounts::{AccountActivity, AccountAdminStore, AccountState, Contact};
use crate::login::{CountedCandidate, LoginCandidate, LoginStore, SuccessfulLogin};
use crate::storage::StorageError;
use crate::store::storage_error;

#[async_trait]
impl LoginStore for SqliteStore {
    async fn find_candidate_counting(
        &self,
        login: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> Result<CountedCandidate, StorageError> {
        // Two steps here: the read on a reader, the count on the writer (SQLite has no
        // round trip to save).
        let candidate = self.find_login_candidate(login).await?;
        let key = candidate
            .as_ref()
            .map_or(login, |c| c.account.login.as_str());
        let counted =
            LockoutStore::count_attempt(self, key, candidate.is_some(), now, policy).await?;
        Ok(CountedCandidate { candidate, counted })
    }

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

    async fn find_login_candidate(
        &self,
        login: &str,
    ) -> Result<Option<LoginCandidate>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT a.id, a.login, a.state, a.first_name, a.last_name, a.birth_date, \
             a.person_key, a.password_hash, {FACTOR_COUNTS} \
             FROM logins l JOIN accounts a ON a.id = l.account_id WHERE l.login = ?1"
        )))
        .bind(login)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.map(|row| {
            Ok(LoginCandidate {
                account: account(&row)?,
                password_hash: row.try_get("password_hash").map_err(storage_error)?,
                factors: factors_of(&row)?,
            })
        })
        .transpose()
    }

    async fn record_successful_login(
        &self,
        login: &SuccessfulLogin<'_>,
    ) -> Result<(), StorageError> {
        let (s, event) = (login.session.clone(), login.event.clone());
        let digest = login.digest.to_vec();
        let clear_counter = login.clear_counter.map(str::to_string);
        let from = login.from.map(str::to_string);
        // One job of the group commit, in the group's transaction, in two messages to the
        // writer's thread: the session (refused once the account is no longer active: then
        // only the counter is forgotten, the password was right), then the last login noted,
        // the counter forgotten and the event, in one batch. Should that batch fail part way,
        // what it wrote before stays in the group's transaction (a noted login, a forgotten
        // counter), and the caller gets the error.
        let inserted = self
            .group
            .write(&self.writer, Statements::Several, move |conn| {
                Box::pin(async move {
                    match super::sessions::insert_session_row(&mut *conn, &s, &digest).await {
                        Err(StorageError::Conflict) => {
                            if let Some(identifier) = clear_counter {
                                sqlx::query("DELETE FROM failure_counters WHERE identifier = ?1")
                                    .bind(identifier)
                                    .execute(&mut *conn)
                                    .await
                                    .map_err(storage_error)?;
                            }
                            return Ok(false);
                        }
                        other => other?,
                    }
                    let mut sql = String::from(
                        "UPDATE accounts SET last_login_at = ?2, last_login_from = ?3 \
                         WHERE id = ?1; ",
                    );
                    if clear_counter.is_some() {
                        sql.push_str("DELETE FROM failure_counters WHERE identifier = $4; ");
                    }
                    sql.push_str(&super::audit::insert_event_sql(5));
                    let query = sqlx::query(AssertSqlSafe(sql))
                        .bind(s.account_id.clone())
                        .bind(s.auth_time)
                        .bind(from)
                        .bind(clear_counter);
                    super::audit::bind_event(query, &event)
                        .execute(&mut *conn)
                        .await
                        .map_err(storage_error)?;
                    Ok(true)
                })
            })
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StorageError::Conflict)
        }
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
