//! The interactive login transaction (DESIGN.md §5–6): identifier and password, checked under the
//! lockout rules, then an SSO session. MFA will add its factors here, before the session opens.
//!
//! Security:
//! - No enumeration: an unknown identifier is counted and locked exactly like a real one, costs
//!   one Argon2 verification like a real one (against a dummy hash), and gets the same answers.
//! - The attempt is counted before the password is checked, atomically with the lock test
//!   (`accounts::lockout`), so a burst of concurrent guesses gets no more checks than the policy
//!   allows; a success resets the count.
//! - A new session (and cookie value) at every login; the browser's previous session ends.

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::accounts::identifiers::canonical_login;
use crate::accounts::lockout::{Admission, FailureCounter, LockStatus, Lockout, LockoutPolicy};
use crate::accounts::mfa::lost::{LostFactorFinish, LostFactorStart};
use crate::accounts::mfa::{AMR_HWK, AMR_MFA, AMR_OTP, FactorSummary, Mfa, PasskeyError};
use crate::accounts::password::{PasswordError, PasswordHasher, Verification};
use crate::accounts::recovery::RecoveryStore;
use crate::accounts::{AccountRecord, AccountState, AccountsError, attributes};
use crate::audit::{Actor, AuditAction, Auditor, NewAuditEvent};
use crate::clock::Clock;
use crate::config::Unenrolled;
use crate::locale::Locale;
use crate::mail::outbox::Outbox;
use crate::mail::{EmailAddress, OutgoingMail};
use crate::one_time::{OneTimeValues, SecretToken};
use crate::sessions::{Session, SessionKind, SessionOrigin, Sessions};
use crate::storage::StorageError;

/// Longest password accepted, in bytes (DESIGN.md §4): longer ones are refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest identifier looked at.
const MAX_IDENTIFIER_CHARS: usize = 320;

/// The authentication method reference of a password (RFC 8176 §2).
pub const AMR_PASSWORD: &str = "pwd";

/// The storage port of login.
#[async_trait]
pub trait LoginStore: RecoveryStore + Send + Sync {
    /// Replaces the hash only if it is still `old` (a reset meanwhile wins); whether it did.
    async fn upgrade_password_hash(
        &self,
        account_id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StorageError>;
    /// Notes a successful login (for the helpdesk).
    async fn record_login(
        &self,
        account_id: &str,
        now: i64,
        from: Option<&str>,
    ) -> Result<(), StorageError>;
    /// What a password login reads of the login it names, in one query: the account, its
    /// password hash and its second factors (as `MfaStore::factor_summary` counts them). `None`
    /// for a login that names no account.
    async fn find_login_candidate(
        &self,
        login: &str,
    ) -> Result<Option<LoginCandidate>, StorageError>;
    /// [`Self::find_login_candidate`], then the lockout's count of this attempt
    /// ([`crate::accounts::lockout::LockoutStore::count_attempt`] at `now` under `policy`), at
    /// once (PostgreSQL: one statement). The counter is the candidate account's current login,
    /// or `login` when it names no account: the login's counter key for a canonical login.
    async fn find_candidate_counting(
        &self,
        login: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> Result<CountedCandidate, StorageError>;
    /// The writes of a successful login, in one transaction: the lockout counter
    /// `clear_counter` is forgotten; the session is stored only if its account is still active
    /// at this instant (a disable committed meanwhile wins: `Conflict`, and only the counter is
    /// forgotten); with it, the last login is noted and `event` recorded.
    async fn record_successful_login(
        &self,
        login: &SuccessfulLogin<'_>,
    ) -> Result<(), StorageError>;
}

/// The account a login names, with what checking a password against it needs. Its `Debug`
/// never shows the hash.
#[derive(Clone)]
pub struct LoginCandidate {
    pub account: AccountRecord,
    pub password_hash: Option<String>,
    pub factors: FactorSummary,
}

impl std::fmt::Debug for LoginCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCandidate")
            .field("account", &self.account)
            .field("has_password", &self.password_hash.is_some())
            .field("factors", &self.factors)
            .finish()
    }
}

/// What [`LoginStore::find_candidate_counting`] read and counted.
#[derive(Debug, Clone)]
pub struct CountedCandidate {
    pub candidate: Option<LoginCandidate>,
    /// What counting the attempt returned: `None` when the lock refused it.
    pub counted: Option<FailureCounter>,
}

/// What [`LoginStore::record_successful_login`] writes.
pub struct SuccessfulLogin<'a> {
    pub session: &'a Session,
    /// The SHA-256 of the session's cookie value (never the value).
    pub digest: &'a [u8],
    /// The lockout counter to forget, if the login went through the lockout.
    pub clear_counter: Option<&'a str>,
    /// Where the login came from (the last login's address).
    pub from: Option<&'a str>,
    pub event: &'a NewAuditEvent,
}

/// Builds the "account locked" notice: (locale, to, university, forgot-password link).
pub type LockedMailer =
    Arc<dyn Fn(Locale, &EmailAddress, &str, &Url) -> OutgoingMail + Send + Sync>;

