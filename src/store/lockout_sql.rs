//! The lockout's counting upsert, shared by both backends: the same statement, written with each
//! dialect's two-argument maximum and minimum (SQLite's scalar `MAX`/`MIN`, PostgreSQL's
//! `GREATEST`/`LEAST`).

/// The words of one SQL dialect that the counting upsert needs.
pub(crate) struct Dialect {
    /// The larger of two values.
    pub greatest: &'static str,
    /// The smaller of two values.
    pub least: &'static str,
}

pub(crate) const SQLITE: Dialect = Dialect {
    greatest: "MAX",
    least: "MIN",
};

pub(crate) const POSTGRES: Dialect = Dialect {
    greatest: "GREATEST",
    least: "LEAST",
};

/// The counting upsert of one attempt (DESIGN.md §6), for the counter `identifier` and the
/// "known" flag `known`, given as SQL expressions (parameters, or subqueries of a statement or a
/// batch), returning `columns` unless the lock refuses the attempt; its other parameters are `$3`
/// to `$8`: now, the failures that lock, the first lock's seconds, the longest lock's seconds,
/// the failures that lock for good, and the time before which a last failure is stale.
///
/// One statement: the lock test, the count and the new lock cannot be separated by a concurrent
/// attempt on any node. The `WHERE` of the upsert refuses a locked identifier; all right-hand
/// sides read the row as it was before this attempt. A counter whose last failure is older than
/// the reset time counts from zero again, for real and unknown identifiers alike (otherwise an
/// old count would tell a real account from an unknown one, whose counter is purged); never a
/// hard lock, never during a lock (the `WHERE` refuses those first). Parameters are written `$N`
/// so that, on SQLite, the statement can follow another in a batch.
pub(crate) fn count_statement(
    dialect: &Dialect,
    identifier: &str,
    known: &str,
    columns: &str,
) -> String {
    let Dialect { greatest, least } = dialect;
    let stale = "failure_counters.last_failure_at < $8";
    let failures = format!("(CASE WHEN {stale} THEN 0 ELSE failure_counters.failures END)");
    let lock = format!("(CASE WHEN {stale} THEN 0 ELSE failure_counters.lock_seconds END)");
    let until = format!("(CASE WHEN {stale} THEN NULL ELSE failure_counters.locked_until END)");
    format!(
        "INSERT INTO failure_counters \
           (identifier, failures, known, last_failure_at, lock_seconds, locked_until, hard_locked_at) \
         VALUES ({identifier}, 1, {known}, $3, \
           CASE WHEN 1 >= $4 THEN $5 ELSE 0 END, \
           CASE WHEN 1 >= $4 THEN $3 + $5 END, \
           CASE WHEN 1 >= $7 THEN $3 END) \
         ON CONFLICT (identifier) DO UPDATE SET \
           failures = {failures} + 1, \
           known = {greatest}(failure_counters.known, excluded.known), \
           last_failure_at = excluded.last_failure_at, \
           lock_seconds = CASE \
             WHEN {failures} + 1 < $4 THEN 0 \
             WHEN {lock} = 0 THEN $5 \
             ELSE {least}({lock} * 2, $6) END, \
           locked_until = CASE \
             WHEN {failures} + 1 < $4 THEN {until} \
             WHEN {lock} = 0 THEN $3 + $5 \
             ELSE $3 + {least}({lock} * 2, $6) END, \
           hard_locked_at = CASE WHEN {failures} + 1 >= $7 THEN $3 \
             ELSE failure_counters.hard_locked_at END \
         WHERE failure_counters.hard_locked_at IS NULL \
           AND (failure_counters.locked_until IS NULL OR failure_counters.locked_until <= $3) \
         RETURNING {columns}"
    )
}
