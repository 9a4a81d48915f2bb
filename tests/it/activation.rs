//! Student and staff activation at `/activate`, through the real router, on both backends.

use std::time::Duration;

use axum::http::StatusCode;
use sesame::accounts::AccountState;
use sesame::accounts::activation::{Completion, Start};
use sesame::accounts::password::Verification;
use sesame::audit::Actor;
use sesame::locale::Locale;

use crate::on_both_backends;
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp};

on_both_backends! {
    a_student_activates_and_the_dossier_pair_is_worthless_afterwards,
    unknown_dossier_wrong_date_and_active_account_get_identical_pages,
    five_failures_lock_a_dossier_until_the_helpdesk_unlocks_it,
    exactly_one_of_fifty_concurrent_activations_wins,
    a_staff_member_activates_with_a_helpdesk_code,
}

const STUDENTS: &str = "dossier_number,last_name,first_name,birth_date,component,enrolment_year,email\n\
22000001,Dupré,Émilie,2004-05-06,IAE,2026,\n\
22000002,Martin,Marie,2005-01-02,IAE,2026,marie.registrar@example.net\n";

async fn import(app: &TestApp) {
    app.import_students(STUDENTS, false).await;
}

/// The mails queued so far: (recipient, the 6-digit code in the text body).
async fn queued_codes(app: &TestApp) -> Vec<(String, String)> {
    app.take_mails()
        .await
        .into_iter()
        .map(|queued| {
            let text = queued.mail.text.clone();
            let code = text
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .unwrap_or_else(|| panic!("no code in {text}"))
                .to_string();
            (queued.mail.to.as_str().to_string(), code)
        })
        .collect()
}

fn location(response: &crate::support::TestResponse) -> &str {
    response.header("location").unwrap_or_default()
}

