//! OpenID Connect clients, codes, grants, tokens and consents, on SQLite.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::accounts::{WITH_RECORDS_COLUMNS, WITH_RECORDS_JOIN, account_with_records};
use super::group::Commit;
use crate::audit::NewAuditEvent;
use crate::oidc::{
    CodeRedemption, FoundToken, Grant, NewToken, OidcStore, RefreshOutcome, StoredCode,
};
use crate::relying_parties::clients::{ClientStore, OidcClient};
use crate::storage::StorageError;
use crate::store::{parse_column, storage_error};

fn list_of(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn grant_of(row: &SqliteRow) -> Result<Grant, StorageError> {
    Ok(Grant {
        id: row.try_get("id").map_err(storage_error)?,
        client_id: row.try_get("client_id").map_err(storage_error)?,
        account_id: row.try_get("account_id").map_err(storage_error)?,
        session_id: row.try_get("session_id").map_err(storage_error)?,
        scope: row.try_get("scope").map_err(storage_error)?,
        auth_time: row.try_get("auth_time").map_err(storage_error)?,
        amr: list_of(&row.try_get::<String, _>("amr").map_err(storage_error)?),
        acr: row.try_get("acr").map_err(storage_error)?,
        created_at: row.try_get("created_at").map_err(storage_error)?,
        expires_at: row.try_get("expires_at").map_err(storage_error)?,
    })
}

const GRANT_COLUMNS: &str = "g.id, g.client_id, g.account_id, g.session_id, g.scope, \
    g.auth_time, g.amr, g.acr, g.created_at, g.expires_at";

/// What a code was issued for, as [`code_of`] reads it.
const CODE_COLUMNS: &str = "client_id, redirect_uri, account_id, session_id, scope, nonce, \
    code_challenge, auth_time, amr, acr, expires_at";

fn code_of(row: &SqliteRow) -> Result<StoredCode, StorageError> {
    Ok(StoredCode {
        client_id: row.try_get("client_id").map_err(storage_error)?,
        redirect_uri: row.try_get("redirect_uri").map_err(storage_error)?,
        account_id: row.try_get("account_id").map_err(storage_error)?,
        session_id: row.try_get("session_id").map_err(storage_error)?,
        scope: row.try_get("scope").map_err(storage_error)?,
        nonce: row.try_get("nonce").map_err(storage_error)?,
        code_challenge: row.try_get("code_challenge").map_err(storage_error)?,
        auth_time: row.try_get("auth_time").map_err(storage_error)?,
        amr: list_of(&row.try_get::<String, _>("amr").map_err(storage_error)?),
        acr: row.try_get("acr").map_err(storage_error)?,
        expires_at: row.try_get("expires_at").map_err(storage_error)?,
    })
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn list_oidc_clients(&self) -> Result<Vec<OidcClient>, StorageError> {
        sqlx::query_scalar::<_, String>("SELECT definition FROM oidc_clients ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(storage_error)?
            .iter()
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| StorageError::Corrupt(format!("oidc client: {e}")))
            })
            .collect()
    }

    async fn insert_oidc_client(&self, client: &OidcClient, now: i64) -> Result<(), StorageError> {
        let definition = serde_json::to_string(client)
            .map_err(|e| StorageError::Corrupt(format!("oidc client: {e}")))?;
        sqlx::query("INSERT INTO oidc_clients (id, definition, created_at) VALUES (?1, ?2, ?3)")
            .bind(&client.id)
            .bind(definition)
            .bind(now)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn update_oidc_client(&self, client: &OidcClient) -> Result<bool, StorageError> {
        let definition = serde_json::to_string(client)
            .map_err(|e| StorageError::Corrupt(format!("oidc client: {e}")))?;
        sqlx::query("UPDATE oidc_clients SET definition = ?2 WHERE id = ?1")
            .bind(&client.id)
            .bind(definition)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(storage_error)
    }

    async fn delete_oidc_client(&self, id: &str) -> Result<bool, StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        // A removed client keeps no token, no consent.
        sqlx::query("DELETE FROM oidc_grants WHERE client_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        sqlx::query("DELETE FROM oidc_consents WHERE client_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        let removed = sqlx::query("DELETE FROM oidc_clients WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?
            .rows_affected()
            > 0;
        tx.commit().await.map_err(storage_error)?;
        Ok(removed)
    }
}

#[async_trait]
impl OidcStore for SqliteStore {
    async fn find_code(&self, digest: &[u8]) -> Result<Option<StoredCode>, StorageError> {
        // A read on the readers' pool: the writer only sees the write that spends it.
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {CODE_COLUMNS} FROM oidc_codes WHERE digest = ?1 AND redeemed_at IS NULL"
        )))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?
        .map(|row| code_of(&row))
        .transpose()
    }

    async fn take_code(&self, digest: &[u8], now: i64) -> Result<CodeRedemption, StorageError> {
        // One job of the group commit (ADR 0017, 0020): the code spent and its account checked,
        // or a replay marked with its grant revoked.
        let digest = digest.to_vec();
        self.grouped_atomically(move |conn| {
            Box::pin(async move { take_code(conn, &digest, now).await })
        })
        .await
    }

    async fn issue_grant(
        &self,
        grant: &Grant,
        tokens: &[NewToken],
        code_digest: Option<&[u8]>,
        event: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let (grant, tokens, code_digest, event) = (
            grant.clone(),
            tokens.to_vec(),
            code_digest.map(<[u8]>::to_vec),
            event.clone(),
        );
        // One batch of the group commit, one message to the writer's thread (ADR 0022).
        let sql = issue_grant_sql(code_digest.is_some(), tokens.len());
        let issued = self
            .group
            .write_batch(
                &self.writer,
                Commit::Durable,
                sql,
                move |query| bind_issue_grant(query, &grant, &tokens, code_digest, &event),
                |rows| {
                    let last = rows.last().ok_or_else(|| {
                        StorageError::Corrupt("the grant's batch gave no answer".into())
                    })?;
                    last.try_get::<bool, _>("issued").map_err(storage_error)
                },
            )
            .await?;
        if issued {
            Ok(())
        } else {
            Err(StorageError::Conflict)
        }
    }

    async fn rotate_refresh_token(
        &self,
        digest: &[u8],
        client_id: &str,
        successors: &[NewToken],
        now: i64,
        event: Option<&NewAuditEvent>,
    ) -> Result<RefreshOutcome, StorageError> {
        let (digest, client_id, successors, event) = (
            digest.to_vec(),
            client_id.to_string(),
            successors.to_vec(),
            event.cloned(),
        );
        self.grouped_atomically(move |conn| {
            Box::pin(rotate_refresh_token(
                conn, digest, client_id, successors, now, event,
            ))
        })
        .await
    }

    async fn insert_code(
        &self,
        digest: &[u8],
        code: &StoredCode,
        now: i64,
    ) -> Result<(), StorageError> {
        let (digest, code) = (digest.to_vec(), code.clone());
        self.grouped(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO oidc_codes (digest, client_id, redirect_uri, account_id, \
                     session_id, scope, nonce, code_challenge, auth_time, amr, acr, expires_at, \
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .bind(digest)
                .bind(&code.client_id)
                .bind(&code.redirect_uri)
                .bind(&code.account_id)
                .bind(&code.session_id)
                .bind(&code.scope)
                .bind(&code.nonce)
                .bind(&code.code_challenge)
                .bind(code.auth_time)
                .bind(code.amr.join(" "))
                .bind(&code.acr)
                .bind(code.expires_at)
                .bind(now)
                .execute(conn)
                .await
                .map(|_| ())
                .map_err(storage_error)
            })
        })
        .await
    }

    async fn find_token(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<FoundToken>, StorageError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            // With the grant's account and its feed records, in the same query: what
            // userinfo and introspection need next.
            "SELECT t.kind, t.expires_at AS token_expires_at, t.created_at AS token_created_at, \
             {GRANT_COLUMNS}, {WITH_RECORDS_COLUMNS} \
             FROM oidc_tokens t JOIN oidc_grants g ON g.id = t.grant_id \
             LEFT JOIN accounts a ON a.id = g.account_id {WITH_RECORDS_JOIN} \
             WHERE t.digest = ?1 AND t.used_at IS NULL AND t.expires_at > ?2 \
             AND g.expires_at > ?2"
        )))
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        row.map(|row| {
            Ok(FoundToken {
                kind: parse_column(&row.try_get::<String, _>("kind").map_err(storage_error)?)?,
                expires_at: row.try_get("token_expires_at").map_err(storage_error)?,
                created_at: row.try_get("token_created_at").map_err(storage_error)?,
                grant: grant_of(&row)?,
                account: account_with_records(&row)?,
            })
        })
        .transpose()
    }

    async fn revoke_token(&self, digest: &[u8], client_id: &str) -> Result<bool, StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT t.kind, t.grant_id FROM oidc_tokens t JOIN oidc_grants g ON g.id = t.grant_id \
             WHERE t.digest = ?1 AND g.client_id = ?2",
        )
        .bind(digest)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage_error)?;
        let revoked = match found {
            // RFC 7009 §2.1: revoking a refresh token revokes its grant's access tokens too.
            Some((kind, grant_id)) if kind == "refresh" => {
                sqlx::query("DELETE FROM oidc_grants WHERE id = ?1")
                    .bind(grant_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage_error)?
                    .rows_affected()
                    > 0
            }
            Some(_) => {
                sqlx::query("DELETE FROM oidc_tokens WHERE digest = ?1")
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage_error)?
                    .rows_affected()
                    > 0
            }
            None => false,
        };
        tx.commit().await.map_err(storage_error)?;
        Ok(revoked)
    }

    async fn find_consent(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<Vec<String>>, StorageError> {
        let scopes: Option<String> = sqlx::query_scalar(
            "SELECT scopes FROM oidc_consents WHERE account_id = ?1 AND client_id = ?2",
        )
        .bind(account_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        Ok(scopes.map(|s| list_of(&s)))
    }

    async fn record_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO oidc_consents (account_id, client_id, scopes, granted_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (account_id, client_id) \
             DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at",
        )
        .bind(account_id)
        .bind(client_id)
        .bind(scopes.join(" "))
        .bind(now)
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn delete_consents(
        &self,
        account_id: &str,
        client_id: Option<&str>,
    ) -> Result<u64, StorageError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(storage_error)?;
        let deleted = sqlx::query(
            "DELETE FROM oidc_consents WHERE account_id = ?1 AND (?2 IS NULL OR client_id = ?2)",
        )
        .bind(account_id)
        .bind(client_id)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?
        .rows_affected();
        sqlx::query(
            "DELETE FROM oidc_grants WHERE account_id = ?1 AND (?2 IS NULL OR client_id = ?2)",
        )
        .bind(account_id)
        .bind(client_id)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        Ok(deleted)
    }

    async fn list_consents(
        &self,
        account_id: &str,
    ) -> Result<Vec<(String, Vec<String>, i64)>, StorageError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT client_id, scopes, granted_at FROM oidc_consents WHERE account_id = ?1 \
             ORDER BY client_id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?;
        Ok(rows
            .into_iter()
            .map(|(c, s, at)| (c, list_of(&s), at))
            .collect())
    }

    async fn purge_oidc(&self, now: i64) -> Result<u64, StorageError> {
        // Codes are kept ten minutes past their expiry, to recognise a late replay.
        let codes = sqlx::query("DELETE FROM oidc_codes WHERE expires_at < ?1")
            .bind(now - 600)
            .execute(&self.writer)
            .await
            .map_err(storage_error)?
            .rows_affected();
        let grants = sqlx::query("DELETE FROM oidc_grants WHERE expires_at < ?1")
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(storage_error)?
            .rows_affected();
        let tokens = sqlx::query("DELETE FROM oidc_tokens WHERE expires_at < ?1")
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(storage_error)?
            .rows_affected();
        Ok(codes + grants + tokens)
    }
}

