//! `/activate`: account activation, one page per step (DESIGN.md §4). The rules are in
//! `accounts::activation`; this file reads forms, keeps the browser's activation token in a
//! cookie, and renders the pages.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::accounts::AccountsError;
use crate::accounts::activation::{
    ACTIVATION_LIFETIME, CodeCheck, Completion, ContactProblem, Start, Step,
};
use crate::accounts::password::PasswordError;
use crate::accounts::password_policy::PasswordProblem;
use crate::one_time::SecretToken;
use crate::web::WebState;
use crate::web::cookies;
use crate::web::errors::WebError;
use crate::web::i18n::{ActivationTexts, Locale, PageTexts as _};
use crate::web::views::{ActivatePage, PageContext, form_page};

pub(crate) type Fields = HashMap<String, String>;

const ACTIVATION_COOKIE: &str = "sesame-activation";

pub(crate) fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map(String::as_str).unwrap_or_default()
}

fn internal(error: impl std::fmt::Display) -> WebError {
    WebError::Internal(format!("activation: {error}"))
}

/// A page of the flow, before rendering.
struct View {
    step: &'static str,
    number: u8,
    action: &'static str,
    notice: Option<&'static str>,
    error: Option<String>,
    email_error: Option<&'static str>,
    phone_error: Option<&'static str>,
    email: String,
    phone: String,
    address: String,
    /// Where "continue" leads on the last page (the login that started the activation).
    continue_href: String,
}

impl View {
    fn new(step: &'static str) -> Self {
        let (number, action) = match step {
            "contact" => (2, "/activate/contact"),
            "code" => (3, "/activate/code"),
            "password" => (4, "/activate/password"),
            _ => (1, "/activate"),
        };
        Self {
            step,
            number,
            action,
            notice: None,
            error: None,
            email_error: None,
            phone_error: None,
            email: String::new(),
            phone: String::new(),
            address: String::new(),
            continue_href: String::new(),
        }
    }
}

fn texts(locale: Locale) -> &'static ActivationTexts {
    &locale.texts().activation
}

/// Renders a step with the CSRF token (and its cookie when new).
fn page(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    view: View,
    extra_cookie: Option<HeaderValue>,
) -> Result<Response, WebError> {
    form_page(state, headers, extra_cookie, |csrf| ActivatePage {
        page: PageContext::new(locale, state.demo, view.action),
        a: texts(locale),
        step: view.step,
        number: view.number,
        action: view.action,
        csrf,
        notice: view.notice,
        error: view.error,
        email_error: view.email_error,
        phone_error: view.phone_error,
        email: view.email,
        phone: view.phone,
        address: view.address,
        continue_href: view.continue_href,
    })
}

/// 303 to the next step (DESIGN.md §9: redirects after a credential POST are 303).
fn see_other(to: &'static str, cookie: Option<HeaderValue>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

fn activation_token(state: &WebState, headers: &HeaderMap) -> Option<SecretToken> {
    cookies::read(headers, &cookies::name(ACTIVATION_COOKIE, state.https)).map(SecretToken::new)
}

pub(crate) fn check_csrf(
    state: &WebState,
    headers: &HeaderMap,
    fields: &Fields,
) -> Result<(), WebError> {
    if cookies::csrf_valid(headers, state.https, field(fields, "csrf")) {
        Ok(())
    } else {
        Err(WebError::Forbidden)
    }
}

/// The current step of the browser's activation, or the start page saying it expired.
async fn current(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
) -> Result<Result<(SecretToken, Step), Response>, WebError> {
    if let Some(token) = activation_token(state, headers)
        && let Some((_, step)) = state.activation.find(&token).await.map_err(internal)?
    {
        return Ok(Ok((token, step)));
    }
    let mut view = View::new("start");
    view.notice = Some(texts(locale).expired);
    Ok(Err(page(state, locale, headers, view, None)?))
}

/// The page and path of each step.
fn step_view(step: Step) -> (&'static str, &'static str) {
    match step {
        Step::Contact => ("contact", "/activate/contact"),
        Step::Code => ("code", "/activate/code"),
        Step::Password => ("password", "/activate/password"),
    }
}

/// Shows the page of `shown` when the activation stands there, or sends the browser to the step
/// it stands at (the contact page stays reachable from the code step, to change the address).
async fn step_page(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    shown: Step,
) -> Result<Response, WebError> {
    match current(state, locale, headers).await? {
        Err(expired) => Ok(expired),
        Ok((_, step)) if step == shown || (shown == Step::Contact && step == Step::Code) => {
            page(state, locale, headers, View::new(step_view(shown).0), None)
        }
        Ok((_, step)) => Ok(see_other(step_view(step).1, None)),
    }
}

#[derive(serde::Deserialize)]
pub struct StartQuery {
    /// The login that sent the user here ("first time? activate your account"): the activation
    /// continues to it at the end.
    #[serde(default)]
    flow: String,
}

/// Remembers the login flow during the activation (the reference only; the destination itself is
/// kept on the server by the login room).
const FLOW_COOKIE: &str = "sesame-flow";

pub async fn start_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Result<Response, WebError> {
    let flow = SecretToken::parse(&query.flow).map(|flow| {
        cookies::set(
            &cookies::name(FLOW_COOKIE, state.https),
            flow.expose(),
            ACTIVATION_LIFETIME.as_secs(),
            state.https,
        )
    });
    page(&state, locale, &headers, View::new("start"), flow)
}

pub async fn start(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let staff_code = field(&fields, "activation_code").trim();
    let outcome = if staff_code.is_empty() {
        state
            .activation
            .start_with_dossier(
                field(&fields, "dossier_number"),
                field(&fields, "birth_date"),
                locale,
            )
            .await
    } else {
        state
            .activation
            .start_with_staff_code(staff_code, locale)
            .await
    }
    .map_err(internal)?;
    let mut view = View::new("start");
    match outcome {
        Start::Started(token) => {
            let cookie = cookies::set(
                &cookies::name(ACTIVATION_COOKIE, state.https),
                token.expose(),
                ACTIVATION_LIFETIME.as_secs(),
                state.https,
            );
            return Ok(see_other("/activate/contact", Some(cookie)));
        }
        // Security: one answer for unknown dossier, wrong birth date and active account.
        Start::Refused => view.error = Some(texts(locale).refused.to_string()),
        Start::Locked => view.error = Some(texts(locale).locked.to_string()),
    }
    page(&state, locale, &headers, view, None)
}

pub async fn contact_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    step_page(&state, locale, &headers, Step::Contact).await
}

