//! `/password/forgot` and `/password/reset`: the forgotten-password pages (DESIGN.md §4). The
//! rules are in `accounts::recovery`.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::activation::{Fields, check_csrf, field, password_failure_message, password_message};
use crate::accounts::recovery::ResetOutcome;
use crate::one_time::SecretToken;
use crate::web::WebState;
use crate::web::errors::WebError;
use crate::web::i18n::{Locale, PageTexts as _};
use crate::web::views::{PageContext, PasswordPage, form_page};

fn page(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    mode: &'static str,
    token: String,
    error: Option<&'static str>,
) -> Result<Response, WebError> {
    let path = if matches!(mode, "forgot" | "sent") {
        "/password/forgot"
    } else {
        "/password/reset"
    };
    let texts = locale.texts();
    form_page(state, headers, None, |csrf| PasswordPage {
        page: PageContext::new(locale, state.demo, path),
        r: &texts.recovery,
        a: &texts.activation,
        mode,
        csrf,
        token,
        error,
    })
}

pub async fn forgot_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    page(&state, locale, &headers, "forgot", String::new(), None)
}

/// Security: the answer is the same whatever the identifier, and it is sent before any lookup or
/// mail work, which runs afterwards in its own task (DESIGN.md §4).
pub async fn forgot(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let identifier: String = field(&fields, "identifier").chars().take(320).collect();
    let recovery = state.recovery.clone();
    // The request's origin goes along, so the audit event says where the request came from.
    let origin = crate::audit::current_origin().unwrap_or_default();
    tokio::spawn(crate::audit::with_origin(origin, async move {
        if let Err(error) = recovery.request(&identifier, locale).await {
            tracing::error!(%error, "password reset request failed");
        }
    }));
    page(&state, locale, &headers, "sent", String::new(), None)
}

#[derive(serde::Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn reset_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, WebError> {
    let valid = match SecretToken::parse(&query.token) {
        Some(token) => state
            .recovery
            .is_valid(&token)
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?,
        None => false,
    };
    if valid {
        page(&state, locale, &headers, "reset", query.token, None)
    } else {
        page(&state, locale, &headers, "invalid", String::new(), None)
    }
}

pub async fn reset(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let Some(token) = SecretToken::parse(field(&fields, "token")) else {
        return page(&state, locale, &headers, "invalid", String::new(), None);
    };
    let a = &locale.texts().activation;
    let outcome = state
        .recovery
        .complete(
            &token,
            field(&fields, "new_password"),
            field(&fields, "new_password_confirm"),
            locale,
        )
        .await;
    let keep = token.expose().to_string();
    match outcome {
        Ok(ResetOutcome::Done) => page(&state, locale, &headers, "done", String::new(), None),
        Ok(ResetOutcome::Invalid) => page(&state, locale, &headers, "invalid", String::new(), None),
        Ok(ResetOutcome::Refused(problem)) => page(
            &state,
            locale,
            &headers,
            "reset",
            keep,
            Some(password_message(a, &problem)),
        ),
        Err(error) => match password_failure_message(a, &error) {
            Some(message) => page(&state, locale, &headers, "reset", keep, Some(message)),
            None => Err(WebError::Internal(format!("password reset: {error}"))),
        },
    }
}
