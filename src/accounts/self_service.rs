//! The account self-service page's rules (DESIGN.md §5, `/account`): what a signed-in person sees
//! of their account, changing the password (the current one required), ending sessions, and the
//! export of everything Sésame holds about them.

use std::sync::Arc;

use super::mfa::{Mfa, SecurityEvent, StoredPasskey, StoredTotp};
use super::password::PasswordHasher;
use super::password_policy::{PasswordPolicy, PasswordProblem};
use super::{AccountAdminStore, AccountRecord, AccountsError, Contact, attributes};
use crate::audit::{Actor, AuditAction, Auditor};
use crate::locale::Locale;
use crate::login::{LoginService, LoginStore};
use crate::sessions::{ServedApplication, Session, Sessions};
use crate::storage::StorageError;

/// What `/account` shows.
#[derive(Debug)]
pub struct Overview {
    pub account: AccountRecord,
    pub contacts: Vec<Contact>,
    pub totp: Option<StoredTotp>,
    pub passkeys: Vec<StoredPasskey>,
    pub recovery_codes: u32,
    pub sessions: Vec<Session>,
    /// The applications the live sessions logged into (protocol, id, last use).
    pub applications: Vec<ServedApplication>,
}

/// The answer to a password change.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordChange {
    Done {
        other_sessions_ended: u64,
    },
    /// The current password is wrong (or the account is locked).
    WrongCurrent,
    Refused(PasswordProblem),
}

pub struct SelfService {
    accounts: Arc<dyn AccountAdminStore>,
    logins: Arc<dyn LoginStore>,
    passwords: PasswordHasher,
    policy: PasswordPolicy,
    login: Arc<LoginService>,
    sessions: Arc<Sessions>,
    mfa: Arc<Mfa>,
    audit: Arc<Auditor>,
    university: String,
    student_domain: String,
    staff_domain: String,
}

impl std::fmt::Debug for SelfService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SelfService")
    }
}

