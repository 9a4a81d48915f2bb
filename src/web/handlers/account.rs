//! `/account`: the self-service page (DESIGN.md §5) — identity, contacts, password, second
//! factors, sessions, applications, export. The rules are in `accounts::self_service` and
//! `accounts::mfa`; this file reads forms and renders pages.
//!
//! Every page needs a live session. Changing a factor needs a recent authentication (within
//! [`REAUTH_WINDOW`]); otherwise the password is asked again first.

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};

use super::activation::{Fields, check_csrf, field, password_message};
use super::login::{
    ceremony_json, current_session, new_session_cookie, passkey_error, see_other, session_cookie,
};
use crate::accounts::mfa::AMR_OTP;
use crate::accounts::self_service::PasswordChange;
use crate::one_time::SecretToken;
use crate::sessions::Session;
use crate::web::WebState;
use crate::web::cookies;
use crate::web::errors::WebError;
use crate::web::i18n::{Locale, PageTexts as _};
use crate::web::middleware::CspNonce;
use crate::web::views::{AccountPage, PageContext, form_page};

/// How recent the last authentication must be to change a factor.
const REAUTH_WINDOW: i64 = 10 * 60;

fn when(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The page's state before rendering.
#[derive(Default)]
struct View {
    mode: &'static str,
    notice: Option<String>,
    error: Option<String>,
    flow: String,
    return_to: String,
    qr_svg: String,
    secret: String,
    reference: String,
    codes: Vec<String>,
}

async fn render(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    nonce: &Option<Extension<CspNonce>>,
    session: &Session,
    view: View,
) -> Result<Response, WebError> {
    let overview = state
        .account
        .overview(&session.account_id)
        .await?
        .ok_or_else(|| WebError::BadRequest("no such account".into()))?;
    let nonce = nonce
        .as_ref()
        .map(|Extension(CspNonce(n))| n.clone())
        .unwrap_or_default();
    let passkeys_on = state.login.mfa().passkeys().is_some();
    let mut response = form_page(state, headers, None, |csrf| AccountPage {
        page: PageContext::new(locale, state.demo, "/account"),
        a: &locale.texts().account,
        mode: view.mode,
        csrf,
        nonce,
        login: overview.account.login.clone(),
        name: format!(
            "{} {}",
            overview.account.first_name, overview.account.last_name
        ),
        contacts: overview
            .contacts
            .iter()
            .map(|c| (c.kind.clone(), c.value.clone(), c.confirmed))
            .collect(),
        totp: overview.totp.as_ref().map(|t| when(t.created_at)),
        passkeys: overview
            .passkeys
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    p.name.clone(),
                    when(p.created_at),
                    p.last_used_at.map(when).unwrap_or_default(),
                    p.flagged_at.is_some(),
                )
            })
            .collect(),
        passkeys_on,
        recovery_codes: overview.recovery_codes,
        sessions: overview
            .sessions
            .iter()
            .map(|s| {
                (
                    when(s.auth_time),
                    s.user_agent.clone().unwrap_or_default(),
                    s.client_ip.clone().unwrap_or_default(),
                    s.id == session.id,
                )
            })
            .collect(),
        applications: overview
            .applications
            .iter()
            .map(|a| (a.service.clone(), when(a.last_at)))
            .collect(),
        notice: view.notice,
        error: view.error,
        flow: view.flow,
        return_to: view.return_to,
        qr_svg: view.qr_svg,
        secret: view.secret,
        reference: view.reference,
        codes: view.codes,
    })?;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The live session, or a redirect to the login page that comes back to `path`.
async fn signed_in(
    state: &WebState,
    headers: &HeaderMap,
    path: &str,
) -> Result<Result<Session, Response>, WebError> {
    match current_session(state, headers).await? {
        Some(session) => Ok(Ok(session)),
        None => {
            let to = format!(
                "/login?return_to={}",
                url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
            );
            Ok(Err(see_other(&to, None)?))
        }
    }
}

/// Whether the session authenticated recently enough to change a factor.
fn recent(state: &WebState, session: &Session) -> bool {
    state.login.now() - session.auth_time <= REAUTH_WINDOW
}

fn reauth_redirect(path: &str) -> Result<Response, WebError> {
    see_other(
        &format!(
            "/account/reauth?return_to={}",
            url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
        ),
        None,
    )
}

/// The live session, authenticated within [`REAUTH_WINDOW`] (a sensitive change); otherwise the
/// login page, or the password again, both coming back to `$path`.
macro_rules! recent_session {
    ($state:expr, $headers:expr, $path:expr) => {{
        let session = session_or_login!($state, $headers, $path);
        if !recent(&$state, &session) {
            return reauth_redirect($path);
        }
        session
    }};
}

