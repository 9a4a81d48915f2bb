//! The account self-service page's rules (DESIGN.md §5, `/account`): what a signed-in person sees
//! of their account, changing the password (the current one required), ending sessions, and the
//! export of everything Sésame holds about them.

use std::sync::Arc;
use std::time::Duration;

use super::activation::{CodeMailer, ContactProblem, normalise_phone, recovery_email};
use super::mfa::{Mfa, SecurityEvent, StoredPasskey, StoredTotp};
use super::password::PasswordHasher;
use super::password_policy::{PasswordPolicy, PasswordProblem};
use super::{AccountAdminStore, AccountRecord, AccountsError, Contact, attributes};
use crate::audit::{Actor, AuditAction, Auditor};
use crate::clock::Clock;
use crate::entropy::{Entropy, EntropyExt as _};
use crate::locale::Locale;
use crate::login::{LoginService, LoginStore};
use crate::mail::EmailAddress;
use crate::mail::outbox::Outbox;
use crate::mail::sms::{PhoneNumber, SmsSender, confirmation_code_text};
use crate::one_time::{OneTimeValues, SecretToken};
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

/// How a confirmation code reaches a new contact.
pub struct Channels {
    pub one_time: Arc<OneTimeValues>,
    pub outbox: Arc<Outbox>,
    pub code_mail: CodeMailer,
    pub sms: Arc<dyn SmsSender>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
}

/// The answer to a contact change request.
#[derive(Debug)]
pub enum ContactChange {
    /// A code went to the new contact; the reference of the pending change (for the form).
    CodeSent(SecretToken),
    WrongPassword,
    Refused(ContactProblem),
}

/// The answer to the code of a contact change.
#[derive(Debug)]
pub enum ContactConfirmation {
    Done,
    /// Wrong code; the change goes on under a new reference.
    Wrong {
        reference: SecretToken,
        remaining: u32,
    },
    /// Expired, used, or too many wrong codes: start again.
    Void,
}

const CONTACT_CHANGE: &str = "account.contact_change";
const CONTACT_CODE_LIFETIME: Duration = Duration::from_secs(15 * 60);
const MAX_CONTACT_CODE_ATTEMPTS: u32 = 5;

#[derive(serde::Serialize, serde::Deserialize)]
struct PendingContact {
    account_id: String,
    kind: String,
    value: String,
    /// SHA-256 of `salt ‖ code`, hex.
    salt: String,
    digest: String,
    attempts: u32,
    locale: String,
}