impl SelfService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        accounts: Arc<dyn AccountAdminStore>,
        logins: Arc<dyn LoginStore>,
        passwords: PasswordHasher,
        policy: PasswordPolicy,
        login: Arc<LoginService>,
        sessions: Arc<Sessions>,
        mfa: Arc<Mfa>,
        audit: Arc<Auditor>,
        university: String,
        student_domain: String,
        staff_domain: String,
    ) -> Self {
        Self {
            accounts,
            logins,
            passwords,
            policy,
            login,
            sessions,
            mfa,
            audit,
            university,
            student_domain,
            staff_domain,
        }
    }

    pub async fn overview(&self, account_id: &str) -> Result<Option<Overview>, StorageError> {
        let Some(account) = self.accounts.find_account_by_id(account_id).await? else {
            return Ok(None);
        };
        let sessions = self.sessions.list(account_id).await?;
        let mut applications: Vec<ServedApplication> = Vec::new();
        for session in &sessions {
            for app in self.sessions.services(session).await? {
                match applications
                    .iter_mut()
                    .find(|a| a.protocol == app.protocol && a.service == app.service)
                {
                    Some(known) => known.last_at = known.last_at.max(app.last_at),
                    None => applications.push(app),
                }
            }
        }
        Ok(Some(Overview {
            contacts: self.accounts.list_recovery_contacts(account_id).await?,
            totp: self.mfa.totp(account_id).await?,
            passkeys: self.mfa.list_passkeys(account_id).await?,
            recovery_codes: self.mfa.summary(account_id).await?.recovery_codes,
            sessions,
            applications,
            account,
        }))
    }

    /// Changes the password: the current one is checked like a login's (`check_password`), the new one
    /// against the policy. Every other session ends; the contacts are told.
    pub async fn change_password(
        &self,
        session: &Session,
        current: &str,
        new: &str,
        confirmation: &str,
        locale: Locale,
    ) -> Result<PasswordChange, AccountsError> {
        let Some(account) = self
            .accounts
            .find_account_by_id(&session.account_id)
            .await?
        else {
            return Ok(PasswordChange::WrongCurrent);
        };
        let Some(hash) = self.logins.find_password_hash(&account.id).await? else {
            return Ok(PasswordChange::WrongCurrent);
        };
        if !self.login.check_password(&account, current).await? {
            return Ok(PasswordChange::WrongCurrent);
        }
        let (context, _) =
            super::personal_words(self.accounts.as_ref(), &account, &self.university).await?;
        if let Err(problem) = self.policy.check(new, confirmation, &context) {
            return Ok(PasswordChange::Refused(problem));
        }
        let new_hash = self.passwords.hash(new).await?;
        // Compare-and-set on the hash just verified: a reset meanwhile wins.
        if !self
            .logins
            .upgrade_password_hash(&account.id, &hash, &new_hash)
            .await?
        {
            return Ok(PasswordChange::WrongCurrent);
        }
        let mut ended = 0;
        for other in self.sessions.list(&account.id).await? {
            if other.id != session.id && self.sessions.end_by_id(&account.id, &other.id).await? {
                ended += 1;
            }
        }
        self.audit
            .record(
                Actor::User,
                AuditAction::PasswordChanged,
                Some(account.id.clone()),
                serde_json::json!({"other_sessions_ended": ended}),
            )
            .await?;
        self.mfa
            .notify(&account.id, SecurityEvent::PasswordChanged, locale)
            .await?;
        Ok(PasswordChange::Done {
            other_sessions_ended: ended,
        })
    }

    /// "Log out everywhere": every session of the account ends, this one included.
    pub async fn end_all_sessions(&self, account_id: &str) -> Result<u64, StorageError> {
        let ended = self.sessions.revoke_all(account_id).await?;
        self.audit
            .record(
                Actor::User,
                AuditAction::SessionsRevoked,
                Some(account_id.to_string()),
                serde_json::json!({"count": ended, "by": "self-service"}),
            )
            .await?;
        Ok(ended)
    }

    /// Everything Sésame holds about the person (GDPR art. 15 and 20), as JSON. Secrets are not
    /// in it: no password hash, no TOTP seed, no recovery code, no session cookie.
    pub async fn export(
        &self,
        account_id: &str,
        consents: Vec<(String, Vec<String>, i64)>,
    ) -> Result<Option<serde_json::Value>, StorageError> {
        let Some(overview) = self.overview(account_id).await? else {
            return Ok(None);
        };
        let account = &overview.account;
        let attributes = attributes::of_account(
            self.accounts.as_ref(),
            account,
            &self.student_domain,
            &self.staff_domain,
        )
        .await?;
        let logins = self.accounts.list_logins(account_id).await?;
        let activity = self.accounts.find_account_activity(account_id).await?;
        Ok(Some(serde_json::json!({
            "account": {
                "id": account.id,
                "login": account.login,
                "logins": logins,
                "first_name": account.first_name,
                "last_name": account.last_name,
                "birth_date": account.birth_date,
                "state": account.state.as_str(),
                "activated_at": activity.as_ref().and_then(|a| a.activated_at),
                "last_login_at": activity.as_ref().and_then(|a| a.last_login_at),
                "last_login_from": activity.as_ref().and_then(|a| a.last_login_from.clone()),
            },
            "attributes": attributes,
            "recovery_contacts": overview.contacts.iter().map(|c| serde_json::json!({
                "kind": c.kind, "value": c.value, "confirmed": c.confirmed,
            })).collect::<Vec<_>>(),
            "second_factors": {
                "totp": overview.totp.as_ref().map(|t| serde_json::json!({
                    "created_at": t.created_at, "last_used_at": t.last_used_at,
                })),
                "passkeys": overview.passkeys.iter().map(|p| serde_json::json!({
                    "name": p.name, "created_at": p.created_at, "last_used_at": p.last_used_at,
                    "flagged_at": p.flagged_at,
                })).collect::<Vec<_>>(),
                "recovery_codes_left": overview.recovery_codes,
            },
            "sessions": overview.sessions.iter().map(|s| serde_json::json!({
                "id": s.id, "kind": s.kind.as_str(), "auth_time": s.auth_time,
                "factors": s.factors, "last_seen_at": s.last_seen_at,
                "expires_at": s.expires_at, "client_ip": s.client_ip,
                "user_agent": s.user_agent,
            })).collect::<Vec<_>>(),
            "applications": overview.applications.iter().map(|a| serde_json::json!({
                "protocol": a.protocol, "id": a.service, "first_at": a.first_at,
                "last_at": a.last_at,
            })).collect::<Vec<_>>(),
            "oidc_consents": consents.iter().map(|(client, scopes, at)| serde_json::json!({
                "client": client, "scopes": scopes, "granted_at": at,
            })).collect::<Vec<_>>(),
        })))
    }
}
