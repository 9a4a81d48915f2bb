//! The login page, SSO sessions, lockout and logout, on both backends, with the manual clock.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use sesame::accounts::lockout::LockStatus;
use sesame::accounts::password::PhcHash;
use sesame::audit::{Actor, AuditAction, AuditQuery};
use sesame::locale::Locale;
use sesame::mail::MailKind;

use crate::on_both_backends;
use crate::support::browser::Browser;
use crate::support::{Backend, STAFF_LEFT, TestApp, TestResponse};

on_both_backends! {
    a_login_opens_a_session_that_the_next_visit_finds,
    the_session_cookie_is_new_at_every_login,
    logout_ends_the_session_at_once_and_the_old_cookie_is_dead,
    the_destination_is_kept_on_the_server_and_stays_on_the_site,
    five_wrong_passwords_lock_and_the_wait_doubles,
    an_unknown_identifier_gets_the_same_pages_as_a_real_one,
    a_hard_lock_mails_the_contacts_and_only_an_unlock_or_a_reset_lifts_it,
    three_hundred_concurrent_wrong_passwords_are_all_counted,
    sessions_end_when_idle_at_their_limit_and_by_kind,
    a_reset_or_a_disabled_account_ends_every_session,
    a_leaver_in_the_hr_feed_loses_every_session,
    sessions_survive_a_restart_and_are_shared_by_nodes,
    a_password_hashed_with_old_parameters_is_upgraded_at_login,
    bad_requests_change_nothing,
    an_activation_started_from_the_login_page_continues_where_the_user_was_going,
}

#[tokio::test]
async fn the_login_form_is_throttled_per_client_address() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[
            ("SESAME_LIMITS__PER_ADDRESS_PER_MINUTE", "3"),
            ("SESAME_SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
        ],
    )
    .await;
    let post = async |peer: &str, forwarded: Option<&str>| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/login")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        let request = request
            .body(Body::from("username=a.b&password=c&csrf=x"))
            .unwrap();
        app.send(request, Some(peer.parse().unwrap())).await
    };
    for _ in 0..3 {
        assert_eq!(
            post("192.0.2.1:1000", None).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let throttled = post("192.0.2.1:1000", None).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert_eq!(
        post("192.0.2.2:1000", None).await.status,
        StatusCode::FORBIDDEN
    );
    // Behind a trusted proxy, the forwarded address is the client; a forged one from an
    // untrusted peer is ignored.
    for _ in 0..3 {
        post("10.0.0.1:1000", Some("198.51.100.7")).await;
    }
    assert_eq!(
        post("10.0.0.1:1000", Some("198.51.100.7")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        post("10.0.0.1:1000", Some("198.51.100.8")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post("192.0.2.1:1000", Some("198.51.100.9")).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "an untrusted peer cannot choose its address"
    );
}

const PASSWORD: &str = "cheval agrafe pile correcte";

fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {body}"))
        + marker.len();
    body[start..].split('"').next().unwrap().to_string()
}

async fn login(browser: &mut Browser<'_>, username: &str, password: &str) -> TestResponse {
    browser.get("/login").await;
    browser
        .post("/login", &[("username", username), ("password", password)])
        .await
}

fn session_cookie(response: &TestResponse) -> Option<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("sesame="))
}

