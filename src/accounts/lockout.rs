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
    pub failures: i64,
    pub locked_until: Option<i64>,
    pub hard_locked_at: Option<i64>,
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
    /// Counts one failure atomically (concurrent failures all count); returns the new count.
    async fn increment_failures(
        &self,
        identifier: &str,
        known: bool,
        now: i64,
    ) -> Result<i64, StorageError>;
    /// Extends the temporary lock to at least `locked_until`, and hard-locks when `hard` (never
    /// shortening a lock another node set meanwhile).
    async fn extend_lock(
        &self,
        identifier: &str,
        locked_until: Option<i64>,
        hard: bool,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Forgets the counter (success, unlock, reset); `false` if there was none.
    async fn delete_failure_counter(&self, identifier: &str) -> Result<bool, StorageError>;
    /// Deletes counters of unknown identifiers whose last failure is before `before` (never hard
    /// locks); returns how many.
    async fn purge_unknown_failure_counters(&self, before: i64) -> Result<u64, StorageError>;
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    pub failures: i64,
    pub status: LockStatus,
    /// This failure is the one that hard-locked the identifier (mail the contacts once).
    pub newly_hard_locked: bool,
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

    /// Whether the identifier may try now.
    pub async fn status(&self, identifier: &str) -> Result<LockStatus, StorageError> {
        let now = self.clock.unix_now();
        Ok(match self.store.find_failure_counter(identifier).await? {
            Some(FailureCounter {
                hard_locked_at: Some(_),
                ..
            }) => LockStatus::Hard,
            Some(FailureCounter {
                locked_until: Some(until),
                ..
            }) if until > now => LockStatus::Temporary { until },
            _ => LockStatus::Open,
        })
    }

    /// Counts a failure (for an existing account or not: `known` only decides how long the
    /// counter is kept) and applies the policy.
    pub async fn record_failure(
        &self,
        identifier: &str,
        known: bool,
    ) -> Result<FailureOutcome, StorageError> {
        let now = self.clock.unix_now();
        let failures = self
            .store
            .increment_failures(identifier, known, now)
            .await?;
        let hard = failures >= self.policy.permanent_lockout_after;
        let until = self
            .policy
            .lock_after(failures)
            .map(|lock| now + lock.as_secs() as i64);
        if hard || until.is_some() {
            self.store.extend_lock(identifier, until, hard, now).await?;
        }
        let status = if hard {
            LockStatus::Hard
        } else if let Some(until) = until {
            LockStatus::Temporary { until }
        } else {
            LockStatus::Open
        };
        Ok(FailureOutcome {
            failures,
            status,
            newly_hard_locked: failures == self.policy.permanent_lockout_after,
        })
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
