//! SSO sessions, on PostgreSQL.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;
use sqlx::postgres::{PgArguments, PgRow, Postgres};
use sqlx::query::QueryScalar;

use super::PostgresStore;
use crate::sessions::{ServedApplication, Session, SessionStore};
use crate::storage::StorageError;
use crate::store::{parse_column, storage_error};

pub(super) const COLUMNS: &str = "id, account_id, kind, auth_time, factors, last_seen_at, idle_expires_at, \
                       expires_at, client_ip, user_agent";

pub(super) fn session(row: &PgRow) -> Result<Session, StorageError> {
    let factors: String = row.try_get("factors").map_err(storage_error)?;
    Ok(Session {
        id: row.try_get("id").map_err(storage_error)?,
        account_id: row.try_get("account_id").map_err(storage_error)?,
        kind: parse_column(&row.try_get::<String, _>("kind").map_err(storage_error)?)?,
        auth_time: row.try_get("auth_time").map_err(storage_error)?,
        factors: factors
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
        last_seen_at: row.try_get("last_seen_at").map_err(storage_error)?,
        idle_expires_at: row.try_get("idle_expires_at").map_err(storage_error)?,
        expires_at: row.try_get("expires_at").map_err(storage_error)?,
        client_ip: row.try_get("client_ip").map_err(storage_error)?,
        user_agent: row.try_get("user_agent").map_err(storage_error)?,
    })
}

/// Ends every session of an account inside the caller's transaction (password reset, disabled
/// account); how many.
pub(super) async fn end_account_sessions(
    conn: &mut sqlx::PgConnection,
    account_id: &str,
) -> Result<u64, StorageError> {
    sqlx::query("DELETE FROM sessions WHERE account_id = $1")
        .bind(account_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(storage_error)
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn insert_session(&self, s: &Session, digest: &[u8]) -> Result<(), StorageError> {
        let inserted: Option<String> = bind_new_session(
            sqlx::query_scalar(AssertSqlSafe(format!(
                "{INSERT_ACTIVE_SESSION} RETURNING id"
            ))),
            s,
            digest,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        inserted.map(|_| ()).ok_or(StorageError::Conflict)
    }

    async fn rotate_session(
        &self,
        old_digest: &[u8],
        new_digest: &[u8],
        s: &Session,
        now: i64,
    ) -> Result<Option<Session>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE sessions SET digest = $2, kind = $4, auth_time = $5, factors = $6, \
             last_seen_at = $7, idle_expires_at = $8, expires_at = $9, client_ip = $10, \
             user_agent = $11 WHERE digest = $1 AND account_id = $3 \
             AND EXISTS (SELECT 1 FROM accounts WHERE id = $3 AND state = 'active') \
             AND idle_expires_at > $12 AND expires_at > $12 RETURNING {COLUMNS}"
        )))
        .bind(old_digest)
        .bind(new_digest)
        .bind(&s.account_id)
        .bind(s.kind.as_str())
        .bind(s.auth_time)
        .bind(s.factors.join(","))
        .bind(s.last_seen_at)
        .bind(s.idle_expires_at)
        .bind(s.expires_at)
        .bind(&s.client_ip)
        .bind(&s.user_agent)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.as_ref().map(session).transpose()
    }

    async fn find_session_by_digest(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<Session>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE digest = $1 \
             AND idle_expires_at > $2 AND expires_at > $2"
        )))
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.as_ref().map(session).transpose()
    }

    async fn touch_session(
        &self,
        id: &str,
        now: i64,
        idle_expires_at: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $2, \
             idle_expires_at = LEAST($3, expires_at) WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(idle_expires_at)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn delete_session_by_digest(
        &self,
        digest: &[u8],
    ) -> Result<Option<Session>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM sessions WHERE digest = $1 RETURNING {COLUMNS}"
        )))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.as_ref().map(session).transpose()
    }

    async fn delete_session(&self, account_id: &str, id: &str) -> Result<bool, StorageError> {
        sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(storage_error)
    }

    async fn delete_account_sessions(&self, account_id: &str) -> Result<u64, StorageError> {
        sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(account_id)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(storage_error)
    }

    async fn list_account_sessions(
        &self,
        account_id: &str,
        now: i64,
    ) -> Result<Vec<Session>, StorageError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE account_id = $1 \
             AND idle_expires_at > $2 AND expires_at > $2 ORDER BY auth_time DESC, id"
        )))
        .bind(account_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?
        .iter()
        .map(session)
        .collect()
    }

    async fn record_session_service(
        &self,
        id: &str,
        protocol: &str,
        service: &str,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO session_services (session_id, protocol, service, first_at, last_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (session_id, protocol, service) \
             DO UPDATE SET last_at = excluded.last_at",
        )
        .bind(id)
        .bind(protocol)
        .bind(service)
        .bind(now)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn list_session_services(
        &self,
        id: &str,
    ) -> Result<Vec<ServedApplication>, StorageError> {
        sqlx::query(
            "SELECT protocol, service, first_at, last_at FROM session_services \
             WHERE session_id = $1 ORDER BY first_at, protocol, service",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?
        .iter()
        .map(|row| {
            Ok(ServedApplication {
                protocol: row.try_get("protocol").map_err(storage_error)?,
                service: row.try_get("service").map_err(storage_error)?,
                first_at: row.try_get("first_at").map_err(storage_error)?,
                last_at: row.try_get("last_at").map_err(storage_error)?,
            })
        })
        .collect()
    }

    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StorageError> {
        sqlx::query("DELETE FROM sessions WHERE idle_expires_at <= $1 OR expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(storage_error)
    }

    async fn count_live_sessions(&self, now: i64) -> Result<u64, StorageError> {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM sessions WHERE idle_expires_at > $1 AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map(|n| n as u64)
        .map_err(storage_error)
    }
}

/// Inserts a session (`$1`–`$11`, bound by [`bind_new_session`]) only for an account still
/// active at this instant: a disable committed while the password was being checked wins.
pub(super) const INSERT_ACTIVE_SESSION: &str = "INSERT INTO sessions (id, digest, account_id, \
     kind, auth_time, factors, last_seen_at, idle_expires_at, expires_at, client_ip, user_agent) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
     WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $3 AND state = 'active')";

/// Binds `$1`–`$11` of [`INSERT_ACTIVE_SESSION`].
pub(super) fn bind_new_session<'q, O>(
    query: QueryScalar<'q, Postgres, O, PgArguments>,
    s: &'q Session,
    digest: &'q [u8],
) -> QueryScalar<'q, Postgres, O, PgArguments> {
    query
        .bind(&s.id)
        .bind(digest)
        .bind(&s.account_id)
        .bind(s.kind.as_str())
        .bind(s.auth_time)
        .bind(s.factors.join(","))
        .bind(s.last_seen_at)
        .bind(s.idle_expires_at)
        .bind(s.expires_at)
        .bind(&s.client_ip)
        .bind(&s.user_agent)
}
