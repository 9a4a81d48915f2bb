//! `/.well-known/openid-configuration` and `/oidc/*`: the OpenID Connect endpoints (DESIGN.md §7).
//! The rules are in `oidc/`; this file reads parameters, drives the login page, the consent page
//! and the SSO session, and writes the answers.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::activation::check_csrf;
use super::login::{current_session, see_other, session_cookie};
use crate::login::Destination;
use crate::oidc::server::{BearerError, Decision};
use crate::oidc::{AuthorizationRequest, AuthorizeError, OAuthError, Params, parse_params};
use crate::sessions::Session;
use crate::web::WebState;
use crate::web::errors::{OwnBody, WebError};
use crate::web::i18n::{Locale, PageTexts as _};
use crate::web::views::{OidcConsentPage, PageContext, form_page};

/// A JSON answer of a back-channel endpoint, never cached (RFC 6749 §5.1).
fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Serialized as it is (a claims map is not first copied into a `Value`).
    let body = match serde_json::to_string(body) {
        Ok(body) => body,
        Err(e) => return WebError::Internal(format!("a JSON answer: {e}")).into_response(),
    };
    let mut response = (
        status,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response();
    response.extensions_mut().insert(OwnBody);
    response
}

/// A public document (discovery, JWKS): cacheable, readable from any origin.
fn public_json(body: std::sync::Arc<str>) -> Response {
    let mut response = (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
            (
                axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        body.to_string(),
    )
        .into_response();
    response.extensions_mut().insert(OwnBody);
    response
}

/// RFC 6749 §5.2 error response.
fn oauth_error(error: &OAuthError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json(status, &error.body());
    if error.basic_challenge {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sesame\""),
        );
    }
    response
}

