//! Lockout counters through the domain service, with the manual clock, on both backends.

use std::sync::Arc;
use std::time::Duration;

use sesame::accounts::lockout::{LockStatus, Lockout, LockoutPolicy};

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends! {
    temporary_locks_start_at_five_double_and_a_success_resets,
    a_hundred_failures_hard_lock_until_an_unlock,
}

fn lockout(app: &TestApp) -> Lockout {
    Lockout::new(
        app.app.store.clone(),
        app.app.clock.clone(),
        LockoutPolicy::default(),
    )
}

async fn temporary_locks_start_at_five_double_and_a_success_resets(backend: Backend) {
    let app = TestApp::start(backend).await;
    let lockout = lockout(&app);
    let start = {
        use sesame::clock::Clock as _;
        app.clock.unix_now()
    };
    for n in 1..=4 {
        let outcome = lockout.record_failure("nobody.here", false).await.unwrap();
        assert_eq!((outcome.failures, outcome.status), (n, LockStatus::Open));
    }
    let fifth = lockout.record_failure("nobody.here", false).await.unwrap();
    assert_eq!(fifth.status, LockStatus::Temporary { until: start + 60 });
    assert_eq!(
        lockout.status("nobody.here").await.unwrap(),
        LockStatus::Temporary { until: start + 60 }
    );
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(
        lockout.status("nobody.here").await.unwrap(),
        LockStatus::Open
    );
    let sixth = lockout.record_failure("nobody.here", false).await.unwrap();
    assert_eq!(
        sixth.status,
        LockStatus::Temporary {
            until: start + 61 + 120
        }
    );
    lockout.record_success("nobody.here").await.unwrap();
    assert_eq!(
        lockout.status("nobody.here").await.unwrap(),
        LockStatus::Open
    );
    let again = lockout.record_failure("nobody.here", false).await.unwrap();
    assert_eq!(again.failures, 1, "a success resets the count");
}

async fn a_hundred_failures_hard_lock_until_an_unlock(backend: Backend) {
    let app = TestApp::start(backend).await;
    let lockout = Arc::new(lockout(&app));
    let mut newly = 0;
    for _ in 0..101 {
        let outcome = lockout.record_failure("marie.martin", true).await.unwrap();
        newly += usize::from(outcome.newly_hard_locked);
    }
    assert_eq!(newly, 1, "the contacts are told once");
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
