//! Lockout counters through the domain service, with the manual clock, on both backends.

use std::sync::Arc;
use std::time::Duration;

use sesame::accounts::lockout::{Admission, FailureOutcome, LockStatus, Lockout, LockoutPolicy};
use sesame::clock::Clock as _;

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends! {
    temporary_locks_start_at_five_double_and_a_success_resets,
    a_hundred_failures_hard_lock_until_an_unlock,
    unknown_identifiers_are_forgotten_after_the_reset_time,
    an_old_count_restarts_for_real_and_unknown_identifiers_alike,
}

fn lockout(app: &TestApp) -> Lockout {
    Lockout::new(
        app.app.store.clone(),
        app.app.clock.clone(),
        LockoutPolicy::default(),
    )
}

async fn admitted(lockout: &Lockout, identifier: &str, known: bool) -> FailureOutcome {
    match lockout.attempt(identifier, known).await.unwrap() {
        Admission::Admitted(outcome) => outcome,
        Admission::Refused(status) => panic!("refused: {status:?}"),
    }
}

async fn temporary_locks_start_at_five_double_and_a_success_resets(backend: Backend) {
    let app = TestApp::start(backend).await;
    let lockout = lockout(&app);
    let start = app.clock.unix_now();
    for n in 1..=4 {
        let outcome = admitted(&lockout, "nobody.here", false).await;
        assert_eq!((outcome.failures, outcome.status), (n, LockStatus::Open));
    }
    let fifth = admitted(&lockout, "nobody.here", false).await;
    assert_eq!(fifth.status, LockStatus::Temporary { until: start + 60 });
    assert_eq!(
        lockout.attempt("nobody.here", false).await.unwrap(),
        Admission::Refused(LockStatus::Temporary { until: start + 60 }),
        "nothing is checked during the lock"
    );
    assert_eq!(
        lockout
            .counter("nobody.here")
            .await
            .unwrap()
            .unwrap()
            .failures,
        5,
        "a refused attempt is not a failure"
    );
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(
        lockout.status("nobody.here").await.unwrap(),
        LockStatus::Open
    );
    let sixth = admitted(&lockout, "nobody.here", false).await;
    assert_eq!(
        sixth.status,
        LockStatus::Temporary {
            until: start + 60 + 120
        },
        "the lock doubles"
    );
    app.clock.advance(Duration::from_secs(120));
    lockout.record_success("nobody.here").await.unwrap();
    assert_eq!(
        lockout.status("nobody.here").await.unwrap(),
        LockStatus::Open
    );
    let again = admitted(&lockout, "nobody.here", false).await;
    assert_eq!(again.failures, 1, "a success resets the count");
}

async fn a_hundred_failures_hard_lock_until_an_unlock(backend: Backend) {
    let app = TestApp::start(backend).await;
    let lockout = Arc::new(lockout(&app));
    let mut newly = 0;
    for n in 1..=100 {
        let outcome = admitted(&lockout, "marie.martin", true).await;
        assert_eq!(outcome.failures, n);
        newly += usize::from(outcome.newly_hard_locked);
        // Wait out each temporary lock, as a patient guesser would (about 23 hours in all).
        app.clock.advance(Duration::from_secs(15 * 60));
    }
    assert_eq!(newly, 1, "the contacts are told once");
    assert_eq!(
        lockout.attempt("marie.martin", true).await.unwrap(),
        Admission::Refused(LockStatus::Hard)
    );
    app.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(
        lockout.status("marie.martin").await.unwrap(),
        LockStatus::Hard,
        "time does not lift it"
    );
    assert_eq!(
        lockout.purge().await.unwrap(),
        0,
        "known and hard-locked counters are kept"
    );
    assert!(lockout.unlock("marie.martin").await.unwrap());
    assert_eq!(
        lockout.status("marie.martin").await.unwrap(),
        LockStatus::Open
    );
}

async fn unknown_identifiers_are_forgotten_after_the_reset_time(backend: Backend) {
    let app = TestApp::start(backend).await;
    let lockout = lockout(&app);
    admitted(&lockout, "nobody.here", false).await;
    admitted(&lockout, "marie.martin", true).await;
    app.clock.advance(Duration::from_secs(12 * 3600 - 1));
    assert_eq!(lockout.purge().await.unwrap(), 0, "not yet");
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(lockout.purge().await.unwrap(), 1);
    assert!(lockout.counter("nobody.here").await.unwrap().is_none());
    assert!(lockout.counter("marie.martin").await.unwrap().is_some());
}

/// After the reset time, a real account's old failures no longer count: it must not behave
/// differently from an unknown identifier, whose counter was purged.
async fn an_old_count_restarts_for_real_and_unknown_identifiers_alike(backend: Backend) {
    let app = TestApp::start(backend).await;
    let lockout = lockout(&app);
    for _ in 0..4 {
        admitted(&lockout, "marie.martin", true).await;
        admitted(&lockout, "nobody.here", false).await;
    }
    app.clock.advance(Duration::from_secs(12 * 3600 + 1));
    lockout.purge().await.unwrap();
    let known = admitted(&lockout, "marie.martin", true).await;
    let unknown = admitted(&lockout, "nobody.here", false).await;
    assert_eq!((known.failures, known.status), (1, LockStatus::Open));
    assert_eq!((unknown.failures, unknown.status), (1, LockStatus::Open));
    // Within the reset time, the count goes on.
    for n in 2..=4 {
        assert_eq!(admitted(&lockout, "marie.martin", true).await.failures, n);
    }
}