/// The parameters of a GET (query) or a form POST (body).
fn params_of(method: &Method, query: Option<String>, body: &Bytes) -> Params {
    if method == Method::POST {
        parse_params(&String::from_utf8_lossy(body))
    } else {
        parse_params(query.as_deref().unwrap_or(""))
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// `GET /.well-known/openid-configuration`.
pub async fn discovery(State(state): State<WebState>) -> Response {
    public_json(state.oidc.discovery())
}

/// `GET /oidc/jwks`.
pub async fn jwks(State(state): State<WebState>) -> Response {
    public_json(state.oidc.jwks())
}

/// `GET|POST /oidc/authorize` (OIDC Core §3.1.2.1: both methods).
pub async fn authorize(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, WebError> {
    let params = params_of(&method, query, &body);
    let request = match state.oidc.check_request(&params).await? {
        Ok(request) => request,
        Err(AuthorizeError::Page(reason)) => return Err(WebError::UnknownClient(reason)),
        Err(AuthorizeError::Redirect(error)) => {
            return see_other(&error.url(state.oidc.issuer()), None);
        }
    };
    let locale = ui_locale(&request).unwrap_or(locale);
    let session = current_session(&state, &headers).await?;
    proceed(&state, locale, &headers, request, session.as_ref(), false).await
}

/// `ui_locales` (OIDC Core §3.1.2.1): the first of French or English asked.
fn ui_locale(request: &AuthorizationRequest) -> Option<Locale> {
    request.ui_locales.as_deref()?.split(' ').find_map(|tag| {
        let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Some(Locale::Fr),
            "en" => Some(Locale::En),
            _ => None,
        }
    })
}

/// Continues an authorization request after the login page (called by `login`).
pub(crate) async fn continue_authorization(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    session: &Session,
    request: &str,
    authenticated: bool,
) -> Result<Response, WebError> {
    let request: AuthorizationRequest = serde_json::from_str(request)
        .map_err(|e| WebError::Internal(format!("stored authorization request: {e}")))?;
    proceed(
        state,
        locale,
        headers,
        request,
        Some(session),
        authenticated,
    )
    .await
}

async fn remember(
    state: &WebState,
    request: &AuthorizationRequest,
    reauthenticate: bool,
    authenticated: bool,
) -> Result<String, WebError> {
    let payload = serde_json::to_string(request)
        .map_err(|e| WebError::Internal(format!("authorization request: {e}")))?;
    state
        .login
        .remember_destination(&Destination::Oidc {
            request: payload,
            reauthenticate,
            authenticated,
        })
        .await?
        .map(|r| r.expose().to_string())
        .ok_or_else(|| WebError::Internal("an OIDC destination was refused".into()))
}

async fn proceed(
    state: &WebState,
    locale: Locale,
    headers: &HeaderMap,
    request: AuthorizationRequest,
    session: Option<&Session>,
    authenticated: bool,
) -> Result<Response, WebError> {
    let policy = match session {
        Some(session) => state.login.policy_requires_mfa(&session.account_id).await?,
        None => false,
    };
    match state
        .oidc
        .decide(&request, session, authenticated, false, policy)
        .await?
    {
        Decision::Redirect(url) => see_other(&url, None),
        Decision::Login { reauthenticate } => {
            let flow = remember(state, &request, reauthenticate, false).await?;
            let mut to = format!("/login?flow={flow}");
            if reauthenticate {
                to.push_str("&renew=true");
            }
            if let Some(hint) = &request.login_hint {
                to.push_str("&login_hint=");
                to.extend(url::form_urlencoded::byte_serialize(hint.as_bytes()));
            }
            to.push_str("&lang=");
            to.push_str(locale.tag());
            see_other(&to, None)
        }
        Decision::Consent(client) => {
            let flow = remember(state, &request, false, true).await?;
            let texts = &locale.texts().oidc;
            let scopes = request
                .scopes
                .iter()
                .filter_map(|s| texts.scope(s))
                .collect();
            let mut response = form_page(state, headers, None, |csrf| OidcConsentPage {
                page: PageContext::new(locale, state.demo, "/oidc/authorize"),
                o: texts,
                client: client.name.clone(),
                scopes,
                csrf,
                flow,
            })?;
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(url) = url::Url::parse(&request.redirect_uri) {
                super::login::allow_form_action(
                    state,
                    &mut response,
                    &url.origin().ascii_serialization(),
                    "",
                );
            }
            Ok(response)
        }
        Decision::SecondFactorRequired(client) => match session {
            Some(session) => {
                let payload = serde_json::to_string(&request)
                    .map_err(|e| WebError::Internal(format!("authorization request: {e}")))?;
                super::login::step_up(
                    state,
                    session,
                    Destination::Oidc {
                        request: payload,
                        reauthenticate: false,
                        authenticated: false,
                    },
                    || WebError::SecondFactorRequired(client),
                )
                .await
            }
            None => Err(WebError::SecondFactorRequired(client)),
        },
        Decision::UnknownClient => Err(WebError::UnknownClient("the client was removed".into())),
    }
}

/// `POST /oidc/consent`: allow or deny (with CSRF); the request comes back from the server.
pub async fn consent(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<super::activation::Fields>,
) -> Result<Response, WebError> {
    check_csrf(&state, &headers, &fields)?;
    let flow = crate::one_time::SecretToken::parse(super::activation::field(&fields, "flow"))
        .ok_or_else(|| WebError::BadRequest("no consent in progress".into()))?;
    let Some(Destination::Oidc {
        request,
        authenticated,
        ..
    }) = state.login.take_destination(&flow).await?
    else {
        return Err(WebError::BadRequest("no consent in progress".into()));
    };
    let request: AuthorizationRequest = serde_json::from_str(&request)
        .map_err(|e| WebError::Internal(format!("stored authorization request: {e}")))?;
    let Some(session) = current_session(&state, &headers).await? else {
        // The session ended meanwhile: start again from the login page.
        return proceed(&state, locale, &headers, request, None, false).await;
    };
    if super::activation::field(&fields, "decision") != "allow" {
        return see_other(&state.oidc.denied(&request), None);
    }
    state.oidc.grant_consent(&session, &request).await?;
    match state
        .oidc
        .decide(
            &request,
            Some(&session),
            authenticated,
            true,
            state.login.policy_requires_mfa(&session.account_id).await?,
        )
        .await?
    {
        Decision::Redirect(url) => see_other(&url, None),
        _ => {
            proceed(
                &state,
                locale,
                &headers,
                request,
                Some(&session),
                authenticated,
            )
            .await
        }
    }
}

/// `POST /oidc/token` (RFC 6749 §3.2).
pub async fn token(State(state): State<WebState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_params(&String::from_utf8_lossy(&body));
    let grant = match form
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str())
    {
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        Some("client_credentials") => "client_credentials",
        _ => "other",
    };
    let (response, result) = match state.oidc.token(authorization(&headers), &form).await {
        Ok(Ok(answer)) => (json(StatusCode::OK, &answer), "success"),
        Ok(Err(error)) => (oauth_error(&error), error.error),
        Err(error) => (WebError::from(error).into_response(), "server_error"),
    };
    state
        .metrics
        .tokens
        .get_or_create(&crate::web::metrics::TokenLabels { grant, result })
        .inc();
    response
}

/// `GET|POST /oidc/userinfo` (OIDC Core §5.3; the token by header, or in a form body —
/// RFC 6750 §2.1–2.2; never in the query, §2.3 is not offered).
pub async fn userinfo(
    State(state): State<WebState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = authorization(&headers)
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let in_body = if method == Method::POST {
        parse_params(&String::from_utf8_lossy(&body))
            .into_iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v)
    } else {
        None
    };
    let token = match (header, in_body) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(t),
        _ => Err(BearerError::Missing),
    };
    let result = match token {
        Ok(token) => match state.oidc.userinfo(&token).await {
            Ok(result) => result,
            Err(error) => return WebError::from(error).into_response(),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(claims) => json(StatusCode::OK, &claims),
        Err(error) => bearer_error(error),
    }
}