async fn events(app: &TestApp, action: AuditAction) -> Vec<sesame::audit::AuditEvent> {
    app.app
        .audit
        .list(&AuditQuery {
            action: Some(action),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn a_login_opens_a_session_that_the_next_visit_finds(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let mut browser = Browser::new(&app);

    let form = browser.get("/login").await;
    assert_eq!(form.status, StatusCode::OK);
    assert_eq!(form.header("cache-control"), Some("no-store"));
    for needle in [
        "<html lang=\"fr\"",
        "Connexion",
        "name=\"username\"",
        "autocomplete=\"username\"",
        "name=\"password\" type=\"password\" autocomplete=\"current-password\"",
        "type=\"checkbox\" id=\"public_computer\" name=\"public_computer\" value=\"on\">",
        "type=\"checkbox\" id=\"remember_me\" name=\"remember_me\" value=\"on\">",
        "<label for=\"username\">",
        "<label for=\"password\">",
        "href=\"/activate\"",
        "href=\"/password/forgot\"",
        "name=\"csrf\"",
    ] {
        assert!(form.body.contains(needle), "{needle} missing");
    }
    assert!(
        !form.body.contains("checked"),
        "nothing is ticked by default"
    );
    assert!(!form.body.contains("onpaste"), "paste is allowed");

    // The full address works as well as prenom.nom, in any case.
    let response = browser
        .post(
            "/login",
            &[
                ("username", "  Emilie.Dupre@ETU.uca.fr "),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.header("location"), Some("/login"));
    let cookie = session_cookie(&response).expect("a session cookie");
    assert!(cookie.contains("; HttpOnly") && cookie.contains("SameSite=Lax"));
    assert!(cookie.contains("Path=/"));
    assert!(!cookie.contains("Max-Age"), "a browser-session cookie");
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("sesame=");
    assert!(
        value.starts_with("TGT-") && value.len() == 44,
        "TGT- and 160 bits in hex: {value}"
    );
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    );

    let again = browser.get("/login").await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.body.contains("Vous êtes connecté"), "{}", again.body);
    assert!(again.body.contains("emilie.dupre"));

    let english = browser.get("/login?lang=en").await;
    assert!(english.body.contains("You are signed in"));

    let succeeded = events(&app, AuditAction::LoginSucceeded).await;
    assert_eq!(succeeded.len(), 1);
    let event = &succeeded[0].event;
    assert_eq!(event.actor, Actor::User);
    assert_eq!(event.source.as_deref(), Some("127.0.0.1"));
    assert_eq!(event.request_id.as_ref().map(String::len), Some(32));
    assert_eq!(event.details["factors"], serde_json::json!(["pwd"]));
    let sessions = app
        .app
        .sessions
        .list(event.subject.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].factors, ["pwd"]);
}

async fn the_session_cookie_is_new_at_every_login(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let mut browser = Browser::new(&app);
    // A value planted by an attacker before login (session fixation) is never adopted.
    browser
        .cookies
        .insert("sesame".into(), "AttackerChosenValue0123".into());
    let first = login(&mut browser, "emilie.dupre", PASSWORD).await;
    let first = session_cookie(&first).unwrap();
    assert!(!first.contains("AttackerChosenValue0123"));
    let old = browser.cookies.get("sesame").unwrap().clone();
    let second = login(&mut browser, "emilie.dupre", PASSWORD).await;
    let second = session_cookie(&second).unwrap();
    assert_ne!(first, second);
    // The previous session of this browser ended with the new login.
    let mut replay = Browser::new(&app);
    replay.cookies.insert("sesame".into(), old);
    assert!(
        replay
            .get("/login")
            .await
            .body
            .contains("name=\"password\"")
    );
    let account = app.app.login.login_of("x").await.unwrap();
    assert_eq!(account, None);
    let id = events(&app, AuditAction::LoginSucceeded).await[0]
        .event
        .subject
        .clone()
        .unwrap();
    assert_eq!(app.app.sessions.list(&id).await.unwrap().len(), 1);
}

async fn logout_ends_the_session_at_once_and_the_old_cookie_is_dead(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let mut browser = Browser::new(&app);
    login(&mut browser, "emilie.dupre", PASSWORD).await;
    let cookie = browser.cookies.get("sesame").unwrap().clone();

    let confirm = browser.get("/logout").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("action=\"/logout\""));
    assert!(
        browser
            .get("/login")
            .await
            .body
            .contains("Vous êtes connecté"),
        "a GET ends nothing"
    );

    let forged = browser.post("/logout", &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(
        browser
            .get("/login")
            .await
            .body
            .contains("Vous êtes connecté")
    );

    let out = browser.post("/logout", &[]).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out.body.contains("Vous êtes déconnecté"));
    assert!(
        out.headers.get_all("set-cookie").iter().any(|c| c
            .to_str()
            .unwrap()
            .starts_with("sesame=; ")
            && c.to_str().unwrap().contains("Max-Age=0"))
    );
    assert!(!browser.cookies.contains_key("sesame"));

    // Replaying the old cookie: nothing.
    let mut replay = Browser::new(&app);
    replay.cookies.insert("sesame".into(), cookie);
    assert!(
        replay
            .get("/login")
            .await
            .body
            .contains("name=\"password\"")
    );
    replay.get("/logout").await;
    let again = replay.post("/logout", &[]).await;
    assert!(again.body.contains("pas connecté"), "{}", again.body);
    assert_eq!(events(&app, AuditAction::SessionEnded).await.len(), 1);
}

