//! The audit trail, on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::group::Batch;
use crate::audit::{AuditEvent, AuditQuery, AuditStore, NewAuditEvent};
use crate::storage::StorageError;
use crate::store::{parse_column, storage_error};

fn audit_event(row: &SqliteRow) -> Result<AuditEvent, StorageError> {
    let details: String = row.try_get("details").map_err(storage_error)?;
    Ok(AuditEvent {
        id: row.try_get("id").map_err(storage_error)?,
        event: NewAuditEvent {
            at: row.try_get("at").map_err(storage_error)?,
            actor: parse_column(&row.try_get::<String, _>("actor").map_err(storage_error)?)?,
            action: parse_column(&row.try_get::<String, _>("action").map_err(storage_error)?)?,
            subject: row.try_get("subject").map_err(storage_error)?,
            source: row.try_get("source").map_err(storage_error)?,
            user_agent: row.try_get("user_agent").map_err(storage_error)?,
            request_id: row.try_get("request_id").map_err(storage_error)?,
            details: serde_json::from_str(&details)
                .map_err(|e| StorageError::Corrupt(format!("audit details: {e}")))?,
        },
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn insert_audit_event(&self, event: &NewAuditEvent) -> Result<i64, StorageError> {
        let event = event.clone();
        self.grouped(move |conn| {
            Box::pin(async move {
                let sql = format!("{} RETURNING id", insert_event_sql(1));
                bind_event(sqlx::query(sqlx::AssertSqlSafe(sql)), &event)
                    .fetch_one(conn)
                    .await
                    .and_then(|row| row.try_get::<i64, _>(0))
                    .map_err(storage_error)
            })
        })
        .await
    }

    async fn insert_audit_events(
        &self,
        events: &[NewAuditEvent],
    ) -> Result<Vec<i64>, StorageError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // One multi-row statement, so that it can join a group commit (see `group`).
        let events = events.to_vec();
        self.grouped(move |conn| {
            Box::pin(async move {
                let rows: Vec<String> =
                    (0..events.len()).map(|i| event_values(1 + 8 * i)).collect();
                let sql = format!("{INSERT_EVENTS}{} RETURNING id", rows.join(", "));
                let query = events
                    .iter()
                    .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), bind_event);
                let mut ids: Vec<i64> = query
                    .fetch_all(conn)
                    .await
                    .and_then(|rows| rows.iter().map(|row| row.try_get::<i64, _>(0)).collect())
                    .map_err(storage_error)?;
                // The rows are inserted in the order of VALUES: their ids ascend in that order.
                ids.sort_unstable();
                Ok(ids)
            })
        })
        .await
    }

    async fn list_audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StorageError> {
        sqlx::query(
            "SELECT id, at, actor, action, subject, source, user_agent, request_id, details \
             FROM audit_events \
             WHERE (?1 IS NULL OR subject = ?1) AND (?2 IS NULL OR action = ?2) \
             AND (?4 IS NULL OR at >= ?4) ORDER BY id DESC LIMIT ?3",
        )
        .bind(&query.subject)
        .bind(query.action.map(|a| a.as_str()))
        .bind(i64::from(query.limit))
        .bind(query.since)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?
        .iter()
        .map(audit_event)
        .collect()
    }
}

const INSERT_EVENTS: &str = "INSERT INTO audit_events \
     (at, actor, action, subject, source, user_agent, request_id, details) VALUES ";

/// One event's `VALUES` row, its parameters numbered from `$first` to `$first + 7` (see
/// [`Batch`] for why `$N`).
fn event_values(first: usize) -> String {
    let values: Vec<String> = (first..first + 8).map(|n| format!("${n}")).collect();
    format!("({})", values.join(", "))
}

/// The `INSERT` of one audit event, its parameters numbered from `$first`, to follow other
/// statements in one [`Batch`] (bound by [`bind_event`]).
pub(super) fn insert_event_sql(first: usize) -> String {
    format!("{INSERT_EVENTS}{}", event_values(first))
}

/// The `INSERT` of one audit event written only when `condition` (an SQL expression) holds, its
/// parameters numbered from `$first` (bound by [`bind_event`]), to follow other statements in
/// one [`Batch`] whose earlier statements decide whether the event happened.
pub(super) fn insert_event_if_sql(first: usize, condition: &str) -> String {
    let values = event_values(first);
    let values = &values[1..values.len() - 1];
    format!(
        "INSERT INTO audit_events (at, actor, action, subject, source, user_agent, request_id, \
         details) SELECT {values} WHERE {condition}"
    )
}

/// Binds the eight parameters of [`insert_event_sql`] (or [`insert_event_if_sql`]), in order.
pub(super) fn bind_event(query: Batch, event: &NewAuditEvent) -> Batch {
    query
        .bind(event.at)
        .bind(event.actor.to_string())
        .bind(event.action.as_str())
        .bind(event.subject.clone())
        .bind(event.source.clone())
        .bind(event.user_agent.clone())
        .bind(event.request_id.clone())
        .bind(event.details.to_string())
}
