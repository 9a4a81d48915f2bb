//! `/login` and `/logout`: the hosted login page and the end of the SSO session (DESIGN.md §5).
//! The rules are in `login` and `sessions`; this file reads forms and cookies and renders pages.

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};

use super::activation::{Fields, check_csrf, field};
use crate::accounts::AccountsError;
use crate::accounts::lockout::LockStatus;
use crate::accounts::password::PasswordError;
use crate::audit::Origin;
use crate::login::{
    Destination, LoginAttempt, LoginOutcome, Proof, SecondFactorOutcome, SignedIn, StepUp,
};
use crate::one_time::SecretToken;
use crate::sessions::{Session, SessionKind, SessionOrigin};
use crate::web::cookies::{self, SESSION_COOKIE};
use crate::web::errors::WebError;
use crate::web::i18n::{Locale, PageTexts as _};
use crate::web::middleware::CspNonce;
use crate::web::views::{LoginPage, PageContext, form_page};
use crate::web::{ClientIp, WebState};

/// A page of this file, before rendering.
struct View {
    mode: &'static str,
    flow: String,
    username: String,
    error: Option<String>,
    status: StatusCode,
    /// The origin the form's answer may redirect to (the application of the flow).
    form_action: Option<String>,
    /// The CSP nonce of the page's script (passkeys).
    nonce: String,
    /// Offer a passkey (passwordless on the form, the account's on the second step).
    passkey: bool,
    /// The account has a TOTP (second step).
    totp: bool,
    /// The lost-factor link's token (`recover`).
    token: String,
}

impl View {
    fn new(mode: &'static str) -> Self {
        Self {
            mode,
            flow: String::new(),
            username: String::new(),
            error: None,
            status: StatusCode::OK,
            form_action: None,
            nonce: String::new(),
            passkey: false,
            totp: false,
            token: String::new(),
        }
    }
}

fn page(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    view: View,
    extra_cookie: Option<HeaderValue>,
) -> Result<Response, WebError> {
    let path = match view.mode {
        "form" | "signed_in" => "/login",
        "mfa" => "/login/mfa",
        "lost_sent" | "recover" | "recovered" => "/login/mfa/recover",
        _ => "/logout",
    };
    let status = view.status;
    let form_action = view.form_action.clone();
    let mut response = form_page(state, headers, extra_cookie, |csrf| LoginPage {
        page: PageContext::new(locale, state.demo, path),
        l: &locale.texts().login,
        mode: view.mode,
        csrf,
        flow: view.flow,
        username: view.username,
        error: view.error,
        nonce: view.nonce.clone(),
        passkey: view.passkey,
        totp: view.totp,
        token: view.token,
    })?;
    *response.status_mut() = status;
    if let Some(origin) = form_action {
        allow_form_action(state, &mut response, &origin, &view.nonce);
    }
    Ok(response)
}

