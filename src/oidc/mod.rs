//! OpenID Connect provider (DESIGN.md §7): the authorization code flow with PKCE, tokens,
//! userinfo, revocation, introspection, RP-initiated and back-channel logout.
//!
//! This module holds the protocol's rules and types and never sees HTTP (`web/handlers/oidc.rs`
//! reads and writes the wire) or SQL (`store/*/oidc.rs` keeps the rows behind [`OidcStore`]).
//! `jose` signs and verifies (through aws-lc-rs, with `openidconnect`'s types), `server` runs the
//! flows, `claims` maps scopes to the attributes of DESIGN.md §7.
//!
//! Authorities: OpenID Connect Core 1.0, Discovery 1.0, RP-Initiated Logout 1.0, Back-Channel
//! Logout 1.0; RFC 6749 (OAuth 2.0), 6750 (bearer), 7636 (PKCE), 7009 (revocation), 7662
//! (introspection), 9207 (`iss` in the authorization response), 9700 (security BCP).

pub mod claims;
pub mod discovery;
pub mod jose;
pub mod server;

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_lc_rs::digest;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::relying_parties::clients::{ClientRegistry, GrantType, OidcClient};
use crate::storage::StorageError;

/// REFEDS assurance profiles used as `acr` values: a password alone, or several factors.
pub const ACR_SINGLE_FACTOR: &str = "https://refeds.org/profile/sfa";
pub const ACR_MULTI_FACTOR: &str = "https://refeds.org/profile/mfa";

/// Parameters of a request, in order, keeping duplicates (RFC 6749 §3.1: a parameter sent twice
/// is an error).
pub type Params = Vec<(String, String)>;

/// Reads an `application/x-www-form-urlencoded` string (a query or a form body).
pub fn parse_params(raw: &str) -> Params {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The single value of a parameter; `Err(name)` if it was sent more than once. An empty value
/// counts as absent (RFC 6749 §3.1).
fn single<'a>(params: &'a Params, name: &'static str) -> Result<Option<&'a str>, &'static str> {
    let mut values = params
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(name);
    }
    Ok(first.filter(|v| !v.is_empty()))
}

/// What `prompt` asked (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A checked authorization request, kept on the server while the user signs in or consents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// The scopes granted: those asked that the client may have (`openid` always first).
    pub scopes: Vec<String>,
    /// Echoed byte for byte (RFC 6749 §4.1.2).
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// PKCE S256 challenge (RFC 7636 §4.2).
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    /// Asked `acr` values, in order of preference.
    pub acr_values: Vec<String>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    pub id_token_hint: Option<String>,
}

impl AuthorizationRequest {
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }

    /// Whether the request asks for multi-factor authentication through `acr_values`.
    pub fn asks_mfa(&self) -> bool {
        self.acr_values.iter().any(|v| v == ACR_MULTI_FACTOR)
    }
}

/// Why an authorization request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: an error page, never a redirect
    /// (RFC 6749 §4.1.2.1; RFC 9700 §4.11).
    Page(String),
    /// An error sent back to the client's redirect URI.
    Redirect(ErrorRedirect),
}

/// An error response for the redirect URI (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub error: &'static str,
    pub description: String,
    pub state: Option<String>,
}

impl ErrorRedirect {
    pub fn new(request: &AuthorizationRequest, error: &'static str, description: &str) -> Self {
        Self {
            redirect_uri: request.redirect_uri.clone(),
            error,
            description: description.to_string(),
            state: request.state.clone(),
        }
    }

    /// The URL to send the browser to, with `iss` (RFC 9207 §2).
    pub fn url(&self, issuer: &str) -> String {
        let mut pairs = vec![
            ("error", self.error),
            ("error_description", self.description.as_str()),
        ];
        if let Some(state) = &self.state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", issuer));
        append_query(&self.redirect_uri, &pairs)
    }
}

/// The successful authorization response: `code`, `state`, `iss` (RFC 6749 §4.1.2, RFC 9207).
pub fn code_redirect(request: &AuthorizationRequest, code: &str, issuer: &str) -> String {
    let mut pairs = vec![("code", code)];
    if let Some(state) = &request.state {
        pairs.push(("state", state));
    }
    pairs.push(("iss", issuer));
    append_query(&request.redirect_uri, &pairs)
}