fn code_digest(salt: &str, code: &str) -> String {
    let hash = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{salt}{code}").as_bytes(),
    );
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
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
    channels: Channels,
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
        channels: Channels,
    ) -> Self {
        Self {
            channels,
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

    /// Starts changing a recovery contact (DESIGN.md §5): the password again, then a 6-digit
    /// code to the new contact (mail or SMS); the change is made only when the code comes back.
    pub async fn start_contact_change(
        &self,
        session: &Session,
        kind: &str,
        value: &str,
        password: &str,
        locale: Locale,
    ) -> Result<ContactChange, AccountsError> {
        let value = match kind {
            "phone" => match normalise_phone(value) {
                Some(phone) => phone,
                None => return Ok(ContactChange::Refused(ContactProblem::InvalidPhone)),
            },
            _ => match recovery_email(value, &self.student_domain, &self.staff_domain) {
                Ok(address) => address.as_str().to_string(),
                Err(problem) => return Ok(ContactChange::Refused(problem)),
            },
        };
        let kind = if kind == "phone" { "phone" } else { "email" };
        let Some(account) = self
            .accounts
            .find_account_by_id(&session.account_id)
            .await?
        else {
            return Ok(ContactChange::WrongPassword);
        };
        if !self.login.check_password(&account, password).await? {
            return Ok(ContactChange::WrongPassword);
        }
        let channels = &self.channels;
        let code = format!(
            "{:06}",
            u32::from_le_bytes(channels.entropy.bytes::<4>()) % 1_000_000
        );
        let salt = channels.entropy.hex(16);
        let reference = self
            .pending(&PendingContact {
                account_id: account.id.clone(),
                kind: kind.to_string(),
                value: value.clone(),
                digest: code_digest(&salt, &code),
                salt,
                attempts: 0,
                locale: locale.tag().to_string(),
            })
            .await?;
        if kind == "email" {
            let to = EmailAddress::parse(&value)
                .map_err(|_| StorageError::Corrupt("a checked address no longer parses".into()))?;
            channels
                .outbox
                .queue(&(channels.code_mail)(locale, &to, &code, &self.university))
                .await?;
        } else if let Ok(number) = PhoneNumber::parse(&value) {
            // The page waits for the SMS: the person is about to type its code.
            if let Err(error) = channels
                .sms
                .send_sms(&number, &confirmation_code_text(locale, &code))
                .await
            {
                tracing::warn!(%error, "the contact change SMS was not sent");
            }
        }
        Ok(ContactChange::CodeSent(reference))
    }

    async fn pending(&self, pending: &PendingContact) -> Result<SecretToken, StorageError> {
        let payload = serde_json::to_string(pending)
            .map_err(|e| StorageError::Corrupt(format!("contact change: {e}")))?;
        self.channels
            .one_time
            .issue(CONTACT_CHANGE, &payload, CONTACT_CODE_LIFETIME)
            .await
    }

    /// The code of a contact change: right, the contact is replaced and every contact (the old
    /// ones and the new) is told; wrong, the change goes on under a new reference, at most five
    /// times.
    pub async fn confirm_contact_change(
        &self,
        account_id: &str,
        reference: &SecretToken,
        code: &str,
    ) -> Result<ContactConfirmation, StorageError> {
        let Some(pending) = self
            .channels
            .one_time
            .redeem(CONTACT_CHANGE, reference)
            .await?
            .and_then(|p| serde_json::from_str::<PendingContact>(&p).ok())
            .filter(|p| p.account_id == account_id)
        else {
            return Ok(ContactConfirmation::Void);
        };
        let typed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let right = typed.len() == 6
            && typed.bytes().all(|b| b.is_ascii_digit())
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                code_digest(&pending.salt, &typed).as_bytes(),
                pending.digest.as_bytes(),
            )
            .is_ok();
        if !right {
            let attempts = pending.attempts + 1;
            if attempts >= MAX_CONTACT_CODE_ATTEMPTS {
                return Ok(ContactConfirmation::Void);
            }
            let reference = self
                .pending(&PendingContact {
                    attempts,
                    ..pending
                })
                .await?;
            return Ok(ContactConfirmation::Wrong {
                reference,
                remaining: MAX_CONTACT_CODE_ATTEMPTS - attempts,
            });
        }
        let locale = match pending.locale.as_str() {
            "en" => Locale::En,
            _ => Locale::Fr,
        };
        // The old addresses are told too: a stolen session must not change contacts quietly.
        let before = self.accounts.list_recovery_contacts(account_id).await?;
        let now = self.channels.clock.unix_now();
        self.accounts
            .replace_recovery_contact(account_id, &pending.kind, &pending.value, now)
            .await?;
        self.audit
            .record(
                Actor::User,
                AuditAction::RecoveryContactChanged,
                Some(account_id.to_string()),
                serde_json::json!({"kind": pending.kind}),
            )
            .await?;
        self.mfa
            .notify(account_id, SecurityEvent::ContactChanged, locale)
            .await?;
        for old in before {
            if old.kind == "email"
                && old.confirmed
                && old.value != pending.value
                && let Ok(to) = EmailAddress::parse(&old.value)
            {
                self.mfa
                    .notify_address(&to, SecurityEvent::ContactChanged, locale)
                    .await?;
            }
        }
        Ok(ContactConfirmation::Done)
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
