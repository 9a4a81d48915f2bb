//! The connection pool of both stores (ADR 0021).
//!
//! `sqlx`'s pool pings every connection it takes back (`Floating::return_to_pool`, no option to
//! turn it off): one more round trip per query or transaction, to the server on PostgreSQL, to
//! the connection's thread on SQLite, which measured 10–20 % of the throughput of the CAS and
//! OIDC flows on PostgreSQL (`docs/performance.md`). This pool hands out the same `sqlx`
//! connections and takes them back without a round trip, except where one is owed:
//!
//! - a transaction dropped unfinished (its request went away): `ROLLBACK` before the connection
//!   is reused, so that its locks do not outlive it;
//! - anything left in a PostgreSQL connection's buffer (a `sqlx::Transaction` over a borrowed
//!   connection queues its `ROLLBACK` there): flushed and answered first;
//! - a query dropped while in flight, or failed with a connection error: the connection is
//!   closed, never reused (its next answer would be the dropped query's);
//! - a connection idle for [`IDLE_BEFORE_PING`]: pinged before it is handed out (a server may
//!   have closed it).
//!
//! Idle connections are kept as a stack: the most recently used goes out first, so that under
//! light load the same few server processes (or connection threads) answer, with warm caches. At
//! most `max_connections` are open; callers wait their turn in order (a fair semaphore: the
//! SQLite writer's FIFO, ADR 0017), at most `acquire_timeout`.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use either::Either;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::{ConnectOptions as _, Connection, Database, Execute, Executor, SqlStr};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Stopwatch;

/// A connection idle for longer than this is pinged before it is handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(10);

/// A connection idle for longer than this is closed rather than handed out.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long the round trip owed by a returned connection (a rollback, a flush) may take before
/// the connection is closed instead.
const RETURN_TIMEOUT: Duration = Duration::from_secs(5);

/// The options a connection of `DB` is opened with.
type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// The pool: cheap to clone (one `Arc`).
pub(crate) struct Pool<DB: Database> {
    inner: Arc<Inner<DB>>,
}

impl<DB: Database> Clone for Pool<DB> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<DB: Database> {
    connect: Options<DB>,
    /// `ROLLBACK` on a connection (a function, for `Drop` has no `Executor` bound to call it).
    rollback: for<'c> fn(&'c mut DB::Connection) -> BoxFuture<'c, Result<(), sqlx::Error>>,
    idle: Mutex<Vec<(DB::Connection, Stopwatch)>>,
    /// One permit per connection handed out: at most `max_connections` at once.
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

impl<DB: Database> std::fmt::Debug for Pool<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("available", &self.inner.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// What a connection coming back owes before it can be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    Nothing,
    /// Dropped inside a transaction.
    Rollback,
    /// Dropped with a query in flight, or after a connection error: not reusable.
    Close,
}

/// A connection handed out; it goes back to the pool when dropped.
pub(crate) struct Conn<DB: Database> {
    conn: Option<DB::Connection>,
    pool: Arc<Inner<DB>>,
    owed: Owed,
    /// Released after the connection is back among the idle ones.
    permit: Option<OwnedSemaphorePermit>,
}

/// `ROLLBACK` on `conn`.
fn rollback<'c, DB: Database>(
    conn: &'c mut DB::Connection,
) -> BoxFuture<'c, Result<(), sqlx::Error>>
where
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
{
    Box::pin(async move { conn.execute("ROLLBACK").await.map(|_| ()) })
}

impl<DB: Database> Pool<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// A pool opening connections with `connect`; one is opened now, to fail early.
    pub(crate) async fn connect(
        connect: Options<DB>,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let pool = Pool {
            inner: Arc::new(Inner {
                connect,
                rollback: rollback::<DB>,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max_connections.max(1) as usize)),
                acquire_timeout,
            }),
        };
        drop(pool.get().await?);
        Ok(pool)
    }

    /// A transaction on a connection of the pool (`BEGIN`); rolled back if dropped unfinished.
    pub(crate) async fn begin(&self) -> Result<Tx<DB>, sqlx::Error> {
        self.begin_with("BEGIN").await
    }

    /// A transaction opened by `statement` (SQLite: `BEGIN IMMEDIATE`).
    pub(crate) async fn begin_with(&self, statement: &'static str) -> Result<Tx<DB>, sqlx::Error> {
        let mut conn = self.get().await?;
        conn.owed = Owed::Close;
        let begun = (&mut *conn).execute(statement).await;
        conn.settle(&begun);
        begun?;
        conn.owed = Owed::Rollback;
        Ok(Tx { conn })
    }
}

