//! The OpenID Connect provider through the real router, on both backends: the Rust
//! `openidconnect` crate as a relying party (discovery, code flow with PKCE, ID token
//! verification against the JWKS, userinfo, refresh), and a negative scenario for every MUST of
//! the OpenID Foundation Basic, Config, RP-Initiated Logout and Back-Channel Logout plans that a
//! relying party can drive: code reuse, redirect URI mismatches, PKCE downgrades, prompt and
//! max_age, refresh reuse, bearer errors, introspection, revocation, end_session, and the logout
//! token sent when a session ends.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use serde_json::Value;
use sesame::relying_parties::clients::{AuthMethod, OidcClient};

use crate::on_both_backends;
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp, TestResponse};

on_both_backends! {
    the_openidconnect_crate_completes_the_code_flow_and_refreshes,
    a_code_is_single_use_and_a_replay_revokes_what_it_gave,
    a_code_gives_nothing_once_its_session_or_account_has_ended,
    the_token_request_must_match_the_authorization_request,
    bad_clients_and_redirect_uris_get_a_page_and_other_errors_go_back,
    prompt_and_max_age_are_obeyed,
    refresh_tokens_rotate_and_a_reused_one_revokes_the_family,
    consent_is_asked_once_per_client_and_can_be_refused,
    client_authentication_is_one_method_and_the_right_secret,
    userinfo_answers_bearer_errors_and_releases_claims_by_scope,
    introspection_and_revocation_follow_their_rfcs,
    end_session_redirects_only_with_a_valid_hint,
    an_ended_session_sends_logout_tokens_and_revokes_its_tokens,
    es256_and_eddsa_clients_get_tokens_signed_with_their_algorithm,
    a_key_rotation_never_shows_a_caching_client_an_unknown_kid,
}

const PASSWORD: &str = "cheval agrafe pile correcte";
const USER: &str = "emilie.dupre";
const CB: &str = "https://app.uca.fr/oidc/cb";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

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

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn header_of(jwt: &str) -> Value {
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

struct Rp {
    id: String,
    secret: Option<String>,
}

/// A client registered the way `sesame client add` does; returns its secret.
async fn register(app: &TestApp, client: OidcClient) -> Rp {
    let admin = sesame::relying_parties::clients::ClientAdmin::new(
        app.app.store.clone(),
        Vec::new(),
        false,
        app.app.audit.clone(),
        app.app.clock.clone(),
        app.app.entropy.clone(),
    );
    let id = client.id.clone();
    let secret = admin
        .add_client(sesame::audit::Actor::System, client)
        .await
        .unwrap();
    // The node sees its own registrations at once (other nodes within a second).
    app.app.oidc.forget_registry();
    Rp { id, secret }
}

fn web_client(id: &str) -> OidcClient {
    let mut client = OidcClient::new(id, &format!("App {id}"));
    client.redirect_uris = vec![CB.into(), format!("{CB}?second=1")];
    client.post_logout_redirect_uris = vec!["https://app.uca.fr/bye".into()];
    client.first_party = true;
    client
}

async fn app_with_client(backend: Backend) -> (TestApp, Rp) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let rp = register(&app, web_client("app")).await;
    (app, rp)
}

/// `/oidc/authorize?…` → login form → back with a code (or whatever the server answers).
async fn authorize_with_login(browser: &mut Browser<'_>, query: &str) -> String {
    let to_login = location(&browser.get(&format!("/oidc/authorize?{query}")).await);
    assert!(to_login.starts_with("/login?flow="), "{to_login}");
    let flow = to_login
        .trim_start_matches("/login?flow=")
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let form = browser.get(&to_login).await;
    assert!(form.body.contains("name=\"password\""));
    // The answer to this form is a redirect to the application: the page's CSP allows it.
    assert!(
        form.header("content-security-policy")
            .unwrap()
            .contains("form-action 'self' https://app.uca.fr;"),
        "{:?}",
        form.header("content-security-policy")
    );
    location(
        &browser
            .post(
                "/login",
                &[("username", USER), ("password", PASSWORD), ("flow", &flow)],
            )
            .await,
    )
}

fn authorize_query(client: &str, extra: &str) -> String {
    format!(
        "response_type=code&client_id={client}&redirect_uri={}&scope=openid%20profile%20email\
         &state=st%20%C3%A9%26x&nonce=n-0S6&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        encode(CB)
    )
}

async fn post_form(
    app: &TestApp,
    path: &str,
    basic: Option<(&str, &str)>,
    fields: &[(&str, &str)],
) -> TestResponse {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        request = request.header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
            ),
        );
    }
    app.send(request.body(Body::from(body)).unwrap(), None)
        .await
}

async fn redeem(app: &TestApp, rp: &Rp, code: &str, verifier: Option<&str>) -> TestResponse {
    let mut fields = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CB),
    ];
    if let Some(v) = verifier {
        fields.push(("code_verifier", v));
    }
    post_form(
        app,
        "/oidc/token",
        Some((&rp.id, rp.secret.as_deref().unwrap())),
        &fields,
    )
    .await
}

fn json_of(response: &TestResponse) -> Value {
    serde_json::from_str(&response.body).unwrap_or(Value::Null)
}

