//! Page views: askama templates (autoescaped; no `|safe` on request data) and the context every
//! page shares.

use askama::Template;

use super::i18n::{Locale, PageTexts as _, Texts};

/// What every page needs: its language's texts, the demo flag and the language-switch link.
#[derive(Debug)]
pub struct PageContext {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub demo: bool,
    pub switch_href: String,
}

impl PageContext {
    /// `path` is the current path; the switch link keeps it and flips `lang`.
    pub fn new(locale: Locale, demo: bool, path: &str) -> Self {
        let t = locale.texts();
        Self {
            t,
            lang: locale.tag(),
            demo,
            switch_href: format!("{path}?lang={}", t.other_language_tag),
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub page: PageContext,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub page: PageContext,
    pub title: &'static str,
    pub body: &'static str,
    pub link: Option<String>,
    pub request_id: Option<String>,
}

/// An HTML page response, with the cookies to set (none, or a new CSRF cookie, …).
pub fn html_response(
    html: String,
    cookies: impl IntoIterator<Item = axum::http::HeaderValue>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut response = (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    for cookie in cookies {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    response
}

/// A page with forms: renders the template built around the browser's CSRF token (DESIGN.md §9),
/// and sets the CSRF cookie when the browser had none, plus `extra_cookie`.
pub fn form_page<T: Template>(
    state: &super::WebState,
    headers: &axum::http::HeaderMap,
    extra_cookie: Option<axum::http::HeaderValue>,
    build: impl FnOnce(String) -> T,
) -> Result<axum::response::Response, super::errors::WebError> {
    let super::cookies::CsrfToken { value, set_cookie } =
        super::cookies::csrf_token(headers, state.https, state.entropy.as_ref());
    let html = render(&build(value))
        .map_err(|e| super::errors::WebError::Internal(format!("page: {e}")))?;
    Ok(html_response(
        html,
        [set_cookie, extra_cookie].into_iter().flatten(),
    ))
}

/// Renders a template; a rendering failure is a bug, reported as such by the caller.
pub fn render(template: &impl Template) -> Result<String, askama::Error> {
    template.render()
}

#[derive(Template)]
#[template(path = "activate.html")]
pub struct ActivatePage {
    pub page: PageContext,
    pub a: &'static super::i18n::ActivationTexts,
    /// `start`, `contact`, `code`, `password` or `done`.
    pub step: &'static str,
    pub number: u8,
    pub action: &'static str,
    pub csrf: String,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
    pub email_error: Option<&'static str>,
    pub phone_error: Option<&'static str>,
    pub email: String,
    pub phone: String,
    pub address: String,
    pub continue_href: String,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage {
    pub page: PageContext,
    pub r: &'static super::i18n::RecoveryTexts,
    pub a: &'static super::i18n::ActivationTexts,
    /// `forgot`, `sent`, `reset`, `done` or `invalid`.
    pub mode: &'static str,
    pub csrf: String,
    pub token: String,
    pub error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub page: PageContext,
    pub l: &'static super::i18n::LoginTexts,
    /// `form`, `mfa` (the second step), `lost_sent`, `recover`, `recovered` (lost factors),
    /// `signed_in`, `logout`, `logged_out` or `not_signed_in`.
    pub mode: &'static str,
    pub csrf: String,
    /// The server-side destination of this login (see `login::LoginService::remember_destination`).
    pub flow: String,
    /// What the user typed (form) or the signed-in login.
    pub username: String,
    pub error: Option<String>,
    /// The CSP nonce of the passkey script.
    pub nonce: String,
    /// Offer a passkey: passwordless on the form, the account's own on the second step.
    pub passkey: bool,
    /// The second step: the account has a TOTP.
    pub totp: bool,
    /// The recovery link's token (`recover`).
    pub token: String,
}

/// The auto-submitted form that returns a ticket by POST (CAS 3.0.3 §2.1.1 `method=POST`).
#[derive(Template)]
#[template(path = "cas_post.html")]
pub struct CasPostPage {
    pub page: PageContext,
    pub t: &'static super::i18n::CasTexts,
    pub action: String,
    pub ticket: String,
    pub nonce: String,
}

/// `/demo/cas`: what a CAS application receives.
#[derive(Template)]
#[template(path = "demo_cas.html")]
pub struct DemoCasPage {
    pub page: PageContext,
    pub lang: &'static str,
    pub user: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub response: String,
    pub again: String,
    pub logout: String,
}

/// The OIDC consent page: which application, what it will see, allow or deny.
#[derive(Template)]
#[template(path = "oidc_consent.html")]
pub struct OidcConsentPage {
    pub page: PageContext,
    pub o: &'static super::i18n::OidcTexts,
    pub client: String,
    pub scopes: Vec<&'static str>,
    pub csrf: String,
    pub flow: String,
}

/// `/demo/oidc`: what an OIDC application receives.
#[derive(Template)]
#[template(path = "demo_oidc.html")]
pub struct DemoOidcPage {
    pub page: PageContext,
    pub lang: &'static str,
    pub error: Option<String>,
    /// The ID token's claims, pretty-printed JSON.
    pub id_token_claims: String,
    pub userinfo: String,
    pub again: String,
    pub logout: String,
}

/// `/account` (DESIGN.md §5): the self-service page and its steps.
#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub page: PageContext,
    pub a: &'static super::i18n::AccountTexts,
    /// `overview`, `reauth`, `totp` (enrolment), `codes` (new recovery codes, shown once) or
    /// `contact_code` (the code sent to a new recovery contact).
    pub mode: &'static str,
    pub csrf: String,
    pub nonce: String,
    pub login: String,
    pub name: String,
    /// (kind, value, confirmed)
    pub contacts: Vec<(String, String, bool)>,
    /// When the TOTP was added, if there is one.
    pub totp: Option<String>,
    /// (id, name, added, last used, flagged)
    pub passkeys: Vec<(String, String, String, String, bool)>,
    pub passkeys_on: bool,
    pub recovery_codes: u32,
    /// (signed in at, browser, address, this one)
    pub sessions: Vec<(String, String, String, bool)>,
    /// (application, last used)
    pub applications: Vec<(String, String)>,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub flow: String,
    pub return_to: String,
    pub qr_svg: String,
    pub secret: String,
    pub reference: String,
    pub codes: Vec<String>,
}
