//! The store contract: one behaviour suite, run against SQLite always and against PostgreSQL
//! whenever `SESAME_TEST_POSTGRES_URL` is set at build time (`.ci/run` always sets it). Each test
//! gets a fresh database (a temporary SQLite file, or a new PostgreSQL schema).

use std::sync::Arc;
use std::time::Duration;

use super::{ConnectOptions, Store};
use crate::accounts::lockout::{LockStatus, LockoutPolicy};
use crate::audit::{Actor, AuditAction, AuditQuery, NewAuditEvent};
use crate::keys::{KeyState, SigningAlgorithm, StoredSigningKey};
use crate::storage::StorageError;

fn options(url: String) -> ConnectOptions {
    ConnectOptions {
        url,
        max_connections: 8,
        acquire_timeout: Duration::from_secs(30),
        busy_timeout: Duration::from_secs(30),
        schema: None,
    }
}

/// A store on a fresh database, and what must live as long as it.
struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let store = super::sqlite::SqliteStore::connect(&options(url))
        .await
        .unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
        schema: None,
    }
}

#[cfg(sesame_postgres_tests)]
async fn postgres_fixture() -> Fixture {
    use crate::entropy::{EntropyExt as _, OsEntropy};
    let url = std::env::var("SESAME_TEST_POSTGRES_URL")
        .expect("SESAME_TEST_POSTGRES_URL was set at build time and must be set to run");
    let schema = format!("contract_{}", OsEntropy.hex(8));
    let store = super::postgres::PostgresStore::connect_in_schema(&options(url), &schema)
        .await
        .unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: None,
        schema: Some(schema),
    }
}

impl Fixture {
    async fn finish(self) {
        #[cfg(sesame_postgres_tests)]
        if let Some(schema) = &self.schema {
            use sqlx::Connection as _;
            let url = std::env::var("SESAME_TEST_POSTGRES_URL").unwrap();
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let _ = &self.schema;
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = super::sqlite_fixture().await;
                    super::$case(fixture.store.clone()).await;
                    fixture.finish().await;
                }
            )*
        }

        #[cfg(sesame_postgres_tests)]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = super::postgres_fixture().await;
                    super::$case(fixture.store.clone()).await;
                    fixture.finish().await;
                }
            )*
        }
    };
}

contract! {
    concurrent_attempts_get_exactly_the_checks_the_policy_allows,
    the_lock_starts_doubles_and_caps_in_the_counting_statement,
    only_old_counters_of_unknown_identifiers_are_purged,
    database_answers_the_health_probe,
    master_key_fingerprint_is_recorded_once,
    signing_keys_round_trip_with_one_current_and_one_next_per_algorithm,
    promotion_retires_the_current_key_in_one_step,
    concurrent_promotions_of_one_key_succeed_once,
    retired_keys_are_deleted_after_the_cutoff_only,
    audit_events_round_trip_most_recent_first_and_filter,
    concurrent_audit_records_are_each_committed_once_in_groups,
    an_account_is_read_with_its_feed_records_in_one_query,
    a_student_row_reads_its_context_at_once_and_a_new_student_is_written_whole,
    a_login_candidate_comes_with_its_hash_and_factors_in_one_query,
    a_login_candidate_is_read_and_its_attempt_counted_under_its_account_login,
    a_successful_login_writes_everything_or_only_forgets_the_counter,
    an_idle_counter_counts_from_zero_without_its_old_lock,
    a_ticket_notes_its_service_and_is_taken_once_with_its_account_as_it_is_now,
    a_ticket_from_a_session_cookie_is_made_of_the_live_session_in_one_write,
    a_code_is_taken_once_and_a_replay_revokes_or_refuses_its_grant,
    a_refresh_token_rotates_once_with_its_event_and_a_replay_revokes_its_family,
    one_time_value_is_redeemed_by_exactly_one_of_fifty_concurrent_consumers,
    one_time_values_are_bound_to_purpose_and_expiry,
    expired_one_time_values_are_purged,
    duplicate_one_time_values_conflict,
    queued_mails_round_trip_and_are_claimed_once_by_concurrent_claimers,
    leased_mails_are_not_claimed_again_until_the_lease_ends,
    failed_mails_come_back_at_their_next_attempt_and_given_up_ones_never,
    sent_mails_are_never_claimed_again,
    outbox_depth_counts_queued_mails_and_purge_keeps_them,
}

fn key(
    kid: &str,
    algorithm: SigningAlgorithm,
    state: KeyState,
    created_at: i64,
) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.to_string(),
        algorithm,
        state,
        private_key_sealed: vec![1, 2, 3, kid.len() as u8],
        public_key_der: vec![9, 8, 7],
        created_at,
        activated_at: (state == KeyState::Current).then_some(created_at),
        retired_at: None,
    }
}

async fn database_answers_the_health_probe(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(matches!(store.backend(), "sqlite" | "postgres"));
}

async fn master_key_fingerprint_is_recorded_once(store: Arc<dyn Store>) {
    assert_eq!(store.find_master_key_fingerprint().await.unwrap(), None);
    store
        .insert_master_key_fingerprint(b"first", 100)
        .await
        .unwrap();
    assert!(matches!(
        store.insert_master_key_fingerprint(b"second", 101).await,
        Err(StorageError::Conflict)
    ));
    assert_eq!(
        store.find_master_key_fingerprint().await.unwrap(),
        Some(b"first".to_vec())
    );
}

async fn signing_keys_round_trip_with_one_current_and_one_next_per_algorithm(
    store: Arc<dyn Store>,
) {
    let rs = key("rs-1", SigningAlgorithm::Rs256, KeyState::Current, 10);
    store.insert_signing_key(&rs).await.unwrap();
    store
        .insert_signing_key(&key("es-1", SigningAlgorithm::Es256, KeyState::Current, 11))
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_signing_key(&key("rs-2", SigningAlgorithm::Rs256, KeyState::Current, 12))
            .await,
        Err(StorageError::Conflict)
    ));
    store
        .insert_signing_key(&key("rs-3", SigningAlgorithm::Rs256, KeyState::Next, 13))
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_signing_key(&key("rs-4", SigningAlgorithm::Rs256, KeyState::Next, 14))
            .await,
        Err(StorageError::Conflict)
    ));
    let listed = store.list_signing_keys().await.unwrap();
    let kids: Vec<&str> = listed.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["rs-1", "es-1", "rs-3"]);
    assert_eq!(listed[0], rs, "every column round-trips");
}

async fn promotion_retires_the_current_key_in_one_step(store: Arc<dyn Store>) {
    store
        .insert_signing_key(&key("old", SigningAlgorithm::EdDsa, KeyState::Current, 10))
        .await
        .unwrap();
    store
        .insert_signing_key(&key(
            "other",
            SigningAlgorithm::Rs256,
            KeyState::Current,
            10,
        ))
        .await
        .unwrap();
    store
        .insert_signing_key(&key("new", SigningAlgorithm::EdDsa, KeyState::Next, 20))
        .await
        .unwrap();
    assert!(store.promote_signing_key("new", 30).await.unwrap());
    let listed = store.list_signing_keys().await.unwrap();
    let by_kid = |kid: &str| listed.iter().find(|k| k.kid == kid).unwrap().clone();
    assert_eq!(by_kid("old").state, KeyState::Retired);
    assert_eq!(by_kid("old").retired_at, Some(30));
    assert_eq!(by_kid("new").state, KeyState::Current);
    assert_eq!(by_kid("new").activated_at, Some(30));
    assert_eq!(
        by_kid("other").state,
        KeyState::Current,
        "other algorithms untouched"
    );
    assert!(
        !store.promote_signing_key("new", 31).await.unwrap(),
        "already current"
    );
    assert!(!store.promote_signing_key("missing", 31).await.unwrap());
}

