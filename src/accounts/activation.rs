//! Account activation (DESIGN.md §4): a student proves who they are with the dossier number and
//! birth date (a staff member with a code from the helpdesk), confirms a personal e-mail with a
//! 6-digit code, and chooses a password. One page per step; the state lives here, keyed by a
//! 128-bit token the browser holds.
//!
//! Security:
//! - The dossier pair is knowledge others may have: failures are counted per submitted dossier
//!   number, existing or not, and 5 lock it until `sesame admin unlock-activation`. Unknown
//!   dossier, wrong birth date and already-active account give the same answer ([`Start::Refused`])
//!   after the same work.
//! - The 6-digit code is stored as an HMAC keyed by the browser's token, so a database leak cannot
//!   be brute-forced offline; 5 tries, 10 minutes.
//! - The last step is one conditional transaction (`pending` → `active`): of concurrent attempts
//!   exactly one wins, and nothing of the others remains. The dossier pair is worthless afterwards.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::hmac;

use super::password::PasswordHasher;
use super::password_policy::{PasswordPolicy, PasswordProblem};
use super::provisioning::{birth_date as valid_birth_date, dossier_number as valid_dossier};
use super::{AccountRecord, AccountState, AccountStore};
use crate::audit::{Actor, AuditAction, Auditor};
use crate::clock::Clock;
use crate::entropy::{Entropy, EntropyExt};
use crate::locale::Locale;
use crate::mail::sms::{PhoneNumber, SmsSender, confirmation_code_text};
use crate::mail::{EmailAddress, OutgoingMail};
use crate::one_time::SecretToken;
use crate::storage::StorageError;

/// Failures before a dossier number is locked.
pub const MAX_DOSSIER_FAILURES: i64 = 5;
/// Wrong codes before the code is void.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// Life of a confirmation code.
pub const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Life of an activation in progress.
pub const ACTIVATION_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Life of a staff activation code.
pub const STAFF_CODE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// An activation in progress, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationRow {
    pub digest: Vec<u8>,
    pub account_id: String,
    pub dossier_number: Option<String>,
    pub locale: Locale,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub code_digest: Option<Vec<u8>>,
    pub code_expires_at: Option<i64>,
    pub code_attempts: i64,
    pub email_confirmed_at: Option<i64>,
    pub expires_at: i64,
}

impl fmt::Debug for ActivationRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivationRow")
            .field("account_id", &self.account_id)
            .field("email_confirmed_at", &self.email_confirmed_at)
            .finish_non_exhaustive()
    }
}

/// A recovery contact to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    /// `email` or `phone`.
    pub kind: &'static str,
    pub value: String,
    pub confirmed: bool,
}

/// The storage port of activation.
#[async_trait]
pub trait ActivationStore: AccountStore + Send + Sync {
    /// Whether the dossier number is locked.
    async fn is_dossier_locked(&self, dossier_number: &str) -> Result<bool, StorageError>;
    /// Counts a failure; locks at `max`. Returns the failure count.
    async fn record_dossier_failure(
        &self,
        dossier_number: &str,
        max: i64,
        now: i64,
    ) -> Result<i64, StorageError>;
    /// Lifts a lock and clears the count; `false` if there was nothing to unlock.
    async fn unlock_dossier(&self, dossier_number: &str) -> Result<bool, StorageError>;

