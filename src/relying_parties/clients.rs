//! OpenID Connect clients: their definition, the checks on a new one, secrets, and the registry.
//!
//! Redirect URIs are compared as exact strings (RFC 9700 §4.1.3; OIDC Core §3.1.2.1): no prefix,
//! no pattern, no normalisation. `http` is allowed only for loopback hosts (RFC 8252 §7.3) or when
//! `oidc.allow_http_redirects` is set (the demo and tests).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::entropy::{Entropy, EntropyExt};
use crate::keys::SigningAlgorithm;
use crate::storage::StorageError;

/// How a client proves who it is at the token endpoint (OIDC Core §9; RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: no secret; PKCE is required instead (RFC 7636, RFC 9700 §2.1.1).
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            "client_secret_post" => Ok(Self::ClientSecretPost),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown client authentication method `{other}` (client_secret_basic, \
                 client_secret_post or none)"
            )),
        }
    }
}

/// The grants a client may use at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

impl FromStr for GrantType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "authorization_code" => Ok(Self::AuthorizationCode),
            "refresh_token" => Ok(Self::RefreshToken),
            "client_credentials" => Ok(Self::ClientCredentials),
            other => Err(format!(
                "unknown grant `{other}` (authorization_code, refresh_token or client_credentials)"
            )),
        }
    }
}

/// The form of the access tokens a client gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessTokenFormat {
    /// A random value; only its SHA-256 is stored.
    #[default]
    Opaque,
    /// A signed JWT (RFC 9068 `at+jwt`), also stored by digest so it can be revoked.
    Jwt,
}

impl FromStr for AccessTokenFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "opaque" => Ok(Self::Opaque),
            "jwt" => Ok(Self::Jwt),
            other => Err(format!(
                "unknown access token format `{other}` (opaque or jwt)"
            )),
        }
    }
}

/// The scopes Sésame knows (DESIGN.md §7).
pub const KNOWN_SCOPES: &[&str] = &["openid", "profile", "email", "phone", "supann"];

fn default_auth_method() -> AuthMethod {
    AuthMethod::ClientSecretBasic
}

fn default_grants() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

fn default_scopes() -> Vec<String> {
    KNOWN_SCOPES.iter().map(|s| s.to_string()).collect()
}

fn default_alg() -> String {
    "RS256".into()
}

/// An OpenID Connect client (DESIGN.md §7).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcClient {
    /// The `client_id`.
    pub id: String,
    /// Shown to people (consent page).
    pub name: String,
    /// Exact strings.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may return (exact strings).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Receives back-channel logout tokens (OIDC Back-Channel Logout 1.0 §2.2).
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// A public client (no secret, PKCE required).
    #[serde(default)]
    pub public: bool,
    #[serde(default = "default_auth_method")]
    pub auth_method: AuthMethod,
    #[serde(default = "default_grants")]
    pub grants: Vec<GrantType>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The university's own application: no consent page.
    #[serde(default)]
    pub first_party: bool,
    /// The ID token's `alg`: RS256, ES256 or EdDSA.
    #[serde(default = "default_alg")]
    pub signing_alg: String,
    #[serde(default)]
    pub access_token_format: AccessTokenFormat,
    /// Logins to it need a second factor (the MFA work).
    #[serde(default)]
    pub mfa_required: bool,
    /// SHA-256 (hex) of the client secret; `None` for a public client. The secret itself is
    /// shown once, when made.
    #[serde(default)]
    pub secret_sha256: Option<String>,
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClient")
            .field("id", &self.id)
            .field("public", &self.public)
            .field("redirect_uris", &self.redirect_uris)
            .finish_non_exhaustive()
    }
}