/// Adds parameters to a registered URI's query, keeping its own (RFC 6749 §3.1.2).
pub fn append_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut encoded = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        encoded.append_pair(k, v);
    }
    let encoded = encoded.finish();
    let (base, fragment) = match uri.split_once('#') {
        Some((b, _)) => (b, ""),
        None => (uri, ""),
    };
    let separator = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{base}{separator}{encoded}{fragment}")
}

/// Whether a PKCE value (verifier or S256 challenge) is well formed: 43–128 unreserved
/// characters (RFC 7636 §4.1, §4.2).
pub fn pkce_well_formed(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    if !pkce_well_formed(verifier) {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

/// Checks an authorization request (OIDC Core §3.1.2.1–3.1.2.2; RFC 6749 §4.1.1; RFC 7636 §4.3).
/// The client and redirect URI are checked first: until both are known good, nothing is
/// redirected.
pub fn check_authorization(
    params: &Params,
    clients: &ClientRegistry,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let page = |m: &str| AuthorizeError::Page(m.to_string());
    let client_id = single(params, "client_id")
        .map_err(|_| page("client_id was sent more than once"))?
        .ok_or_else(|| page("the request has no client_id"))?;
    let client = clients
        .find(client_id)
        .ok_or_else(|| page("unknown client_id"))?;
    let redirect_uri = single(params, "redirect_uri")
        .map_err(|_| page("redirect_uri was sent more than once"))?
        // OIDC Core §3.1.2.1: REQUIRED, and an exact match (RFC 9700 §4.1.3).
        .ok_or_else(|| page("the request has no redirect_uri"))?;
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(page("redirect_uri is not registered for this client"));
    }
    // From here on, errors go back to the client. `state` is echoed even on errors.
    let state = params
        .iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty());
    let mut request = AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scopes: Vec::new(),
        state,
        nonce: None,
        code_challenge: None,
        prompt: Prompt::default(),
        max_age: None,
        acr_values: Vec::new(),
        login_hint: None,
        ui_locales: None,
        id_token_hint: None,
    };
    let fail = |request: &AuthorizationRequest, error: &'static str, description: &str| {
        AuthorizeError::Redirect(ErrorRedirect::new(request, error, description))
    };
    if let Err(name) = [
        "state",
        "response_type",
        "scope",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "max_age",
        "acr_values",
        "login_hint",
        "ui_locales",
        "id_token_hint",
        "response_mode",
        "request",
        "request_uri",
    ]
    .iter()
    .try_for_each(|name| single(params, name).map(|_| ()))
    {
        return Err(fail(
            &request,
            "invalid_request",
            &format!("{name} was sent more than once"),
        ));
    }
    let get = |name: &'static str| single(params, name).ok().flatten();
    // OIDC Core §6: request objects are not supported.
    if get("request").is_some() {
        return Err(fail(
            &request,
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if get("request_uri").is_some() {
        return Err(fail(
            &request,
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match get("response_type") {
        None => {
            return Err(fail(
                &request,
                "invalid_request",
                "response_type is required",
            ));
        }
        Some("code") => {}
        // Implicit and hybrid flows are not offered (DESIGN.md §7; RFC 9700 §2.1.2).
        Some(_) => {
            return Err(fail(
                &request,
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if let Some(mode) = get("response_mode")
        && mode != "query"
    {
        return Err(fail(
            &request,
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(fail(
            &request,
            "unauthorized_client",
            "this client may not use the authorization code flow",
        ));
    }
    let asked: Vec<&str> = get("scope").unwrap_or("").split(' ').collect();
    if !asked.contains(&"openid") {
        return Err(fail(
            &request,
            "invalid_scope",
            "the scope must include openid",
        ));
    }
    // RFC 6749 §3.3: the server may grant fewer scopes than asked; unknown ones are dropped.
    request.scopes.push("openid".into());
    for scope in &client.scopes {
        if scope != "openid" && asked.contains(&scope.as_str()) {
            request.scopes.push(scope.clone());
        }
    }
    request.nonce = get("nonce").map(str::to_string);
    match (get("code_challenge"), get("code_challenge_method")) {
        (Some(challenge), method) => {
            // RFC 7636 §4.3 defaults to `plain`, which DESIGN.md §7 refuses (RFC 9700 §2.1.1).
            if method != Some("S256") {
                return Err(fail(
                    &request,
                    "invalid_request",
                    "code_challenge_method must be S256",
                ));
            }
            if !pkce_well_formed(challenge) {
                return Err(fail(
                    &request,
                    "invalid_request",
                    "code_challenge is malformed",
                ));
            }
            request.code_challenge = Some(challenge.to_string());
        }
        (None, Some(_)) => {
            return Err(fail(
                &request,
                "invalid_request",
                "code_challenge_method without code_challenge",
            ));
        }
        (None, None) if client.public => {
            return Err(fail(
                &request,
                "invalid_request",
                "a public client must use PKCE (code_challenge with S256)",
            ));
        }
        (None, None) => {}
    }
    if let Some(prompt) = get("prompt") {
        for value in prompt.split(' ').filter(|v| !v.is_empty()) {
            match value {
                "none" => request.prompt.none = true,
                "login" => request.prompt.login = true,
                "consent" => request.prompt.consent = true,
                // Sésame has one account per person: choosing one is signing in again.
                "select_account" => request.prompt.login = true,
                _ => {
                    return Err(fail(&request, "invalid_request", "unknown prompt value"));
                }
            }
        }
        // OIDC Core §3.1.2.1: `none` with any other value is an error.
        if request.prompt.none && (request.prompt.login || request.prompt.consent) {
            return Err(fail(
                &request,
                "invalid_request",
                "prompt=none cannot be combined with other values",
            ));
        }
    }
    if let Some(max_age) = get("max_age") {
        match max_age.parse::<i64>() {
            Ok(seconds) if seconds >= 0 => request.max_age = Some(seconds),
            _ => {
                return Err(fail(
                    &request,
                    "invalid_request",
                    "max_age must be a non-negative integer",
                ));
            }
        }
    }
    request.acr_values = get("acr_values")
        .map(|v| {
            v.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    request.login_hint = get("login_hint")
        .filter(|h| h.len() <= 320 && !h.chars().any(char::is_control))
        .map(str::to_string);
    request.ui_locales = get("ui_locales").map(|v| v.chars().take(64).collect());
    request.id_token_hint = get("id_token_hint").map(str::to_string);
    Ok(request)
}

/// An error of the token, revocation or introspection endpoints (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
    /// 400, or 401 for `invalid_client` (with `WWW-Authenticate` when the client used Basic).
    pub status: u16,
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            status: 400,
            basic_challenge: false,
        }
    }

    /// RFC 6749 §5.2: `invalid_client` is 401, with a challenge if the client tried Basic.
    pub fn invalid_client(basic: bool) -> Self {
        Self {
            error: "invalid_client",
            description: "client authentication failed".into(),
            status: 401,
            basic_challenge: basic,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": self.error, "error_description": self.description})
    }
}

/// How a client authenticated at a back-channel endpoint (what the request carried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `Authorization: Basic` (RFC 6749 §2.3.1: form-urlencoded id and secret).
    Basic { id: String, secret: String },
    /// `client_id` and `client_secret` in the body.
    Post { id: String, secret: String },
    /// Only `client_id` (a public client).
    None { id: String },
}

impl ClientCredentials {
    /// Reads the client's credentials: exactly one method per request (RFC 6749 §2.3).
    pub fn read(authorization: Option<&str>, form: &Params) -> Result<Self, OAuthError> {
        let body_id = single(form, "client_id")
            .map_err(|_| OAuthError::new("invalid_request", "client_id was sent twice"))?;
        let body_secret = single(form, "client_secret")
            .map_err(|_| OAuthError::new("invalid_request", "client_secret was sent twice"))?;
        let basic = authorization
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
        match (basic, body_secret) {
            (Some(_), Some(_)) => Err(OAuthError::new(
                "invalid_request",
                "use one client authentication method, not two",
            )),
            (Some((_, encoded)), None) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| OAuthError::invalid_client(true))?;
                let (id, secret) = decoded
                    .split_once(':')
                    .ok_or_else(|| OAuthError::invalid_client(true))?;
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .map_err(|_| OAuthError::invalid_client(true))
                };
                let (id, secret) = (decode(id)?, decode(secret)?);
                if body_id.is_some_and(|b| b != id) {
                    return Err(OAuthError::new(
                        "invalid_request",
                        "client_id differs from the authenticated client",
                    ));
                }
                Ok(Self::Basic { id, secret })
            }
            (None, Some(secret)) => Ok(Self::Post {
                id: body_id
                    .ok_or_else(|| OAuthError::invalid_client(false))?
                    .to_string(),
                secret: secret.to_string(),
            }),
            (None, None) => Ok(Self::None {
                id: body_id
                    .ok_or_else(|| OAuthError::invalid_client(false))?
                    .to_string(),
            }),
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Basic { id, .. } | Self::Post { id, .. } | Self::None { id } => id,
        }
    }

    /// Checks the credentials against the registered client: the method must be the client's
    /// own (OIDC Core §9), the secret right. The same error whatever was wrong.
    pub fn authenticate<'a>(
        &self,
        clients: &'a ClientRegistry,
    ) -> Result<&'a OidcClient, OAuthError> {
        use crate::relying_parties::clients::AuthMethod;
        let basic = matches!(self, Self::Basic { .. });
        let client = clients
            .find(self.id())
            .ok_or_else(|| OAuthError::invalid_client(basic))?;
        let ok = match (self, client.auth_method) {
            (Self::Basic { secret, .. }, AuthMethod::ClientSecretBasic)
            | (Self::Post { secret, .. }, AuthMethod::ClientSecretPost) => {
                client.secret_matches(secret)
            }
            (Self::None { .. }, AuthMethod::None) => client.public,
            _ => false,
        };
        if ok {
            Ok(client)
        } else {
            Err(OAuthError::invalid_client(basic))
        }
    }
}

/// One parameter of a back-channel request, refusing duplicates.
pub fn form_value<'a>(form: &'a Params, name: &'static str) -> Result<Option<&'a str>, OAuthError> {
    single(form, name)
        .map_err(|n| OAuthError::new("invalid_request", format!("{n} was sent more than once")))
}

/// What a code was issued for (stored by digest; single use, 60 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub account_id: String,
    pub session_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
}

/// A grant: the family of tokens from one code (or one client-credentials request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    /// `None` for client credentials.
    pub account_id: Option<String>,
    /// The SSO session: the grant ends with it (logout, reset, disable, expiry).
    pub session_id: Option<String>,
    pub scope: String,
    pub auth_time: Option<i64>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub created_at: i64,
    /// Absolute end of the family (refresh tokens included).
    pub expires_at: i64,
}

/// Access or refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

impl std::str::FromStr for TokenKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "access" => Ok(Self::Access),
            "refresh" => Ok(Self::Refresh),
            other => Err(format!("unknown token kind `{other}`")),
        }
    }
}