    /// Replaces the staff code of an account.
    async fn replace_staff_code(
        &self,
        account_id: &str,
        code_digest: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Consumes a staff code; the account it was for.
    async fn redeem_staff_code(
        &self,
        code_digest: &[u8],
        now: i64,
    ) -> Result<Option<String>, StorageError>;

    async fn insert_activation(&self, row: &ActivationRow, now: i64) -> Result<(), StorageError>;
    async fn find_activation(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<ActivationRow>, StorageError>;
    /// Records the contacts and a new code, and queues the mails, in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn set_activation_contact(
        &self,
        digest: &[u8],
        email: &str,
        phone: &str,
        code_digest: &[u8],
        code_expires_at: i64,
        mails: &[OutgoingMail],
        now: i64,
    ) -> Result<(), StorageError>;
    /// Counts a wrong code; returns the attempts so far.
    async fn record_code_attempt(&self, digest: &[u8]) -> Result<i64, StorageError>;
    async fn confirm_activation_email(&self, digest: &[u8], now: i64) -> Result<(), StorageError>;
    /// In one transaction: `pending` → `active` with the password, the contacts recorded, the
    /// activation and the dossier's failures deleted. `false` (and nothing written) if the account
    /// was no longer pending.
    async fn complete_activation(
        &self,
        account_id: &str,
        password_hash: &str,
        contacts: &[NewContact],
        now: i64,
    ) -> Result<bool, StorageError>;
    async fn list_contacts(&self, account_id: &str) -> Result<Vec<(String, String)>, StorageError>;
}

/// What can go wrong beyond the user's control (shared by the account services).
pub use super::AccountsError as ActivationError;

/// The answer to step 1.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// Go on; the browser keeps the token.
    Started(SecretToken),
    /// The same answer for unknown dossier, wrong date, already active, malformed input.
    Refused,
    /// Too many failures for this dossier number.
    Locked,
}

/// Why a contact was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactProblem {
    InvalidEmail,
    InstitutionalEmail,
    InvalidPhone,
}

/// The answer to the code step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Confirmed,
    Wrong {
        remaining: i64,
    },
    /// Expired or used up: ask for a new one (back to the contact step).
    Void,
}

/// The answer to the password step.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    Activated {
        address: String,
    },
    Refused(PasswordProblem),
    /// Someone else completed the activation first.
    AlreadyActive,
}

/// Where an activation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Contact,
    Code,
    Password,
}

/// Domains and names the activation needs from the configuration.
#[derive(Debug, Clone)]
pub struct ActivationSettings {
    pub university: String,
    pub student_domain: String,
    pub staff_domain: String,
}

/// Builds the confirmation-code mail for a recipient.
pub type CodeMailer = Arc<dyn Fn(Locale, &EmailAddress, &str, &str) -> OutgoingMail + Send + Sync>;

pub struct ActivationService {
    store: Arc<dyn ActivationStore>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    passwords: PasswordHasher,
    policy: PasswordPolicy,
    settings: ActivationSettings,
    code_mail: CodeMailer,
    /// Where confirmation codes also go by SMS (set once at start).
    sms: std::sync::OnceLock<Arc<dyn SmsSender>>,
}

/// The stored form of a code: HMAC keyed by the browser's activation token.
fn code_digest(token: &SecretToken, code: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.expose().as_bytes());
    hmac::sign(&key, code.as_bytes()).as_ref().to_vec()
}

/// A recovery address as typed: valid, and not one of the university's own domains (an address
/// the account itself gives would recover nothing once the account is lost).
pub fn recovery_email(
    text: &str,
    student_domain: &str,
    staff_domain: &str,
) -> Result<EmailAddress, ContactProblem> {
    let address = EmailAddress::parse(text).map_err(|_| ContactProblem::InvalidEmail)?;
    if [student_domain, staff_domain]
        .iter()
        .any(|d| address.domain() == *d || address.domain().ends_with(&format!(".{d}")))
    {
        return Err(ContactProblem::InstitutionalEmail);
    }
    Ok(address)
}

/// Normalises a French or international mobile number to E.164 (`+33612345678`).
pub fn normalise_phone(text: &str) -> Option<String> {
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '\u{a0}'))
        .collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let international = if let Some(rest) = compact.strip_prefix('+') {
        rest.to_string()
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest.to_string()
    } else if compact.len() == 10 && compact.starts_with('0') {
        format!("33{}", &compact[1..])
    } else {
        return None;
    };
    let valid = digits(&international)
        && (8..=15).contains(&international.len())
        && !international.starts_with('0');
    valid.then(|| format!("+{international}"))
}