impl<DB: Database> Pool<DB> {
    /// A connection: the most recently used idle one, or a new one.
    pub(crate) async fn get(&self) -> Result<Conn<DB>, sqlx::Error> {
        tokio::time::timeout(self.inner.acquire_timeout, self.get_now())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    async fn get_now(&self) -> Result<Conn<DB>, sqlx::Error> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let idle = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some((mut conn, since)) = idle else {
                break;
            };
            let idle_for = since.elapsed();
            if idle_for >= IDLE_TIMEOUT {
                let _ = conn.close().await;
                continue;
            }
            if idle_for >= IDLE_BEFORE_PING && conn.ping().await.is_err() {
                continue;
            }
            return Ok(self.hand_out(conn, permit));
        }
        let conn = self.inner.connect.connect().await?;
        Ok(self.hand_out(conn, permit))
    }

    fn hand_out(&self, conn: DB::Connection, permit: OwnedSemaphorePermit) -> Conn<DB> {
        Conn {
            conn: Some(conn),
            pool: self.inner.clone(),
            owed: Owed::Nothing,
            permit: Some(permit),
        }
    }

    /// Closes the idle connections and refuses new requests for one.
    pub(crate) async fn close(&self) {
        self.inner.permits.close();
        let idle = std::mem::take(
            &mut *self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (conn, _) in idle {
            let _ = conn.close().await;
        }
    }
}

impl<DB: Database> Deref for Conn<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.conn.as_ref().expect("a connection until dropped")
    }
}

impl<DB: Database> DerefMut for Conn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn.as_mut().expect("a connection until dropped")
    }
}

impl<DB: Database> Drop for Conn<DB> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let pool = self.pool.clone();
        if pool.permits.is_closed() || self.owed == Owed::Close {
            // Dropping the connection closes its socket; the server ends its session (and
            // rolls back whatever it held).
            return;
        }
        if self.owed == Owed::Nothing && !conn.should_flush() {
            pool.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((conn, Stopwatch::start()));
            return;
        }
        // A round trip is owed before reuse: on a task of its own, holding the permit (the
        // connection still counts against the limit), and only if a runtime is there.
        let rollback = (self.owed == Owed::Rollback).then_some(pool.rollback);
        let permit = self.permit.take();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let settle = async {
                match rollback {
                    Some(rollback) => rollback(&mut conn).await,
                    None => conn.ping().await,
                }
            };
            if let Ok(Ok(())) = tokio::time::timeout(RETURN_TIMEOUT, settle).await {
                pool.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((conn, Stopwatch::start()));
            }
            drop(permit);
        });
    }
}

impl<DB: Database> Conn<DB> {
    /// After a statement run with `owed` set to [`Owed::Close`] (a caller that goes away
    /// mid-query leaves an answer on the wire): nothing is owed any more, unless the statement
    /// failed with a connection error.
    fn settle<T>(&mut self, result: &Result<T, sqlx::Error>) {
        match result {
            Err(sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)) => {}
            _ => self.owed = Owed::Nothing,
        }
    }
}

/// A transaction on a pooled connection (an owned `sqlx::Transaction`); `ROLLBACK` when dropped
/// without [`Tx::commit`], before its connection is reused.
pub(crate) struct Tx<DB: Database> {
    conn: Conn<DB>,
}

impl<DB: Database> Tx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.end("COMMIT").await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        self.conn.owed = Owed::Close;
        let ended = (&mut *self.conn).execute(statement).await;
        self.conn.settle(&ended);
        if ended.is_err() && self.conn.owed == Owed::Nothing {
            // Refused (SQLite: a `COMMIT` that found the database busy leaves the transaction
            // open): rolled back before the connection is reused, as a dropped one.
            self.conn.owed = Owed::Rollback;
        }
        ended.map(|_| ())
    }
}

impl<DB: Database> Deref for Tx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for Tx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

/// `&Pool` runs a query on a connection of its own, like `&sqlx::Pool` (the store's functions
/// are generic over the executor).
impl<'p, DB: Database> Executor<'p> for &'_ Pool<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, DB>,
    {
        let pool = self.clone();
        // The results are gathered before the connection goes back: the store's queries return
        // a few rows.
        futures_util::stream::once(async move {
            let mut conn = pool.get().await?;
            conn.owed = Owed::Close;
            let all: Result<Vec<_>, _> = (&mut *conn).fetch_many(query).try_collect().await;
            conn.settle(&all);
            all
        })
        .map_ok(|all: Vec<_>| futures_util::stream::iter(all.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, DB>,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.get().await?;
            conn.owed = Owed::Close;
            let row = (&mut *conn).fetch_optional(query).await;
            conn.settle(&row);
            row
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.get().await?;
            conn.owed = Owed::Close;
            let statement = (&mut *conn).prepare_with(sql, parameters).await;
            conn.settle(&statement);
            statement
        })
    }
}

