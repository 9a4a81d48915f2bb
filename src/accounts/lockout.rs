//! Lockout (DESIGN.md §6): failures are counted per canonical submitted identifier, whether or not
//! an account exists, in the database (atomic upserts shared by every node), on every credential
//! path. After `max_login_failures` consecutive failures a temporary lock starts at
//! `wait_increment` and doubles with each further failure up to `max_wait`; after
//! `permanent_lockout_after` failures (NIST SP 800-63B §5.2.2's ceiling of 100 by default) a hard
//! lock that only an administrator or a completed password reset lifts. A success resets the
//! count; counters of unknown identifiers are forgotten after `failure_reset_time`.
//!
//! Security: because unknown identifiers lock exactly like real ones, a page may say "temporarily
//! locked, try again in N minutes" without revealing that an account exists.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::storage::StorageError;

/// The thresholds (names follow Keycloak's brute-force detection settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures before the first temporary lock.
    pub max_login_failures: i64,
    /// The first temporary lock; each further failure doubles it.
    pub wait_increment: Duration,
    /// The longest temporary lock.
    pub max_wait: Duration,
    /// Consecutive failures that hard-lock the identifier.
    pub permanent_lockout_after: i64,
    /// How long counters of unknown identifiers are kept after their last failure.
    pub failure_reset_time: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_login_failures: 5,
            wait_increment: Duration::from_secs(60),
            max_wait: Duration::from_secs(15 * 60),
            permanent_lockout_after: 100,
            failure_reset_time: Duration::from_secs(12 * 3600),
        }
    }
}

impl LockoutPolicy {
    /// The first temporary lock and the longest one, in seconds (what the store's one-statement
    /// count needs).
    pub fn lock_bounds(&self) -> (i64, i64) {
        let longest = self.max_wait.as_secs().max(1) as i64;
        let first = (self.wait_increment.as_secs().max(1) as i64).min(longest);
        (first, longest)
    }

    /// The temporary lock that follows the `failures`-th consecutive failure, if any.
    pub fn lock_after(&self, failures: i64) -> Option<Duration> {
        if failures < self.max_login_failures {
            return None;
        }
        let doublings = (failures - self.max_login_failures).min(32) as u32;
        let lock = self
            .wait_increment
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max_wait);
        Some(lock.min(self.max_wait))
    }
}

/// A stored counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCounter {
    /// Consecutive attempts whose password was checked (and that have not been followed by a
    /// success).
    pub failures: i64,
    pub locked_until: Option<i64>,
    pub hard_locked_at: Option<i64>,
    /// Attempts refused while locked: no password was checked, so they are not failures and do
    /// not lengthen the lock, but the helpdesk sees them.
    pub refused: i64,
    /// Whether an account answers to this identifier.
    pub known: bool,
    pub last_failure_at: i64,
}

impl FailureCounter {
    /// Where the identifier stands at `now`.
    pub fn status(&self, now: i64) -> LockStatus {
        match (self.hard_locked_at, self.locked_until) {
            (Some(_), _) => LockStatus::Hard,
            (None, Some(until)) if until > now => LockStatus::Temporary { until },
            _ => LockStatus::Open,
        }
    }
}

/// Where an identifier stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStatus {
    Open,
    /// Locked until this instant (Unix seconds).
    Temporary {
        until: i64,
    },
    /// Until an administrator or a password reset lifts it.
    Hard,
}

/// The storage port of lockout.
#[async_trait]
pub trait LockoutStore: Send + Sync {
    async fn find_failure_counter(
        &self,
        identifier: &str,
    ) -> Result<Option<FailureCounter>, StorageError>;
    /// In one atomic statement (`INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING`): if the
    /// identifier is not locked at `now`, counts one attempt (from zero again if the counter was
    /// idle for longer than the policy's reset time), sets the temporary lock this count calls
    /// for (doubling the previous one, up to the policy's longest) and the hard lock, and
    /// returns the new counter; if it is locked, changes nothing and returns `None`. Of any number
    /// of concurrent attempts on any node, only those the policy allows get through.
    async fn count_attempt(
        &self,
        identifier: &str,
        known: bool,
        now: i64,
        policy: &LockoutPolicy,
    ) -> Result<Option<FailureCounter>, StorageError>;
    /// Takes back an admitted attempt whose credential could not be checked after all (the
    /// hashing queue was full). A lock it set stays.
    async fn refund_attempt(&self, identifier: &str) -> Result<(), StorageError>;
    /// Counts an attempt refused because of a lock; returns the counter.
    async fn count_refused(&self, identifier: &str)
    -> Result<Option<FailureCounter>, StorageError>;
    /// Forgets the counter (success, unlock, reset); `false` if there was none.
    async fn delete_failure_counter(&self, identifier: &str) -> Result<bool, StorageError>;
    /// Deletes counters of unknown identifiers whose last failure is before `before` (never hard
    /// locks); returns how many.
    async fn purge_unknown_failure_counters(&self, before: i64) -> Result<u64, StorageError>;
}

