//! Every route of Sésame, in one table, and the middleware stack around them.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::handlers::{
    account, activation, assets, cas, demo, health, home, login, oidc, recovery,
};
use super::middleware::{
    RandomRequestId, audit_origin, distrust_request_id, limit_body, record_metrics,
    require_public_host, security_headers,
};
use super::throttle::throttle_posts;
use super::{WebState, errors};

pub use super::middleware::BODY_LIMIT;

/// Builds the application.
pub fn router(state: WebState) -> Router {
    let timeout: Duration = state.request_timeout;
    // Credential forms: throttled by client address (DESIGN.md §6).
    let credential_forms = Router::new()
        // Login (DESIGN.md §5); /cas/login and /oidc/authorize lead here
        .route("/login", get(login::form).post(login::submit))
        // The second step of a login or step-up, and passkeys (DESIGN.md §5)
        .route(
            "/login/mfa",
            get(login::second_factor_form).post(login::second_factor_submit),
        )
        .route("/login/mfa/passkey", post(login::second_factor_passkey))
        .route("/login/mfa/lost", post(login::lost_factors))
        .route(
            "/login/mfa/recover",
            get(login::recover_page).post(login::recover),
        )
        .route("/login/passkey/options", post(login::passkey_options))
        .route("/login/passkey", post(login::passkey_login))
        // Self-service: re-authentication and password change are credential forms too
        .route(
            "/account/reauth",
            get(account::reauth_page).post(account::reauth),
        )
        .route("/account/password", post(account::change_password))
        .route("/account/contacts", post(account::change_contact))
        .route("/account/contacts/confirm", post(account::confirm_contact))
        // Activation (DESIGN.md §4), one page per step
        .route(
            "/activate",
            get(activation::start_page).post(activation::start),
        )
        .route(
            "/activate/contact",
            get(activation::contact_page).post(activation::contact),
        )
        .route(
            "/activate/code",
            get(activation::code_page).post(activation::code),
        )
        .route(
            "/activate/password",
            get(activation::password_page).post(activation::password),
        )
        // Forgotten password (DESIGN.md §4)
        .route(
            "/password/forgot",
            get(recovery::forgot_page).post(recovery::forgot),
        )
        .route(
            "/password/reset",
            get(recovery::reset_page).post(recovery::reset),
        )
        .route_layer(from_fn_with_state(state.clone(), throttle_posts));
    let mut routes = Router::new()
        // Pages
        .route("/", get(home::show))
        .route("/static/sesame.css", get(assets::stylesheet))
        .route("/static/passkey.js", get(assets::passkey_script))
        // The account self-service page (DESIGN.md §5)
        .route("/account", get(account::overview))
        .route(
            "/account/mfa/totp",
            get(account::totp_page).post(account::totp_confirm),
        )
        .route("/account/mfa/totp/remove", post(account::totp_remove))
        .route("/account/mfa/codes", post(account::new_codes))
        .route("/account/passkeys/options", post(account::passkey_options))
        .route("/account/passkeys", post(account::passkey_register))
        .route("/account/passkeys/rename", post(account::passkey_change))
        .route("/account/passkeys/remove", post(account::passkey_change))
        .route("/account/sessions/end-all", post(account::end_all_sessions))
        .route("/account/export", get(account::export))
        .merge(credential_forms)
        .route("/logout", get(login::logout_page).post(login::logout))
        // CAS (Apereo CAS Protocol 3.0.3; DESIGN.md §7)
        .route("/cas/login", get(cas::login))
        .route("/cas/logout", get(cas::logout))
        .route("/cas/validate", get(cas::validate_cas1))
        .route("/cas/serviceValidate", get(cas::service_validate))
        .route("/cas/proxyValidate", get(cas::proxy_validate))
        .route("/cas/p3/serviceValidate", get(cas::p3_service_validate))
        .route("/cas/p3/proxyValidate", get(cas::p3_proxy_validate))
        .route("/cas/proxy", get(cas::proxy))
        .route("/cas/samlValidate", axum::routing::post(cas::saml_validate))
        // OpenID Connect (Core 1.0, Discovery 1.0, RP-Initiated and Back-Channel Logout 1.0)
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/oidc/jwks", get(oidc::jwks))
        .route(
            "/oidc/authorize",
            get(oidc::authorize).post(oidc::authorize),
        )
        .route("/oidc/consent", axum::routing::post(oidc::consent))
        .route("/oidc/token", axum::routing::post(oidc::token))
        .route("/oidc/userinfo", get(oidc::userinfo).post(oidc::userinfo))
        .route("/oidc/introspect", axum::routing::post(oidc::introspect))
        .route("/oidc/revoke", axum::routing::post(oidc::revoke))
        .route(
            "/oidc/logout",
            get(oidc::end_session).post(oidc::end_session),
        )
        // Operations
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .fallback(errors::not_found);
    if state.demo {
        // The demo's own CAS application (`sesame demo` only).
        routes = routes
            .route("/demo/cas", get(demo::cas).post(demo::cas_post))
            .route("/demo/cas-mfa", get(demo::cas_mfa))
            // The demo's own OIDC client.
            .route("/demo/oidc", get(demo::oidc));
    }

    // Outermost first: the id exists before anything logs; security headers and metrics see
    // every response, including error pages, panics, timeouts and refused hosts.
    let stack = ServiceBuilder::new()
        .layer(from_fn_with_state(state.clone(), distrust_request_id))
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId(
            state.entropy.clone(),
        )))
        .layer(
            TraceLayer::new_for_http()
                // Security: only the path is logged; query strings carry tickets and codes.
                .make_span_with(|request: &axum::http::Request<_>| {
                    let id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                    )
                })
                // The access log (a line per request) is DEBUG: with `log.level = "info"` an
                // identity provider behind a reverse proxy, which keeps its own access log,
                // writes no line per ticket validation (ADR 0008, amended). Failures (5xx) are
                // still logged at ERROR by the layer's default.
                .on_request(DefaultOnRequest::new().level(Level::TRACE))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn_with_state(state.clone(), audit_origin))
        .layer(from_fn_with_state(state.clone(), security_headers))
        .layer(from_fn_with_state(state.clone(), record_metrics))
        .layer(from_fn_with_state(state.clone(), errors::friendly_errors))
        .layer(CatchPanicLayer::custom(errors::panic_response))
        .layer(from_fn_with_state(state.clone(), require_public_host))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn(limit_body))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));

    routes.layer(stack).with_state(state)
}
