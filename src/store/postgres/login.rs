//! Login and the helpdesk's account reads and writes, on PostgreSQL.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Row as _};

use super::PostgresStore;
use super::accounts::account;
use super::audit::{EVENT_COLUMNS, stored_values};
use super::lockout::{bind_count, count_statement, counter};
use super::mfa::{FACTOR_COUNTS, factors_of};
use super::sessions::{INSERT_ACTIVE_SESSION, bind_new_session};
use crate::accounts::lockout::LockoutPolicy;
use crate::accounts::{AccountActivity, AccountAdminStore, AccountState, Contact};
use crate::login::{CountedCandidate, LoginCandidate, LoginStore, SuccessfulLogin};
use crate::storage::StorageError;
use crate::store::storage_error;

#[async_trait]
impl LoginStore for PostgresStore {
    async fn find_candidate_counting(
        &self,
        login: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> Result<CountedCandidate, StorageError> {
        // One statement instead of two round trips: the candidate (as `find_login_candidate`
        // reads it), then the count under its account's login, or `login` ($1 = $2) for none.
        // Its commit does not wait for the WAL's flush (`synchronous_commit` off for this
        // statement's own transaction only, `set_config(…, true)`): every answer the login gives
        // after it waits for a synchronous commit of its own (the session, or the failure's audit
        // event), and flushing the WAL up to that commit flushes this one, written before it
        // (ADR 0024).
        let count = count_statement(
            "COALESCE((SELECT login FROM cand), $1)",
            "(SELECT COUNT(*) FROM cand)::INT",
        );
        let query = sqlx::query(AssertSqlSafe(format!(
            "WITH cand AS (SELECT a.id, a.login, a.state, a.first_name, a.last_name, \
             a.birth_date, a.person_key, a.password_hash, {FACTOR_COUNTS} \
             FROM logins l JOIN accounts a ON a.id = l.account_id WHERE l.login = $2), \
             counted AS ({count}), \
             deferred AS (SELECT set_config('synchronous_commit', 'off', true)) \
             SELECT cand.*, counted.*, counted.failures IS NOT NULL AS was_counted \
             FROM deferred CROSS JOIN (SELECT 1) AS one LEFT JOIN cand ON TRUE \
             LEFT JOIN counted ON TRUE"
        )))
        .bind(login)
        .bind(login);
        let row = bind_count(query, now, policy)
            .fetch_one(&self.pool)
            .await
            .map_err(storage_error)?;
        let candidate = match row
            .try_get::<Option<String>, _>("id")
            .map_err(storage_error)?
        {
            Some(_) => Some(LoginCandidate {
                account: account(&row)?,
                password_hash: row.try_get("password_hash").map_err(storage_error)?,
                factors: factors_of(&row)?,
            }),
            None => None,
        };
        let counted = match row
            .try_get::<bool, _>("was_counted")
            .map_err(storage_error)?
        {
            true => Some(counter(&row)?),
            false => None,
        };
        Ok(CountedCandidate { candidate, counted })
    }

    async fn upgrade_password_hash(
        &self,
        account_id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StorageError> {
        sqlx::query("UPDATE accounts SET password_hash = $3 WHERE id = $1 AND password_hash = $2")
            .bind(account_id)
            .bind(old)
            .bind(new)
            .execute(&self.pool)
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
        sqlx::query("UPDATE accounts SET last_login_at = $2, last_login_from = $3 WHERE id = $1")
            .bind(account_id)
            .bind(now)
            .bind(from)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn find_login_candidate(
        &self,
        login: &str,
    ) -> Result<Option<LoginCandidate>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT a.id, a.login, a.state, a.first_name, a.last_name, a.birth_date, \
             a.person_key, a.password_hash, {FACTOR_COUNTS} \
             FROM logins l JOIN accounts a ON a.id = l.account_id WHERE l.login = $1"
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
        let (s, event) = (login.session, login.event);
        // The event's columns (EVENT_COLUMNS), as `bind_event` binds them; this query is scalar.
        let (at, actor, action, details) = stored_values(event);
        // One statement, so one round trip and one commit. The session is inserted only for an
        // account still active; the last login and the event are written only with it.
        let inserted: i64 = bind_new_session(
            sqlx::query_scalar(AssertSqlSafe(format!(
                "WITH cleared AS (DELETE FROM failure_counters WHERE identifier = $12), \
                 opened AS ({INSERT_ACTIVE_SESSION} RETURNING account_id), \
                 noted AS (UPDATE accounts SET last_login_at = $5, last_login_from = $13 \
                   WHERE id IN (SELECT account_id FROM opened)), \
                 audited AS (INSERT INTO audit_events ({EVENT_COLUMNS}) \
                   SELECT $14, $15, $16, $17, $18, $19, $20, $21 FROM opened) \
                 SELECT COUNT(*) FROM opened"
            ))),
            s,
            login.digest,
        )
        .bind(login.clear_counter)
        .bind(login.from)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(&event.subject)
        .bind(&event.source)
        .bind(&event.user_agent)
        .bind(&event.request_id)
        .bind(details)
        .fetch_one(&self.pool)
        .await
        .map_err(storage_error)?;
        if inserted > 0 {
            Ok(())
        } else {
            Err(StorageError::Conflict)
        }
    }
}

#[async_trait]
impl AccountAdminStore for PostgresStore {
    async fn find_account_activity(
        &self,
        account_id: &str,
    ) -> Result<Option<AccountActivity>, StorageError> {
        let row = sqlx::query(
            "SELECT activated_at, last_login_at, last_login_from, disabled_reason, \
             password_hash IS NOT NULL AS has_password FROM accounts WHERE id = $1",
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
             WHERE account_id = $1 ORDER BY kind, id",
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
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        sqlx::query("DELETE FROM recovery_contacts WHERE account_id = $1 AND kind = $2")
            .bind(account_id)
            .bind(kind)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        sqlx::query(
            "INSERT INTO recovery_contacts (account_id, kind, value, confirmed_at, created_at) \
             VALUES ($1, $2, $3, $4, $4)",
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
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        sqlx::query(
            "UPDATE accounts SET state = $2, disabled_reason = $3, updated_at = $4 WHERE id = $1",
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

#[cfg(all(test, sesame_postgres_tests))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::entropy::{EntropyExt as _, OsEntropy};
    use crate::store::ConnectOptions;

    /// The count's commit skips the WAL's flush for its own transaction only (ADR 0024): the
    /// connection it ran on, handed out next, commits synchronously again.
    #[tokio::test]
    async fn the_deferred_count_leaves_its_connection_synchronous() {
        let url = std::env::var("SESAME_TEST_POSTGRES_URL")
            .expect("SESAME_TEST_POSTGRES_URL was set at build time and must be set to run");
        let schema = format!("login_{}", OsEntropy.hex(8));
        let options = ConnectOptions {
            url,
            max_connections: 1,
            acquire_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(30),
            schema: None,
        };
        let store = PostgresStore::connect_in_schema(&options, &schema)
            .await
            .unwrap();
        let read = store
            .find_candidate_counting("nobody.here", 10, &LockoutPolicy::default())
            .await
            .unwrap();
        assert!(read.candidate.is_none());
        assert_eq!(read.counted.map(|c| c.failures), Some(1), "counted");
        // One connection: the same one, after the count's transaction.
        let level: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(level, "on");
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&store.pool)
            .await
            .unwrap();
    }
}