async fn userinfo(app: &TestApp, token: &str) -> TestResponse {
    app.get_with(
        "/oidc/userinfo",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

/// `/oidc/authorize?…`, through the login form only if the browser has no session.
async fn authorize(browser: &mut Browser<'_>, query: &str) -> String {
    let first = location(&browser.get(&format!("/oidc/authorize?{query}")).await);
    if first.starts_with("/login?flow=") {
        authorize_with_login(browser, query).await
    } else {
        first
    }
}

/// A full login (or SSO) and code redemption; returns the token response.
async fn tokens(app: &TestApp, rp: &Rp, browser: &mut Browser<'_>) -> Value {
    let back = authorize(browser, &authorize_query(&rp.id, "")).await;
    let code = query_param(&back, "code").expect("a code");
    let response = redeem(app, rp, &code, Some(VERIFIER)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    json_of(&response)
}

async fn the_openidconnect_crate_completes_the_code_flow_and_refreshes(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let issuer = sesame::app::issuer(&app.app.config);
    // The relying party's HTTP goes through the real router, in process.
    let app_ref = &app;
    let http = move |request: openidconnect::HttpRequest| async move {
        let uri = request.uri().clone();
        let mut builder = Request::builder()
            .method(request.method().clone())
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let response = app_ref
            .send(builder.body(Body::from(request.into_body())).unwrap(), None)
            .await;
        let mut out = openidconnect::http::Response::builder().status(response.status.as_u16());
        for (name, value) in &response.headers {
            out = out.header(name.as_str(), value.as_bytes());
        }
        Ok::<_, std::io::Error>(out.body(response.body.into_bytes()).unwrap())
    };
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.clone()).unwrap(), &http)
            .await
            .expect("discovery (the issuer is compared byte for byte)");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(rp.id.clone()),
        Some(ClientSecret::new(rp.secret.clone().unwrap())),
    )
    .set_redirect_uri(RedirectUrl::new(CB.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let path = &auth_url.as_str()[issuer.len()..];
    let mut browser = Browser::new(&app);
    let back =
        authorize_with_login(&mut browser, path.trim_start_matches("/oidc/authorize?")).await;
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(issuer.as_str()),
        "RFC 9207"
    );
    let response = client
        .exchange_code(AuthorizationCode::new(query_param(&back, "code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code is redeemed");
    let id_token = response.id_token().expect("an ID token");
    let now = chrono::DateTime::from_timestamp(app.app.clock.unix_now(), 0).unwrap();
    let verifier = client.id_token_verifier().set_time_fn(move || now);
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("the ID token verifies against the JWKS");
    assert_eq!(claims.issuer().as_str(), issuer);
    assert!(claims.auth_time().is_some());
    assert_eq!(
        claims.access_token_hash().map(|h| h.to_string()),
        Some(
            openidconnect::AccessTokenHash::from_token(
                response.access_token(),
                id_token.signing_alg().unwrap(),
                id_token.signing_key(&verifier).unwrap(),
            )
            .unwrap()
            .to_string()
        ),
        "at_hash"
    );
    let raw = claims_of(&id_token.to_string());
    assert_eq!(raw["azp"], rp.id);
    assert_eq!(raw["amr"], serde_json::json!(["pwd"]));
    assert_eq!(raw["acr"], sesame::oidc::ACR_SINGLE_FACTOR);
    assert!(raw["sid"].is_string());
    assert!(header_of(&id_token.to_string())["kid"].is_string());
    let info: CoreUserInfoClaims = client
        .user_info(response.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some(USER));
    assert_eq!(
        info.email().map(|e| e.as_str()),
        Some("emilie.dupre@etu.uca.fr")
    );
    assert_eq!(info.subject(), claims.subject());
    let refreshed = client
        .exchange_refresh_token(response.refresh_token().unwrap())
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        response.refresh_token().unwrap().secret(),
        "rotated"
    );
    let again = client
        .exchange_refresh_token(&RefreshToken::new(
            response.refresh_token().unwrap().secret().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await;
    assert!(again.is_err(), "the spent refresh token is refused");
}

async fn a_code_is_single_use_and_a_replay_revokes_what_it_gave(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    let back = authorize_with_login(&mut browser, &authorize_query("app", "")).await;
    assert!(back.starts_with(&format!("{CB}?code=")), "{back}");
    // The state is echoed byte for byte.
    assert_eq!(query_param(&back, "state").as_deref(), Some("st é&x"));
    let code = query_param(&back, "code").unwrap();
    let first = redeem(&app, &rp, &code, Some(VERIFIER)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let tokens = json_of(&first);
    assert_eq!(
        userinfo(&app, tokens["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );
    let second = redeem(&app, &rp, &code, Some(VERIFIER)).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&second)["error"], "invalid_grant");
    // RFC 6749 §4.1.2: what the first redemption gave is revoked.
    assert_eq!(
        userinfo(&app, tokens["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let refresh = post_form(
        &app,
        "/oidc/token",
        Some(("app", rp.secret.as_deref().unwrap())),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(json_of(&refresh)["error"], "invalid_grant");
    // Twenty concurrent redemptions of one code: at most one gets tokens (RFC 6749 §4.1.2: the
    // others are replays, which revoke what the code gave, or refuse it if they come before its
    // grant is stored, ADR 0020), and whatever it got is revoked by the replays that follow.
    let code = query_param(
        &location(
            &browser
                .get(&format!("/oidc/authorize?{}", authorize_query("app", "")))
                .await,
        ),
        "code",
    )
    .unwrap();
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let router = app.router.clone();
        let body = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
            encode(CB)
        );
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("app:{}", rp.secret.as_deref().unwrap()));
        let host = app.host();
        racers.spawn(async move {
            use tower::ServiceExt as _;
            let request = Request::builder()
                .method("POST")
                .uri("/oidc/token")
                .header("host", host)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("Basic {basic}"))
                .body(Body::from(body))
                .unwrap();
            let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
            let response = router
                .layer(axum::extract::connect_info::MockConnectInfo(peer))
                .oneshot(request)
                .await
                .unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (status, body)
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = racers.join_next().await {
        answers.push(answer.unwrap());
    }
    let (granted, refused): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|(status, _)| *status == StatusCode::OK);
    assert!(granted.len() <= 1, "{granted:?}");
    assert_eq!(refused.len(), 20 - granted.len());
    for (status, body) in &refused {
        assert_eq!(
            (*status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
    }
    for (_, tokens) in &granted {
        assert_eq!(
            userinfo(&app, tokens["access_token"].as_str().unwrap())
                .await
                .status,
            StatusCode::UNAUTHORIZED,
            "revoked by the replays that followed"
        );
    }
    // An expired code (60 s) is refused, and consumed.
    let back = location(
        &browser
            .get(&format!("/oidc/authorize?{}", authorize_query("app", "")))
            .await,
    );
    app.clock.advance(Duration::from_secs(61));
    let late = redeem(
        &app,
        &rp,
        &query_param(&back, "code").unwrap(),
        Some(VERIFIER),
    )
    .await;
    assert_eq!(json_of(&late)["error"], "invalid_grant");
}

/// ADR 0020: a code is read, checked, and spent by the write of its grant only while its session
/// is alive and its account active; otherwise the token request gets `invalid_grant` and nothing
/// is issued.
async fn a_code_gives_nothing_once_its_session_or_account_has_ended(backend: Backend) {
    use sesame::audit::{Actor, AuditAction, AuditQuery};
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    let issued = || async {
        app.app
            .audit
            .list(&AuditQuery {
                action: Some(AuditAction::OidcTokensIssued),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len()
    };
    // The user signs out between the authorization and the application's token request.
    let back = authorize_with_login(&mut browser, &authorize_query("app", "")).await;
    let code = query_param(&back, "code").unwrap();
    browser.post("/logout", &[]).await;
    let refused = redeem(&app, &rp, &code, Some(VERIFIER)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(json_of(&refused)["error"], "invalid_grant");
    // Signed in again; the helpdesk disables the account before the token request.
    let back = authorize_with_login(&mut browser, &authorize_query("app", "")).await;
    let code = query_param(&back, "code").unwrap();
    app.app
        .helpdesk()
        .disable(
            USER,
            Actor::Operator("helpdesk".into()),
            "left the university",
        )
        .await
        .unwrap();
    let refused = redeem(&app, &rp, &code, Some(VERIFIER)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(json_of(&refused)["error"], "invalid_grant");
    // And again: still nothing.
    let again = redeem(&app, &rp, &code, Some(VERIFIER)).await;
    assert_eq!(json_of(&again)["error"], "invalid_grant");
    assert_eq!(issued().await, 0);
}

async fn the_token_request_must_match_the_authorization_request(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let other = register(&app, web_client("other")).await;
    let mut browser = Browser::new(&app);
    authorize_with_login(&mut browser, &authorize_query("app", "")).await;
    // Wrong PKCE verifier.
    let code = fresh_code(&mut browser, "app").await;
    let wrong = redeem(&app, &rp, &code, Some("x".repeat(43).as_str())).await;
    assert_eq!(json_of(&wrong)["error"], "invalid_grant");
    // And the code is spent by that failure.
    assert_eq!(
        json_of(&redeem(&app, &rp, &code, Some(VERIFIER)).await)["error"],
        "invalid_grant"
    );
    // Missing verifier when a challenge was sent.
    let code = fresh_code(&mut browser, "app").await;
    assert_eq!(
        json_of(&redeem(&app, &rp, &code, None).await)["error"],
        "invalid_grant"
    );
    // A verifier without a challenge (PKCE downgrade).
    let query = format!(
        "response_type=code&client_id=app&redirect_uri={}&scope=openid&state=s",
        encode(CB)
    );
    let code = query_param(
        &location(&browser.get(&format!("/oidc/authorize?{query}")).await),
        "code",
    )
    .unwrap();
    assert_eq!(
        json_of(&redeem(&app, &rp, &code, Some(VERIFIER)).await)["error"],
        "invalid_grant"
    );
    // Wrong redirect_uri (another registered one).
    let code = fresh_code(&mut browser, "app").await;
    let response = post_form(
        &app,
        "/oidc/token",
        Some(("app", rp.secret.as_deref().unwrap())),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &format!("{CB}?second=1")),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(json_of(&response)["error"], "invalid_grant");
    // Another client's code.
    let code = fresh_code(&mut browser, "app").await;
    let response = redeem(&app, &other, &code, Some(VERIFIER)).await;
    assert_eq!(json_of(&response)["error"], "invalid_grant");
    // Missing and unknown grant types, unknown code.
    let basic = Some(("app", rp.secret.as_deref().unwrap()));
    assert_eq!(
        json_of(&post_form(&app, "/oidc/token", basic, &[("code", "x")]).await)["error"],
        "invalid_request"
    );
    assert_eq!(
        json_of(&post_form(&app, "/oidc/token", basic, &[("grant_type", "password")]).await)["error"],
        "unsupported_grant_type"
    );
    assert_eq!(
        json_of(
            &post_form(
                &app,
                "/oidc/token",
                basic,
                &[("grant_type", "client_credentials")]
            )
            .await
        )["error"],
        "unauthorized_client"
    );
    assert_eq!(
        json_of(&redeem(&app, &rp, "nonsense", Some(VERIFIER)).await)["error"],
        "invalid_grant"
    );
}

/// A code for `client` from the browser's live session.
async fn fresh_code(browser: &mut Browser<'_>, client: &str) -> String {
    let query = authorize_query(client, "");
    query_param(
        &location(&browser.get(&format!("/oidc/authorize?{query}")).await),
        "code",
    )
    .unwrap()
}

async fn bad_clients_and_redirect_uris_get_a_page_and_other_errors_go_back(backend: Backend) {
    let (app, _rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    for query in [
        format!("response_type=code&client_id=nobody&redirect_uri={}&scope=openid", encode(CB)),
        "response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&scope=openid".to_string(),
        format!("response_type=code&client_id=app&redirect_uri={}&scope=openid", encode(&format!("{CB}/"))),
        "response_type=code&client_id=app&scope=openid".to_string(),
    ] {
        let response = browser.get(&format!("/oidc/authorize?{query}")).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(response.header("location").is_none(), "never a redirect: {query}");
        assert!(response.body.contains("<html"), "a page");
    }
    let error_of = |url: &str| {
        (
            query_param(url, "error"),
            query_param(url, "state"),
            query_param(url, "iss"),
        )
    };
    let cases = [
        ("", "invalid_request", "response_type=code&"),
        (
            "response_type=token&",
            "unsupported_response_type",
            "response_type=code&",
        ),
        (
            "response_type=code&request=eyJhbGciOiJub25lIn0.e30.&",
            "request_not_supported",
            "response_type=code&",
        ),
        (
            "response_type=code&request_uri=https%3A%2F%2Fx&",
            "request_uri_not_supported",
            "response_type=code&",
        ),
    ];
    for (replacement, error, original) in cases {
        let query = authorize_query("app", "").replacen(original, replacement, 1);
        let back = location(&browser.get(&format!("/oidc/authorize?{query}")).await);
        let (e, state, iss) = error_of(&back);
        assert_eq!(e.as_deref(), Some(error), "{query}");
        assert_eq!(
            state.as_deref(),
            Some("st é&x"),
            "the state comes back on errors"
        );
        assert_eq!(iss, Some(sesame::app::issuer(&app.app.config)));
    }
    let plain = authorize_query("app", "")
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let back = location(&browser.get(&format!("/oidc/authorize?{plain}")).await);
    assert_eq!(
        error_of(&back).0.as_deref(),
        Some("invalid_request"),
        "plain is refused"
    );
    // A long state is fine; an unknown parameter is ignored; POST works like GET.
    let long_state = "s".repeat(300);
    let query =
        authorize_query("app", "&unknown_param=whatever").replace("st%20%C3%A9%26x", &long_state);
    let back = authorize_with_login(&mut browser, &query).await;
    assert!(query_param(&back, "code").is_some(), "{back}");
    assert_eq!(query_param(&back, "state"), Some(long_state));
    let fields: Vec<(String, String)> =
        url::form_urlencoded::parse(authorize_query("app", "").as_bytes())
            .into_owned()
            .collect();
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = location(&browser.post("/oidc/authorize", &fields).await);
    assert!(query_param(&back, "code").is_some(), "POST: {back}");
    // A public client must use PKCE.
    let mut spa = OidcClient::new("spa", "SPA");
    spa.redirect_uris = vec![CB.into()];
    spa.public = true;
    spa.auth_method = AuthMethod::None;
    spa.first_party = true;
    register(&app, spa).await;
    let query = format!(
        "response_type=code&client_id=spa&redirect_uri={}&scope=openid&state=z",
        encode(CB)
    );
    let back = location(&browser.get(&format!("/oidc/authorize?{query}")).await);
    assert_eq!(error_of(&back).0.as_deref(), Some("invalid_request"));
    let back = location(
        &browser
            .get(&format!("/oidc/authorize?{}", authorize_query("spa", "")))
            .await,
    );
    let code = query_param(&back, "code").unwrap();
    let public = post_form(
        &app,
        "/oidc/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("client_id", "spa"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(public.status, StatusCode::OK, "{}", public.body);
}

async fn prompt_and_max_age_are_obeyed(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    // prompt=none without a session: login_required, no page.
    let back = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&prompt=none")
            ))
            .await,
    );
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required")
    );
    let first = tokens(&app, &rp, &mut browser).await;
    let first_auth = claims_of(first["id_token"].as_str().unwrap())["auth_time"]
        .as_i64()
        .unwrap();
    // prompt=none with a session: a code, silently.
    let back = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&prompt=none")
            ))
            .await,
    );
    assert!(query_param(&back, "code").is_some(), "{back}");
    // max_age=1 after two seconds: the user signs in again, and auth_time moves.
    app.clock.advance(Duration::from_secs(2));
    let to_login = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&max_age=1")
            ))
            .await,
    );
    assert!(
        to_login.starts_with("/login?flow=") && to_login.contains("renew=true"),
        "{to_login}"
    );
    let form = browser.get(&to_login).await;
    assert!(
        form.body.contains("name=\"password\""),
        "the form, despite the session"
    );
    let back = authorize_with_login(&mut browser, &authorize_query("app", "&max_age=1")).await;
    let code = query_param(&back, "code").unwrap();
    let second = json_of(&redeem(&app, &rp, &code, Some(VERIFIER)).await);
    let second_auth = claims_of(second["id_token"].as_str().unwrap())["auth_time"]
        .as_i64()
        .unwrap();
    assert!(second_auth > first_auth, "{second_auth} > {first_auth}");
    // max_age large enough: no login.
    let back = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&max_age=3600")
            ))
            .await,
    );
    assert!(query_param(&back, "code").is_some());
    // prompt=login always asks; prompt=none with max_age exceeded is login_required.
    let to_login = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&prompt=login")
            ))
            .await,
    );
    assert!(to_login.contains("renew=true"));
    app.clock.advance(Duration::from_secs(5));
    let back = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&prompt=none&max_age=1")
            ))
            .await,
    );
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required")
    );
    // login_hint fills the form.
    let fresh = Browser::new(&app);
    let mut fresh = fresh;
    let to_login = location(
        &fresh
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&login_hint=emilie.dupre")
            ))
            .await,
    );
    assert!(
        fresh
            .get(&to_login)
            .await
            .body
            .contains("value=\"emilie.dupre\"")
    );
}

