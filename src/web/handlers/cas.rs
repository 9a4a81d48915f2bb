//! `/cas/*`: the CAS endpoints (Apereo CAS Protocol 3.0.3, DESIGN.md §7). The rules are in
//! `cas/`; this file reads parameters, drives the login page and the SSO session, and writes the
//! answers.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::login::{current_session, see_other, session_cookie, session_cookie_name};
use crate::cas::server::{KnownService, Release};
use crate::cas::{CasErrorCode, CasFailure, Endpoint, Format, ValidationRequest};
use crate::cas::{render, saml};
use crate::login::Destination;
use crate::relying_parties::services::with_ticket;
use crate::sessions::Session;
use crate::web::WebState;
use crate::web::cookies;
use crate::web::errors::{OwnBody, WebError};
use crate::web::i18n::{Locale, PageTexts as _};
use crate::web::middleware::CspNonce;
use crate::web::views::{CasPostPage, PageContext, html_response, render as render_page};

/// A boolean CAS parameter (`renew`, `gateway`): set unless absent, empty or `false` (§2.1.1).
fn flag(value: &Option<String>) -> bool {
    value
        .as_deref()
        .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("false"))
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginParams {
    service: Option<String>,
    renew: Option<String>,
    gateway: Option<String>,
    method: Option<String>,
}

/// `GET /cas/login` (§2.1): with a live SSO session (and no `renew`), straight back to the
/// service with a ticket; otherwise the login page, which continues here once signed in.
pub async fn login(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    nonce: Option<Extension<CspNonce>>,
    Query(params): Query<LoginParams>,
) -> Result<Response, WebError> {
    let renew = flag(&params.renew);
    let gateway = flag(&params.gateway);
    let post = params
        .method
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("POST"));
    let Some(raw) = params.service.filter(|s| !s.trim().is_empty()) else {
        return see_other(if renew { "/login?renew=true" } else { "/login" }, None);
    };
    // An unknown service gets an error page: no ticket, no redirect (DESIGN.md §7).
    let Some(known) = state.cas.known_service(&raw).await? else {
        return Err(WebError::UnknownService(raw));
    };
    // Without a second factor to require, the session's cookie is read and the ticket issued
    // from it in one write (ADR 0023).
    let session = if renew {
        None
    } else if known.service.mfa_required || state.login.mfa_required_by_policy() {
        current_session(&state, &headers).await?
    } else {
        if let Some(cookie) = session_cookie(&state, &headers)
            && let Some((ticket, session)) = state.cas.issue_from_cookie(&cookie, &known).await?
        {
            state.login.note_session_activity(session).await?;
            return return_with_ticket(&state, locale, nonce, &known, ticket, post);
        }
        None
    };
    if let Some(session) = session {
        return issue_and_return(&state, locale, nonce, &session, &known.url, post, false).await;
    }
    // §2.1.1: with `gateway`, CAS must not ask for credentials: back to the service, no ticket.
    // (`renew` takes precedence, §2.1.1.)
    if gateway && !renew {
        return see_other(&known.url, None);
    }
    let reference = state
        .login
        .remember_destination(&Destination::Cas {
            service: known.url,
            post,
            renew,
        })
        .await?
        .ok_or_else(|| WebError::Internal("a CAS destination was refused".into()))?;
    let renew = if renew { "&renew=true" } else { "" };
    see_other(&format!("/login?flow={}{renew}", reference.expose()), None)
}

/// Issues a service ticket for `service` from `session` and sends the browser back with it: a
/// 303 with `ticket=` in the URL, or (with `method=POST`) a form posted by the browser.
pub async fn issue_and_return(
    state: &WebState,
    locale: Locale,
    nonce: Option<Extension<CspNonce>>,
    session: &Session,
    service: &str,
    post: bool,
    from_new_login: bool,
) -> Result<Response, WebError> {
    let Some(known) = state.cas.known_service(service).await? else {
        return Err(WebError::UnknownService(service.to_string()));
    };
    if super::login::needs_step_up(state, session, known.service.mfa_required).await? {
        let id = known.service.id.clone();
        return super::login::step_up(
            state,
            session,
            Destination::Cas {
                service: known.url,
                post,
                renew: false,
            },
            || WebError::SecondFactorRequired(id),
        )
        .await;
    }
    let ticket = state.cas.issue(session, &known, from_new_login).await?;
    return_with_ticket(state, locale, nonce, &known, ticket, post)
}

