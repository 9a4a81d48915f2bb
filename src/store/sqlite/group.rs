//! Group commit on the SQLite writer (ADR 0017).
//!
//! With `synchronous=FULL`, every commit waits for the disk (an fsync of the WAL). The hot
//! single-statement writes (a CAS ticket issued or consumed, a session touched, a service noted
//! in a session, an OIDC code issued, an audit event) are therefore queued here: the first caller
//! takes every write waiting at that moment, runs them in one transaction on the writer and
//! commits once; each caller gets its own result only after that commit, so nothing is reported
//! done before it is durable. Under load many requests share one fsync; alone, a write costs what
//! it did (one statement, one commit).
//!
//! A job is one statement, a few whose partial application the job's caller accepts
//! ([`Statements::Several`]), or one [`Batch`] that applies all or nothing ([`Group::write_batch`]):
//! a failing statement is undone by SQLite on its own (statement rollback), a failing batch by
//! its savepoint, and the others of the group still commit. If the commit itself fails, every
//! job of the group gets the error. A group of one single-statement job runs without
//! `BEGIN`/`COMMIT`: SQLite commits the statement by itself (as durably); a group of one batch
//! carries its own `BEGIN IMMEDIATE` and `COMMIT` in the same message. Either way the writer's
//! thread is crossed once (ADR 0022).
//!
//! One kind of job is not reported durable: a [`Commit::Deferred`] batch, whose caller commits
//! durably again before it answers anyone (the login's attempt count, ADR 0024).

use std::sync::{Arc, Mutex, PoisonError};

use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection};

use crate::store::pool::Pool;

use crate::storage::StorageError;
use crate::store::storage_error;

pub(super) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a job runs: alone (the group is that job), or among others in the group's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Alone,
    InGroup,
}

/// One queued job: runs on the writer's connection and returns what to tell its caller once the
/// group's commit is known.
type Run = Box<
    dyn for<'c> FnOnce(
            &'c mut SqliteConnection,
            Place,
        ) -> BoxFuture<'c, Box<dyn FnOnce(bool) + Send>>
        + Send,
>;

struct Job {
    run: Run,
    /// Alone in its group, it needs no `BEGIN`/`COMMIT` message of the group's: one statement
    /// commits by itself, a batch carries its own.
    alone_ok: bool,
    commit: Commit,
}

/// When a job's commit must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// Before its caller hears of it (`synchronous=FULL`: the WAL is synced at the commit).
    Durable,
    /// Not before its caller's answer to the outside, which waits for a later durable commit:
    /// that commit's sync of the WAL takes the earlier frames with it, the WAL being written in
    /// order (ADR 0024). The transaction runs under `synchronous=NORMAL`, set just before its
    /// `BEGIN` (SQLite refuses the pragma inside a transaction) and put back to `FULL` in the
    /// same message, after its `COMMIT`. A group runs so only when all its jobs are deferred.
    Deferred,
}

impl Commit {
    /// The statements before a transaction's `BEGIN` and after its `COMMIT`.
    fn level(self) -> (&'static str, &'static str) {
        match self {
            // `FULL` stated again before a durable transaction: whatever a failed deferred
            // message left behind, no durable batch commits under `NORMAL`.
            Commit::Durable => ("PRAGMA synchronous = FULL; ", ""),
            Commit::Deferred => (
                "PRAGMA synchronous = NORMAL; ",
                "; PRAGMA synchronous = FULL",
            ),
        }
    }
}

/// Puts the writer back to `synchronous=FULL` after a deferred message failed part-way.
async fn restore_full(conn: &mut SqliteConnection) {
    if let Err(error) = sqlx::raw_sql("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await
    {
        // Only on a connection that no longer answers; the next durable batch or group states
        // `FULL` again before its `BEGIN` (Commit::level).
        tracing::error!(%error, "the SQLite writer could not be put back to synchronous=FULL");
    }
}

/// What a job holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Statements {
    /// One statement: alone in its group, it runs in autocommit.
    One,
    /// Several, always inside the group's transaction.
    Several,
}