async fn concurrent_promotions_of_one_key_succeed_once(store: Arc<dyn Store>) {
    store
        .insert_signing_key(&key("cur", SigningAlgorithm::Es256, KeyState::Current, 10))
        .await
        .unwrap();
    store
        .insert_signing_key(&key("nxt", SigningAlgorithm::Es256, KeyState::Next, 20))
        .await
        .unwrap();
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.promote_signing_key("nxt", 30).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        won += usize::from(attempt.await.unwrap());
    }
    assert_eq!(won, 1);
    let listed = store.list_signing_keys().await.unwrap();
    let current: Vec<&str> = listed
        .iter()
        .filter(|k| k.state == KeyState::Current)
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(current, ["nxt"]);
}

async fn retired_keys_are_deleted_after_the_cutoff_only(store: Arc<dyn Store>) {
    store
        .insert_signing_key(&key("a", SigningAlgorithm::Rs256, KeyState::Current, 10))
        .await
        .unwrap();
    store
        .insert_signing_key(&key("b", SigningAlgorithm::Rs256, KeyState::Next, 11))
        .await
        .unwrap();
    assert!(store.promote_signing_key("b", 100).await.unwrap());
    assert!(
        store
            .delete_signing_keys_retired_before(100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.delete_signing_keys_retired_before(101).await.unwrap(),
        ["a"]
    );
    let kids: Vec<String> = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["b"], "current keys are never deleted");
}

async fn audit_events_round_trip_most_recent_first_and_filter(store: Arc<dyn Store>) {
    let event = |at, action, subject: &str| NewAuditEvent {
        at,
        actor: Actor::Operator("helpdesk".into()),
        action,
        subject: Some(subject.into()),
        source: Some("cli".into()),
        user_agent: None,
        request_id: None,
        details: serde_json::json!({"reason": "rentrée", "n": at}),
    };
    let first = store
        .insert_audit_event(&event(1, AuditAction::SigningKeyGenerated, "k1"))
        .await
        .unwrap();
    let second = store
        .insert_audit_event(&event(2, AuditAction::SigningKeyPromoted, "k1"))
        .await
        .unwrap();
    store
        .insert_audit_event(&NewAuditEvent {
            subject: None,
            source: None,
            actor: Actor::System,
            ..event(3, AuditAction::MasterKeyCreated, "")
        })
        .await
        .unwrap();
    assert!(second > first);

    let all = store
        .list_audit_events(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].event.action, AuditAction::MasterKeyCreated);
    assert_eq!(all[0].event.actor, Actor::System);
    assert_eq!(all[0].event.subject, None);
    assert_eq!(all[2].id, first);
    assert_eq!(
        all[2].event,
        event(1, AuditAction::SigningKeyGenerated, "k1")
    );

    let for_k1 = store
        .list_audit_events(&AuditQuery {
            subject: Some("k1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        for_k1.iter().map(|e| e.id).collect::<Vec<_>>(),
        [second, first]
    );

    let promoted = store
        .list_audit_events(&AuditQuery {
            action: Some(AuditAction::SigningKeyPromoted),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(promoted.len(), 1);
    assert_eq!(promoted[0].id, second);

    let limited = store
        .list_audit_events(&AuditQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
}

async fn concurrent_audit_records_are_each_committed_once_in_groups(store: Arc<dyn Store>) {
    let batch: Vec<NewAuditEvent> = (0..3)
        .map(|n| NewAuditEvent {
            at: n,
            actor: Actor::System,
            action: AuditAction::CasTicketValidated,
            subject: Some(format!("batch-{n}")),
            source: None,
            user_agent: None,
            request_id: None,
            details: serde_json::json!({"n": n}),
        })
        .collect();
    let ids = store.insert_audit_events(&batch).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids in the batch's order"
    );
    assert!(store.insert_audit_events(&[]).await.unwrap().is_empty());

    // Sixty concurrent records through the auditor's group commit: each returns its own id
    // once its event is stored.
    let auditor = Arc::new(crate::audit::Auditor::new(
        store.clone(),
        Arc::new(crate::clock::ManualClock::at_rentree()),
    ));
    let tasks: Vec<_> = (0..60)
        .map(|n| {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                auditor
                    .record(
                        Actor::System,
                        AuditAction::CasTicketValidated,
                        Some(format!("group-{n}")),
                        serde_json::json!({"n": n}),
                    )
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap());
    }
    let stored = store
        .list_audit_events(&AuditQuery {
            action: Some(AuditAction::CasTicketValidated),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 63);
    for (n, id) in ids.iter().enumerate() {
        let event = stored.iter().find(|e| e.id == *id).expect("stored");
        assert_eq!(
            event.event.subject.as_deref(),
            Some(format!("group-{n}").as_str())
        );
        assert_eq!(event.event.details, serde_json::json!({"n": n}));
    }
}

async fn an_account_is_read_with_its_feed_records_in_one_query(store: Arc<dyn Store>) {
    use crate::accounts::{AccountRecord, AccountState, StaffRecord, StudentRecord};
    let account = |id: &str| AccountRecord {
        id: id.into(),
        login: format!("login-{id}"),
        state: AccountState::Active,
        first_name: "Zoé".into(),
        last_name: "Lefèvre".into(),
        birth_date: "2001-02-03".into(),
        person_key: format!("key-{id}"),
    };
    let student = |id: &str| StudentRecord {
        dossier_number: format!("2200{id}"),
        account_id: id.into(),
        component: "UFR Sciences".into(),
        enrolment_year: 2026,
        enrolment_email: Some(format!("{id}@etu.example.fr")),
    };
    let staff = |id: &str| StaffRecord {
        employee_id: format!("E{id}"),
        account_id: id.into(),
        department: "Chimie".into(),
        role: "teacher".into(),
        status: "active".into(),
    };
    let mut unit = store.begin_provisioning().await.unwrap();
    for id in ["1", "2", "3", "4"] {
        unit.insert_account(&account(id), 10).await.unwrap();
    }
    unit.upsert_student(&student("1"), 10).await.unwrap();
    unit.upsert_staff(&staff("2"), 10).await.unwrap();
    unit.upsert_student(&student("3"), 10).await.unwrap();
    unit.upsert_staff(&staff("3"), 10).await.unwrap();
    unit.commit().await.unwrap();

    let read = |id: &'static str| {
        let store = store.clone();
        async move { store.find_account_with_records(id).await.unwrap() }
    };
    let one = read("1").await.unwrap();
    assert_eq!(
        (one.account, one.student, one.staff),
        (account("1"), Some(student("1")), None)
    );
    let two = read("2").await.unwrap();
    assert_eq!((two.student, two.staff), (None, Some(staff("2"))));
    let three = read("3").await.unwrap();
    assert_eq!(
        (three.student, three.staff),
        (Some(student("3")), Some(staff("3")))
    );
    let four = read("4").await.unwrap();
    assert_eq!(
        (four.account, four.student, four.staff),
        (account("4"), None, None)
    );
    assert!(read("nobody").await.is_none());
}

async fn a_student_row_reads_its_context_at_once_and_a_new_student_is_written_whole(
    store: Arc<dyn Store>,
) {
    use crate::accounts::{AccountRecord, AccountState, StudentContext, StudentRecord};
    let account = |id: &str, login: &str, key: &str| AccountRecord {
        id: id.into(),
        login: login.into(),
        state: AccountState::Pending,
        first_name: "Zoé".into(),
        last_name: "Lefèvre".into(),
        birth_date: "2001-02-03".into(),
        person_key: key.into(),
    };
    let student = |dossier: &str, id: &str| StudentRecord {
        dossier_number: dossier.into(),
        account_id: id.into(),
        component: "UFR Sciences".into(),
        enrolment_year: 2026,
        enrolment_email: None,
    };
    let sorted = |context: StudentContext| StudentContext {
        logins: context.logins.map(|mut logins| {
            logins.sort();
            logins
        }),
        ..context
    };
    let mut unit = store.begin_provisioning().await.unwrap();
    unit.insert_student_account(
        &account("acc-1", "zoe.lefevre", "key-zoe"),
        &student("22001", "acc-1"),
        10,
    )
    .await
    .unwrap();
    unit.insert_login("zoe.lefevre-old", "acc-1", 10)
        .await
        .unwrap();
    // The same person twice (staff, say), the younger one first in id order.
    unit.insert_account(&account("acc-9", "zoe.lefevre2", "key-twin"), 20)
        .await
        .unwrap();
    unit.insert_account(&account("acc-3", "zoe.lefevre3", "key-twin"), 30)
        .await
        .unwrap();
    unit.insert_account(&account("acc-4", "zoe.lefevres", "key-other"), 30)
        .await
        .unwrap();

    // A known dossier: its record and account; no one else is looked for.
    let known = unit
        .student_context("22001", "key-twin", Some("zoe.lefevre"))
        .await
        .unwrap();
    let every_zoe = [
        "zoe.lefevre",
        "zoe.lefevre-old",
        "zoe.lefevre2",
        "zoe.lefevre3",
        "zoe.lefevres",
    ];
    assert_eq!(
        sorted(known),
        StudentContext {
            existing: Some((
                student("22001", "acc-1"),
                Some(account("acc-1", "zoe.lefevre", "key-zoe"))
            )),
            same_person: vec![],
            logins: Some(every_zoe.map(String::from).to_vec()),
        }
    );
    // A new dossier: the accounts of the same person, oldest first, and the logins of the base.
    let new = unit
        .student_context("22002", "key-twin", Some("zoe.lefevre2"))
        .await
        .unwrap();
    assert_eq!(
        sorted(new),
        StudentContext {
            existing: None,
            same_person: vec!["acc-9".into(), "acc-3".into()],
            logins: Some(vec!["zoe.lefevre2".into()]),
        }
    );
    // Names that give no login base: no logins are read.
    let nameless = unit
        .student_context("22003", "key-nobody", None)
        .await
        .unwrap();
    assert_eq!(nameless, StudentContext::default());
    unit.commit().await.unwrap();

    let written = store
        .find_account_with_records("acc-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (written.account, written.student),
        (
            account("acc-1", "zoe.lefevre", "key-zoe"),
            Some(student("22001", "acc-1"))
        )
    );
    // A taken login: the new student is refused, and once the unit is rolled back, nothing of
    // it is left.
    let mut unit = store.begin_provisioning().await.unwrap();
    let refused = unit
        .insert_student_account(
            &account("acc-5", "zoe.lefevre-old", "key-5"),
            &student("22005", "acc-5"),
            40,
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::Conflict)),
        "{refused:?}"
    );
    unit.rollback().await.unwrap();
    assert!(
        store
            .find_account_with_records("acc-5")
            .await
            .unwrap()
            .is_none()
    );
    let mut unit = store.begin_provisioning().await.unwrap();
    let after = unit
        .student_context("22005", "key-5", Some("zoe.lefevre-old"))
        .await
        .unwrap();
    assert_eq!(
        after,
        StudentContext {
            existing: None,
            same_person: vec![],
            logins: Some(vec!["zoe.lefevre-old".into()]),
        }
    );
    unit.rollback().await.unwrap();

    // A new student applied at once, only when nothing else is to be done: the dossier has no
    // record, no account is the same person, and the login (the base) is free.
    use crate::accounts::NewStudent;
    let mut unit = store.begin_provisioning().await.unwrap();
    let context = |outcome: NewStudent| match outcome {
        NewStudent::Context(context) => sorted(*context),
        NewStudent::Inserted => panic!("inserted"),
    };
    // A known dossier: its context, nothing written (acc-6 does not exist after).
    let known = unit
        .insert_new_student_or_context(
            &account("acc-6", "zoe.lefevre", "key-zoe"),
            &student("22001", "acc-6"),
            "zoe.lefevre",
            50,
        )
        .await
        .unwrap();
    assert_eq!(
        context(known).existing.map(|(r, _)| r.account_id),
        Some("acc-1".into())
    );
    // The same person as accounts already there: their ids.
    let twin = unit
        .insert_new_student_or_context(
            &account("acc-7", "zoe.lefevre7", "key-twin"),
            &student("22007", "acc-7"),
            "zoe.lefevre",
            50,
        )
        .await
        .unwrap();
    assert_eq!(context(twin).same_person, ["acc-9", "acc-3"]);
    // A taken base login: the logins of the base.
    let taken = unit
        .insert_new_student_or_context(
            &account("acc-8", "zoe.lefevre2", "key-8"),
            &student("22008", "acc-8"),
            "zoe.lefevre2",
            50,
        )
        .await
        .unwrap();
    assert_eq!(
        context(taken).logins,
        Some(vec!["zoe.lefevre2".to_string()])
    );
    // A free login of a taken base (the caller chose it, the next free one): written whole.
    let next = unit
        .insert_new_student_or_context(
            &account("acc-11", "zoe.lefevre4", "key-11"),
            &student("22011", "acc-11"),
            "zoe.lefevre",
            50,
        )
        .await
        .unwrap();
    assert!(matches!(next, NewStudent::Inserted), "{next:?}");
    // Free: written whole.
    let free = unit
        .insert_new_student_or_context(
            &account("acc-10", "noe.martin", "key-noe"),
            &student("22010", "acc-10"),
            "noe.martin",
            50,
        )
        .await
        .unwrap();
    assert!(matches!(free, NewStudent::Inserted), "{free:?}");
    unit.commit().await.unwrap();
    assert_eq!(
        store
            .find_account_by_login("zoe.lefevre4")
            .await
            .unwrap()
            .map(|a| a.id),
        Some("acc-11".into())
    );
    for id in ["acc-6", "acc-7", "acc-8"] {
        assert!(
            store.find_account_with_records(id).await.unwrap().is_none(),
            "{id}"
        );
    }
    let written = store
        .find_account_with_records("acc-10")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (written.account, written.student),
        (
            account("acc-10", "noe.martin", "key-noe"),
            Some(student("22010", "acc-10"))
        )
    );
    assert_eq!(
        store
            .find_account_by_login("noe.martin")
            .await
            .unwrap()
            .map(|a| a.id),
        Some("acc-10".into())
    );
}