/// Whether an `http` URL's host is a loopback address (RFC 8252 §7.3 allows those).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Checks a URI a client registers (redirect, post-logout, back-channel): absolute, no fragment
/// (RFC 6749 §3.1.2), https unless loopback or `allow_http`.
pub fn check_client_uri(what: &str, uri: &str, allow_http: bool) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("{what} `{uri}` is not an absolute URL: {e}"))?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err(format!("{what} `{uri}` must not have a fragment"));
    }
    if url.host_str().is_none() {
        return Err(format!("{what} `{uri}` needs a host"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(&url) => Ok(()),
        _ => Err(format!(
            "{what} `{uri}` must be https (http only for loopback hosts, or with \
             oidc.allow_http_redirects)"
        )),
    }
}

impl OidcClient {
    /// A client with the defaults of `sesame client add`.
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            id: id.to_string(),
            name: name.to_string(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
            public: false,
            auth_method: default_auth_method(),
            grants: default_grants(),
            scopes: default_scopes(),
            first_party: false,
            signing_alg: default_alg(),
            access_token_format: AccessTokenFormat::Opaque,
            mfa_required: false,
            secret_sha256: None,
        }
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.signing_alg.parse().unwrap_or(SigningAlgorithm::Rs256)
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grants.contains(&grant)
    }

    /// The rules every client obeys; a clear message for the first one broken.
    pub fn check(&self, allow_http: bool) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "client id `{}`: use 1 to 64 letters, digits, `-`, `_` or `.`",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            return Err("the name is empty".into());
        }
        if self.allows(GrantType::AuthorizationCode) && self.redirect_uris.is_empty() {
            return Err("a client of the authorization code flow needs a redirect URI".into());
        }
        for uri in &self.redirect_uris {
            check_client_uri("redirect URI", uri, allow_http)?;
        }
        for uri in &self.post_logout_redirect_uris {
            check_client_uri("post-logout redirect URI", uri, allow_http)?;
        }
        if let Some(uri) = &self.backchannel_logout_uri {
            check_client_uri("back-channel logout URI", uri, allow_http)?;
        }
        if self.public != (self.auth_method == AuthMethod::None) {
            return Err(
                "a public client authenticates with `none`, and only a public client does".into(),
            );
        }
        if self.public && self.allows(GrantType::ClientCredentials) {
            return Err("a public client cannot use client_credentials (it has no secret)".into());
        }
        if self.public && self.secret_sha256.is_some() {
            return Err("a public client has no secret".into());
        }
        if !self.public
            && !self
                .secret_sha256
                .as_deref()
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(
                "a confidential client needs secret_sha256 (64 hex digits; `sesame client add` \
                 makes the secret)"
                    .into(),
            );
        }
        if self.grants.is_empty() {
            return Err("the client has no grant".into());
        }
        for scope in &self.scopes {
            if !KNOWN_SCOPES.contains(&scope.as_str()) {
                return Err(format!(
                    "unknown scope `{scope}` (known: {})",
                    KNOWN_SCOPES.join(", ")
                ));
            }
        }
        self.signing_alg.parse::<SigningAlgorithm>()?;
        Ok(())
    }

    /// Whether `secret` is this client's, compared in constant time over the digests.
    pub fn secret_matches(&self, secret: &str) -> bool {
        let Some(expected) = self.secret_sha256.as_deref() else {
            return false;
        };
        // RFC 6749 §2.3.1: an empty secret is no secret.
        if secret.is_empty() {
            return false;
        }
        let got = hex(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
        aws_lc_rs::constant_time::verify_slices_are_equal(
            got.as_bytes(),
            expected.to_ascii_lowercase().as_bytes(),
        )
        .is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new client secret (256 bits, base64url) and its stored digest.
pub fn new_secret(entropy: &dyn Entropy) -> (String, String) {
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(entropy.bytes::<32>());
    let digest = hex(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
    (secret, digest)
}

/// The clients of the configuration and the database.
#[derive(Debug, Clone, Default)]
pub struct ClientRegistry {
    clients: Vec<OidcClient>,
}

impl ClientRegistry {
    pub fn new(clients: Vec<OidcClient>) -> Self {
        Self { clients }
    }

    pub fn find(&self, id: &str) -> Option<&OidcClient> {
        self.clients.iter().find(|c| c.id == id)
    }

    pub fn all(&self) -> &[OidcClient] {
        &self.clients
    }
}

/// The storage port of the clients.
#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn list_oidc_clients(&self) -> Result<Vec<OidcClient>, StorageError>;
    /// [`StorageError::Conflict`] if the id is taken.
    async fn insert_oidc_client(&self, client: &OidcClient, now: i64) -> Result<(), StorageError>;
    /// Replaces a client's definition; `false` if there was none.
    async fn update_oidc_client(&self, client: &OidcClient) -> Result<bool, StorageError>;
    async fn delete_oidc_client(&self, id: &str) -> Result<bool, StorageError>;
}

/// Registers, changes and removes the clients kept in the database (`sesame client …`).
pub struct ClientAdmin {
    clients: std::sync::Arc<dyn ClientStore>,
    config_clients: Vec<OidcClient>,
    allow_http: bool,
    audit: std::sync::Arc<crate::audit::Auditor>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    entropy: std::sync::Arc<dyn Entropy>,
}

impl ClientAdmin {
    pub fn new(
        clients: std::sync::Arc<dyn ClientStore>,
        config_clients: Vec<OidcClient>,
        allow_http: bool,
        audit: std::sync::Arc<crate::audit::Auditor>,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
        entropy: std::sync::Arc<dyn Entropy>,
    ) -> Self {
        Self {
            clients,
            config_clients,
            allow_http,
            audit,
            clock,
            entropy,
        }
    }

    /// Every client: the configuration's, then the database's.
    pub async fn list(&self) -> Result<Vec<(OidcClient, &'static str)>, StorageError> {
        let mut all: Vec<(OidcClient, &'static str)> = self
            .config_clients
            .iter()
            .cloned()
            .map(|c| (c, "config"))
            .collect();
        all.extend(
            self.clients
                .list_oidc_clients()
                .await?
                .into_iter()
                .map(|c| (c, "database")),
        );
        Ok(all)
    }

    /// Registers a client (the CLI); a confidential one gets a new secret, returned once.
    pub async fn add_client(
        &self,
        actor: crate::audit::Actor,
        mut client: OidcClient,
    ) -> Result<Option<String>, String> {
        let secret = if client.public {
            client.secret_sha256 = None;
            None
        } else {
            let (secret, digest) = new_secret(self.entropy.as_ref());
            client.secret_sha256 = Some(digest);
            Some(secret)
        };
        client.check(self.allow_http)?;
        if self.config_clients.iter().any(|c| c.id == client.id) {
            return Err(format!(
                "client `{}` is declared in the configuration",
                client.id
            ));
        }
        match self
            .clients
            .insert_oidc_client(&client, self.clock.unix_now())
            .await
        {
            Ok(()) => {}
            Err(StorageError::Conflict) => {
                return Err(format!("client `{}` already exists", client.id));
            }
            Err(e) => return Err(e.to_string()),
        }
        self.audit
            .record_from(
                actor,
                crate::audit::AuditAction::OidcClientAdded,
                Some(client.id.clone()),
                Some("cli".into()),
                serde_json::json!({"client": client.id, "public": client.public}),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(secret)
    }

    /// Gives a confidential client a new secret (the old one stops working at once).
    pub async fn rotate_secret(
        &self,
        actor: crate::audit::Actor,
        id: &str,
    ) -> Result<String, String> {
        let mut client = self
            .clients
            .list_oidc_clients()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| format!("no client `{id}` registered with the CLI"))?;
        if client.public {
            return Err(format!("client `{id}` is public: it has no secret"));
        }
        let (secret, digest) = new_secret(self.entropy.as_ref());
        client.secret_sha256 = Some(digest);
        self.clients
            .update_oidc_client(&client)
            .await
            .map_err(|e| e.to_string())?;
        self.audit
            .record_from(
                actor,
                crate::audit::AuditAction::OidcClientSecretRotated,
                Some(id.to_string()),
                Some("cli".into()),
                serde_json::json!({"client": id}),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(secret)
    }

    pub async fn remove_client(
        &self,
        actor: crate::audit::Actor,
        id: &str,
    ) -> Result<bool, String> {
        let removed = self
            .clients
            .delete_oidc_client(id)
            .await
            .map_err(|e| e.to_string())?;
        if removed {
            self.audit
                .record_from(
                    actor,
                    crate::audit::AuditAction::OidcClientRemoved,
                    Some(id.to_string()),
                    Some("cli".into()),
                    serde_json::json!({"client": id}),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confidential() -> OidcClient {
        let mut client = OidcClient::new("moodle", "Moodle");
        client.redirect_uris = vec!["https://moodle.example.fr/auth/oidc/".into()];
        client.secret_sha256 = Some("ab".repeat(32));
        client
    }

    #[test]
    fn a_well_formed_client_passes() {
        assert_eq!(confidential().check(false), Ok(()));
    }

    #[test]
    fn redirect_uris_need_https_except_on_loopback() {
        let mut client = confidential();
        client.redirect_uris = vec!["http://moodle.example.fr/cb".into()];
        assert!(client.check(false).unwrap_err().contains("https"));
        assert_eq!(client.check(true), Ok(()));
        client.redirect_uris = vec!["http://127.0.0.1:8080/cb".into()];
        assert_eq!(client.check(false), Ok(()));
        client.redirect_uris = vec!["https://moodle.example.fr/cb#frag".into()];
        assert!(client.check(false).unwrap_err().contains("fragment"));
        client.redirect_uris = vec!["/relative".into()];
        assert!(client.check(false).is_err());
    }

    #[test]
    fn public_clients_have_no_secret_and_no_client_credentials() {
        let mut client = confidential();
        client.public = true;
        assert!(client.check(false).is_err(), "public with basic auth");
        client.auth_method = AuthMethod::None;
        assert!(client.check(false).unwrap_err().contains("no secret"));
        client.secret_sha256 = None;
        assert_eq!(client.check(false), Ok(()));
        client.grants.push(GrantType::ClientCredentials);
        assert!(client.check(false).is_err());
    }

    #[test]
    fn unknown_scopes_algorithms_and_ids_are_refused() {
        let mut client = confidential();
        client.scopes.push("offline".into());
        assert!(client.check(false).unwrap_err().contains("offline"));
        let mut client = confidential();
        client.signing_alg = "HS256".into();
        assert!(client.check(false).is_err());
        let mut client = confidential();
        client.id = "a b".into();
        assert!(client.check(false).is_err());
    }

    #[test]
    fn secrets_match_by_digest_and_never_when_empty() {
        let entropy = crate::entropy::SeededEntropy::new(7);
        let (secret, digest) = new_secret(&entropy);
        assert!(secret.len() >= 43);
        let mut client = confidential();
        client.secret_sha256 = Some(digest);
        assert!(client.secret_matches(&secret));
        assert!(!client.secret_matches(&format!("{secret}x")));
        assert!(!client.secret_matches(""));
        client.secret_sha256 = None;
        assert!(!client.secret_matches(&secret));
    }
}