/// [`OidcStore::take_code`], on the writer.
async fn take_code(
    conn: &mut SqliteConnection,
    digest: &[u8],
    now: i64,
) -> Result<CodeRedemption, StorageError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE oidc_codes SET redeemed_at = ?2 WHERE digest = ?1 AND redeemed_at IS NULL \
         RETURNING {CODE_COLUMNS}"
    )))
    .bind(digest)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(storage_error)?;
    if let Some(row) = row {
        let code = code_of(&row)?;
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM accounts WHERE id = ?1 AND state = 'active' \
             AND EXISTS (SELECT 1 FROM sessions WHERE id = ?2)",
        )
        .bind(&code.account_id)
        .bind(&code.session_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(storage_error)?;
        return Ok(CodeRedemption::Redeemed {
            code: Box::new(code),
            live: live.is_some(),
        });
    }
    // RFC 6749 §4.1.2: used before. Marked replayed, and what it gave is revoked (the writer
    // runs jobs one at a time: a grant made from it is already stored, or never will be).
    let replayed = sqlx::query(
        "UPDATE oidc_codes SET replayed_at = COALESCE(replayed_at, ?2) WHERE digest = ?1",
    )
    .bind(digest)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(storage_error)?
    .rows_affected()
        > 0;
    if !replayed {
        return Ok(CodeRedemption::Unknown);
    }
    let revoked = sqlx::query("DELETE FROM oidc_grants WHERE code_digest = ?1")
        .bind(digest)
        .execute(&mut *conn)
        .await
        .map_err(storage_error)?
        .rows_affected()
        > 0;
    Ok(CodeRedemption::Replayed {
        grant_revoked: revoked,
    })
}