async fn the_destination_is_kept_on_the_server_and_stays_on_the_site(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;

    let mut browser = Browser::new(&app);
    let form = browser
        .get("/login?return_to=/password/forgot%3Flang%3Den")
        .await;
    let flow = hidden(&form.body, "flow");
    assert_eq!(flow.len(), 22);
    assert!(
        !form.body.contains("/password/forgot?lang"),
        "not in the page"
    );
    let done = browser
        .post(
            "/login",
            &[
                ("username", "emilie.dupre"),
                ("password", PASSWORD),
                ("flow", &flow),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.header("location"), Some("/password/forgot?lang=en"));
    // With a session, the login page sends straight on.
    let sso = browser.get("/login?return_to=/activate").await;
    assert_eq!(sso.status, StatusCode::SEE_OTHER);
    assert_eq!(sso.header("location"), Some("/activate"));

    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let mut browser = Browser::new(&app);
        let form = browser
            .get(&format!("/login?return_to={}", urlencode(evil)))
            .await;
        assert_eq!(hidden(&form.body, "flow"), "", "{evil}");
        let done = browser
            .post(
                "/login",
                &[("username", "emilie.dupre"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(done.header("location"), Some("/login"), "{evil}");
        let sso = browser
            .get(&format!("/login?return_to={}", urlencode(evil)))
            .await;
        assert_eq!(sso.status, StatusCode::OK, "{evil}: no redirect");
    }
    // A forged reference leads nowhere.
    let mut browser = Browser::new(&app);
    browser.get("/login").await;
    let done = browser
        .post(
            "/login",
            &[
                ("username", "emilie.dupre"),
                ("password", PASSWORD),
                ("flow", "AAAAAAAAAAAAAAAAAAAAAA"),
            ],
        )
        .await;
    assert_eq!(done.header("location"), Some("/login"));
}

/// Resets a password through the forgot-password mail, as the user would.
async fn reset_password(app: &TestApp, login: &str, new_password: &str) {
    assert!(app.app.recovery.request(login, Locale::Fr).await.unwrap());
    let text = app.take_mails().await.pop().unwrap().mail.text;
    let token = text.split("token=").nth(1).unwrap()[..22].to_string();
    let outcome = app
        .app
        .recovery
        .complete(
            &sesame::one_time::SecretToken::new(token),
            new_password,
            new_password,
            Locale::Fr,
        )
        .await
        .unwrap();
    assert_eq!(outcome, sesame::accounts::recovery::ResetOutcome::Done);
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn five_wrong_passwords_lock_and_the_wait_doubles(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let mut browser = Browser::new(&app);
    browser.get("/login").await;
    let wrong = [("username", "emilie.dupre"), ("password", "pas le bon mot")];
    for _ in 0..4 {
        let page = browser.post("/login", &wrong).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Identifiant ou mot de passe incorrect."));
        assert!(page.body.contains("role=\"alert\""));
        assert!(page.body.contains("aria-describedby=\"login_error\""));
    }
    let fifth = browser.post("/login", &wrong).await;
    assert!(
        fifth.body.contains("réessayez dans 1 min"),
        "{}",
        fifth.body
    );
    // During the lock even the right password is not checked.
    let right = [("username", "emilie.dupre"), ("password", PASSWORD)];
    let locked = browser.post("/login", &right).await;
    assert!(locked.body.contains("réessayez dans 1 min"));
    assert!(session_cookie(&locked).is_none());

    app.clock.advance(Duration::from_secs(60));
    let sixth = browser.post("/login", &wrong).await;
    assert!(sixth.body.contains("réessayez dans 2 min"), "doubled");
    app.clock.advance(Duration::from_secs(120));
    let seventh = browser.post("/login", &wrong).await;
    assert!(seventh.body.contains("réessayez dans 4 min"));
    browser.language = "en";
    app.clock.advance(Duration::from_secs(239));
    assert!(
        browser
            .post("/login", &right)
            .await
            .body
            .contains("try again in 1 min")
    );
    app.clock.advance(Duration::from_secs(1));
    let ok = browser.post("/login", &right).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.app.lockout.status("emilie.dupre").await.unwrap(),
        LockStatus::Open,
        "a success resets the count"
    );
    let failed = events(&app, AuditAction::LoginFailed).await;
    assert_eq!(failed.len(), 9);
    assert!(
        failed
            .iter()
            .filter(|e| e.event.details["reason"] == "locked")
            .count()
            == 2
    );
    assert!(failed.iter().all(|e| e.event.details["factor"] == "pwd"));
}

/// Status, headers and body of a page, with what legitimately differs between two browsers (the
/// CSRF token, the request id and the CSP nonce) and the typed identifier blanked.
fn comparable(page: &TestResponse, typed: &str) -> (StatusCode, Vec<(String, String)>, String) {
    let mut body = page.body.replace(typed, "IDENTIFIER");
    if body.contains("name=\"csrf\" value=\"") {
        body = body.replace(&hidden(&body, "csrf"), "CSRF");
    }
    let mut headers: Vec<(String, String)> = page
        .headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "x-request-id" | "content-security-policy" | "set-cookie" | "date"
            )
        })
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    headers.sort();
    (page.status, headers, body)
}

