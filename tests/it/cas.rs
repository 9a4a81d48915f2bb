//! The CAS server (Apereo CAS Protocol 3.0.3) through the real router, on both backends: login
//! through the form, SSO, renew, gateway, method=POST, every validation endpoint and failure code,
//! logout, and the service registry. Response bodies are golden files (`snapshots/`).

use std::time::Duration;

use axum::http::StatusCode;
use sesame::cas::{StoredTicket, TicketKind};
use sesame::one_time::SecretToken;
use sesame::relying_parties::{CasService, MatchMode};

use crate::on_both_backends;
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp, TestResponse};

on_both_backends! {
    a_cas_login_goes_through_the_form_and_the_ticket_validates_once,
    sso_gives_a_second_service_a_ticket_without_a_password,
    sso_tickets_keep_the_session_alive_until_its_limits,
    renew_asks_for_credentials_and_refuses_sso_tickets,
    gateway_without_a_session_returns_without_a_ticket,
    an_unregistered_service_gets_an_error_page_and_nothing_else,
    every_failure_gets_the_answer_of_the_specification,
    method_post_returns_the_ticket_in_an_auto_submitted_form,
    logout_ends_the_session_and_returns_only_to_registered_services,
    a_proxying_service_gets_a_pgt_by_callback_and_proxy_tickets_for_others,
    single_logout_reaches_every_service_of_an_ended_session,
    saml_validation_answers_soap_and_refuses_dtds,
}

const PASSWORD: &str = "cheval agrafe pile correcte";
const MOODLE: &str = "https://moodle.uca.fr/login/index.php?authCAS=CAS";
const BIB: &str = "https://bib.uca.fr/login";

fn service(id: &str, pattern: &str) -> CasService {
    let mut service = CasService::new(id, &id.to_uppercase(), pattern, MatchMode::Prefix);
    service.attributes = ["mail", "displayName", "eduPersonAffiliation", "supannEtuId"]
        .map(String::from)
        .to_vec();
    service
}

async fn app_with_services(backend: Backend) -> TestApp {
    let app = TestApp::start(backend).await;
    app.app
        .cas
        .add_service(&service("moodle", "https://moodle.uca.fr/"))
        .await
        .unwrap();
    let mut bib = service("bib", "https://bib.uca.fr/");
    bib.attributes_on_cas2 = false;
    app.app.cas.add_service(&bib).await.unwrap();
    app.active_student(PASSWORD).await;
    app
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn location(response: &TestResponse) -> String {
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "not a redirect: {}",
        response.body
    );
    response.header("location").unwrap().to_string()
}

fn ticket_of(url: &str) -> String {
    url.split("ticket=").nth(1).expect("a ticket").to_string()
}

/// `/cas/login?service=…` without a session, through the login form; returns the ticket URL.
async fn cas_login(browser: &mut Browser<'_>, service: &str, extra: &str) -> String {
    let to_login = location(
        &browser
            .get(&format!("/cas/login?service={}{extra}", encode(service)))
            .await,
    );
    assert!(to_login.starts_with("/login?flow="), "{to_login}");
    let form = browser.get(&to_login).await;
    assert!(form.body.contains("name=\"password\""));
    let flow = to_login
        .trim_start_matches("/login?flow=")
        .split('&')
        .next()
        .unwrap()
        .to_string();
    location(
        &browser
            .post(
                "/login",
                &[
                    ("username", "emilie.dupre"),
                    ("password", PASSWORD),
                    ("flow", &flow),
                ],
            )
            .await,
    )
}

async fn validate(app: &TestApp, endpoint: &str, service: &str, ticket: &str) -> TestResponse {
    app.get(&format!(
        "/cas/{endpoint}?service={}&ticket={}",
        encode(service),
        encode(ticket)
    ))
    .await
}

/// A body with the values that change from run to run replaced.
fn stable(body: &str, ticket: &str) -> String {
    let mut out = body.replace(ticket, "ST-<ticket>");
    if let Some(start) = out.find("<cas:authenticationDate>") {
        let end = out[start..].find("</cas:authenticationDate>").unwrap() + start;
        out.replace_range(start + "<cas:authenticationDate>".len()..end, "<date>");
    }
    out
}