/// A code of `acc-1`'s session `s-1` for the client `web`.
fn stored_code(account_id: &str, session_id: &str) -> crate::oidc::StoredCode {
    crate::oidc::StoredCode {
        client_id: "web".into(),
        redirect_uri: "https://app.uca.fr/cb".into(),
        account_id: account_id.into(),
        session_id: session_id.into(),
        scope: "openid profile".into(),
        nonce: Some("n-0S6".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: 100,
        amr: vec!["pwd".into()],
        acr: "urn:sesame:loa:1".into(),
        expires_at: 160,
    }
}

/// A grant of `web` for `acc-1`'s session `s-1` (none for client credentials).
fn user_grant(id: &str, session: Option<&str>) -> crate::oidc::Grant {
    crate::oidc::Grant {
        id: id.into(),
        client_id: "web".into(),
        account_id: session.map(|_| "acc-1".into()),
        session_id: session.map(str::to_string),
        scope: "openid profile".into(),
        auth_time: session.map(|_| 100),
        amr: vec!["pwd".into()],
        acr: session.map(|_| "urn:sesame:loa:1".into()),
        created_at: 120,
        expires_at: 9_000,
    }
}

/// An access token and a refresh token, their digests made of `seed`.
fn token_pair(seed: u8) -> Vec<crate::oidc::NewToken> {
    use crate::oidc::{NewToken, TokenKind};
    vec![
        NewToken {
            digest: vec![seed; 32],
            kind: TokenKind::Access,
            expires_at: 900,
        },
        NewToken {
            digest: vec![seed + 1; 32],
            kind: TokenKind::Refresh,
            expires_at: 9_000,
        },
    ]
}

fn issued_event(n: u32) -> NewAuditEvent {
    NewAuditEvent {
        at: 120,
        actor: Actor::System,
        action: AuditAction::OidcTokensIssued,
        subject: Some("acc-1".into()),
        source: Some("192.0.2.7".into()),
        user_agent: None,
        request_id: None,
        details: serde_json::json!({"n": n}),
    }
}

/// The `n` of every recorded "tokens issued" event, oldest first.
async fn issued_events(store: &Arc<dyn Store>) -> Vec<u64> {
    let mut events: Vec<u64> = store
        .list_audit_events(&AuditQuery {
            subject: None,
            action: Some(AuditAction::OidcTokensIssued),
            since: None,
            limit: 100,
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.details["n"].as_u64().unwrap())
        .collect();
    events.reverse();
    events
}

async fn a_code_is_taken_once_and_a_replay_revokes_or_refuses_its_grant(store: Arc<dyn Store>) {
    use crate::oidc::CodeRedemption;
    two_accounts(&store).await;
    for (digest, id) in [(1u8, "s-1"), (2, "s-2"), (3, "s-3")] {
        store
            .insert_session(&live_session(id, "acc-1"), &[digest; 32])
            .await
            .unwrap();
    }
    for (digest, session) in [(1u8, "s-1"), (2, "s-1"), (3, "s-3"), (4, "s-2")] {
        store
            .insert_code(&[digest; 32], &stored_code("acc-1", session), 100)
            .await
            .unwrap();
    }
    let live_token = |seed: u8| {
        let store = store.clone();
        async move {
            store
                .find_token(&[seed; 32], 130)
                .await
                .unwrap()
                .map(|t| t.grant.id)
        }
    };

    // Read without being spent, then spent by the write that stores its grant, tokens and
    // event at once.
    for _ in 0..2 {
        assert_eq!(
            store.find_code(&[1; 32]).await.unwrap(),
            Some(stored_code("acc-1", "s-1"))
        );
    }
    store
        .issue_grant(
            &user_grant("g-1", Some("s-1")),
            &token_pair(10),
            Some(&[1; 32]),
            &issued_event(1),
        )
        .await
        .unwrap();
    assert_eq!(live_token(10).await.as_deref(), Some("g-1"));
    assert_eq!(live_token(11).await.as_deref(), Some("g-1"));
    assert_eq!(issued_events(&store).await, [1]);
    // Spent: no longer found, and a second grant from it is refused, storing nothing.
    assert_eq!(store.find_code(&[1; 32]).await.unwrap(), None);
    let refused = store
        .issue_grant(
            &user_grant("g-1b", Some("s-1")),
            &token_pair(12),
            Some(&[1; 32]),
            &issued_event(12),
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::Conflict)),
        "{refused:?}"
    );
    assert_eq!(live_token(12).await, None);
    assert_eq!(issued_events(&store).await, [1]);
    // RFC 6749 §4.1.2: presented again, it revokes what it gave; and again, nothing is left.
    assert_eq!(
        store.take_code(&[1; 32], 121).await.unwrap(),
        CodeRedemption::Replayed {
            grant_revoked: true
        }
    );
    assert_eq!(live_token(10).await, None);
    assert_eq!(live_token(11).await, None);
    assert_eq!(
        store.take_code(&[1; 32], 122).await.unwrap(),
        CodeRedemption::Replayed {
            grant_revoked: false
        }
    );

    // Taken (a refusal, or a concurrent request) between its reading and its grant: the grant
    // is refused, nothing is stored.
    assert!(store.find_code(&[2; 32]).await.unwrap().is_some());
    assert!(matches!(
        store.take_code(&[2; 32], 120).await.unwrap(),
        CodeRedemption::Redeemed { live: true, .. }
    ));
    assert_eq!(store.find_code(&[2; 32]).await.unwrap(), None);
    let refused = store
        .issue_grant(
            &user_grant("g-2", Some("s-1")),
            &token_pair(20),
            Some(&[2; 32]),
            &issued_event(2),
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::Conflict)),
        "{refused:?}"
    );
    assert_eq!(live_token(20).await, None);
    assert_eq!(issued_events(&store).await, [1]);
    assert_eq!(
        store.take_code(&[2; 32], 121).await.unwrap(),
        CodeRedemption::Replayed {
            grant_revoked: false
        }
    );

    // A session that ends between the reading and the grant: refused, nothing stored; the code
    // went with its session.
    assert!(store.find_code(&[4; 32]).await.unwrap().is_some());
    assert!(store.delete_session("acc-1", "s-2").await.unwrap());
    let refused = store
        .issue_grant(
            &user_grant("g-4", Some("s-2")),
            &token_pair(40),
            Some(&[4; 32]),
            &issued_event(4),
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::Conflict)),
        "{refused:?}"
    );
    assert_eq!(live_token(40).await, None);
    assert_eq!(store.find_code(&[4; 32]).await.unwrap(), None);
    // An unknown code.
    assert_eq!(store.find_code(&[9; 32]).await.unwrap(), None);
    assert_eq!(
        store.take_code(&[9; 32], 120).await.unwrap(),
        CodeRedemption::Unknown
    );
    // A client's own grant, from no code: an access token only.
    store
        .issue_grant(
            &user_grant("g-5", None),
            &token_pair(50)[..1],
            None,
            &issued_event(5),
        )
        .await
        .unwrap();
    assert_eq!(live_token(50).await.as_deref(), Some("g-5"));
    assert_eq!(live_token(51).await, None);
    assert_eq!(issued_events(&store).await, [1, 5]);
    // The code of an account no longer active gives no grant and stays unspent by that
    // refusal; taken, it is spent all the same, and said not live.
    let mut unit = store.begin_provisioning().await.unwrap();
    unit.set_account_state("acc-1", crate::accounts::AccountState::Pending, None, 125)
        .await
        .unwrap();
    unit.commit().await.unwrap();
    let refused = store
        .issue_grant(
            &user_grant("g-3", Some("s-3")),
            &token_pair(30),
            Some(&[3; 32]),
            &issued_event(3),
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::Conflict)),
        "{refused:?}"
    );
    assert_eq!(live_token(30).await, None);
    assert_eq!(issued_events(&store).await, [1, 5]);
    assert!(store.find_code(&[3; 32]).await.unwrap().is_some());
    assert!(matches!(
        store.take_code(&[3; 32], 126).await.unwrap(),
        CodeRedemption::Redeemed { live: false, .. }
    ));
    assert_eq!(
        store.take_code(&[3; 32], 127).await.unwrap(),
        CodeRedemption::Replayed {
            grant_revoked: false
        }
    );
}

