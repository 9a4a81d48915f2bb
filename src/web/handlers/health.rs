//! Operations endpoints: liveness, readiness, metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::is_trusted_proxy;
use crate::web::errors::{OwnBody, WebError};
use crate::web::{PeerAddr, WebState};

/// How long `/readyz` waits for the database before calling it unavailable.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut response =
        (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    response.extensions_mut().insert(OwnBody);
    response
}

/// `GET /healthz`: 200 while the process runs.
pub async fn live() -> Response {
    text(StatusCode::OK, "ok\n")
}

/// `GET /readyz`: 200 when the database answers, 503 otherwise.
pub async fn ready(State(state): State<WebState>) -> Response {
    match tokio::time::timeout(READINESS_TIMEOUT, state.health.ping()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
        Ok(Err(error)) => {
            tracing::warn!(%error, backend = state.health.backend(), "not ready");
            text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
        Err(_) => {
            tracing::warn!(
                backend = state.health.backend(),
                "not ready: database timed out"
            );
            text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}

/// `GET /metrics`: the Prometheus exposition, only to the configured scrapers (loopback by
/// default); anyone else sees a 404, as if it did not exist.
///
/// Security: a request relayed by a reverse proxy on the same host arrives from loopback too; it
/// carries `X-Forwarded-For` (or `Forwarded`), which a scraper does not send, so it is refused.
pub async fn metrics(
    State(state): State<WebState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    let proxied = headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded");
    let allowed =
        !proxied && peer.is_some_and(|peer| is_trusted_proxy(&state.metrics_allowed, peer.ip()));
    if !allowed {
        return WebError::NotFound.into_response();
    }
    let mut response = (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response();
    response.extensions_mut().insert(OwnBody);
    response
}