async fn a_cas_login_goes_through_the_form_and_the_ticket_validates_once(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    let back = cas_login(&mut browser, MOODLE, "").await;
    assert!(
        back.starts_with("https://moodle.uca.fr/login/index.php?authCAS=CAS&ticket=ST-"),
        "{back}"
    );
    let ticket = ticket_of(&back);
    assert!(
        ticket.len() >= 43
            && ticket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    );

    // The service as some clients send it: lower-case escapes (`%3a%2f`), another host case.
    let ok = app
        .get(&format!(
            "/cas/p3/serviceValidate?service=https%3a%2f%2fMoodle.uca.fr%2flogin%2findex.php%3fauthCAS%3dCAS&ticket={ticket}"
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    insta::assert_snapshot!("p3_success", stable(&ok.body, &ticket));

    let again = validate(&app, "p3/serviceValidate", MOODLE, &ticket).await;
    insta::assert_snapshot!("p3_replayed", stable(&again.body, &ticket));

    // CAS 2 releases attributes when the service allows it (moodle does), in JSON too.
    let mut second = Browser::new(&app);
    let ticket = ticket_of(&cas_login(&mut second, MOODLE, "").await);
    let json = app
        .get(&format!(
            "/cas/serviceValidate?service={}&ticket={ticket}&format=JSON",
            encode(MOODLE)
        ))
        .await;
    assert_eq!(json.header("content-type"), Some("application/json"));
    insta::assert_snapshot!(
        "cas2_json_success",
        regex::Regex::new(r#""authenticationDate":\["[^"]*"\]"#)
            .unwrap()
            .replace(&json.body, r#""authenticationDate":["<date>"]"#)
    );
    let json: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let success = &json["serviceResponse"]["authenticationSuccess"];
    assert_eq!(success["user"], "emilie.dupre");
    assert_eq!(
        success["attributes"]["eduPersonAffiliation"],
        serde_json::json!(["student", "member"])
    );
    assert_eq!(
        success["attributes"]["supannEtuId"],
        serde_json::json!(["22000001"])
    );
    assert_eq!(
        success["attributes"]["isFromNewLogin"],
        serde_json::json!(["true"])
    );

    // CAS 1.
    let mut third = Browser::new(&app);
    let ticket = ticket_of(&cas_login(&mut third, MOODLE, "").await);
    assert_eq!(
        validate(&app, "validate", MOODLE, &ticket).await.body,
        "yes\nemilie.dupre\n"
    );
    assert_eq!(
        validate(&app, "validate", MOODLE, &ticket).await.body,
        "no\n"
    );
}

async fn sso_gives_a_second_service_a_ticket_without_a_password(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    cas_login(&mut browser, MOODLE, "").await;
    let sso = browser
        .get(&format!("/cas/login?service={}", encode(BIB)))
        .await;
    let back = location(&sso);
    assert!(
        back.starts_with("https://bib.uca.fr/login?ticket=ST-"),
        "{back}"
    );
    let ticket = ticket_of(&back);
    // bib releases attributes only on CAS 3: CAS 2 gives the user alone.
    let cas2 = validate(&app, "serviceValidate", BIB, &ticket).await;
    insta::assert_snapshot!("cas2_without_attributes", stable(&cas2.body, &ticket));
    let ticket = ticket_of(&location(
        &browser
            .get(&format!("/cas/login?service={}", encode(BIB)))
            .await,
    ));
    let p3 = validate(&app, "p3/serviceValidate", BIB, &ticket).await;
    assert!(
        p3.body
            .contains("<cas:isFromNewLogin>false</cas:isFromNewLogin>")
    );
    // The session knows both applications (for single logout).
    let id = app.helpdesk().show("emilie.dupre").await.unwrap().sessions[0]
        .id
        .clone();
    let session = app
        .app
        .sessions
        .list(&app.helpdesk().show("emilie.dupre").await.unwrap().id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap();
    let mut served: Vec<String> = app
        .app
        .sessions
        .services(&session)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.service)
        .collect();
    served.sort();
    assert_eq!(served, ["bib", "moodle"]);
}

/// A ticket from the session's cookie is read and issued in one write (ADR 0023): it still
/// records the session's activity, and an ended or expired session gives none.
async fn sso_tickets_keep_the_session_alive_until_its_limits(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    cas_login(&mut browser, MOODLE, "").await;
    let sso = async |browser: &mut Browser<'_>| {
        location(
            &browser
                .get(&format!("/cas/login?service={}", encode(BIB)))
                .await,
        )
    };
    // Standard session: idle 2 h, absolute 8 h. A ticket every 1.5 h keeps it alive...
    for _ in 0..5 {
        app.clock.advance(Duration::from_secs(5400));
        let back = sso(&mut browser).await;
        assert!(
            back.starts_with("https://bib.uca.fr/login?ticket=ST-"),
            "{back}"
        );
        let ticket = ticket_of(&back);
        let p3 = validate(&app, "p3/serviceValidate", BIB, &ticket).await;
        assert!(
            p3.body.contains("<cas:user>emilie.dupre</cas:user>"),
            "{}",
            p3.body
        );
    }
    // ... until its absolute limit (7.5 h so far; 9 h now): then the login page, no ticket.
    app.clock.advance(Duration::from_secs(5400));
    assert!(sso(&mut browser).await.starts_with("/login?flow="));
    // Idle for 2 h: no ticket either.
    let mut idle = Browser::new(&app);
    cas_login(&mut idle, MOODLE, "").await;
    app.clock.advance(Duration::from_secs(7200));
    assert!(sso(&mut idle).await.starts_with("/login?flow="));
    // A cookie no session has: the login page.
    let name = browser
        .cookies
        .keys()
        .find(|k| k.ends_with("sesame"))
        .expect("the session cookie")
        .clone();
    let mut stranger = Browser::new(&app);
    stranger.cookies.insert(name, "not-a-session".into());
    assert!(sso(&mut stranger).await.starts_with("/login?flow="));
}

async fn renew_asks_for_credentials_and_refuses_sso_tickets(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    cas_login(&mut browser, MOODLE, "").await;
    // An SSO ticket validated with renew=true fails (§2.5.1).
    let sso = ticket_of(&location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    ));
    let refused = app
        .get(&format!(
            "/cas/serviceValidate?service={}&ticket={sso}&renew=true",
            encode(MOODLE)
        ))
        .await;
    assert!(
        refused.body.contains("code=\"INVALID_TICKET\""),
        "{}",
        refused.body
    );
    // renew=true at login asks for the password despite the session.
    let fresh = cas_login(&mut browser, MOODLE, "&renew=true").await;
    let ticket = ticket_of(&fresh);
    let ok = app
        .get(&format!(
            "/cas/p3/serviceValidate?service={}&ticket={ticket}&renew=true",
            encode(MOODLE)
        ))
        .await;
    assert!(
        ok.body
            .contains("<cas:isFromNewLogin>true</cas:isFromNewLogin>"),
        "{}",
        ok.body
    );
    // Dropping `renew=true` from the login page's URL does not let the session continue it.
    let to_login = location(
        &browser
            .get(&format!("/cas/login?service={}&renew=true", encode(MOODLE)))
            .await,
    );
    let edited = to_login.replace("&renew=true", "");
    let page = browser.get(&edited).await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "no ticket without the password"
    );
    assert!(page.body.contains("name=\"password\""));
}

async fn gateway_without_a_session_returns_without_a_ticket(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    let back = location(
        &browser
            .get(&format!(
                "/cas/login?service={}&gateway=true",
                encode(MOODLE)
            ))
            .await,
    );
    assert_eq!(back, MOODLE);
    // With a session, gateway gets a ticket like any SSO visit.
    cas_login(&mut browser, MOODLE, "").await;
    let with_session = location(
        &browser
            .get(&format!(
                "/cas/login?service={}&gateway=true",
                encode(MOODLE)
            ))
            .await,
    );
    assert!(with_session.contains("ticket=ST-"));
}

async fn an_unregistered_service_gets_an_error_page_and_nothing_else(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    for service in [
        "https://evil.example/steal",
        "https://moodle.uca.fr.evil.example/",
        "http://moodle.uca.fr/",
        "javascript:alert(1)",
        "not a url",
    ] {
        let page = browser
            .get(&format!("/cas/login?service={}", encode(service)))
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{service}");
        assert!(page.header("location").is_none());
        assert!(page.body.contains("Application inconnue"), "{service}");
    }
    cas_login(&mut browser, MOODLE, "").await;
    let page = browser
        .get(&format!(
            "/cas/login?service={}",
            encode("https://evil.example/")
        ))
        .await;
    assert_eq!(
        page.status,
        StatusCode::FORBIDDEN,
        "not even with a session"
    );
    assert!(!page.body.contains("ST-"));
    // A service that requires a second factor gets no ticket from a password-only session: an
    // account without a factor is sent to enrol one (tests/it/mfa.rs covers the rest).
    let mut grades = service("grades", "https://notes.uca.fr/");
    grades.mfa_required = true;
    app.app.cas.add_service(&grades).await.unwrap();
    let page = browser
        .get(&format!(
            "/cas/login?service={}",
            encode("https://notes.uca.fr/")
        ))
        .await;
    let to = location(&page);
    assert!(to.starts_with("/account/mfa/totp?flow="), "{to}");
    assert!(!to.contains("ticket="));
}

async fn every_failure_gets_the_answer_of_the_specification(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    let code = |body: &str| {
        body.split("code=\"")
            .nth(1)
            .map(|rest| rest.split('"').next().unwrap().to_string())
    };

    // Missing parameters.
    let missing = app.get("/cas/serviceValidate?ticket=ST-1").await;
    insta::assert_snapshot!("invalid_request", missing.body);

    // The wrong service consumes the ticket: the right one then fails too.
    let ticket = ticket_of(&cas_login(&mut browser, MOODLE, "").await);
    let wrong = validate(&app, "serviceValidate", BIB, &ticket).await;
    insta::assert_snapshot!("invalid_service", stable(&wrong.body, &ticket));
    let right = validate(&app, "serviceValidate", MOODLE, &ticket).await;
    assert_eq!(code(&right.body).as_deref(), Some("INVALID_TICKET"));

    // After 11 s (the lifetime is 10 s).
    let ticket = ticket_of(&location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    ));
    app.clock.advance(Duration::from_secs(11));
    let late = validate(&app, "serviceValidate", MOODLE, &ticket).await;
    assert_eq!(code(&late.body).as_deref(), Some("INVALID_TICKET"));

    // A proxy ticket at serviceValidate, then again (consumed).
    let session = {
        let id = app.helpdesk().show("emilie.dupre").await.unwrap().id;
        app.app.sessions.list(&id).await.unwrap().remove(0)
    };
    let pt = "PT-0123456789abcdef0123456789abcdef01234567";
    use sesame::clock::Clock as _;
    let now = app.clock.unix_now();
    app.app
        .store
        .insert_ticket(
            &SecretToken::new(pt.into()).digest(),
            &StoredTicket {
                kind: TicketKind::Proxy,
                service: MOODLE.into(),
                account_id: session.account_id.clone(),
                session_id: session.id.clone(),
                from_new_login: false,
                expires_at: now + 10,
                auth_time: now,
                long_term: false,
                amr: vec!["pwd".into()],
                proxies: vec!["https://portail.uca.fr/pgt".into()],
            },
            None,
            now,
        )
        .await
        .unwrap();
    let spec = validate(&app, "serviceValidate", MOODLE, pt).await;
    insta::assert_snapshot!("invalid_ticket_spec", spec.body);
    assert_eq!(
        code(&validate(&app, "proxyValidate", MOODLE, pt).await.body).as_deref(),
        Some("INVALID_TICKET"),
        "one validation attempt, whatever its outcome"
    );

    // An injected value stays text.
    let injected =
        "ST-1</cas:authenticationFailure><cas:authenticationSuccess><cas:user>admin</cas:user>";
    let evil = validate(&app, "p3/serviceValidate", MOODLE, injected).await;
    insta::assert_snapshot!("injected_ticket", evil.body);
    assert!(!evil.body.contains("<cas:authenticationSuccess>"));
    let json = app
        .get(&format!(
            "/cas/p3/serviceValidate?service={}&ticket={}&format=json",
            encode(MOODLE),
            encode(injected)
        ))
        .await;
    insta::assert_snapshot!("injected_ticket_json", json.body);
    assert_eq!(
        validate(&app, "validate", MOODLE, injected).await.body,
        "no\n"
    );
}