async fn a_refresh_token_rotates_once_with_its_event_and_a_replay_revokes_its_family(
    store: Arc<dyn Store>,
) {
    use crate::oidc::RefreshOutcome;
    two_accounts(&store).await;
    store
        .insert_session(&live_session("s-1", "acc-1"), &[1; 32])
        .await
        .unwrap();
    store
        .insert_code(&[1; 32], &stored_code("acc-1", "s-1"), 100)
        .await
        .unwrap();
    store
        .issue_grant(
            &user_grant("g-1", Some("s-1")),
            &token_pair(10),
            Some(&[1; 32]),
            &issued_event(1),
        )
        .await
        .unwrap();
    let live_token = |seed: u8| {
        let store = store.clone();
        async move {
            store
                .find_token(&[seed; 32], 130)
                .await
                .unwrap()
                .map(|t| t.grant.id)
        }
    };
    // Another client's, or an unknown one: nothing happens.
    for (digest, client) in [(11u8, "spa"), (99, "web")] {
        assert_eq!(
            store
                .rotate_refresh_token(
                    &[digest; 32],
                    client,
                    &token_pair(60),
                    125,
                    Some(&issued_event(6))
                )
                .await
                .unwrap(),
            RefreshOutcome::Unknown
        );
    }
    // Only looking for a replay spends nothing.
    assert_eq!(
        store
            .rotate_refresh_token(&[11; 32], "web", &[], 125, None)
            .await
            .unwrap(),
        RefreshOutcome::Unknown
    );
    assert_eq!(live_token(11).await.as_deref(), Some("g-1"));
    // Rotated: the successors belong to the grant, with the event.
    assert_eq!(
        store
            .rotate_refresh_token(
                &[11; 32],
                "web",
                &token_pair(20),
                125,
                Some(&issued_event(2))
            )
            .await
            .unwrap(),
        RefreshOutcome::Rotated
    );
    assert_eq!(live_token(20).await.as_deref(), Some("g-1"));
    assert_eq!(live_token(21).await.as_deref(), Some("g-1"));
    assert_eq!(live_token(11).await, None);
    assert_eq!(issued_events(&store).await, [1, 2]);
    // RFC 9700 §4.14.2: the spent one again revokes the whole family, and writes nothing.
    assert_eq!(
        store
            .rotate_refresh_token(
                &[11; 32],
                "web",
                &token_pair(30),
                126,
                Some(&issued_event(3))
            )
            .await
            .unwrap(),
        RefreshOutcome::Replayed
    );
    for seed in [10, 20, 21, 30, 31] {
        assert_eq!(live_token(seed).await, None, "token {seed}");
    }
    assert_eq!(issued_events(&store).await, [1, 2]);
}