/// What an attempt that was let through would leave behind if its credential turns out wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    pub failures: i64,
    pub status: LockStatus,
    /// This attempt is the one that hard-locked the identifier (mail the contacts once).
    pub newly_hard_locked: bool,
}

/// The answer to "may this identifier try a credential now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go on and check the credential. The attempt is already counted as a failure (so that
    /// concurrent attempts cannot slip past the lock); call [`Lockout::record_success`] if the
    /// credential was right.
    Admitted(FailureOutcome),
    /// Locked: do not check anything.
    Refused(LockStatus),
}

/// The lockout service.
pub struct Lockout {
    store: Arc<dyn LockoutStore>,
    clock: Arc<dyn Clock>,
    policy: LockoutPolicy,
}

impl Lockout {
    pub fn new(store: Arc<dyn LockoutStore>, clock: Arc<dyn Clock>, policy: LockoutPolicy) -> Self {
        Self {
            store,
            clock,
            policy,
        }
    }

    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    /// Whether the identifier may try now.
    pub async fn status(&self, identifier: &str) -> Result<LockStatus, StorageError> {
        let now = self.clock.unix_now();
        Ok(self
            .store
            .find_failure_counter(identifier)
            .await?
            .map_or(LockStatus::Open, |c| c.status(now)))
    }

    /// The stored counter (for the helpdesk).
    pub async fn counter(&self, identifier: &str) -> Result<Option<FailureCounter>, StorageError> {
        self.store.find_failure_counter(identifier).await
    }

    /// Asks to check a credential for `identifier` (an existing account or not: `known` only
    /// decides how long the counter is kept). Counted before the check, atomically with the lock
    /// test, so a burst of concurrent attempts gets exactly as many checks as the policy allows.
    pub async fn attempt(&self, identifier: &str, known: bool) -> Result<Admission, StorageError> {
        let now = self.clock.unix_now();
        let counted = self
            .store
            .count_attempt(identifier, known, now, &self.policy)
            .await?;
        self.admission(identifier, counted, now).await
    }

    /// The answer to an attempt on `identifier` counted at `now` by
    /// [`LockoutStore::count_attempt`] (or a statement doing the same, such as
    /// `LoginStore::find_candidate_counting`): `counted` is what it returned.
    pub async fn admission(
        &self,
        identifier: &str,
        counted: Option<FailureCounter>,
        now: i64,
    ) -> Result<Admission, StorageError> {
        match counted {
            Some(counter) => Ok(Admission::Admitted(FailureOutcome {
                failures: counter.failures,
                status: counter.status(now),
                // Once hard-locked nothing more is admitted, so only the attempt that set it
                // sees its own timestamp.
                newly_hard_locked: counter.hard_locked_at == Some(now),
            })),
            None => {
                let status = self
                    .store
                    .count_refused(identifier)
                    .await?
                    .map_or(LockStatus::Open, |c| c.status(now));
                // The lock ran out between the two statements: say "a moment".
                Ok(Admission::Refused(match status {
                    LockStatus::Open => LockStatus::Temporary { until: now + 1 },
                    locked => locked,
                }))
            }
        }
    }

    /// Takes back an admitted attempt that was not checked (see [`LockoutStore::refund_attempt`]).
    pub async fn refund(&self, identifier: &str) -> Result<(), StorageError> {
        self.store.refund_attempt(identifier).await
    }

    /// A success resets the count (DESIGN.md §6).
    pub async fn record_success(&self, identifier: &str) -> Result<(), StorageError> {
        self.store
            .delete_failure_counter(identifier)
            .await
            .map(|_| ())
    }

    /// Lifts any lock (`sesame admin unlock`, or a completed password reset).
    pub async fn unlock(&self, identifier: &str) -> Result<bool, StorageError> {
        self.store.delete_failure_counter(identifier).await
    }

    /// Forgets old counters of unknown identifiers (the maintenance pass).
    pub async fn purge(&self) -> Result<u64, StorageError> {
        let before = self.clock.unix_now() - self.policy.failure_reset_time.as_secs() as i64;
        self.store.purge_unknown_failure_counters(before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_at_the_fifth_failure_double_and_cap() {
        let policy = LockoutPolicy::default();
        let minutes = |n| policy.lock_after(n).map(|d| d.as_secs() / 60);
        assert_eq!(minutes(4), None);
        assert_eq!(minutes(5), Some(1));
        assert_eq!(minutes(6), Some(2));
        assert_eq!(minutes(7), Some(4));
        assert_eq!(minutes(8), Some(8));
        assert_eq!(minutes(9), Some(15));
        assert_eq!(minutes(99), Some(15));
        assert_eq!(minutes(i64::MAX), Some(15), "no overflow");
    }
}
