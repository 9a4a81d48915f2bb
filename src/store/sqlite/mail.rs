//! The mail outbox, on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::mail::{EmailAddress, MailFailure, MailStore, OutgoingMail, QueuedMail};
use crate::storage::StorageError;
use crate::store::{parse_column, storage_error};

/// Queues `mail`, due at once, on `conn`: pass `&mut *tx` to queue it inside the transaction of
/// the action that causes it, so the mail exists if and only if the action committed. Any
/// executor works (`&mut sqlx::SqliteConnection`, a transaction's `&mut *tx`, the pool); being generic
/// also keeps clippy's `explicit_auto_deref` quiet about `&mut *tx` at call sites.
pub(crate) async fn insert_mail<'c, E>(
    conn: E,
    mail: &OutgoingMail,
    now: i64,
) -> Result<i64, StorageError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query_scalar(
        "INSERT INTO mail_outbox \
         (kind, recipient, subject, text_body, html_body, created_at, next_attempt_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(mail.kind.as_str())
    .bind(mail.to.as_str())
    .bind(&mail.subject)
    .bind(&mail.text)
    .bind(&mail.html)
    .bind(now)
    .bind(now)
    .fetch_one(conn)
    .await
    .map_err(storage_error)
}

fn queued_mail(row: &SqliteRow) -> Result<QueuedMail, StorageError> {
    let recipient: String = row.try_get("recipient").map_err(storage_error)?;
    let attempts: i64 = row.try_get("attempts").map_err(storage_error)?;
    Ok(QueuedMail {
        id: row.try_get("id").map_err(storage_error)?,
        mail: OutgoingMail {
            kind: parse_column(row.try_get("kind").map_err(storage_error)?)?,
            to: EmailAddress::parse(&recipient)
                .map_err(|e| StorageError::Corrupt(e.to_string()))?,
            subject: row.try_get("subject").map_err(storage_error)?,
            text: row.try_get("text_body").map_err(storage_error)?,
            html: row.try_get("html_body").map_err(storage_error)?,
        },
        created_at: row.try_get("created_at").map_err(storage_error)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StorageError::Corrupt(format!("mail attempts {attempts}")))?,
    })
}

#[async_trait]
impl MailStore for SqliteStore {
    async fn insert_mail(&self, mail: &OutgoingMail, now: i64) -> Result<i64, StorageError> {
        insert_mail(&self.writer, mail, now).await
    }

    async fn claim_due_mails(
        &self,
        now: i64,
        locked_until: i64,
        limit: u32,
    ) -> Result<Vec<QueuedMail>, StorageError> {
        // One statement, so one write transaction: SQLite takes the write lock before reading,
        // and a concurrent claimer waits (busy timeout) and then sees these leases.
        let rows = sqlx::query(
            "UPDATE mail_outbox SET locked_until = ?, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM mail_outbox \
                 WHERE sent_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= ? \
                 AND (locked_until IS NULL OR locked_until <= ?) \
                 ORDER BY next_attempt_at, id LIMIT ?) \
             RETURNING id, kind, recipient, subject, text_body, html_body, created_at, attempts",
        )
        .bind(locked_until)
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(storage_error)?;
        let mut mails = rows
            .iter()
            .map(queued_mail)
            .collect::<Result<Vec<_>, _>>()?;
        mails.sort_by_key(|m| m.id);
        Ok(mails)
    }

    async fn mark_mail_sent(&self, id: i64, now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE mail_outbox SET sent_at = ?, locked_until = NULL, last_error = NULL, \
             text_body = '', html_body = '' WHERE id = ? AND sent_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn mark_mail_failed(&self, id: i64, failure: &MailFailure) -> Result<(), StorageError> {
        let query = match failure.retry_at {
            Some(retry_at) => sqlx::query(
                "UPDATE mail_outbox SET locked_until = NULL, last_error = ?, next_attempt_at = ? \
                 WHERE id = ? AND sent_at IS NULL AND given_up_at IS NULL",
            )
            .bind(&failure.error)
            .bind(retry_at),
            None => sqlx::query(
                "UPDATE mail_outbox SET locked_until = NULL, last_error = ?, given_up_at = ?, \
                 text_body = '', html_body = '' \
                 WHERE id = ? AND sent_at IS NULL AND given_up_at IS NULL",
            )
            .bind(&failure.error)
            .bind(failure.at),
        };
        query
            .bind(id)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn count_queued_mails(&self) -> Result<u64, StorageError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL AND given_up_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(storage_error)?;
        Ok(count.max(0) as u64)
    }

    async fn purge_finished_mails(&self, before: i64) -> Result<u64, StorageError> {
        sqlx::query("DELETE FROM mail_outbox WHERE sent_at < ? OR given_up_at < ?")
            .bind(before)
            .bind(before)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected())
            .map_err(storage_error)
    }
}
