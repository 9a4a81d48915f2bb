//! The only place where errors become HTTP responses (DESIGN.md §12).
//!
//! Handlers return [`WebError`]; it becomes a status code plus an [`ErrorKind`] marker, and the
//! [`friendly_errors`] middleware — which knows the request's language and id — renders the page.
//! Responses produced by tower layers (timeout, body limit, method not allowed) and panics get the
//! same pages. Protocol errors (CAS XML, OAuth JSON) will be mapped here too, each in its format.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::RequestId;

use super::WebState;
use super::i18n::{Locale, PageTexts as _, Texts};
use super::views::{ErrorPage, PageContext, render};
use crate::storage::StorageError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("no such page")]
    NotFound,
    #[error("the request came for host {got:?}, not the public URL")]
    WrongHost { got: String },
    #[error("the form's CSRF token is missing or wrong")]
    Forbidden,
    #[error("the request body is larger than allowed")]
    TooLarge,
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A CAS `service` (or, later, an OIDC client) that is not registered: an error page, never a
    /// redirect (DESIGN.md §7).
    #[error("the application is not registered: {0}")]
    UnknownService(String),
    /// An OIDC authorization request whose client or redirect URI cannot be trusted: an error
    /// page, never a redirect (RFC 6749 §4.1.2.1).
    #[error("the OIDC client or redirect URI is not registered: {0}")]
    UnknownClient(String),
    /// The application requires a second factor the session does not have.
    #[error("the application {0} requires a second factor")]
    SecondFactorRequired(String),
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// The password-hashing pool is full: try again in a moment (503).
    #[error("busy: {0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// An account operation's failure: storage as storage, a full hashing queue as busy, anything else
/// (a malformed stored hash, stopped workers) as a bug.
impl From<crate::accounts::AccountsError> for WebError {
    fn from(error: crate::accounts::AccountsError) -> Self {
        use crate::accounts::AccountsError;
        use crate::accounts::password::PasswordError;
        match error {
            AccountsError::Storage(error) => WebError::Storage(error),
            AccountsError::Password(PasswordError::Busy) => {
                WebError::Busy(PasswordError::Busy.to_string())
            }
            other => WebError::Internal(other.to_string()),
        }
    }
}

/// Which friendly page a response should carry; set on the response, rendered by
/// [`friendly_errors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Forbidden,
    TooManyRequests,
    UnknownService,
    SecondFactorRequired,
    WrongHost,
    BadRequest,
    MethodNotAllowed,
    Timeout,
    TooLarge,
    Unavailable,
    Internal,
}

impl ErrorKind {
    fn for_status(status: StatusCode) -> Option<Self> {
        Some(match status {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests,
            StatusCode::MISDIRECTED_REQUEST => Self::WrongHost,
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::BadRequest,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => Self::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            s if s.is_server_error() => Self::Internal,
            _ => return None,
        })
    }

    fn texts(&self, t: &'static Texts) -> (&'static str, &'static str) {
        match self {
            Self::NotFound => (t.not_found_title, t.not_found_body),
            Self::Forbidden => (t.forbidden_title, t.forbidden_body),
            Self::TooManyRequests => (t.throttled_title, t.throttled_body),
            Self::UnknownService => (t.unknown_service_title, t.unknown_service_body),
            Self::SecondFactorRequired => (t.mfa_required_title, t.mfa_required_body),
            Self::WrongHost => (t.wrong_host_title, t.wrong_host_body),
            Self::BadRequest => (t.bad_request_title, t.bad_request_body),
            Self::MethodNotAllowed => (t.method_title, t.method_body),
            Self::Timeout => (t.timeout_title, t.timeout_body),
            Self::TooLarge => (t.too_large_title, t.too_large_body),
            Self::Unavailable => (t.unavailable_title, t.unavailable_body),
            Self::Internal => (t.internal_title, t.internal_body),
        }
    }
}

/// Marks a response whose body is deliberate (a health probe's text, a protocol error): the
/// friendly-page renderer leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct OwnBody;