async fn an_unknown_identifier_gets_the_same_pages_as_a_real_one(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    // Same length, so that even Content-Length matches.
    let real = "emilie.dupre";
    let made_up = "emilie.dupra";
    let mut a = Browser::new(&app);
    let mut b = Browser::new(&app);
    a.get("/login").await;
    b.get("/login").await;
    for step in 0..12 {
        if step == 7 {
            app.clock.advance(Duration::from_secs(60));
        }
        let pa = a
            .post(
                "/login",
                &[("username", real), ("password", "mauvais mot de passe")],
            )
            .await;
        let pb = b
            .post(
                "/login",
                &[("username", made_up), ("password", "mauvais mot de passe")],
            )
            .await;
        assert_eq!(
            comparable(&pa, real),
            comparable(&pb, made_up),
            "attempt {step}"
        );
    }
    assert_eq!(
        app.app.lockout.status(made_up).await.unwrap(),
        app.app.lockout.status(real).await.unwrap()
    );
}

async fn a_hard_lock_mails_the_contacts_and_only_an_unlock_or_a_reset_lifts_it(backend: Backend) {
    let app =
        TestApp::start_with(backend, &[("SESAME_LOCKOUT__PERMANENT_LOCKOUT_AFTER", "8")]).await;
    app.active_student(PASSWORD).await;
    let wrong = [("username", "emilie.dupre"), ("password", "pas le bon mot")];
    let right = [("username", "emilie.dupre"), ("password", PASSWORD)];
    let mut browser = Browser::new(&app);
    browser.get("/login").await;
    let hard_lock = async |browser: &mut Browser<'_>| {
        let mut last = None;
        for _ in 0..8 {
            last = Some(browser.post("/login", &wrong).await);
            app.clock.advance(Duration::from_secs(15 * 60));
        }
        last.unwrap()
    };
    let page = hard_lock(&mut browser).await;
    assert!(page.body.contains("Compte verrouillé"), "{}", page.body);
    let mails = app.take_mails().await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].mail.kind, MailKind::AccountLocked);
    assert_eq!(mails[0].mail.to.as_str(), "emilie@example.org");
    assert!(mails[0].mail.text.contains("/password/forgot"));
    app.clock.advance(Duration::from_secs(30 * 24 * 3600));
    assert!(
        browser
            .post("/login", &right)
            .await
            .body
            .contains("Compte verrouillé"),
        "time does not lift a hard lock"
    );
    assert_eq!(app.take_mails().await.len(), 0, "told once");

    let helpdesk = app.helpdesk();
    let report = helpdesk.show("emilie.dupre").await.unwrap();
    assert_eq!(report.lock.state, "hard");
    assert_eq!(report.lock.failures, 8);
    assert_eq!(report.lock.refused_while_locked, 1);
    assert!(
        report
            .lock
            .reason
            .as_deref()
            .unwrap()
            .contains("8 consecutive")
    );
    assert_eq!(report.contacts[0].value, "e*****@example.org");
    let operator = Actor::Operator("helpdesk".into());
    assert!(
        helpdesk
            .unlock("emilie.dupre", operator.clone(), "  ")
            .await
            .is_err(),
        "a reason is required"
    );
    assert!(
        helpdesk
            .unlock("emilie.dupre", operator.clone(), "appel du 29/11")
            .await
            .unwrap()
    );
    let unlocked = events(&app, AuditAction::AccountUnlocked).await;
    assert_eq!(unlocked[0].event.actor, operator);
    assert_eq!(unlocked[0].event.details["reason"], "appel du 29/11");
    assert_eq!(
        browser.post("/login", &right).await.status,
        StatusCode::SEE_OTHER
    );

    // Hard-locked again; a completed password reset lifts it too.
    hard_lock(&mut browser).await;
    app.take_mails().await;
    let new_password = "autre cheval bleu sous la pluie";
    reset_password(&app, "emilie.dupre", new_password).await;
    let ok = browser
        .post(
            "/login",
            &[("username", "emilie.dupre"), ("password", new_password)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
}

async fn three_hundred_concurrent_wrong_passwords_are_all_counted(backend: Backend) {
    // No temporary lock before the hard lock at 20, so only the hard lock gates.
    let app = TestApp::start_with(
        backend,
        &[
            ("SESAME_LOCKOUT__PERMANENT_LOCKOUT_AFTER", "20"),
            ("SESAME_LOCKOUT__MAX_LOGIN_FAILURES", "1000"),
            ("SESAME_LIMITS__PER_ADDRESS_PER_MINUTE", "100000"),
            ("SESAME_LIMITS__GLOBAL_PER_SECOND", "100000"),
        ],
    )
    .await;
    app.active_student(PASSWORD).await;
    let csrf = {
        let mut browser = Browser::new(&app);
        browser.get("/login").await;
        browser.cookies.get("sesame-csrf").unwrap().clone()
    };
    let body = format!("username=emilie.dupre&password=wrong+password+{{}}&csrf={csrf}");
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let app = app.clone();
            let body = body.replace("{}", &i.to_string());
            let cookie = format!("sesame-csrf={csrf}");
            tokio::spawn(async move {
                let request = Request::builder()
                    .method(Method::POST)
                    .uri("/login")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("cookie", cookie)
                    .body(Body::from(body))
                    .unwrap();
                app.send(request, None).await
            })
        })
        .collect();
    let mut rejected = 0;
    let mut locked = 0;
    for task in tasks {
        let page = task.await.unwrap();
        assert_eq!(page.status, StatusCode::OK);
        if page.body.contains("Identifiant ou mot de passe incorrect.") {
            rejected += 1;
        } else if page.body.contains("Compte verrouillé") {
            locked += 1;
        } else {
            panic!("unexpected page {}", page.body);
        }
    }
    assert_eq!(rejected + locked, 300);
    let counter = app
        .app
        .lockout
        .counter("emilie.dupre")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counter.failures + counter.refused,
        300,
        "every attempt is counted"
    );
    assert_eq!(counter.failures, 20, "exactly as many checks as allowed");
    assert_eq!(counter.refused, 280);
    assert_eq!(
        app.app.lockout.status("emilie.dupre").await.unwrap(),
        LockStatus::Hard
    );
    assert_eq!(
        app.take_mails()
            .await
            .iter()
            .filter(|m| m.mail.kind == MailKind::AccountLocked)
            .count(),
        1
    );
}

