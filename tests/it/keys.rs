//! Signing keys and the master key, on both backends.

use std::sync::Arc;
use std::time::Duration;

use sesame::app::{App, StartError};
use sesame::audit::{Actor, AuditAction, AuditQuery};
use sesame::config::{CliOverrides, Config};
use sesame::entropy::SeededEntropy;
use sesame::keys::sealing::MasterKeyError;
use sesame::keys::signing;
use sesame::keys::{KeyError, KeyState, SigningAlgorithm};

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends! {
    first_start_creates_a_private_master_key_and_one_current_key_per_algorithm,
    a_restart_keeps_the_same_keys,
    a_missing_master_key_stops_the_start_and_nothing_is_regenerated,
    a_different_master_key_is_refused,
    rotation_publishes_next_then_promotes_after_the_publish_delay_then_deletes_retired_keys,
    a_second_rotation_waits_for_the_first,
    loaded_keys_sign_with_their_published_public_key,
}

/// Starts another node (or a restart) on the same configuration and database.
async fn restart(app: &TestApp) -> Result<App, StartError> {
    let config = Config::load(None, &app.env, &CliOverrides::default()).unwrap();
    App::start_with(config, app.clock.clone(), Arc::new(SeededEntropy::new(7))).await
}

fn kids(app: &App) -> Vec<(String, SigningAlgorithm, KeyState)> {
    let mut kids: Vec<_> = app
        .keys
        .snapshot()
        .iter()
        .map(|k| (k.stored.kid.clone(), k.stored.algorithm, k.stored.state))
        .collect();
    kids.sort();
    kids
}

async fn first_start_creates_a_private_master_key_and_one_current_key_per_algorithm(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let file = app.master_key_file();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.trim().len(), 64, "256 bits in hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let keys = kids(&app.app);
    assert_eq!(keys.len(), 3);
    for algorithm in SigningAlgorithm::ALL {
        assert_eq!(
            keys.iter()
                .filter(|(_, a, s)| *a == algorithm && *s == KeyState::Current)
                .count(),
            1,
            "{algorithm}"
        );
        assert!(app.app.keys.current(algorithm).is_some());
    }
    let events = app
        .app
        .audit
        .list(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.event.action).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == AuditAction::SigningKeyGenerated)
            .count(),
        3
    );
    assert!(actions.contains(&AuditAction::MasterKeyCreated));
}

async fn a_restart_keeps_the_same_keys(backend: Backend) {
    let app = TestApp::start(backend).await;
    let before = kids(&app.app);
    let master = std::fs::read_to_string(app.master_key_file()).unwrap();
    let again = restart(&app).await.unwrap();
    assert_eq!(kids(&again), before, "same kids after a restart");
    assert_eq!(
        std::fs::read_to_string(app.master_key_file()).unwrap(),
        master
    );
}

async fn a_missing_master_key_stops_the_start_and_nothing_is_regenerated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let before = kids(&app.app);
    std::fs::remove_file(app.master_key_file()).unwrap();
    let error = match restart(&app).await {
        Err(error) => error,
        Ok(_) => panic!("started without its master key"),
    };
    assert!(matches!(
        error,
        StartError::Keys(KeyError::MasterKey(MasterKeyError::Missing { .. }))
    ));
    let message = error.to_string();
    assert!(message.contains("is missing"), "{message}");
    assert!(message.contains("Restore the file"), "{message}");
    assert!(
        !app.master_key_file().exists(),
        "no new key file was written"
    );
    let listed = sesame::keys::list_stored(
        app.app.store.as_ref(),
        sesame::app::rotation_policy(&app.app.config),
    )
    .await
    .unwrap();
    let mut stored: Vec<_> = listed.iter().map(|k| k.kid.clone()).collect();
    stored.sort();
    let mut expected: Vec<_> = before.iter().map(|(kid, _, _)| kid.clone()).collect();
    expected.sort();
    assert_eq!(stored, expected, "no key was generated or replaced");
}

async fn a_different_master_key_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    std::fs::write(
        app.master_key_file(),
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )
    .unwrap();
    match restart(&app).await {
        Err(StartError::Keys(KeyError::MasterKey(MasterKeyError::Mismatch { .. }))) => {}
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("started with another master key"),
    }
}

async fn rotation_publishes_next_then_promotes_after_the_publish_delay_then_deletes_retired_keys(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let keys = &app.app.keys;
    let old = keys.current(SigningAlgorithm::Rs256).unwrap();
    let created = keys
        .rotate(&[SigningAlgorithm::Rs256], Actor::Operator("ops".into()))
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    let new = created[0].kid.clone();
    assert_eq!(created[0].state, "next");
    assert_eq!(
        keys.current(SigningAlgorithm::Rs256),
        Some(old.clone()),
        "next does not sign yet"
    );

    // Not yet due: nothing changes.
    app.clock.advance(Duration::from_secs(23 * 3600));
    let report = app.app.maintenance().run_once().await;
    assert!(report.keys.promoted.is_empty());

    // Due: promoted, the old one retired (still published).
    app.clock.advance(Duration::from_secs(3600));
    let report = app.app.maintenance().run_once().await;
    assert_eq!(report.keys.promoted, std::slice::from_ref(&new));
    assert_eq!(keys.current(SigningAlgorithm::Rs256), Some(new.clone()));
    let states = kids(&app.app);
    assert!(states.contains(&(old.clone(), SigningAlgorithm::Rs256, KeyState::Retired)));

    // Another node sees the same state after its refresh.
    let other = restart(&app).await.unwrap();
    assert_eq!(
        other.keys.current(SigningAlgorithm::Rs256),
        Some(new.clone())
    );

    // After keep_retired, the retired key goes.
    app.clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    let report = app.app.maintenance().run_once().await;
    assert_eq!(report.keys.deleted, std::slice::from_ref(&old));
    assert!(!kids(&app.app).iter().any(|(kid, _, _)| *kid == old));

    let audit = app
        .app
        .audit
        .list(&AuditQuery {
            subject: Some(new.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = audit.iter().map(|e| e.event.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::SigningKeyPromoted,
            AuditAction::SigningKeyRotationStarted,
            AuditAction::SigningKeyGenerated
        ]
    );
    assert_eq!(audit[1].event.actor, Actor::Operator("ops".into()));
}

async fn a_second_rotation_waits_for_the_first(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.app
        .keys
        .rotate(&[SigningAlgorithm::Es256], Actor::System)
        .await
        .unwrap();
    let before = kids(&app.app);
    match app
        .app
        .keys
        .rotate(&SigningAlgorithm::ALL, Actor::System)
        .await
    {
        Err(KeyError::RotationPending { algorithm, .. }) => {
            assert_eq!(algorithm, SigningAlgorithm::Es256)
        }
        other => panic!("expected RotationPending, got {other:?}"),
    }
    assert_eq!(kids(&app.app), before, "a refused rotation adds nothing");
}

async fn loaded_keys_sign_with_their_published_public_key(backend: Backend) {
    let app = TestApp::start(backend).await;
    for key in app.app.keys.snapshot().iter() {
        let signature = key.private_key.sign(b"a.b").unwrap();
        assert!(signing::verify(
            key.stored.algorithm,
            &key.stored.public_key_der,
            b"a.b",
            &signature
        ));
    }
}