/// RFC 6750 §3: the challenge, with the error code when there was a token.
fn bearer_error(error: BearerError) -> Response {
    let (status, challenge) = match error {
        BearerError::Missing => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"sesame\"".to_string(),
        ),
        BearerError::InvalidToken => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"sesame\", error=\"invalid_token\", error_description=\"the access \
             token is unknown, expired or revoked\""
                .into(),
        ),
        BearerError::InsufficientScope => (
            StatusCode::FORBIDDEN,
            "Bearer realm=\"sesame\", error=\"insufficient_scope\", scope=\"openid\"".into(),
        ),
        BearerError::InvalidRequest => (
            StatusCode::BAD_REQUEST,
            "Bearer realm=\"sesame\", error=\"invalid_request\"".into(),
        ),
    };
    let code = challenge
        .split("error=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("invalid_request");
    let mut response = json(status, &serde_json::json!({"error": code}));
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// `POST /oidc/introspect` (RFC 7662 §2).
pub async fn introspect(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_params(&String::from_utf8_lossy(&body));
    match state.oidc.introspect(authorization(&headers), &form).await {
        Ok(Ok(answer)) => json(StatusCode::OK, &answer),
        Ok(Err(error)) => oauth_error(&error),
        Err(error) => WebError::from(error).into_response(),
    }
}

/// `POST /oidc/revoke` (RFC 7009 §2).
pub async fn revoke(State(state): State<WebState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_params(&String::from_utf8_lossy(&body));
    match state.oidc.revoke(authorization(&headers), &form).await {
        // §2.2: 200 whether or not the token was known.
        Ok(Ok(())) => json(StatusCode::OK, &serde_json::json!({})),
        Ok(Err(error)) => oauth_error(&error),
        Err(error) => WebError::from(error).into_response(),
    }
}

/// `GET|POST /oidc/logout`: RP-Initiated Logout 1.0 §2–3. With a valid `id_token_hint` naming the
/// signed-in user, the session ends at once and the browser goes to the registered
/// `post_logout_redirect_uri` with `state`; otherwise a confirmation page, and no redirect.
pub async fn end_session(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, WebError> {
    let params = params_of(&method, query, &body);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // The confirmation form of the page below posts here with its CSRF token.
    if method == Method::POST && get("csrf").is_some() {
        let fields: super::activation::Fields = params.iter().cloned().collect();
        return super::login::logout(State(state), locale, headers, axum::Form(fields)).await;
    }
    let hint = get("id_token_hint").and_then(|h| state.oidc.verify_id_token_hint(h));
    let session = current_session(&state, &headers).await?;
    let Some(hint) = hint else {
        return super::login::logout_page(State(state), locale, headers).await;
    };
    if let Some(session) = &session {
        if session.account_id != hint.sub {
            // Another user is signed in here: ask, do not redirect.
            return super::login::logout_page(State(state), locale, headers).await;
        }
        if let Some(cookie) = session_cookie(&state, &headers) {
            state.login.logout(&cookie).await?;
        }
    }
    let clear = crate::web::cookies::set(
        &super::login::session_cookie_name(&state),
        "",
        0,
        state.https,
    );
    let redirect = match get("post_logout_redirect_uri") {
        Some(uri) => {
            state
                .oidc
                .post_logout_redirect(&hint, get("client_id"), uri, get("state"))
                .await?
        }
        None => None,
    };
    match redirect {
        Some(to) => see_other(&to, Some(clear)),
        None => {
            let mut response = super::login::logged_out_page(&state, locale, &headers)?;
            response
                .headers_mut()
                .append(axum::http::header::SET_COOKIE, clear);
            Ok(response)
        }
    }
}
