//! Mail: messages rendered from templates (French and English, text and HTML), written to a
//! durable outbox in the same transaction as the action that causes them, and sent by a job with
//! retries (DESIGN.md §4 "Mail and SMS"; ADR 0011).
//!
//! - [`messages`] renders each mail from `templates/mail/<kind>.<fr|en>.<txt|html>`;
//! - [`MailStore`] is the outbox port (the `mail_outbox` table);
//! - [`MailTransport`] carries a mail out: [`transport::SmtpTransport`] (lettre) or
//!   [`transport::FileTransport`] (`.eml` files, the demo default);
//! - [`outbox::OutboxSender`] is the job: claim due mails, send, record the outcome, back off;
//! - [`sms`] is the SMS port and its file outbox.

pub mod messages;
pub mod outbox;
pub mod sms;
pub mod transport;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;

use crate::storage::StorageError;

/// One mailbox address, validated: a single `local@domain`, no whitespace or control characters
/// (so nothing can be smuggled into a header), at most 254 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a single valid e-mail address")]
pub struct AddressError(pub String);

impl EmailAddress {
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let trimmed = text.trim();
        let refuse = || {
            AddressError(
                trimmed
                    .chars()
                    .take(80)
                    .collect::<String>()
                    .escape_debug()
                    .to_string(),
            )
        };
        if trimmed.is_empty()
            || trimmed.len() > 254
            || trimmed.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(
                        c,
                        ',' | ';' | '<' | '>' | '"' | '(' | ')' | '[' | ']' | '\\'
                    )
            })
        {
            return Err(refuse());
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(refuse)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-'])
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(refuse());
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part, lower-case.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.0)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a mail is about (stored with it, for metrics and support).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    /// The 6-digit code that confirms a contact address during activation.
    ConfirmationCode,
    /// The link that resets a forgotten password.
    PasswordReset,
    /// Notice that the password was changed or reset.
    PasswordChanged,
    /// Notice that the account hard-locked after too many wrong passwords.
    AccountLocked,
    /// Notice of a change to the account's security: a second factor added or removed, a
    /// recovery code used, new recovery codes, the factors reset by the helpdesk.
    SecurityNotice,
    /// The link that, with an SMS code, removes lost second factors.
    FactorRecovery,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfirmationCode => "confirmation_code",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::AccountLocked => "account_locked",
            Self::SecurityNotice => "security_notice",
            Self::FactorRecovery => "factor_recovery",
        }
    }
}

impl FromStr for MailKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "confirmation_code" => Ok(Self::ConfirmationCode),
            "password_reset" => Ok(Self::PasswordReset),
            "password_changed" => Ok(Self::PasswordChanged),
            "account_locked" => Ok(Self::AccountLocked),
            "security_notice" => Ok(Self::SecurityNotice),
            "factor_recovery" => Ok(Self::FactorRecovery),
            other => Err(format!("unknown mail kind `{other}`")),
        }
    }
}

/// A rendered mail, ready for the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub kind: MailKind,
    pub to: EmailAddress,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl fmt::Debug for OutgoingMail {
    // Security: bodies carry codes and links; they never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("kind", &self.kind)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// A mail taken from the outbox by a sender, leased to it until `locked_until`.
#[derive(Clone, PartialEq, Eq)]
pub struct QueuedMail {
    pub id: i64,
    pub mail: OutgoingMail,
    /// When it was queued (Unix seconds).
    pub created_at: i64,
    /// Attempts so far, this one included (the claim counts it).
    pub attempts: u32,
}

impl fmt::Debug for QueuedMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedMail")
            .field("id", &self.id)
            .field("mail", &self.mail)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What became of a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFailure {
    /// When the attempt failed (Unix seconds).
    pub at: i64,
    /// The next attempt, or `None` to give up (recorded as `given_up_at = at`).
    pub retry_at: Option<i64>,
    /// Why, for operators (never the body).
    pub error: String,
}

/// The outbox port: the `mail_outbox` table.
///
/// Security: queued bodies hold codes and links, so the store clears them once a mail is sent or
/// given up.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Queues a mail, due at once; returns its id. Code that queues a mail as part of a larger
    /// change uses the backend's `store::<backend>::mail::insert_mail` inside its transaction.
    async fn insert_mail(&self, mail: &OutgoingMail, now: i64) -> Result<i64, StorageError>;

    /// Atomically takes up to `limit` due mails (queued, `next_attempt_at <= now`, not leased or
    /// lease ended), oldest due first: leases each until `locked_until` and counts the attempt.
    /// Of concurrent claimers (on any node), each mail goes to at most one.
    async fn claim_due_mails(
        &self,
        now: i64,
        locked_until: i64,
        limit: u32,
    ) -> Result<Vec<QueuedMail>, StorageError>;

    /// Records a mail as sent (never claimed again) and clears its bodies.
    async fn mark_mail_sent(&self, id: i64, now: i64) -> Result<(), StorageError>;

    /// Records a failed attempt: releases the lease and sets the next attempt, or gives up.
    async fn mark_mail_failed(&self, id: i64, failure: &MailFailure) -> Result<(), StorageError>;

    /// Mails still queued (neither sent nor given up): the outbox depth.
    async fn count_queued_mails(&self) -> Result<u64, StorageError>;

    /// Deletes mails sent or given up before `before`; returns how many.
    async fn purge_finished_mails(&self, before: i64) -> Result<u64, StorageError>;
}

