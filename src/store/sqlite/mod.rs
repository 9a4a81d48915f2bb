//! The SQLite backend: the embedded default (one node). WAL journal, `synchronous=FULL`, foreign
//! keys on, a busy timeout so concurrent writers wait instead of failing (DESIGN.md §8).

mod accounts;
mod activation;
mod audit;
mod cas;
mod cas_logout;
mod group;
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
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use super::pool::Pool;
use super::{ConnectOptions, EmbeddedMigration, migration_error, migrator, storage_error};
use crate::storage::{HealthProbe, StorageError};

pub(crate) const MIGRATIONS: &[EmbeddedMigration] = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "accounts",
        include_str!("../../../migrations/sqlite/0002_accounts.sql"),
    ),
    (
        3,
        "mail_outbox",
        include_str!("../../../migrations/sqlite/0003_mail_outbox.sql"),
    ),
    (
        4,
        "activation",
        include_str!("../../../migrations/sqlite/0004_activation.sql"),
    ),
    (
        5,
        "password_resets",
        include_str!("../../../migrations/sqlite/0005_password_resets.sql"),
    ),
    (
        6,
        "lockout",
        include_str!("../../../migrations/sqlite/0006_lockout.sql"),
    ),
    (
        7,
        "sessions",
        include_str!("../../../migrations/sqlite/0007_sessions.sql"),
    ),
    (
        8,
        "cas",
        include_str!("../../../migrations/sqlite/0008_cas.sql"),
    ),
    (
        9,
        "cas_single_logout",
        include_str!("../../../migrations/sqlite/0009_cas_single_logout.sql"),
    ),
    (
        10,
        "oidc",
        include_str!("../../../migrations/sqlite/0010_oidc.sql"),
    ),
    (
        11,
        "mfa",
        include_str!("../../../migrations/sqlite/0011_mfa.sql"),
    ),
    (
        12,
        "oidc_code_replay",
        include_str!("../../../migrations/sqlite/0012_oidc_code_replay.sql"),
    ),
];

/// Every port, on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers: `database.max_connections` connections opened with `query_only`, so that a write
    /// sent here by mistake fails instead of competing for the lock.
    pool: Pool<Sqlite>,
    /// The writer: one connection. SQLite has one writer at a time; every write and every
    /// transaction queues here, in order (the pool's FIFO), instead of sleeping in SQLite's busy
    /// handler, which wakes waiters late and makes the tail latency explode under load (ADR 0017).
    writer: Pool<Sqlite>,
    /// Group commit of the hot single-statement writes, on the writer.
    group: std::sync::Arc<group::Group>,
}

/// `PRAGMA cache_size` of each reader connection (negative: KiB).
const READER_CACHE_SIZE: &str = "-512";
/// `PRAGMA cache_size` of the writer (negative: KiB): every write goes through its one
/// connection, an import's 50,000 rows included; with SQLite's default 2,000 KiB their random
/// index pages were read back from the file some 325,000 times (`pread`). Pages are allocated
/// as they are used.
const WRITER_CACHE_SIZE: &str = "-16384";

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates the database.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, StorageError> {
        let path = options
            .url
            .strip_prefix("sqlite://")
            .unwrap_or(&options.url)
            .split('?')
            .next()
            .unwrap_or_default();
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StorageError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let connect = SqliteConnectOptions::from_str(&options.url)
            .map_err(storage_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout);
        // The writer first: it creates the file and switches it to WAL before any reader opens it.
        // The store's own pools (ADR 0021): no round trip to a connection's thread when it is
        // handed out or taken back.
        let writer = Pool::connect(
            connect.clone().pragma("cache_size", WRITER_CACHE_SIZE),
            1,
            options.acquire_timeout,
        )
        .await
        .map_err(storage_error)?;
        let store = Self {
            pool: writer.clone(),
            writer,
            group: std::sync::Arc::default(),
        };
        store.migrate().await?;
        // Each connection keeps its own page cache (SQLite's default: 2,000 KiB) in the heap of
        // its own thread; the readers share the operating system's file cache anyway, so 512 KiB
        // each keeps the hot index pages and bounds the process's memory (issue 8: RSS during a
        // login storm).
        let pool = Pool::connect(
            connect
                .pragma("query_only", "ON")
                .pragma("cache_size", READER_CACHE_SIZE),
            options.max_connections,
            options.acquire_timeout,
        )
        .await
        .map_err(storage_error)?;
        Ok(Self { pool, ..store })
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let mut conn = self.writer.get().await.map_err(storage_error)?;
        migrator(MIGRATIONS)
            .run(&mut *conn)
            .await
            .map_err(migration_error)
    }

    /// Runs one write statement in the next group commit (see [`group`]).
    async fn grouped<T, F>(&self, statement: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::SqliteConnection,
            ) -> group::BoxFuture<'c, Result<T, StorageError>>
            + Send
            + 'static,
    {
        self.group
            .write(&self.writer, group::Statements::One, statement)
            .await
    }

    /// Runs `statements` as one job of the group commit, all or nothing: inside a savepoint
    /// ([`group::atomically`]), so that a failure undoes its own statements and no one else's.
    async fn grouped_atomically<T, F>(&self, statements: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::SqliteConnection,
            ) -> group::BoxFuture<'c, Result<T, StorageError>>
            + Send
            + 'static,
    {
        self.group
            .write(&self.writer, group::Statements::Several, move |conn| {
                Box::pin(async move { group::atomically(conn, statements).await })
            })
            .await
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

#[async_trait]
impl HealthProbe for SqliteStore {
    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_database_runs_in_wal_with_full_sync_foreign_keys_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&ConnectOptions {
            url: format!("sqlite://{}", dir.path().join("nested/dir/s.db").display()),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_millis(4321),
            schema: None,
        })
        .await
        .unwrap();
        let mut conn = store.pool.get().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "FULL");
        assert_eq!(foreign_keys, 1);
        assert_eq!(busy, 4321);
    }
}