pub async fn contact(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let token = match current(&state, locale, &headers).await? {
        Err(expired) => return Ok(expired),
        Ok((token, _)) => token,
    };
    let email = field(&fields, "email");
    let phone = field(&fields, "phone");
    match state
        .activation
        .submit_contact(&token, email, phone)
        .await
        .map_err(internal)?
    {
        Ok(()) => Ok(see_other("/activate/code", None)),
        Err(problem) => {
            let t = texts(locale);
            let mut view = View::new("contact");
            view.email = email.chars().take(254).collect();
            view.phone = phone.chars().take(32).collect();
            match problem {
                ContactProblem::InvalidEmail => view.email_error = Some(t.invalid_email),
                ContactProblem::InstitutionalEmail => {
                    view.email_error = Some(t.institutional_email)
                }
                ContactProblem::InvalidPhone => view.phone_error = Some(t.invalid_phone),
            }
            page(&state, locale, &headers, view, None)
        }
    }
}

pub async fn code_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    step_page(&state, locale, &headers, Step::Code).await
}

pub async fn code(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let token = match current(&state, locale, &headers).await? {
        Err(expired) => return Ok(expired),
        Ok((token, _)) => token,
    };
    let t = texts(locale);
    match state
        .activation
        .confirm_code(&token, field(&fields, "code"))
        .await
        .map_err(internal)?
    {
        CodeCheck::Confirmed => Ok(see_other("/activate/password", None)),
        CodeCheck::Wrong { remaining } => {
            let mut view = View::new("code");
            view.error = Some(format!("{} {remaining}", t.wrong_code));
            page(&state, locale, &headers, view, None)
        }
        CodeCheck::Void => {
            let mut view = View::new("contact");
            view.notice = Some(t.void_code);
            page(&state, locale, &headers, view, None)
        }
    }
}

pub async fn password_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    step_page(&state, locale, &headers, Step::Password).await
}

/// The page message for a password the service could not take (busy pool, oversized input);
/// `None` for errors that are the server's, not the user's.
pub(crate) fn password_failure_message(
    t: &'static ActivationTexts,
    error: &AccountsError,
) -> Option<&'static str> {
    match error {
        AccountsError::Password(PasswordError::Busy) => Some(t.busy),
        AccountsError::Password(PasswordError::TooLong) => Some(t.too_long),
        _ => None,
    }
}

/// The user-facing reason for a refused password.
pub(crate) fn password_message(
    t: &'static ActivationTexts,
    problem: &PasswordProblem,
) -> &'static str {
    match problem {
        PasswordProblem::TooShort { .. } => t.too_short,
        PasswordProblem::TooLong => t.too_long,
        PasswordProblem::Common => t.common,
        PasswordProblem::Personal { .. } => t.personal,
        PasswordProblem::Guessable => t.guessable,
        PasswordProblem::Mismatch => t.mismatch,
    }
}

pub async fn password(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let token = match current(&state, locale, &headers).await? {
        Err(expired) => return Ok(expired),
        Ok((token, _)) => token,
    };
    let t = texts(locale);
    let outcome = state
        .activation
        .complete(
            &token,
            field(&fields, "new_password"),
            field(&fields, "new_password_confirm"),
        )
        .await;
    let mut view = View::new("password");
    match outcome {
        Ok(Completion::Activated { address }) => {
            let mut done = View::new("done");
            done.address = address;
            let flow_cookie = cookies::name(FLOW_COOKIE, state.https);
            done.continue_href = match cookies::read(&headers, &flow_cookie)
                .as_deref()
                .and_then(SecretToken::parse)
            {
                Some(flow) => format!("/login?flow={}", flow.expose()),
                None => "/login".to_string(),
            };
            let forget = cookies::set(
                &cookies::name(ACTIVATION_COOKIE, state.https),
                "",
                0,
                state.https,
            );
            let mut response = page(&state, locale, &headers, done, Some(forget))?;
            response
                .headers_mut()
                .append(SET_COOKIE, cookies::set(&flow_cookie, "", 0, state.https));
            return Ok(response);
        }
        Ok(Completion::Refused(problem)) => {
            view.error = Some(password_message(t, &problem).to_string())
        }
        Ok(Completion::AlreadyActive) => {
            let mut start = View::new("start");
            start.notice = Some(t.already_done);
            return page(&state, locale, &headers, start, None);
        }
        Err(error) => match password_failure_message(t, &error) {
            Some(message) => view.error = Some(message.to_string()),
            None => return Err(internal(error)),
        },
    }
    page(&state, locale, &headers, view, None)
}
