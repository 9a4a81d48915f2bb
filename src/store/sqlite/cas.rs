//! CAS services and tickets, on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;

use super::SqliteStore;
use super::group::{Batch, Commit};
use super::sessions::{COLUMNS as SESSION_COLUMNS, NOTE_SESSION_SERVICE, session};
use crate::accounts::AccountStore;
use crate::cas::{
    ProxyGrantingTicket, SessionTicket, StoredTicket, TakenTicket, TicketKind, TicketStore,
};
use crate::relying_parties::{CasService, ServiceStore};
use crate::sessions::{Session, SessionKind};
use crate::storage::StorageError;
use crate::store::storage_error;
use crate::store::{proxies_json, proxies_of};

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
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn delete_cas_service(&self, id: &str) -> Result<bool, StorageError> {
        sqlx::query("DELETE FROM cas_services WHERE id = ?1")
            .bind(id)
            .execute(&self.writer)
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
        noted_service: Option<&str>,
        now: i64,
    ) -> Result<(), StorageError> {
        let (digest, ticket) = (digest.to_vec(), ticket.clone());
        let noted_service = noted_service.map(str::to_string);
        let proxies = proxies_json(&ticket.proxies)?;
        const INSERT: &str = "INSERT INTO cas_tickets (digest, kind, service, account_id, \
             session_id, from_new_login, expires_at, created_at, auth_time, long_term, proxies, \
             amr) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
        let bind = move |query: Batch| {
            query
                .bind(digest)
                .bind(ticket.kind.as_str())
                .bind(ticket.service)
                .bind(ticket.account_id)
                .bind(ticket.session_id)
                .bind(i32::from(ticket.from_new_login))
                .bind(ticket.expires_at)
                .bind(now)
                .bind(ticket.auth_time)
                .bind(i32::from(ticket.long_term))
                .bind(proxies)
                .bind(ticket.amr.join(" "))
        };
        match noted_service {
            // With a service to note: the ticket and the note in one batch of the group, one
            // message to the writer's thread, all or nothing (ADR 0022).
            Some(service) => {
                let sql = format!("{INSERT}; {NOTE_SESSION_SERVICE}");
                self.group
                    .write_batch(
                        &self.writer,
                        Commit::Durable,
                        sql,
                        move |query| bind(query).bind("cas").bind(service),
                        |_| Ok(()),
                    )
                    .await
            }
            None => {
                self.grouped(move |conn| {
                    Box::pin(async move {
                        bind(sqlx::query(INSERT))
                            .execute(&mut *conn)
                            .await
                            .map(|_| ())
                            .map_err(storage_error)
                    })
                })
                .await
            }
        }
    }

    async fn insert_ticket_from_session(
        &self,
        session_digest: &[u8],
        digest: &[u8],
        ticket: &SessionTicket,
    ) -> Result<Option<Session>, StorageError> {
        // One batch on the writer (ADR 0022, 0023): the ticket from the live session, its note
        // in that session, then the session, found through the ticket (none: nothing written).
        let sql = format!(
            "INSERT INTO cas_tickets (digest, kind, service, account_id, session_id, \
             from_new_login, expires_at, created_at, auth_time, long_term, proxies, amr) \
             SELECT $3, $7, $4, account_id, id, 0, $5, $2, auth_time, \
             CASE WHEN kind = $8 THEN 1 ELSE 0 END, $9, REPLACE(factors, ',', ' ') \
             FROM sessions WHERE digest = $1 AND idle_expires_at > $2 AND expires_at > $2; \
             INSERT INTO session_services (session_id, protocol, service, first_at, last_at) \
             SELECT session_id, 'cas', $6, $2, $2 FROM cas_tickets WHERE digest = $3 \
             ON CONFLICT (session_id, protocol, service) DO UPDATE SET last_at = excluded.last_at; \
             SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE id = (SELECT session_id FROM cas_tickets WHERE digest = $3)"
        );
        let (session_digest, digest, ticket) =
            (session_digest.to_vec(), digest.to_vec(), ticket.clone());
        let proxies = proxies_json(&[])?;
        self.group
            .write_batch(
                &self.writer,
                Commit::Durable,
                sql,
                move |query| {
                    query
                        .bind(session_digest)
                        .bind(ticket.created_at)
                        .bind(digest)
                        .bind(ticket.service)
                        .bind(ticket.expires_at)
                        .bind(ticket.noted_service)
                        .bind(TicketKind::Service.as_str())
                        .bind(SessionKind::Remembered.as_str())
                        .bind(proxies)
                },
                |rows| rows.first().map(session).transpose(),
            )
            .await
    }

    async fn take_ticket(&self, digest: &[u8]) -> Result<Option<TakenTicket>, StorageError> {
        let digest = digest.to_vec();
        let row = self
            .grouped(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "DELETE FROM cas_tickets WHERE digest = ?1 RETURNING kind, service, \
                         account_id, session_id, from_new_login, expires_at, auth_time, \
                         long_term, proxies, amr",
                    )
                    .bind(digest)
                    .fetch_optional(conn)
                    .await
                    .map_err(storage_error)
                })
            })
            .await?;
        let ticket = row
            .map(|row| {
                let kind: String = row.try_get("kind").map_err(storage_error)?;
                Ok::<_, StorageError>(StoredTicket {
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
                    amr: row
                        .try_get::<String, _>("amr")
                        .map_err(storage_error)?
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                    proxies: proxies_of(
                        &row.try_get::<String, _>("proxies").map_err(storage_error)?,
                    )?,
                })
            })
            .transpose()?;
        // The account is read after the write, from a reader: the writer's thread stays for
        // writes (ADR 0019).
        let Some(ticket) = ticket else {
            return Ok(None);
        };
        let account = AccountStore::find_account_with_records(self, &ticket.account_id).await?;
        Ok(Some(TakenTicket { ticket, account }))
    }

    async fn insert_pgt(
        &self,
        digest: &[u8],
        pgt: &ProxyGrantingTicket,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO cas_proxy_granting_tickets (digest, service_id, account_id, session_id, \
             proxies, auth_time, long_term, created_at, amr) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(digest)
        .bind(&pgt.service_id)
        .bind(&pgt.account_id)
        .bind(&pgt.session_id)
        .bind(proxies_json(&pgt.proxies)?)
        .bind(pgt.auth_time)
        .bind(i32::from(pgt.long_term))
        .bind(now)
        .bind(pgt.amr.join(" "))
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn find_pgt(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<ProxyGrantingTicket>, StorageError> {
        // The PGT lives as long as its SSO session (§3.3): an ended session's rows are deleted,
        // an expired one not yet purged must not count.
        let row = sqlx::query(
            "SELECT p.service_id, p.account_id, p.session_id, p.proxies, p.auth_time, p.long_term, p.amr \
             FROM cas_proxy_granting_tickets p JOIN sessions s ON s.id = p.session_id \
             WHERE p.digest = ?1 AND s.idle_expires_at > ?2 AND s.expires_at > ?2",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.map(|row| {
            Ok(ProxyGrantingTicket {
                service_id: row.try_get("service_id").map_err(storage_error)?,
                account_id: row.try_get("account_id").map_err(storage_error)?,
                session_id: row.try_get("session_id").map_err(storage_error)?,
                proxies: proxies_of(&row.try_get::<String, _>("proxies").map_err(storage_error)?)?,
                auth_time: row.try_get("auth_time").map_err(storage_error)?,
                long_term: row.try_get::<i32, _>("long_term").map_err(storage_error)? != 0,
                amr: row
                    .try_get::<String, _>("amr")
                    .map_err(storage_error)?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
            })
        })
        .transpose()
    }

    async fn purge_expired_tickets(&self, now: i64) -> Result<u64, StorageError> {
        sqlx::query("DELETE FROM cas_tickets WHERE expires_at <= ?1")
            .bind(now)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected())
            .map_err(storage_error)
    }
}
