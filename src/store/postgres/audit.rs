//! The audit trail, on PostgreSQL.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use crate::audit::{AuditEvent, AuditQuery, AuditStore, NewAuditEvent};
use crate::storage::StorageError;
use crate::store::{parse_column, storage_error};

fn audit_event(row: &PgRow) -> Result<AuditEvent, StorageError> {
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
impl AuditStore for PostgresStore {
    async fn insert_audit_event(&self, event: &NewAuditEvent) -> Result<i64, StorageError> {
        insert_event(&self.pool, event).await
    }

    async fn insert_audit_events(
        &self,
        events: &[NewAuditEvent],
    ) -> Result<Vec<i64>, StorageError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // One statement (atomic by itself): a group costs one round trip and one commit,
        // whatever its size, instead of one round trip per event inside a transaction.
        let mut columns = EventArrays::default();
        for event in events {
            columns.push(event);
        }
        let mut ids = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[]) RETURNING id"
        )))
        .bind(columns.at)
        .bind(columns.actor)
        .bind(columns.action)
        .bind(columns.subject)
        .bind(columns.source)
        .bind(columns.user_agent)
        .bind(columns.request_id)
        .bind(columns.details)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?;
        // The rows are inserted in the arrays' order, and their identity ids ascend in it.
        ids.sort_unstable();
        Ok(ids)
    }

    async fn list_audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StorageError> {
        sqlx::query(
            "SELECT id, at, actor, action, subject, source, user_agent, request_id, details \
             FROM audit_events \
             WHERE ($1::text IS NULL OR subject = $1) AND ($2::text IS NULL OR action = $2) \
             AND ($4::bigint IS NULL OR at >= $4) ORDER BY id DESC LIMIT $3",
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

/// Events as columns, for one `UNNEST` insert.
#[derive(Default)]
struct EventArrays {
    at: Vec<i64>,
    actor: Vec<String>,
    action: Vec<&'static str>,
    subject: Vec<Option<String>>,
    source: Vec<Option<String>>,
    user_agent: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    details: Vec<String>,
}

impl EventArrays {
    fn push(&mut self, event: &NewAuditEvent) {
        let (at, actor, action, details) = stored_values(event);
        self.at.push(at);
        self.actor.push(actor);
        self.action.push(action);
        self.subject.push(event.subject.clone());
        self.source.push(event.source.clone());
        self.user_agent.push(event.user_agent.clone());
        self.request_id.push(event.request_id.clone());
        self.details.push(details);
    }
}

/// The stored form of an event's typed values: `at`, `actor`, `action` and `details` (the other
/// columns are its optional strings as they are).
pub(super) fn stored_values(event: &NewAuditEvent) -> (i64, String, &'static str, String) {
    (
        event.at,
        event.actor.to_string(),
        event.action.as_str(),
        event.details.to_string(),
    )
}

/// The columns of an event, for an `INSERT INTO audit_events ({EVENT_COLUMNS}) SELECT …` inside
/// another statement; [`bind_event`] binds their values.
pub(super) const EVENT_COLUMNS: &str =
    "at, actor, action, subject, source, user_agent, request_id, details";

/// Binds an event's values, in [`EVENT_COLUMNS`]' order, after a query's own.
pub(super) fn bind_event<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    event: &'q NewAuditEvent,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let (at, actor, action, details) = stored_values(event);
    query
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(&event.subject)
        .bind(&event.source)
        .bind(&event.user_agent)
        .bind(&event.request_id)
        .bind(details)
}

/// Writes an audit event through `executor` (the pool, or another room's transaction).
pub(super) async fn insert_event<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    event: &NewAuditEvent,
) -> Result<i64, StorageError> {
    bind_event(
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id"
        ))),
        event,
    )
    .fetch_one(executor)
    .await
    .map_err(storage_error)?
    .try_get("id")
    .map_err(storage_error)
}