async fn method_post_returns_the_ticket_in_an_auto_submitted_form(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    cas_login(&mut browser, MOODLE, "").await;
    let page = browser
        .get(&format!(
            "/cas/login?service={}&method=POST",
            encode(MOODLE)
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(
            "<form method=\"post\" action=\"https://moodle.uca.fr/login/index.php?authCAS=CAS\""
        ),
        "{}",
        page.body
    );
    let ticket = page
        .body
        .split("name=\"ticket\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("form-action https://moodle.uca.fr;"), "{csp}");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(page.body.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(
        validate(&app, "p3/serviceValidate", MOODLE, &ticket)
            .await
            .body
            .contains("<cas:user>emilie.dupre</cas:user>")
    );
}

async fn logout_ends_the_session_and_returns_only_to_registered_services(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    cas_login(&mut browser, MOODLE, "").await;
    let back = browser
        .get(&format!("/cas/logout?service={}", encode(BIB)))
        .await;
    assert_eq!(location(&back), BIB);
    // The session is gone: the next CAS login asks for the password again.
    let again = location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    );
    assert!(again.starts_with("/login?flow="));
    cas_login(&mut browser, MOODLE, "").await;
    // `url` is ignored, and an unregistered service gets the page, not a redirect.
    for query in [
        "url=https%3A%2F%2Fevil.example%2F".to_string(),
        format!("service={}", encode("https://evil.example/")),
    ] {
        let page = browser.get(&format!("/cas/logout?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        assert!(page.header("location").is_none());
        assert!(page.body.contains("pas connecté") || page.body.contains("déconnecté"));
    }
}

/// A proxy callback receiver on loopback: `/pgt` answers 200, `/moved` a redirect; it records
/// what it was sent.
async fn callback_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<std::collections::HashMap<String, String>>>>,
) {
    use axum::extract::{Query, State};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;
    let seen: Seen = Arc::default();
    let router = axum::Router::new()
        .route(
            "/pgt",
            axum::routing::get(
                |State(seen): State<Seen>, Query(q): Query<HashMap<String, String>>| async move {
                    seen.lock().unwrap().push(q);
                    "ok"
                },
            ),
        )
        .route(
            "/slo",
            axum::routing::post(
                |State(seen): State<Seen>,
                 axum::Form(form): axum::Form<HashMap<String, String>>| async move {
                    seen.lock().unwrap().push(form);
                    "ok"
                },
            ),
        )
        .route(
            "/broken",
            axum::routing::post(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/moved",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/pgt") }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, seen)
}