/// The batch of [`OidcStore::issue_grant`]. With a code (`$11`), the code is spent first, while
/// unused, its account active and its session alive (a code goes with its session); the grant
/// is inserted only if that spent it (`changes()`: the rows of the statement just before, here
/// the code's `UPDATE`), and its tokens and the event only if the grant was. The last statement
/// answers whether it was: a refused code changes nothing, and the caller gets `Conflict`.
fn issue_grant_sql(code: bool, tokens: usize) -> String {
    let mut sql = String::new();
    let spent = if code {
        sql.push_str(
            "UPDATE oidc_codes SET redeemed_at = $9 WHERE digest = $11 AND redeemed_at IS NULL \
             AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = oidc_codes.account_id \
                         AND a.state = 'active') \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = oidc_codes.session_id); ",
        );
        "changes() = 1"
    } else {
        "1"
    };
    let issued = "EXISTS (SELECT 1 FROM oidc_grants WHERE id = $1)";
    sql.push_str(&format!(
        "INSERT INTO oidc_grants (id, client_id, account_id, session_id, scope, auth_time, \
         amr, acr, created_at, expires_at, code_digest) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE {spent}; "
    ));
    let mut next = 12;
    if tokens > 0 {
        sql.push_str(&format!(
            "INSERT INTO oidc_tokens (digest, grant_id, kind, expires_at, created_at) \
             SELECT * FROM ({}) WHERE {issued}; ",
            token_values(next, tokens)
        ));
        next += 5 * tokens;
    }
    sql.push_str(&super::audit::insert_event_if_sql(next, issued));
    sql.push_str(&format!("; SELECT {issued} AS issued"));
    sql
}

