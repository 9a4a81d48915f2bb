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
//! A job is one statement, or a few whose partial application the job's caller accepts
//! ([`Statements::Several`]): a failing statement is undone by SQLite on its own (statement
//! rollback) and the others of the group still commit. If the commit itself fails, every job of the group gets
//! the error. A group of one single-statement job runs without `BEGIN`/`COMMIT`: SQLite commits
//! the statement by itself (as durably), and the writer's thread is crossed once instead of three
//! times.

use std::sync::{Arc, Mutex, PoisonError};

use sqlx::{Sqlite, SqliteConnection};

use crate::store::pool::Pool;

use crate::storage::StorageError;
use crate::store::storage_error;

pub(super) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One queued job: runs on the writer's connection and returns what to tell its caller once the
/// group's commit is known.
type Run = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Box<dyn FnOnce(bool) + Send>>
        + Send,
>;

struct Job {
    run: Run,
    /// One statement: alone in its group, it needs no explicit transaction.
    single: bool,
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
        let (sender, mut receiver) = tokio::sync::oneshot::channel::<Result<T, StorageError>>();
        let work: Run = Box::new(move |conn| {
            Box::pin(async move {
                let result = statements(conn).await;
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
            single: matches!(kind, Statements::One),
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
    if jobs.len() == 1 && jobs[0].single {
        let job = jobs.remove(0);
        // Autocommit: the statement's own success is its commit. Without a connection the job
        // is dropped unrun, and its caller told the write was abandoned (as below).
        if let Ok(mut conn) = writer.get().await {
            (job.run)(&mut conn).await(true);
        }
        return;
    }
    let mut tells = Vec::with_capacity(jobs.len());
    let committed = async {
        let mut conn = writer.get().await.map_err(storage_error)?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(storage_error)?;
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            tells.push((job.run)(&mut conn).await);
        }
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
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