/// What the user submitted. Its `Debug` never shows the password.
pub struct LoginAttempt<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub kind: SessionKind,
    pub origin: SessionOrigin,
    pub locale: Locale,
    /// The browser's current session cookie, ended when the new session opens.
    pub previous_session: Option<SecretToken>,
    /// Where the login continues requires a second factor (an MFA-required service or client,
    /// an OIDC request asking for the MFA profile).
    pub require_mfa: bool,
}

/// A completed login.
#[derive(Debug)]
pub struct SignedIn {
    pub account: AccountRecord,
    pub session: Session,
    /// The session cookie's value: give it to the browser, never store or log it.
    pub cookie: SecretToken,
    /// A second factor is required and the account has none: the user goes to the enrolment
    /// (policy `mfa.unenrolled = "enrol"`) before anything else.
    pub must_enrol: bool,
}

/// The password was right; the account's second factor is asked next. Nothing is open yet: no
/// session, no ticket, no code.
#[derive(Debug)]
pub struct PendingSecondFactor {
    /// The reference of the pending login: the browser keeps it in a cookie, so that the
    /// second step cannot be played from another browser. Never log it.
    pub reference: SecretToken,
    pub factors: FactorSummary,
}

/// How a session that lacks a second factor goes on.
#[derive(Debug)]
pub enum StepUp {
    /// Ask for the account's factor: the pending login's reference (for the browser's cookie).
    Challenge(SecretToken),
    /// The account has none: send it to the enrolment.
    Enrol,
    /// The account has none and the policy refuses.
    Refused,
}

/// What the second step proves.
pub enum Proof<'a> {
    /// A TOTP code or a recovery code (the `code` field).
    Code(&'a str),
    /// A passkey assertion: the ceremony's reference and the browser's answer (JSON).
    Passkey {
        reference: &'a SecretToken,
        response: &'a str,
    },
}

/// The answer to a second step.
#[derive(Debug)]
pub enum SecondFactorOutcome {
    SignedIn(Box<SignedIn>),
    /// Wrong code or refused passkey; the pending login goes on.
    Rejected,
    /// Locked: the pending login is over.
    Locked(LockStatus),
    /// No such pending login (expired, used, or another browser's).
    Expired,
    Disabled,
}

/// What the second-factor page shows about a pending login.
#[derive(Debug)]
pub struct PendingView {
    pub account_id: String,
    pub factors: FactorSummary,
}

/// The MFA rules of the configuration (DESIGN.md §5).
#[derive(Debug, Clone)]
pub struct MfaPolicy {
    /// Affiliations whose every login needs a second factor.
    pub required_for: Vec<String>,
    pub unenrolled: Unenrolled,
    pub student_domain: String,
    pub staff_domain: String,
}

/// A login waiting for its second factor, kept server-side.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingLogin {
    account_id: String,
    counter_key: String,
    kind: String,
    client_ip: Option<String>,
    user_agent: Option<String>,
    /// The factors already passed.
    factors: Vec<String>,
}

const PENDING_PURPOSE: &str = "login.second_factor";
/// How long the second step may wait.
const PENDING_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The session's factors after a second one passed (RFC 8176: `mfa` when several).
fn with_factor(previous: &[String], factor: &str) -> Vec<String> {
    let mut factors: Vec<String> = previous
        .iter()
        .filter(|f| f.as_str() != AMR_MFA)
        .cloned()
        .collect();
    if !factors.iter().any(|f| f == factor) {
        factors.push(factor.to_string());
    }
    factors.push(AMR_MFA.to_string());
    factors
}

impl std::fmt::Debug for LoginAttempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The answer to a login form.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Every required factor passed: a session is open; give the browser `cookie`.
    SignedIn(Box<SignedIn>),
    /// Identifier or password missing.
    Incomplete,
    /// Longer than [`MAX_PASSWORD_BYTES`]: refused without hashing.
    PasswordTooLong,
    /// Wrong identifier or password — the same for an identifier no account has.
    Rejected,
    /// Locked (the same for an identifier no account has); nothing was checked.
    Locked(LockStatus),
    /// The password is right but the account is disabled.
    Disabled,
    /// The password is right; the second factor comes next.
    SecondFactor(Box<PendingSecondFactor>),
    /// A second factor is required, the account has none and the policy refuses.
    EnrolmentRequired,
}

pub struct LoginService {
    store: Arc<dyn LoginStore>,
    lockout: Arc<Lockout>,
    passwords: PasswordHasher,
    sessions: Arc<Sessions>,
    audit: Arc<Auditor>,
    outbox: Arc<Outbox>,
    one_time: Arc<OneTimeValues>,
    clock: Arc<dyn Clock>,
    locked_mail: LockedMailer,
    our_domains: Vec<String>,
    university: String,
    forgot_link: Url,
    mfa: Arc<Mfa>,
    mfa_policy: MfaPolicy,
}

/// How long a login form keeps where the user was going.
const DESTINATION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
const DESTINATION_PURPOSE: &str = "login.destination";

