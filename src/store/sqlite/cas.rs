//! CAS services and tickets, on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;

use super::SqliteStore;
use crate::cas::{StoredTicket, TicketKind, TicketStore};
use crate::relying_parties::{CasService, ServiceStore};
use crate::storage::StorageError;
use crate::store::storage_error;

#[async_trait]
impl ServiceStore for SqliteStore {
    async fn list_cas_services(&self) -> Result<Vec<CasService>, StorageError> {
        sqlx::query_scalar::<_, String>("SELECT definition FROM cas_services ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(storage_error)?
            .iter()
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| StorageError::Corrupt(format!("cas service: {e}")))
            })
            .collect()
    }

    async fn insert_cas_service(&self, service: &CasService, now: i64) -> Result<(), StorageError> {
        let definition = serde_json::to_string(service)
            .map_err(|e| StorageError::Corrupt(format!("cas service: {e}")))?;
        sqlx::query("INSERT INTO cas_services (id, definition, created_at) VALUES (?1, ?2, ?3)")
            .bind(&service.id)
            .bind(definition)
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn delete_cas_service(&self, id: &str) -> Result<bool, StorageError> {
        sqlx::query("DELETE FROM cas_services WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(storage_error)
    }
}

#[async_trait]
impl TicketStore for SqliteStore {
    async fn insert_ticket(
        &self,
        digest: &[u8],
        ticket: &StoredTicket,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO cas_tickets (digest, kind, service, account_id, session_id, \
             from_new_login, expires_at, created_at, auth_time, long_term) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(digest)
        .bind(ticket.kind.as_str())
        .bind(&ticket.service)
        .bind(&ticket.account_id)
        .bind(&ticket.session_id)
        .bind(i32::from(ticket.from_new_login))
        .bind(ticket.expires_at)
        .bind(now)
        .bind(ticket.auth_time)
        .bind(i32::from(ticket.long_term))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn take_ticket(&self, digest: &[u8]) -> Result<Option<StoredTicket>, StorageError> {
        let row = sqlx::query(
            "DELETE FROM cas_tickets WHERE digest = ?1 RETURNING kind, service, account_id, \
             session_id, from_new_login, expires_at, auth_time, long_term",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.map(|row| {
            let kind: String = row.try_get("kind").map_err(storage_error)?;
            Ok(StoredTicket {
                kind: TicketKind::parse(&kind)
                    .ok_or_else(|| StorageError::Corrupt(format!("ticket kind `{kind}`")))?,
                service: row.try_get("service").map_err(storage_error)?,
                account_id: row.try_get("account_id").map_err(storage_error)?,
                session_id: row.try_get("session_id").map_err(storage_error)?,
                from_new_login: row
                    .try_get::<i32, _>("from_new_login")
                    .map_err(storage_error)?
                    != 0,
                expires_at: row.try_get("expires_at").map_err(storage_error)?,
                auth_time: row.try_get("auth_time").map_err(storage_error)?,
                long_term: row.try_get::<i32, _>("long_term").map_err(storage_error)? != 0,
            })
        })
        .transpose()
    }

    async fn purge_expired_tickets(&self, now: i64) -> Result<u64, StorageError> {
        sqlx::query("DELETE FROM cas_tickets WHERE expires_at <= ?1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(storage_error)
    }
}
