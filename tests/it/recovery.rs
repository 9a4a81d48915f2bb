//! Forgotten passwords: `/password/forgot` and `/password/reset`, on both backends.

use std::time::Duration;

use axum::http::StatusCode;
use sesame::accounts::activation::Start;
use sesame::accounts::password::Verification;
use sesame::clock::Stopwatch;
use sesame::locale::Locale;

use crate::on_both_backends;
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp};

on_both_backends! {
    a_reset_link_sets_a_new_password_once_and_notifies_the_contacts,
    the_forgot_page_is_the_same_whoever_asks,
    links_expire_and_a_newer_request_voids_the_older,
}

const PASSWORD: &str = "cheval agrafe pile correcte";

/// An active student `emilie.dupre` with the recovery address `emilie@example.org`.
async fn active_student(app: &TestApp) {
    app.active_student(PASSWORD).await;
}

/// Mails queued since the last call: (recipient, text body, subject).
async fn mails(app: &TestApp) -> Vec<(String, String, String)> {
    app.take_mails()
        .await
        .into_iter()
        .map(|q| {
            (
                q.mail.to.as_str().to_string(),
                q.mail.text.clone(),
                q.mail.subject.clone(),
            )
        })
        .collect()
}

/// Waits for the background task of the forgot page to queue `count` mails.
async fn wait_for_mails(app: &TestApp, count: usize) -> Vec<(String, String, String)> {
    let stopwatch = Stopwatch::start();
    let mut seen = Vec::new();
    while seen.len() < count && stopwatch.elapsed() < Duration::from_secs(10) {
        seen.extend(mails(app).await);
        tokio::task::yield_now().await;
    }
    seen
}

fn link_in(text: &str) -> String {
    let start = text.find("http").expect("a link in the mail");
    text[start..].split_whitespace().next().unwrap().to_string()
}

async fn a_reset_link_sets_a_new_password_once_and_notifies_the_contacts(backend: Backend) {
    let app = TestApp::start(backend).await;
    active_student(&app).await;
    let mut browser = Browser::new(&app);
    browser.get("/password/forgot").await;
    let sent = browser
        .post(
            "/password/forgot",
            &[("identifier", "Emilie.Dupre@ETU.uca.fr")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK);
    assert!(sent.body.contains("Si un compte correspond"));
    let queued = wait_for_mails(&app, 1).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].0, "emilie@example.org");
    let link = link_in(&queued[0].1);
    assert!(
        link.starts_with("http://127.0.0.1:8080/password/reset?token="),
        "{link}"
    );
    let path = link.trim_start_matches("http://127.0.0.1:8080");

    let form = browser.get(path).await;
    assert!(
        form.body.contains(r#"name="new_password""#),
        "{}",
        form.body
    );
    let token = path.split("token=").nth(1).unwrap();
    let weak = browser
        .post(
            "/password/reset",
            &[
                ("token", token),
                ("new_password", "short"),
                ("new_password_confirm", "short"),
            ],
        )
        .await;
    assert!(weak.body.contains("trop court"));
    let new_password = "lampe verte au fond du jardin";
    let done = browser
        .post(
            "/password/reset",
            &[
                ("token", token),
                ("new_password", new_password),
                ("new_password_confirm", new_password),
            ],
        )
        .await;
    assert!(
        done.body.contains("Votre mot de passe a été changé"),
        "{}",
        done.body
    );
    let account = app
        .app
        .store
        .find_account_by_login("emilie.dupre")
        .await
        .unwrap()
        .unwrap();
    let hash = app
        .app
        .store
        .find_password_hash(&account.id)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        app.app.passwords.verify(new_password, &hash).await.unwrap(),
        Verification::Match { .. }
    ));
    let notices = mails(&app).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].0, "emilie@example.org");
    assert!(notices[0].2.contains("changé"), "{}", notices[0].2);

    // Single use.
    let again = browser
        .post(
            "/password/reset",
            &[
                ("token", token),
                ("new_password", PASSWORD),
                ("new_password_confirm", PASSWORD),
            ],
        )
        .await;
    assert!(
        again.body.contains("n&#39;est plus valable"),
        "{}",
        again.body
    );
    assert!(
        browser
            .get(path)
            .await
            .body
            .contains("n&#39;est plus valable")
    );
}