async fn a_proxying_service_gets_a_pgt_by_callback_and_proxy_tickets_for_others(backend: Backend) {
    let app = TestApp::start_with(backend, &[("SESAME_CAS__ALLOW_HTTP_SERVICES", "true")]).await;
    let (receiver, seen) = callback_receiver().await;
    let mut portail = service("portail", "https://portail.uca.fr/");
    portail.proxy = true;
    app.app.cas.add_service(&portail).await.unwrap();
    let mut callback = service("portail-pgt", &format!("{receiver}/"));
    callback.proxy = true;
    app.app.cas.add_service(&callback).await.unwrap();
    app.app
        .cas
        .add_service(&service("bib", "https://bib.uca.fr/"))
        .await
        .unwrap();
    app.app
        .cas
        .add_service(&service("moodle", "https://moodle.uca.fr/"))
        .await
        .unwrap();
    app.active_student(PASSWORD).await;
    const PORTAIL: &str = "https://portail.uca.fr/";
    let pgt_url = format!("{receiver}/pgt");
    let mut browser = Browser::new(&app);
    let ticket = ticket_of(&cas_login(&mut browser, PORTAIL, "").await);
    let validated = app
        .get(&format!(
            "/cas/serviceValidate?service={}&ticket={ticket}&pgtUrl={}",
            encode(PORTAIL),
            encode(&pgt_url)
        ))
        .await;
    let iou = validated
        .body
        .split("<cas:proxyGrantingTicket>")
        .nth(1)
        .expect("a PGT IOU")
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert!(iou.starts_with("PGTIOU-"));
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["pgtIou"], iou, "the callback got the same IOU");
    let pgt = sent[0]["pgtId"].clone();
    assert!(pgt.starts_with("PGT-"));

    // A proxy ticket for another service, validated there with the chain of proxies.
    let proxied = app
        .get(&format!(
            "/cas/proxy?pgt={pgt}&targetService={}",
            encode(BIB)
        ))
        .await;
    let pt = proxied
        .body
        .split("<cas:proxyTicket>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    insta::assert_snapshot!("proxy_success", proxied.body.replace(&pt, "PT-<ticket>"));
    let ok = validate(&app, "p3/proxyValidate", BIB, &pt).await;
    insta::assert_snapshot!(
        "proxy_validate_success",
        stable(&ok.body, &pt).replace(&pgt_url, "<callback>/pgt")
    );

    // The failures of §2.5.3 and §2.7.2.
    let code = |body: &str| {
        body.split("code=\"")
            .nth(1)
            .map(|rest| rest.split('"').next().unwrap().to_string())
    };
    let ticket = ticket_of(&location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    ));
    let not_proxy = app
        .get(&format!(
            "/cas/serviceValidate?service={}&ticket={ticket}&pgtUrl={}",
            encode(MOODLE),
            encode(&pgt_url)
        ))
        .await;
    assert_eq!(
        code(&not_proxy.body).as_deref(),
        Some("UNAUTHORIZED_SERVICE_PROXY")
    );
    insta::assert_snapshot!("unauthorized_service_proxy", not_proxy.body);
    let ticket = ticket_of(&location(
        &browser
            .get(&format!("/cas/login?service={}", encode(PORTAIL)))
            .await,
    ));
    let unregistered = app
        .get(&format!(
            "/cas/serviceValidate?service={}&ticket={ticket}&pgtUrl={}",
            encode(PORTAIL),
            encode("https://evil.example/pgt")
        ))
        .await;
    assert_eq!(
        code(&unregistered.body).as_deref(),
        Some("INVALID_PROXY_CALLBACK")
    );
    insta::assert_snapshot!("invalid_proxy_callback", unregistered.body);
    // A callback that redirects gets no PGT; the validation itself succeeds (§2.5.4).
    let ticket = ticket_of(&location(
        &browser
            .get(&format!("/cas/login?service={}", encode(PORTAIL)))
            .await,
    ));
    let moved = app
        .get(&format!(
            "/cas/serviceValidate?service={}&ticket={ticket}&pgtUrl={}",
            encode(PORTAIL),
            encode(&format!("{receiver}/moved"))
        ))
        .await;
    assert!(moved.body.contains("<cas:user>emilie.dupre</cas:user>"));
    assert!(!moved.body.contains("proxyGrantingTicket"));
    let unknown_target = app
        .get(&format!(
            "/cas/proxy?pgt={pgt}&targetService={}",
            encode("https://evil.example/")
        ))
        .await;
    assert_eq!(
        code(&unknown_target.body).as_deref(),
        Some("UNAUTHORIZED_SERVICE")
    );
    insta::assert_snapshot!("unauthorized_service", unknown_target.body);
    let missing = app.get(&format!("/cas/proxy?pgt={pgt}")).await;
    assert_eq!(code(&missing.body).as_deref(), Some("INVALID_REQUEST"));
    let missing_json = app.get(&format!("/cas/proxy?pgt={pgt}&format=JSON")).await;
    insta::assert_snapshot!("proxy_invalid_request_json", missing_json.body);

    // The PGT dies with the SSO session.
    browser.get("/cas/logout").await;
    let after = app
        .get(&format!(
            "/cas/proxy?pgt={pgt}&targetService={}",
            encode(BIB)
        ))
        .await;
    insta::assert_snapshot!(
        "proxy_failure_after_logout",
        after.body.replace(&pgt, "PGT-<ticket>")
    );
}