/// Two accounts, `acc-1` (active, logins `zoe.lefevre` and its alias `zlefevre`) and `acc-2`
/// (disabled, login `paul.durand`).
async fn two_accounts(store: &Arc<dyn Store>) -> crate::accounts::AccountRecord {
    use crate::accounts::{AccountRecord, AccountState};
    let zoe = AccountRecord {
        id: "acc-1".into(),
        login: "zoe.lefevre".into(),
        state: AccountState::Active,
        first_name: "Zoé".into(),
        last_name: "Lefèvre".into(),
        birth_date: "2001-02-03".into(),
        person_key: "key-1".into(),
    };
    let paul = AccountRecord {
        id: "acc-2".into(),
        login: "paul.durand".into(),
        state: AccountState::Disabled,
        person_key: "key-2".into(),
        ..zoe.clone()
    };
    let mut unit = store.begin_provisioning().await.unwrap();
    unit.insert_account(&zoe, 10).await.unwrap();
    unit.insert_login("zlefevre", "acc-1", 10).await.unwrap();
    unit.insert_account(&paul, 10).await.unwrap();
    unit.commit().await.unwrap();
    zoe
}

/// A session of `account_id` opened at 100 with a password.
fn live_session(id: &str, account_id: &str) -> crate::sessions::Session {
    crate::sessions::Session {
        id: id.into(),
        account_id: account_id.into(),
        kind: crate::sessions::SessionKind::Standard,
        auth_time: 100,
        factors: vec!["pwd".into()],
        last_seen_at: 100,
        idle_expires_at: 2_000,
        expires_at: 30_000,
        client_ip: Some("192.0.2.7".into()),
        user_agent: Some("Firefox".into()),
    }
}

async fn a_ticket_notes_its_service_and_is_taken_once_with_its_account_as_it_is_now(
    store: Arc<dyn Store>,
) {
    use crate::accounts::{AccountState, StudentRecord};
    use crate::cas::{StoredTicket, TicketKind};
    let zoe = two_accounts(&store).await;
    store
        .insert_session(&live_session("s-1", "acc-1"), &[1; 32])
        .await
        .unwrap();
    let ticket = StoredTicket {
        kind: TicketKind::Service,
        service: "https://moodle.uca.fr/login/index.php".into(),
        account_id: "acc-1".into(),
        session_id: "s-1".into(),
        from_new_login: true,
        expires_at: 110,
        auth_time: 100,
        long_term: false,
        amr: vec!["pwd".into(), "otp".into()],
        proxies: vec!["https://portail.uca.fr/pgt".into()],
    };
    let served = || {
        let store = store.clone();
        async move {
            store
                .list_session_services("s-1")
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.protocol, s.service, s.first_at, s.last_at))
                .collect::<Vec<_>>()
        }
    };
    // Without a service to note, the session's applications are left alone.
    store
        .insert_ticket(&[2; 32], &ticket, None, 100)
        .await
        .unwrap();
    assert!(served().await.is_empty());
    // With one, it is noted; again later, its last use moves and nothing is doubled.
    store
        .insert_ticket(&[3; 32], &ticket, Some("moodle"), 101)
        .await
        .unwrap();
    store
        .insert_ticket(&[4; 32], &ticket, Some("moodle"), 105)
        .await
        .unwrap();
    assert_eq!(
        served().await,
        [("cas".to_string(), "moodle".to_string(), 101, 105)]
    );
    // A duplicate ticket is refused.
    assert!(
        store
            .insert_ticket(&[4; 32], &ticket, None, 106)
            .await
            .is_err()
    );

    // Taken once, with the account and its (absent) feed records.
    let taken = store.take_ticket(&[3; 32]).await.unwrap().unwrap();
    assert_eq!(taken.ticket.service, ticket.service);
    assert_eq!(taken.ticket.amr, ticket.amr);
    assert_eq!(taken.ticket.proxies, ticket.proxies);
    assert_eq!(
        (taken.ticket.session_id.as_str(), taken.ticket.expires_at),
        ("s-1", 110)
    );
    assert!(taken.ticket.from_new_login && !taken.ticket.long_term);
    let account = taken.account.unwrap();
    assert_eq!(account.account, zoe);
    assert_eq!((account.student, account.staff), (None, None));
    assert!(store.take_ticket(&[3; 32]).await.unwrap().is_none());
    assert!(store.take_ticket(&[9; 32]).await.unwrap().is_none());

    // The account comes as it is at the taking, not as it was at the issuing.
    let record = StudentRecord {
        dossier_number: "22001234".into(),
        account_id: "acc-1".into(),
        component: "UFR Sciences".into(),
        enrolment_year: 2026,
        enrolment_email: None,
    };
    let mut unit = store.begin_provisioning().await.unwrap();
    unit.upsert_student(&record, 107).await.unwrap();
    unit.commit().await.unwrap();
    let taken = store.take_ticket(&[4; 32]).await.unwrap().unwrap();
    assert_eq!(taken.account.unwrap().student, Some(record));
    // A ticket of an account since disabled goes with its sessions.
    store
        .insert_ticket(&[5; 32], &ticket, None, 108)
        .await
        .unwrap();
    let mut unit = store.begin_provisioning().await.unwrap();
    unit.set_account_state("acc-1", AccountState::Disabled, Some("test"), 109)
        .await
        .unwrap();
    unit.commit().await.unwrap();
    assert!(store.take_ticket(&[5; 32]).await.unwrap().is_none());
}