/// Sends the browser back to `known` with `ticket`: a 303 with `ticket=` in the URL, or (with
/// `method=POST`) a form posted by the browser.
fn return_with_ticket(
    state: &WebState,
    locale: Locale,
    nonce: Option<Extension<CspNonce>>,
    known: &KnownService,
    ticket: String,
    post: bool,
) -> Result<Response, WebError> {
    if !post {
        return see_other(&with_ticket(&known.url, &ticket), None);
    }
    let nonce = nonce
        .map(|Extension(CspNonce(n))| n)
        .ok_or_else(|| WebError::Internal("no CSP nonce".into()))?;
    let origin = Url::parse(&known.url)
        .map(|u| u.origin().ascii_serialization())
        .map_err(|_| WebError::UnknownService(known.url.clone()))?;
    let html = render_page(&CasPostPage {
        page: PageContext::new(locale, state.demo, "/cas/login"),
        t: &locale.texts().cas,
        action: known.url.clone(),
        ticket,
        nonce: nonce.clone(),
    })
    .map_err(|e| WebError::Internal(format!("CAS POST page: {e}")))?;
    let mut response = html_response(html, None);
    // This page alone may post a form to the service's origin.
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; form-action {origin}; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, value);
    }
    Ok(response)
}

#[derive(Debug, serde::Deserialize)]
pub struct LogoutParams {
    service: Option<String>,
}

/// `GET /cas/logout` (§2.3): ends the SSO session at once; back to `service` only if it is
/// registered (`url` is ignored, §2.3.1), otherwise the "signed out" page.
pub async fn logout(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Query(params): Query<LogoutParams>,
) -> Result<Response, WebError> {
    if let Some(token) = session_cookie(&state, &headers) {
        state.login.logout(&token).await?;
    }
    let clear = cookies::set(&session_cookie_name(&state), "", 0, state.https);
    if let Some(raw) = params.service.filter(|s| !s.is_empty())
        && let Some(known) = state.cas.known_service(&raw).await?
    {
        return see_other(&known.url, Some(clear));
    }
    let mut response = super::login::logged_out_page(&state, locale, &headers)?;
    response.headers_mut().append(SET_COOKIE, clear);
    Ok(response)
}

#[derive(Debug, serde::Deserialize)]
pub struct ValidateParams {
    service: Option<String>,
    ticket: Option<String>,
    renew: Option<String>,
    format: Option<String>,
    /// §2.5.1: where to send a proxy-granting ticket.
    #[serde(rename = "pgtUrl")]
    pgt_url: Option<String>,
}

fn protocol_response(content_type: &'static str, body: String) -> Response {
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    response.extensions_mut().insert(OwnBody);
    response
}

fn count(state: &WebState, endpoint: &'static str, result: Result<(), CasErrorCode>) {
    let result = match result {
        Ok(()) => "success",
        Err(code) => code.as_str(),
    };
    state
        .metrics
        .cas
        .get_or_create(&crate::web::metrics::CasLabels { endpoint, result })
        .inc();
}

async fn run_validation(
    state: &WebState,
    params: &ValidateParams,
    endpoint: Endpoint,
    release: Release,
    label: &'static str,
) -> Result<crate::cas::Authentication, CasFailure> {
    let outcome = validation(state, params, endpoint, release).await;
    count(
        state,
        label,
        outcome.as_ref().map(|_| ()).map_err(|f| f.code),
    );
    outcome
}

async fn validation(
    state: &WebState,
    params: &ValidateParams,
    endpoint: Endpoint,
    release: Release,
) -> Result<crate::cas::Authentication, CasFailure> {
    let request = ValidationRequest {
        endpoint,
        ticket: params.ticket.as_deref(),
        service: params.service.as_deref(),
        renew: flag(&params.renew),
    };
    // CAS 1 has no proxying (§2.4).
    let pgt_url = match endpoint {
        Endpoint::Validate => None,
        _ => params.pgt_url.as_deref(),
    };
    match state.cas.validate(request, release, pgt_url).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::error!(%error, "CAS validation failed");
            Err(CasFailure::new(
                CasErrorCode::InternalError,
                "the ticket could not be checked; try again",
            ))
        }
    }
}

/// `GET /cas/validate` (CAS 1, §2.4): `yes\n<user>\n` or `no\n`.
pub async fn validate_cas1(
    State(state): State<WebState>,
    Query(params): Query<ValidateParams>,
) -> Response {
    let outcome = run_validation(
        &state,
        &params,
        Endpoint::Validate,
        Release::None,
        "validate",
    )
    .await;
    protocol_response(
        "text/plain; charset=utf-8",
        render::cas1(outcome.as_ref().ok().map(|a| a.user.as_str())),
    )
}

async fn validate_xml(
    state: &WebState,
    params: &ValidateParams,
    endpoint: Endpoint,
    release: Release,
    label: &'static str,
) -> Response {
    let format = Format::parse(params.format.as_deref());
    let body = match run_validation(state, params, endpoint, release, label).await {
        Ok(auth) => render::success(&auth, format),
        Err(failure) => render::failure(&failure, format),
    };
    let content_type = match format {
        Format::Xml => "application/xml; charset=utf-8",
        Format::Json => "application/json",
    };
    protocol_response(content_type, body)
}

