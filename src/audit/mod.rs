//! The audit trail: typed events stored as durable records (who, what, when, where), not log
//! lines. Every admin action and every security-relevant event of the other rooms is recorded
//! here through [`Auditor::record`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::clock::{Clock, from_unix};
use crate::storage::StorageError;

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Sésame itself (start-up, jobs).
    System,
    /// The person at the browser (logins, activation, resets).
    User,
    /// An operator at the `sesame` command line (the OS user name).
    Operator(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::System => f.write_str("system"),
            Actor::User => f.write_str("user"),
            Actor::Operator(name) => write!(f, "operator:{name}"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "system" => Ok(Actor::System),
            None if s == "user" => Ok(Actor::User),
            Some(("operator", name)) => Ok(Actor::Operator(name.to_string())),
            _ => Err(format!("unknown audit actor `{s}`")),
        }
    }
}

macro_rules! audit_actions {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal ),* $(,)?) => {
        /// What happened. The stored name is stable: reports and SIEM rules depend on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction { $( $(#[doc = $doc])* $variant, )* }

        impl AuditAction {
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $( AuditAction::$variant => $name, )* }
            }
        }

        impl FromStr for AuditAction {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $name => Ok(AuditAction::$variant), )*
                    other => Err(format!("unknown audit action `{other}`")),
                }
            }
        }
    };
}

audit_actions! {
    /// The master key file was created (first start).
    MasterKeyCreated = "keys.master_key_created",
    /// A signing key was generated.
    SigningKeyGenerated = "keys.signing_key_generated",
    /// An operator asked for a rotation: a `next` key is published.
    SigningKeyRotationStarted = "keys.rotation_started",
    /// A `next` key became current (the previous current one retired).
    SigningKeyPromoted = "keys.signing_key_promoted",
    /// A retired key was removed from the JWKS and the database.
    SigningKeyDeleted = "keys.signing_key_deleted",
    /// An account was activated (password set, contacts recorded).
    AccountActivated = "accounts.activated",
    /// A dossier number reached the failure limit of activation.
    ActivationLocked = "accounts.activation_locked",
    /// An operator lifted the activation lock of a dossier number.
    ActivationUnlocked = "accounts.activation_unlocked",
    /// An operator printed a staff activation code.
    StaffActivationCodeIssued = "accounts.staff_activation_code_issued",
    /// A password reset link was queued to the recovery addresses.
    PasswordResetRequested = "accounts.password_reset_requested",
    /// A signed-in person replaced a recovery contact at `/account` (details: kind).
    RecoveryContactChanged = "accounts.recovery_contact_changed",
    /// A signed-in person changed their password at `/account`.
    PasswordChanged = "accounts.password_changed",
    /// A password was set from a reset link.
    PasswordReset = "accounts.password_reset",
    /// A registrar or HR feed was imported.
    FeedImported = "accounts.feed_imported",
    /// The database schema was migrated by an operator.
    SchemaMigrated = "store.schema_migrated",
    /// A password login succeeded (details: factors).
    LoginSucceeded = "login.succeeded",
    /// A password login failed (details: reason, factor).
    LoginFailed = "login.failed",
    /// An identifier reached the hard-lock count.
    AccountHardLocked = "login.hard_locked",
    /// An operator lifted the lock of an identifier.
    AccountUnlocked = "login.unlocked",
    /// A password hash was upgraded to the configured parameters at login.
    PasswordRehashed = "accounts.password_rehashed",
    /// An operator disabled an account (its sessions end).
    AccountDisabled = "accounts.disabled",
    /// An operator enabled an account again.
    AccountEnabled = "accounts.enabled",
    /// An SSO session was opened.
    SessionOpened = "sessions.opened",
    /// A user logged out.
    SessionEnded = "sessions.ended",
    /// Sessions were revoked (operator, password reset, leaver).
    SessionsRevoked = "sessions.revoked",
    /// A second factor was added (details: factor, passkey).
    MfaFactorAdded = "mfa.factor_added",
    /// A second factor was removed by its owner (details: factor, passkey).
    MfaFactorRemoved = "mfa.factor_removed",
    /// A new set of recovery codes replaced the old one.
    MfaRecoveryCodesCreated = "mfa.recovery_codes_created",
    /// A recovery code was spent at login.
    MfaRecoveryCodeUsed = "mfa.recovery_code_used",
    /// A passkey's signature counter went backwards: it is flagged and refused.
    MfaPasskeyFlagged = "mfa.passkey_flagged",
    /// A person who lost every factor asked for the e-mail link and SMS code that remove them.
    MfaRecoveryStarted = "mfa.recovery_started",
    /// Every factor of an account was removed: by the helpdesk (details: reason) or by the
    /// e-mail link and SMS code of their owner.
    MfaReset = "mfa.reset",
    /// A CAS ticket was validated (details: service, kind, endpoint).
    CasTicketValidated = "cas.ticket_validated",
    /// A CAS ticket validation failed (details: code, service).
    CasTicketRefused = "cas.ticket_refused",
    /// A CAS service was registered or removed with the CLI.
    CasServiceAdded = "cas.service_added",
    CasServiceRemoved = "cas.service_removed",
    /// An OIDC authorization code was redeemed and tokens issued (details: client, grant).
    OidcTokensIssued = "oidc.tokens_issued",
    /// A token request was refused (details: client, grant, error).
    OidcTokenRefused = "oidc.token_refused",
    /// A code or refresh token was presented again: its family was revoked (RFC 9700 §4.14).
    OidcReplayDetected = "oidc.replay_detected",
    /// A user allowed a client (details: client, scopes).
    OidcConsentGranted = "oidc.consent_granted",
    /// A user's consents were revoked.
    OidcConsentRevoked = "oidc.consent_revoked",
    /// A token was revoked by its client (RFC 7009).
    OidcTokenRevoked = "oidc.token_revoked",
    /// An OIDC client was registered, changed or removed with the CLI.
    OidcClientAdded = "oidc.client_added",
    OidcClientRemoved = "oidc.client_removed",
    OidcClientSecretRotated = "oidc.client_secret_rotated",
    /// An activation started (dossier pair or staff code accepted).
    ActivationStarted = "accounts.activation_started",
    /// Activation contacts were submitted and a code sent.
    ActivationContactSubmitted = "accounts.activation_contact_submitted",
    /// An activation's confirmation code was accepted.
    ActivationCodeConfirmed = "accounts.activation_code_confirmed",
}