async fn a_ticket_from_a_session_cookie_is_made_of_the_live_session_in_one_write(
    store: Arc<dyn Store>,
) {
    use crate::cas::{SessionTicket, TicketKind};
    use crate::sessions::SessionKind;
    two_accounts(&store).await;
    let mut remembered = live_session("s-1", "acc-1");
    remembered.kind = SessionKind::Remembered;
    remembered.factors = vec!["pwd".into(), "otp".into()];
    store.insert_session(&remembered, &[1; 32]).await.unwrap();
    store
        .insert_session(&live_session("s-2", "acc-1"), &[2; 32])
        .await
        .unwrap();
    let issued = |at: i64| SessionTicket {
        service: "https://moodle.uca.fr/login/index.php".into(),
        noted_service: "moodle".into(),
        created_at: at,
        expires_at: at + 10,
    };
    let served = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .list_session_services(id)
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.service, s.first_at, s.last_at))
                .collect::<Vec<_>>()
        }
    };
    // The session comes back as it was read; the ticket is what `CasServer::issue` makes of it.
    let session = store
        .insert_ticket_from_session(&[1; 32], &[10; 32], &issued(150))
        .await
        .unwrap();
    assert_eq!(session, Some(remembered.clone()));
    assert_eq!(served("s-1").await, [("moodle".to_string(), 150, 150)]);
    let taken = store.take_ticket(&[10; 32]).await.unwrap().unwrap().ticket;
    assert_eq!(taken.kind, TicketKind::Service);
    assert_eq!(taken.service, "https://moodle.uca.fr/login/index.php");
    assert_eq!(
        (taken.account_id.as_str(), taken.session_id.as_str()),
        ("acc-1", "s-1")
    );
    assert_eq!((taken.auth_time, taken.expires_at), (100, 160));
    assert!(taken.long_term && !taken.from_new_login);
    assert_eq!(taken.amr, ["pwd", "otp"]);
    assert!(taken.proxies.is_empty());
    // A standard session: not long-term; its last use moves on a second ticket.
    store
        .insert_ticket_from_session(&[2; 32], &[11; 32], &issued(160))
        .await
        .unwrap()
        .unwrap();
    store
        .insert_ticket_from_session(&[2; 32], &[12; 32], &issued(170))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served("s-2").await, [("moodle".to_string(), 160, 170)]);
    assert!(
        !store
            .take_ticket(&[11; 32])
            .await
            .unwrap()
            .unwrap()
            .ticket
            .long_term
    );
    // No session for the cookie, or one expired (idle at 2,000 here): no ticket, no note.
    for (cookie, at) in [([9; 32], 180), ([1; 32], 2_000), ([1; 32], 40_000)] {
        assert_eq!(
            store
                .insert_ticket_from_session(&cookie, &[13; 32], &issued(at))
                .await
                .unwrap(),
            None
        );
        assert!(store.take_ticket(&[13; 32]).await.unwrap().is_none());
    }
    assert_eq!(served("s-1").await, [("moodle".to_string(), 150, 150)]);
    // A duplicate ticket is refused, and its session's note is not moved.
    assert!(
        store
            .insert_ticket_from_session(&[2; 32], &[12; 32], &issued(175))
            .await
            .is_err()
    );
    assert_eq!(served("s-2").await, [("moodle".to_string(), 160, 170)]);
}

async fn a_login_candidate_is_read_and_its_attempt_counted_under_its_account_login(
    store: Arc<dyn Store>,
) {
    let zoe = two_accounts(&store).await;
    let policy = policy(3, 100);
    // Through its alias, the account comes with its factors, and the attempt is counted under
    // its current login, as a known identifier.
    let read = store
        .find_candidate_counting("zlefevre", 10, &policy)
        .await
        .unwrap();
    assert_eq!(read.candidate.map(|c| c.account), Some(zoe.clone()));
    let counted = read.counted.unwrap();
    assert_eq!((counted.failures, counted.known), (1, true));
    assert_eq!(
        store.find_failure_counter("zoe.lefevre").await.unwrap(),
        Some(counted)
    );
    assert_eq!(store.find_failure_counter("zlefevre").await.unwrap(), None);
    // A login that names no account: counted under itself, unknown.
    let nobody = store
        .find_candidate_counting("nobody.here", 10, &policy)
        .await
        .unwrap();
    assert!(nobody.candidate.is_none());
    assert_eq!(
        nobody.counted.map(|c| (c.failures, c.known)),
        Some((1, false))
    );
    // The third attempt locks; the next one, within the lock, is refused and not counted, but
    // the candidate is still read.
    for (n, at) in [(2, 11), (3, 12)] {
        let read = store
            .find_candidate_counting("zoe.lefevre", at, &policy)
            .await
            .unwrap();
        assert_eq!(read.counted.map(|c| c.failures), Some(n));
    }
    let locked = store
        .find_failure_counter("zoe.lefevre")
        .await
        .unwrap()
        .unwrap();
    assert!(locked.locked_until.is_some_and(|until| until > 13));
    let refused = store
        .find_candidate_counting("zlefevre", 13, &policy)
        .await
        .unwrap();
    assert_eq!(
        refused.candidate.map(|c| c.account.id),
        Some("acc-1".into())
    );
    assert_eq!(refused.counted, None);
    assert_eq!(
        store.find_failure_counter("zoe.lefevre").await.unwrap(),
        Some(locked)
    );
}

async fn a_login_candidate_comes_with_its_hash_and_factors_in_one_query(store: Arc<dyn Store>) {
    use crate::accounts::mfa::{FactorSummary, StoredPasskey};
    let zoe = two_accounts(&store).await;
    let fresh = store
        .find_login_candidate("zoe.lefevre")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.account, zoe);
    assert_eq!(fresh.password_hash, None);
    assert_eq!(fresh.factors, FactorSummary::default());

    store
        .replace_password_reset("acc-1", &[7; 32], 1_000, &[], 20)
        .await
        .unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo";
    store
        .complete_password_reset(&[7; 32], hash, &|_| Vec::new(), 30)
        .await
        .unwrap()
        .unwrap();
    store.put_totp("acc-1", b"sealed", 1, 30).await.unwrap();
    store
        .replace_recovery_codes("acc-1", &[[1; 32], [2; 32], [3; 32]], 30)
        .await
        .unwrap();
    assert!(
        store
            .use_recovery_code("acc-1", &[1; 32], 31)
            .await
            .unwrap()
    );
    for n in [1u8, 2] {
        store
            .insert_passkey(&StoredPasskey {
                id: format!("pk-{n}"),
                account_id: "acc-1".into(),
                user_handle: vec![9; 16],
                credential_id: vec![n; 16],
                name: format!("clé {n}"),
                passkey: "{}".into(),
                created_at: 30,
                last_used_at: None,
                flagged_at: None,
            })
            .await
            .unwrap();
    }
    store.flag_passkey(&[2; 16], 32).await.unwrap();
    let alias = store
        .find_login_candidate("zlefevre")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alias.account, zoe, "an alias names the same account");
    assert_eq!(alias.password_hash.as_deref(), Some(hash));
    let expected = FactorSummary {
        totp: true,
        passkeys: 1,
        recovery_codes: 2,
    };
    assert_eq!(
        alias.factors, expected,
        "used codes and flagged keys left out"
    );
    assert_eq!(store.factor_summary("acc-1").await.unwrap(), expected);
    assert_eq!(
        store.factor_summary("nobody").await.unwrap(),
        FactorSummary::default()
    );
    assert!(!format!("{alias:?}").contains(hash), "Debug hides the hash");
    assert!(
        store
            .find_login_candidate("nobody")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.find_login_candidate("acc-1").await.unwrap().is_none());
}