async fn sessions_end_when_idle_at_their_limit_and_by_kind(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let signed_in = async |browser: &mut Browser<'_>| {
        browser
            .get("/login")
            .await
            .body
            .contains("Vous êtes connecté")
    };

    // Standard: idle 2 h, absolute 8 h.
    let mut browser = Browser::new(&app);
    login(&mut browser, "emilie.dupre", PASSWORD).await;
    for _ in 0..5 {
        app.clock.advance(Duration::from_secs(3600 + 1800));
        assert!(signed_in(&mut browser).await, "activity keeps it alive");
    }
    // 7.5 h so far; at 8.5 h it has ended at the absolute limit despite the activity.
    app.clock.advance(Duration::from_secs(3600));
    assert!(!signed_in(&mut browser).await);
    let mut idle = Browser::new(&app);
    login(&mut idle, "emilie.dupre", PASSWORD).await;
    app.clock.advance(Duration::from_secs(2 * 3600));
    assert!(!signed_in(&mut idle).await, "idle for 2 h");

    // Public computer: 1 h at most.
    let mut public = Browser::new(&app);
    public.get("/login").await;
    public
        .post(
            "/login",
            &[
                ("username", "emilie.dupre"),
                ("password", PASSWORD),
                ("public_computer", "on"),
                ("remember_me", "on"),
            ],
        )
        .await;
    app.clock.advance(Duration::from_secs(50 * 60));
    assert!(signed_in(&mut public).await);
    app.clock.advance(Duration::from_secs(10 * 60));
    assert!(!signed_in(&mut public).await, "public computer wins");

    // Stay signed in: a lasting cookie, alive after days without a visit.
    let mut remembered = Browser::new(&app);
    remembered.get("/login").await;
    let response = remembered
        .post(
            "/login",
            &[
                ("username", "emilie.dupre"),
                ("password", PASSWORD),
                ("remember_me", "on"),
            ],
        )
        .await;
    assert!(
        session_cookie(&response)
            .unwrap()
            .contains("Max-Age=2592000")
    );
    app.clock.advance(Duration::from_secs(3 * 24 * 3600));
    assert!(signed_in(&mut remembered).await);
    app.clock.advance(Duration::from_secs(28 * 24 * 3600));
    assert!(!signed_in(&mut remembered).await);
    assert!(app.app.maintenance().run_once().await.purged_sessions >= 1);
}

