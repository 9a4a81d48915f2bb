//! The helpdesk's view of an account and its actions (`sesame admin …`, DESIGN.md §6): what state
//! it is in, why it is locked and until when, its last login, factors, masked contacts and
//! sessions; unlock, disable, enable, revoke sessions, read the audit trail. Every action is
//! audited with the operator's name and reason.

use std::sync::Arc;

use serde::Serialize;

use super::identifiers::canonical_login;
use super::lockout::{LockStatus, Lockout};
use super::mfa::{MfaStore, NoticeMailer, SecurityEvent};
use super::{AccountAdminStore, AccountRecord, AccountState};
use crate::audit::{Actor, AuditAction, AuditEvent, AuditQuery, Auditor};
use crate::cas::logout::{LogoutStatus, LogoutStore};
use crate::clock::{Clock, from_unix, rfc3339};
use crate::locale::Locale;
use crate::mail::EmailAddress;
use crate::mail::outbox::Outbox;
use crate::sessions::{Session, Sessions};
use crate::storage::StorageError;

/// A time for people: RFC 3339, UTC.
fn when(at: i64) -> String {
    rfc3339(from_unix(at))
}

/// Why and until when an account is locked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LockReport {
    /// `open`, `temporary` or `hard`.
    pub state: &'static str,
    pub until: Option<String>,
    pub reason: Option<String>,
    /// Consecutive wrong passwords (since the last success or unlock).
    pub failures: i64,
    /// Attempts refused while locked (no password checked).
    pub refused_while_locked: i64,
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionReport {
    pub id: String,
    pub kind: String,
    pub signed_in: String,
    pub last_seen: String,
    pub expires: String,
    pub factors: Vec<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl SessionReport {
    fn of(session: &Session) -> Self {
        Self {
            id: session.id.clone(),
            kind: session.kind.as_str().to_string(),
            signed_in: when(session.auth_time),
            last_seen: when(session.last_seen_at),
            expires: when(session.idle_expires_at.min(session.expires_at)),
            factors: session.factors.clone(),
            client_ip: session.client_ip.clone(),
            user_agent: session.user_agent.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContactReport {
    pub kind: String,
    pub value: String,
    pub confirmed: bool,
}

/// Everything `sesame admin show` says.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccountReport {
    pub id: String,
    pub login: String,
    /// Former logins that still lead to the account.
    pub aliases: Vec<String>,
    pub name: String,
    pub state: String,
    pub disabled_reason: Option<String>,
    pub activated: Option<String>,
    pub lock: LockReport,
    pub last_login: Option<String>,
    pub last_login_from: Option<String>,
    pub factors: Vec<String>,
    pub contacts: Vec<ContactReport>,
    pub sessions: Vec<SessionReport>,
}

/// What an action found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelpdeskError {
    UnknownLogin(String),
    MissingReason,
    Storage(String),
}

impl std::fmt::Display for HelpdeskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownLogin(login) => write!(f, "no account has the login `{login}`"),
            Self::MissingReason => f.write_str("give the reason for the audit trail with --reason"),
            Self::Storage(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for HelpdeskError {}

impl From<StorageError> for HelpdeskError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e.to_string())
    }
}

pub struct Helpdesk {
    store: Arc<dyn AccountAdminStore>,
    logouts: Arc<dyn LogoutStore>,
    lockout: Arc<Lockout>,
    sessions: Arc<Sessions>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    our_domains: Vec<String>,
    factors: Arc<dyn MfaStore>,
    outbox: Arc<Outbox>,
    notice: NoticeMailer,
    university: String,
}

fn require_reason(reason: &str) -> Result<&str, HelpdeskError> {
    match reason.trim() {
        "" => Err(HelpdeskError::MissingReason),
        reason => Ok(reason),
    }
}

