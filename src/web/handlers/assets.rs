//! Static assets, embedded in the binary.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

const STYLESHEET: &str = include_str!("../../../templates/static/sesame.css");

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

const PASSKEY_SCRIPT: &str = include_str!("../../../templates/static/passkey.js");

/// The passkey script of the login and account pages (loaded with the page's CSP nonce).
pub async fn passkey_script() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        PASSKEY_SCRIPT,
    )
}
