//! The OpenID Connect provider's flows: what an authorization request leads to, codes, the token
//! endpoint's grants, userinfo, introspection, revocation, ID-token hints and logout tokens. The
//! web adapter calls it; it never sees HTTP.

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AdditionalClaims, Audience, AuthenticationContextClass,
    AuthenticationMethodReference, IdToken, IdTokenClaims, IssuerUrl, Nonce, StandardClaims,
    SubjectIdentifier,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::jose::{self, SigningKey};
use super::{
    ACR_MULTI_FACTOR, ACR_SINGLE_FACTOR, AuthorizationRequest, AuthorizeError, ClientCredentials,
    CodeRedemption, ErrorRedirect, FoundToken, Grant, NewToken, OAuthError, OidcStore, Params,
    RefreshOutcome, StoredCode, TokenKind, claims, code_redirect, form_value, pkce_matches,
};
use crate::accounts::{AccountAdminStore, AccountState, attributes};
use crate::audit::{Actor, AuditAction, Auditor};
use crate::cas::logout::{LogoutProtocol, LogoutStore, LogoutTarget, LogoutTokens};
use crate::clock::{Clock, Stopwatch};
use crate::entropy::{Entropy, EntropyExt};
use crate::keys::{KeyRing, SigningAlgorithm};
use crate::one_time::SecretToken;
use crate::relying_parties::clients::{
    AccessTokenFormat, ClientRegistry, ClientStore, GrantType, OidcClient,
};
use crate::sessions::{Session, Sessions};
use crate::storage::StorageError;

/// Settings of the provider.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer: the public URL without a trailing slash, byte-exact in every token.
    pub issuer: String,
    pub config_clients: Vec<OidcClient>,
    pub allow_http_redirects: bool,
    pub code_lifetime: Duration,
    pub id_token_lifetime: Duration,
    pub access_token_lifetime: Duration,
    /// Absolute life of a refresh-token family (it also ends with its SSO session).
    pub refresh_token_lifetime: Duration,
    pub student_domain: String,
    pub staff_domain: String,
}

/// How long a node keeps the client registry it read.
const REGISTRY_CACHE: Duration = Duration::from_secs(1);
/// How long a logout token is valid (Back-Channel Logout 1.0 §2.4 recommends ≤ 2 minutes).
const LOGOUT_TOKEN_LIFETIME: i64 = 120;

/// The ID token's own claims beyond the standard ones: `sid` (Back-Channel Logout 1.0 §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AdditionalClaims for SessionClaims {}

type SesameIdToken = IdToken<
    SessionClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// What an authorization request leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Back to the client: a code or an error.
    Redirect(String),
    /// The login page; with `reauthenticate`, an existing session may not continue the request
    /// (`prompt=login`, `max_age`).
    Login { reauthenticate: bool },
    /// The consent page for this client.
    Consent(OidcClient),
    /// The client (or `acr_values`) needs a second factor the session does not have.
    SecondFactorRequired(String),
    /// The client vanished from the registry meanwhile: an error page.
    UnknownClient,
}

/// A verified `id_token_hint` (signature and issuer checked; expiry tolerated, as RP-Initiated
/// Logout 1.0 §2 allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenHint {
    pub sub: String,
    pub audiences: Vec<String>,
    pub sid: Option<String>,
}

/// A bearer-token failure (RFC 6750 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// No token: 401 with a bare challenge.
    Missing,
    /// 401 `invalid_token`.
    InvalidToken,
    /// 403 `insufficient_scope`.
    InsufficientScope,
    /// 400 `invalid_request` (e.g. two methods at once).
    InvalidRequest,
}

/// A key-ring snapshot and its serialised JWKS.
type PublishedJwks = (Arc<Vec<crate::keys::LoadedKey>>, Arc<str>);

pub struct OidcServer {
    /// Shared, not copied, by the requests of the second it is kept for.
    cache: std::sync::Mutex<Option<(Stopwatch, Arc<ClientRegistry>)>>,
    /// The discovery document, serialised once (it depends only on the issuer).
    discovery: std::sync::OnceLock<Arc<str>>,
    /// The JWKS, serialised once per key-ring snapshot.
    jwks: std::sync::Mutex<Option<PublishedJwks>>,
    store: Arc<dyn OidcStore>,
    clients: Arc<dyn ClientStore>,
    admin: Arc<dyn AccountAdminStore>,
    sessions: Arc<Sessions>,
    logouts: Arc<dyn LogoutStore>,
    keys: Arc<KeyRing>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    settings: OidcSettings,
}

/// A bearer value's stored digest.
/// Why a code presented to the token endpoint gives no grant.
#[derive(Debug, Clone, Copy)]
enum Unspent<'a> {
    /// Not found unused: used before, or unknown.
    NotFound,
    /// Refused by a check of RFC 6749 §4.1.3 or PKCE.
    Refused(&'a str),
    /// Found and accepted, but no longer unused, or its account or session ended, at the write.
    Conflict,
}

