//! Login and the helpdesk's account reads and writes, on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row as _};

use super::SqliteStore;
use super::accounts::account;
use super::group::Commit;
use super::lockout::{bind_count, count_statement, counter};
use super::mfa::{FACTOR_COUNTS, factors_of};
use super::sessions::INSERT_ACTIVE_SESSION;
use crate::accounts::lockout::LockoutPolicy;
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
        // One message to the writer's thread: the candidate (as `find_login_candidate` reads
        // it), then the count under its account's login, or `login` when it names none, in one
        // batch of the group commit (ADR 0022). Where there were a reader's round trip and a
        // writer's, a login's POST now crosses to SQLite's threads once before its hash. Its
        // commit is not waited on the disk: every answer the login gives after it waits for a
        // durable commit of its own (the session, or the failure's audit event), whose sync of
        // the WAL takes the count with it (ADR 0024).
        let names = "(SELECT a.login FROM logins l JOIN accounts a ON a.id = l.account_id \
                     WHERE l.login = $1)";
        let sql = format!(
            "{} WHERE l.login = $1; {}",
            candidate_sql(),
            count_statement(
                &format!("COALESCE({names}, $1)"),
                &format!("({names} IS NOT NULL)")
            )
        );
        let (login, policy) = (login.to_string(), *policy);
        self.group
            .write_batch(
                &self.writer,
                Commit::Deferred,
                sql,
                move |query| bind_count(query.bind(login).bind(0), now, &policy),
                |rows| {
                    let mut found = CountedCandidate {
                        candidate: None,
                        counted: None,
                    };
                    for row in &rows {
                        // The count's row (none when the identifier is locked) has no `id`.
                        if row.try_column("id").is_ok() {
                            found.candidate = Some(candidate(row)?);
                        } else {
                            found.counted = Some(counter(row)?);
                        }
                    }
                    Ok(found)
                },
            )
            .await
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
            "{} WHERE l.login = ?1",
            candidate_sql()
        )))
        .bind(login)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.as_ref().map(candidate).transpose()
    }

    async fn record_successful_login(
        &self,
        login: &SuccessfulLogin<'_>,
    ) -> Result<(), StorageError> {
        let (s, event) = (login.session.clone(), login.event.clone());
        let digest = login.digest.to_vec();
        let clear_counter = login.clear_counter.map(str::to_string);
        let from = login.from.map(str::to_string);
        // One batch of the group commit, all or nothing, in one message to the writer's thread
        // (ADR 0022): the session, inserted only while the account is active (a disable
        // committed meanwhile wins: then only the counter is forgotten, the password was
        // right); the last login noted and the event written only if the session was; the
        // counter forgotten either way; then whether the session is there.
        let inserted = "EXISTS (SELECT 1 FROM sessions WHERE id = $1)";
        let sql = format!(
            "{INSERT_ACTIVE_SESSION}; \
             UPDATE accounts SET last_login_at = $5, last_login_from = $12 \
             WHERE id = $3 AND {inserted}; \
             DELETE FROM failure_counters WHERE identifier = $13; \
             {}; \
             SELECT {inserted} AS inserted",
            super::audit::insert_event_if_sql(14, inserted)
        );
        let inserted = self
            .group
            .write_batch(
                &self.writer,
                Commit::Durable,
                sql,
                move |query| {
                    let query = super::sessions::bind_session_row(query, &s, digest)
                        .bind(from)
                        .bind(clear_counter);
                    super::audit::bind_event(query, &event)
                },
                |rows| {
                    let last = rows.last().ok_or_else(|| {
                        StorageError::Corrupt("the login's batch gave no answer".into())
                    })?;
                    last.try_get::<bool, _>("inserted").map_err(storage_error)
                },
            )
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StorageError::Conflict)
        }
    }
}

/// The login's candidate: its account, password hash and factors; a `WHERE` on `l.login`
/// follows.
fn candidate_sql() -> String {
    format!(
        "SELECT a.id, a.login, a.state, a.first_name, a.last_name, a.birth_date, \
         a.person_key, a.password_hash, {FACTOR_COUNTS} \
         FROM logins l JOIN accounts a ON a.id = l.account_id"
    )
}

fn candidate(row: &SqliteRow) -> Result<LoginCandidate, StorageError> {
    Ok(LoginCandidate {
        account: account(row)?,
        password_hash: row.try_get("password_hash").map_err(storage_error)?,
        factors: factors_of(row)?,
    })
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