/// Binds the parameters of [`issue_grant_sql`], in order.
fn bind_issue_grant(
    query: super::group::Batch,
    grant: &Grant,
    tokens: &[NewToken],
    code_digest: Option<Vec<u8>>,
    event: &NewAuditEvent,
) -> super::group::Batch {
    let query = query
        .bind(grant.id.clone())
        .bind(grant.client_id.clone())
        .bind(grant.account_id.clone())
        .bind(grant.session_id.clone())
        .bind(grant.scope.clone())
        .bind(grant.auth_time)
        .bind(grant.amr.join(" "))
        .bind(grant.acr.clone())
        .bind(grant.created_at)
        .bind(grant.expires_at)
        .bind(code_digest);
    let query = bind_tokens(query, &grant.id, tokens, grant.created_at);
    super::audit::bind_event(query, event)
}

/// [`OidcStore::rotate_refresh_token`], on the writer.
async fn rotate_refresh_token(
    conn: &mut SqliteConnection,
    digest: Vec<u8>,
    client_id: String,
    successors: Vec<NewToken>,
    now: i64,
    event: Option<NewAuditEvent>,
) -> Result<RefreshOutcome, StorageError> {
    let spent: Option<String> = if successors.is_empty() {
        None
    } else {
        sqlx::query_scalar(
            "UPDATE oidc_tokens SET used_at = ?2 WHERE digest = ?1 AND kind = 'refresh' \
             AND used_at IS NULL AND expires_at > ?2 \
             AND EXISTS (SELECT 1 FROM oidc_grants g WHERE g.id = oidc_tokens.grant_id \
                         AND g.client_id = ?3 AND g.expires_at > ?2) \
             RETURNING grant_id",
        )
        .bind(&digest)
        .bind(now)
        .bind(&client_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(storage_error)?
    };
    if let Some(grant_id) = spent {
        // The successors and the event: one batch (inside the job's savepoint).
        let mut sql = insert_tokens_sql(1, successors.len());
        if event.is_some() {
            sql.push_str("; ");
            sql.push_str(&super::audit::insert_event_sql(1 + 5 * successors.len()));
        }
        let mut query = bind_tokens(sqlx::query(AssertSqlSafe(sql)), &grant_id, &successors, now);
        if let Some(event) = &event {
            query = super::audit::bind_event(query, event);
        }
        query.execute(&mut *conn).await.map_err(storage_error)?;
        return Ok(RefreshOutcome::Rotated);
    }
    // RFC 9700 §4.14.2: a spent refresh token presented again revokes its family.
    let replayed: Option<String> = sqlx::query_scalar(
        "SELECT t.grant_id FROM oidc_tokens t JOIN oidc_grants g ON g.id = t.grant_id \
         WHERE t.digest = ?1 AND t.kind = 'refresh' AND t.used_at IS NOT NULL \
         AND g.client_id = ?2",
    )
    .bind(&digest)
    .bind(&client_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(storage_error)?;
    let Some(grant_id) = replayed else {
        return Ok(RefreshOutcome::Unknown);
    };
    sqlx::query("DELETE FROM oidc_grants WHERE id = ?1")
        .bind(grant_id)
        .execute(&mut *conn)
        .await
        .map_err(storage_error)?;
    Ok(RefreshOutcome::Replayed)
}

/// The `VALUES` of `count` tokens of one grant (at least one), their parameters numbered from
/// `$first`, five per token, to go in a [`Batch`](super::group::Batch) (bound by [`bind_tokens`]).
fn token_values(first: usize, count: usize) -> String {
    let rows: Vec<String> = (0..count)
        .map(|i| {
            let n = first + i * 5;
            format!("(${n}, ${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4)
        })
        .collect();
    format!("VALUES {}", rows.join(", "))
}

/// The `INSERT` of the tokens of [`token_values`].
fn insert_tokens_sql(first: usize, count: usize) -> String {
    format!(
        "INSERT INTO oidc_tokens (digest, grant_id, kind, expires_at, created_at) {}",
        token_values(first, count)
    )
}

/// Binds the parameters of [`token_values`], in order.
fn bind_tokens(
    mut query: super::group::Batch,
    grant_id: &str,
    tokens: &[NewToken],
    now: i64,
) -> super::group::Batch {
    for token in tokens {
        query = query
            .bind(token.digest.clone())
            .bind(grant_id.to_string())
            .bind(token.kind.as_str())
            .bind(token.expires_at)
            .bind(now);
    }
    query
}