fn digest_of(value: &str) -> [u8; 32] {
    SecretToken::new(value.to_string()).digest()
}

fn timestamp(seconds: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

/// `acr` of a session: several factors or one (REFEDS profiles).
pub fn acr_of(factors: &[String]) -> &'static str {
    if factors.iter().any(|f| f != "pwd") {
        ACR_MULTI_FACTOR
    } else {
        ACR_SINGLE_FACTOR
    }
}

impl OidcServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn OidcStore>,
        clients: Arc<dyn ClientStore>,
        admin: Arc<dyn AccountAdminStore>,
        sessions: Arc<Sessions>,
        logouts: Arc<dyn LogoutStore>,
        keys: Arc<KeyRing>,
        audit: Arc<Auditor>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        settings: OidcSettings,
    ) -> Self {
        Self {
            cache: std::sync::Mutex::new(None),
            discovery: std::sync::OnceLock::new(),
            jwks: std::sync::Mutex::new(None),
            store,
            clients,
            admin,
            sessions,
            logouts,
            keys,
            audit,
            clock,
            entropy,
            settings,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    pub fn now(&self) -> i64 {
        self.clock.unix_now()
    }

    /// The clients of the configuration and the database, read again after a second.
    pub async fn registry(&self) -> Result<Arc<ClientRegistry>, StorageError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((read_at, registry)) = cache.as_ref()
            && read_at.elapsed() < REGISTRY_CACHE
        {
            return Ok(registry.clone());
        }
        let mut all = self.settings.config_clients.clone();
        all.extend(
            self.clients
                .list_oidc_clients()
                .await?
                .into_iter()
                .filter(|c| c.check(self.settings.allow_http_redirects).is_ok()),
        );
        let registry = Arc::new(ClientRegistry::new(all));
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((Stopwatch::start(), registry.clone()));
        }
        Ok(registry)
    }

    /// Drops the cached registry: the next request reads it again (after this node's own
    /// registrations).
    pub fn forget_registry(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
    }

    pub async fn client(&self, id: &str) -> Result<Option<OidcClient>, StorageError> {
        Ok(self.registry().await?.find(id).cloned())
    }

    /// Checks an authorization request against the registry.
    pub async fn check_request(
        &self,
        params: &Params,
    ) -> Result<Result<AuthorizationRequest, AuthorizeError>, StorageError> {
        Ok(super::check_authorization(params, &*self.registry().await?))
    }

    /// What an authorization request leads to, given the browser's session. `fresh`: the user
    /// signed in during this request (so `prompt=login` and `max_age` are satisfied);
    /// `consented`: the user just allowed the client on the consent page.
    /// Whether a stored authorization request (JSON) requires a second factor: its client is
    /// marked so, or it asks for the MFA profile in `acr_values`.
    pub async fn request_requires_mfa(&self, request: &str) -> Result<bool, StorageError> {
        let Ok(request) = serde_json::from_str::<AuthorizationRequest>(request) else {
            return Ok(false);
        };
        Ok(request.asks_mfa()
            || self
                .client(&request.client_id)
                .await?
                .is_some_and(|c| c.mfa_required))
    }

    pub async fn decide(
        &self,
        request: &AuthorizationRequest,
        session: Option<&Session>,
        fresh: bool,
        consented: bool,
        policy_requires_mfa: bool,
    ) -> Result<Decision, StorageError> {
        let issuer = &self.settings.issuer;
        let Some(client) = self.client(&request.client_id).await? else {
            return Ok(Decision::UnknownClient);
        };
        let error = |code: &'static str, description: &str| {
            Ok(Decision::Redirect(
                ErrorRedirect::new(request, code, description).url(issuer),
            ))
        };
        let Some(session) = session else {
            // OIDC Core §3.1.2.1: with prompt=none the OP must not show a page.
            if request.prompt.none {
                return error("login_required", "the user is not signed in");
            }
            return Ok(Decision::Login {
                reauthenticate: false,
            });
        };
        let now = self.clock.unix_now();
        if !fresh {
            // OIDC Core §3.1.2.1: max_age=0 is prompt=login; an older authentication than
            // max_age must be done again.
            let too_old = request
                .max_age
                .is_some_and(|max| max == 0 || now - session.auth_time > max);
            if request.prompt.login || too_old {
                if request.prompt.none {
                    return error("login_required", "the user must sign in again");
                }
                return Ok(Decision::Login {
                    reauthenticate: true,
                });
            }
        }
        if request.prompt.none
            && let Some(hint) = &request.id_token_hint
        {
            // OIDC Core §3.1.2.1 (id_token_hint): another user's session is not used silently.
            match self.verify_id_token_hint(hint) {
                Some(h) if h.sub == session.account_id => {}
                _ => return error("login_required", "the signed-in user is not the hinted one"),
            }
        }
        // DESIGN.md §5: the client, the request (`acr_values`) or the policy (`mfa.required_for`,
        // `policy_requires_mfa`) may require a second factor.
        if (client.mfa_required || request.asks_mfa() || policy_requires_mfa)
            && !session.has_fresh_mfa(now)
        {
            if request.prompt.none {
                return error("interaction_required", "a second factor is required");
            }
            return Ok(Decision::SecondFactorRequired(client.id));
        }
        if !consented {
            let remembered = if client.first_party {
                true
            } else {
                self.store
                    .find_consent(&session.account_id, &client.id)
                    .await?
                    .is_some_and(|granted| request.scopes.iter().all(|s| granted.contains(s)))
            };
            if !remembered || request.prompt.consent {
                if request.prompt.none {
                    return error("consent_required", "the user has not allowed this client");
                }
                return Ok(Decision::Consent(client));
            }
        }
        let code = self.issue_code(request, session, &client).await?;
        Ok(Decision::Redirect(code_redirect(request, &code, issuer)))
    }

    /// Remembers that a user allowed a client these scopes.
    pub async fn grant_consent(
        &self,
        session: &Session,
        request: &AuthorizationRequest,
    ) -> Result<(), StorageError> {
        self.store
            .record_consent(
                &session.account_id,
                &request.client_id,
                &request.scopes,
                self.clock.unix_now(),
            )
            .await?;
        self.audit
            .record(
                Actor::User,
                AuditAction::OidcConsentGranted,
                Some(session.account_id.clone()),
                json!({"client": request.client_id, "scopes": request.scopes}),
            )
            .await?;
        Ok(())
    }

    /// The access-denied answer of the consent page.
    pub fn denied(&self, request: &AuthorizationRequest) -> String {
        ErrorRedirect::new(request, "access_denied", "the user refused").url(&self.settings.issuer)
    }

    /// Issues a code (single use, 60 s, bound to client, redirect URI and challenge) and notes
    /// the client in the session, for back-channel logout.
    async fn issue_code(
        &self,
        request: &AuthorizationRequest,
        session: &Session,
        client: &OidcClient,
    ) -> Result<String, StorageError> {
        let now = self.clock.unix_now();
        let code = self.entropy.token(32);
        let stored = StoredCode {
            client_id: client.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            account_id: session.account_id.clone(),
            session_id: session.id.clone(),
            scope: request.scope(),
            nonce: request.nonce.clone(),
            code_challenge: request.code_challenge.clone(),
            auth_time: session.auth_time,
            amr: session.factors.clone(),
            acr: acr_of(&session.factors).to_string(),
            expires_at: now + self.settings.code_lifetime.as_secs() as i64,
        };
        self.store
            .insert_code(&digest_of(&code), &stored, now)
            .await?;
        self.sessions
            .record_service(session, "oidc", &client.id)
            .await?;
        if let Some(uri) = &client.backchannel_logout_uri {
            self.logouts
                .record_logout_target(
                    &LogoutTarget {
                        protocol: LogoutProtocol::Oidc,
                        session_id: session.id.clone(),
                        account_id: session.account_id.clone(),
                        service_id: client.id.clone(),
                        url: uri.clone(),
                        name_id: session.account_id.clone(),
                        session_index: format!("oidc:{}", client.id),
                    },
                    now,
                )
                .await?;
        }
        Ok(code)
    }

    /// The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6; OIDC Core §3.1.3, §12).
    pub async fn token(
        &self,
        authorization: Option<&str>,
        form: &Params,
    ) -> Result<Result<Value, OAuthError>, StorageError> {
        let registry = self.registry().await?;
        let client = match ClientCredentials::read(authorization, form)
            .and_then(|c| c.authenticate(&registry).cloned())
        {
            Ok(client) => client,
            Err(error) => return Ok(Err(error)),
        };
        let grant_type = match form_value(form, "grant_type") {
            Ok(Some(g)) => g,
            Ok(None) => {
                return Ok(Err(OAuthError::new(
                    "invalid_request",
                    "grant_type is required",
                )));
            }
            Err(e) => return Ok(Err(e)),
        };
        let grant = match grant_type.parse::<GrantType>() {
            Ok(grant) => grant,
            Err(_) => {
                return Ok(Err(OAuthError::new(
                    "unsupported_grant_type",
                    "supported: authorization_code, refresh_token, client_credentials",
                )));
            }
        };
        if !client.allows(grant) {
            return Ok(Err(OAuthError::new(
                "unauthorized_client",
                format!("this client may not use {}", grant.as_str()),
            )));
        }
        let result = match grant {
            GrantType::AuthorizationCode => self.redeem_code(&client, form).await?,
            GrantType::RefreshToken => self.refresh(&client, form).await?,
            GrantType::ClientCredentials => self.client_credentials(&client, form).await?,
        };
        if let Err(error) = &result {
            self.audit
                .record(
                    Actor::System,
                    AuditAction::OidcTokenRefused,
                    None,
                    json!({"client": client.id, "grant": grant.as_str(), "error": error.error}),
                )
                .await?;
        }
        Ok(result)
    }

    async fn redeem_code(
        &self,
        client: &OidcClient,
        form: &Params,
    ) -> Result<Result<Value, OAuthError>, StorageError> {
        let (code, redirect_uri, verifier) = match (
            form_value(form, "code"),
            form_value(form, "redirect_uri"),
            form_value(form, "code_verifier"),
        ) {
            (Ok(Some(c)), Ok(r), Ok(v)) => (c, r, v),
            (Ok(None), _, _) => {
                return Ok(Err(OAuthError::new("invalid_request", "code is required")));
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(Err(e)),
        };
        let now = self.clock.unix_now();
        let digest = digest_of(code);
        // One read, then one write (ADR 0020): the code is checked as it was read, and spent by
        // the write that stores the grant with its tokens and the audit event.
        let Some(stored) = self.store.find_code(&digest).await? else {
            // Used before (a replay), or unknown.
            return self
                .spend_code(client, &digest, now, Unspent::NotFound)
                .await;
        };
        let refusal = if stored.expires_at <= now {
            Some("the code has expired")
        } else if stored.client_id != client.id {
            Some("the code was issued to another client")
        } else if redirect_uri != Some(stored.redirect_uri.as_str()) {
            // RFC 6749 §4.1.3: the same redirect_uri as the authorization request, exactly.
            Some("redirect_uri differs from the authorization request")
        } else {
            match (&stored.code_challenge, verifier) {
                (Some(challenge), Some(verifier)) if pkce_matches(verifier, challenge) => None,
                (Some(_), _) => Some("the code_verifier does not match the code_challenge"),
                // RFC 9700 §2.1.1 / DESIGN.md §7: a verifier without a challenge is refused
                // (PKCE downgrade).
                (None, Some(_)) => Some("code_verifier sent but no code_challenge was"),
                (None, None) => None,
            }
        };
        if let Some(reason) = refusal {
            // A refused code is spent all the same: it cannot be tried again.
            return self
                .spend_code(client, &digest, now, Unspent::Refused(reason))
                .await;
        }
        let grant = Grant {
            id: self.entropy.hex(16),
            client_id: client.id.clone(),
            account_id: Some(stored.account_id.clone()),
            session_id: Some(stored.session_id.clone()),
            scope: stored.scope.clone(),
            auth_time: Some(stored.auth_time),
            amr: stored.amr.clone(),
            acr: Some(stored.acr.clone()),
            created_at: now,
            expires_at: now + self.settings.refresh_token_lifetime.as_secs() as i64,
        };
        let issued = self.new_tokens(client, &grant, now)?;
        let event = self.audit.event(
            Actor::System,
            AuditAction::OidcTokensIssued,
            Some(stored.account_id.clone()),
            json!({"client": client.id, "grant": "authorization_code"}),
        );
        match self
            .store
            .issue_grant(&grant, &issued.rows, Some(&digest), &event)
            .await
        {
            Ok(()) => {}
            // Since it was read, the code was used (by a concurrent request: this one is its
            // replay), its session ended (logout, reset…) or its account was deactivated: nothing
            // was stored, and the code is spent now, telling which.
            Err(StorageError::Conflict) => {
                return self
                    .spend_code(client, &digest, now, Unspent::Conflict)
                    .await;
            }
            Err(e) => return Err(e),
        }
        // Signed after the commit: the database's write lock is not held for it.
        let id_token =
            self.id_token(client, &grant, stored.nonce.as_deref(), &issued.access, now)?;
        Ok(Ok(issued.response(&grant, Some(id_token))))
    }

    /// Spends a code that gives nothing, and says why: a replay for a code used before
    /// (RFC 6749 §4.1.2: it revokes what the code gave, RFC 9700 §4.14.2); otherwise the
    /// refusal of the checks, or what the account or session no longer allow.
    async fn spend_code(
        &self,
        client: &OidcClient,
        digest: &[u8],
        now: i64,
        why: Unspent<'_>,
    ) -> Result<Result<Value, OAuthError>, StorageError> {
        let invalid = |d: &str| Ok(Err(OAuthError::new("invalid_grant", d)));
        match self.store.take_code(digest, now).await? {
            CodeRedemption::Redeemed { live, .. } => invalid(match why {
                Unspent::Refused(reason) => reason,
                _ if !live => "the account is no longer active, or the session has ended",
                _ => "the code could not be redeemed",
            }),
            CodeRedemption::Replayed { grant_revoked } => {
                self.replay_detected(client, "code", grant_revoked).await?;
                invalid("the code was already used")
            }
            CodeRedemption::Unknown => invalid(match why {
                Unspent::Refused(reason) => reason,
                // Gone with its session since it was read.
                Unspent::Conflict => "the session has ended",
                Unspent::NotFound => "unknown or expired code",
            }),
        }
    }

    /// Audits a code or refresh token presented again (RFC 6749 §4.1.2, RFC 9700 §4.14.2), and
    /// whether what it gave was revoked.
    async fn replay_detected(
        &self,
        client: &OidcClient,
        what: &str,
        revoked: bool,
    ) -> Result<(), StorageError> {
        self.audit
            .record(
                Actor::System,
                AuditAction::OidcReplayDetected,
                None,
                json!({"client": client.id, "what": what, "revoked": revoked}),
            )
            .await
            .map(|_| ())
    }

    async fn refresh(
        &self,
        client: &OidcClient,
        form: &Params,
    ) -> Result<Result<Value, OAuthError>, StorageError> {
        let invalid = |d: &str| Ok(Err(OAuthError::new("invalid_grant", d)));
        let token = match form_value(form, "refresh_token") {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Ok(Err(OAuthError::new(
                    "invalid_request",
                    "refresh_token is required",
                )));
            }
            Err(e) => return Ok(Err(e)),
        };
        let now = self.clock.unix_now();
        let digest = digest_of(token);
        // The grant is read first to make the successors; the rotation below is the atomic,
        // single-use step (a concurrent use of the same token loses there).
        let live = self
            .store
            .find_token(&digest, now)
            .await?
            .filter(|f| f.kind == TokenKind::Refresh && f.grant.client_id == client.id);
        let Some(found) = live else {
            // Spent, unknown or another client's: a spent one revokes its family.
            return match self
                .store
                .rotate_refresh_token(&digest, &client.id, &[], now, None)
                .await?
            {
                RefreshOutcome::Replayed => {
                    self.replay_detected(client, "refresh_token", true).await?;
                    invalid("the refresh token was already used; its family is revoked")
                }
                _ => invalid("unknown, expired or revoked refresh token"),
            };
        };
        let (grant, account) = (found.grant, found.account);
        if let Some(scope) = form_value(form, "scope").ok().flatten() {
            // RFC 6749 §6: never more than the original grant.
            let granted: Vec<&str> = grant.scope.split(' ').collect();
            if !scope.split(' ').all(|s| granted.contains(&s)) {
                return Ok(Err(OAuthError::new(
                    "invalid_scope",
                    "the scope exceeds the original grant",
                )));
            }
        }
        let Some(account_id) = grant.account_id.clone() else {
            return invalid("not a user grant");
        };
        // The account was read with the token.
        if !account.is_some_and(|a| a.account.state == AccountState::Active) {
            return invalid("the account is no longer active");
        }
        let issued = self.new_tokens(client, &grant, now)?;
        // One write: the rotation and the audit event.
        let event = self.audit.event(
            Actor::System,
            AuditAction::OidcTokensIssued,
            Some(account_id),
            json!({"client": client.id, "grant": "refresh_token"}),
        );
        match self
            .store
            .rotate_refresh_token(&digest, &client.id, &issued.rows, now, Some(&event))
            .await?
        {
            RefreshOutcome::Rotated => {}
            _ => return invalid("the refresh token was already used"),
        }
        // OIDC Core §12.2: a new ID token, same auth_time, no nonce.
        let id_token = self.id_token(client, &grant, None, &issued.access, now)?;
        Ok(Ok(issued.response(&grant, Some(id_token))))
    }

    async fn client_credentials(
        &self,
        client: &OidcClient,
        form: &Params,
    ) -> Result<Result<Value, OAuthError>, StorageError> {
        let asked = match form_value(form, "scope") {
            Ok(s) => s.unwrap_or(""),
            Err(e) => return Ok(Err(e)),
        };
        // No user: `openid` and the user scopes mean nothing here.
        let scope: Vec<&str> = asked
            .split(' ')
            .filter(|s| !s.is_empty() && *s != "openid" && client.scopes.iter().any(|c| c == s))
            .collect();
        let now = self.clock.unix_now();
        let grant = Grant {
            id: self.entropy.hex(16),
            client_id: client.id.clone(),
            account_id: None,
            session_id: None,
            scope: scope.join(" "),
            auth_time: None,
            amr: Vec::new(),
            acr: None,
            created_at: now,
            expires_at: now + self.settings.access_token_lifetime.as_secs() as i64,
        };
        let mut issued = self.new_tokens(client, &grant, now)?;
        // RFC 6749 §4.4.3: no refresh token.
        issued.rows.retain(|r| r.kind == TokenKind::Access);
        issued.refresh = None;
        let event = self.audit.event(
            Actor::System,
            AuditAction::OidcTokensIssued,
            None,
            json!({"client": client.id, "grant": "client_credentials"}),
        );
        self.store
            .issue_grant(&grant, &issued.rows, None, &event)
            .await?;
        Ok(Ok(issued.response(&grant, None)))
    }

    /// New access (and, if the client may refresh, refresh) tokens for a grant.
    fn new_tokens(
        &self,
        client: &OidcClient,
        grant: &Grant,
        now: i64,
    ) -> Result<Issued, StorageError> {
        let access_expires = (now + self.settings.access_token_lifetime.as_secs() as i64)
            .min(grant.expires_at.max(now + 1));
        let access = match client.access_token_format {
            AccessTokenFormat::Opaque => self.entropy.token(32),
            AccessTokenFormat::Jwt => self.jwt_access_token(client, grant, now, access_expires)?,
        };
        let refresh = (client.allows(GrantType::RefreshToken) && grant.account_id.is_some())
            .then(|| self.entropy.token(32));
        let mut rows = vec![NewToken {
            digest: digest_of(&access).to_vec(),
            kind: TokenKind::Access,
            expires_at: access_expires,
        }];
        if let Some(refresh) = &refresh {
            rows.push(NewToken {
                digest: digest_of(refresh).to_vec(),
                kind: TokenKind::Refresh,
                expires_at: grant.expires_at,
            });
        }
        Ok(Issued {
            access,
            access_expires_in: access_expires - now,
            refresh,
            rows,
        })
    }

    /// An RFC 9068 access token.
    fn jwt_access_token(
        &self,
        client: &OidcClient,
        grant: &Grant,
        now: i64,
        expires_at: i64,
    ) -> Result<String, StorageError> {
        let key = self.signing_key(client.algorithm())?;
        let mut claims = json!({
            "iss": self.settings.issuer,
            "aud": client.id,
            "client_id": client.id,
            "iat": now,
            "exp": expires_at,
            "jti": self.entropy.hex(16),
            "scope": grant.scope,
        });
        if let Some(sub) = &grant.account_id {
            claims["sub"] = json!(sub);
        }
        if let Some(auth_time) = grant.auth_time {
            claims["auth_time"] = json!(auth_time);
        }
        key.sign_compact("at+jwt", &claims)
            .map_err(|e| StorageError::Other(format!("signing: {e}")))
    }

    fn signing_key(&self, algorithm: SigningAlgorithm) -> Result<SigningKey, StorageError> {
        SigningKey::current(&self.keys.snapshot(), algorithm)
            .ok_or_else(|| StorageError::Other(format!("no current {algorithm} key")))
    }

    /// The ID token (OIDC Core §2, §3.1.3.6), built with `openidconnect`'s types and signed with
    /// the client's algorithm through aws-lc-rs.
    fn id_token(
        &self,
        client: &OidcClient,
        grant: &Grant,
        nonce: Option<&str>,
        access_token: &str,
        now: i64,
    ) -> Result<String, StorageError> {
        let failed = |e: String| StorageError::Other(format!("ID token: {e}"));
        let issuer =
            IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| failed(e.to_string()))?;
        let sub = grant.account_id.clone().unwrap_or_default();
        let mut claims = IdTokenClaims::new(
            issuer,
            vec![Audience::new(client.id.clone())],
            timestamp(now + self.settings.id_token_lifetime.as_secs() as i64),
            timestamp(now),
            StandardClaims::<CoreGenderClaim>::new(SubjectIdentifier::new(sub)),
            SessionClaims {
                sid: grant.session_id.clone(),
            },
        )
        .set_authorized_party(Some(openidconnect::ClientId::new(client.id.clone())))
        .set_auth_time(grant.auth_time.map(timestamp))
        .set_nonce(nonce.map(|n| Nonce::new(n.to_string())))
        .set_auth_context_ref(grant.acr.clone().map(AuthenticationContextClass::new));
        if !grant.amr.is_empty() {
            claims = claims.set_auth_method_refs(Some(
                grant
                    .amr
                    .iter()
                    .cloned()
                    .map(AuthenticationMethodReference::new)
                    .collect(),
            ));
        }
        let algorithm = client.algorithm();
        let key = self.signing_key(algorithm)?;
        let token = SesameIdToken::new(
            claims,
            &key,
            jose::core_alg(algorithm),
            Some(&AccessToken::new(access_token.to_string())),
            None,
        )
        .map_err(|e| failed(e.to_string()))?;
        Ok(token.to_string())
    }

    /// The live grant behind a bearer access token.
    async fn bearer_grant(&self, token: &str) -> Result<Option<FoundToken>, StorageError> {
        let now = self.clock.unix_now();
        Ok(self
            .store
            .find_token(&digest_of(token), now)
            .await?
            .filter(|found| found.kind == TokenKind::Access))
    }

    /// Userinfo (OIDC Core §5.3): the claims of the token's scopes.
    pub async fn userinfo(
        &self,
        token: &str,
    ) -> Result<Result<super::Claims, BearerError>, StorageError> {
        let Some(FoundToken { grant, account, .. }) = self.bearer_grant(token).await? else {
            return Ok(Err(BearerError::InvalidToken));
        };
        if grant.account_id.is_none() {
            return Ok(Err(BearerError::InvalidToken));
        }
        let scopes: Vec<String> = grant.scope.split(' ').map(str::to_string).collect();
        if !scopes.iter().any(|s| s == "openid") {
            return Ok(Err(BearerError::InsufficientScope));
        }
        // The account and its feed records were read with the token.
        let records = match account {
            Some(records) if records.account.state == AccountState::Active => records,
            _ => return Ok(Err(BearerError::InvalidToken)),
        };
        let all = attributes::of_records(
            &records,
            &self.settings.student_domain,
            &self.settings.staff_domain,
        );
        let account = records.account;
        let phone = if scopes.iter().any(|s| s == "phone") {
            self.admin
                .list_recovery_contacts(&account.id)
                .await?
                .into_iter()
                .find(|c| c.kind == "phone" && c.confirmed)
                .map(|c| c.value)
        } else {
            None
        };
        Ok(Ok(claims::for_scopes(
            &scopes,
            &account,
            &all,
            phone.as_deref(),
            "fr",
        )))
    }

    /// Introspection (RFC 7662 §2): confidential clients only; an unknown, expired or revoked
    /// token is just `{"active": false}`.
    pub async fn introspect(
        &self,
        authorization: Option<&str>,
        form: &Params,
    ) -> Result<Result<Value, OAuthError>, StorageError> {
        let registry = self.registry().await?;
        // Any confidential client may introspect (ADR 0015); public clients may not.
        match ClientCredentials::read(authorization, form)
            .and_then(|c| c.authenticate(&registry).cloned())
        {
            Ok(client) if !client.public => {}
            Ok(_) => return Ok(Err(OAuthError::invalid_client(false))),
            Err(e) => return Ok(Err(e)),
        };
        let token = match form_value(form, "token") {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(Err(OAuthError::new("invalid_request", "token is required"))),
            Err(e) => return Ok(Err(e)),
        };
        let now = self.clock.unix_now();
        let Some(found) = self.store.find_token(&digest_of(token), now).await? else {
            return Ok(Ok(json!({"active": false})));
        };
        let grant = &found.grant;
        let mut answer = json!({
            "active": true,
            "scope": grant.scope,
            "client_id": grant.client_id,
            "token_type": if found.kind == TokenKind::Access { "Bearer" } else { "refresh_token" },
            "exp": found.expires_at,
            "iat": found.created_at,
            "iss": self.settings.issuer,
            "aud": grant.client_id,
        });
        if grant.account_id.is_some() {
            // The account was read with the token.
            match &found.account {
                Some(a) if a.account.state == AccountState::Active => {
                    answer["sub"] = json!(a.account.id);
                    answer["username"] = json!(a.account.login);
                }
                _ => return Ok(Ok(json!({"active": false}))),
            }
        }
        if let Some(sid) = &grant.session_id {
            answer["sid"] = json!(sid);
        }
        Ok(Ok(answer))
    }

    /// Revocation (RFC 7009 §2): a token of the client is revoked (a refresh token with its
    /// whole grant); anything else, including an unknown token, is a success too (§2.2).
    pub async fn revoke(
        &self,
        authorization: Option<&str>,
        form: &Params,
    ) -> Result<Result<(), OAuthError>, StorageError> {
        let registry = self.registry().await?;
        let client = match ClientCredentials::read(authorization, form)
            .and_then(|c| c.authenticate(&registry).cloned())
        {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let token = match form_value(form, "token") {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(Err(OAuthError::new("invalid_request", "token is required"))),
            Err(e) => return Ok(Err(e)),
        };
        if self
            .store
            .revoke_token(&digest_of(token), &client.id)
            .await?
        {
            self.audit
                .record(
                    Actor::System,
                    AuditAction::OidcTokenRevoked,
                    None,
                    json!({"client": client.id}),
                )
                .await?;
        }
        Ok(Ok(()))
    }

    /// Verifies an ID token Sésame issued: signature by a published key and issuer; expiry is
    /// tolerated (RP-Initiated Logout 1.0 §2).
    pub fn verify_id_token_hint(&self, token: &str) -> Option<IdTokenHint> {
        let keys = self.keys.snapshot();
        let (header, claims) = jose::verify_compact(token, &keys)?;
        if header
            .get("typ")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "JWT")
        {
            return None;
        }
        if claims.get("iss")?.as_str()? != self.settings.issuer {
            return None;
        }
        let audiences = match claims.get("aud")? {
            Value::String(s) => vec![s.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => return None,
        };
        Some(IdTokenHint {
            sub: claims.get("sub")?.as_str()?.to_string(),
            audiences,
            sid: claims
                .get("sid")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// Where RP-initiated logout may send the browser: the exact registered URI of the hint's
    /// client, with `state` (RP-Initiated Logout 1.0 §3).
    pub async fn post_logout_redirect(
        &self,
        hint: &IdTokenHint,
        client_id: Option<&str>,
        uri: &str,
        state: Option<&str>,
    ) -> Result<Option<String>, StorageError> {
        if client_id.is_some_and(|c| !hint.audiences.iter().any(|a| a == c)) {
            return Ok(None);
        }
        let registry = self.registry().await?;
        let allowed = hint.audiences.iter().any(|aud| {
            registry
                .find(aud)
                .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri))
        });
        if !allowed {
            return Ok(None);
        }
        let mut pairs = Vec::new();
        if let Some(state) = state {
            pairs.push(("state", state));
        }
        Ok(Some(if pairs.is_empty() {
            uri.to_string()
        } else {
            super::append_query(uri, &pairs)
        }))
    }

    /// The discovery document (OIDC Discovery 1.0 §3), with the logout, revocation and
    /// introspection metadata.
    pub fn discovery(&self) -> Arc<str> {
        self.discovery
            .get_or_init(|| {
                super::discovery::document(&self.settings.issuer)
                    .to_string()
                    .into()
            })
            .clone()
    }

    /// The JWK Set, as published now (made again only when the key ring changed).
    pub fn jwks(&self) -> Arc<str> {
        let keys = self.keys.snapshot();
        if let Ok(cache) = self.jwks.lock()
            && let Some((seen, text)) = cache.as_ref()
            && Arc::ptr_eq(seen, &keys)
        {
            return text.clone();
        }
        let text: Arc<str> = jose::jwks(&keys).to_string().into();
        if let Ok(mut cache) = self.jwks.lock() {
            *cache = Some((keys, text.clone()));
        }
        text
    }

    /// Deletes expired codes, tokens and grants.
    pub async fn purge(&self) -> Result<u64, StorageError> {
        self.store.purge_oidc(self.clock.unix_now()).await
    }

    /// Forgets a user's consents (all, or one client's) and revokes what they allowed.
    pub async fn revoke_consents(
        &self,
        actor: Actor,
        account_id: &str,
        client_id: Option<&str>,
    ) -> Result<u64, StorageError> {
        let n = self.store.delete_consents(account_id, client_id).await?;
        self.audit
            .record(
                actor,
                AuditAction::OidcConsentRevoked,
                Some(account_id.to_string()),
                json!({"client": client_id, "count": n}),
            )
            .await?;
        Ok(n)
    }

    pub async fn consents(
        &self,
        account_id: &str,
    ) -> Result<Vec<(String, Vec<String>, i64)>, StorageError> {
        self.store.list_consents(account_id).await
    }
}

#[async_trait::async_trait]
impl LogoutTokens for OidcServer {
    /// A back-channel logout token (Back-Channel Logout 1.0 §2.4): `typ` `logout+jwt`, `iss`,
    /// `aud`, `iat`, `exp`, `jti`, `sub`, `sid`, `events`, and never a `nonce`; signed with the
    /// client's algorithm.
    async fn logout_token(&self, client_id: &str, sub: &str, sid: &str) -> Result<String, String> {
        let algorithm = self
            .client(client_id)
            .await
            .map_err(|e| e.to_string())?
            .map(|c| c.algorithm())
            .unwrap_or(SigningAlgorithm::Rs256);
        let key = SigningKey::current(&self.keys.snapshot(), algorithm)
            .ok_or_else(|| format!("no current {algorithm} key"))?;
        let now = self.clock.unix_now();
        key.sign_compact(
            "logout+jwt",
            &json!({
                "iss": self.settings.issuer,
                "aud": client_id,
                "iat": now,
                "exp": now + LOGOUT_TOKEN_LIFETIME,
                "jti": self.entropy.hex(16),
                "sub": sub,
                "sid": sid,
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            }),
        )
    }
}

/// Tokens made for one response.
struct Issued {
    access: String,
    access_expires_in: i64,
    refresh: Option<String>,
    rows: Vec<NewToken>,
}

impl Issued {
    /// The successful token response (RFC 6749 §5.1; OIDC Core §3.1.3.3).
    fn response(&self, grant: &Grant, id_token: Option<String>) -> Value {
        let mut body = json!({
            "access_token": self.access,
            "token_type": "Bearer",
            "expires_in": self.access_expires_in,
            "scope": grant.scope,
        });
        if let Some(refresh) = &self.refresh {
            body["refresh_token"] = json!(refresh);
        }
        if let Some(id_token) = id_token {
            body["id_token"] = json!(id_token);
        }
        body
    }
}
