//! Forgotten passwords (DESIGN.md §4): the user gives a login or address; if an active account
//! matches, a reset link (128-bit token, stored as SHA-256, single use, 30 minutes, a newer request
//! voids the older) is queued to the confirmed recovery addresses. The page answers the same in
//! every case, before any of this work (the caller runs [`RecoveryService::request`] after
//! answering). Completing a reset sets the password and notifies every contact, in one
//! transaction.
//!
//! Security: links are built from the configured public URL only, never from request headers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use super::identifiers::canonical_login;
use super::password::PasswordHasher;
use super::password_policy::{PasswordPolicy, PasswordProblem};
use super::{AccountState, AccountStore};
use crate::audit::{Actor, AuditAction, Auditor};
use crate::clock::Clock;
use crate::entropy::{Entropy, EntropyExt};
use crate::locale::Locale;
use crate::mail::{EmailAddress, OutgoingMail};
use crate::one_time::SecretToken;
use crate::storage::StorageError;

/// Life of a reset link.
pub const RESET_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The storage port of recovery.
#[async_trait]
pub trait RecoveryStore: AccountStore + Send + Sync {
    /// Confirmed recovery e-mail addresses of an account.
    async fn confirmed_emails(&self, account_id: &str) -> Result<Vec<String>, StorageError>;
    /// Replaces the account's reset link (voiding any older) and queues its mails, in one
    /// transaction.
    async fn replace_password_reset(
        &self,
        account_id: &str,
        digest: &[u8],
        expires_at: i64,
        mails: &[OutgoingMail],
        now: i64,
    ) -> Result<(), StorageError>;
    /// The account a live reset link is for (without consuming it).
    async fn find_password_reset(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<String>, StorageError>;
    /// In one transaction: consumes the link (`DELETE … RETURNING`), sets the password and queues
    /// the notices. `None` if the link was already used or has expired.
    async fn complete_password_reset(
        &self,
        digest: &[u8],
        password_hash: &str,
        notices: &(dyn for<'a> Fn(&'a str) -> Vec<OutgoingMail> + Send + Sync),
        now: i64,
    ) -> Result<Option<String>, StorageError>;
}

/// Builds the reset-link mail: (locale, to, link, university).
pub type ResetMailer = Arc<dyn Fn(Locale, &EmailAddress, &Url, &str) -> OutgoingMail + Send + Sync>;
/// Builds the "password changed" notice: (locale, to, university).
pub type ChangedMailer = Arc<dyn Fn(Locale, &EmailAddress, &str) -> OutgoingMail + Send + Sync>;

/// What can go wrong beyond the user's control (shared by the account services).
pub use super::AccountsError as RecoveryError;

/// The answer to a completed reset form.
#[derive(Debug, PartialEq, Eq)]
pub enum ResetOutcome {
    Done,
    Refused(PasswordProblem),
    /// Unknown, used or expired link.
    Invalid,
}

pub struct RecoveryService {
    store: Arc<dyn RecoveryStore>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    passwords: PasswordHasher,
    policy: PasswordPolicy,
    public_url: Url,
    university: String,
    our_domains: Vec<String>,
    reset_mail: ResetMailer,
    changed_mail: ChangedMailer,
}

impl RecoveryService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn RecoveryStore>,
        audit: Arc<Auditor>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        passwords: PasswordHasher,
        policy: PasswordPolicy,
        public_url: Url,
        university: String,
        our_domains: Vec<String>,
        reset_mail: ResetMailer,
        changed_mail: ChangedMailer,
    ) -> Self {
        Self {
            store,
            audit,
            clock,
            entropy,
            passwords,
            policy,
            public_url,
            university,
            our_domains,
            reset_mail,
            changed_mail,
        }
    }

    /// The reset link for a token: always under the configured public URL.
    pub fn reset_link(&self, token: &SecretToken) -> Url {
        let mut link = self
            .public_url
            .join("password/reset")
            .expect("a relative path joins any base URL");
        link.query_pairs_mut().append_pair("token", token.expose());
        link
    }

    /// Handles a "forgot password" request. Returns whether a link was queued (for tests and
    /// audit only — the page must not depend on it).
    pub async fn request(&self, identifier: &str, locale: Locale) -> Result<bool, RecoveryError> {
        let Some(login) = canonical_login(identifier, &self.our_domains) else {
            return Ok(false);
        };
        let Some(account) = self.store.find_account_by_login(login.as_str()).await? else {
            return Ok(false);
        };
        if account.state != AccountState::Active {
            return Ok(false);
        }
        let recipients: Vec<EmailAddress> = self
            .store
            .confirmed_emails(&account.id)
            .await?
            .iter()
            .filter_map(|e| EmailAddress::parse(e).ok())
            .collect();
        if recipients.is_empty() {
            return Ok(false);
        }
        let token = SecretToken::new(self.entropy.token(16));
        let link = self.reset_link(&token);
        let mails: Vec<OutgoingMail> = recipients
            .iter()
            .map(|to| (self.reset_mail)(locale, to, &link, &self.university))
            .collect();
        let now = self.clock.unix_now();
        self.store
            .replace_password_reset(
                &account.id,
                &token.digest(),
                now + RESET_LIFETIME.as_secs() as i64,
                &mails,
                now,
            )
            .await?;
        self.audit
            .record(
                Actor::User,
                AuditAction::PasswordResetRequested,
                Some(account.id.clone()),
                serde_json::json!({"recipients": recipients.len()}),
            )
            .await?;
        Ok(true)
    }

    /// Whether a link is alive (to show the form, or say it expired).
    pub async fn is_valid(&self, token: &SecretToken) -> Result<bool, RecoveryError> {
        Ok(self
            .store
            .find_password_reset(&token.digest(), self.clock.unix_now())
            .await?
            .is_some())
    }

    /// Sets the new password from a link.
    pub async fn complete(
        &self,
        token: &SecretToken,
        password: &str,
        confirmation: &str,
        locale: Locale,
    ) -> Result<ResetOutcome, RecoveryError> {
        let digest = token.digest().to_vec();
        let now = self.clock.unix_now();
        let Some(account_id) = self.store.find_password_reset(&digest, now).await? else {
            return Ok(ResetOutcome::Invalid);
        };
        let Some(account) = self.store.find_account_by_id(&account_id).await? else {
            return Ok(ResetOutcome::Invalid);
        };
        let (context, _) =
            super::personal_words(self.store.as_ref(), &account, &self.university).await?;
        if let Err(problem) = self.policy.check(password, confirmation, &context) {
            return Ok(ResetOutcome::Refused(problem));
        }
        let hash = self.passwords.hash(password).await?;
        let changed = self.changed_mail.clone();
        let university = self.university.clone();
        let notices = move |address: &str| -> Vec<OutgoingMail> {
            EmailAddress::parse(address)
                .map(|to| vec![changed(locale, &to, &university)])
                .unwrap_or_default()
        };
        match self
            .store
            .complete_password_reset(&digest, &hash, &notices, now)
            .await?
        {
            Some(account_id) => {
                self.audit
                    .record(
                        Actor::User,
                        AuditAction::PasswordReset,
                        Some(account_id),
                        serde_json::json!({}),
                    )
                    .await?;
                Ok(ResetOutcome::Done)
            }
            None => Ok(ResetOutcome::Invalid),
        }
    }
}
