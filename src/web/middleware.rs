//! Cross-cutting HTTP behaviour: request ids, security headers (DESIGN.md §9) with a per-request
//! CSP nonce, the `Host` check, and request metrics.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestId, RequestId};

use super::errors::WebError;
use super::metrics::{RequestLabels, RouteLabels};
use super::{PeerAddr, WebState};
use crate::clock::Stopwatch;
use crate::entropy::{Entropy, EntropyExt};
use std::sync::Arc;

/// Makes `X-Request-Id` values: 128 random bits, hex.
#[derive(Clone)]
pub struct RandomRequestId(pub Arc<dyn Entropy>);

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&self.0.hex(16))
            .ok()
            .map(RequestId::new)
    }
}

/// Drops an incoming `X-Request-Id` unless it comes from a trusted proxy, so that clients cannot
/// choose the id under which their requests are logged; the request-id layer then makes one.
pub async fn distrust_request_id(
    State(state): State<WebState>,
    PeerAddr(peer): PeerAddr,
    mut request: Request,
    next: Next,
) -> Response {
    let trusted =
        peer.is_some_and(|peer| crate::config::is_trusted_proxy(&state.trusted_proxies, peer.ip()));
    if !trusted {
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

/// Makes the audit trail know where the request came from (client address, user agent, request
/// id): every event recorded while handling it carries them (`audit::with_origin`).
pub async fn audit_origin(
    super::ClientIp(client_ip): super::ClientIp,
    request: Request,
    next: Next,
) -> Response {
    let origin = crate::audit::Origin {
        client_ip: client_ip.map(|ip| ip.to_string()),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(crate::audit::Origin::clean_user_agent),
        request_id: request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .map(str::to_string),
    };
    crate::audit::with_origin(origin, next.run(request)).await
}

/// The nonce that scripts of this response must carry (`<script nonce="…">`).
#[derive(Debug, Clone)]
pub struct CspNonce(pub String);

/// Largest request body accepted (DESIGN.md §9): forms and token requests are far smaller.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Enforces [`BODY_LIMIT`] on every route: a declared `Content-Length` above it is answered 413 at
/// once; a streamed body is cut off at the limit (the extractor reading it then answers 413).
pub async fn limit_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        return WebError::TooLarge.into_response();
    }
    let request =
        request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, BODY_LIMIT)));
    next.run(request).await
}

/// Paths that answer whatever the `Host` (load balancers and scrapers probe by address).
const HOST_AGNOSTIC_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The page policy of DESIGN.md §9. Forms post to this site only, except — `extra_form_action` —
/// to the origin a login or consent page sends the browser back to: browsers apply
/// `form-action` to the redirects that follow a form submission (CSP Level 3 §6.3.1), and the
/// answer to a login form is a 303 to the application.
pub fn content_security_policy(nonce: &str, extra_form_action: Option<&str>) -> String {
    let extra = extra_form_action
        .filter(|o| {
            o.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'.' | b'-' | b'[' | b']')
            })
        })
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'{extra}; frame-ancestors 'none'; base-uri 'none'; \
         object-src 'none'"
    )
}

/// Sets the security headers of DESIGN.md §9 on every response, errors included. A handler that
/// needs another policy (e.g. `form-action` to a CAS service) sets its own header; the defaults
/// only fill what is missing.
pub async fn security_headers(
    State(state): State<WebState>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = state.entropy.token(16);
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // The policy is made only for a response without one of its own, and its string becomes the
    // header value without a copy.
    let csp = (!headers.contains_key(header::CONTENT_SECURITY_POLICY))
        .then(|| HeaderValue::try_from(content_security_policy(&nonce, None)).ok())
        .flatten();
    let defaults: [(HeaderName, Option<HeaderValue>); 7] = [
        (header::CONTENT_SECURITY_POLICY, csp),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            Some(HeaderValue::from_static("nosniff")),
        ),
        (
            header::REFERRER_POLICY,
            Some(HeaderValue::from_static("no-referrer")),
        ),
        (
            header::X_FRAME_OPTIONS,
            Some(HeaderValue::from_static("DENY")),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            Some(HeaderValue::from_static("same-origin")),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            Some(HeaderValue::from_static(
                "camera=(), microphone=(), geolocation=(), payment=()",
            )),
        ),
        // Auth pages must never be cached (DESIGN.md §9); pages that may be (static assets) say
        // so themselves.
        (
            header::CACHE_CONTROL,
            Some(HeaderValue::from_static("no-store")),
        ),
    ];
    for (name, value) in defaults {
        if let Some(value) = value
            && !headers.contains_key(&name)
        {
            headers.insert(name, value);
        }
    }
    if state.https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000"),
        );
    }
    response
}

/// Refuses requests whose `Host` is not the public URL's (DESIGN.md §9): absolute URLs are only
/// ever built from the configured public URL, and a page served under another name would invite
/// cookie and phishing confusion.
pub async fn require_public_host(
    State(state): State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    if HOST_AGNOSTIC_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(host) if host.eq_ignore_ascii_case(&state.public_authority) => next.run(request).await,
        other => WebError::WrongHost {
            got: other.unwrap_or_default(),
        }
        .into_response(),
    }
}

/// Counts requests and observes latency by route template (never by raw path, which would let
/// anyone grow the label set).
pub async fn record_metrics(
    State(state): State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    let stopwatch = Stopwatch::start();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(stopwatch.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