macro_rules! session_or_login {
    ($state:expr, $headers:expr, $path:expr) => {
        match signed_in(&$state, &$headers, $path).await? {
            Ok(session) => session,
            Err(response) => return Ok(response),
        }
    };
}

/// The overview with the outcome of an action.
async fn overview_page(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    nonce: &Option<Extension<CspNonce>>,
    session: &Session,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, WebError> {
    let view = View {
        mode: "overview",
        notice,
        error,
        ..View::default()
    };
    render(state, locale, headers, nonce, session, view).await
}

/// `GET /account`.
pub async fn overview(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
) -> Result<Response, WebError> {
    let session = session_or_login!(state, headers, "/account");
    overview_page(&state, locale, &headers, &nonce, &session, None, None).await
}

#[derive(serde::Deserialize)]
pub struct ReturnQuery {
    #[serde(default)]
    return_to: String,
    #[serde(default)]
    flow: String,
}

fn local_return(path: &str) -> String {
    if path.starts_with("/account") && crate::login::is_local_destination(path) {
        path.to_string()
    } else {
        "/account".to_string()
    }
}

/// `GET /account/reauth`: the password again before a sensitive change.
pub async fn reauth_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Query(query): Query<ReturnQuery>,
) -> Result<Response, WebError> {
    let session = session_or_login!(state, headers, "/account");
    let view = View {
        mode: "reauth",
        return_to: local_return(&query.return_to),
        ..View::default()
    };
    render(&state, locale, &headers, &nonce, &session, view).await
}

/// `POST /account/reauth`.
pub async fn reauth(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let session = session_or_login!(state, headers, "/account");
    let return_to = local_return(field(&fields, "return_to"));
    let cookie = session_cookie(&state, &headers)
        .ok_or_else(|| WebError::BadRequest("no session".into()))?;
    match state
        .login
        .reauthenticate(&cookie, &session, field(&fields, "password"))
        .await
        .map_err(|e| WebError::Internal(format!("re-authentication: {e}")))?
    {
        Some((cookie, session)) => see_other(
            &return_to,
            Some(new_session_cookie(&state, &session, &cookie)),
        ),
        None => {
            let view = View {
                mode: "reauth",
                return_to,
                error: Some(locale.texts().account.reauth_failed.to_string()),
                ..View::default()
            };
            let mut response = render(&state, locale, &headers, &nonce, &session, view).await?;
            *response.status_mut() = StatusCode::OK;
            Ok(response)
        }
    }
}

/// `GET /account/mfa/totp`: a new TOTP seed, its QR code and the confirmation form.
pub async fn totp_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Query(query): Query<ReturnQuery>,
) -> Result<Response, WebError> {
    let path = match SecretToken::parse(&query.flow) {
        Some(flow) => format!("/account/mfa/totp?flow={}", flow.expose()),
        None => "/account/mfa/totp".to_string(),
    };
    // An account sent here at login (policy `enrol`) authenticated a moment ago: no password
    // is asked again.
    let session = recent_session!(state, headers, &path);
    let flow = SecretToken::parse(&query.flow)
        .map(|f| f.expose().to_string())
        .unwrap_or_default();
    totp_enrolment(&state, locale, &headers, &nonce, &session, flow, None).await
}

/// The enrolment page with a fresh seed (and the error of a refused first code).
async fn totp_enrolment(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    nonce: &Option<Extension<CspNonce>>,
    session: &Session,
    flow: String,
    error: Option<String>,
) -> Result<Response, WebError> {
    let login = state
        .login
        .login_of(&session.account_id)
        .await?
        .unwrap_or_default();
    let enrolment = state
        .login
        .mfa()
        .start_totp(&session.account_id, &login)
        .await?;
    let view = View {
        mode: "totp",
        error,
        flow,
        qr_svg: enrolment.qr_svg,
        secret: enrolment.secret_base32,
        reference: enrolment.reference.expose().to_string(),
        ..View::default()
    };
    render(state, locale, headers, nonce, session, view).await
}