async fn a_reset_or_a_disabled_account_ends_every_session(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let mut phone = Browser::new(&app);
    let mut laptop = Browser::new(&app);
    login(&mut phone, "emilie.dupre", PASSWORD).await;
    login(&mut laptop, "emilie.dupre", PASSWORD).await;
    let new_password = "autre cheval bleu sous la pluie";
    reset_password(&app, "emilie.dupre", new_password).await;
    for browser in [&mut phone, &mut laptop] {
        assert!(
            browser
                .get("/login")
                .await
                .body
                .contains("name=\"password\"")
        );
    }

    login(&mut phone, "emilie.dupre", new_password).await;
    let helpdesk = app.helpdesk();
    let operator = Actor::Operator("helpdesk".into());
    assert_eq!(
        helpdesk
            .disable("emilie.dupre", operator.clone(), "compte compromis")
            .await
            .unwrap(),
        1
    );
    assert!(phone.get("/login").await.body.contains("name=\"password\""));
    let refused = login(&mut phone, "emilie.dupre", new_password).await;
    assert!(refused.body.contains("Ce compte est désactivé"));
    assert_eq!(
        helpdesk
            .show("emilie.dupre")
            .await
            .unwrap()
            .disabled_reason
            .as_deref(),
        Some("compte compromis")
    );
    helpdesk
        .enable("emilie.dupre", operator, "vérifié")
        .await
        .unwrap();
    let back = login(&mut phone, "emilie.dupre", new_password).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    assert!(matches!(
        helpdesk.unlock("nobody.here", Actor::System, "x").await,
        Err(sesame::accounts::helpdesk::HelpdeskError::UnknownLogin(_))
    ));
}

async fn a_leaver_in_the_hr_feed_loses_every_session(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_staff(PASSWORD).await;
    let mut browser = Browser::new(&app);
    let response = login(&mut browser, "paul.girard", PASSWORD).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let summary = app.import_staff(STAFF_LEFT).await;
    assert_eq!(summary.disabled, 1);
    assert!(
        browser
            .get("/login")
            .await
            .body
            .contains("name=\"password\"")
    );
    let account = app.helpdesk().show("paul.girard").await.unwrap();
    assert_eq!(account.state, "disabled");
    assert!(account.sessions.is_empty());
}

async fn sessions_survive_a_restart_and_are_shared_by_nodes(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let mut browser = Browser::new(&app);
    login(&mut browser, "emilie.dupre", PASSWORD).await;
    let cookie = browser.cookies.get("sesame").unwrap().clone();
    // Another node (or this one restarted) on the same database and master key.
    let other = app.second_node().await;
    let mut elsewhere = Browser::new(&other);
    elsewhere.cookies.insert("sesame".into(), cookie);
    assert!(
        elsewhere
            .get("/login")
            .await
            .body
            .contains("Vous êtes connecté")
    );
    elsewhere.get("/logout").await;
    elsewhere.post("/logout", &[]).await;
    assert!(
        browser
            .get("/login")
            .await
            .body
            .contains("name=\"password\"")
    );
}