async fn a_successful_login_writes_everything_or_only_forgets_the_counter(store: Arc<dyn Store>) {
    use crate::login::SuccessfulLogin;
    two_accounts(&store).await;
    let policy = LockoutPolicy::default();
    for identifier in ["zoe.lefevre", "zoe.lefevre", "paul.durand"] {
        store
            .count_attempt(identifier, true, 100, &policy)
            .await
            .unwrap()
            .unwrap();
    }
    let session = live_session;
    let event = |subject: &str| NewAuditEvent {
        at: 100,
        actor: Actor::User,
        action: AuditAction::LoginSucceeded,
        subject: Some(subject.into()),
        source: Some("192.0.2.7".into()),
        user_agent: Some("Firefox".into()),
        request_id: Some("req-1".into()),
        details: serde_json::json!({"session": "s-1"}),
    };
    let events_of = |subject: &'static str| {
        let store = store.clone();
        async move {
            store
                .list_audit_events(&AuditQuery {
                    subject: Some(subject.into()),
                    limit: 10,
                    ..AuditQuery::default()
                })
                .await
                .unwrap()
        }
    };

    let zoe = session("s-1", "acc-1");
    store
        .record_successful_login(&SuccessfulLogin {
            session: &zoe,
            digest: &[1; 32],
            clear_counter: Some("zoe.lefevre"),
            from: Some("192.0.2.7"),
            event: &event("acc-1"),
        })
        .await
        .unwrap();
    assert_eq!(
        store.find_session_by_digest(&[1; 32], 100).await.unwrap(),
        Some(zoe)
    );
    assert_eq!(
        store.find_failure_counter("zoe.lefevre").await.unwrap(),
        None
    );
    let activity = store.find_account_activity("acc-1").await.unwrap().unwrap();
    assert_eq!(
        (activity.last_login_at, activity.last_login_from.as_deref()),
        (Some(100), Some("192.0.2.7"))
    );
    let events = events_of("acc-1").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, event("acc-1"));

    // Disabled meanwhile: a conflict; only the counter is forgotten (the password was right).
    let paul = session("s-2", "acc-2");
    let refused = store
        .record_successful_login(&SuccessfulLogin {
            session: &paul,
            digest: &[2; 32],
            clear_counter: Some("paul.durand"),
            from: Some("192.0.2.7"),
            event: &event("acc-2"),
        })
        .await;
    assert!(
        matches!(refused, Err(StorageError::Conflict)),
        "{refused:?}"
    );
    assert_eq!(
        store.find_failure_counter("paul.durand").await.unwrap(),
        None
    );
    assert_eq!(
        store.find_session_by_digest(&[2; 32], 100).await.unwrap(),
        None
    );
    let activity = store.find_account_activity("acc-2").await.unwrap().unwrap();
    assert_eq!(activity.last_login_at, None);
    assert!(events_of("acc-2").await.is_empty());

    // Without a counter to forget (a second factor's or a passkey's login), others stay.
    store
        .count_attempt("zoe.lefevre", true, 200, &policy)
        .await
        .unwrap()
        .unwrap();
    store
        .record_successful_login(&SuccessfulLogin {
            session: &session("s-3", "acc-1"),
            digest: &[3; 32],
            clear_counter: None,
            from: None,
            event: &event("acc-1"),
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .find_failure_counter("zoe.lefevre")
            .await
            .unwrap()
            .map(|c| c.failures),
        Some(1)
    );
    assert!(
        store
            .find_session_by_digest(&[3; 32], 100)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(events_of("acc-1").await.len(), 2);
}

/// A counter whose last failure is older than the reset time counts from one again, and its old
/// lock no longer doubles; a hard lock stays whatever its age.
async fn an_idle_counter_counts_from_zero_without_its_old_lock(store: Arc<dyn Store>) {
    let policy = LockoutPolicy::default();
    let reset = policy.failure_reset_time.as_secs() as i64;
    let mut now = 1_000;
    for _ in 0..6 {
        store
            .count_attempt("x.y", false, now, &policy)
            .await
            .unwrap()
            .unwrap();
        now += 1_000;
    }
    let counter = store.find_failure_counter("x.y").await.unwrap().unwrap();
    assert_eq!(
        (counter.failures, counter.locked_until),
        (6, Some(now - 1_000 + 120))
    );

    // Within the reset time after the lock ended, the count goes on and the lock doubles.
    let counter = store
        .count_attempt("x.y", false, now, &policy)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (counter.failures, counter.locked_until),
        (7, Some(now + 240))
    );

    // Long after: from one, no lock; the fifth failure locks for the first lock again.
    now += reset + 1;
    let counter = store
        .count_attempt("x.y", false, now, &policy)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((counter.failures, counter.locked_until), (1, None));
    for n in 2..=5 {
        let counter = store
            .count_attempt("x.y", false, now, &policy)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counter.failures, n);
    }
    let counter = store.find_failure_counter("x.y").await.unwrap().unwrap();
    assert_eq!(counter.locked_until, Some(now + 60));

    let hard = policy_with_hard_lock_at(2);
    for _ in 0..2 {
        store
            .count_attempt("h.l", false, 10, &hard)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        store
            .count_attempt("h.l", false, 10 + reset * 10, &hard)
            .await
            .unwrap(),
        None,
        "a hard lock does not age"
    );
}

fn policy_with_hard_lock_at(n: i64) -> LockoutPolicy {
    policy(1_000, n)
}

async fn one_time_value_is_redeemed_by_exactly_one_of_fifty_concurrent_consumers(
    store: Arc<dyn Store>,
) {
    let digest = [7u8; 32];
    store
        .insert_one_time_value("contract", &digest, "the payload", 1_000)
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let consumers: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .redeem_one_time_value("contract", &digest, 500)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for consumer in consumers {
        if let Some(payload) = consumer.await.unwrap() {
            winners.push(payload);
        }
    }
    assert_eq!(winners, ["the payload"]);
    assert_eq!(
        store
            .redeem_one_time_value("contract", &digest, 500)
            .await
            .unwrap(),
        None
    );
}

async fn one_time_values_are_bound_to_purpose_and_expiry(store: Arc<dyn Store>) {
    store
        .insert_one_time_value("reset", &[1; 32], "account-1", 100)
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_one_time_value("activation", &[1; 32], 50)
            .await
            .unwrap(),
        None,
        "another purpose"
    );
    assert_eq!(
        store
            .redeem_one_time_value("reset", &[2; 32], 50)
            .await
            .unwrap(),
        None,
        "another value"
    );
    assert_eq!(
        store
            .redeem_one_time_value("reset", &[1; 32], 100)
            .await
            .unwrap(),
        None,
        "expired at its expiry instant"
    );
    store
        .insert_one_time_value("reset", &[3; 32], "account-2", 100)
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_one_time_value("reset", &[3; 32], 99)
            .await
            .unwrap(),
        Some("account-2".to_string())
    );
}

async fn expired_one_time_values_are_purged(store: Arc<dyn Store>) {
    for (i, expires_at) in [10, 20, 30].into_iter().enumerate() {
        store
            .insert_one_time_value("p", &[i as u8; 32], "x", expires_at)
            .await
            .unwrap();
    }
    assert_eq!(store.purge_expired_one_time_values(20).await.unwrap(), 2);
    assert_eq!(store.purge_expired_one_time_values(20).await.unwrap(), 0);
    assert_eq!(
        store
            .redeem_one_time_value("p", &[2; 32], 20)
            .await
            .unwrap(),
        Some("x".to_string())
    );
}

async fn duplicate_one_time_values_conflict(store: Arc<dyn Store>) {
    store
        .insert_one_time_value("p", &[5; 32], "first", 100)
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_one_time_value("p", &[5; 32], "second", 100)
            .await,
        Err(StorageError::Conflict)
    ));
    store
        .insert_one_time_value("q", &[5; 32], "other purpose", 100)
        .await
        .unwrap();
    assert_eq!(
        store.redeem_one_time_value("p", &[5; 32], 1).await.unwrap(),
        Some("first".to_string())
    );
}

fn outgoing(n: usize) -> crate::mail::OutgoingMail {
    crate::mail::OutgoingMail {
        kind: crate::mail::MailKind::PasswordReset,
        to: crate::mail::EmailAddress::parse(&format!("person{n}@example.org")).unwrap(),
        subject: format!("Réinitialisation {n}"),
        text: format!("Lien : https://sso.example.org/r?t={n}\n"),
        html: format!("<p>Lien n°{n}</p>"),
    }
}

async fn queued_mails_round_trip_and_are_claimed_once_by_concurrent_claimers(
    store: Arc<dyn Store>,
) {
    let mut inserted = Vec::new();
    for n in 0..30 {
        inserted.push(
            store
                .insert_mail(&outgoing(n), 1_000 + n as i64)
                .await
                .unwrap(),
        );
    }
    let mut claimers = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_due_mails(2_000, 2_600, 4).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch);
            }
        }));
    }
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    claimed.sort_by_key(|m| m.id);
    let ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
    assert_eq!(ids, inserted, "every mail claimed exactly once");
    for (n, mail) in claimed.iter().enumerate() {
        assert_eq!(mail.mail, outgoing(n));
        assert_eq!(mail.created_at, 1_000 + n as i64);
        assert_eq!(mail.attempts, 1);
    }
}