fn marked(status: StatusCode, kind: ErrorKind) -> Response {
    let mut response = status.into_response();
    response.extensions_mut().insert(kind);
    response
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::NotFound => marked(StatusCode::NOT_FOUND, ErrorKind::NotFound),
            WebError::WrongHost { got } => {
                tracing::info!(host = %got, "refused a request for an unexpected Host");
                marked(StatusCode::MISDIRECTED_REQUEST, ErrorKind::WrongHost)
            }
            WebError::TooLarge => marked(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge),
            WebError::Forbidden => {
                tracing::info!("refused a form without a valid CSRF token");
                marked(StatusCode::FORBIDDEN, ErrorKind::Forbidden)
            }
            WebError::UnknownService(service) => {
                // Only the host: the URL is the client's and may carry secrets or line breaks.
                let host = url::Url::parse(&service)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_else(|| "-".into());
                tracing::info!(%host, "refused an unregistered service");
                marked(StatusCode::FORBIDDEN, ErrorKind::UnknownService)
            }
            WebError::UnknownClient(reason) => {
                tracing::info!(%reason, "refused an OIDC authorization request");
                marked(StatusCode::BAD_REQUEST, ErrorKind::UnknownService)
            }
            WebError::SecondFactorRequired(service) => {
                tracing::info!(%service, "refused a password-only session for an MFA service");
                marked(StatusCode::FORBIDDEN, ErrorKind::SecondFactorRequired)
            }
            WebError::BadRequest(reason) => {
                tracing::info!(%reason, "bad request");
                marked(StatusCode::BAD_REQUEST, ErrorKind::BadRequest)
            }
            WebError::Busy(reason) => {
                tracing::warn!(%reason, "busy");
                marked(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Unavailable)
            }
            WebError::Storage(StorageError::Unavailable(reason)) => {
                tracing::warn!(%reason, "database unavailable");
                marked(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Unavailable)
            }
            WebError::Storage(error) => {
                tracing::error!(%error, "storage failure");
                marked(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal)
            }
            WebError::Internal(reason) => {
                tracing::error!(%reason, "internal error");
                marked(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal)
            }
        }
    }
}

/// The fallback of the router: every unknown path.
pub async fn not_found() -> WebError {
    WebError::NotFound
}

/// What a panicking handler answers (tower-http's catch-panic layer). The panic message is logged
/// here, never shown.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into());
    tracing::error!(panic = %message, "a handler panicked");
    marked(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal)
}

/// Renders the friendly page of an error response in the request's language, with the request
/// id as a reference for the helpdesk. Responses that already have a body of their own (a
/// protocol error in XML or JSON, say) are left alone unless a handler marked them.
pub async fn friendly_errors(
    axum::extract::State(state): axum::extract::State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    let locale = Locale::negotiate(
        request.uri().query(),
        request
            .headers()
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    // Kept for an error page only: the URI's and the id's clones share their bytes.
    let uri = request.uri().clone();
    let request_id = request.extensions().get::<RequestId>().cloned();
    let had_host = request.headers().contains_key(HOST);
    let response = next.run(request).await;

    let status = response.status();
    if response.extensions().get::<OwnBody>().is_some() {
        return response;
    }
    let kind = match response.extensions().get::<ErrorKind>() {
        Some(kind) => kind.clone(),
        None if !response.headers().contains_key(CONTENT_TYPE) || is_plain_text(&response) => {
            match ErrorKind::for_status(status) {
                Some(kind) => kind,
                None => return response,
            }
        }
        None => return response,
    };
    let (title, body) = kind.texts(locale.texts());
    let page = ErrorPage {
        page: PageContext::new(locale, state.demo, if had_host { uri.path() } else { "/" }),
        title,
        body,
        link: (kind == ErrorKind::WrongHost).then(|| state.public_url.clone()),
        request_id: matches!(kind, ErrorKind::Internal | ErrorKind::Unavailable)
            .then_some(request_id)
            .flatten()
            .and_then(|id| id.header_value().to_str().ok().map(str::to_string)),
    };
    let html = match render(&page) {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(%error, "the error page failed to render");
            format!("<!DOCTYPE html><title>{status}</title><h1>{status}</h1>")
        }
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(html))
}

fn is_plain_text(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"))
        && (response.status().is_client_error() || response.status().is_server_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_marked_500_without_its_message() {
        let response = panic_response(Box::new("secret detail"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<ErrorKind>(),
            Some(&ErrorKind::Internal)
        );
    }

    #[test]
    fn statuses_map_to_friendly_pages() {
        assert_eq!(
            ErrorKind::for_status(StatusCode::REQUEST_TIMEOUT),
            Some(ErrorKind::Timeout)
        );
        assert_eq!(
            ErrorKind::for_status(StatusCode::BAD_GATEWAY),
            Some(ErrorKind::Internal)
        );
        assert_eq!(ErrorKind::for_status(StatusCode::OK), None);
        assert_eq!(ErrorKind::for_status(StatusCode::SEE_OTHER), None);
    }
}