async fn the_forgot_page_is_the_same_whoever_asks(backend: Backend) {
    let app = TestApp::start(backend).await;
    active_student(&app).await;
    let mut browser = Browser::new(&app);
    browser.get("/password/forgot").await;
    let mut bodies = Vec::new();
    for identifier in [
        "emilie.dupre",
        "nobody.here",
        "аlice.martin",
        "",
        "emilie.dupre@gmail.com",
    ] {
        let response = browser
            .post("/password/forgot", &[("identifier", identifier)])
            .await;
        assert_eq!(response.status, StatusCode::OK);
        bodies.push(response.body);
    }
    for body in &bodies[1..] {
        assert_eq!(body, &bodies[0]);
    }
    // Only the real account got a link, built from the configured public URL whatever the
    // request's forwarded host said.
    let mut forged = Browser::new(&app);
    forged.get("/password/forgot").await;
    let csrf = forged.cookies.get("sesame-csrf").unwrap().clone();
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/password/forgot")
        .header("cookie", format!("sesame-csrf={csrf}"))
        .header("x-forwarded-host", "evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(format!(
            "csrf={csrf}&identifier=emilie.dupre"
        )))
        .unwrap();
    assert_eq!(app.send(request, None).await.status, StatusCode::OK);
    let queued = wait_for_mails(&app, 2).await;
    assert_eq!(queued.len(), 2, "{queued:?}");
    for (_, text, _) in &queued {
        assert!(link_in(text).starts_with("http://127.0.0.1:8080/password/reset?token="));
        assert!(!text.contains("evil.example"));
    }
}

async fn links_expire_and_a_newer_request_voids_the_older(backend: Backend) {
    let app = TestApp::start(backend).await;
    active_student(&app).await;
    let recovery = &app.app.recovery;
    assert!(recovery.request("emilie.dupre", Locale::En).await.unwrap());
    let first = link_in(&mails(&app).await[0].1);
    assert!(recovery.request("emilie.dupre", Locale::En).await.unwrap());
    let second = link_in(&mails(&app).await[0].1);
    let mut browser = Browser::new(&app);
    browser.language = "en";
    let old = browser
        .get(first.trim_start_matches("http://127.0.0.1:8080"))
        .await;
    assert!(
        old.body.contains("no longer valid"),
        "the newer link voids the older"
    );
    let path = second
        .trim_start_matches("http://127.0.0.1:8080")
        .to_string();
    assert!(
        browser
            .get(&path)
            .await
            .body
            .contains(r#"name="new_password""#)
    );
    app.clock.advance(Duration::from_secs(31 * 60));
    assert!(
        browser.get(&path).await.body.contains("no longer valid"),
        "expired after 30 min"
    );
    // Unknown or malformed tokens get the same page.
    for bad in [
        "/password/reset?token=AAAAAAAAAAAAAAAAAAAAAA",
        "/password/reset?token=%0d%0a",
        "/password/reset",
    ] {
        assert!(
            browser.get(bad).await.body.contains("no longer valid"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_maintenance_pass_purges_expired_activations_and_links() {
    let app = TestApp::start(Backend::Sqlite).await;
    active_student(&app).await;
    assert!(
        app.app
            .recovery
            .request("emilie.dupre", Locale::Fr)
            .await
            .unwrap()
    );
    let link = link_in(&mails(&app).await[0].1);
    let token =
        sesame::one_time::SecretToken::new(link.split("token=").nth(1).unwrap().to_string());
    assert!(app.app.recovery.is_valid(&token).await.unwrap());
    // An activation left half-way.
    let csv = "dossier_number,last_name,first_name,birth_date,component,enrolment_year\n\
22000009,Martin,Marie,2004-01-01,IAE,2026\n";
    app.import_students(csv, false).await;
    assert!(matches!(
        app.app
            .activation
            .start_with_dossier("22000009", "2004-01-01", Locale::Fr)
            .await
            .unwrap(),
        Start::Started(_)
    ));
    let before = app.app.maintenance().run_once().await;
    assert_eq!(before.purged_account_secrets, 0, "nothing has expired yet");
    app.clock.advance(Duration::from_secs(31 * 60));
    let after = app.app.maintenance().run_once().await;
    assert_eq!(
        after.purged_account_secrets, 2,
        "the reset link and the activation"
    );
    assert!(!app.app.recovery.is_valid(&token).await.unwrap());
}