/// Why a transport could not deliver a mail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The relay (or the outbox directory) cannot be reached or written: every mail would fail
    /// alike, so the sender stops the batch and retries later.
    #[error("mail transport unavailable: {0}")]
    Unavailable(String),
    /// This mail failed for a reason that may pass (a 4xx answer): retry later.
    #[error("mail deferred: {0}")]
    Temporary(String),
    /// The relay refused this mail for good (a 5xx answer): retrying cannot help.
    #[error("mail rejected: {0}")]
    Rejected(String),
}

/// Carries a mail out of Sésame.
#[async_trait]
pub trait MailTransport: Send + Sync {
    /// Delivers one mail, or says why not.
    async fn send(&self, mail: &QueuedMail) -> Result<(), SendError>;

    /// `smtp` or `file`, for logs and metrics.
    fn name(&self) -> &'static str;
}

/// The first retry waits this long; each next one twice as long, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(60);
/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// A mail still unsent this long after it was queued is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(2 * 24 * 3600);

/// The wait after the `attempts`-th failed attempt: 1 min, 2, 4, 8, 16, 32, then 1 h.
pub fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY)
}

/// When to try again after the `attempts`-th attempt failed at `now`, for a mail queued at
/// `created_at`; `None` once [`GIVE_UP_AFTER`] has passed.
pub fn next_attempt_at(created_at: i64, attempts: u32, now: i64) -> Option<i64> {
    let deadline = created_at.saturating_add(GIVE_UP_AFTER.as_secs() as i64);
    (now < deadline).then(|| {
        now.saturating_add(retry_delay(attempts).as_secs() as i64)
            .min(deadline)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_to_an_hour() {
        let minutes: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0), FIRST_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn mails_are_given_up_two_days_after_they_were_queued() {
        let queued = 1_000_000;
        assert_eq!(next_attempt_at(queued, 1, queued + 5), Some(queued + 65));
        assert_eq!(
            next_attempt_at(queued, 7, queued + 100),
            Some(queued + 3700)
        );
        let two_days = 2 * 24 * 3600;
        // The last retry is never scheduled past the deadline, and the deadline gives up.
        assert_eq!(
            next_attempt_at(queued, 40, queued + two_days - 10),
            Some(queued + two_days)
        );
        assert_eq!(next_attempt_at(queued, 41, queued + two_days), None);
        // Attempts over two days, once a failure per due time: about 50 tries, then give up.
        let (mut now, mut attempts) = (queued, 1);
        while let Some(next) = next_attempt_at(queued, attempts, now) {
            now = next;
            attempts += 1;
        }
        assert_eq!(now, queued + two_days);
        assert!((45..=55).contains(&attempts), "{attempts}");
    }

    #[test]
    fn mail_kinds_round_trip_through_their_stored_names() {
        for kind in [
            MailKind::ConfirmationCode,
            MailKind::PasswordReset,
            MailKind::PasswordChanged,
            MailKind::AccountLocked,
            MailKind::SecurityNotice,
            MailKind::FactorRecovery,
        ] {
            assert_eq!(kind.as_str().parse::<MailKind>(), Ok(kind));
        }
        assert!("spam".parse::<MailKind>().is_err());
    }

    #[test]
    fn addresses_are_single_mailboxes_without_header_tricks() {
        assert_eq!(
            EmailAddress::parse(" Emilie.Dupre@Example.ORG ")
                .unwrap()
                .as_str(),
            "Emilie.Dupre@example.org"
        );
        for bad in [
            "",
            "no-at-sign",
            "a@b",
            "a@@b.fr",
            "a@b.fr\r\nBcc: x@y.fr",
            "a@b.fr, c@d.fr",
            "Name <a@b.fr>",
            "a b@c.fr",
            "a@-b.fr",
            "a@b..fr",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        assert!(EmailAddress::parse(&format!("{}@b.fr", "a".repeat(65))).is_err());
        assert_eq!(EmailAddress::parse("x@ÉTU.fr").unwrap().domain(), "étu.fr");
    }
}