async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    let first = tokens(&app, &rp, &mut browser).await;
    let basic = Some(("app", rp.secret.as_deref().unwrap()));
    let refresh = |token: String| {
        let app = &app;
        async move {
            post_form(
                app,
                "/oidc/token",
                basic,
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await
        }
    };
    let second = refresh(first["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let second = json_of(&second);
    let id_token = claims_of(second["id_token"].as_str().unwrap());
    assert!(id_token.get("nonce").is_none(), "OIDC Core §12.2");
    assert_eq!(
        id_token["auth_time"],
        claims_of(first["id_token"].as_str().unwrap())["auth_time"],
        "the original authentication time"
    );
    let third = json_of(&refresh(second["refresh_token"].as_str().unwrap().to_string()).await);
    assert!(third["access_token"].is_string());
    // The first refresh token again: refused, and the whole family (the third) is revoked.
    let reuse = refresh(first["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(json_of(&reuse)["error"], "invalid_grant");
    assert_eq!(
        userinfo(&app, third["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        json_of(&refresh(third["refresh_token"].as_str().unwrap().to_string()).await)["error"],
        "invalid_grant"
    );
    // Another client cannot use this client's refresh token.
    let other = register(&app, web_client("other")).await;
    let fresh = tokens(&app, &rp, &mut browser).await;
    let stolen = post_form(
        &app,
        "/oidc/token",
        Some(("other", other.secret.as_deref().unwrap())),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(json_of(&stolen)["error"], "invalid_grant");
    // Asking for more scope than granted is refused.
    let wider = post_form(
        &app,
        "/oidc/token",
        basic,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
            ("scope", "openid phone"),
        ],
    )
    .await;
    assert_eq!(json_of(&wider)["error"], "invalid_scope");
}

async fn consent_is_asked_once_per_client_and_can_be_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let mut partner = web_client("partner");
    partner.first_party = false;
    let rp = register(&app, partner).await;
    let mut browser = Browser::new(&app);
    let to_login = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("partner", "")
            ))
            .await,
    );
    let flow = to_login
        .trim_start_matches("/login?flow=")
        .split('&')
        .next()
        .unwrap()
        .to_string();
    browser.get(&to_login).await;
    let consent = browser
        .post(
            "/login",
            &[("username", USER), ("password", PASSWORD), ("flow", &flow)],
        )
        .await;
    assert_eq!(consent.status, StatusCode::OK, "the consent page");
    assert!(consent.body.contains("App partner"));
    assert!(
        consent
            .header("content-security-policy")
            .unwrap()
            .contains("form-action 'self' https://app.uca.fr")
    );
    let consent_flow = consent
        .body
        .split("name=\"flow\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // Without the CSRF token: refused, nothing granted.
    let forged = browser
        .post(
            "/oidc/consent",
            &[
                ("flow", &consent_flow),
                ("decision", "allow"),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let back = location(
        &browser
            .post(
                "/oidc/consent",
                &[("flow", &consent_flow), ("decision", "allow")],
            )
            .await,
    );
    let code = query_param(&back, "code").expect("a code after consent");
    assert_eq!(
        redeem(&app, &rp, &code, Some(VERIFIER)).await.status,
        StatusCode::OK
    );
    // The consent flow is single use.
    let replay = browser
        .post(
            "/oidc/consent",
            &[("flow", &consent_flow), ("decision", "allow")],
        )
        .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    // Remembered: no page the second time, but prompt=consent asks again.
    let back = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("partner", "")
            ))
            .await,
    );
    assert!(query_param(&back, "code").is_some());
    let page = browser
        .get(&format!(
            "/oidc/authorize?{}",
            authorize_query("partner", "&prompt=consent")
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let flow = page
        .body
        .split("name=\"flow\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let back = location(
        &browser
            .post("/oidc/consent", &[("flow", &flow), ("decision", "deny")])
            .await,
    );
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st é&x"));
    // Revoked consent: asked again; prompt=none then answers consent_required.
    let account = app
        .app
        .store
        .find_account_by_login(USER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.app
            .oidc
            .revoke_consents(sesame::audit::Actor::System, &account.id, Some("partner"))
            .await
            .unwrap(),
        1
    );
    let back = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("partner", "&prompt=none")
            ))
            .await,
    );
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("consent_required")
    );
}