impl Helpdesk {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn AccountAdminStore>,
        logouts: Arc<dyn LogoutStore>,
        lockout: Arc<Lockout>,
        sessions: Arc<Sessions>,
        audit: Arc<Auditor>,
        clock: Arc<dyn Clock>,
        our_domains: Vec<String>,
        factors: Arc<dyn MfaStore>,
        outbox: Arc<Outbox>,
        notice: NoticeMailer,
        university: String,
    ) -> Self {
        Self {
            factors,
            outbox,
            notice,
            university,
            store,
            logouts,
            lockout,
            sessions,
            audit,
            clock,
            our_domains,
        }
    }

    /// An operator's action on an account, for the audit trail (from the command line).
    async fn record(
        &self,
        operator: Actor,
        action: AuditAction,
        account_id: String,
        details: serde_json::Value,
    ) -> Result<(), StorageError> {
        self.audit
            .record_from(
                operator,
                action,
                Some(account_id),
                Some("cli".into()),
                details,
            )
            .await
            .map(|_| ())
    }

    /// The account a login (current, alias or full address) names.
    pub async fn account(&self, typed: &str) -> Result<AccountRecord, HelpdeskError> {
        let unknown = || HelpdeskError::UnknownLogin(typed.trim().to_string());
        let login = canonical_login(typed, &self.our_domains).ok_or_else(unknown)?;
        self.store
            .find_account_by_login(login.as_str())
            .await?
            .ok_or_else(unknown)
    }

    pub async fn show(&self, typed: &str) -> Result<AccountReport, HelpdeskError> {
        let account = self.account(typed).await?;
        let now = self.clock.unix_now();
        let activity = self.store.find_account_activity(&account.id).await?;
        let counter = self.lockout.counter(&account.login).await?;
        let policy = self.lockout.policy();
        let lock = match counter {
            None => LockReport {
                state: "open",
                until: None,
                reason: None,
                failures: 0,
                refused_while_locked: 0,
                last_failure: None,
            },
            Some(counter) => {
                let (state, until, reason) = match counter.status(now) {
                    LockStatus::Open => ("open", None, None),
                    LockStatus::Temporary { until } => (
                        "temporary",
                        Some(when(until)),
                        Some(format!(
                            "{} consecutive wrong passwords (a temporary lock starts at {})",
                            counter.failures, policy.max_login_failures
                        )),
                    ),
                    LockStatus::Hard => (
                        "hard",
                        None,
                        Some(format!(
                            "{} consecutive wrong passwords, hard-locked at {} (lifted only by \
                             `sesame admin unlock` or a password reset)",
                            counter.failures,
                            counter.hard_locked_at.map(when).unwrap_or_default()
                        )),
                    ),
                };
                LockReport {
                    state,
                    until,
                    reason,
                    failures: counter.failures,
                    refused_while_locked: counter.refused,
                    last_failure: Some(when(counter.last_failure_at)),
                }
            }
        };
        let logins = self.store.list_logins(&account.id).await?;
        let contacts = self.store.list_recovery_contacts(&account.id).await?;
        let sessions = self.sessions.list(&account.id).await?;
        let has_password = activity.as_ref().is_some_and(|a| a.has_password);
        Ok(AccountReport {
            aliases: logins.into_iter().filter(|l| *l != account.login).collect(),
            name: format!("{} {}", account.first_name, account.last_name),
            state: account.state.to_string(),
            disabled_reason: activity.as_ref().and_then(|a| a.disabled_reason.clone()),
            activated: activity.as_ref().and_then(|a| a.activated_at).map(when),
            last_login: activity.as_ref().and_then(|a| a.last_login_at).map(when),
            last_login_from: activity.as_ref().and_then(|a| a.last_login_from.clone()),
            factors: {
                let summary = self.factors.factor_summary(&account.id).await?;
                let mut factors = Vec::new();
                if has_password {
                    factors.push("password".to_string());
                }
                if summary.totp {
                    factors.push("totp".to_string());
                }
                if summary.passkeys > 0 {
                    factors.push(format!("passkeys ({})", summary.passkeys));
                }
                if summary.recovery_codes > 0 {
                    factors.push(format!("recovery codes ({} left)", summary.recovery_codes));
                }
                factors
            },
            contacts: contacts
                .iter()
                .map(|c| ContactReport {
                    kind: c.kind.clone(),
                    value: c.masked(),
                    confirmed: c.confirmed,
                })
                .collect(),
            sessions: sessions.iter().map(SessionReport::of).collect(),
            lock,
            id: account.id,
            login: account.login,
        })
    }

    /// Lifts the password lock (temporary or hard); whether there was anything to lift.
    pub async fn unlock(
        &self,
        typed: &str,
        operator: Actor,
        reason: &str,
    ) -> Result<bool, HelpdeskError> {
        let reason = require_reason(reason)?;
        let account = self.account(typed).await?;
        let lifted = self.lockout.unlock(&account.login).await?;
        self.record(
            operator,
            AuditAction::AccountUnlocked,
            account.id,
            serde_json::json!({"login": account.login, "reason": reason, "was_locked": lifted}),
        )
        .await?;
        Ok(lifted)
    }

    /// Disables an account and ends its sessions; how many sessions ended.
    pub async fn disable(
        &self,
        typed: &str,
        operator: Actor,
        reason: &str,
    ) -> Result<u64, HelpdeskError> {
        let reason = require_reason(reason)?;
        let account = self.account(typed).await?;
        let ended = self
            .store
            .change_account_state(
                &account.id,
                AccountState::Disabled,
                Some(reason),
                self.clock.unix_now(),
            )
            .await?;
        self.record(
            operator,
            AuditAction::AccountDisabled,
            account.id,
            serde_json::json!({"login": account.login, "reason": reason, "sessions_ended": ended}),
        )
        .await?;
        Ok(ended)
    }

    /// Enables a disabled account again: active if it was activated, otherwise waiting for
    /// activation. Returns the new state.
    pub async fn enable(
        &self,
        typed: &str,
        operator: Actor,
        reason: &str,
    ) -> Result<AccountState, HelpdeskError> {
        let reason = require_reason(reason)?;
        let account = self.account(typed).await?;
        let activity = self.store.find_account_activity(&account.id).await?;
        let state = if activity.is_some_and(|a| a.has_password) {
            AccountState::Active
        } else {
            AccountState::Pending
        };
        self.store
            .change_account_state(&account.id, state, None, self.clock.unix_now())
            .await?;
        self.record(operator, AuditAction::AccountEnabled, account.id, serde_json::json!({"login": account.login, "reason": reason.trim(), "state": state.as_str()}))
            .await?;
        Ok(state)
    }

    /// Ends every session of the account; how many.
    pub async fn revoke_sessions(
        &self,
        typed: &str,
        operator: Actor,
        reason: &str,
    ) -> Result<u64, HelpdeskError> {
        let account = self.account(typed).await?;
        let ended = self.sessions.revoke_all(&account.id).await?;
        self.record(operator, AuditAction::SessionsRevoked, account.id, serde_json::json!({"login": account.login, "reason": reason.trim(), "sessions_ended": ended}))
            .await?;
        Ok(ended)
    }

    /// The last resort of a person who lost every second factor (DESIGN.md §5, recovery with
    /// MFA): every factor goes (TOTP, passkeys, recovery codes), after the operator checked the
    /// person's identity (the reason says how); audited, and every recovery address is told.
    /// How many rows went.
    pub async fn reset_mfa(
        &self,
        typed: &str,
        operator: Actor,
        reason: &str,
    ) -> Result<u64, HelpdeskError> {
        let reason = require_reason(reason)?;
        let account = self.account(typed).await?;
        let removed = self.factors.delete_factors(&account.id).await?;
        self.record(
            operator,
            AuditAction::MfaReset,
            account.id.clone(),
            serde_json::json!({"login": account.login, "reason": reason, "removed": removed}),
        )
        .await?;
        let what = SecurityEvent::FactorsReset.sentence(Locale::Fr);
        for contact in self.store.list_recovery_contacts(&account.id).await? {
            if contact.kind == "email"
                && contact.confirmed
                && let Ok(to) = EmailAddress::parse(&contact.value)
            {
                self.outbox
                    .queue(&(self.notice)(Locale::Fr, &to, &self.university, what))
                    .await?;
            }
        }
        Ok(removed)
    }

    pub async fn sessions(&self, typed: &str) -> Result<Vec<SessionReport>, HelpdeskError> {
        let account = self.account(typed).await?;
        Ok(self
            .sessions
            .list(&account.id)
            .await?
            .iter()
            .map(SessionReport::of)
            .collect())
    }

    /// The single-logout requests sent (or being sent) for the account's ended sessions, most
    /// recent first.
    pub async fn single_logouts(&self, typed: &str) -> Result<Vec<LogoutStatus>, HelpdeskError> {
        let account = self.account(typed).await?;
        Ok(self
            .logouts
            .list_logouts_of_account(&account.id, 50)
            .await?)
    }

    /// Audit events, most recent first, of one account (by login) or of everything.
    pub async fn audit(
        &self,
        typed: Option<&str>,
        since: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, HelpdeskError> {
        let subject = match typed {
            Some(typed) => Some(self.account(typed).await?.id),
            None => None,
        };
        Ok(self
            .audit
            .list(&AuditQuery {
                subject,
                since,
                limit,
                ..Default::default()
            })
            .await?)
    }
}