/// Where a login continues, kept on the server while the user signs in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Destination {
    /// A page of this site.
    Path { path: String },
    /// A CAS login (CAS 3.0.3 §2.1): a ticket for this service URL (checked again against the
    /// registry when used), by redirect or by an auto-submitted POST (`method=POST`). With
    /// `renew`, only a login with credentials may continue it, never an existing session.
    Cas {
        service: String,
        post: bool,
        #[serde(default)]
        renew: bool,
    },
    /// An OpenID Connect authorization request (the checked request, as JSON: this room does
    /// not read it). With `reauthenticate` (`prompt=login`, `max_age`), only a login with
    /// credentials may continue it; `authenticated` marks a request whose login requirement was
    /// met earlier in the same flow (before its consent page).
    Oidc {
        request: String,
        #[serde(default)]
        reauthenticate: bool,
        #[serde(default)]
        authenticated: bool,
    },
}

impl Destination {
    /// Whether an existing session may not continue this destination: the user must type
    /// credentials (CAS `renew`, OIDC `prompt=login` / `max_age`).
    pub fn requires_credentials(&self) -> bool {
        matches!(
            self,
            Destination::Cas { renew: true, .. }
                | Destination::Oidc {
                    reauthenticate: true,
                    ..
                }
        )
    }
}

/// Whether `path` may be where a login continues: a path on this site only (`/…`, never
/// `//host` or `/\host`, which browsers read as another site), printable, reasonably short.
/// Anything else is ignored rather than followed: no open redirect.
pub fn is_local_destination(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 2048
        && path.bytes().all(|b| b.is_ascii_graphic())
}

/// The identifier a lockout counter is kept under: the account's current login when an account
/// answers (so its aliases and full address share one counter), otherwise the canonical form of
/// what was typed (NFKC, trimmed, lower-case, our domain removed).
fn counter_key(typed: &str, canonical: Option<&str>, account: Option<&AccountRecord>) -> String {
    match (account, canonical) {
        (Some(account), _) => account.login.clone(),
        (None, Some(login)) => login.to_string(),
        (None, None) => {
            use unicode_normalization::UnicodeNormalization as _;
            let folded: String = typed.nfkc().collect::<String>().trim().to_lowercase();
            folded.chars().take(MAX_IDENTIFIER_CHARS).collect()
        }
    }
}