#[cfg(all(test, sesame_postgres_tests))]
mod tests {
    use std::str::FromStr as _;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::{PgConnection, Postgres};

    use super::*;

    async fn pool(max: u32, acquire_timeout: Duration) -> Pool<Postgres> {
        let url = std::env::var("SESAME_TEST_POSTGRES_URL")
            .expect("SESAME_TEST_POSTGRES_URL was set at build time and must be set to run");
        Pool::connect(
            PgConnectOptions::from_str(&url).unwrap(),
            max,
            acquire_timeout,
        )
        .await
        .unwrap()
    }

    /// The server process behind a connection: tells whether two are the same.
    async fn backend(executor: impl Executor<'_, Database = Postgres>) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(executor)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_most_recently_returned_connection_goes_out_again_and_no_more_than_the_limit() {
        let pool = pool(2, Duration::from_millis(300)).await;
        let first = pool.get().await.unwrap();
        let mut second = pool.get().await.unwrap();
        let second_pid = backend(&mut *second).await;
        // Both connections are out: a third caller waits, then gives up.
        assert!(matches!(pool.get().await, Err(sqlx::Error::PoolTimedOut)));
        drop(first);
        drop(second);
        // Taken back without a round trip, last in first out.
        assert_eq!(backend(&pool).await, second_pid);
        assert_eq!(backend(&pool).await, second_pid);
        pool.close().await;
        assert!(matches!(pool.get().await, Err(sqlx::Error::PoolClosed)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_dropped_unfinished_is_rolled_back_before_its_connection_is_reused() {
        let pool = pool(1, Duration::from_secs(5)).await;
        let table = format!("pool_test_{}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, n INT)"
        )))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET n = 0"
        )))
        .execute(&pool)
        .await
        .unwrap();
        {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET n = 99 WHERE id = 1"
            )))
            .execute(&mut *tx)
            .await
            .unwrap();
            // Dropped without commit, as when a request goes away.
        }
        // The only connection comes back once rolled back: outside the transaction, with the
        // row unchanged and its lock gone (another session may take it at once).
        let mut conn = pool.get().await.unwrap();
        let n: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT n FROM {table} WHERE id = 1"
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(n, 0, "the dropped transaction's update was rolled back");
        let url = std::env::var("SESAME_TEST_POSTGRES_URL").unwrap();
        let mut other = PgConnection::connect(&url).await.unwrap();
        sqlx::query("SET lock_timeout = '2s'")
            .execute(&mut other)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET n = 1 WHERE id = 1"
        )))
        .execute(&mut other)
        .await
        .expect("no lock left behind");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&mut other)
            .await
            .unwrap();
        // A committed transaction keeps its writes.
        drop(conn);
        let mut tx = pool.begin().await.unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(one, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_dropped_in_flight_never_hands_its_answer_to_the_next_caller() {
        let pool = pool(1, Duration::from_secs(5)).await;
        let first = backend(&pool).await;
        let slow = sqlx::query_scalar::<_, i32>("SELECT 7 FROM pg_sleep(0.5)").fetch_one(&pool);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slow)
                .await
                .is_err()
        );
        // The connection that carried it was closed; the next caller gets its own answer on a
        // new one.
        let answer: i32 = sqlx::query_scalar("SELECT 42")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(answer, 42);
        assert_ne!(backend(&pool).await, first);
    }
}

#[cfg(test)]
mod sqlite_tests {
    use std::str::FromStr as _;

    use sqlx::Sqlite;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sqlite_transaction_dropped_unfinished_leaves_neither_its_rows_nor_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            dir.path().join("p.db").display()
        ))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_millis(200));
        let writer = Pool::<Sqlite>::connect(options.clone(), 1, Duration::from_secs(5))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&writer)
            .await
            .unwrap();
        {
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
            // Dropped without commit, as when a request goes away.
        }
        // Another connection takes the write lock at once (within its 200-ms busy timeout)...
        let mut other = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the dropped transaction's write lock is released");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        // ...and the pool's connection, reused, is outside any transaction with the row gone.
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&writer)
            .await
            .unwrap();
        assert_eq!(count, 0);
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut other)
            .await
            .unwrap();
        assert_eq!(count, 1, "a committed transaction keeps its rows");
    }
}
