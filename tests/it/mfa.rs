//! Second factors (issue 7, DESIGN.md §5) through the real router and the manual clock, on both
//! backends: TOTP enrolment at `/account`, the second step of a login (nothing exists before it
//! passes), replayed and out-of-window codes, recovery codes, lockout, step-up for a CAS service
//! that requires MFA, a password reset that keeps the factor, and the helpdesk reset.

use std::time::Duration;

use axum::http::StatusCode;
use sesame::clock::Clock as _;
use sesame::relying_parties::{CasService, MatchMode};

use crate::on_both_backends;
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp, TestResponse};

on_both_backends! {
    totp_is_enrolled_then_asked_at_login_once_per_code_within_one_step,
    a_partial_login_gets_no_session_no_ticket_and_cannot_move_browsers,
    recovery_codes_work_once_and_tell_the_contacts,
    wrong_second_factors_count_in_the_lockout,
    a_password_session_is_stepped_up_for_a_service_that_requires_mfa,
    an_account_without_a_factor_is_sent_to_enrol_or_refused,
    a_password_reset_keeps_the_factor_and_the_helpdesk_can_reset_it,
    the_account_page_lists_sessions_and_exports_the_data,
    an_oidc_request_for_mfa_steps_up_and_the_id_token_says_so,
    passkeys_register_then_serve_as_second_factor_and_passwordless_login,
    a_recovery_contact_changes_only_with_the_password_and_a_code,
    lost_factors_go_only_with_the_mailed_link_and_the_sms_code,
    an_affiliation_in_required_for_needs_a_second_factor_everywhere,
}

const PASSWORD: &str = "cheval agrafe pile correcte";
const GRADES: &str = "https://notes.uca.fr/";
const MOODLE: &str = "https://moodle.uca.fr/login/index.php?authCAS=CAS";

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

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {text}"))
        + start.len();
    let rest = &text[from..];
    &rest[..rest.find(end).unwrap()]
}

/// The TOTP generator of an authenticator app, from the key the page shows.
struct Authenticator(totp_rs::Totp);

impl Authenticator {
    fn code_at(&self, unix: i64) -> String {
        self.0.generate(unix as u64).to_string()
    }
}

async fn app_with_services(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let app = TestApp::start_with(backend, extra).await;
    for (id, pattern, mfa) in [
        ("moodle", "https://moodle.uca.fr/", false),
        ("grades", GRADES, true),
    ] {
        let mut service = CasService::new(id, &id.to_uppercase(), pattern, MatchMode::Prefix);
        service.attributes = vec!["mail".into()];
        service.mfa_required = mfa;
        app.app.cas.add_service(&service).await.unwrap();
    }
    app.active_student(PASSWORD).await;
    app
}

async fn password_step(browser: &mut Browser<'_>, flow: &str) -> TestResponse {
    browser.get(&format!("/login?flow={flow}")).await;
    browser
        .post(
            "/login",
            &[
                ("username", "emilie.dupre"),
                ("password", PASSWORD),
                ("flow", flow),
            ],
        )
        .await
}

