//! `/demo/cas`: a CAS application inside the demo (`sesame demo` only), so a newcomer can click
//! through a real CAS login and see what an application receives. It validates its ticket
//! through the same server code as `/cas/p3/serviceValidate` and shows the answer.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::login::see_other;
use crate::cas::server::Release;
use crate::cas::{Endpoint, Format, ValidationRequest, render};
use crate::web::WebState;
use crate::web::errors::WebError;
use crate::web::i18n::Locale;
use crate::web::views::{DemoCasPage, PageContext, html_response, render as render_page};

#[derive(Debug, serde::Deserialize)]
pub struct DemoParams {
    ticket: Option<String>,
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `POST /demo/cas`: the ticket as CAS `method=POST` returns it (CAS 3.0.3 §2.1.1).
pub async fn cas_post(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    axum::Form(params): axum::Form<DemoParams>,
) -> Result<Response, WebError> {
    cas(State(state), locale, headers, Query(params)).await
}

pub async fn cas(
    State(state): State<WebState>,
    locale: Locale,
    _headers: HeaderMap,
    Query(params): Query<DemoParams>,
) -> Result<Response, WebError> {
    application(&state, locale, params, "demo/cas").await
}

/// `GET /demo/cas-mfa`: the same application, registered as requiring a second factor.
pub async fn cas_mfa(
    State(state): State<WebState>,
    locale: Locale,
    Query(params): Query<DemoParams>,
) -> Result<Response, WebError> {
    application(&state, locale, params, "demo/cas-mfa").await
}

/// The demo application at `path` (its service URL).
async fn application(
    state: &WebState,
    locale: Locale,
    params: DemoParams,
    path: &str,
) -> Result<Response, WebError> {
    let service = format!("{}{path}", state.public_url);
    let login = format!("/cas/login?service={}", encode(&service));
    let Some(ticket) = params.ticket.filter(|t| !t.is_empty()) else {
        return see_other(&login, None);
    };
    let outcome = state
        .cas
        .validate(
            ValidationRequest {
                endpoint: Endpoint::ServiceValidate,
                ticket: Some(&ticket),
                service: Some(&service),
                renew: false,
            },
            Release::Cas3,
            None,
        )
        .await?;
    let (user, attributes, response) = match &outcome {
        Ok(auth) => (
            Some(auth.user.clone()),
            auth.attributes
                .iter()
                .map(|(name, values)| (name.clone(), values.join(", ")))
                .collect(),
            render::success(auth, Format::Xml),
        ),
        Err(failure) => (None, Vec::new(), render::failure(failure, Format::Xml)),
    };
    let html = render_page(&DemoCasPage {
        page: PageContext::new(locale, state.demo, &format!("/{path}")),
        lang: locale.tag(),
        user,
        attributes,
        response,
        again: login,
        logout: format!("/cas/logout?service={}", encode(&service)),
    })
    .map_err(|e| WebError::Internal(format!("demo page: {e}")))?;
    Ok(html_response(html, None))
}

/// The demo's own OIDC client (`sesame demo` only): a public client with PKCE, first-party.
pub const DEMO_CLIENT_ID: &str = "demo-oidc";
const DEMO_OIDC_COOKIE: &str = "sesame-demo-oidc";

#[derive(Debug, serde::Deserialize)]
pub struct OidcParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /demo/oidc`: starts an authorization code flow with PKCE against this Sésame, and on
/// return redeems the code through the same token endpoint code as `/oidc/token`, then shows
/// the ID token's claims and `/oidc/userinfo`.
pub async fn oidc(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    Query(params): Query<OidcParams>,
) -> Result<Response, WebError> {
    use crate::entropy::EntropyExt as _;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let redirect_uri = format!("{}demo/oidc", state.public_url);
    let cookie_name = crate::web::cookies::name(DEMO_OIDC_COOKIE, state.https);
    let start = || -> Result<Response, WebError> {
        let flow_state = state.entropy.token(16);
        let nonce = state.entropy.token(16);
        let verifier = state.entropy.token(32);
        let challenge = b64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            verifier.as_bytes(),
        ));
        let to = crate::oidc::append_query(
            "/oidc/authorize",
            &[
                ("response_type", "code"),
                ("client_id", DEMO_CLIENT_ID),
                ("redirect_uri", &redirect_uri),
                ("scope", "openid profile email supann"),
                ("state", &flow_state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        let cookie = crate::web::cookies::set(
            &cookie_name,
            &format!("{flow_state}{nonce}{verifier}"),
            600,
            state.https,
        );
        see_other(&to, Some(cookie))
    };
    let Some(code) = params.code.filter(|c| !c.is_empty()) else {
        if let Some(error) = params.error {
            return demo_oidc_page(
                &state,
                locale,
                Some(format!(
                    "{error} ({})",
                    params.error_description.unwrap_or_default()
                )),
                String::new(),
                String::new(),
                None,
            );
        }
        return start();
    };
    let kept = crate::web::cookies::read(&headers, &cookie_name).unwrap_or_default();
    // Three values of fixed length: state and nonce (22 characters each), verifier (43).
    if kept.len() != 87 {
        return start();
    }
    let (expected_state, rest) = kept.split_at(22);
    let (nonce, verifier) = rest.split_at(22);
    // The client's own CSRF check (RFC 6749 §10.12).
    if params.state.as_deref() != Some(expected_state) {
        return demo_oidc_page(
            &state,
            locale,
            Some("state mismatch".into()),
            String::new(),
            String::new(),
            None,
        );
    }
    let form: crate::oidc::Params = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", DEMO_CLIENT_ID),
        ("code_verifier", verifier),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let answer = match state.oidc.token(None, &form).await? {
        Ok(answer) => answer,
        Err(error) => {
            return demo_oidc_page(
                &state,
                locale,
                Some(format!("{} ({})", error.error, error.description)),
                String::new(),
                String::new(),
                None,
            );
        }
    };
    let id_token = answer["id_token"].as_str().unwrap_or_default().to_string();
    let claims: serde_json::Value = id_token
        .split('.')
        .nth(1)
        .and_then(|p| b64.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if claims["nonce"].as_str() != Some(nonce) {
        return demo_oidc_page(
            &state,
            locale,
            Some("nonce mismatch".into()),
            String::new(),
            String::new(),
            None,
        );
    }
    let userinfo = match state
        .oidc
        .userinfo(answer["access_token"].as_str().unwrap_or_default())
        .await?
    {
        Ok(claims) => serde_json::to_string_pretty(&claims).unwrap_or_default(),
        Err(error) => format!("{error:?}"),
    };
    demo_oidc_page(
        &state,
        locale,
        None,
        serde_json::to_string_pretty(&claims).unwrap_or_default(),
        userinfo,
        Some(id_token),
    )
}

fn demo_oidc_page(
    state: &WebState,
    locale: Locale,
    error: Option<String>,
    id_token_claims: String,
    userinfo: String,
    id_token: Option<String>,
) -> Result<Response, WebError> {
    let logout = match &id_token {
        Some(hint) => crate::oidc::append_query(
            "/oidc/logout",
            &[
                ("id_token_hint", hint),
                ("post_logout_redirect_uri", &state.public_url),
                ("state", "demo"),
            ],
        ),
        None => "/logout".to_string(),
    };
    let html = render_page(&crate::web::views::DemoOidcPage {
        page: PageContext::new(locale, state.demo, "/demo/oidc"),
        lang: locale.tag(),
        error,
        id_token_claims,
        userinfo,
        again: "/demo/oidc".into(),
        logout,
    })
    .map_err(|e| WebError::Internal(format!("demo page: {e}")))?;
    Ok(html_response(html, None))
}