/// `POST /account/mfa/totp`: the first code confirms the enrolment. Coming from a login that
/// required a second factor (`flow`), the session gets the factor and the login continues.
pub async fn totp_confirm(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let session = recent_session!(state, headers, "/account/mfa/totp");
    let reference = SecretToken::parse(field(&fields, "reference"))
        .ok_or_else(|| WebError::BadRequest("no enrolment in progress".into()))?;
    let accepted = state
        .login
        .mfa()
        .confirm_totp(
            &session.account_id,
            &reference,
            field(&fields, "code"),
            locale,
        )
        .await?;
    let texts = &locale.texts().account;
    if !accepted {
        // A new seed: the page shows it again with the error.
        let flow = SecretToken::parse(field(&fields, "flow"))
            .map(|f| f.expose().to_string())
            .unwrap_or_default();
        let error = Some(texts.totp_rejected.to_string());
        return totp_enrolment(&state, locale, &headers, &nonce, &session, flow, error).await;
    }
    // The code just typed proved the factor in this session (a new cookie value, DESIGN.md §5).
    let cookie = session_cookie(&state, &headers)
        .ok_or_else(|| WebError::BadRequest("no session".into()))?;
    let (cookie, session) = state
        .login
        .add_factor_to_session(&cookie, &session, AMR_OTP)
        .await?;
    let set_cookie = new_session_cookie(&state, &session, &cookie);
    if let Some(flow) = SecretToken::parse(field(&fields, "flow")) {
        return see_other(&format!("/login?flow={}", flow.expose()), Some(set_cookie));
    }
    // Recovery codes come with the first factor: shown once, now.
    let codes = state
        .login
        .mfa()
        .new_recovery_codes(&session.account_id, locale)
        .await?;
    let view = View {
        mode: "codes",
        notice: Some(texts.totp_added.to_string()),
        codes,
        ..View::default()
    };
    let mut response = render(&state, locale, &headers, &nonce, &session, view).await?;
    response.headers_mut().append(SET_COOKIE, set_cookie);
    Ok(response)
}

/// `POST /account/mfa/totp/remove`.
pub async fn totp_remove(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let session = recent_session!(state, headers, "/account");
    let removed = state
        .login
        .mfa()
        .remove_totp(&session.account_id, locale)
        .await?;
    let texts = &locale.texts().account;
    overview_page(
        &state,
        locale,
        &headers,
        &nonce,
        &session,
        removed.then(|| texts.totp_removed.to_string()),
        None,
    )
    .await
}

/// `POST /account/mfa/codes`: a new set of recovery codes, shown once.
pub async fn new_codes(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let session = recent_session!(state, headers, "/account");
    if !state.login.mfa().summary(&session.account_id).await?.any() {
        return Err(WebError::BadRequest(
            "recovery codes back up a second factor: add one first".into(),
        ));
    }
    let codes = state
        .login
        .mfa()
        .new_recovery_codes(&session.account_id, locale)
        .await?;
    let view = View {
        mode: "codes",
        codes,
        ..View::default()
    };
    render(&state, locale, &headers, &nonce, &session, view).await
}

/// `POST /account/passkeys/options`: the options to register a passkey (JSON).
pub async fn passkey_options(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let Some(session) = current_session(&state, &headers).await? else {
        return Err(WebError::BadRequest("not signed in".into()));
    };
    if !recent(&state, &session) {
        return Err(WebError::BadRequest("sign in again first".into()));
    }
    let overview = state
        .account
        .overview(&session.account_id)
        .await?
        .ok_or_else(|| WebError::BadRequest("no such account".into()))?;
    let ceremony = state
        .login
        .mfa()
        .start_passkey_registration(
            &session.account_id,
            &overview.account.login,
            &format!(
                "{} {}",
                overview.account.first_name, overview.account.last_name
            ),
            field(&fields, "name"),
        )
        .await
        .map_err(passkey_error)?;
    Ok(ceremony_json(ceremony))
}

/// `POST /account/passkeys`: the browser's answer to a registration.
pub async fn passkey_register(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let session = recent_session!(state, headers, "/account");
    let reference = SecretToken::parse(field(&fields, "passkey_ref"))
        .ok_or_else(|| WebError::BadRequest("no registration in progress".into()))?;
    let texts = &locale.texts().account;
    let result = state
        .login
        .mfa()
        .finish_passkey_registration(
            &session.account_id,
            &reference,
            field(&fields, "passkey"),
            locale,
        )
        .await;
    let (notice, error) = match result {
        Ok(_) => (Some(texts.passkey_added.to_string()), None),
        Err(crate::accounts::mfa::PasskeyError::Storage(error)) => return Err(error.into()),
        Err(error) => {
            tracing::info!(%error, "passkey registration refused");
            (None, Some(texts.passkey_refused.to_string()))
        }
    };
    overview_page(&state, locale, &headers, &nonce, &session, notice, error).await
}

/// `POST /account/passkeys/rename` and `/account/passkeys/remove` (field `id`).
pub async fn passkey_change(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    uri: axum::http::Uri,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let session = recent_session!(state, headers, "/account");
    let id = field(&fields, "id");
    let mfa = state.login.mfa();
    let texts = &locale.texts().account;
    let done = if uri.path().ends_with("/remove") {
        mfa.remove_passkey(&session.account_id, id, locale).await?
    } else {
        mfa.rename_passkey(&session.account_id, id, field(&fields, "name"))
            .await?
    };
    overview_page(
        &state,
        locale,
        &headers,
        &nonce,
        &session,
        done.then(|| texts.saved.to_string()),
        (!done).then(|| texts.not_saved.to_string()),
    )
    .await
}