async fn client_authentication_is_one_method_and_the_right_secret(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    authorize_with_login(&mut browser, &authorize_query("app", "")).await;
    let code = query_param(
        &location(
            &browser
                .get(&format!("/oidc/authorize?{}", authorize_query("app", "")))
                .await,
        ),
        "code",
    )
    .unwrap();
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", VERIFIER),
    ];
    let wrong = post_form(
        &app,
        "/oidc/token",
        Some(("app", "not-the-secret")),
        &fields,
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&wrong)["error"], "invalid_client");
    assert!(
        wrong
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    let empty = post_form(&app, "/oidc/token", Some(("app", "")), &fields).await;
    assert_eq!(json_of(&empty)["error"], "invalid_client");
    let mut both = fields.to_vec();
    let secret = rp.secret.clone().unwrap();
    both.push(("client_secret", &secret));
    let two = post_form(&app, "/oidc/token", Some(("app", &secret)), &both).await;
    assert_eq!(json_of(&two)["error"], "invalid_request");
    // client_secret_post is not this client's method.
    let mut post = fields.to_vec();
    post.push(("client_id", "app"));
    post.push(("client_secret", &secret));
    assert_eq!(
        json_of(&post_form(&app, "/oidc/token", None, &post).await)["error"],
        "invalid_client"
    );
    // None of these spent the code: the right request still works.
    let right = post_form(&app, "/oidc/token", Some(("app", &secret)), &fields).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.body);
    // A client allowed client_credentials gets an access token, no refresh, no ID token.
    let mut service = OidcClient::new("batch", "Batch");
    service.grants = vec![sesame::relying_parties::clients::GrantType::ClientCredentials];
    service.auth_method = AuthMethod::ClientSecretPost;
    let batch = register(&app, service).await;
    let answer = post_form(
        &app,
        "/oidc/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "batch"),
            ("client_secret", batch.secret.as_deref().unwrap()),
            ("scope", "openid profile"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = json_of(&answer);
    assert!(answer.get("refresh_token").is_none() && answer.get("id_token").is_none());
    assert_eq!(answer["scope"], "profile");
}

async fn userinfo_answers_bearer_errors_and_releases_claims_by_scope(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    let tokens = tokens(&app, &rp, &mut browser).await;
    let access = tokens["access_token"].as_str().unwrap();
    let missing = app.get("/oidc/userinfo").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"sesame\"")
    );
    let bad = userinfo(&app, "not-a-token").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(
        bad.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let got = userinfo(&app, access).await;
    assert_eq!(got.status, StatusCode::OK);
    let claims = json_of(&got);
    assert_eq!(claims["preferred_username"], USER);
    assert_eq!(claims["email_verified"], true);
    assert!(claims.get("supannEtuId").is_none(), "supann was not asked");
    assert_eq!(
        claims["sub"],
        claims_of(tokens["id_token"].as_str().unwrap())["sub"]
    );
    // POST with the token in the body (RFC 6750 §2.2), and in both places (refused).
    let body = post_form(&app, "/oidc/userinfo", None, &[("access_token", access)]).await;
    assert_eq!(json_of(&body), claims);
    let request = Request::builder()
        .method("POST")
        .uri("/oidc/userinfo")
        .header("authorization", format!("Bearer {access}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("access_token={access}")))
        .unwrap();
    assert_eq!(
        app.send(request, None).await.status,
        StatusCode::BAD_REQUEST
    );
    // The refresh token is not an access token; an expired access token is refused.
    assert_eq!(
        userinfo(&app, tokens["refresh_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    app.clock.advance(Duration::from_secs(601));
    assert_eq!(
        userinfo(&app, access).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn introspection_and_revocation_follow_their_rfcs(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    let tokens = tokens(&app, &rp, &mut browser).await;
    let secret = rp.secret.clone().unwrap();
    let basic = Some(("app", secret.as_str()));
    let access = tokens["access_token"].as_str().unwrap();
    let active = json_of(&post_form(&app, "/oidc/introspect", basic, &[("token", access)]).await);
    assert_eq!(active["active"], true);
    assert_eq!(active["username"], USER);
    assert_eq!(active["client_id"], "app");
    assert_eq!(
        json_of(&post_form(&app, "/oidc/introspect", basic, &[("token", "nope")]).await),
        serde_json::json!({"active": false})
    );
    let anonymous = post_form(&app, "/oidc/introspect", None, &[("token", access)]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(&post_form(&app, "/oidc/introspect", basic, &[]).await)["error"],
        "invalid_request"
    );
    // Revocation: unknown tokens are fine (RFC 7009 §2.2); another client's token is untouched.
    let other = register(&app, web_client("other")).await;
    let other_basic = Some(("other", other.secret.as_deref().unwrap()));
    assert_eq!(
        post_form(&app, "/oidc/revoke", basic, &[("token", "unknown")])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post_form(&app, "/oidc/revoke", other_basic, &[("token", access)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        userinfo(&app, access).await.status,
        StatusCode::OK,
        "not other's to revoke"
    );
    // Revoking the refresh token revokes the grant's access token too.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(
        post_form(
            &app,
            "/oidc/revoke",
            basic,
            &[("token", refresh), ("token_type_hint", "refresh_token")]
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        userinfo(&app, access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        json_of(&post_form(&app, "/oidc/introspect", basic, &[("token", refresh)]).await)["active"],
        false
    );
}

async fn end_session_redirects_only_with_a_valid_hint(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    let tokens = tokens(&app, &rp, &mut browser).await;
    let hint = tokens["id_token"].as_str().unwrap();
    // Without a hint, or with a forged one: a confirmation page, no redirect, session kept.
    let page = browser
        .get(&format!(
            "/oidc/logout?post_logout_redirect_uri={}",
            encode("https://app.uca.fr/bye")
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("location").is_none());
    let mut forged = hint.to_string();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let page = browser
        .get(&format!(
            "/oidc/logout?id_token_hint={forged}&post_logout_redirect_uri={}",
            encode("https://app.uca.fr/bye")
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let back = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&prompt=none")
            ))
            .await,
    );
    assert!(query_param(&back, "code").is_some(), "still signed in");
    // A valid hint with an unregistered URI: signed out, but no redirect.
    let page = browser
        .get(&format!(
            "/oidc/logout?id_token_hint={hint}&post_logout_redirect_uri={}",
            encode("https://evil.example/")
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("location").is_none());
    let back = location(
        &browser
            .get(&format!(
                "/oidc/authorize?{}",
                authorize_query("app", "&prompt=none")
            ))
            .await,
    );
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required"),
        "signed out"
    );
    // Sign in again; a valid (even expired) hint and the registered URI: redirect with state.
    let tokens = self::tokens(&app, &rp, &mut browser).await;
    app.clock.advance(Duration::from_secs(3600));
    let back = location(&browser.get(&format!(
        "/oidc/logout?id_token_hint={}&post_logout_redirect_uri={}&state=bye%20now&client_id=app",
        tokens["id_token"].as_str().unwrap(),
        encode("https://app.uca.fr/bye")
    )).await);
    assert_eq!(back, "https://app.uca.fr/bye?state=bye+now");
    assert_eq!(
        userinfo(&app, tokens["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

async fn an_ended_session_sends_logout_tokens_and_revokes_its_tokens(backend: Backend) {
    let app = TestApp::start_with(backend, &[("SESAME_OIDC__ALLOW_HTTP_REDIRECTS", "true")]).await;
    app.active_student(PASSWORD).await;
    let (receiver, seen) = logout_receiver().await;
    let mut client = web_client("app");
    client.backchannel_logout_uri = Some(format!("{receiver}/bcl"));
    let rp = register(&app, client).await;
    let mut browser = Browser::new(&app);
    let tokens = tokens(&app, &rp, &mut browser).await;
    let id_token = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        app.app.cas_logouts.run_once().await.unwrap().delivered,
        0,
        "nothing yet"
    );
    browser.post("/logout", &[]).await;
    assert_eq!(
        userinfo(&app, tokens["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let report = app.app.cas_logouts.run_once().await.unwrap();
    assert_eq!(report.delivered, 1, "{report:?}");
    let sent = seen.lock().unwrap().clone();
    let token = sent[0]["logout_token"].clone();
    let header = header_of(&token);
    assert_eq!(header["typ"], "logout+jwt");
    assert!(header["kid"].is_string());
    let claims = claims_of(&token);
    assert_eq!(claims["iss"], sesame::app::issuer(&app.app.config));
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["sid"], id_token["sid"]);
    assert_eq!(claims["sub"], id_token["sub"]);
    assert!(claims["jti"].is_string() && claims["iat"].is_i64() && claims["exp"].is_i64());
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(
        claims.get("nonce").is_none(),
        "Back-Channel Logout 1.0 §2.4"
    );
    // Verified with the JWKS the provider publishes.
    let keys = app.app.keys.snapshot();
    assert!(sesame::oidc::jose::verify_compact(&token, &keys).is_some());
    // The helpdesk revoking every session tells the client too.
    let tokens = self::tokens(&app, &rp, &mut browser).await;
    let account = app
        .app
        .store
        .find_account_by_login(USER)
        .await
        .unwrap()
        .unwrap();
    app.app.sessions.revoke_all(&account.id).await.unwrap();
    assert_eq!(app.app.cas_logouts.run_once().await.unwrap().delivered, 1);
    let refresh = post_form(
        &app,
        "/oidc/token",
        Some(("app", rp.secret.as_deref().unwrap())),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        json_of(&refresh)["error"],
        "invalid_grant",
        "revoked with the session"
    );
}

async fn es256_and_eddsa_clients_get_tokens_signed_with_their_algorithm(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.active_student(PASSWORD).await;
    let keys = app.get("/oidc/jwks").await;
    let jwks = json_of(&keys);
    for key in jwks["keys"].as_array().unwrap() {
        assert!(key["kid"].is_string() && key["alg"].is_string(), "{key}");
    }
    let mut browser = Browser::new(&app);
    for (round, alg) in ["ES256", "EdDSA"].into_iter().enumerate() {
        let mut client = web_client(&format!("app-{}", alg.to_lowercase()));
        client.signing_alg = alg.into();
        client.access_token_format = sesame::relying_parties::clients::AccessTokenFormat::Jwt;
        let rp = register(&app, client).await;
        let query = authorize_query(&rp.id, "");
        let back = if round > 0 {
            location(&browser.get(&format!("/oidc/authorize?{query}")).await)
        } else {
            authorize_with_login(&mut browser, &query).await
        };
        let answer = json_of(
            &redeem(
                &app,
                &rp,
                &query_param(&back, "code").unwrap(),
                Some(VERIFIER),
            )
            .await,
        );
        let id_token = answer["id_token"].as_str().unwrap();
        assert_eq!(header_of(id_token)["alg"], alg);
        let kid = header_of(id_token)["kid"].as_str().unwrap().to_string();
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == kid.as_str() && k["alg"] == alg)
        );
        assert!(sesame::oidc::jose::verify_compact(id_token, &app.app.keys.snapshot()).is_some());
        let access = answer["access_token"].as_str().unwrap();
        assert_eq!(header_of(access)["typ"], "at+jwt");
        assert_eq!(claims_of(access)["client_id"], rp.id.as_str());
        assert_eq!(userinfo(&app, access).await.status, StatusCode::OK);
    }
    let discovery = json_of(&app.get("/.well-known/openid-configuration").await);
    insta::assert_snapshot!(
        "oidc_discovery",
        serde_json::to_string_pretty(&discovery)
            .unwrap()
            .replace(&sesame::app::issuer(&app.app.config), "<issuer>")
    );
}

async fn logout_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<std::collections::HashMap<String, String>>>>,
) {
    use axum::extract::State;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;
    let seen: Seen = Arc::default();
    let router = axum::Router::new()
        .route(
            "/bcl",
            axum::routing::post(
                |State(seen): State<Seen>,
                 axum::Form(form): axum::Form<HashMap<String, String>>| async move {
                    seen.lock().unwrap().push(form);
                    "ok"
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, seen)
}

async fn a_key_rotation_never_shows_a_caching_client_an_unknown_kid(backend: Backend) {
    let (app, rp) = app_with_client(backend).await;
    let mut browser = Browser::new(&app);
    let kid_of = |tokens: &Value| {
        header_of(tokens["id_token"].as_str().unwrap())["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let published = |jwks: &Value, kid: &str| {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid)
    };
    // The relying party caches the JWKS.
    let mut cached = json_of(&app.get("/oidc/jwks").await);
    let before = kid_of(&tokens(&app, &rp, &mut browser).await);
    assert!(published(&cached, &before));
    let rotated = app
        .app
        .keys
        .rotate(
            &[sesame::keys::SigningAlgorithm::Rs256],
            sesame::audit::Actor::System,
        )
        .await
        .unwrap();
    let next = rotated[0].kid.clone();
    // The new key is published at once, but does not sign yet.
    let jwks = json_of(&app.get("/oidc/jwks").await);
    assert!(published(&jwks, &next) && published(&jwks, &before));
    assert_eq!(kid_of(&tokens(&app, &rp, &mut browser).await), before);
    assert!(!published(&cached, &next), "the client's cache is older");
    // Within the publication delay the client refreshes its cache; then the key signs.
    cached = jwks;
    app.clock.advance(Duration::from_secs(24 * 3600 + 1));
    app.app.maintenance().run_once().await;
    let after = kid_of(&tokens(&app, &rp, &mut browser).await);
    assert_eq!(after, next);
    assert!(published(&cached, &after), "never an unknown kid");
    // The retired key stays published: tokens it signed still verify.
    assert!(published(&json_of(&app.get("/oidc/jwks").await), &before));
}