async fn a_password_hashed_with_old_parameters_is_upgraded_at_login(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let id = app.helpdesk().show("emilie.dupre").await.unwrap().id;
    let stored = |app: &TestApp| {
        let store = app.app.store.clone();
        let id = id.clone();
        async move {
            let hash = store.find_password_hash(&id).await.unwrap().unwrap();
            PhcHash::parse(&hash).unwrap().to_phc()
        }
    };
    let before = stored(&app).await;
    assert!(before.contains("t=2"), "{before}");
    let stronger = app
        .second_node_with(&[("SESAME_PASSWORD__ITERATIONS", "3")])
        .await;
    let mut browser = Browser::new(&stronger);
    assert_eq!(
        login(&mut browser, "emilie.dupre", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let after = stored(&stronger).await;
    assert!(after.contains("t=3"), "{after}");
    assert_eq!(
        events(&stronger, AuditAction::PasswordRehashed).await.len(),
        1
    );
    // Still the same password, on either node.
    let mut browser = Browser::new(&app);
    assert_eq!(
        login(&mut browser, "emilie.dupre", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

async fn bad_requests_change_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let mut browser = Browser::new(&app);
    browser.get("/login").await;

    // No CSRF token: 403, nothing counted.
    let forged = browser
        .post(
            "/login",
            &[
                ("username", "emilie.dupre"),
                ("password", "x"),
                ("csrf", ""),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // A megabyte password is refused by the body limit before anything reads it.
    let huge = "a".repeat(1024 * 1024);
    let too_big = browser
        .post(
            "/login",
            &[("username", "emilie.dupre"), ("password", &huge)],
        )
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Above 1024 bytes but within the body limit: refused before hashing.
    let long = "a".repeat(2000);
    let too_long = browser
        .post(
            "/login",
            &[("username", "emilie.dupre"), ("password", &long)],
        )
        .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert!(too_long.body.contains("trop long"));
    let empty = browser
        .post("/login", &[("username", ""), ("password", "")])
        .await;
    assert!(empty.body.contains("Saisissez votre identifiant"));
    // Look-alike characters and garbage never reach an account.
    let cyrillic = browser
        .post(
            "/login",
            &[("username", "еmilie.dupre"), ("password", PASSWORD)],
        )
        .await;
    assert!(
        cyrillic
            .body
            .contains("Identifiant ou mot de passe incorrect.")
    );

    assert_eq!(
        app.app.lockout.counter("emilie.dupre").await.unwrap(),
        None,
        "nothing counted against the account"
    );
    assert!(events(&app, AuditAction::LoginSucceeded).await.is_empty());
    assert_eq!(app.app.sessions.count_live().await.unwrap(), 0);
}

async fn an_activation_started_from_the_login_page_continues_where_the_user_was_going(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    app.import_students(
        "dossier_number,last_name,first_name,birth_date,component,enrolment_year\n\
22000001,Dupré,Émilie,2004-05-06,IAE,2026\n",
        false,
    )
    .await;
    let mut browser = Browser::new(&app);
    let form = browser.get("/login?return_to=/password/forgot").await;
    let flow = hidden(&form.body, "flow");
    assert!(
        form.body
            .contains(&format!("href=\"/activate?flow={flow}\""))
    );
    browser.get(&format!("/activate?flow={flow}")).await;
    let step = browser
        .post(
            "/activate",
            &[("dossier_number", "22000001"), ("birth_date", "2004-05-06")],
        )
        .await;
    assert_eq!(step.status, StatusCode::SEE_OTHER);
    browser.get("/activate/contact").await;
    browser
        .post(
            "/activate/contact",
            &[("email", "emilie@example.org"), ("phone", "06 12 34 56 78")],
        )
        .await;
    let text = app.take_mails().await.pop().unwrap().mail.text;
    let code: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_string();
    browser.post("/activate/code", &[("code", &code)]).await;
    let done = browser
        .post(
            "/activate/password",
            &[
                ("new_password", PASSWORD),
                ("new_password_confirm", PASSWORD),
            ],
        )
        .await;
    assert!(done.body.contains("emilie.dupre@etu.uca.fr"));
    let next = format!("/login?flow={flow}");
    assert!(
        done.body.contains(&format!("href=\"{next}\"")),
        "{}",
        done.body
    );
    assert!(!browser.cookies.contains_key("sesame-flow"), "used once");
    let form = browser.get(&next).await;
    assert_eq!(hidden(&form.body, "flow"), flow);
    let signed_in = browser
        .post(
            "/login",
            &[
                ("username", "emilie.dupre"),
                ("password", PASSWORD),
                ("flow", &flow),
            ],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.header("location"), Some("/password/forgot"));
}