impl ActivationService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn ActivationStore>,
        audit: Arc<Auditor>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        passwords: PasswordHasher,
        policy: PasswordPolicy,
        settings: ActivationSettings,
        code_mail: CodeMailer,
    ) -> Self {
        Self {
            store,
            audit,
            clock,
            entropy,
            passwords,
            policy,
            settings,
            code_mail,
            sms: std::sync::OnceLock::new(),
        }
    }

    /// Sends the confirmation code to the mobile too (DESIGN.md §4), through this sender.
    pub fn send_codes_by_sms(&self, sender: Arc<dyn SmsSender>) {
        let _ = self.sms.set(sender);
    }

    async fn open(
        &self,
        account: &AccountRecord,
        dossier: Option<&str>,
        locale: Locale,
    ) -> Result<Start, ActivationError> {
        let token = SecretToken::new(self.entropy.token(16));
        let now = self.clock.unix_now();
        self.store
            .insert_activation(
                &ActivationRow {
                    digest: token.digest().to_vec(),
                    account_id: account.id.clone(),
                    dossier_number: dossier.map(str::to_string),
                    locale,
                    email: None,
                    phone: None,
                    code_digest: None,
                    code_expires_at: None,
                    code_attempts: 0,
                    email_confirmed_at: None,
                    expires_at: now + ACTIVATION_LIFETIME.as_secs() as i64,
                },
                now,
            )
            .await?;
        self.audit
            .record(
                Actor::User,
                AuditAction::ActivationStarted,
                Some(account.id.clone()),
                serde_json::json!({"with": if dossier.is_some() { "dossier" } else { "staff_code" }}),
            )
            .await?;
        Ok(Start::Started(token))
    }

    /// Step 1 for students.
    pub async fn start_with_dossier(
        &self,
        dossier: &str,
        birth_date: &str,
        locale: Locale,
    ) -> Result<Start, ActivationError> {
        let today = self.clock.now().date();
        let (Ok(dossier), Ok(birth_date)) =
            (valid_dossier(dossier), valid_birth_date(birth_date, today))
        else {
            return Ok(Start::Refused);
        };
        if self.store.is_dossier_locked(&dossier).await? {
            return Ok(Start::Locked);
        }
        // The same reads happen whether or not the dossier exists.
        let record = self.store.find_student_by_dossier(&dossier).await?;
        let account = match &record {
            Some(record) => self.store.find_account_by_id(&record.account_id).await?,
            None => None,
        };
        let matches = account.as_ref().is_some_and(|a| {
            a.state == AccountState::Pending
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    a.birth_date.as_bytes(),
                    birth_date.as_bytes(),
                )
                .is_ok()
        });
        match account {
            Some(account) if matches => self.open(&account, Some(&dossier), locale).await,
            _ => {
                let failures = self
                    .store
                    .record_dossier_failure(&dossier, MAX_DOSSIER_FAILURES, self.clock.unix_now())
                    .await?;
                if failures == MAX_DOSSIER_FAILURES {
                    self.audit
                        .record(
                            Actor::System,
                            AuditAction::ActivationLocked,
                            Some(dossier.clone()),
                            serde_json::json!({"failures": failures}),
                        )
                        .await?;
                }
                Ok(if failures >= MAX_DOSSIER_FAILURES {
                    Start::Locked
                } else {
                    Start::Refused
                })
            }
        }
    }

    /// Step 1 for staff: the code the helpdesk printed.
    pub async fn start_with_staff_code(
        &self,
        code: &str,
        locale: Locale,
    ) -> Result<Start, ActivationError> {
        let code = code.trim();
        if code.is_empty() || code.len() > 64 {
            return Ok(Start::Refused);
        }
        let account_id = self
            .store
            .redeem_staff_code(
                &SecretToken::new(code.to_string()).digest(),
                self.clock.unix_now(),
            )
            .await?;
        let account = match account_id {
            Some(id) => self.store.find_account_by_id(&id).await?,
            None => None,
        };
        match account {
            Some(account) if account.state == AccountState::Pending => {
                self.open(&account, None, locale).await
            }
            _ => Ok(Start::Refused),
        }
    }

    /// Prints a new staff activation code for `login` (the old one is void). `None` if the login
    /// names no pending staff account.
    pub async fn issue_staff_code(
        &self,
        login: &str,
        operator: Actor,
    ) -> Result<Option<(AccountRecord, SecretToken)>, ActivationError> {
        let Some(account) = self.store.find_account_by_login(login).await? else {
            return Ok(None);
        };
        if account.state != AccountState::Pending
            || self
                .store
                .find_staff_of_account(&account.id)
                .await?
                .is_none()
        {
            return Ok(None);
        }
        let code = SecretToken::new(self.entropy.token(16));
        let now = self.clock.unix_now();
        self.store
            .replace_staff_code(
                &account.id,
                &code.digest(),
                now + STAFF_CODE_LIFETIME.as_secs() as i64,
                now,
            )
            .await?;
        self.audit
            .record_from(
                operator,
                AuditAction::StaffActivationCodeIssued,
                Some(account.id.clone()),
                Some("cli".into()),
                serde_json::json!({"login": account.login}),
            )
            .await?;
        Ok(Some((account, code)))
    }

    /// Lifts the lock of a dossier number (audited with the operator's reason).
    pub async fn unlock_dossier(
        &self,
        dossier: &str,
        operator: Actor,
        reason: &str,
    ) -> Result<bool, ActivationError> {
        let unlocked = self.store.unlock_dossier(dossier.trim()).await?;
        if unlocked {
            self.audit
                .record_from(
                    operator,
                    AuditAction::ActivationUnlocked,
                    Some(dossier.trim().to_string()),
                    Some("cli".into()),
                    serde_json::json!({"reason": reason}),
                )
                .await?;
        }
        Ok(unlocked)
    }

    /// The activation a token names, if alive.
    pub async fn find(
        &self,
        token: &SecretToken,
    ) -> Result<Option<(ActivationRow, Step)>, ActivationError> {
        let row = self
            .store
            .find_activation(&token.digest(), self.clock.unix_now())
            .await?;
        Ok(row.map(|row| {
            let step = if row.email_confirmed_at.is_some() {
                Step::Password
            } else if row.code_digest.is_some() {
                Step::Code
            } else {
                Step::Contact
            };
            (row, step)
        }))
    }

    /// Step 2: the personal e-mail (not one of ours) and the mobile; sends the code.
    pub async fn submit_contact(
        &self,
        token: &SecretToken,
        email: &str,
        phone: &str,
    ) -> Result<Result<(), ContactProblem>, ActivationError> {
        let Some((row, _)) = self.find(token).await? else {
            return Ok(Err(ContactProblem::InvalidEmail));
        };
        let address = match recovery_email(
            email,
            &self.settings.student_domain,
            &self.settings.staff_domain,
        ) {
            Ok(address) => address,
            Err(problem) => return Ok(Err(problem)),
        };
        let Some(phone) = normalise_phone(phone) else {
            return Ok(Err(ContactProblem::InvalidPhone));
        };
        let code = format!(
            "{:06}",
            u32::from_le_bytes(self.entropy.bytes::<4>()) % 1_000_000
        );
        let mut recipients = vec![address.clone()];
        if let Some(dossier) = &row.dossier_number
            && let Some(record) = self.store.find_student_by_dossier(dossier).await?
            && let Some(enrolment) = record
                .enrolment_email
                .as_deref()
                .and_then(|e| EmailAddress::parse(e).ok())
            && enrolment != address
        {
            recipients.push(enrolment);
        }
        let mails: Vec<OutgoingMail> = recipients
            .iter()
            .map(|to| (self.code_mail)(row.locale, to, &code, &self.settings.university))
            .collect();
        let now = self.clock.unix_now();
        self.store
            .set_activation_contact(
                &row.digest,
                address.as_str(),
                &phone,
                &code_digest(token, &code),
                now + CODE_LIFETIME.as_secs() as i64,
                &mails,
                now,
            )
            .await?;
        // The SMS leaves in its own task: a slow gateway never delays the page, and the mail
        // already carries the code.
        if let (Some(sender), Ok(number)) = (self.sms.get(), PhoneNumber::parse(&phone)) {
            let sender = sender.clone();
            let text = confirmation_code_text(row.locale, &code);
            tokio::spawn(async move {
                if let Err(error) = sender.send_sms(&number, &text).await {
                    tracing::warn!(%error, "the confirmation SMS was not sent");
                }
            });
        }
        self.audit
            .record(
                Actor::User,
                AuditAction::ActivationContactSubmitted,
                Some(row.account_id.clone()),
                serde_json::json!({"codes_mailed": recipients.len(), "sms": self.sms.get().is_some()}),
            )
            .await?;
        Ok(Ok(()))
    }

    /// Step 3: the code from the mail.
    pub async fn confirm_code(
        &self,
        token: &SecretToken,
        code: &str,
    ) -> Result<CodeCheck, ActivationError> {
        let Some((row, _)) = self.find(token).await? else {
            return Ok(CodeCheck::Void);
        };
        let now = self.clock.unix_now();
        let (Some(expected), Some(expires_at)) = (&row.code_digest, row.code_expires_at) else {
            return Ok(CodeCheck::Void);
        };
        if expires_at <= now || row.code_attempts >= MAX_CODE_ATTEMPTS {
            return Ok(CodeCheck::Void);
        }
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let right = code.len() == 6
            && code.bytes().all(|b| b.is_ascii_digit())
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                &code_digest(token, &code),
                expected,
            )
            .is_ok();
        if right {
            self.store
                .confirm_activation_email(&row.digest, now)
                .await?;
            self.audit
                .record(
                    Actor::User,
                    AuditAction::ActivationCodeConfirmed,
                    Some(row.account_id.clone()),
                    serde_json::json!({}),
                )
                .await?;
            return Ok(CodeCheck::Confirmed);
        }
        let attempts = self.store.record_code_attempt(&row.digest).await?;
        if let Some(dossier) = &row.dossier_number {
            self.store
                .record_dossier_failure(dossier, MAX_DOSSIER_FAILURES, now)
                .await?;
        }
        Ok(if attempts >= MAX_CODE_ATTEMPTS {
            CodeCheck::Void
        } else {
            CodeCheck::Wrong {
                remaining: MAX_CODE_ATTEMPTS - attempts,
            }
        })
    }

    /// Step 4: the password; activates the account.
    pub async fn complete(
        &self,
        token: &SecretToken,
        password: &str,
        confirmation: &str,
    ) -> Result<Completion, ActivationError> {
        let Some((row, Step::Password)) = self.find(token).await? else {
            return Ok(Completion::AlreadyActive);
        };
        let Some(account) = self.store.find_account_by_id(&row.account_id).await? else {
            return Ok(Completion::AlreadyActive);
        };
        let (context, student) =
            super::personal_words(self.store.as_ref(), &account, &self.settings.university).await?;
        if let Err(problem) = self.policy.check(password, confirmation, &context) {
            return Ok(Completion::Refused(problem));
        }
        let hash = self.passwords.hash(password).await?;
        let mut contacts = Vec::new();
        if let Some(email) = &row.email {
            contacts.push(NewContact {
                kind: "email",
                value: email.clone(),
                confirmed: true,
            });
        }
        if let Some(phone) = &row.phone {
            contacts.push(NewContact {
                kind: "phone",
                value: phone.clone(),
                confirmed: false,
            });
        }
        let won = self
            .store
            .complete_activation(&account.id, &hash, &contacts, self.clock.unix_now())
            .await?;
        if !won {
            return Ok(Completion::AlreadyActive);
        }
        self.audit
            .record(
                Actor::User,
                AuditAction::AccountActivated,
                Some(account.id.clone()),
                serde_json::json!({"login": account.login, "by": if row.dossier_number.is_some() { "dossier" } else { "staff_code" }}),
            )
            .await?;
        let domain = if student.is_some() {
            &self.settings.student_domain
        } else {
            &self.settings.staff_domain
        };
        Ok(Completion::Activated {
            address: format!("{}@{domain}", account.login),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_and_international_mobiles_become_e164() {
        for (typed, expected) in [
            ("06 12 34 56 78", Some("+33612345678")),
            ("06.12.34.56.78", Some("+33612345678")),
            ("+33 6 12 34 56 78", Some("+33612345678")),
            ("0033612345678", Some("+33612345678")),
            ("+49 151 23456789", Some("+4915123456789")),
            ("0612", None),
            ("+33 6 12 34 56 7a", None),
            ("", None),
            ("612345678", None),
        ] {
            assert_eq!(normalise_phone(typed).as_deref(), expected, "{typed}");
        }
    }

    #[test]
    fn code_digests_depend_on_the_browser_token() {
        let a = SecretToken::new("token-a".into());
        let b = SecretToken::new("token-b".into());
        assert_eq!(code_digest(&a, "123456"), code_digest(&a, "123456"));
        assert_ne!(code_digest(&a, "123456"), code_digest(&b, "123456"));
        assert_ne!(code_digest(&a, "123456"), code_digest(&a, "123457"));
    }
}