/// Signs in with the password (no factor yet) and enrols a TOTP at `/account`; returns the
/// authenticator and the recovery codes shown.
async fn enrol_totp(app: &TestApp, browser: &mut Browser<'_>) -> (Authenticator, Vec<String>) {
    let signed_in = password_step(browser, "").await;
    assert_eq!(location(&signed_in), "/login");
    let page = browser.get("/account/mfa/totp").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<svg"), "a QR code");
    let secret = between(&page.body, r#"<code id="totp_secret">"#, "<").to_string();
    let reference = between(&page.body, r#"name="reference" value=""#, "\"").to_string();
    let authenticator = Authenticator(
        totp_rs::Builder::new()
            .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
            .with_account_name("emilie.dupre")
            .build()
            .unwrap(),
    );
    // A wrong first code changes nothing.
    let wrong = browser
        .post(
            "/account/mfa/totp",
            &[("reference", &reference), ("code", "000000")],
        )
        .await;
    assert!(wrong.body.contains("pas le bon"), "{}", wrong.body);
    assert!(
        !app.app
            .mfa
            .summary(&account_id(app).await)
            .await
            .unwrap()
            .totp
    );
    let code = authenticator.code_at(app.clock.unix_now());
    let done = browser
        .post(
            "/account/mfa/totp",
            &[("reference", &reference), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let codes: Vec<String> = done
        .body
        .split("<li><code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10, "{}", done.body);
    // The enrolment is single use.
    let again = browser
        .post(
            "/account/mfa/totp",
            &[("reference", &reference), ("code", &code)],
        )
        .await;
    assert!(again.body.contains("pas le bon"));
    (authenticator, codes)
}

async fn account_id(app: &TestApp) -> String {
    app.helpdesk().show("emilie.dupre").await.unwrap().id
}

async fn logout(browser: &mut Browser<'_>) {
    browser.get("/logout").await;
    browser.post("/logout", &[]).await;
}

fn has_session(browser: &Browser<'_>) -> bool {
    browser.cookies.contains_key("sesame")
}

async fn second_step(browser: &mut Browser<'_>, code: &str) -> TestResponse {
    browser.post("/login/mfa", &[("code", code)]).await
}

async fn totp_is_enrolled_then_asked_at_login_once_per_code_within_one_step(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let mut browser = Browser::new(&app);
    let enrolled_at = app.clock.unix_now();
    let (totp, _) = enrol_totp(&app, &mut browser).await;
    let mails = app.take_mails().await;
    assert!(
        mails
            .iter()
            .any(|m| m.mail.kind == sesame::mail::MailKind::SecurityNotice),
        "the contacts are told: {mails:?}"
    );
    logout(&mut browser).await;

    // The password now leads to the second step; the enrolment's code cannot be replayed.
    let to_second = password_step(&mut browser, "").await;
    assert!(location(&to_second).starts_with("/login/mfa"));
    assert!(!has_session(&browser));
    let page = browser.get("/login/mfa").await;
    assert!(page.body.contains(r#"name="code""#), "{}", page.body);
    let replay = second_step(&mut browser, &totp.code_at(enrolled_at)).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert!(replay.body.contains("pas valable"), "{}", replay.body);
    assert!(!has_session(&browser));

    // Two steps later: the code of one step ago (−30 s) passes…
    app.clock.advance(Duration::from_secs(60));
    let now = app.clock.unix_now();
    let signed_in = second_step(&mut browser, &totp.code_at(now - 30)).await;
    assert_eq!(location(&signed_in), "/login");
    assert!(has_session(&browser));
    logout(&mut browser).await;

    // …once: the same code again, or one from −60 s, is refused.
    password_step(&mut browser, "").await;
    for code in [totp.code_at(now - 30), totp.code_at(now - 60)] {
        let refused = second_step(&mut browser, &code).await;
        assert!(refused.body.contains("pas valable"), "{code}");
    }
    // +60 s is refused, +30 s accepted.
    let now = app.clock.unix_now() + 90;
    app.clock.advance(Duration::from_secs(90));
    let early = second_step(&mut browser, &totp.code_at(now + 60)).await;
    assert!(early.body.contains("pas valable"));
    let ok = second_step(&mut browser, &totp.code_at(now + 30)).await;
    assert_eq!(location(&ok), "/login");
    let id = account_id(&app).await;
    let session = &app.app.sessions.list(&id).await.unwrap()[0];
    assert_eq!(session.factors, ["pwd", "otp", "mfa"]);
}

async fn a_partial_login_gets_no_session_no_ticket_and_cannot_move_browsers(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let mut browser = Browser::new(&app);
    let (totp, _) = enrol_totp(&app, &mut browser).await;
    logout(&mut browser).await;
    app.clock.advance(Duration::from_secs(30));

    // Through CAS: the password step of a flow…
    let to_login = location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    );
    let flow = to_login.split("flow=").nth(1).unwrap().to_string();
    let to_second = password_step(&mut browser, &flow).await;
    assert!(location(&to_second).starts_with("/login/mfa?flow="));
    // …gives no ticket: CAS and OIDC still send the browser to the login page.
    let again = location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    );
    assert!(again.starts_with("/login?flow="), "{again}");
    assert!(!has_session(&browser));

    // Another browser with the same form (CSRF and all) but not the cookie gets nowhere.
    let mut other = Browser::new(&app);
    other.get("/login").await;
    let code = totp.code_at(app.clock.unix_now());
    let moved = other
        .post("/login/mfa", &[("code", &code), ("flow", &flow)])
        .await;
    assert!(location(&moved).starts_with("/login?flow="));
    assert!(!has_session(&other));

    // The right browser finishes and gets its ticket.
    let done = browser
        .post("/login/mfa", &[("code", &code), ("flow", &flow)])
        .await;
    let to_service = location(&done);
    assert!(to_service.starts_with(MOODLE), "{to_service}");
    assert!(to_service.contains("ticket=ST-"));
}

async fn recovery_codes_work_once_and_tell_the_contacts(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let mut browser = Browser::new(&app);
    let (_, codes) = enrol_totp(&app, &mut browser).await;
    logout(&mut browser).await;
    app.take_mails().await;

    password_step(&mut browser, "").await;
    let typed = codes[0].to_uppercase().replace('-', " ");
    let ok = second_step(&mut browser, &typed).await;
    assert_eq!(location(&ok), "/login");
    let mails = app.take_mails().await;
    assert!(
        mails
            .iter()
            .any(|m| m.mail.kind == sesame::mail::MailKind::SecurityNotice
                && m.mail.to.as_str() == "emilie@example.org"
                && m.mail.text.contains("code de secours")),
        "{mails:?}"
    );
    let id = account_id(&app).await;
    assert_eq!(app.app.mfa.summary(&id).await.unwrap().recovery_codes, 9);
    logout(&mut browser).await;

    password_step(&mut browser, "").await;
    let reused = second_step(&mut browser, &codes[0]).await;
    assert!(reused.body.contains("pas valable"));
    let next = second_step(&mut browser, &codes[1]).await;
    assert_eq!(location(&next), "/login");
}

async fn wrong_second_factors_count_in_the_lockout(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let mut browser = Browser::new(&app);
    let (totp, _) = enrol_totp(&app, &mut browser).await;
    logout(&mut browser).await;
    app.clock.advance(Duration::from_secs(30));

    // The password counts as an attempt until the factor passes; four wrong codes make five.
    password_step(&mut browser, "").await;
    let mut last = None;
    for _ in 0..4 {
        last = Some(second_step(&mut browser, "111111").await);
    }
    let last = last.unwrap();
    assert!(last.body.contains("verrouill"), "{}", last.body);
    assert!(!has_session(&browser));
    // Locked: the right code no longer helps, nor the right password.
    let code = totp.code_at(app.clock.unix_now());
    let after = second_step(&mut browser, &code).await;
    assert!(!has_session(&browser), "{}", after.body);
    let password = password_step(&mut browser, "").await;
    assert!(password.body.contains("verrouill"), "{}", password.body);
    let counter = app
        .app
        .lockout
        .counter("emilie.dupre")
        .await
        .unwrap()
        .unwrap();
    assert!(counter.failures >= 5, "{counter:?}");
}

async fn validate(app: &TestApp, service: &str, ticket: &str) -> TestResponse {
    app.get(&format!(
        "/cas/p3/serviceValidate?service={}&ticket={ticket}",
        encode(service)
    ))
    .await
}

async fn a_password_session_is_stepped_up_for_a_service_that_requires_mfa(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    // Browser A signs in with the password while the account has no factor…
    let mut a = Browser::new(&app);
    password_step(&mut a, "").await;
    let id = account_id(&app).await;
    let password_session = app.app.sessions.list(&id).await.unwrap().remove(0);
    // …then the factor is enrolled elsewhere.
    let mut b = Browser::new(&app);
    let (totp, _) = enrol_totp(&app, &mut b).await;
    app.clock.advance(Duration::from_secs(30));

    // A ticket of the password-only session never validates for the MFA service.
    let known = app.app.cas.known_service(GRADES).await.unwrap().unwrap();
    let forced = app
        .app
        .cas
        .issue(&password_session, &known, false)
        .await
        .unwrap();
    let refused = validate(&app, GRADES, &forced).await;
    assert!(refused.body.contains("INVALID_TICKET"), "{}", refused.body);

    // Browser A asks for the MFA service: the second factor is asked, then the ticket comes.
    let step = location(
        &a.get(&format!("/cas/login?service={}", encode(GRADES)))
            .await,
    );
    assert!(step.starts_with("/login/mfa?flow="), "{step}");
    let page = a.get(&step).await;
    assert!(
        page.body.contains(r#"name="code""#),
        "{} {:?} {}",
        page.status,
        page.header("location"),
        page.body
    );
    let flow = step.split("flow=").nth(1).unwrap();
    let cookie_before = a.cookies["sesame"].clone();
    let done = a
        .post(
            "/login/mfa",
            &[
                ("code", &totp.code_at(app.clock.unix_now())),
                ("flow", flow),
            ],
        )
        .await;
    let to_service = location(&done);
    assert!(to_service.starts_with(GRADES), "{to_service}");
    assert_ne!(a.cookies["sesame"], cookie_before, "a new cookie value");
    let ticket = to_service.split("ticket=").nth(1).unwrap();
    let valid = validate(&app, GRADES, ticket).await;
    assert!(valid.body.contains("<cas:user>emilie.dupre</cas:user>"));
    assert!(
        valid.body.contains(
            "<cas:authnContextClass>https://refeds.org/profile/mfa</cas:authnContextClass>"
        ),
        "{}",
        valid.body
    );
    assert!(
        valid
            .body
            .contains("<cas:authenticationMethod>otp</cas:authenticationMethod>")
    );

    // Once per SSO session: the MFA service and the others get tickets without asking again.
    for service in [GRADES, MOODLE] {
        let back = location(
            &a.get(&format!("/cas/login?service={}", encode(service)))
                .await,
        );
        assert!(back.starts_with(service), "{back}");
        assert!(back.contains("ticket=ST-"));
    }
}

async fn an_account_without_a_factor_is_sent_to_enrol_or_refused(backend: Backend) {
    // Default policy: enrol.
    let app = app_with_services(backend, &[]).await;
    let mut browser = Browser::new(&app);
    let to_login = location(
        &browser
            .get(&format!("/cas/login?service={}", encode(GRADES)))
            .await,
    );
    let flow = to_login.split("flow=").nth(1).unwrap().to_string();
    let to_enrol = password_step(&mut browser, &flow).await;
    assert_eq!(
        location(&to_enrol),
        format!("/account/mfa/totp?flow={flow}")
    );
    let page = browser.get(&location(&to_enrol)).await;
    let secret = between(&page.body, r#"<code id="totp_secret">"#, "<").to_string();
    let reference = between(&page.body, r#"name="reference" value=""#, "\"").to_string();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
        .with_account_name("x")
        .build()
        .unwrap();
    let code = totp.generate(app.clock.unix_now() as u64).to_string();
    let confirmed = browser
        .post(
            "/account/mfa/totp",
            &[("reference", &reference), ("code", &code), ("flow", &flow)],
        )
        .await;
    let back = location(&confirmed);
    let to_service = location(&browser.get(&back).await);
    assert!(to_service.starts_with(GRADES), "{to_service}");
    assert!(to_service.contains("ticket=ST-"));

    // Policy `refuse`: no session, no ticket, a clear page.
    let strict = app_with_services(backend, &[("SESAME_MFA__UNENROLLED", "refuse")]).await;
    let mut browser = Browser::new(&strict);
    let to_login = location(
        &browser
            .get(&format!("/cas/login?service={}", encode(GRADES)))
            .await,
    );
    let flow = to_login.split("flow=").nth(1).unwrap().to_string();
    let refused = password_step(&mut browser, &flow).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("double authentification"),
        "{}",
        refused.body
    );
    assert!(!has_session(&browser));
}

async fn a_password_reset_keeps_the_factor_and_the_helpdesk_can_reset_it(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let mut browser = Browser::new(&app);
    enrol_totp(&app, &mut browser).await;
    logout(&mut browser).await;
    app.take_mails().await;

    let recovery = &app.app.recovery;
    assert!(
        recovery
            .request("emilie.dupre", sesame::locale::Locale::Fr)
            .await
            .unwrap()
    );
    let mails = app.take_mails().await;
    let link = mails
        .iter()
        .find_map(|m| {
            m.mail
                .text
                .split_whitespace()
                .find(|w| w.contains("token="))
        })
        .unwrap()
        .to_string();
    let token = sesame::one_time::SecretToken::parse(link.split("token=").nth(1).unwrap()).unwrap();
    let new_password = "lampe verte au fond du jardin";
    recovery
        .complete(
            &token,
            new_password,
            new_password,
            sesame::locale::Locale::Fr,
        )
        .await
        .unwrap();
    browser.get("/login").await;
    let after_reset = browser
        .post(
            "/login",
            &[("username", "emilie.dupre"), ("password", new_password)],
        )
        .await;
    assert!(
        location(&after_reset).starts_with("/login/mfa"),
        "the factor survives a reset"
    );

    // The helpdesk's reset removes every factor, audited, and tells the contacts.
    let id = account_id(&app).await;
    let refused = app
        .helpdesk()
        .reset_mfa(
            "emilie.dupre",
            sesame::audit::Actor::Operator("helpdesk".into()),
            " ",
        )
        .await;
    assert!(refused.is_err(), "a reason is required");
    assert!(app.app.mfa.summary(&id).await.unwrap().any());
    let report = app.helpdesk().show("emilie.dupre").await.unwrap();
    assert!(
        report.factors.contains(&"totp".to_string()),
        "{:?}",
        report.factors
    );
    let removed = app
        .helpdesk()
        .reset_mfa(
            "emilie.dupre",
            sesame::audit::Actor::Operator("helpdesk".into()),
            "identity checked at the desk",
        )
        .await
        .unwrap();
    assert!(removed >= 2, "{removed}");
    assert!(!app.app.mfa.summary(&id).await.unwrap().any());
    assert!(
        app.take_mails()
            .await
            .iter()
            .any(|m| m.mail.kind == sesame::mail::MailKind::SecurityNotice)
    );
    let mut fresh = Browser::new(&app);
    fresh.get("/login").await;
    let plain = fresh
        .post(
            "/login",
            &[("username", "emilie.dupre"), ("password", new_password)],
        )
        .await;
    assert_eq!(location(&plain), "/login");
    assert!(has_session(&fresh));
}

async fn the_account_page_lists_sessions_and_exports_the_data(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let anonymous = app.get("/account").await;
    assert!(location(&anonymous).starts_with("/login?return_to=%2Faccount"));
    let mut browser = Browser::new(&app);
    password_step(&mut browser, "").await;
    let page = browser.get("/account").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(r#"<dd id="account_login">emilie.dupre</dd>"#)
    );
    assert!(page.body.contains("emilie@example.org"));
    // Sensitive changes need a recent authentication.
    app.clock.advance(Duration::from_secs(11 * 60));
    let stale = browser.get("/account/mfa/totp").await;
    assert!(location(&stale).starts_with("/account/reauth?return_to="));
    let wrong = browser
        .post(
            "/account/reauth",
            &[("password", "nope"), ("return_to", "/account/mfa/totp")],
        )
        .await;
    assert!(wrong.body.contains("pas le bon"));
    let ok = browser
        .post(
            "/account/reauth",
            &[("password", PASSWORD), ("return_to", "/account/mfa/totp")],
        )
        .await;
    assert_eq!(location(&ok), "/account/mfa/totp");
    assert!(browser.get("/account/mfa/totp").await.body.contains("<svg"));

    // The export holds the account and no secret.
    let export = browser.get("/account/export").await;
    assert_eq!(export.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(json["account"]["login"], "emilie.dupre");
    assert_eq!(json["recovery_contacts"][0]["value"], "emilie@example.org");
    assert!(!export.body.contains("argon2"));

    // A wrong current password changes nothing; the right one changes it.
    let refused = browser
        .post(
            "/account/password",
            &[
                ("current_password", "nope"),
                ("new_password", "un tout autre mot de passe"),
                ("new_password_confirm", "un tout autre mot de passe"),
            ],
        )
        .await;
    assert!(refused.body.contains("mot de passe actuel n&#39;est"));
    let changed = browser
        .post(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "un tout autre mot de passe"),
                ("new_password_confirm", "un tout autre mot de passe"),
            ],
        )
        .await;
    assert!(changed.body.contains("a été changé"), "{}", changed.body);

    // Log out everywhere.
    let id = account_id(&app).await;
    let everywhere = browser.post("/account/sessions/end-all", &[]).await;
    assert_eq!(everywhere.status, StatusCode::OK);
    assert!(app.app.sessions.list(&id).await.unwrap().is_empty());
}

const CB: &str = "https://app.uca.fr/oidc/cb";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn authorize_query(client: &str, extra: &str) -> String {
    format!(
        "response_type=code&client_id={client}&redirect_uri={}&scope=openid&state=s\
         &nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        encode(CB)
    )
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Redeems a code as the confidential client `id`; the ID token's claims.
async fn id_token_claims(app: &TestApp, id: &str, secret: &str, code: &str) -> serde_json::Value {
    use base64::Engine as _;
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ])
        .finish();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/oidc/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = app.send(request, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let tokens: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A first-party confidential client, registered as `sesame client add` does; its secret.
async fn register_client(app: &TestApp, id: &str, mfa_required: bool) -> String {
    use sesame::relying_parties::clients::{ClientAdmin, OidcClient};
    let admin = ClientAdmin::new(
        app.app.store.clone(),
        Vec::new(),
        false,
        app.app.audit.clone(),
        app.app.clock.clone(),
        app.app.entropy.clone(),
    );
    let mut client = OidcClient::new(id, id);
    client.redirect_uris = vec![CB.into()];
    client.first_party = true;
    client.mfa_required = mfa_required;
    let secret = admin
        .add_client(sesame::audit::Actor::System, client)
        .await
        .unwrap()
        .unwrap();
    app.app.oidc.forget_registry();
    secret
}

async fn an_oidc_request_for_mfa_steps_up_and_the_id_token_says_so(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let secrets = [
        register_client(&app, "portal", false).await,
        register_client(&app, "hr", true).await,
    ];

    // A password-only session; the factor is enrolled in another browser.
    let mut a = Browser::new(&app);
    password_step(&mut a, "").await;
    let mut b = Browser::new(&app);
    let (totp, _) = enrol_totp(&app, &mut b).await;
    app.clock.advance(Duration::from_secs(30));

    // Without a second factor, the password session gets a single-factor code…
    let plain = location(
        &a.get(&format!(
            "/oidc/authorize?{}",
            authorize_query("portal", "")
        ))
        .await,
    );
    let claims = id_token_claims(
        &app,
        "portal",
        &secrets[0],
        &query_param(&plain, "code").unwrap(),
    )
    .await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["acr"], sesame::oidc::ACR_SINGLE_FACTOR);
    // …and `prompt=none` cannot ask for the factor.
    let silent = location(
        &a.get(&format!(
            "/oidc/authorize?{}",
            authorize_query(
                "portal",
                "&prompt=none&acr_values=https%3A%2F%2Frefeds.org%2Fprofile%2Fmfa"
            )
        ))
        .await,
    );
    assert_eq!(
        query_param(&silent, "error").as_deref(),
        Some("interaction_required")
    );

    // `acr_values` asking for MFA: the second step, then the code.
    let step = location(
        &a.get(&format!(
            "/oidc/authorize?{}",
            authorize_query(
                "portal",
                "&acr_values=https%3A%2F%2Frefeds.org%2Fprofile%2Fmfa"
            )
        ))
        .await,
    );
    assert!(step.starts_with("/login/mfa?flow="), "{step}");
    let flow = step.split("flow=").nth(1).unwrap();
    let back = location(
        &a.post(
            "/login/mfa",
            &[
                ("code", &totp.code_at(app.clock.unix_now())),
                ("flow", flow),
            ],
        )
        .await,
    );
    assert!(back.starts_with(CB), "{back}");
    let claims = id_token_claims(
        &app,
        "portal",
        &secrets[0],
        &query_param(&back, "code").unwrap(),
    )
    .await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["acr"], sesame::oidc::ACR_MULTI_FACTOR);

    // A login stopped at its second step gets no code either: the client's request goes back
    // to the login page.
    let mut partial = Browser::new(&app);
    let to_second = password_step(&mut partial, "").await;
    assert!(location(&to_second).starts_with("/login/mfa"));
    let challenged = location(
        &partial
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("portal", "")
            ))
            .await,
    );
    assert!(challenged.starts_with("/login?flow="), "{challenged}");

    // The MFA-required client is served from the stepped-up session without asking again.
    let hr = location(
        &a.get(&format!("/oidc/authorize?{}", authorize_query("hr", "")))
            .await,
    );
    assert!(hr.starts_with(CB), "{hr}");
    let claims = id_token_claims(&app, "hr", &secrets[1], &query_param(&hr, "code").unwrap()).await;
    assert_eq!(claims["acr"], sesame::oidc::ACR_MULTI_FACTOR);
}

const ORIGIN: &str = "http://localhost:8080";

fn json_body(response: &TestResponse) -> serde_json::Value {
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

async fn passkeys_register_then_serve_as_second_factor_and_passwordless_login(backend: Backend) {
    use crate::support::authenticator::SoftAuthenticator;
    // Passkeys need a host name as relying party id (browsers refuse an IP address).
    let app = app_with_services(
        backend,
        &[("SESAME_SERVER__PUBLIC_URL", "http://localhost:8080/")],
    )
    .await;
    let id = account_id(&app).await;
    let mut browser = Browser::new(&app);
    password_step(&mut browser, "").await;
    let page = browser.get("/account").await;
    assert!(
        page.body.contains(r#"data-passkey="register""#),
        "{}",
        page.body
    );

    // Registration from /account.
    let ceremony = json_body(
        &browser
            .post(
                "/account/passkeys/options",
                &[("name", "Téléphone d'Émilie")],
            )
            .await,
    );
    assert_eq!(ceremony["options"]["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(
        ceremony["options"]["publicKey"]["authenticatorSelection"]["residentKey"],
        "preferred"
    );
    let (mut key, answer) = SoftAuthenticator::create(&ceremony["options"], ORIGIN);
    let reference = ceremony["reference"].as_str().unwrap();
    let saved = browser
        .post(
            "/account/passkeys",
            &[("passkey_ref", reference), ("passkey", &answer)],
        )
        .await;
    assert!(saved.body.contains("est enregistrée"), "{}", saved.body);
    assert!(saved.body.contains("Téléphone d&#39;Émilie"));
    assert_eq!(app.app.mfa.summary(&id).await.unwrap().passkeys, 1);
    // The same ceremony cannot register twice.
    let again = browser
        .post(
            "/account/passkeys",
            &[("passkey_ref", reference), ("passkey", &answer)],
        )
        .await;
    assert!(again.body.contains("pas pu être enregistrée"));
    assert_eq!(app.app.mfa.summary(&id).await.unwrap().passkeys, 1);
    logout(&mut browser).await;

    // As a second factor after the password.
    let to_second = password_step(&mut browser, "").await;
    assert!(location(&to_second).starts_with("/login/mfa"));
    let page = browser.get("/login/mfa").await;
    assert!(page.body.contains(r#"data-passkey="second""#));
    let ceremony = json_body(&browser.post("/login/mfa/passkey", &[]).await);
    assert_eq!(
        ceremony["options"]["publicKey"]["allowCredentials"][0]["id"],
        serde_json::json!(base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &key.credential_id
        ))
    );
    let assertion = key.get(&ceremony["options"], ORIGIN);
    let reference = ceremony["reference"].as_str().unwrap().to_string();
    let done = browser
        .post(
            "/login/mfa",
            &[("passkey_ref", &reference), ("passkey", &assertion)],
        )
        .await;
    assert_eq!(location(&done), "/login");
    let session = &app.app.sessions.list(&id).await.unwrap()[0];
    assert_eq!(session.factors, ["pwd", "hwk", "mfa"]);
    logout(&mut browser).await;

    // Passwordless, even while the password is locked; the assertion works once.
    for _ in 0..5 {
        browser.get("/login").await;
        browser
            .post(
                "/login",
                &[("username", "emilie.dupre"), ("password", "wrong")],
            )
            .await;
    }
    let locked = password_step(&mut browser, "").await;
    assert!(locked.body.contains("verrouill"));
    let form = browser.get("/login").await;
    assert!(form.body.contains("Se connecter avec une clé d&#39;accès"));
    let ceremony = json_body(&browser.post("/login/passkey/options", &[]).await);
    assert!(
        ceremony["options"]["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    let assertion = key.get(&ceremony["options"], ORIGIN);
    let reference = ceremony["reference"].as_str().unwrap().to_string();
    let signed_in = browser
        .post(
            "/login/passkey",
            &[("passkey_ref", &reference), ("passkey", &assertion)],
        )
        .await;
    assert_eq!(location(&signed_in), "/login");
    assert!(has_session(&browser));
    let sessions = app.app.sessions.list(&id).await.unwrap();
    assert_eq!(sessions[0].factors, ["hwk", "mfa"]);
    let mut other = Browser::new(&app);
    other.get("/login").await;
    let replayed = other
        .post(
            "/login/passkey",
            &[("passkey_ref", &reference), ("passkey", &assertion)],
        )
        .await;
    assert!(
        replayed.body.contains("pas été acceptée"),
        "{}",
        replayed.body
    );
    assert!(!has_session(&other));

    // A counter that goes backwards (a cloned authenticator) flags the passkey for good.
    app.take_mails().await;
    let ceremony = json_body(&other.post("/login/passkey/options", &[]).await);
    let cloned = key.assert_with_counter(&ceremony["options"], ORIGIN, 1);
    let refused = other
        .post(
            "/login/passkey",
            &[
                ("passkey_ref", ceremony["reference"].as_str().unwrap()),
                ("passkey", &cloned),
            ],
        )
        .await;
    assert!(refused.body.contains("pas été acceptée"));
    assert!(
        app.app.mfa.list_passkeys(&id).await.unwrap()[0]
            .flagged_at
            .is_some()
    );
    assert!(
        app.take_mails()
            .await
            .iter()
            .any(|m| m.mail.text.contains("copiée"))
    );
    let ceremony = json_body(&other.post("/login/passkey/options", &[]).await);
    let honest = key.get(&ceremony["options"], ORIGIN);
    let still_refused = other
        .post(
            "/login/passkey",
            &[
                ("passkey_ref", ceremony["reference"].as_str().unwrap()),
                ("passkey", &honest),
            ],
        )
        .await;
    assert!(still_refused.body.contains("pas été acceptée"));

    // Rename and remove at /account (the passwordless session is recent).
    let passkey_id = app.app.mfa.list_passkeys(&id).await.unwrap()[0].id.clone();
    let renamed = browser
        .post(
            "/account/passkeys/rename",
            &[("id", &passkey_id), ("name", "Clé USB")],
        )
        .await;
    assert!(renamed.body.contains("Clé USB"), "{}", renamed.body);
    let removed = browser
        .post("/account/passkeys/remove", &[("id", &passkey_id)])
        .await;
    assert!(removed.body.contains("Modification enregistrée"));
    assert!(app.app.mfa.list_passkeys(&id).await.unwrap().is_empty());
}

async fn a_recovery_contact_changes_only_with_the_password_and_a_code(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let id = account_id(&app).await;
    let mut browser = Browser::new(&app);
    password_step(&mut browser, "").await;
    app.take_mails().await;
    let new = "emilie.perso@example.net";

    // A wrong password or an institutional address changes nothing and sends nothing.
    let wrong = browser
        .post(
            "/account/contacts",
            &[("kind", "email"), ("value", new), ("password", "nope")],
        )
        .await;
    assert!(
        wrong.body.contains("mot de passe actuel n&#39;est"),
        "{}",
        wrong.body
    );
    let ours = browser
        .post(
            "/account/contacts",
            &[
                ("kind", "email"),
                ("value", "emilie.dupre@etu.uca.fr"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(ours.body.contains(r#"role="alert""#), "{}", ours.body);
    assert!(app.take_mails().await.is_empty());

    // The right password: a code to the new address only.
    let sent = browser
        .post(
            "/account/contacts",
            &[("kind", "email"), ("value", new), ("password", PASSWORD)],
        )
        .await;
    let reference = between(&sent.body, r#"name="reference" value=""#, "\"").to_string();
    let mails = app.take_mails().await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].mail.to.as_str(), new);
    let code: String = mails[0]
        .mail
        .text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_string();
    let wrong_code = if code == "000000" { "111111" } else { "000000" };

    // A wrong code: the change goes on under a new reference; the old one is spent.
    let retry = browser
        .post(
            "/account/contacts/confirm",
            &[("reference", &reference), ("code", wrong_code)],
        )
        .await;
    assert!(retry.body.contains("Essais restants : 4"), "{}", retry.body);
    let next = between(&retry.body, r#"name="reference" value=""#, "\"").to_string();
    assert_ne!(next, reference);
    let spent = browser
        .post(
            "/account/contacts/confirm",
            &[("reference", &reference), ("code", &code)],
        )
        .await;
    assert!(spent.body.contains("a expiré"), "{}", spent.body);
    let contacts = |app: &TestApp| {
        let id = id.clone();
        let store = app.app.store.clone();
        async move { store.list_recovery_contacts(&id).await.unwrap() }
    };
    assert!(
        contacts(&app)
            .await
            .iter()
            .any(|c| c.value == "emilie@example.org")
    );

    // The right code: replaced, and the old and new addresses are told.
    let done = browser
        .post(
            "/account/contacts/confirm",
            &[("reference", &next), ("code", &code)],
        )
        .await;
    assert!(done.body.contains("est changé"), "{}", done.body);
    let now = contacts(&app).await;
    let emails: Vec<_> = now.iter().filter(|c| c.kind == "email").collect();
    assert_eq!(emails.len(), 1, "{now:?}");
    assert_eq!((emails[0].value.as_str(), emails[0].confirmed), (new, true));
    assert!(
        now.iter().any(|c| c.kind == "phone"),
        "the phone stays: {now:?}"
    );
    let told: Vec<String> = app
        .take_mails()
        .await
        .iter()
        .filter(|m| m.mail.kind == sesame::mail::MailKind::SecurityNotice)
        .map(|m| m.mail.to.as_str().to_string())
        .collect();
    assert!(told.contains(&new.to_string()), "{told:?}");
    assert!(told.contains(&"emilie@example.org".to_string()), "{told:?}");
}

/// The texts the file SMS sender wrote (`<outbox_dir>/sms/`).
fn sms_texts(app: &TestApp) -> Vec<String> {
    let dir = app.app.config.outbox_dir().join("sms");
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    texts.sort();
    texts
}

async fn lost_factors_go_only_with_the_mailed_link_and_the_sms_code(backend: Backend) {
    let app = app_with_services(backend, &[]).await;
    let id = account_id(&app).await;
    let mut browser = Browser::new(&app);
    enrol_totp(&app, &mut browser).await;
    logout(&mut browser).await;
    app.take_mails().await;

    // Only from the second step, that is after the right password.
    let mut stranger = Browser::new(&app);
    stranger.get("/login").await;
    let nowhere = stranger.post("/login/mfa/lost", &[]).await;
    assert_eq!(location(&nowhere), "/login");
    assert!(app.take_mails().await.is_empty());

    password_step(&mut browser, "").await;
    let page = browser.get("/login/mfa").await;
    assert!(page.body.contains(r#"action="/login/mfa/lost""#));
    let sent = browser.post("/login/mfa/lost", &[]).await;
    assert!(sent.body.contains("un code par SMS"), "{}", sent.body);
    let mails = app.take_mails().await;
    let mail = mails
        .iter()
        .find(|m| m.mail.kind == sesame::mail::MailKind::FactorRecovery)
        .expect("the link is mailed");
    assert_eq!(mail.mail.to.as_str(), "emilie@example.org");
    let link = mail
        .mail
        .text
        .split_whitespace()
        .find(|w| w.contains("/login/mfa/recover?token="))
        .unwrap()
        .to_string();
    let path = &link[link.find("/login/").unwrap()..];
    let token = path.split("token=").nth(1).unwrap().to_string();
    let sms = sms_texts(&app);
    let text = sms
        .iter()
        .find(|t| t.contains("double authentification"))
        .expect("an SMS");
    let code: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_string();

    // The link alone, or a wrong code, removes nothing.
    let mut other = Browser::new(&app);
    let form = other.get(path).await;
    assert!(form.body.contains(r#"name="code""#), "{}", form.body);
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let wrong = other
        .post(
            "/login/mfa/recover",
            &[("token", &token), ("code", wrong_code)],
        )
        .await;
    assert!(wrong.body.contains("pas le bon"), "{}", wrong.body);
    assert!(app.app.mfa.summary(&id).await.unwrap().any());

    // Both: every factor goes, the contacts are told, the link is spent.
    let done = other
        .post("/login/mfa/recover", &[("token", &token), ("code", &code)])
        .await;
    assert!(done.body.contains("ont été retirés"), "{}", done.body);
    assert!(!app.app.mfa.summary(&id).await.unwrap().any());
    assert!(
        app.take_mails()
            .await
            .iter()
            .any(|m| m.mail.kind == sesame::mail::MailKind::SecurityNotice)
    );
    let again = other
        .post("/login/mfa/recover", &[("token", &token), ("code", &code)])
        .await;
    assert!(again.body.contains("plus valable"));
    let dead = other.get(path).await;
    assert_eq!(dead.status, StatusCode::NOT_FOUND);

    // The password alone signs in now; the person enrols again at /account.
    let mut fresh = Browser::new(&app);
    let signed_in = password_step(&mut fresh, "").await;
    assert_eq!(location(&signed_in), "/login");
}

async fn an_affiliation_in_required_for_needs_a_second_factor_everywhere(backend: Backend) {
    // Students must use a second factor: a plain login (no application asking) is refused…
    let strict = app_with_services(
        backend,
        &[
            ("SESAME_MFA__REQUIRED_FOR", "[\"student\"]"),
            ("SESAME_MFA__UNENROLLED", "refuse"),
        ],
    )
    .await;
    let mut browser = Browser::new(&strict);
    let refused = password_step(&mut browser, "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(!has_session(&browser));
    // …or sent to enrol, by default.
    let app = app_with_services(backend, &[("SESAME_MFA__REQUIRED_FOR", "[\"student\"]")]).await;
    let mut browser = Browser::new(&app);
    let to_enrol = password_step(&mut browser, "").await;
    assert!(location(&to_enrol).starts_with("/account/mfa/totp"));
    // The password session opened for the enrolment gives no application anything.
    let no_ticket = location(
        &browser
            .get(&format!("/cas/login?service={}", encode(MOODLE)))
            .await,
    );
    assert!(
        no_ticket.starts_with("/account/mfa/totp?flow="),
        "{no_ticket}"
    );
    register_client(&app, "portal", false).await;
    let no_code = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("portal", "")
            ))
            .await,
    );
    assert!(no_code.starts_with("/account/mfa/totp?flow="), "{no_code}");
    // Staff only: the student signs in with the password alone.
    let staff_only = app_with_services(
        backend,
        &[
            ("SESAME_MFA__REQUIRED_FOR", "[\"staff\"]"),
            ("SESAME_MFA__UNENROLLED", "refuse"),
        ],
    )
    .await;
    let mut browser = Browser::new(&staff_only);
    assert_eq!(location(&password_step(&mut browser, "").await), "/login");
}
