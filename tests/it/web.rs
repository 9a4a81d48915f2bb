//! The web shell: pages, languages, security headers, Host check, limits, metrics.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use crate::support::{Backend, TestApp};

fn assert_security_headers(response: &crate::support::TestResponse) {
    let csp = response
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("no CSP on {response:?}"));
    for directive in [
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "default-src 'none'",
        "script-src 'nonce-",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(response.header("x-frame-options"), Some("DENY"));
    assert!(
        response
            .header("x-request-id")
            .is_some_and(|id| id.len() == 32)
    );
}

#[tokio::test]
async fn the_home_page_is_french_by_default() {
    let app = TestApp::start(Backend::Sqlite).await;
    let response = app.get("/").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(response.body.contains(r#"<html lang="fr">"#));
    assert!(response.body.contains("Sésame — authentification unique"));
    assert!(
        response.body.contains(r#"href="/?lang=en""#),
        "a link to English"
    );
    assert!(
        !response.body.contains("class=\"demo\""),
        "no demo banner outside the demo"
    );
    assert_security_headers(&response);
    assert_eq!(response.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn english_is_served_on_request() {
    let app = TestApp::start(Backend::Sqlite).await;
    for response in [
        app.get_with("/", &[("accept-language", "en-GB,en;q=0.9,fr;q=0.5")])
            .await,
        app.get_with("/?lang=en", &[("accept-language", "fr")])
            .await,
    ] {
        assert_eq!(response.status, StatusCode::OK);
        assert!(
            response.body.contains(r#"<html lang="en">"#),
            "{}",
            response.body
        );
        assert!(response.body.contains("Sésame — single sign-on"));
    }
}

#[tokio::test]
async fn the_demo_shows_its_banner() {
    let dir = tempfile::tempdir().unwrap();
    let env = crate::support::test_env(dir.path(), Backend::Sqlite);
    let app = TestApp::start_in(dir, env, true).await;
    let response = app.get("/").await;
    assert!(response.body.contains("class=\"demo\""));
    assert!(response.body.contains("Démonstration"));
}

#[tokio::test]
async fn unknown_pages_get_a_friendly_page_with_the_security_headers() {
    let app = TestApp::start(Backend::Sqlite).await;
    let response = app.get("/nowhere?lang=en").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert!(response.body.contains("Page not found"));
    assert!(response.body.contains(r#"<a href="/">"#));
    assert_security_headers(&response);
    let french = app.get("/nulle-part").await;
    assert!(french.body.contains("Page introuvable"));
}

#[tokio::test]
async fn a_wrong_method_gets_a_friendly_page() {
    let app = TestApp::start(Backend::Sqlite).await;
    let response = app
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri("/")
                .body(Body::empty())
                .unwrap(),
            None,
        )
        .await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.body.contains("Méthode non autorisée"));
    assert_security_headers(&response);
}

#[tokio::test]
async fn each_response_gets_its_own_csp_nonce_and_request_id() {
    let app = TestApp::start(Backend::Sqlite).await;
    let first = app.get("/").await;
    let second = app.get("/").await;
    assert_ne!(
        first.header("content-security-policy"),
        second.header("content-security-policy")
    );
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
}

#[tokio::test]
async fn an_unexpected_host_is_refused_with_a_link_to_the_public_url() {
    let app = TestApp::start(Backend::Sqlite).await;
    let response = app
        .get_with("/", &[("host", "evil.example"), ("accept-language", "en")])
        .await;
    assert_eq!(response.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(response.body.contains("Unexpected address"));
    assert!(response.body.contains("http://127.0.0.1:8080/"));
    assert_security_headers(&response);
    // Probes answer whatever the Host: load balancers call them by address.
    let health = app.get_with("/healthz", &[("host", "10.1.2.3:8080")]).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_readiness_answer_in_plain_text() {
    let app = TestApp::start(Backend::Sqlite).await;
    let live = app.get("/healthz").await;
    assert_eq!((live.status, live.body.as_str()), (StatusCode::OK, "ok\n"));
    let ready = app.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "ready\n")
    );
    assert_security_headers(&ready);
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_before_it_is_read() {
    let app = TestApp::start(Backend::Sqlite).await;
    let big = vec![b'a'; 64 * 1024 + 1];
    let response = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/")
                .header("content-length", big.len())
                .body(Body::from(big))
                .unwrap(),
            None,
        )
        .await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.body.contains("Requête trop volumineuse"));
    assert_security_headers(&response);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_are_for_allowed_scrapers_only() {
    let app = TestApp::start(Backend::Sqlite).await;
    app.get("/").await;
    app.get("/no/such/page").await;
    let scrape = app.get("/metrics").await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert!(
        scrape
            .body
            .contains(r#"sesame_http_requests_total{method="GET",route="/",status="200"} 1"#),
        "{}",
        scrape.body
    );
    assert!(
        scrape.body.contains(r#"route="unmatched",status="404"} 1"#),
        "unknown paths share one label"
    );
    assert!(
        scrape
            .body
            .contains("sesame_http_request_duration_seconds_bucket")
    );

    let outsider = app
        .send(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
            Some("203.0.113.9:5555".parse().unwrap()),
        )
        .await;
    assert_eq!(outsider.status, StatusCode::NOT_FOUND);
    assert!(!outsider.body.contains("sesame_http_requests_total"));
}

#[tokio::test]
async fn https_deployments_send_hsts() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[("SESAME_SERVER__PUBLIC_URL", "https://sso.uca.fr")],
    )
    .await;
    let response = app.get_with("/", &[("host", "sso.uca.fr")]).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    let plain = TestApp::start(Backend::Sqlite).await.get("/").await;
    assert_eq!(plain.header("strict-transport-security"), None);
}

#[tokio::test]
async fn the_stylesheet_is_served_and_cacheable() {
    let app = TestApp::start(Backend::Sqlite).await;
    let response = app.get("/static/sesame.css").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        response.header("cache-control"),
        Some("public, max-age=3600")
    );
}

#[tokio::test]
async fn metrics_relayed_by_a_local_reverse_proxy_are_refused() {
    let app = TestApp::start(Backend::Sqlite).await;
    let relayed = app
        .get_with("/metrics", &[("x-forwarded-for", "198.51.100.7")])
        .await;
    assert_eq!(relayed.status, StatusCode::NOT_FOUND);
    let forwarded = app
        .get_with("/metrics", &[("forwarded", "for=198.51.100.7")])
        .await;
    assert_eq!(forwarded.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn clients_cannot_choose_their_request_id_but_trusted_proxies_can() {
    let app = TestApp::start(Backend::Sqlite).await;
    let forged = app.get_with("/", &[("x-request-id", "forged-id")]).await;
    assert_ne!(forged.header("x-request-id"), Some("forged-id"));
    assert_eq!(forged.header("x-request-id").map(str::len), Some(32));

    let proxied = TestApp::start_with(
        Backend::Sqlite,
        &[("SESAME_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]")],
    )
    .await;
    let kept = proxied
        .get_with("/", &[("x-request-id", "nginx-4f2a")])
        .await;
    assert_eq!(kept.header("x-request-id"), Some("nginx-4f2a"));
}