/// A query of several statements, its parameters numbered across all of them: SQLite runs them
/// one after the other in one message to the writer's thread (ADR 0018, amended). Parameters
/// after the first statement are written `$N`, not `?N`: SQLite gives `?N` the index N in its
/// statement, and sqlx binds the indexes left unused before it as anonymous parameters, running
/// out of values before it reaches N; `$N` takes the statement's next index, and sqlx reads N
/// from its name.
pub(super) type Batch = sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// At most this many statements in one transaction.
const GROUP_LIMIT: usize = 128;

/// The writes waiting for the next group commit, and the turn of the caller writing one.
#[derive(Default)]
pub(super) struct Group {
    waiting: Mutex<Vec<Job>>,
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Group")
    }
}

impl Group {
    /// Runs `statements` on the writer in the next group and returns their result once the
    /// group has committed. [`Statements::Several`] always run inside the group's transaction;
    /// should one fail, those before it stay in the transaction: only for writes whose partial
    /// application is harmless.
    pub(super) async fn write<T, F>(
        self: &Arc<Self>,
        writer: &Pool<Sqlite>,
        kind: Statements,
        statements: F,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StorageError>>
            + Send
            + 'static,
    {
        self.enqueue(
            writer,
            matches!(kind, Statements::One),
            Commit::Durable,
            move |conn, _| statements(conn),
        )
        .await
    }

    /// Runs `batch` (its SQL, then what binds its parameters) on the writer in the next group,
    /// all or nothing, and gives its rows (those of every statement, in order) to `read` once
    /// the group has committed. One message to the writer's thread: inside a group, the batch
    /// is wrapped in its own savepoint (`SAVEPOINT job; …; RELEASE job`); alone, in its own
    /// transaction (`BEGIN IMMEDIATE; …; COMMIT`). Should a statement fail, the savepoint or
    /// the transaction is rolled back (a second message, on that path only) and the caller
    /// gets the error. The batch's parameters after its first statement are written `$N`
    /// ([`Batch`]); the wrapping statements have none.
    ///
    /// `commit` says when its commit must be on disk: [`Commit::Durable`] for every write but
    /// one; [`Commit::Deferred`] only for a write whose caller commits durably again before it
    /// answers, on every path (the attempt a login counts before its hash: ADR 0024).
    pub(super) async fn write_batch<T, B, R>(
        self: &Arc<Self>,
        writer: &Pool<Sqlite>,
        commit: Commit,
        sql: String,
        bind: B,
        read: R,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        B: FnOnce(Batch) -> Batch + Send + 'static,
        R: FnOnce(Vec<SqliteRow>) -> Result<T, StorageError> + Send + 'static,
    {
        self.enqueue(writer, true, commit, move |conn, place| {
            Box::pin(async move {
                let (before, after) = commit.level();
                let (open, close, undo) = match place {
                    Place::Alone => (
                        format!("{before}BEGIN IMMEDIATE"),
                        format!("COMMIT{after}"),
                        "ROLLBACK",
                    ),
                    // The group's own messages set the level around its transaction.
                    Place::InGroup => (
                        "SAVEPOINT job".to_string(),
                        "RELEASE job".to_string(),
                        "ROLLBACK TO job; RELEASE job",
                    ),
                };
                let query = sqlx::query(AssertSqlSafe(format!("{open}; {sql}; {close}")));
                match bind(query).fetch_all(&mut *conn).await {
                    Ok(rows) => read(rows),
                    Err(error) => {
                        // Nothing of a refused batch stays (all or nothing). The undo fails only
                        // where there is nothing to undo (SQLite already rolled the transaction
                        // back) or the connection itself failed, as the group's own `ROLLBACK`.
                        let _ = sqlx::raw_sql(undo).execute(&mut *conn).await;
                        if place == Place::Alone && commit == Commit::Deferred {
                            restore_full(conn).await;
                        }
                        Err(storage_error(error))
                    }
                }
            })
        })
        .await
    }

    async fn enqueue<T, F>(
        self: &Arc<Self>,
        writer: &Pool<Sqlite>,
        alone_ok: bool,
        commit: Commit,
        statements: F,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut SqliteConnection,
                Place,
            ) -> BoxFuture<'c, Result<T, StorageError>>
            + Send
            + 'static,
    {
        let (sender, mut receiver) = tokio::sync::oneshot::channel::<Result<T, StorageError>>();
        let work: Run = Box::new(move |conn, place| {
            Box::pin(async move {
                let result = statements(conn, place).await;
                Box::new(move |committed: bool| {
                    let _ = sender.send(match result {
                        Ok(_) if !committed => Err(StorageError::Unavailable(
                            "the transaction of this write did not commit".into(),
                        )),
                        other => other,
                    });
                }) as Box<dyn FnOnce(bool) + Send>
            })
        });
        self.lock_waiting().push(Job {
            run: work,
            alone_ok,
            commit,
        });
        let abandoned = || StorageError::Unavailable("the write was abandoned".into());
        loop {
            let turn = self.turn.lock().await;
            match receiver.try_recv() {
                Ok(result) => return result,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let jobs: Vec<Job> = {
                let mut waiting = self.lock_waiting();
                let take = waiting.len().min(GROUP_LIMIT);
                waiting.drain(..take).collect()
            };
            if jobs.is_empty() {
                // Our write is in a group that a caller who went away left running: wait for it.
                drop(turn);
                return receiver.await.unwrap_or_else(|_| Err(abandoned()));
            }
            // The group runs on its own task: if this caller goes away (its client hung up), the
            // writes of the others it carries still complete and are answered.
            let _ = tokio::spawn(run(writer.clone(), jobs)).await;
            drop(turn);
            if let Ok(result) = receiver.try_recv() {
                return result;
            }
        }
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One transaction for `jobs`; each is told whether it committed.
async fn run(writer: Pool<Sqlite>, mut jobs: Vec<Job>) {
    if jobs.len() == 1 && jobs[0].alone_ok {
        let job = jobs.remove(0);
        // Autocommit, or the batch's own transaction: the job's own success is its commit.
        // Without a connection the job is dropped unrun, and its caller told the write was
        // abandoned (as below).
        if let Ok(mut conn) = writer.get().await {
            (job.run)(&mut conn, Place::Alone).await(true);
        }
        return;
    }
    let mut tells = Vec::with_capacity(jobs.len());
    // Durable as soon as one job is (ADR 0024).
    let commit = match jobs.iter().all(|job| job.commit == Commit::Deferred) {
        true => Commit::Deferred,
        false => Commit::Durable,
    };
    let (before, after) = commit.level();
    let committed = async {
        let mut conn = writer.get().await.map_err(storage_error)?;
        if let Err(error) = sqlx::query(AssertSqlSafe(format!("{before}BEGIN IMMEDIATE")))
            .execute(&mut *conn)
            .await
        {
            if commit == Commit::Deferred {
                restore_full(&mut conn).await;
            }
            return Err(storage_error(error));
        }
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            tells.push((job.run)(&mut conn, Place::InGroup).await);
        }
        match sqlx::query(AssertSqlSafe(format!("COMMIT{after}")))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                if commit == Commit::Deferred {
                    restore_full(&mut conn).await;
                }
                Err(storage_error(error))
            }
        }
    }
    .await
    .is_ok();
    for tell in tells {
        tell(committed);
    }
}

/// Runs `work` inside a savepoint of the group's transaction: should it fail, what it wrote is
/// undone and the other jobs of the group are unaffected. For a job of several statements that
/// must apply all or nothing.
pub(super) async fn atomically<T, F>(
    conn: &mut SqliteConnection,
    work: F,
) -> Result<T, StorageError>
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StorageError>>,
{
    sqlx::query("SAVEPOINT job")
        .execute(&mut *conn)
        .await
        .map_err(storage_error)?;
    let result = work(&mut *conn).await;
    if result.is_err() {
        let _ = sqlx::query("ROLLBACK TO job").execute(&mut *conn).await;
    }
    sqlx::query("RELEASE job")
        .execute(&mut *conn)
        .await
        .map_err(storage_error)?;
    result
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;
    use std::time::Duration;

    use sqlx::Row as _;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    use super::*;

    async fn writer(dir: &tempfile::TempDir) -> Pool<Sqlite> {
        let options = SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            dir.path().join("g.db").display()
        ))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
        let writer = Pool::<Sqlite>::connect(options, 1, Duration::from_secs(5))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .execute(&writer)
            .await
            .unwrap();
        writer
    }