/// A token to store: only its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub digest: Vec<u8>,
    pub kind: TokenKind,
    pub expires_at: i64,
}

/// A live token as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken {
    pub kind: TokenKind,
    pub expires_at: i64,
    pub created_at: i64,
    pub grant: Grant,
    /// The grant's account with its feed records (`None` for a client's own grant).
    pub account: Option<crate::accounts::AccountWithRecords>,
}

/// What presenting a code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// Unused until now: it is used now, whatever the checks that follow say.
    Redeemed {
        code: Box<StoredCode>,
        /// Whether its account was active and its session alive at the redemption.
        live: bool,
    },
    /// Used before: it is marked replayed, and the grant it produced (if any) was revoked
    /// (RFC 6749 §4.1.2).
    Replayed {
        grant_revoked: bool,
    },
    Unknown,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Rotated: the old one is spent, the new ones stored (in the old one's grant).
    Rotated,
    /// Spent before: the whole family was revoked (RFC 9700 §4.14.2).
    Replayed,
    Unknown,
}

/// The storage port of the OIDC room.
#[async_trait]
pub trait OidcStore: Send + Sync {
    async fn insert_code(
        &self,
        digest: &[u8],
        code: &StoredCode,
        now: i64,
    ) -> Result<(), StorageError>;
    /// A code not used yet (expired or not), read without spending it (ADR 0020): what the
    /// checks of the token request look at before [`Self::issue_grant`] spends it.
    async fn find_code(&self, digest: &[u8]) -> Result<Option<StoredCode>, StorageError>;
    /// Spends a code, in one write (ADR 0020): the first caller wins and is told whether the
    /// code's account is still active and its session alive. A code used before is marked
    /// replayed and revokes the grant it produced (RFC 6749 §4.1.2). An expired code is still
    /// spent. The path of a refused or failed redemption; a successful one spends its code in
    /// [`Self::issue_grant`].
    async fn take_code(&self, digest: &[u8], now: i64) -> Result<CodeRedemption, StorageError>;
    /// Stores a grant, its first tokens and the audit event of their issue, in one write. Made
    /// from a code (`code_digest`), the same write spends that code, and only while it is unused,
    /// its account active and its session alive: otherwise [`StorageError::Conflict`], and
    /// nothing changes (the code included).
    async fn issue_grant(
        &self,
        grant: &Grant,
        tokens: &[NewToken],
        code_digest: Option<&[u8]>,
        event: &crate::audit::NewAuditEvent,
    ) -> Result<(), StorageError>;
    /// Spends a live refresh token of `client_id` and stores its successors with `event`, in
    /// one write. A spent one presented again revokes its family (RFC 9700 §4.14.2). With no
    /// successors (`[]`) nothing is spent: only a replay is looked for.
    async fn rotate_refresh_token(
        &self,
        digest: &[u8],
        client_id: &str,
        successors: &[NewToken],
        now: i64,
        event: Option<&crate::audit::NewAuditEvent>,
    ) -> Result<RefreshOutcome, StorageError>;
    /// A live token, with its grant.
    async fn find_token(&self, digest: &[u8], now: i64)
    -> Result<Option<FoundToken>, StorageError>;
    /// Deletes one token (an access token), or a whole grant (for a refresh token), if it is
    /// `client_id`'s. `true` if something was revoked.
    async fn revoke_token(&self, digest: &[u8], client_id: &str) -> Result<bool, StorageError>;
    /// The scopes a user allowed a client, if any.
    async fn find_consent(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<Vec<String>>, StorageError>;
    async fn record_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<(), StorageError>;
    /// Forgets consents (of one client, or all) and revokes the grants they allowed.
    async fn delete_consents(
        &self,
        account_id: &str,
        client_id: Option<&str>,
    ) -> Result<u64, StorageError>;
    /// The clients a user allowed: (client id, scopes, when).
    async fn list_consents(
        &self,
        account_id: &str,
    ) -> Result<Vec<(String, Vec<String>, i64)>, StorageError>;
    /// Deletes expired codes (after a replay window), tokens and grants.
    async fn purge_oidc(&self, now: i64) -> Result<u64, StorageError>;
}

/// The claims that userinfo and the ID token release, by scope (OIDC Core §5.4).
pub type Claims = BTreeMap<String, serde_json::Value>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relying_parties::clients::AuthMethod;