async fn single_logout_reaches_every_service_of_an_ended_session(backend: Backend) {
    let app = TestApp::start_with(backend, &[("SESAME_CAS__ALLOW_HTTP_SERVICES", "true")]).await;
    let (receiver, seen) = callback_receiver().await;
    let mut moodle = service("moodle", "https://moodle.uca.fr/");
    moodle.single_logout = true;
    moodle.logout_url = Some(format!("{receiver}/slo"));
    app.app.cas.add_service(&moodle).await.unwrap();
    let mut bib = service("bib", "https://bib.uca.fr/");
    bib.single_logout = true;
    bib.logout_url = Some(format!("{receiver}/broken"));
    app.app.cas.add_service(&bib).await.unwrap();
    app.app
        .cas
        .add_service(&service("ent", "https://ent.uca.fr/"))
        .await
        .unwrap();
    app.active_student(PASSWORD).await;
    let mut browser = Browser::new(&app);
    let moodle_ticket = ticket_of(&cas_login(&mut browser, MOODLE, "").await);
    assert!(
        validate(&app, "p3/serviceValidate", MOODLE, &moodle_ticket)
            .await
            .body
            .contains("authenticationSuccess")
    );
    for service in [BIB, "https://ent.uca.fr/"] {
        let ticket = ticket_of(&location(
            &browser
                .get(&format!("/cas/login?service={}", encode(service)))
                .await,
        ));
        validate(&app, "serviceValidate", service, &ticket).await;
    }
    assert_eq!(
        app.app.cas_logouts.run_once().await.unwrap().delivered,
        0,
        "nothing yet"
    );
    // The same person typing the password again (renew) keeps the session and its applications.
    let renewed = ticket_of(&cas_login(&mut browser, BIB, "&renew=true").await);
    validate(&app, "serviceValidate", BIB, &renewed).await;
    assert_eq!(
        app.app.cas_logouts.run_once().await.unwrap(),
        Default::default(),
        "a renew login logs no application out"
    );

    // Logout: moodle is told, with the ticket it validated; ent did not ask; bib (one request
    // per ticket it validated: two) fails.
    browser.get("/logout").await;
    browser.post("/logout", &[]).await;
    let report = app.app.cas_logouts.run_once().await.unwrap();
    assert_eq!((report.delivered, report.retried), (1, 2));
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let message = &sent[0]["logoutRequest"];
    insta::assert_snapshot!(
        "single_logout_message",
        regex::Regex::new(r#"ID="LR-[0-9a-f]+" Version="2.0" IssueInstant="[^"]+""#)
            .unwrap()
            .replace(
                &message.replace(&moodle_ticket, "ST-<ticket>"),
                r#"ID="LR-<id>" Version="2.0" IssueInstant="<time>""#
            )
    );
    assert!(
        message.starts_with(
            "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\""
        )
    );
    assert!(message.contains(&format!(
        "<samlp:SessionIndex>{moodle_ticket}</samlp:SessionIndex>"
    )));
    assert!(message.contains("<saml:NameID>emilie.dupre</saml:NameID>"));
    let statuses = app.helpdesk().single_logouts("emilie.dupre").await.unwrap();
    let state = |id: &str| {
        statuses
            .iter()
            .find(|s| s.service_id == id)
            .map(|s| (s.state, s.attempts))
            .unwrap()
    };
    assert_eq!(state("moodle"), ("delivered", 1));
    assert_eq!(state("bib"), ("pending", 1));
    assert!(statuses.iter().all(|s| s.service_id != "ent"));

    // The failing one is retried with backoff, then given up after six hours.
    assert_eq!(
        app.app.cas_logouts.run_once().await.unwrap().retried,
        0,
        "not due yet"
    );
    for _ in 0..20 {
        app.clock.advance(Duration::from_secs(3600));
        app.app.cas_logouts.run_once().await.unwrap();
    }
    let statuses = app.helpdesk().single_logouts("emilie.dupre").await.unwrap();
    let bib = statuses.iter().find(|s| s.service_id == "bib").unwrap();
    assert_eq!(bib.state, "failed");
    assert!(bib.attempts > 3 && bib.attempts < 12, "{}", bib.attempts);
    assert!(bib.last_error.as_deref().unwrap().contains("500"));

    // Every way a session ends queues it: here the helpdesk, and the expiry purge.
    let ticket = ticket_of(&cas_login(&mut browser, MOODLE, "").await);
    validate(&app, "serviceValidate", MOODLE, &ticket).await;
    app.helpdesk()
        .revoke_sessions("emilie.dupre", sesame::audit::Actor::System, "test")
        .await
        .unwrap();
    app.app.cas_logouts.run_once().await.unwrap();
    let ticket = ticket_of(&cas_login(&mut browser, MOODLE, "").await);
    validate(&app, "serviceValidate", MOODLE, &ticket).await;
    app.clock.advance(Duration::from_secs(9 * 3600));
    assert!(app.app.maintenance().run_once().await.purged_sessions >= 1);
    app.app.cas_logouts.run_once().await.unwrap();
    let sent = seen.lock().unwrap().clone();
    assert_eq!(
        sent.len(),
        3,
        "logout, revocation and expiry each reached moodle"
    );
    assert!(sent[2]["logoutRequest"].contains(&ticket));
}

fn soap(artifact: &str) -> String {
    format!(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\">\
         <SOAP-ENV:Header/><SOAP-ENV:Body><samlp:Request xmlns:samlp=\"urn:oasis:names:tc:SAML:1.0:protocol\" \
         MajorVersion=\"1\" MinorVersion=\"1\" RequestID=\"_1\" IssueInstant=\"2026-09-01T08:00:00Z\">\
         <samlp:AssertionArtifact>{artifact}</samlp:AssertionArtifact></samlp:Request>\
         </SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
}

async fn saml_post(app: &TestApp, target: &str, body: String) -> TestResponse {
    let request = axum::http::Request::builder()
        .method(axum::http::Method::POST)
        .uri(format!("/cas/samlValidate?TARGET={}", encode(target)))
        .header("content-type", "text/xml; charset=utf-8")
        .body(axum::body::Body::from(body))
        .unwrap();
    app.send(request, None).await
}

/// Replaces the random ids and the times of a SAML response, one element per line.
fn stable_saml(body: &str) -> String {
    let times =
        regex::Regex::new(r#"(IssueInstant|NotBefore|NotOnOrAfter|AuthenticationInstant)="[^"]*""#)
            .unwrap();
    let ids = regex::Regex::new(r#"(ResponseID|AssertionID)="_[0-9a-f]+""#).unwrap();
    let out = times.replace_all(body, r#"$1="<time>""#);
    ids.replace_all(&out, r#"$1="_<id>""#).replace("><", ">\n<")
}

async fn saml_validation_answers_soap_and_refuses_dtds(backend: Backend) {
    let app = app_with_services(backend).await;
    let mut browser = Browser::new(&app);
    let ticket = ticket_of(&cas_login(&mut browser, MOODLE, "").await);
    let ok = saml_post(&app, MOODLE, soap(&format!("\n  {ticket}\n"))).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("content-type"), Some("text/xml; charset=utf-8"));
    insta::assert_snapshot!("saml_success", stable_saml(&ok.body));
    let replay = saml_post(&app, MOODLE, soap(&ticket)).await;
    assert!(replay.body.contains("samlp:Responder") && replay.body.contains("INVALID_TICKET"));

    let ticket = ticket_of(&location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    ));
    let wrong_target = saml_post(&app, BIB, soap(&ticket)).await;
    assert!(
        wrong_target.body.contains("INVALID_SERVICE"),
        "{}",
        wrong_target.body
    );

    let ticket = ticket_of(&location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    ));
    let dtd = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        soap(&ticket)
    );
    let refused = saml_post(&app, MOODLE, dtd).await;
    insta::assert_snapshot!("saml_dtd_refused", stable_saml(&refused.body));
    assert!(!refused.body.contains("root:"));
    // The refused request did not consume the ticket: it was never read.
    let still = saml_post(&app, MOODLE, soap(&ticket)).await;
    assert!(still.body.contains("samlp:Success"));
    let garbage = saml_post(&app, MOODLE, "not xml <<<".into()).await;
    assert!(garbage.body.contains("samlp:Requester"));
}