async fn leased_mails_are_not_claimed_again_until_the_lease_ends(store: Arc<dyn Store>) {
    let id = store.insert_mail(&outgoing(1), 1_000).await.unwrap();
    // Not due before it was queued.
    assert!(
        store
            .claim_due_mails(999, 1_599, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let first = store.claim_due_mails(1_000, 1_600, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].id, first[0].attempts), (id, 1));
    assert!(
        store
            .claim_due_mails(1_001, 1_601, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim_due_mails(1_599, 2_199, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The sender died: once its lease has ended, another takes the mail, counting the attempt.
    let again = store.claim_due_mails(1_600, 2_200, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (id, 2));
}

async fn failed_mails_come_back_at_their_next_attempt_and_given_up_ones_never(
    store: Arc<dyn Store>,
) {
    use crate::mail::MailFailure;
    let id = store.insert_mail(&outgoing(1), 1_000).await.unwrap();
    let other = store.insert_mail(&outgoing(2), 1_000).await.unwrap();
    assert_eq!(
        store.claim_due_mails(1_000, 1_600, 10).await.unwrap().len(),
        2
    );
    let retry = MailFailure {
        at: 1_005,
        retry_at: Some(1_065),
        error: "421 try later".into(),
    };
    store.mark_mail_failed(id, &retry).await.unwrap();
    // The failure released the lease, but the mail waits for its next attempt.
    assert!(
        store
            .claim_due_mails(1_064, 1_664, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let back = store.claim_due_mails(1_065, 1_665, 10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].id, back[0].attempts), (id, 2));
    assert_eq!(back[0].mail, outgoing(1));

    let give_up = MailFailure {
        at: 1_070,
        retry_at: None,
        error: "550 no such user".into(),
    };
    store.mark_mail_failed(id, &give_up).await.unwrap();
    store.mark_mail_failed(other, &give_up).await.unwrap();
    assert!(
        store
            .claim_due_mails(i64::MAX / 2, i64::MAX / 2, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_queued_mails().await.unwrap(), 0);
    // A late report of a failure does not bring a given-up mail back.
    store.mark_mail_failed(id, &retry).await.unwrap();
    assert!(
        store
            .claim_due_mails(i64::MAX / 2, i64::MAX / 2, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn sent_mails_are_never_claimed_again(store: Arc<dyn Store>) {
    use crate::mail::MailFailure;
    let id = store.insert_mail(&outgoing(1), 1_000).await.unwrap();
    assert_eq!(
        store.claim_due_mails(1_000, 1_600, 10).await.unwrap().len(),
        1
    );
    store.mark_mail_sent(id, 1_002).await.unwrap();
    assert_eq!(store.count_queued_mails().await.unwrap(), 0);
    assert!(
        store
            .claim_due_mails(1_600, 2_200, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A failure reported late (another sender whose lease had ended) changes nothing.
    let late = MailFailure {
        at: 1_700,
        retry_at: Some(1_760),
        error: "timeout".into(),
    };
    store.mark_mail_failed(id, &late).await.unwrap();
    assert!(
        store
            .claim_due_mails(i64::MAX / 2, i64::MAX / 2, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_queued_mails().await.unwrap(), 0);
}

async fn outbox_depth_counts_queued_mails_and_purge_keeps_them(store: Arc<dyn Store>) {
    use crate::mail::MailFailure;
    assert_eq!(store.count_queued_mails().await.unwrap(), 0);
    let sent = store.insert_mail(&outgoing(1), 1_000).await.unwrap();
    let abandoned = store.insert_mail(&outgoing(2), 1_000).await.unwrap();
    let waiting = store.insert_mail(&outgoing(3), 1_000).await.unwrap();
    assert_eq!(store.count_queued_mails().await.unwrap(), 3);
    // Claimed (leased) mails are still in the outbox.
    assert_eq!(
        store.claim_due_mails(1_000, 1_600, 10).await.unwrap().len(),
        3
    );
    assert_eq!(store.count_queued_mails().await.unwrap(), 3);
    store.mark_mail_sent(sent, 1_010).await.unwrap();
    let failure = |retry_at| MailFailure {
        at: 1_020,
        retry_at,
        error: "x".into(),
    };
    store
        .mark_mail_failed(abandoned, &failure(None))
        .await
        .unwrap();
    store
        .mark_mail_failed(waiting, &failure(Some(1_080)))
        .await
        .unwrap();
    assert_eq!(store.count_queued_mails().await.unwrap(), 1);
    assert_eq!(store.purge_finished_mails(1_010).await.unwrap(), 0);
    assert_eq!(store.purge_finished_mails(1_021).await.unwrap(), 2);
    assert_eq!(store.purge_finished_mails(i64::MAX).await.unwrap(), 0);
    assert_eq!(store.count_queued_mails().await.unwrap(), 1);
    let left = store.claim_due_mails(1_080, 1_680, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, waiting);
}

fn policy(max_login_failures: i64, permanent_lockout_after: i64) -> LockoutPolicy {
    LockoutPolicy {
        max_login_failures,
        permanent_lockout_after,
        ..LockoutPolicy::default()
    }
}

/// 300 concurrent attempts with the hard lock at 20 (and no temporary lock before it): exactly 20
/// get a password check, numbered 1 to 20, the other 280 are refused and counted as such, and the
/// identifier ends hard-locked. Nothing is lost, nothing slips past the lock.
async fn concurrent_attempts_get_exactly_the_checks_the_policy_allows(store: Arc<dyn Store>) {
    let policy = policy(1_000, 20);
    let attempts: Vec<_> = (0..300)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                match store
                    .count_attempt("marie.martin", true, 100, &policy)
                    .await
                    .unwrap()
                {
                    Some(counter) => Some(counter.failures),
                    None => {
                        store.count_refused("marie.martin").await.unwrap().unwrap();
                        None
                    }
                }
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for attempt in attempts {
        admitted.extend(attempt.await.unwrap());
    }
    admitted.sort();
    assert_eq!(
        admitted,
        (1..=20).collect::<Vec<i64>>(),
        "each admitted attempt got its own count"
    );
    let counter = store
        .find_failure_counter("marie.martin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((counter.failures, counter.refused), (20, 280));
    assert_eq!(
        counter.failures + counter.refused,
        300,
        "every attempt counted"
    );
    assert_eq!(counter.hard_locked_at, Some(100));
    assert_eq!(counter.status(i64::MAX), LockStatus::Hard);
}

async fn the_lock_starts_doubles_and_caps_in_the_counting_statement(store: Arc<dyn Store>) {
    let policy = LockoutPolicy::default();
    let mut now = 10;
    for n in 1..=4 {
        let counter = store
            .count_attempt("x.y", false, now, &policy)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (counter.failures, counter.status(now)),
            (n, LockStatus::Open)
        );
    }
    let mut expected = [60, 120, 240, 480, 900, 900].into_iter();
    for n in 5..=10 {
        let counter = store
            .count_attempt("x.y", false, now, &policy)
            .await
            .unwrap()
            .unwrap();
        let lock = expected.next().unwrap();
        assert_eq!(counter.failures, n);
        assert_eq!(counter.locked_until, Some(now + lock), "attempt {n}");
        assert_eq!(
            store
                .count_attempt("x.y", false, now + lock - 1, &policy)
                .await
                .unwrap(),
            None,
            "refused while locked"
        );
        now += lock;
    }
    let counter = store.count_refused("x.y").await.unwrap().unwrap();
    assert_eq!((counter.failures, counter.refused), (10, 1));
    assert!(store.delete_failure_counter("x.y").await.unwrap());
    assert!(!store.delete_failure_counter("x.y").await.unwrap());
    assert_eq!(store.find_failure_counter("x.y").await.unwrap(), None);
    assert_eq!(store.count_refused("x.y").await.unwrap(), None);
}

async fn only_old_counters_of_unknown_identifiers_are_purged(store: Arc<dyn Store>) {
    let open = LockoutPolicy::default();
    for (identifier, known, at, policy) in [
        ("old.unknown", false, 10, open),
        ("new.unknown", false, 1000, open),
        ("old.known", true, 10, open),
        ("old.hard", false, 10, policy(1_000, 1)),
    ] {
        store
            .count_attempt(identifier, known, at, &policy)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(store.purge_unknown_failure_counters(500).await.unwrap(), 1);
    assert_eq!(
        store.find_failure_counter("old.unknown").await.unwrap(),
        None
    );
    for kept in ["new.unknown", "old.known", "old.hard"] {
        assert!(
            store.find_failure_counter(kept).await.unwrap().is_some(),
            "{kept}"
        );
    }
}