/// Lets a page's form lead to `origin`: the answer to the form is a redirect there, and browsers
/// check redirects after a form submission against `form-action`. `nonce` is the page's script
/// nonce (a fresh one when empty).
pub(crate) fn allow_form_action(
    state: &WebState,
    response: &mut Response,
    origin: &str,
    nonce: &str,
) {
    use crate::entropy::EntropyExt as _;
    let nonce = match nonce {
        "" => state.entropy.token(16),
        n => n.to_string(),
    };
    let policy = crate::web::middleware::content_security_policy(&nonce, Some(origin));
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The origin of the application a destination returns to, if it is not this site.
fn destination_origin(destination: &Destination) -> Option<String> {
    let url = match destination {
        Destination::Path { .. } => return None,
        Destination::Cas { service, .. } => service.clone(),
        Destination::Oidc { request, .. } => serde_json::from_str::<serde_json::Value>(request)
            .ok()?
            .get("redirect_uri")?
            .as_str()?
            .to_string(),
    };
    url::Url::parse(&url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
}

/// Where a flow's form leads (the flow stays usable).
async fn flow_origin(state: &WebState, flow: &SecretToken) -> Result<Option<String>, WebError> {
    Ok(state
        .login
        .peek_destination(flow)
        .await?
        .as_ref()
        .and_then(destination_origin))
}

/// A flow reference as the pages carry it (empty for none).
fn flow_text(flow: Option<&SecretToken>) -> String {
    flow.map(|f| f.expose().to_string()).unwrap_or_default()
}

fn nonce_of(nonce: &Option<Extension<CspNonce>>) -> String {
    nonce
        .as_ref()
        .map(|Extension(CspNonce(n))| n.clone())
        .unwrap_or_default()
}

/// The cookie that binds a pending second step to its browser.
const SECOND_FACTOR_COOKIE: &str = "sesame-mfa";

fn second_factor_cookie_name(state: &WebState) -> String {
    cookies::name(SECOND_FACTOR_COOKIE, state.https)
}

fn second_factor_cookie(state: &WebState, reference: &SecretToken) -> HeaderValue {
    cookies::set(
        &second_factor_cookie_name(state),
        reference.expose(),
        600,
        state.https,
    )
}

fn pending_reference(state: &WebState, headers: &HeaderMap) -> Option<SecretToken> {
    cookies::read(headers, &second_factor_cookie_name(state)).and_then(|v| SecretToken::parse(&v))
}

/// Whether a destination requires a second factor: an MFA-required CAS service or OIDC client,
/// or an OIDC request asking for the MFA profile (DESIGN.md §5).
pub(crate) async fn destination_requires_mfa(
    state: &WebState,
    destination: &Destination,
) -> Result<bool, WebError> {
    Ok(match destination {
        Destination::Path { .. } => false,
        Destination::Cas { service, .. } => state
            .cas
            .known_service(service)
            .await?
            .is_some_and(|known| known.service.mfa_required),
        Destination::Oidc { request, .. } => state.oidc.request_requires_mfa(request).await?,
    })
}

/// Whether a session must be stepped up before an application gets anything: the application
/// requires a second factor (`app_requires`), or the policy (`mfa.required_for`) requires one of
/// this account everywhere, and the session has none (fresh enough).
pub(crate) async fn needs_step_up(
    state: &WebState,
    session: &Session,
    app_requires: bool,
) -> Result<bool, WebError> {
    if session.has_fresh_mfa(state.login.now()) {
        return Ok(false);
    }
    Ok(app_requires || state.login.policy_requires_mfa(&session.account_id).await?)
}

/// A live session lacks the second factor `destination` requires: ask for it (the session is
/// stepped up in place), send the user to the enrolment, or refuse.
pub(crate) async fn step_up(
    state: &WebState,
    session: &Session,
    destination: Destination,
    refused: impl FnOnce() -> WebError,
) -> Result<Response, WebError> {
    let step = state.login.begin_step_up(session).await?;
    let flow = state
        .login
        .remember_destination(&destination)
        .await?
        .map(|r| r.expose().to_string())
        .unwrap_or_default();
    match step {
        StepUp::Challenge(reference) => see_other(
            &format!("/login/mfa?flow={flow}"),
            Some(second_factor_cookie(state, &reference)),
        ),
        StepUp::Enrol => see_other(&format!("/account/mfa/totp?flow={flow}"), None),
        StepUp::Refused => Err(refused()),
    }
}

pub(crate) fn session_cookie_name(state: &WebState) -> String {
    cookies::name(SESSION_COOKIE, state.https)
}

pub(crate) fn session_cookie(state: &WebState, headers: &HeaderMap) -> Option<SecretToken> {
    cookies::read(headers, &session_cookie_name(state)).map(SecretToken::new)
}

/// The browser's live session, if any.
pub(crate) async fn current_session(
    state: &WebState,
    headers: &HeaderMap,
) -> Result<Option<Session>, WebError> {
    match session_cookie(state, headers) {
        Some(token) => Ok(state.login.session(&token).await?),
        None => Ok(None),
    }
}

/// 303 (DESIGN.md §9: redirects after a credential POST are 303), never cached.
pub(crate) fn see_other(to: &str, cookie: Option<HeaderValue>) -> Result<Response, WebError> {
    let location =
        HeaderValue::from_str(to).map_err(|_| WebError::BadRequest("bad destination".into()))?;
    let mut response = (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, location),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(response)
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    /// Where to go after login: a local path only; anything else is ignored.
    #[serde(default)]
    return_to: Option<String>,
    /// A login flow already kept on the server (coming back from activation, or from CAS).
    #[serde(default)]
    flow: String,
    /// Ask for credentials even with a live session.
    #[serde(default)]
    renew: bool,
    /// The identifier to fill in (OIDC `login_hint`).
    #[serde(default)]
    login_hint: Option<String>,
}

/// Where a successful login (or an SSO visit with a flow) continues.
async fn continue_to(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    session: &Session,
    destination: Destination,
    from_new_login: bool,
) -> Result<Response, WebError> {
    match destination {
        Destination::Oidc {
            request,
            authenticated,
            ..
        } => {
            super::oidc::continue_authorization(
                state,
                locale,
                headers,
                session,
                &request,
                from_new_login || authenticated,
            )
            .await
        }
        Destination::Path { path } => see_other(&path, None),
        Destination::Cas { service, post, .. } => {
            super::cas::issue_and_return(
                state,
                locale,
                nonce,
                session,
                &service,
                post,
                from_new_login,
            )
            .await
        }
    }
}

/// The "signed out" page (after `/logout` or `/cas/logout`).
pub(crate) fn logged_out_page(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
) -> Result<Response, WebError> {
    page(state, locale, headers, View::new("logged_out"), None)
}

/// `GET /login`: the form, or — with a live session — the destination or the "signed in" page.
pub async fn form(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, WebError> {
    let destination = query.return_to.as_deref().filter(|p| !p.is_empty());
    let flow = SecretToken::parse(&query.flow);
    // With `renew` (CAS 3.0.3 §2.1.1), the user must type credentials again.
    let session = match query.renew {
        true => None,
        false => current_session(&state, &headers).await?,
    };
    if let Some(session) = session {
        if let Some(path) = destination.filter(|p| crate::login::is_local_destination(p)) {
            return see_other(path, None);
        }
        if let Some(flow) = &flow {
            match state.login.take_destination(flow).await? {
                // CAS `renew` (§2.1.1): the existing session may not continue it, whatever the
                // URL says; the form is shown with a fresh reference to the same destination.
                Some(destination) if destination.requires_credentials() => {
                    let mut view = View::new("form");
                    view.form_action = destination_origin(&destination);
                    if let Some(reference) = state.login.remember_destination(&destination).await? {
                        view.flow = reference.expose().to_string();
                    }
                    return page(&state, locale, &headers, view, None);
                }
                Some(destination) => {
                    return continue_to(
                        &state,
                        locale,
                        &headers,
                        nonce,
                        &session,
                        destination,
                        false,
                    )
                    .await;
                }
                None => {}
            }
        }
        return signed_in_page(&state, locale, &headers, &session).await;
    }
    let mut view = View::new("form");
    view.nonce = nonce_of(&nonce);
    view.passkey = state.login.mfa().passkeys().is_some();
    if let Some(path) = destination
        && let Some(reference) = state
            .login
            .remember_destination(&Destination::Path {
                path: path.to_string(),
            })
            .await?
    {
        view.flow = reference.expose().to_string();
    } else if let Some(flow) = flow {
        view.form_action = flow_origin(&state, &flow).await?;
        view.flow = flow.expose().to_string();
    }
    if let Some(hint) = query
        .login_hint
        .filter(|h| h.len() <= 320 && !h.chars().any(char::is_control))
    {
        view.username = hint;
    }
    page(&state, locale, &headers, view, None)
}

async fn signed_in_page(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    session: &Session,
) -> Result<Response, WebError> {
    let mut view = View::new("signed_in");
    view.username = state
        .login
        .login_of(&session.account_id)
        .await?
        .unwrap_or_default();
    page(state, locale, headers, view, None)
}

/// `POST /login`.
pub async fn submit(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    ClientIp(client): ClientIp,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let texts = &locale.texts().login;
    let kind = if field(&fields, "public_computer") == "on" {
        SessionKind::PublicComputer
    } else if field(&fields, "remember_me") == "on" {
        SessionKind::Remembered
    } else {
        SessionKind::Standard
    };
    let username: String = field(&fields, "username").chars().take(320).collect();
    let flow = SecretToken::parse(field(&fields, "flow"));
    let require_mfa = match &flow {
        Some(flow) => match state.login.peek_destination(flow).await? {
            Some(destination) => destination_requires_mfa(&state, &destination).await?,
            None => false,
        },
        None => false,
    };
    let outcome = state
        .login
        .password_login(LoginAttempt {
            username: &username,
            password: field(&fields, "password"),
            kind,
            origin: SessionOrigin {
                client_ip: client.map(|ip| ip.to_string()),
                user_agent: headers
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(Origin::clean_user_agent),
            },
            locale,
            previous_session: session_cookie(&state, &headers),
            require_mfa,
        })
        .await;
    let result = match &outcome {
        Ok(LoginOutcome::SignedIn(_)) => "success",
        Ok(LoginOutcome::SecondFactor(_)) => "second_factor",
        Ok(LoginOutcome::EnrolmentRequired) => "no_second_factor",
        Ok(LoginOutcome::Incomplete) => "incomplete",
        Ok(LoginOutcome::PasswordTooLong)
        | Err(AccountsError::Password(PasswordError::TooLong)) => "too_long",
        Ok(LoginOutcome::Rejected) => "rejected",
        Ok(LoginOutcome::Locked(_)) => "locked",
        Ok(LoginOutcome::Disabled) => "disabled",
        Err(AccountsError::Password(PasswordError::Busy)) => "busy",
        Err(_) => "error",
    };
    state
        .metrics
        .logins
        .get_or_create(&crate::web::metrics::LoginLabels { result })
        .inc();
    let mut view = View::new("form");
    view.nonce = nonce_of(&nonce);
    view.passkey = state.login.mfa().passkeys().is_some();
    view.flow = flow_text(flow.as_ref());
    view.username = username.trim().to_string();
    let (status, message) = match outcome {
        Ok(LoginOutcome::SecondFactor(pending)) => {
            let flow = flow_text(flow.as_ref());
            return see_other(
                &format!("/login/mfa?flow={flow}"),
                Some(second_factor_cookie(&state, &pending.reference)),
            );
        }
        Ok(LoginOutcome::EnrolmentRequired) => {
            (StatusCode::FORBIDDEN, texts.enrolment_required.to_string())
        }
        Ok(LoginOutcome::SignedIn(signed_in)) if signed_in.must_enrol => {
            let SignedIn {
                session, cookie, ..
            } = *signed_in;
            let flow = flow_text(flow.as_ref());
            return see_other(
                &format!("/account/mfa/totp?flow={flow}"),
                Some(new_session_cookie(&state, &session, &cookie)),
            );
        }
        Ok(LoginOutcome::SignedIn(signed_in)) => {
            let SignedIn {
                session, cookie, ..
            } = *signed_in;
            let cookie = new_session_cookie(&state, &session, &cookie);
            let destination = match &flow {
                Some(reference) => state.login.take_destination(reference).await?,
                None => None,
            };
            let mut response = match destination {
                Some(destination) => {
                    continue_to(&state, locale, &headers, nonce, &session, destination, true)
                        .await?
                }
                None => see_other("/login", None)?,
            };
            response.headers_mut().append(SET_COOKIE, cookie);
            return Ok(response);
        }
        Ok(LoginOutcome::Incomplete) => (StatusCode::OK, texts.incomplete.to_string()),
        Ok(LoginOutcome::PasswordTooLong) => (StatusCode::BAD_REQUEST, texts.too_long.to_string()),
        Ok(LoginOutcome::Rejected) => (StatusCode::OK, texts.rejected.to_string()),
        Ok(LoginOutcome::Locked(LockStatus::Hard)) => {
            (StatusCode::OK, texts.locked_hard.to_string())
        }
        Ok(LoginOutcome::Locked(LockStatus::Temporary { until })) => {
            let now = state.login.now();
            let minutes = ((until - now).max(1) + 59) / 60;
            (
                StatusCode::OK,
                texts
                    .locked_temporary
                    .replace("{minutes}", &minutes.to_string()),
            )
        }
        Ok(LoginOutcome::Locked(LockStatus::Open)) => (StatusCode::OK, texts.rejected.to_string()),
        Ok(LoginOutcome::Disabled) => (StatusCode::OK, texts.disabled.to_string()),
        Err(AccountsError::Password(PasswordError::Busy)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            locale.texts().activation.busy.to_string(),
        ),
        Err(AccountsError::Password(PasswordError::TooLong)) => {
            (StatusCode::BAD_REQUEST, texts.too_long.to_string())
        }
        Err(AccountsError::Storage(error)) => return Err(error.into()),
        Err(error) => return Err(WebError::Internal(format!("login: {error}"))),
    };
    view.error = Some(message);
    view.status = status;
    if let Some(flow) = &flow {
        view.form_action = flow_origin(&state, flow).await?;
    }
    page(&state, locale, &headers, view, None)
}

/// The `Set-Cookie` of a session just opened (persistent only for "stay signed in").
pub(crate) fn new_session_cookie(
    state: &WebState,
    session: &Session,
    cookie: &SecretToken,
) -> HeaderValue {
    let max_age = (session.kind == SessionKind::Remembered)
        .then(|| (session.expires_at - session.auth_time).max(0) as u64);
    cookies::set_session(
        &session_cookie_name(state),
        cookie.expose(),
        max_age,
        state.https,
    )
}

/// Sends a browser whose login (or step-up) just completed where it was going, with its new
/// session cookie.
async fn complete_login(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    flow: Option<&SecretToken>,
    signed_in: SignedIn,
    extra_cookie: Option<HeaderValue>,
) -> Result<Response, WebError> {
    let SignedIn {
        session, cookie, ..
    } = signed_in;
    let cookie = new_session_cookie(state, &session, &cookie);
    let destination = match flow {
        Some(reference) => state.login.take_destination(reference).await?,
        None => None,
    };
    let mut response = match destination {
        Some(destination) => {
            continue_to(state, locale, headers, nonce, &session, destination, true).await?
        }
        None => see_other("/login", None)?,
    };
    response.headers_mut().append(SET_COOKIE, cookie);
    if let Some(extra) = extra_cookie {
        response.headers_mut().append(SET_COOKIE, extra);
    }
    Ok(response)
}

#[derive(serde::Deserialize)]
pub struct FlowQuery {
    #[serde(default)]
    flow: String,
}

/// `GET /login/mfa`: the second step of a login (or a step-up), for the browser holding the
/// pending login's cookie.
pub async fn second_factor_form(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Query(query): Query<FlowQuery>,
) -> Result<Response, WebError> {
    let flow = SecretToken::parse(&query.flow);
    let pending = match pending_reference(&state, &headers) {
        Some(reference) => state.login.pending_view(&reference).await?,
        None => None,
    };
    let Some(pending) = pending else {
        return see_other(&format!("/login?flow={}", query.flow_value()), None);
    };
    let mut view = second_factor_view(&state, &nonce, flow.as_ref(), &pending);
    if let Some(flow) = &flow {
        view.form_action = flow_origin(&state, flow).await?;
    }
    page(&state, locale, &headers, view, None)
}

impl FlowQuery {
    fn flow_value(&self) -> String {
        SecretToken::parse(&self.flow)
            .map(|f| f.expose().to_string())
            .unwrap_or_default()
    }
}

fn second_factor_view(
    state: &WebState,
    nonce: &Option<Extension<CspNonce>>,
    flow: Option<&SecretToken>,
    pending: &crate::login::PendingView,
) -> View {
    let mut view = View::new("mfa");
    view.nonce = nonce_of(nonce);
    view.flow = flow_text(flow);
    view.totp = pending.factors.totp;
    view.passkey = pending.factors.passkeys > 0 && state.login.mfa().passkeys().is_some();
    view
}

/// `POST /login/mfa`: a TOTP or recovery code (`code`), or a passkey assertion (`passkey_ref`
/// and `passkey`), with CSRF and the pending login's cookie.
pub async fn second_factor_submit(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let texts = &locale.texts().login;
    let flow = SecretToken::parse(field(&fields, "flow"));
    let flow_value = flow_text(flow.as_ref());
    let Some(reference) = pending_reference(&state, &headers) else {
        return see_other(&format!("/login?flow={flow_value}"), None);
    };
    let passkey_ref = SecretToken::parse(field(&fields, "passkey_ref"));
    let proof = match &passkey_ref {
        Some(passkey_ref) if !field(&fields, "passkey").is_empty() => Proof::Passkey {
            reference: passkey_ref,
            response: field(&fields, "passkey"),
        },
        _ => Proof::Code(field(&fields, "code")),
    };
    let outcome = state
        .login
        .second_factor(&reference, proof, locale, session_cookie(&state, &headers))
        .await;
    let result = match &outcome {
        Ok(SecondFactorOutcome::SignedIn(_)) => "success",
        Ok(SecondFactorOutcome::Rejected) => "rejected",
        Ok(SecondFactorOutcome::Locked(_)) => "locked",
        Ok(SecondFactorOutcome::Expired) => "expired",
        Ok(SecondFactorOutcome::Disabled) => "disabled",
        Err(_) => "error",
    };
    state
        .metrics
        .logins
        .get_or_create(&crate::web::metrics::LoginLabels { result })
        .inc();
    let clear = cookies::set(&second_factor_cookie_name(&state), "", 0, state.https);
    let message = match outcome {
        Ok(SecondFactorOutcome::SignedIn(signed_in)) => {
            return complete_login(
                &state,
                locale,
                &headers,
                nonce,
                flow.as_ref(),
                *signed_in,
                Some(clear),
            )
            .await;
        }
        Ok(SecondFactorOutcome::Expired) => {
            return see_other(&format!("/login?flow={flow_value}"), Some(clear));
        }
        Ok(SecondFactorOutcome::Rejected) => {
            let Some(pending) = state.login.pending_view(&reference).await? else {
                return see_other(&format!("/login?flow={flow_value}"), Some(clear));
            };
            let mut view = second_factor_view(&state, &nonce, flow.as_ref(), &pending);
            view.error = Some(texts.mfa_rejected.to_string());
            if let Some(flow) = &flow {
                view.form_action = flow_origin(&state, flow).await?;
            }
            return page(&state, locale, &headers, view, None);
        }
        Ok(SecondFactorOutcome::Locked(LockStatus::Temporary { until })) => {
            let minutes = ((until - state.login.now()).max(1) + 59) / 60;
            texts
                .locked_temporary
                .replace("{minutes}", &minutes.to_string())
        }
        Ok(SecondFactorOutcome::Locked(_)) => texts.locked_hard.to_string(),
        Ok(SecondFactorOutcome::Disabled) => texts.disabled.to_string(),
        Err(error) => return Err(error.into()),
    };
    let mut view = View::new("form");
    view.nonce = nonce_of(&nonce);
    view.flow = flow_value;
    view.error = Some(message);
    page(&state, locale, &headers, view, Some(clear))
}

/// `POST /login/mfa/lost`: from the second step (the password was right), the e-mail link and
/// the SMS code that together remove lost factors.
pub async fn lost_factors(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    use crate::accounts::mfa::lost::LostFactorStart;
    check_csrf(&state, &headers, &fields)?;
    let Some(reference) = pending_reference(&state, &headers) else {
        return see_other("/login", None);
    };
    let started = state.login.lost_factors(&reference, locale).await?;
    match started {
        None => see_other("/login", None),
        Some(LostFactorStart::Sent) => page(&state, locale, &headers, View::new("lost_sent"), None),
        Some(LostFactorStart::NoTwoChannels) => {
            let Some(pending) = state.login.pending_view(&reference).await? else {
                return see_other("/login", None);
            };
            let mut view = second_factor_view(&state, &nonce, None, &pending);
            view.error = Some(locale.texts().login.lost_impossible.to_string());
            page(&state, locale, &headers, view, None)
        }
    }
}

#[derive(serde::Deserialize)]
pub struct RecoverQuery {
    #[serde(default)]
    token: String,
}

/// `GET /login/mfa/recover?token=…`: the page the e-mailed link opens; it asks the SMS code.
pub async fn recover_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Query(query): Query<RecoverQuery>,
) -> Result<Response, WebError> {
    let mut view = View::new("recover");
    match SecretToken::parse(&query.token) {
        Some(token)
            if state
                .login
                .mfa()
                .lost_factor_account(&token)
                .await?
                .is_some() =>
        {
            view.token = token.expose().to_string();
        }
        _ => {
            view.error = Some(locale.texts().login.recover_void.to_string());
            view.status = StatusCode::NOT_FOUND;
        }
    }
    page(&state, locale, &headers, view, None)
}

/// `POST /login/mfa/recover`: the SMS code; right, every factor goes.
pub async fn recover(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    use crate::accounts::mfa::lost::LostFactorFinish;
    check_csrf(&state, &headers, &fields)?;
    let texts = &locale.texts().login;
    let token = SecretToken::parse(field(&fields, "token"));
    let outcome = match &token {
        Some(token) => {
            state
                .login
                .recover_lost_factors(token, field(&fields, "code"))
                .await?
        }
        None => LostFactorFinish::Void,
    };
    let mut view = View::new("recover");
    match outcome {
        LostFactorFinish::Done => view.mode = "recovered",
        LostFactorFinish::Wrong => {
            view.error = Some(texts.recover_wrong.to_string());
            view.token = token.map(|t| t.expose().to_string()).unwrap_or_default();
        }
        LostFactorFinish::Void => view.error = Some(texts.recover_void.to_string()),
    }
    page(&state, locale, &headers, view, None)
}

/// The options of a passkey ceremony, as JSON for `navigator.credentials.*`.
pub(crate) fn ceremony_json(ceremony: crate::accounts::mfa::passkeys::Ceremony) -> Response {
    let body = serde_json::json!({
        "options": ceremony.options,
        "reference": ceremony.reference.expose(),
    });
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}

pub(crate) fn passkey_error(error: crate::accounts::mfa::PasskeyError) -> WebError {
    use crate::accounts::mfa::PasskeyError;
    match error {
        PasskeyError::Storage(error) => WebError::Storage(error),
        other => WebError::BadRequest(other.to_string()),
    }
}

/// `POST /login/mfa/passkey`: the options to assert one of the pending login's passkeys.
pub async fn second_factor_passkey(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let pending = match pending_reference(&state, &headers) {
        Some(reference) => state.login.pending_view(&reference).await?,
        None => None,
    }
    .ok_or_else(|| WebError::BadRequest("no login in progress".into()))?;
    let ceremony = state
        .login
        .mfa()
        .start_passkey_authentication(&pending.account_id)
        .await
        .map_err(passkey_error)?
        .ok_or_else(|| WebError::BadRequest("no passkey".into()))?;
    Ok(ceremony_json(ceremony))
}

/// `POST /login/passkey/options`: the options of a passwordless login.
pub async fn passkey_options(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let ceremony = state
        .login
        .mfa()
        .start_discoverable_authentication()
        .await
        .map_err(passkey_error)?;
    Ok(ceremony_json(ceremony))
}

/// `POST /login/passkey`: a passwordless login with a passkey (`passkey_ref`, `passkey`).
pub async fn passkey_login(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    ClientIp(client): ClientIp,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let texts = &locale.texts().login;
    let flow = SecretToken::parse(field(&fields, "flow"));
    let reference = SecretToken::parse(field(&fields, "passkey_ref"))
        .ok_or_else(|| WebError::BadRequest("no passkey ceremony".into()))?;
    let kind = if field(&fields, "public_computer") == "on" {
        SessionKind::PublicComputer
    } else {
        SessionKind::Standard
    };
    let outcome = state
        .login
        .passkey_login(
            &reference,
            field(&fields, "passkey"),
            kind,
            SessionOrigin {
                client_ip: client.map(|ip| ip.to_string()),
                user_agent: headers
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(Origin::clean_user_agent),
            },
            locale,
            session_cookie(&state, &headers),
        )
        .await;
    let message = match outcome {
        Ok(LoginOutcome::SignedIn(signed_in)) => {
            return complete_login(
                &state,
                locale,
                &headers,
                nonce,
                flow.as_ref(),
                *signed_in,
                None,
            )
            .await;
        }
        Ok(LoginOutcome::Disabled) => texts.disabled.to_string(),
        Ok(_) => texts.passkey_failed.to_string(),
        Err(error) => return Err(error.into()),
    };
    let mut view = View::new("form");
    view.nonce = nonce_of(&nonce);
    view.passkey = true;
    view.flow = flow_text(flow.as_ref());
    view.error = Some(message);
    page(&state, locale, &headers, view, None)
}

/// `GET /logout`: asks for confirmation (a GET must not end anything: links and prefetches).
pub async fn logout_page(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let mode = if current_session(&state, &headers).await?.is_some() {
        "logout"
    } else {
        "not_signed_in"
    };
    page(&state, locale, &headers, View::new(mode), None)
}

/// `POST /logout` (with CSRF): ends the session at once and deletes the cookie.
pub async fn logout(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let ended = match session_cookie(&state, &headers) {
        Some(token) => state.login.logout(&token).await?,
        None => false,
    };
    let clear = cookies::set(&session_cookie_name(&state), "", 0, state.https);
    let mode = if ended { "logged_out" } else { "not_signed_in" };
    page(&state, locale, &headers, View::new(mode), Some(clear))
}