impl LoginService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn LoginStore>,
        lockout: Arc<Lockout>,
        passwords: PasswordHasher,
        sessions: Arc<Sessions>,
        audit: Arc<Auditor>,
        outbox: Arc<Outbox>,
        one_time: Arc<OneTimeValues>,
        clock: Arc<dyn Clock>,
        locked_mail: LockedMailer,
        our_domains: Vec<String>,
        university: String,
        forgot_link: Url,
        mfa: Arc<Mfa>,
        mfa_policy: MfaPolicy,
    ) -> Self {
        Self {
            mfa,
            mfa_policy,
            store,
            lockout,
            passwords,
            sessions,
            audit,
            outbox,
            one_time,
            clock,
            locked_mail,
            our_domains,
            university,
            forgot_link,
        }
    }

    /// Keeps where the user was going on the server (the form carries only a random reference),
    /// so the redirect after login can only go where Sésame itself sent the user. `None` for a
    /// destination that is not a local path.
    pub async fn remember_destination(
        &self,
        destination: &Destination,
    ) -> Result<Option<SecretToken>, StorageError> {
        if let Destination::Path { path } = destination
            && !is_local_destination(path)
        {
            return Ok(None);
        }
        let payload = serde_json::to_string(destination)
            .map_err(|e| StorageError::Corrupt(format!("destination: {e}")))?;
        self.one_time
            .issue(DESTINATION_PURPOSE, &payload, DESTINATION_LIFETIME)
            .await
            .map(Some)
    }

    /// Where a successful login continues (used once).
    pub async fn take_destination(
        &self,
        reference: &SecretToken,
    ) -> Result<Option<Destination>, StorageError> {
        Ok(self
            .one_time
            .redeem(DESTINATION_PURPOSE, reference)
            .await?
            .and_then(|payload| serde_json::from_str::<Destination>(&payload).ok())
            .filter(|destination| match destination {
                Destination::Path { path } => is_local_destination(path),
                Destination::Cas { .. } | Destination::Oidc { .. } => true,
            }))
    }

    /// Where a login form will continue, without using the reference up.
    pub async fn peek_destination(
        &self,
        reference: &SecretToken,
    ) -> Result<Option<Destination>, StorageError> {
        Ok(self
            .one_time
            .peek(DESTINATION_PURPOSE, reference)
            .await?
            .and_then(|payload| serde_json::from_str::<Destination>(&payload).ok()))
    }

    /// The current login of an account (for the "signed in as" page).
    pub async fn login_of(&self, account_id: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .store
            .find_account_by_id(account_id)
            .await?
            .map(|a| a.login))
    }

    /// The injected clock's time (to say how long a lock lasts).
    pub fn now(&self) -> i64 {
        self.clock.unix_now()
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    pub fn lockout(&self) -> &Arc<Lockout> {
        &self.lockout
    }

    /// Checks an identifier and password and, when right, opens the session.
    pub async fn password_login(
        &self,
        attempt: LoginAttempt<'_>,
    ) -> Result<LoginOutcome, AccountsError> {
        if attempt.username.trim().is_empty() || attempt.password.is_empty() {
            return Ok(LoginOutcome::Incomplete);
        }
        if attempt.password.len() > MAX_PASSWORD_BYTES {
            return Ok(LoginOutcome::PasswordTooLong);
        }
        let typed: String = attempt
            .username
            .chars()
            .take(MAX_IDENTIFIER_CHARS)
            .collect();
        let canonical = canonical_login(&typed, &self.our_domains);
        // One statement for a canonical login: the account, its hash and its factors read, and
        // the attempt counted (its key is the account's login, or the canonical login).
        let now = self.clock.unix_now();
        let (candidate, counted) = match &canonical {
            Some(login) => {
                let read = self
                    .store
                    .find_candidate_counting(login.as_str(), now, self.lockout.policy())
                    .await?;
                (read.candidate, Some(read.counted))
            }
            None => (None, None),
        };
        let (account, stored, factors) = match candidate {
            Some(candidate) => {
                let stored = match candidate.account.state {
                    AccountState::Pending => None,
                    _ => candidate.password_hash,
                };
                (Some(candidate.account), stored, candidate.factors)
            }
            None => (None, None, FactorSummary::default()),
        };
        let key = counter_key(
            &typed,
            canonical.as_ref().map(|l| l.as_str()),
            account.as_ref(),
        );
        let subject = account.as_ref().map(|a| a.id.clone());
        let admission = match counted {
            Some(counted) => self.lockout.admission(&key, counted, now).await?,
            None => self.lockout.attempt(&key, account.is_some()).await?,
        };
        let outcome = match admission {
            Admission::Refused(status) => {
                self.failed(subject, "locked").await?;
                return Ok(LoginOutcome::Locked(status));
            }
            Admission::Admitted(outcome) => outcome,
        };

        let verification = match &stored {
            Some(hash) => self.passwords.verify(attempt.password, hash).await,
            None => self.passwords.verify_dummy(attempt.password).await,
        };
        let verification = match verification {
            Ok(v) => v,
            Err(error) => {
                // Not checked after all (the hashing queue is full): give the attempt back.
                self.lockout.refund(&key).await?;
                return Err(error.into());
            }
        };
        match (verification, account, stored) {
            (Verification::Match { needs_rehash }, Some(account), Some(hash)) => {
                if account.state == AccountState::Disabled {
                    self.failed(Some(account.id.clone()), "disabled").await?;
                    return Ok(LoginOutcome::Disabled);
                }
                if needs_rehash {
                    self.rehash(&account, &hash, attempt.password).await;
                }
                let required = attempt.require_mfa || self.required_by_policy(&account).await?;
                if factors.any() {
                    // The lockout counter is reset only when every factor passed: wrong second
                    // factors count like wrong passwords (DESIGN.md §6).
                    let reference = self
                        .begin_pending(
                            &account.id,
                            &key,
                            attempt.kind,
                            &attempt.origin,
                            &[AMR_PASSWORD],
                        )
                        .await?;
                    return Ok(LoginOutcome::SecondFactor(Box::new(PendingSecondFactor {
                        reference,
                        factors,
                    })));
                }
                if required && self.mfa_policy.unenrolled == Unenrolled::Refuse {
                    self.lockout.record_success(&key).await?;
                    self.failed(Some(account.id.clone()), "no_second_factor")
                        .await?;
                    return Ok(LoginOutcome::EnrolmentRequired);
                }
                let id = account.id.clone();
                // The counter is reset with the session's own writes.
                let opened = self
                    .signed_in(
                        account,
                        &[AMR_PASSWORD],
                        attempt.kind,
                        attempt.origin,
                        attempt.previous_session.as_ref(),
                        Some(&key),
                    )
                    .await;
                let opened = opened.map(|outcome| match outcome {
                    LoginOutcome::SignedIn(mut signed_in) => {
                        signed_in.must_enrol = required;
                        LoginOutcome::SignedIn(signed_in)
                    }
                    other => other,
                });
                match opened {
                    // Disabled while the password was being checked.
                    Err(AccountsError::Storage(StorageError::Conflict)) => {
                        self.failed(Some(id), "disabled").await?;
                        Ok(LoginOutcome::Disabled)
                    }
                    other => other,
                }
            }
            (_, account, stored) => {
                let reason = match (&account, &stored) {
                    (None, _) => "unknown_identifier",
                    (Some(_), None) => "not_activated",
                    (Some(_), Some(_)) => "wrong_password",
                };
                self.failed(subject.clone(), reason).await?;
                if outcome.newly_hard_locked {
                    self.audit
                        .record(
                            Actor::System,
                            AuditAction::AccountHardLocked,
                            subject.clone(),
                            serde_json::json!({"failures": outcome.failures}),
                        )
                        .await?;
                    if let Some(account) = &account {
                        self.notify_hard_lock(account, attempt.locale).await?;
                    }
                }
                Ok(match outcome.status {
                    LockStatus::Open => LoginOutcome::Rejected,
                    locked => LoginOutcome::Locked(locked),
                })
            }
        }
    }

    /// Opens the session of a completed login (resetting the lockout counter `clear_counter`),
    /// notes the login and audits it.
    async fn signed_in(
        &self,
        account: AccountRecord,
        factors: &[&str],
        kind: SessionKind,
        origin: SessionOrigin,
        previous_session: Option<&SecretToken>,
        clear_counter: Option<&str>,
    ) -> Result<LoginOutcome, AccountsError> {
        let from = origin.client_ip.clone();
        let details = |session: &Session| {
            serde_json::json!({
                "factors": session.factors,
                "session": session.id,
                "kind": session.kind.as_str(),
            })
        };
        let (cookie, session) = match previous_session {
            // Never the old cookie value (no fixation); the same person keeps the session's
            // applications (a CAS renew or a step-up must not log them out).
            Some(previous) => {
                if let Some(key) = clear_counter {
                    self.lockout.record_success(key).await?;
                }
                let (cookie, session) = self
                    .sessions
                    .reopen(previous, &account.id, factors, kind, origin)
                    .await?;
                self.store
                    .record_login(&account.id, self.clock.unix_now(), from.as_deref())
                    .await?;
                self.audit
                    .record(
                        Actor::User,
                        AuditAction::LoginSucceeded,
                        Some(account.id.clone()),
                        details(&session),
                    )
                    .await?;
                (cookie, session)
            }
            // The common case: every write of the login in one transaction (one commit).
            None => {
                let (cookie, session) = self.sessions.prepare(&account.id, factors, kind, origin);
                let event = self.audit.event(
                    Actor::User,
                    AuditAction::LoginSucceeded,
                    Some(account.id.clone()),
                    details(&session),
                );
                self.store
                    .record_successful_login(&SuccessfulLogin {
                        session: &session,
                        digest: &cookie.digest(),
                        clear_counter,
                        from: from.as_deref(),
                        event: &event,
                    })
                    .await?;
                (cookie, session)
            }
        };
        Ok(LoginOutcome::SignedIn(Box::new(SignedIn {
            account,
            session,
            cookie,
            must_enrol: false,
        })))
    }

    /// Whether the configuration requires a second factor of this account (`mfa.required_for`).
    async fn required_by_policy(&self, account: &AccountRecord) -> Result<bool, StorageError> {
        if self.mfa_policy.required_for.is_empty() {
            return Ok(false);
        }
        let all = attributes::of_account(
            self.store.as_ref(),
            account,
            &self.mfa_policy.student_domain,
            &self.mfa_policy.staff_domain,
        )
        .await?;
        Ok(all.get("eduPersonAffiliation").is_some_and(|values| {
            values
                .iter()
                .any(|v| self.mfa_policy.required_for.iter().any(|r| r == v))
        }))
    }

    /// Whether `mfa.required_for` covers this account: then every application needs a second
    /// factor from its sessions, not only those marked so.
    pub async fn policy_requires_mfa(&self, account_id: &str) -> Result<bool, StorageError> {
        if self.mfa_policy.required_for.is_empty() {
            return Ok(false);
        }
        match self.store.find_account_by_id(account_id).await? {
            Some(account) => self.required_by_policy(&account).await,
            None => Ok(false),
        }
    }

    pub fn mfa(&self) -> &Arc<Mfa> {
        &self.mfa
    }

    async fn begin_pending(
        &self,
        account_id: &str,
        counter_key: &str,
        kind: SessionKind,
        origin: &SessionOrigin,
        factors: &[&str],
    ) -> Result<SecretToken, StorageError> {
        let payload = serde_json::to_string(&PendingLogin {
            account_id: account_id.to_string(),
            counter_key: counter_key.to_string(),
            kind: kind.as_str().to_string(),
            client_ip: origin.client_ip.clone(),
            user_agent: origin.user_agent.clone(),
            factors: factors.iter().map(|f| f.to_string()).collect(),
        })
        .map_err(|e| StorageError::Corrupt(format!("pending login: {e}")))?;
        self.one_time
            .issue(PENDING_PURPOSE, &payload, PENDING_LIFETIME)
            .await
    }

    async fn pending(&self, reference: &SecretToken) -> Result<Option<PendingLogin>, StorageError> {
        Ok(self
            .one_time
            .peek(PENDING_PURPOSE, reference)
            .await?
            .and_then(|p| serde_json::from_str(&p).ok()))
    }

    /// What the second-factor page needs to know of a pending login.
    pub async fn pending_view(
        &self,
        reference: &SecretToken,
    ) -> Result<Option<PendingView>, StorageError> {
        let Some(pending) = self.pending(reference).await? else {
            return Ok(None);
        };
        let factors = self.mfa.summary(&pending.account_id).await?;
        Ok(Some(PendingView {
            account_id: pending.account_id,
            factors,
        }))
    }

    /// A live session lacks the second factor its destination requires (step-up, DESIGN.md §5).
    pub async fn begin_step_up(&self, session: &Session) -> Result<StepUp, AccountsError> {
        let factors = self.mfa.summary(&session.account_id).await?;
        if !factors.any() {
            return Ok(match self.mfa_policy.unenrolled {
                Unenrolled::Enrol => StepUp::Enrol,
                Unenrolled::Refuse => StepUp::Refused,
            });
        }
        let login = self
            .login_of(&session.account_id)
            .await?
            .unwrap_or_default();
        let factors: Vec<&str> = session.factors.iter().map(String::as_str).collect();
        let reference = self
            .begin_pending(
                &session.account_id,
                &login,
                session.kind,
                &SessionOrigin {
                    client_ip: session.client_ip.clone(),
                    user_agent: session.user_agent.clone(),
                },
                &factors,
            )
            .await?;
        Ok(StepUp::Challenge(reference))
    }

    /// The second step of a login (or of a step-up): a TOTP code, a recovery code or a passkey,
    /// under the lockout rules. Only when it passes does a session open (or the browser's
    /// session get the factor, with a new cookie value).
    pub async fn second_factor(
        &self,
        reference: &SecretToken,
        proof: Proof<'_>,
        locale: Locale,
        previous_session: Option<SecretToken>,
    ) -> Result<SecondFactorOutcome, AccountsError> {
        let Some(pending) = self.pending(reference).await? else {
            return Ok(SecondFactorOutcome::Expired);
        };
        let account_id = pending.account_id.clone();
        let outcome = match self.lockout.attempt(&pending.counter_key, true).await? {
            Admission::Refused(status) => {
                self.one_time.redeem(PENDING_PURPOSE, reference).await?;
                self.failed_factor(Some(account_id.clone()), "second", "locked")
                    .await?;
                return Ok(SecondFactorOutcome::Locked(status));
            }
            Admission::Admitted(outcome) => outcome,
        };
        let passed = match proof {
            Proof::Code(code) => {
                if crate::accounts::mfa::totp_digits(code).is_some() {
                    self.mfa
                        .verify_totp(&account_id, code)
                        .await?
                        .then_some(("totp", AMR_OTP))
                } else {
                    self.mfa
                        .use_recovery_code(&account_id, code, locale)
                        .await?
                        .then_some(("recovery_code", AMR_OTP))
                }
            }
            Proof::Passkey {
                reference,
                response,
            } => match self
                .mfa
                .finish_passkey_authentication(reference, response, Some(&account_id), locale)
                .await
            {
                Ok(_) => Some(("passkey", AMR_HWK)),
                Err(PasskeyError::Storage(error)) => return Err(error.into()),
                Err(error) => {
                    tracing::info!(%error, "passkey refused as a second factor");
                    None
                }
            },
        };
        let Some((method, amr)) = passed else {
            self.failed_factor(Some(account_id.clone()), "second", "wrong_second_factor")
                .await?;
            if outcome.newly_hard_locked {
                self.audit
                    .record(
                        Actor::System,
                        AuditAction::AccountHardLocked,
                        Some(account_id.clone()),
                        serde_json::json!({"failures": outcome.failures}),
                    )
                    .await?;
                if let Some(account) = self.store.find_account_by_id(&account_id).await? {
                    self.notify_hard_lock(&account, locale).await?;
                }
            }
            return Ok(match outcome.status {
                LockStatus::Open => SecondFactorOutcome::Rejected,
                locked => {
                    self.one_time.redeem(PENDING_PURPOSE, reference).await?;
                    SecondFactorOutcome::Locked(locked)
                }
            });
        };
        // Single use of the pending login (a second tab with the same cookie gets nothing).
        if self
            .one_time
            .redeem(PENDING_PURPOSE, reference)
            .await?
            .is_none()
        {
            return Ok(SecondFactorOutcome::Expired);
        }
        self.lockout.record_success(&pending.counter_key).await?;
        let Some(account) = self.store.find_account_by_id(&account_id).await? else {
            return Ok(SecondFactorOutcome::Expired);
        };
        if account.state != AccountState::Active {
            self.failed_factor(Some(account_id.clone()), "second", "disabled")
                .await?;
            return Ok(SecondFactorOutcome::Disabled);
        }
        let factors = with_factor(&pending.factors, amr);
        let factors: Vec<&str> = factors.iter().map(String::as_str).collect();
        let kind = pending.kind.parse().unwrap_or(SessionKind::Standard);
        let origin = SessionOrigin {
            client_ip: pending.client_ip,
            user_agent: pending.user_agent,
        };
        tracing::debug!(method, "second factor passed");
        Ok(
            match self
                .signed_in(
                    account,
                    &factors,
                    kind,
                    origin,
                    previous_session.as_ref(),
                    None,
                )
                .await
            {
                Ok(LoginOutcome::SignedIn(signed_in)) => SecondFactorOutcome::SignedIn(signed_in),
                Ok(_) | Err(AccountsError::Storage(StorageError::Conflict)) => {
                    SecondFactorOutcome::Disabled
                }
                Err(error) => return Err(error),
            },
        )
    }

    /// "I lost every second factor", from the second step (so after the right password): the
    /// e-mail link and the SMS code go out (`accounts::mfa::lost`). `None` without a pending
    /// login.
    pub async fn lost_factors(
        &self,
        reference: &SecretToken,
        locale: Locale,
    ) -> Result<Option<LostFactorStart>, AccountsError> {
        let Some(pending) = self.pending(reference).await? else {
            return Ok(None);
        };
        Ok(Some(
            self.mfa
                .start_lost_factor_recovery(&pending.account_id, locale)
                .await?,
        ))
    }

    /// The SMS code with the e-mailed link, under the lockout rules (a guess counts like a
    /// wrong password).
    pub async fn recover_lost_factors(
        &self,
        token: &SecretToken,
        code: &str,
    ) -> Result<LostFactorFinish, AccountsError> {
        let Some(account_id) = self.mfa.lost_factor_account(token).await? else {
            return Ok(LostFactorFinish::Void);
        };
        let Some(account) = self.store.find_account_by_id(&account_id).await? else {
            return Ok(LostFactorFinish::Void);
        };
        if let Admission::Refused(_) = self.lockout.attempt(&account.login, true).await? {
            return Ok(LostFactorFinish::Void);
        }
        let outcome = self.mfa.finish_lost_factor_recovery(token, code).await?;
        match outcome {
            LostFactorFinish::Done => self.lockout.record_success(&account.login).await?,
            LostFactorFinish::Wrong => {
                self.failed_factor(Some(account.id), "sms_code", "wrong_code")
                    .await?
            }
            LostFactorFinish::Void => self.lockout.refund(&account.login).await?,
        }
        Ok(outcome)
    }

    /// A passwordless login with a discoverable passkey (user verification required: a
    /// multi-factor authentication by itself). A password lock does not block it (DESIGN.md §6):
    /// the passkey is not guessable.
    pub async fn passkey_login(
        &self,
        reference: &SecretToken,
        response: &str,
        kind: SessionKind,
        origin: SessionOrigin,
        locale: Locale,
        previous_session: Option<SecretToken>,
    ) -> Result<LoginOutcome, AccountsError> {
        let account_id = match self
            .mfa
            .finish_passkey_authentication(reference, response, None, locale)
            .await
        {
            Ok(account_id) => account_id,
            Err(PasskeyError::Storage(error)) => return Err(error.into()),
            Err(error) => {
                tracing::info!(%error, "passkey login refused");
                self.failed(None, "passkey_refused").await?;
                return Ok(LoginOutcome::Rejected);
            }
        };
        let Some(account) = self.store.find_account_by_id(&account_id).await? else {
            return Ok(LoginOutcome::Rejected);
        };
        if account.state != AccountState::Active {
            self.failed(Some(account_id), "disabled").await?;
            return Ok(LoginOutcome::Disabled);
        }
        match self
            .signed_in(
                account,
                &[AMR_HWK, AMR_MFA],
                kind,
                origin,
                previous_session.as_ref(),
                None,
            )
            .await
        {
            Err(AccountsError::Storage(StorageError::Conflict)) => Ok(LoginOutcome::Disabled),
            other => other,
        }
    }

    /// Gives the browser's session a factor just proved in it (a TOTP confirmed at the
    /// enrolment a policy sent the user to): a new cookie value, the factors, a fresh
    /// `auth_time`.
    pub async fn add_factor_to_session(
        &self,
        cookie: &SecretToken,
        session: &Session,
        factor: &str,
    ) -> Result<(SecretToken, Session), StorageError> {
        self.rekey(cookie, session, &with_factor(&session.factors, factor))
            .await
    }

    /// Checks the password of a signed-in person (re-authentication, password change) under the
    /// lockout rules, like a login: counted first, audited when wrong, the contacts mailed at a
    /// hard lock. Whether it was right.
    pub async fn check_password(
        &self,
        account: &AccountRecord,
        password: &str,
    ) -> Result<bool, AccountsError> {
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let key = account.login.clone();
        let outcome = match self.lockout.attempt(&key, true).await? {
            Admission::Refused(_) => return Ok(false),
            Admission::Admitted(outcome) => outcome,
        };
        let verification = match self.store.find_password_hash(&account.id).await? {
            Some(hash) => self.passwords.verify(password, &hash).await,
            None => self.passwords.verify_dummy(password).await,
        };
        let verification = match verification {
            Ok(v) => v,
            Err(error) => {
                self.lockout.refund(&key).await?;
                return Err(error.into());
            }
        };
        if !matches!(verification, Verification::Match { .. }) {
            self.failed(Some(account.id.clone()), "wrong_password")
                .await?;
            if outcome.newly_hard_locked {
                self.notify_hard_lock(account, Locale::Fr).await?;
            }
            return Ok(false);
        }
        self.lockout.record_success(&key).await?;
        Ok(true)
    }

    /// Re-authentication before a sensitive change (DESIGN.md §5): the password again (see
    /// [`LoginService::check_password`]); the session keeps its factors and gets a fresh
    /// `auth_time` and a new cookie value. `None` when the password was wrong or locked.
    pub async fn reauthenticate(
        &self,
        cookie: &SecretToken,
        session: &Session,
        password: &str,
    ) -> Result<Option<(SecretToken, Session)>, AccountsError> {
        let Some(account) = self.store.find_account_by_id(&session.account_id).await? else {
            return Ok(None);
        };
        if !self.check_password(&account, password).await? {
            return Ok(None);
        }
        Ok(Some(self.rekey(cookie, session, &session.factors).await?))
    }

    /// A new cookie value and a fresh authentication for the browser's session, with `factors`.
    async fn rekey(
        &self,
        cookie: &SecretToken,
        session: &Session,
        factors: &[String],
    ) -> Result<(SecretToken, Session), StorageError> {
        let factors: Vec<&str> = factors.iter().map(String::as_str).collect();
        self.sessions
            .reopen(
                cookie,
                &session.account_id,
                &factors,
                session.kind,
                SessionOrigin {
                    client_ip: session.client_ip.clone(),
                    user_agent: session.user_agent.clone(),
                },
            )
            .await
    }

    async fn failed(&self, subject: Option<String>, reason: &str) -> Result<(), StorageError> {
        self.failed_factor(subject, AMR_PASSWORD, reason).await
    }

    /// Audits a failed login step: which factor (`pwd`, `second`) and why.
    async fn failed_factor(
        &self,
        subject: Option<String>,
        factor: &str,
        reason: &str,
    ) -> Result<(), StorageError> {
        self.audit
            .record(
                Actor::User,
                AuditAction::LoginFailed,
                subject,
                serde_json::json!({"factor": factor, "reason": reason}),
            )
            .await
            .map(|_| ())
    }

    /// Upgrades a hash made with older parameters (DESIGN.md §4). A failure here costs the user
    /// nothing: the login already succeeded, the next one tries again.
    async fn rehash(&self, account: &AccountRecord, old: &str, password: &str) {
        let result: Result<bool, AccountsError> = async {
            let new = self.passwords.hash(password).await?;
            Ok(self
                .store
                .upgrade_password_hash(&account.id, old, &new)
                .await?)
        }
        .await;
        match result {
            Ok(true) => {
                if let Err(error) = self
                    .audit
                    .record(
                        Actor::System,
                        AuditAction::PasswordRehashed,
                        Some(account.id.clone()),
                        serde_json::json!({}),
                    )
                    .await
                {
                    tracing::warn!(%error, "cannot audit a password rehash");
                }
            }
            Ok(false) => {}
            Err(AccountsError::Password(PasswordError::Busy)) => {
                tracing::info!("password rehash skipped: hashing is busy");
            }
            Err(error) => tracing::warn!(%error, "password rehash failed"),
        }
    }

    /// Mails the recovery addresses of a hard-locked account (DESIGN.md §6).
    async fn notify_hard_lock(
        &self,
        account: &AccountRecord,
        locale: Locale,
    ) -> Result<(), StorageError> {
        for address in self.store.confirmed_emails(&account.id).await? {
            if let Ok(to) = EmailAddress::parse(&address) {
                self.outbox
                    .queue(&(self.locked_mail)(
                        locale,
                        &to,
                        &self.university,
                        &self.forgot_link,
                    ))
                    .await?;
            }
        }
        Ok(())
    }

    /// The live session of a cookie value.
    pub async fn session(&self, cookie: &SecretToken) -> Result<Option<Session>, StorageError> {
        self.sessions.current(cookie).await
    }

    /// Records the activity of a session read elsewhere (a CAS ticket issued from its cookie).
    pub async fn note_session_activity(&self, session: Session) -> Result<Session, StorageError> {
        self.sessions.note_activity(session).await
    }

    /// Whether the configuration requires a second factor of some accounts (`mfa.required_for`):
    /// then whether a session may log into an application depends on its account.
    pub fn mfa_required_by_policy(&self) -> bool {
        !self.mfa_policy.required_for.is_empty()
    }

    /// Logout: ends the session of a cookie value.
    pub async fn logout(&self, cookie: &SecretToken) -> Result<bool, StorageError> {
        match self.sessions.end(cookie).await? {
            Some(session) => {
                self.audit
                    .record(
                        Actor::User,
                        AuditAction::SessionEnded,
                        Some(session.account_id.clone()),
                        serde_json::json!({"session": session.id}),
                    )
                    .await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_destinations() {
        assert!(is_local_destination("/account"));
        assert!(is_local_destination(
            "/cas/login?service=https%3A%2F%2Fmoodle"
        ));
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "",
            "/a b",
            "/\r\nSet-Cookie:x",
        ] {
            assert!(!is_local_destination(bad), "{bad:?}");
        }
    }

    #[test]
    fn counters_are_kept_under_the_login_or_the_canonical_text() {
        let account = AccountRecord {
            id: "acc".into(),
            login: "marie.martin".into(),
            state: AccountState::Active,
            first_name: "Marie".into(),
            last_name: "Martin".into(),
            birth_date: "2000-01-01".into(),
            person_key: "k".into(),
        };
        assert_eq!(
            counter_key("Marie.Martin2", Some("marie.martin2"), Some(&account)),
            "marie.martin",
            "an alias counts on the account's login"
        );
        assert_eq!(
            counter_key(" Nobody.Here ", Some("nobody.here"), None),
            "nobody.here"
        );
        assert_eq!(
            counter_key(" ＡＢＣ@Example.ORG ", None, None),
            "abc@example.org"
        );
        assert_eq!(counter_key(&"x".repeat(1000), None, None).len(), 320);
    }
}