async fn a_student_activates_and_the_dossier_pair_is_worthless_afterwards(backend: Backend) {
    let app = TestApp::start(backend).await;
    import(&app).await;
    let mut browser = Browser::new(&app);
    let start = browser.get("/activate").await;
    assert_eq!(start.status, StatusCode::OK);
    for needle in [
        r#"name="dossier_number""#,
        r#"name="birth_date" type="date""#,
        r#"name="activation_code""#,
        r#"name="csrf""#,
        r#"<label for="dossier_number">"#,
    ] {
        assert!(start.body.contains(needle), "{needle}");
    }

    let step1 = browser
        .post(
            "/activate",
            &[("dossier_number", "22000002"), ("birth_date", "2005-01-02")],
        )
        .await;
    assert_eq!(step1.status, StatusCode::SEE_OTHER, "{}", step1.body);
    assert_eq!(location(&step1), "/activate/contact");

    // Institutional addresses and bad phones are refused with the reason, nothing sent.
    let ours = browser
        .post(
            "/activate/contact",
            &[
                ("email", "marie.martin@etu.uca.fr"),
                ("phone", "06 12 34 56 78"),
            ],
        )
        .await;
    assert_eq!(ours.status, StatusCode::OK);
    assert!(
        ours.body.contains("pas une adresse de l&#39;université"),
        "{}",
        ours.body
    );
    let phone = browser
        .post(
            "/activate/contact",
            &[("email", "marie@example.org"), ("phone", "12")],
        )
        .await;
    assert!(phone.body.contains("numéro de mobile n&#39;est pas valide"));
    assert!(queued_codes(&app).await.is_empty());

    let step2 = browser
        .post(
            "/activate/contact",
            &[("email", "Marie@Example.org"), ("phone", "06 12 34 56 78")],
        )
        .await;
    assert_eq!(location(&step2), "/activate/code");
    let codes = queued_codes(&app).await;
    let recipients: Vec<&str> = codes.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(
        recipients,
        ["Marie@example.org", "marie.registrar@example.net"],
        "personal and enrolment addresses"
    );
    let code = codes[0].1.clone();
    assert_eq!(codes[1].1, code);

    let page = browser.get("/activate/code").await;
    assert!(page.body.contains(r#"autocomplete="one-time-code""#));
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let wrong = browser
        .post("/activate/code", &[("code", wrong_code)])
        .await;
    assert!(wrong.body.contains("Essais restants : 4"), "{}", wrong.body);
    let right = browser.post("/activate/code", &[("code", &code)]).await;
    assert_eq!(location(&right), "/activate/password");

    let weak = browser
        .post(
            "/activate/password",
            &[
                ("new_password", "marie martin 2005"),
                ("new_password_confirm", "marie martin 2005"),
            ],
        )
        .await;
    assert!(
        weak.body.contains("informations personnelles"),
        "{}",
        weak.body
    );
    let done = browser
        .post(
            "/activate/password",
            &[
                ("new_password", "cheval agrafe pile correcte"),
                ("new_password_confirm", "cheval agrafe pile correcte"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(
        done.body.contains("marie.martin@etu.uca.fr"),
        "{}",
        done.body
    );
    assert!(
        done.body.contains("href=\"/login\""),
        "without a login behind it, the last page leads to the login page"
    );

    let account = app
        .app
        .store
        .find_account_by_login("marie.martin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.state, AccountState::Active);
    let hash = app
        .app
        .store
        .find_password_hash(&account.id)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        app.app
            .passwords
            .verify("cheval agrafe pile correcte", &hash)
            .await
            .unwrap(),
        Verification::Match { .. }
    ));
    assert_eq!(
        app.app.store.list_contacts(&account.id).await.unwrap(),
        [
            ("email".to_string(), "Marie@example.org".to_string()),
            ("phone".to_string(), "+33612345678".to_string())
        ]
    );

    // The pair is worthless now.
    let mut again = Browser::new(&app);
    again.get("/activate").await;
    let replay = again
        .post(
            "/activate",
            &[("dossier_number", "22000002"), ("birth_date", "2005-01-02")],
        )
        .await;
    assert_eq!(replay.status, StatusCode::OK);
    assert!(replay.body.contains("ne permettent pas d&#39;activer"));
}

async fn unknown_dossier_wrong_date_and_active_account_get_identical_pages(backend: Backend) {
    let app = TestApp::start(backend).await;
    import(&app).await;
    // Make 22000001 active first.
    let Start::Started(token) = app
        .app
        .activation
        .start_with_dossier("22000001", "2004-05-06", Locale::Fr)
        .await
        .unwrap()
    else {
        panic!("could not start")
    };
    app.app
        .activation
        .submit_contact(&token, "emilie@example.org", "0612345678")
        .await
        .unwrap()
        .unwrap();
    let code = queued_codes(&app).await[0].1.clone();
    app.app
        .activation
        .confirm_code(&token, &code)
        .await
        .unwrap();
    assert!(matches!(
        app.app
            .activation
            .complete(
                &token,
                "cheval agrafe pile correcte",
                "cheval agrafe pile correcte"
            )
            .await
            .unwrap(),
        Completion::Activated { .. }
    ));

    let mut browser = Browser::new(&app);
    browser.get("/activate").await;
    let mut bodies = Vec::new();
    for (dossier, date) in [
        ("99999999", "2004-05-06"),
        ("22000002", "2005-01-03"),
        ("22000001", "2004-05-06"),
        ("２２０００００２", "2005-01-02"),
        ("22000002", "2005-02-30"),
    ] {
        let response = browser
            .post(
                "/activate",
                &[("dossier_number", dossier), ("birth_date", date)],
            )
            .await;
        assert_eq!(response.status, StatusCode::OK);
        bodies.push(response.body);
    }
    for body in &bodies[1..] {
        assert_eq!(body, &bodies[0], "pages differ");
    }
    assert!(bodies[0].contains("ne permettent pas d&#39;activer"));
}

async fn five_failures_lock_a_dossier_until_the_helpdesk_unlocks_it(backend: Backend) {
    let app = TestApp::start(backend).await;
    import(&app).await;
    let mut browser = Browser::new(&app);
    browser.get("/activate").await;
    for dossier in ["22000002", "12345678"] {
        let mut last = String::new();
        for _ in 0..5 {
            last = browser
                .post(
                    "/activate",
                    &[("dossier_number", dossier), ("birth_date", "1999-01-01")],
                )
                .await
                .body;
        }
        assert!(last.contains("Trop d&#39;essais"), "{dossier}: {last}");
        // Even the right pair is refused now.
        let right = browser
            .post(
                "/activate",
                &[("dossier_number", dossier), ("birth_date", "2005-01-02")],
            )
            .await;
        assert!(right.body.contains("Trop d&#39;essais"));
    }
    assert!(
        app.app
            .activation
            .unlock_dossier(
                "22000002",
                Actor::Operator("helpdesk".into()),
                "called, identity checked"
            )
            .await
            .unwrap()
    );
    let unlocked = browser
        .post(
            "/activate",
            &[("dossier_number", "22000002"), ("birth_date", "2005-01-02")],
        )
        .await;
    assert_eq!(unlocked.status, StatusCode::SEE_OTHER);

    // A form without its CSRF token changes nothing.
    let mut stranger = Browser::new(&app);
    let forged = stranger
        .post(
            "/activate",
            &[
                ("dossier_number", "22000001"),
                ("birth_date", "2004-05-06"),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.body.contains("Formulaire expiré"));
}

async fn exactly_one_of_fifty_concurrent_activations_wins(backend: Backend) {
    let app = TestApp::start(backend).await;
    import(&app).await;
    let mut tokens = Vec::new();
    for i in 0..50 {
        let Start::Started(token) = app
            .app
            .activation
            .start_with_dossier("22000001", "2004-05-06", Locale::Fr)
            .await
            .unwrap()
        else {
            panic!("start {i}")
        };
        app.app
            .activation
            .submit_contact(&token, &format!("emilie{i}@example.org"), "0612345678")
            .await
            .unwrap()
            .unwrap();
        tokens.push(token);
    }
    let codes = queued_codes(&app).await;
    for (i, token) in tokens.iter().enumerate() {
        let code = &codes
            .iter()
            .find(|(to, _)| to == &format!("emilie{i}@example.org"))
            .unwrap()
            .1;
        app.app.activation.confirm_code(token, code).await.unwrap();
    }
    let activation = app.app.activation.clone();
    let attempts: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let activation = activation.clone();
            tokio::spawn(async move {
                loop {
                    match activation
                        .complete(
                            &token,
                            "cheval agrafe pile correcte",
                            "cheval agrafe pile correcte",
                        )
                        .await
                    {
                        Err(sesame::accounts::activation::ActivationError::Password(
                            sesame::accounts::password::PasswordError::Busy,
                        )) => tokio::task::yield_now().await,
                        other => return other.unwrap(),
                    }
                }
            })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        if matches!(attempt.await.unwrap(), Completion::Activated { .. }) {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    let account = app
        .app
        .store
        .find_account_by_login("emilie.dupre")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.state, AccountState::Active);
    let contacts = app.app.store.list_contacts(&account.id).await.unwrap();
    assert_eq!(
        contacts.len(),
        2,
        "one e-mail and one phone, from the winner only: {contacts:?}"
    );
}

async fn a_staff_member_activates_with_a_helpdesk_code(backend: Backend) {
    let app = TestApp::start(backend).await;
    let staff = "employee_id,last_name,first_name,birth_date,department,role,status\n\
P100001,Lefèvre,Agnès,1975-03-04,DSI,technique,active\n";
    app.import_staff(staff).await;
    let operator = Actor::Operator("helpdesk".into());
    let (_, old) = app
        .app
        .activation
        .issue_staff_code("agnes.lefevre", operator.clone())
        .await
        .unwrap()
        .unwrap();
    let (_, code) = app
        .app
        .activation
        .issue_staff_code("agnes.lefevre", operator.clone())
        .await
        .unwrap()
        .unwrap();
    assert!(
        app.app
            .activation
            .issue_staff_code("nobody.here", operator)
            .await
            .unwrap()
            .is_none()
    );

    let mut browser = Browser::new(&app);
    browser.get("/activate").await;
    let voided = browser
        .post("/activate", &[("activation_code", old.expose())])
        .await;
    assert!(
        voided.body.contains("ne permettent pas d&#39;activer"),
        "a new code voids the old"
    );
    let started = browser
        .post("/activate", &[("activation_code", code.expose())])
        .await;
    assert_eq!(location(&started), "/activate/contact");
    let reused = Browser::new(&app)
        .post("/activate", &[("activation_code", code.expose())])
        .await;
    assert_ne!(reused.status, StatusCode::SEE_OTHER, "single use");

    browser
        .post(
            "/activate/contact",
            &[
                ("email", "agnes@example.org"),
                ("phone", "+33 6 11 22 33 44"),
            ],
        )
        .await;
    let code = queued_codes(&app).await[0].1.clone();
    browser.post("/activate/code", &[("code", &code)]).await;
    let done = browser
        .post(
            "/activate/password",
            &[
                ("new_password", "tuba orange sous la pluie"),
                ("new_password_confirm", "tuba orange sous la pluie"),
            ],
        )
        .await;
    assert!(done.body.contains("agnes.lefevre@uca.fr"), "{}", done.body);
}

#[tokio::test]
async fn the_pages_speak_english_on_request() {
    let app = TestApp::start(Backend::Sqlite).await;
    let mut browser = Browser::new(&app);
    browser.language = "en";
    let page = browser.get("/activate").await;
    assert!(page.body.contains("Activate my account"));
    assert!(page.body.contains(r#"<html lang="en">"#));
    let refused = browser
        .post("/activate", &[("dossier_number", "x"), ("birth_date", "")])
        .await;
    assert!(
        refused
            .body
            .contains("These details cannot activate an account")
    );
}

#[tokio::test]
async fn later_steps_without_an_activation_go_back_to_the_start() {
    let app = TestApp::start(Backend::Sqlite).await;
    let mut browser = Browser::new(&app);
    for path in ["/activate/contact", "/activate/code", "/activate/password"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains("a expiré ou n&#39;a pas été trouvée"),
            "{path}"
        );
        assert!(page.body.contains(r#"name="dossier_number""#));
    }
}

#[tokio::test]
async fn a_flood_from_one_address_is_answered_429_with_retry_after() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[("SESAME_LIMITS__PER_ADDRESS_PER_MINUTE", "3")],
    )
    .await;
    let mut browser = Browser::new(&app);
    browser.get("/activate").await;
    for _ in 0..3 {
        let response = browser
            .post(
                "/activate",
                &[("dossier_number", "12345678"), ("birth_date", "2001-01-01")],
            )
            .await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let throttled = browser
        .post(
            "/activate",
            &[("dossier_number", "12345678"), ("birth_date", "2001-01-01")],
        )
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert!(throttled.body.contains("Trop de tentatives"));
    // Pages (GET) are not throttled.
    assert_eq!(browser.get("/activate").await.status, StatusCode::OK);
}

/// A stand-in for the SMS provider (a remote service we cannot run): records each POST.
async fn mock_sms_gateway() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    use axum::http::HeaderMap;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send((auth, body));
                "queued"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test]
async fn the_code_also_goes_to_the_mobile_through_the_sms_gateway() {
    let (url, mut received) = mock_sms_gateway().await;
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[
            ("SESAME_SMS__GATEWAY_URL", url.as_str()),
            ("SESAME_SMS__AUTHORIZATION", "Bearer test-key"),
        ],
    )
    .await;
    import(&app).await;
    let mut browser = Browser::new(&app);
    browser.get("/activate").await;
    browser
        .post(
            "/activate",
            &[("dossier_number", "22000001"), ("birth_date", "2004-05-06")],
        )
        .await;
    browser
        .post(
            "/activate/contact",
            &[("email", "emilie@example.org"), ("phone", "06 12 34 56 78")],
        )
        .await;
    let mailed = queued_codes(&app).await[0].1.clone();
    let (authorization, body) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the gateway was called")
        .unwrap();
    assert_eq!(authorization, "Bearer test-key");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["to"], "+33612345678");
    assert!(json["text"].as_str().unwrap().contains(&mailed), "{body}");
}