/// `POST /account/password`: the current password and the new one twice.
pub async fn change_password(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let session = session_or_login!(state, headers, "/account");
    let texts = &locale.texts().account;
    let outcome = state
        .account
        .change_password(
            &session,
            field(&fields, "current_password"),
            field(&fields, "new_password"),
            field(&fields, "new_password_confirm"),
            locale,
        )
        .await?;
    let (notice, error) = match outcome {
        PasswordChange::Done { .. } => (Some(texts.password_changed.to_string()), None),
        PasswordChange::WrongCurrent => (None, Some(texts.current_wrong.to_string())),
        PasswordChange::Refused(problem) => (
            None,
            Some(password_message(&locale.texts().activation, &problem).to_string()),
        ),
    };
    overview_page(&state, locale, &headers, &nonce, &session, notice, error).await
}

/// `POST /account/sessions/end-all`: "log out everywhere", this browser included.
pub async fn end_all_sessions(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let session = session_or_login!(state, headers, "/account");
    state.account.end_all_sessions(&session.account_id).await?;
    let clear = cookies::set(
        &super::login::session_cookie_name(&state),
        "",
        0,
        state.https,
    );
    let mut response = super::login::logged_out_page(&state, locale, &headers)?;
    response.headers_mut().append(SET_COOKIE, clear);
    Ok(response)
}

/// `GET /account/export`: everything Sésame holds about the person, as a JSON download.
pub async fn export(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = session_or_login!(state, headers, "/account");
    let consents = state.oidc.consents(&session.account_id).await?;
    let body = state
        .account
        .export(&session.account_id, consents)
        .await?
        .ok_or_else(|| WebError::BadRequest("no such account".into()))?;
    Ok((
        [
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"sesame-export.json\""),
            ),
        ],
        axum::Json(body),
    )
        .into_response())
}

/// `POST /account/contacts`: a new recovery contact (`kind` = `email` or `phone`, `value`), with
/// the password again; a code goes to the new contact.
pub async fn change_contact(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    use crate::accounts::activation::ContactProblem;
    use crate::accounts::self_service::ContactChange;
    check_csrf(&state, &headers, &fields)?;
    let session = session_or_login!(state, headers, "/account");
    let texts = &locale.texts().account;
    let activation = &locale.texts().activation;
    let outcome = state
        .account
        .start_contact_change(
            &session,
            field(&fields, "kind"),
            field(&fields, "value"),
            field(&fields, "password"),
            locale,
        )
        .await?;
    let error = match outcome {
        ContactChange::CodeSent(reference) => {
            let view = View {
                mode: "contact_code",
                reference: reference.expose().to_string(),
                ..View::default()
            };
            return render(&state, locale, &headers, &nonce, &session, view).await;
        }
        ContactChange::WrongPassword => texts.current_wrong,
        ContactChange::Refused(ContactProblem::InvalidEmail) => activation.invalid_email,
        ContactChange::Refused(ContactProblem::InstitutionalEmail) => {
            activation.institutional_email
        }
        ContactChange::Refused(ContactProblem::InvalidPhone) => activation.invalid_phone,
    };
    overview_page(
        &state,
        locale,
        &headers,
        &nonce,
        &session,
        None,
        Some(error.to_string()),
    )
    .await
}

/// `POST /account/contacts/confirm`: the code the new contact received.
pub async fn confirm_contact(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    use crate::accounts::self_service::ContactConfirmation;
    check_csrf(&state, &headers, &fields)?;
    let session = session_or_login!(state, headers, "/account");
    let texts = &locale.texts().account;
    let reference = SecretToken::parse(field(&fields, "reference"))
        .ok_or_else(|| WebError::BadRequest("no contact change in progress".into()))?;
    match state
        .account
        .confirm_contact_change(&session.account_id, &reference, field(&fields, "code"))
        .await?
    {
        ContactConfirmation::Done => {
            let notice = Some(texts.contact_changed.to_string());
            overview_page(&state, locale, &headers, &nonce, &session, notice, None).await
        }
        ContactConfirmation::Wrong {
            reference,
            remaining,
        } => {
            let view = View {
                mode: "contact_code",
                reference: reference.expose().to_string(),
                error: Some(
                    texts
                        .contact_code_wrong
                        .replace("{remaining}", &remaining.to_string()),
                ),
                ..View::default()
            };
            render(&state, locale, &headers, &nonce, &session, view).await
        }
        ContactConfirmation::Void => {
            let error = Some(texts.contact_code_void.to_string());
            overview_page(&state, locale, &headers, &nonce, &session, None, error).await
        }
    }
}