    async fn rows(writer: &Pool<Sqlite>) -> Vec<i64> {
        sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(writer)
            .await
            .unwrap()
    }

    /// Two inserts, `n` then `m`; a duplicate `m` makes the second fail after the first ran.
    async fn insert_two(
        group: &Arc<Group>,
        writer: &Pool<Sqlite>,
        n: i64,
        m: i64,
    ) -> Result<Vec<i64>, StorageError> {
        group
            .write_batch(
                writer,
                Commit::Durable,
                "INSERT INTO t VALUES (?1); INSERT INTO t VALUES ($2); SELECT n FROM t WHERE n IN ($1, $2) ORDER BY n"
                    .to_string(),
                move |query| query.bind(n).bind(m),
                |rows| {
                    rows.iter()
                        .map(|r| r.try_get::<i64, _>(0).map_err(storage_error))
                        .collect()
                },
            )
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_batch_gives_its_rows_and_a_failing_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir).await;
        let group = Arc::new(Group::default());
        assert_eq!(insert_two(&group, &writer, 1, 2).await.unwrap(), vec![1, 2]);
        // Its second statement fails (2 exists): its first (3) is undone with it.
        let refused = insert_two(&group, &writer, 3, 2).await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(rows(&writer).await, vec![1, 2]);
        // The writer is left outside any transaction: the next batch commits on its own.
        assert_eq!(insert_two(&group, &writer, 4, 5).await.unwrap(), vec![4, 5]);
        drop(group);
        let other =
            sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("g.db").display()))
                .await
                .unwrap();
        let seen: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(&other)
            .await
            .unwrap();
        assert_eq!(
            seen,
            vec![1, 2, 4, 5],
            "committed, as seen by another connection"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_in_a_group_is_undone_alone() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir).await;
        let group = Arc::new(Group::default());
        insert_two(&group, &writer, 100, 101).await.unwrap();
        // Hold the turn so that every write below waits in one group.
        let turn = group.turn.lock().await;
        let mut writes = Vec::new();
        for (n, m) in [(1, 2), (3, 100), (5, 6)] {
            let (group, writer) = (group.clone(), writer.clone());
            writes.push(tokio::spawn(async move {
                insert_two(&group, &writer, n, m).await
            }));
        }
        let (group2, writer2) = (group.clone(), writer.clone());
        writes.push(tokio::spawn(async move {
            group2
                .write(&writer2, Statements::One, |conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO t VALUES (7)")
                            .execute(conn)
                            .await
                            .map(|_| vec![7])
                            .map_err(storage_error)
                    })
                })
                .await
        }));
        while group.lock_waiting().len() < 4 {
            tokio::task::yield_now().await;
        }
        drop(turn);
        let mut results = Vec::new();
        for w in writes {
            results.push(w.await.unwrap());
        }
        assert_eq!(results[0].as_ref().unwrap(), &vec![1, 2]);
        assert!(results[1].is_err(), "the duplicate 100 refuses the batch");
        assert_eq!(results[2].as_ref().unwrap(), &vec![5, 6]);
        assert_eq!(results[3].as_ref().unwrap(), &vec![7]);
        assert_eq!(
            rows(&writer).await,
            vec![1, 2, 5, 6, 7, 100, 101],
            "3 undone with its batch"
        );
    }

    /// Inserts `n` in a batch (durable or deferred) and reads the writer's `synchronous` level
    /// inside its transaction (reading the pragma is allowed there; setting it is not).
    async fn insert_reading_level(
        group: &Arc<Group>,
        writer: &Pool<Sqlite>,
        n: i64,
        commit: Commit,
    ) -> Result<i64, StorageError> {
        let sql = "INSERT INTO t VALUES ($1); PRAGMA synchronous".to_string();
        let read = |rows: Vec<SqliteRow>| match rows.as_slice() {
            [row] => row.try_get::<i64, _>(0).map_err(storage_error),
            other => panic!("one row expected, got {}", other.len()),
        };
        let bind = move |q: Batch| q.bind(n);
        group.write_batch(writer, commit, sql, bind, read).await
    }

    async fn writer_level(writer: &Pool<Sqlite>) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(writer)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_deferred_batch_commits_under_normal_and_leaves_the_writer_at_full() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir).await;
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&writer)
            .await
            .unwrap();
        let group = Arc::new(Group::default());
        // NORMAL (1) inside the deferred transaction, FULL (2) inside a durable one and after
        // both.
        assert_eq!(
            insert_reading_level(&group, &writer, 1, Commit::Deferred)
                .await
                .unwrap(),
            1
        );
        assert_eq!(writer_level(&writer).await, 2);
        assert_eq!(
            insert_reading_level(&group, &writer, 2, Commit::Durable)
                .await
                .unwrap(),
            2
        );
        // A deferred batch refused (1 exists): nothing of it stays, and the writer is back at
        // FULL for the durable writes after it.
        let refused = insert_reading_level(&group, &writer, 1, Commit::Deferred).await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(writer_level(&writer).await, 2);
        assert_eq!(rows(&writer).await, vec![1, 2]);
        // Even a writer left at NORMAL by something else commits a durable batch under FULL.
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&writer)
            .await
            .unwrap();
        assert_eq!(
            insert_reading_level(&group, &writer, 3, Commit::Durable)
                .await
                .unwrap(),
            2
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_is_deferred_only_when_all_its_jobs_are() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(&dir).await;
        let group = Arc::new(Group::default());
        insert_reading_level(&group, &writer, 100, Commit::Durable)
            .await
            .unwrap();
        // Each job's level inside the group's transaction, or none where it is refused.
        for (jobs, expected) in [
            (
                vec![(1, Commit::Deferred), (2, Commit::Deferred)],
                [Some(1), Some(1)],
            ),
            (
                vec![(3, Commit::Deferred), (4, Commit::Durable)],
                [Some(2), Some(2)],
            ),
            (
                vec![(5, Commit::Deferred), (100, Commit::Deferred)],
                [Some(1), None],
            ),
        ] {
            // Hold the turn so that both writes wait in one group.
            let turn = group.turn.lock().await;
            let mut writes = Vec::new();
            for (n, commit) in jobs {
                let (group, writer) = (group.clone(), writer.clone());
                writes.push(tokio::spawn(async move {
                    insert_reading_level(&group, &writer, n, commit).await
                }));
            }
            while group.lock_waiting().len() < 2 {
                tokio::task::yield_now().await;
            }
            drop(turn);
            let results: Vec<Option<i64>> = futures_util::future::join_all(writes)
                .await
                .into_iter()
                .map(|r| r.unwrap().ok())
                .collect();
            assert_eq!(results, expected);
            assert_eq!(writer_level(&writer).await, 2, "FULL after the group");
        }
        // The duplicate 100 was refused alone; the rest of its deferred group committed.
        assert_eq!(rows(&writer).await, vec![1, 2, 3, 4, 5, 100]);
    }
}
