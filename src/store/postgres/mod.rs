//! The PostgreSQL backend: several `sesame serve` nodes share one database and nothing else
//! (DESIGN.md §8). Connections are re-established by the pool after an outage, so `/readyz`
//! recovers by itself when the database returns.

mod accounts;
mod activation;
mod audit;
mod cas;
mod cas_logout;
mod keys;
mod lockout;
mod login;
mod mail;
mod mfa;
mod oidc;
mod one_time;
mod recovery;
mod sessions;

use std::str::FromStr as _;

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, Postgres};

use super::pool::Pool;

use super::{ConnectOptions, EmbeddedMigration, migration_error, migrator, storage_error};
use crate::storage::{HealthProbe, StorageError};

pub(crate) const MIGRATIONS: &[EmbeddedMigration] = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "accounts",
        include_str!("../../../migrations/postgres/0002_accounts.sql"),
    ),
    (
        3,
        "mail_outbox",
        include_str!("../../../migrations/postgres/0003_mail_outbox.sql"),
    ),
    (
        4,
        "activation",
        include_str!("../../../migrations/postgres/0004_activation.sql"),
    ),
    (
        5,
        "password_resets",
        include_str!("../../../migrations/postgres/0005_password_resets.sql"),
    ),
    (
        6,
        "lockout",
        include_str!("../../../migrations/postgres/0006_lockout.sql"),
    ),
    (
        7,
        "sessions",
        include_str!("../../../migrations/postgres/0007_sessions.sql"),
    ),
    (
        8,
        "cas",
        include_str!("../../../migrations/postgres/0008_cas.sql"),
    ),
    (
        9,
        "cas_single_logout",
        include_str!("../../../migrations/postgres/0009_cas_single_logout.sql"),
    ),
    (
        10,
        "oidc",
        include_str!("../../../migrations/postgres/0010_oidc.sql"),
    ),
    (
        11,
        "mfa",
        include_str!("../../../migrations/postgres/0011_mfa.sql"),
    ),
    (
        12,
        "oidc_code_replay",
        include_str!("../../../migrations/postgres/0012_oidc_code_replay.sql"),
    ),
];

/// Every port, on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: Pool<Postgres>,
}

impl PostgresStore {
    /// Connects and migrates (inside `options.schema` when set).
    pub async fn connect(options: &ConnectOptions) -> Result<Self, StorageError> {
        if let Some(schema) = &options.schema {
            return Self::connect_in_schema(options, schema).await;
        }
        let connect = PgConnectOptions::from_str(&options.url).map_err(storage_error)?;
        Self::connect_with(options, connect).await
    }

    /// Connects with every table inside `schema` (created if needed). Lets a test suite, or
    /// several deployments sharing one database, keep their tables apart.
    pub async fn connect_in_schema(
        options: &ConnectOptions,
        schema: &str,
    ) -> Result<Self, StorageError> {
        if !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StorageError::Other(format!(
                "schema name `{schema}` must be lower-case letters, digits and underscores"
            )));
        }
        let connect = PgConnectOptions::from_str(&options.url).map_err(storage_error)?;
        let mut conn = sqlx::PgConnection::connect_with(&connect)
            .await
            .map_err(storage_error)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut conn)
        .await
        .map_err(storage_error)?;
        conn.close().await.map_err(storage_error)?;
        Self::connect_with(options, connect.options([("search_path", schema)])).await
    }

    async fn connect_with(
        options: &ConnectOptions,
        connect: PgConnectOptions,
    ) -> Result<Self, StorageError> {
        // A pool of our own, without sqlx's round trip on every connection's return (ADR 0021).
        let pool = Pool::connect(connect, options.max_connections, options.acquire_timeout)
            .await
            .map_err(storage_error)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (idempotent; sqlx takes an advisory lock so that nodes
    /// starting together do not race).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let mut conn = self.pool.get().await.map_err(storage_error)?;
        migrator(MIGRATIONS)
            .run(&mut *conn)
            .await
            .map_err(migration_error)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl HealthProbe for PostgresStore {
    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