/// Where the request that causes events came from. The web layer sets it around each request
/// ([`with_origin`]), so every event recorded while handling it says where it came from without
/// each room passing it along.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    /// Keeps a `User-Agent` printable and short (it is attacker-controlled).
    pub fn clean_user_agent(text: &str) -> String {
        text.chars().filter(|c| !c.is_control()).take(256).collect()
    }
}

tokio::task_local! {
    static ORIGIN: Origin;
}

/// Runs `work` with `origin` as the origin of the events it records.
pub async fn with_origin<F: std::future::Future>(origin: Origin, work: F) -> F::Output {
    ORIGIN.scope(origin, work).await
}

/// The origin of the request being handled, if any.
pub fn current_origin() -> Option<Origin> {
    ORIGIN.try_with(Origin::clone).ok()
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub at: i64,
    pub actor: Actor,
    pub action: AuditAction,
    /// What it concerns: an account id, a key id, a client id…
    pub subject: Option<String>,
    /// Where it came from: the client IP, or `cli`.
    pub source: Option<String>,
    /// The browser's `User-Agent`, for events caused by a request.
    pub user_agent: Option<String>,
    /// The request id (the `X-Request-Id` of the response and of the log lines).
    pub request_id: Option<String>,
    /// Structured details (never a secret).
    pub details: serde_json::Value,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: i64,
    pub event: NewAuditEvent,
}

impl AuditEvent {
    pub fn at(&self) -> OffsetDateTime {
        from_unix(self.event.at)
    }
}

/// Which events to read back.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub subject: Option<String>,
    pub action: Option<AuditAction>,
    /// Only events at or after this instant (Unix seconds).
    pub since: Option<i64>,
    /// Most recent first, at most this many.
    pub limit: u32,
}

/// The storage port of this room.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn insert_audit_event(&self, event: &NewAuditEvent) -> Result<i64, StorageError>;
    /// Several events in one transaction (all or none), their ids in the same order.
    async fn insert_audit_events(&self, events: &[NewAuditEvent])
    -> Result<Vec<i64>, StorageError>;
    /// Matching events, most recent first.
    async fn list_audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StorageError>;
}

/// Records audit events with the injected clock.
///
/// Events recorded concurrently are written together (group commit): the first caller writes
/// every event waiting at that moment in one statement, the others wait for that commit or write
/// the next group (at most [`GROUP_WRITERS`] groups at once). [`Auditor::record`] still returns
/// only once its event is committed, so an audited action is never reported done before its
/// record is durable; a storm of CAS validations pays one commit for many audit events instead of
/// one each (ADR 0017).
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
    group: Arc<Group>,
}

/// The events waiting for the next group commit, and the turns of the callers writing one.
struct Group {
    waiting: std::sync::Mutex<Vec<Waiting>>,
    turns: tokio::sync::Semaphore,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            waiting: std::sync::Mutex::default(),
            turns: tokio::sync::Semaphore::new(GROUP_WRITERS),
        }
    }
}

