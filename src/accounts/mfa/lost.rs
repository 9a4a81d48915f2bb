//! Recovery of an account whose owner lost every second factor (DESIGN.md §5, "recovery with
//! MFA"): only after the right password, and only with two channels — a link mailed to the
//! confirmed addresses and a 6-digit code sent by SMS to the recovery phone. Both are needed;
//! the link is single use and lives 30 minutes. The factors are then removed (audited, every
//! contact told) and the person signs in with the password and enrols again. Without a confirmed
//! address and phone, only the helpdesk can help (`sesame admin reset-mfa`).

use std::sync::Arc;
use std::time::Duration;

use super::{Mfa, SecurityEvent};
use crate::audit::{Actor, AuditAction};
use crate::entropy::EntropyExt as _;
use crate::locale::Locale;
use crate::mail::sms::{PhoneNumber, SmsSender, factor_recovery_text};
use crate::mail::{EmailAddress, OutgoingMail};
use crate::one_time::SecretToken;
use crate::storage::StorageError;

const PURPOSE: &str = "mfa.lost_factors";
pub const LINK_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Builds the mail with the link: (locale, to, link, university, minutes valid).
pub type RecoveryLinkMailer =
    Arc<dyn Fn(Locale, &EmailAddress, &url::Url, &str, u32) -> OutgoingMail + Send + Sync>;

/// Where the recovery's two halves go.
pub struct LostFactorChannels {
    pub sms: Arc<dyn SmsSender>,
    pub link_mail: RecoveryLinkMailer,
    /// The page the link opens (`…/login/mfa/recover`), from the configured public URL.
    pub link_base: url::Url,
}

/// The answer to "I lost my second factors".
#[derive(Debug, PartialEq, Eq)]
pub enum LostFactorStart {
    /// The link and the code are on their way.
    Sent,
    /// No confirmed address, or no phone: the helpdesk only.
    NoTwoChannels,
}

/// The answer to the SMS code.
#[derive(Debug, PartialEq, Eq)]
pub enum LostFactorFinish {
    /// Every factor was removed.
    Done,
    Wrong,
    /// Expired, used or unknown link.
    Void,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PendingRecovery {
    account_id: String,
    salt: String,
    /// SHA-256 of `salt ‖ code`, hex.
    digest: String,
    locale: String,
}

fn digest(salt: &str, code: &str) -> String {
    aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{salt}{code}").as_bytes(),
    )
    .as_ref()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect()
}

impl Mfa {
    /// Sends the link and the code, for an account whose password was just checked.
    pub async fn start_lost_factor_recovery(
        &self,
        account_id: &str,
        locale: Locale,
    ) -> Result<LostFactorStart, StorageError> {
        let Some(channels) = &self.lost else {
            return Ok(LostFactorStart::NoTwoChannels);
        };
        let emails: Vec<EmailAddress> = self
            .confirmed(account_id, "email")
            .await?
            .iter()
            .filter_map(|e| EmailAddress::parse(e).ok())
            .collect();
        // The phone given at activation counts even unconfirmed (activation proves one code, by
        // mail or SMS, without knowing which): an SMS to a mistyped number is a code without
        // the link, which removes nothing.
        let phones: Vec<PhoneNumber> = self
            .contacts
            .list_recovery_contacts(account_id)
            .await?
            .iter()
            .filter(|c| c.kind == "phone")
            .filter_map(|c| PhoneNumber::parse(&c.value).ok())
            .collect();
        if emails.is_empty() || phones.is_empty() {
            return Ok(LostFactorStart::NoTwoChannels);
        }
        let code = format!(
            "{:06}",
            u32::from_le_bytes(self.entropy.bytes::<4>()) % 1_000_000
        );
        let salt = self.entropy.hex(16);
        let payload = serde_json::to_string(&PendingRecovery {
            account_id: account_id.to_string(),
            digest: digest(&salt, &code),
            salt,
            locale: locale.tag().to_string(),
        })
        .map_err(|e| StorageError::Corrupt(format!("lost factors: {e}")))?;
        let token = self
            .one_time
            .issue(PURPOSE, &payload, LINK_LIFETIME)
            .await?;
        let mut link = channels.link_base.clone();
        link.query_pairs_mut().append_pair("token", token.expose());
        let minutes = (LINK_LIFETIME.as_secs() / 60) as u32;
        for to in &emails {
            self.outbox
                .queue(&(channels.link_mail)(
                    locale,
                    to,
                    &link,
                    &self.university,
                    minutes,
                ))
                .await?;
        }
        let text = factor_recovery_text(locale, &code);
        for phone in &phones {
            if let Err(error) = channels.sms.send_sms(phone, &text).await {
                tracing::warn!(%error, "the lost-factor SMS was not sent");
            }
        }
        self.audit
            .record(
                Actor::User,
                AuditAction::MfaRecoveryStarted,
                Some(account_id.to_string()),
                serde_json::json!({"mails": emails.len(), "sms": phones.len()}),
            )
            .await?;
        Ok(LostFactorStart::Sent)
    }

    /// The account a live recovery link is for (without using it up).
    pub async fn lost_factor_account(
        &self,
        token: &SecretToken,
    ) -> Result<Option<String>, StorageError> {
        Ok(self
            .one_time
            .peek(PURPOSE, token)
            .await?
            .and_then(|p| serde_json::from_str::<PendingRecovery>(&p).ok())
            .map(|p| p.account_id))
    }

    /// The SMS code with the link: right, the link is used up and every factor removed.
    pub async fn finish_lost_factor_recovery(
        &self,
        token: &SecretToken,
        code: &str,
    ) -> Result<LostFactorFinish, StorageError> {
        let Some(pending) = self
            .one_time
            .peek(PURPOSE, token)
            .await?
            .and_then(|p| serde_json::from_str::<PendingRecovery>(&p).ok())
        else {
            return Ok(LostFactorFinish::Void);
        };
        let typed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let right = typed.len() == 6
            && typed.bytes().all(|b| b.is_ascii_digit())
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                digest(&pending.salt, &typed).as_bytes(),
                pending.digest.as_bytes(),
            )
            .is_ok();
        if !right {
            return Ok(LostFactorFinish::Wrong);
        }
        if self.one_time.redeem(PURPOSE, token).await?.is_none() {
            return Ok(LostFactorFinish::Void);
        }
        let removed = self.store.delete_factors(&pending.account_id).await?;
        self.audit
            .record(
                Actor::User,
                AuditAction::MfaReset,
                Some(pending.account_id.clone()),
                serde_json::json!({"by": "email link and SMS code", "removed": removed}),
            )
            .await?;
        let locale = match pending.locale.as_str() {
            "en" => Locale::En,
            _ => Locale::Fr,
        };
        self.notify(&pending.account_id, SecurityEvent::FactorsReset, locale)
            .await?;
        Ok(LostFactorFinish::Done)
    }
}