    fn registry() -> ClientRegistry {
        let mut web = OidcClient::new("web", "Web");
        web.redirect_uris = vec!["https://app.example.fr/cb?x=1".into()];
        web.secret_sha256 = Some("00".repeat(32));
        let mut spa = OidcClient::new("spa", "SPA");
        spa.redirect_uris = vec!["https://spa.example.fr/cb".into()];
        spa.public = true;
        spa.auth_method = AuthMethod::None;
        ClientRegistry::new(vec![web, spa])
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("client_id", "web"),
            ("redirect_uri", "https://app.example.fr/cb?x=1"),
            ("response_type", "code"),
            ("scope", "openid profile email unknown"),
            ("state", "s t&a=te"),
        ]
    }

    fn redirect_error(pairs: &[(&str, &str)]) -> (&'static str, Option<String>) {
        match check_authorization(&params(pairs), &registry()) {
            Err(AuthorizeError::Redirect(e)) => (e.error, e.state),
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_keeps_known_scopes_and_the_state() {
        let request = check_authorization(&params(&base()), &registry()).unwrap();
        assert_eq!(request.scopes, ["openid", "profile", "email"]);
        assert_eq!(request.state.as_deref(), Some("s t&a=te"));
        let url = code_redirect(&request, "C", "https://sso.example.fr");
        assert_eq!(
            url,
            "https://app.example.fr/cb?x=1&code=C&state=s+t%26a%3Dte&iss=https%3A%2F%2Fsso.example.fr"
        );
    }

    #[test]
    fn a_bad_client_or_redirect_uri_is_never_redirected() {
        for pairs in [
            vec![
                ("client_id", "nobody"),
                ("redirect_uri", "https://app.example.fr/cb?x=1"),
            ],
            vec![
                ("client_id", "web"),
                ("redirect_uri", "https://app.example.fr/cb"),
            ],
            vec![
                ("client_id", "web"),
                ("redirect_uri", "https://app.example.fr/cb?x=1&y"),
            ],
            vec![("client_id", "web")],
            vec![("redirect_uri", "https://app.example.fr/cb?x=1")],
            vec![
                ("client_id", "web"),
                ("client_id", "web"),
                ("redirect_uri", "https://app.example.fr/cb?x=1"),
            ],
        ] {
            assert!(
                matches!(
                    check_authorization(&params(&pairs), &registry()),
                    Err(AuthorizeError::Page(_))
                ),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn protocol_errors_go_back_with_the_state() {
        let mut p = base();
        p.retain(|(k, _)| *k != "response_type");
        assert_eq!(redirect_error(&p).0, "invalid_request");
        assert_eq!(redirect_error(&p).1.as_deref(), Some("s t&a=te"));
        let mut p = base();
        p[2] = ("response_type", "token");
        assert_eq!(redirect_error(&p).0, "unsupported_response_type");
        let mut p = base();
        p.push(("request", "eyJ..."));
        assert_eq!(redirect_error(&p).0, "request_not_supported");
        let mut p = base();
        p.push(("request_uri", "https://x"));
        assert_eq!(redirect_error(&p).0, "request_uri_not_supported");
        let mut p = base();
        p[3] = ("scope", "profile");
        assert_eq!(redirect_error(&p).0, "invalid_scope");
        let mut p = base();
        p.push(("prompt", "none login"));
        assert_eq!(redirect_error(&p).0, "invalid_request");
        let mut p = base();
        p.push(("max_age", "-1"));
        assert_eq!(redirect_error(&p).0, "invalid_request");
        let mut p = base();
        p.push(("state", "again"));
        assert_eq!(redirect_error(&p).0, "invalid_request");
    }

    #[test]
    fn pkce_s256_only_and_required_for_public_clients() {
        let mut p = base();
        p.push(("code_challenge", CHALLENGE));
        p.push(("code_challenge_method", "plain"));
        assert_eq!(redirect_error(&p).0, "invalid_request");
        let mut p = base();
        p.push(("code_challenge", CHALLENGE));
        assert_eq!(redirect_error(&p).0, "invalid_request", "plain by default");
        let mut p = base();
        p.push(("code_challenge_method", "S256"));
        assert_eq!(redirect_error(&p).0, "invalid_request");
        let spa = vec![
            ("client_id", "spa"),
            ("redirect_uri", "https://spa.example.fr/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
        ];
        assert_eq!(redirect_error(&spa).0, "invalid_request");
        let mut ok = spa.clone();
        ok.push(("code_challenge", CHALLENGE));
        ok.push(("code_challenge_method", "S256"));
        assert!(check_authorization(&params(&ok), &registry()).is_ok());
    }

    #[test]
    fn the_rfc_7636_example_verifier_matches_its_challenge() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(verifier, CHALLENGE));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            CHALLENGE
        ));
        assert!(!pkce_matches("short", CHALLENGE));
    }

    #[test]
    fn client_credentials_come_one_way_only() {
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("web:s%3Acret")
        );
        let read = ClientCredentials::read(Some(&basic), &params(&[])).unwrap();
        assert_eq!(
            read,
            ClientCredentials::Basic {
                id: "web".into(),
                secret: "s:cret".into()
            }
        );
        let both = ClientCredentials::read(Some(&basic), &params(&[("client_secret", "x")]));
        assert_eq!(both.unwrap_err().error, "invalid_request");
        let none = ClientCredentials::read(None, &params(&[])).unwrap_err();
        assert_eq!((none.error, none.status), ("invalid_client", 401));
        let public = ClientCredentials::read(None, &params(&[("client_id", "spa")])).unwrap();
        assert!(public.authenticate(&registry()).is_ok());
        let pretend = ClientCredentials::read(None, &params(&[("client_id", "web")])).unwrap();
        assert!(pretend.authenticate(&registry()).is_err(), "no secret");
    }

    #[test]
    fn query_parameters_are_appended_to_the_registered_uri() {
        assert_eq!(
            append_query("https://a/cb", &[("k", "v w")]),
            "https://a/cb?k=v+w"
        );
        assert_eq!(
            append_query("https://a/cb?x=1", &[("k", "v")]),
            "https://a/cb?x=1&k=v"
        );
    }
}
