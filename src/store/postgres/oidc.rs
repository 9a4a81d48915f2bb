//! OpenID Connect clients, codes, grants, tokens and consents, on PostgreSQL.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use super::accounts::{WITH_RECORDS_COLUMNS, WITH_RECORDS_JOIN, account_with_records};
use super::audit::{EVENT_COLUMNS, bind_event};
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

fn grant_of(row: &PgRow) -> Result<Grant, StorageError> {
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

/// The columns of [`NewToken`]s as arrays (`$n::BYTEA[], $n+1::TEXT[], $n+2::BIGINT[]`), for an
/// `UNNEST` that stores a grant's tokens within another statement.
fn token_arrays(tokens: &[NewToken]) -> (Vec<Vec<u8>>, Vec<&'static str>, Vec<i64>) {
    (
        tokens.iter().map(|t| t.digest.clone()).collect(),
        tokens.iter().map(|t| t.kind.as_str()).collect(),
        tokens.iter().map(|t| t.expires_at).collect(),
    )
}

const GRANT_COLUMNS: &str = "g.id, g.client_id, g.account_id, g.session_id, g.scope, \
    g.auth_time, g.amr, g.acr, g.created_at, g.expires_at";

/// What a code was issued for, as [`code_of`] reads it.
const CODE_COLUMNS: &str = "client_id, redirect_uri, account_id, session_id, scope, nonce, \
    code_challenge, auth_time, amr, acr, expires_at";

fn code_of(row: &PgRow) -> Result<StoredCode, StorageError> {
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
impl ClientStore for PostgresStore {
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
        sqlx::query("INSERT INTO oidc_clients (id, definition, created_at) VALUES ($1, $2, $3)")
            .bind(&client.id)
            .bind(definition)
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    async fn update_oidc_client(&self, client: &OidcClient) -> Result<bool, StorageError> {
        let definition = serde_json::to_string(client)
            .map_err(|e| StorageError::Corrupt(format!("oidc client: {e}")))?;
        sqlx::query("UPDATE oidc_clients SET definition = $2 WHERE id = $1")
            .bind(&client.id)
            .bind(definition)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(storage_error)
    }

    async fn delete_oidc_client(&self, id: &str) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        // A removed client keeps no token, no consent.
        sqlx::query("DELETE FROM oidc_grants WHERE client_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        sqlx::query("DELETE FROM oidc_consents WHERE client_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        let removed = sqlx::query("DELETE FROM oidc_clients WHERE id = $1")
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
impl OidcStore for PostgresStore {
    async fn find_code(&self, digest: &[u8]) -> Result<Option<StoredCode>, StorageError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {CODE_COLUMNS} FROM oidc_codes WHERE digest = $1 AND redeemed_at IS NULL"
        )))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?
        .map(|row| code_of(&row))
        .transpose()
    }

    async fn take_code(&self, digest: &[u8], now: i64) -> Result<CodeRedemption, StorageError> {
        // One statement (ADR 0020): the code spent, with whether its account is active and its
        // session alive.
        let row = sqlx::query(AssertSqlSafe(format!(
            "WITH taken AS (UPDATE oidc_codes SET redeemed_at = $2 \
             WHERE digest = $1 AND redeemed_at IS NULL RETURNING {CODE_COLUMNS}) \
             SELECT t.*, \
             EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.account_id AND a.state = 'active') \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = t.session_id) AS live \
             FROM taken t"
        )))
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage_error)?;
        if let Some(row) = row {
            return Ok(CodeRedemption::Redeemed {
                code: Box::new(code_of(&row)?),
                live: row.try_get("live").map_err(storage_error)?,
            });
        }
        // RFC 6749 §4.1.2: used before. Two statements, in this order: the mark first (it waits
        // for an `issue_grant` holding the code's row), then the revocation, which sees the
        // grant of an `issue_grant` that went first.
        let replayed = sqlx::query(
            "UPDATE oidc_codes SET replayed_at = COALESCE(replayed_at, $2) WHERE digest = $1",
        )
        .bind(digest)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(storage_error)?
        .rows_affected()
            > 0;
        if !replayed {
            return Ok(CodeRedemption::Unknown);
        }
        let revoked = sqlx::query("DELETE FROM oidc_grants WHERE code_digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(storage_error)?
            .rows_affected()
            > 0;
        Ok(CodeRedemption::Replayed {
            grant_revoked: revoked,
        })
    }

    async fn issue_grant(
        &self,
        grant: &Grant,
        tokens: &[NewToken],
        code_digest: Option<&[u8]>,
        event: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        // One statement: the code spent (while unused, its account active and its session
        // alive; its row stays locked until the commit, see `take_code`), the grant, its tokens
        // and the event. Without its code spent, nothing is inserted.
        let (digests, kinds, expiries) = token_arrays(tokens);
        let query = sqlx::query(AssertSqlSafe(format!(
            "WITH code AS (UPDATE oidc_codes c SET redeemed_at = $9 \
             WHERE c.digest = $11 AND c.redeemed_at IS NULL \
             AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = c.account_id \
                         AND a.state = 'active') \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = c.session_id) RETURNING c.digest), \
             g AS (INSERT INTO oidc_grants (id, client_id, account_id, session_id, scope, \
             auth_time, amr, acr, created_at, expires_at, code_digest) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
             WHERE $11::BYTEA IS NULL OR EXISTS (SELECT 1 FROM code) RETURNING id), \
             t AS (INSERT INTO oidc_tokens (digest, grant_id, kind, expires_at, created_at) \
             SELECT x.digest, g.id, x.kind, x.expires_at, $9 FROM g, \
             UNNEST($12::BYTEA[], $13::TEXT[], $14::BIGINT[]) AS x (digest, kind, expires_at)), \
             e AS (INSERT INTO audit_events ({EVENT_COLUMNS}) \
             SELECT $15, $16, $17, $18, $19, $20, $21, $22 FROM g) \
             SELECT COUNT(*) AS issued FROM g"
        )))
        .bind(&grant.id)
        .bind(&grant.client_id)
        .bind(&grant.account_id)
        .bind(&grant.session_id)
        .bind(&grant.scope)
        .bind(grant.auth_time)
        .bind(grant.amr.join(" "))
        .bind(&grant.acr)
        .bind(grant.created_at)
        .bind(grant.expires_at)
        .bind(code_digest)
        .bind(digests)
        .bind(kinds)
        .bind(expiries);
        let issued: i64 = bind_event(query, event)
            .fetch_one(&self.pool)
            .await
            .map_err(storage_error)?
            .try_get("issued")
            .map_err(storage_error)?;
        if issued == 0 {
            // The code was used (or is gone with its session, or its account was deactivated)
            // since it was read.
            return Err(StorageError::Conflict);
        }
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        digest: &[u8],
        client_id: &str,
        successors: &[NewToken],
        now: i64,
        event: Option<&NewAuditEvent>,
    ) -> Result<RefreshOutcome, StorageError> {
        if !successors.is_empty() {
            // One statement: the token spent, its successors and the event.
            let (digests, kinds, expiries) = token_arrays(successors);
            let audited = event
                .map(|_| {
                    format!(
                        ", e AS (INSERT INTO audit_events ({EVENT_COLUMNS}) \
                         SELECT $7, $8, $9, $10, $11, $12, $13, $14 FROM spent)"
                    )
                })
                .unwrap_or_default();
            let query = sqlx::query(AssertSqlSafe(format!(
                "WITH spent AS (UPDATE oidc_tokens SET used_at = $2 \
                 WHERE digest = $1 AND kind = 'refresh' AND used_at IS NULL AND expires_at > $2 \
                 AND EXISTS (SELECT 1 FROM oidc_grants g WHERE g.id = oidc_tokens.grant_id \
                             AND g.client_id = $3 AND g.expires_at > $2) \
                 RETURNING grant_id), \
                 t AS (INSERT INTO oidc_tokens (digest, grant_id, kind, expires_at, created_at) \
                 SELECT x.digest, spent.grant_id, x.kind, x.expires_at, $2 FROM spent, \
                 UNNEST($4::BYTEA[], $5::TEXT[], $6::BIGINT[]) AS x (digest, kind, expires_at)) \
                 {audited} \
                 SELECT grant_id FROM spent"
            )))
            .bind(digest)
            .bind(now)
            .bind(client_id)
            .bind(digests)
            .bind(kinds)
            .bind(expiries);
            let query = match event {
                Some(event) => bind_event(query, event),
                None => query,
            };
            if query
                .fetch_optional(&self.pool)
                .await
                .map_err(storage_error)?
                .is_some()
            {
                return Ok(RefreshOutcome::Rotated);
            }
        }
        // RFC 9700 §4.14.2: a spent refresh token presented again revokes its family.
        let revoked = sqlx::query(
            "DELETE FROM oidc_grants WHERE id = (SELECT t.grant_id FROM oidc_tokens t \
             JOIN oidc_grants g ON g.id = t.grant_id WHERE t.digest = $1 AND t.kind = 'refresh' \
             AND t.used_at IS NOT NULL AND g.client_id = $2)",
        )
        .bind(digest)
        .bind(client_id)
        .execute(&self.pool)
        .await
        .map_err(storage_error)?
        .rows_affected();
        Ok(if revoked > 0 {
            RefreshOutcome::Replayed
        } else {
            RefreshOutcome::Unknown
        })
    }

    async fn insert_code(
        &self,
        digest: &[u8],
        code: &StoredCode,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO oidc_codes (digest, client_id, redirect_uri, account_id, session_id, \
             scope, nonce, code_challenge, auth_time, amr, acr, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(storage_error)
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
             WHERE t.digest = $1 AND t.used_at IS NULL AND t.expires_at > $2 \
             AND g.expires_at > $2"
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
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT t.kind, t.grant_id FROM oidc_tokens t JOIN oidc_grants g ON g.id = t.grant_id \
             WHERE t.digest = $1 AND g.client_id = $2",
        )
        .bind(digest)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage_error)?;
        let revoked = match found {
            // RFC 7009 §2.1: revoking a refresh token revokes its grant's access tokens too.
            Some((kind, grant_id)) if kind == "refresh" => {
                sqlx::query("DELETE FROM oidc_grants WHERE id = $1")
                    .bind(grant_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage_error)?
                    .rows_affected()
                    > 0
            }
            Some(_) => {
                sqlx::query("DELETE FROM oidc_tokens WHERE digest = $1")
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
            "SELECT scopes FROM oidc_consents WHERE account_id = $1 AND client_id = $2",
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
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, client_id) \
             DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at",
        )
        .bind(account_id)
        .bind(client_id)
        .bind(scopes.join(" "))
        .bind(now)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(storage_error)
    }

    async fn delete_consents(
        &self,
        account_id: &str,
        client_id: Option<&str>,
    ) -> Result<u64, StorageError> {
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        let deleted = sqlx::query(
            "DELETE FROM oidc_consents WHERE account_id = $1 AND ($2::TEXT IS NULL OR client_id = $2)",
        )
        .bind(account_id)
        .bind(client_id)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?
        .rows_affected();
        sqlx::query(
            "DELETE FROM oidc_grants WHERE account_id = $1 AND ($2::TEXT IS NULL OR client_id = $2)",
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
            "SELECT client_id, scopes, granted_at FROM oidc_consents WHERE account_id = $1 \
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
        let codes = sqlx::query("DELETE FROM oidc_codes WHERE expires_at < $1")
            .bind(now - 600)
            .execute(&self.pool)
            .await
            .map_err(storage_error)?
            .rows_affected();
        let grants = sqlx::query("DELETE FROM oidc_grants WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(storage_error)?
            .rows_affected();
        let tokens = sqlx::query("DELETE FROM oidc_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(storage_error)?
            .rows_affected();
        Ok(codes + grants + tokens)
    }
}