/// `GET /cas/serviceValidate` (§2.5).
pub async fn service_validate(
    State(state): State<WebState>,
    Query(params): Query<ValidateParams>,
) -> Response {
    validate_xml(
        &state,
        &params,
        Endpoint::ServiceValidate,
        Release::Cas2,
        "serviceValidate",
    )
    .await
}

/// `GET /cas/proxyValidate` (§2.6).
pub async fn proxy_validate(
    State(state): State<WebState>,
    Query(params): Query<ValidateParams>,
) -> Response {
    validate_xml(
        &state,
        &params,
        Endpoint::ProxyValidate,
        Release::Cas2,
        "proxyValidate",
    )
    .await
}

/// `GET /cas/p3/serviceValidate` (§2.8): with attributes.
pub async fn p3_service_validate(
    State(state): State<WebState>,
    Query(params): Query<ValidateParams>,
) -> Response {
    validate_xml(
        &state,
        &params,
        Endpoint::ServiceValidate,
        Release::Cas3,
        "p3/serviceValidate",
    )
    .await
}

/// `GET /cas/p3/proxyValidate` (§2.9): with attributes.
pub async fn p3_proxy_validate(
    State(state): State<WebState>,
    Query(params): Query<ValidateParams>,
) -> Response {
    validate_xml(
        &state,
        &params,
        Endpoint::ProxyValidate,
        Release::Cas3,
        "p3/proxyValidate",
    )
    .await
}

#[derive(Debug, serde::Deserialize)]
pub struct ProxyParams {
    pgt: Option<String>,
    #[serde(rename = "targetService")]
    target_service: Option<String>,
    format: Option<String>,
}

/// `GET /cas/proxy` (§2.7): a proxy ticket for `targetService` from a proxy-granting ticket.
pub async fn proxy(State(state): State<WebState>, Query(params): Query<ProxyParams>) -> Response {
    let format = Format::parse(params.format.as_deref());
    let body = match state
        .cas
        .proxy(params.pgt.as_deref(), params.target_service.as_deref())
        .await
    {
        Ok(Ok(ticket)) => {
            count(&state, "proxy", Ok(()));
            render::proxy_success(&ticket, format)
        }
        Ok(Err(failure)) => {
            count(&state, "proxy", Err(failure.code));
            render::proxy_failure(&failure, format)
        }
        Err(error) => {
            tracing::error!(%error, "CAS proxy request failed");
            render::proxy_failure(
                &CasFailure::new(CasErrorCode::InternalError, "try again"),
                format,
            )
        }
    };
    let content_type = match format {
        Format::Xml => "application/xml; charset=utf-8",
        Format::Json => "application/json",
    };
    protocol_response(content_type, body)
}

#[derive(Debug, serde::Deserialize)]
pub struct SamlParams {
    /// The service URL (§4.1).
    #[serde(rename = "TARGET")]
    target: Option<String>,
}

/// `POST /cas/samlValidate` (§4): SAML 1.1 validation; DTDs are refused.
pub async fn saml_validate(
    State(state): State<WebState>,
    Query(params): Query<SamlParams>,
    body: String,
) -> Response {
    use crate::entropy::EntropyExt as _;
    let response_id = format!("_{}", state.entropy.hex(16));
    let assertion_id = format!("_{}", state.entropy.hex(16));
    let issuer = Url::parse(&state.public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let target = params.target.unwrap_or_default();
    let now = state.login.now();
    let mut ctx = saml::SamlContext {
        response_id: &response_id,
        assertion_id: &assertion_id,
        issuer: &issuer,
        audience: &target,
        now,
        auth_time: now,
    };
    let artifact = match saml::artifact_of(&body) {
        Ok(artifact) if !target.is_empty() => artifact,
        Ok(_) => {
            return saml_response(saml::failure(true, "TARGET is required", &ctx));
        }
        Err(error) => {
            return saml_response(saml::failure(true, &error.to_string(), &ctx));
        }
    };
    let request = ValidationRequest {
        endpoint: Endpoint::ServiceValidate,
        ticket: Some(&artifact),
        service: Some(&target),
        renew: false,
    };
    let body = match state.cas.validate(request, Release::Cas3, None).await {
        Ok(Ok(auth)) => {
            count(&state, "samlValidate", Ok(()));
            ctx.auth_time = auth.auth_time;
            saml::success(&auth, &ctx)
        }
        Ok(Err(failure)) => {
            count(&state, "samlValidate", Err(failure.code));
            saml::failure(false, &failure.to_string(), &ctx)
        }
        Err(error) => {
            tracing::error!(%error, "SAML validation failed");
            saml::failure(false, "INTERNAL_ERROR: try again", &ctx)
        }
    };
    saml_response(body)
}

fn saml_response(body: String) -> Response {
    protocol_response("text/xml; charset=utf-8", body)
}