type Waiting = (
    NewAuditEvent,
    tokio::sync::oneshot::Sender<Result<i64, StorageError>>,
);

/// At most this many events in one write.
const GROUP_LIMIT: usize = 256;

/// At most this many groups written at once.
const GROUP_WRITERS: usize = 2;

impl Group {
    async fn write(
        &self,
        store: &Arc<dyn AuditStore>,
        event: NewAuditEvent,
    ) -> Result<i64, StorageError> {
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        self.lock_waiting().push((event, sender));
        loop {
            let turn = self
                .turns
                .acquire()
                .await
                .map_err(|_| StorageError::Unavailable("the audit writer was closed".into()))?;
            match receiver.try_recv() {
                Ok(result) => return result,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(StorageError::Unavailable(
                        "the audit write was abandoned".into(),
                    ));
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let group: Vec<Waiting> = {
                let mut waiting = self.lock_waiting();
                let take = waiting.len().min(GROUP_LIMIT);
                waiting.drain(..take).collect()
            };
            if group.is_empty() {
                // Our event is in a group a caller that went away left writing: wait for it.
                drop(turn);
                return receiver.await.unwrap_or_else(|_| {
                    Err(StorageError::Unavailable(
                        "the audit write was abandoned".into(),
                    ))
                });
            }
            // The write runs on its own task: if this caller goes away (its client hung up), the
            // events of the others it carries are still written and answered.
            let store = store.clone();
            let written = tokio::spawn(async move {
                let (events, senders): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                match store.insert_audit_events(&events).await {
                    Ok(ids) => {
                        for (sender, id) in senders.into_iter().zip(ids) {
                            let _ = sender.send(Ok(id));
                        }
                    }
                    Err(error) => {
                        for sender in senders {
                            let _ = sender.send(Err(StorageError::Unavailable(error.to_string())));
                        }
                    }
                }
            });
            let _ = written.await;
            drop(turn);
            if let Ok(result) = receiver.try_recv() {
                return result;
            }
            // Our event was beyond this group's limit: wait for the next turn.
        }
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for Auditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Auditor")
    }
}

impl Auditor {
    pub fn new(store: Arc<dyn AuditStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            group: Arc::default(),
        }
    }

    pub async fn record(
        &self,
        actor: Actor,
        action: AuditAction,
        subject: Option<String>,
        details: serde_json::Value,
    ) -> Result<i64, StorageError> {
        self.record_from(actor, action, subject, None, details)
            .await
    }

    pub async fn record_from(
        &self,
        actor: Actor,
        action: AuditAction,
        subject: Option<String>,
        source: Option<String>,
        details: serde_json::Value,
    ) -> Result<i64, StorageError> {
        let origin = current_origin().unwrap_or_default();
        let event = NewAuditEvent {
            at: self.clock.unix_now(),
            actor,
            action,
            subject,
            source: source.or(origin.client_ip),
            user_agent: origin.user_agent,
            request_id: origin.request_id,
            details,
        };
        tracing::info!(action = event.action.as_str(), actor = %event.actor, subject = ?event.subject, "audit");
        self.group.write(&self.store, event).await
    }

    /// An event as [`Auditor::record`] would write it, for a caller that writes it in its own
    /// transaction.
    pub fn event(
        &self,
        actor: Actor,
        action: AuditAction,
        subject: Option<String>,
        details: serde_json::Value,
    ) -> NewAuditEvent {
        let origin = current_origin().unwrap_or_default();
        let event = NewAuditEvent {
            at: self.clock.unix_now(),
            actor,
            action,
            subject,
            source: origin.client_ip,
            user_agent: origin.user_agent,
            request_id: origin.request_id,
            details,
        };
        tracing::info!(action = event.action.as_str(), actor = %event.actor, subject = ?event.subject, "audit");
        event
    }

    pub async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StorageError> {
        self.store.list_audit_events(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for action in AuditAction::ALL {
            assert!(seen.insert(action.as_str()), "{} twice", action.as_str());
            assert_eq!(action.as_str().parse::<AuditAction>().unwrap(), *action);
        }
        assert!("keys.nonsense".parse::<AuditAction>().is_err());
    }

    #[test]
    fn actors_round_trip() {
        for actor in [
            Actor::System,
            Actor::User,
            Actor::Operator("helpdesk".into()),
        ] {
            assert_eq!(actor.to_string().parse::<Actor>().unwrap(), actor);
        }
        assert!("nobody".parse::<Actor>().is_err());
    }
}
