//! Second factors (DESIGN.md §5): TOTP, passkeys and recovery codes — enrolment, checks, removal.
//! The login transaction (`login`) decides when a factor is asked; this room says whether one
//! passed.
//!
//! Security:
//! - TOTP (RFC 6238): 160-bit seeds from the injected CSPRNG, sealed with the master key (the
//!   database alone opens nothing); 6 digits, 30 s, ±1 step (§5.2); a time-step is accepted once
//!   per account, by one conditional `UPDATE` (the enrolment's step included), so a code seen
//!   over a shoulder or replayed by a proxy is refused.
//! - Recovery codes: 80 random bits each, stored as SHA-256, spent by one conditional `UPDATE`.
//! - Passkeys (W3C WebAuthn Level 2, through webauthn-rs): challenges kept server-side, single
//!   use (`one_time`), expiring; user verification required; a signature counter that goes
//!   backwards (§6.1.1, a cloned authenticator?) flags the passkey and refuses it.
//! - Every change of factor is audited and mailed to the recovery contacts.

pub mod codes;
pub mod lost;
pub mod passkeys;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;

use crate::accounts::AccountAdminStore;
use crate::audit::{Actor, AuditAction, Auditor};
use crate::clock::Clock;
use crate::entropy::{Entropy, EntropyExt};
use crate::keys::KeyRing;
use crate::locale::Locale;
use crate::mail::outbox::Outbox;
use crate::mail::{EmailAddress, OutgoingMail};
use crate::one_time::{OneTimeValues, SecretToken};
use crate::storage::StorageError;

pub use passkeys::{PasskeyError, Passkeys};

/// RFC 8176 §2 authentication method references.
pub const AMR_OTP: &str = "otp";
pub const AMR_HWK: &str = "hwk";
pub const AMR_MFA: &str = "mfa";

/// Whether a list of `amr` values is a multi-factor authentication: anything beyond a password.
pub fn is_multi_factor(amr: &[String]) -> bool {
    amr.iter().any(|f| f != crate::login::AMR_PASSWORD)
}

/// How long an enrolment (TOTP seed shown, passkey challenge) stays open.
const ENROLMENT_LIFETIME: Duration = Duration::from_secs(15 * 60);
const TOTP_ENROLMENT: &str = "mfa.totp.enrolment";
/// RFC 6238 §5.2: 30-second steps, one step of skew either way.
const TOTP_STEP: u64 = 30;
const TOTP_SKEW: u16 = 1;
const TOTP_DIGITS: u8 = 6;
/// RFC 4226 §4 recommends 160 bits.
const TOTP_SEED_BYTES: usize = 20;

/// A stored TOTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTotp {
    pub sealed_seed: Vec<u8>,
    /// The last time-step accepted (`unix time / 30`).
    pub last_step: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A stored passkey: the public credential as webauthn-rs serialises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    pub id: String,
    pub account_id: String,
    /// The WebAuthn user handle of the account (the same for all its passkeys).
    pub user_handle: Vec<u8>,
    pub credential_id: Vec<u8>,
    pub name: String,
    pub passkey: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub flagged_at: Option<i64>,
}

/// What an account has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FactorSummary {
    pub totp: bool,
    pub passkeys: u32,
    /// Unused recovery codes.
    pub recovery_codes: u32,
}

impl FactorSummary {
    /// Whether the account has a second factor (recovery codes are a fallback, not a factor).
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
}

/// The storage port of this room.
#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn factor_summary(&self, account_id: &str) -> Result<FactorSummary, StorageError>;
    async fn find_totp(&self, account_id: &str) -> Result<Option<StoredTotp>, StorageError>;
    /// Stores (or replaces) the TOTP of an account, with the step its confirmation used.
    async fn put_totp(
        &self,
        account_id: &str,
        sealed_seed: &[u8],
        step: i64,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Accepts `step` only if it is later than the last accepted one (one statement); whether
    /// it was.
    async fn use_totp_step(
        &self,
        account_id: &str,
        step: i64,
        now: i64,
    ) -> Result<bool, StorageError>;
    async fn delete_totp(&self, account_id: &str) -> Result<bool, StorageError>;
    /// Replaces every recovery code of an account (none: deletes them).
    async fn replace_recovery_codes(
        &self,
        account_id: &str,
        digests: &[[u8; 32]],
        now: i64,
    ) -> Result<(), StorageError>;
    /// Spends an unused code (one statement); whether it was one.
    async fn use_recovery_code(
        &self,
        account_id: &str,
        digest: &[u8],
        now: i64,
    ) -> Result<bool, StorageError>;
    /// [`StorageError::Conflict`] if the credential is registered already (to any account).
    async fn insert_passkey(&self, passkey: &StoredPasskey) -> Result<(), StorageError>;
    async fn list_passkeys(&self, account_id: &str) -> Result<Vec<StoredPasskey>, StorageError>;
    async fn find_passkey(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<StoredPasskey>, StorageError>;
    /// Records a use: the updated credential (counter) and the time.
    async fn record_passkey_use(
        &self,
        id: &str,
        passkey: &str,
        now: i64,
    ) -> Result<(), StorageError>;
    async fn flag_passkey(&self, credential_id: &[u8], now: i64) -> Result<(), StorageError>;
    async fn rename_passkey(
        &self,
        account_id: &str,
        id: &str,
        name: &str,
    ) -> Result<bool, StorageError>;
    async fn delete_passkey(&self, account_id: &str, id: &str) -> Result<bool, StorageError>;
    /// Deletes every factor of an account (TOTP, passkeys, recovery codes); how many rows.
    async fn delete_factors(&self, account_id: &str) -> Result<u64, StorageError>;
}

/// What the recovery contacts are told (the sentence of the security notice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    TotpAdded,
    TotpRemoved,
    PasskeyAdded,
    PasskeyRemoved,
    RecoveryCodesCreated,
    RecoveryCodeUsed,
    FactorsReset,
    PasskeyFlagged,
    ContactChanged,
    PasswordChanged,
}

impl SecurityEvent {
    pub fn sentence(self, locale: Locale) -> &'static str {
        use SecurityEvent::*;
        match (self, locale) {
            (TotpAdded, Locale::Fr) => {
                "une application d'authentification (code à 6 chiffres) a été ajoutée."
            }
            (TotpAdded, Locale::En) => "an authenticator app (6-digit codes) was added.",
            (TotpRemoved, Locale::Fr) => "l'application d'authentification a été retirée.",
            (TotpRemoved, Locale::En) => "the authenticator app was removed.",
            (PasskeyAdded, Locale::Fr) => "une clé d'accès a été ajoutée.",
            (PasskeyAdded, Locale::En) => "a passkey was added.",
            (PasskeyRemoved, Locale::Fr) => "une clé d'accès a été retirée.",
            (PasskeyRemoved, Locale::En) => "a passkey was removed.",
            (RecoveryCodesCreated, Locale::Fr) => {
                "de nouveaux codes de secours ont été créés (les anciens ne marchent plus)."
            }
            (RecoveryCodesCreated, Locale::En) => {
                "new recovery codes were created (the old ones no longer work)."
            }
            (RecoveryCodeUsed, Locale::Fr) => "un code de secours a été utilisé pour se connecter.",
            (RecoveryCodeUsed, Locale::En) => "a recovery code was used to sign in.",
            (FactorsReset, Locale::Fr) => {
                "toutes les méthodes de double authentification ont été retirées."
            }
            (FactorsReset, Locale::En) => "every two-step verification method was removed.",
            (PasskeyFlagged, Locale::Fr) => {
                "une clé d'accès a été refusée : elle a peut-être été copiée."
            }
            (PasskeyFlagged, Locale::En) => "a passkey was refused: it may have been copied.",
            (ContactChanged, Locale::Fr) => "les contacts de récupération ont été modifiés.",
            (ContactChanged, Locale::En) => "the recovery contacts were changed.",
            (PasswordChanged, Locale::Fr) => "le mot de passe a été changé.",
            (PasswordChanged, Locale::En) => "the password was changed.",
        }
    }
}

/// Builds a security notice: (locale, to, university, sentence).
pub type NoticeMailer =
    Arc<dyn Fn(Locale, &EmailAddress, &str, &str) -> OutgoingMail + Send + Sync>;

/// A TOTP enrolment in progress: what the page shows. The seed stays on the server, sealed.
pub struct TotpEnrolment {
    /// The form's reference to the enrolment (single use).
    pub reference: SecretToken,
    /// The seed in base32, for typing into an app.
    pub secret_base32: String,
    /// The `otpauth://` URI, also as a QR code (SVG).
    pub uri: String,
    pub qr_svg: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PendingTotp {
    account_id: String,
    sealed_seed: String,
}

/// The second-factor service.
pub struct Mfa {
    store: Arc<dyn MfaStore>,
    contacts: Arc<dyn AccountAdminStore>,
    keys: Arc<KeyRing>,
    one_time: Arc<OneTimeValues>,
    audit: Arc<Auditor>,
    outbox: Arc<Outbox>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    notice: NoticeMailer,
    university: String,
    passkeys: Option<Passkeys>,
    lost: Option<lost::LostFactorChannels>,
}

impl std::fmt::Debug for Mfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mfa")
    }
}

fn sealing_context(account_id: &str) -> String {
    format!("sesame totp seed {account_id}")
}

fn totp_of(seed: &[u8], issuer: &str, account: &str) -> Option<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(TOTP_DIGITS)
        .with_skew(TOTP_SKEW)
        .with_step_duration(TOTP_STEP)
        .with_secret(totp_rs::Secret::new(seed.to_vec().into_boxed_slice()))
        .with_issuer(Some(issuer.replace(':', " ")))
        .with_account_name(account.replace(':', " "))
        .build()
        .ok()
}

/// Only the digits of what was typed ("123 456" and "123456" are the same code); `None` unless
/// exactly six remain.
pub fn totp_digits(typed: &str) -> Option<String> {
    let digits: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == TOTP_DIGITS as usize && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

impl Mfa {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn MfaStore>,
        contacts: Arc<dyn AccountAdminStore>,
        keys: Arc<KeyRing>,
        one_time: Arc<OneTimeValues>,
        audit: Arc<Auditor>,
        outbox: Arc<Outbox>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        notice: NoticeMailer,
        university: String,
        passkeys: Option<Passkeys>,
    ) -> Self {
        Self {
            store,
            contacts,
            keys,
            one_time,
            audit,
            outbox,
            clock,
            entropy,
            notice,
            university,
            passkeys,
            lost: None,
        }
    }

    /// The channels of the recovery of lost factors (e-mail link plus SMS code).
    pub fn with_lost_factor_channels(mut self, channels: lost::LostFactorChannels) -> Self {
        self.lost = Some(channels);
        self
    }

    pub fn passkeys(&self) -> Option<&Passkeys> {
        self.passkeys.as_ref()
    }

    pub async fn summary(&self, account_id: &str) -> Result<FactorSummary, StorageError> {
        self.store.factor_summary(account_id).await
    }

    pub async fn totp(&self, account_id: &str) -> Result<Option<StoredTotp>, StorageError> {
        self.store.find_totp(account_id).await
    }

    /// Mails every recovery address of the account, and audits the change.
    pub async fn notify(
        &self,
        account_id: &str,
        event: SecurityEvent,
        locale: Locale,
    ) -> Result<(), StorageError> {
        for to in self.confirmed(account_id, "email").await? {
            if let Ok(to) = EmailAddress::parse(&to) {
                self.notify_address(&to, event, locale).await?;
            }
        }
        Ok(())
    }

    /// The confirmed recovery contacts of a kind (`email`, `phone`).
    async fn confirmed(&self, account_id: &str, kind: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .contacts
            .list_recovery_contacts(account_id)
            .await?
            .into_iter()
            .filter(|c| c.kind == kind && c.confirmed)
            .map(|c| c.value)
            .collect())
    }

    /// Mails one address (a former contact) the notice of `event`.
    pub async fn notify_address(
        &self,
        to: &EmailAddress,
        event: SecurityEvent,
        locale: Locale,
    ) -> Result<(), StorageError> {
        self.outbox
            .queue(&(self.notice)(
                locale,
                to,
                &self.university,
                event.sentence(locale),
            ))
            .await
            .map(|_| ())
    }

    async fn audited(
        &self,
        actor: Actor,
        action: AuditAction,
        account_id: &str,
        details: serde_json::Value,
    ) -> Result<(), StorageError> {
        self.audit
            .record(actor, action, Some(account_id.to_string()), details)
            .await
            .map(|_| ())
    }

    // ----- TOTP -----

    /// Starts a TOTP enrolment: a fresh seed, sealed on the server until the first code confirms
    /// it. An existing TOTP stays in force until then.
    pub async fn start_totp(
        &self,
        account_id: &str,
        login: &str,
    ) -> Result<TotpEnrolment, StorageError> {
        let mut seed = zeroize::Zeroizing::new(vec![0u8; TOTP_SEED_BYTES]);
        self.entropy.fill(&mut seed);
        let sealed = self.keys.seal_secret(&sealing_context(account_id), &seed);
        let payload = serde_json::to_string(&PendingTotp {
            account_id: account_id.to_string(),
            sealed_seed: base64::engine::general_purpose::STANDARD.encode(&sealed),
        })
        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let reference = self
            .one_time
            .issue(TOTP_ENROLMENT, &payload, ENROLMENT_LIFETIME)
            .await?;
        let totp = totp_of(&seed, &format!("Sésame {}", self.university), login)
            .ok_or_else(|| StorageError::Other("TOTP parameters refused".into()))?;
        let uri = totp
            .to_url()
            .map_err(|e| StorageError::Other(format!("otpauth URI: {e}")))?;
        let qr_svg = qrcode::QrCode::with_error_correction_level(&uri, qrcode::EcLevel::M)
            .map(|code| {
                code.render::<qrcode::render::svg::Color>()
                    .min_dimensions(200, 200)
                    .quiet_zone(true)
                    .build()
            })
            .map_err(|e| StorageError::Other(format!("QR code: {e}")))?;
        Ok(TotpEnrolment {
            reference,
            secret_base32: totp.secret().to_base32(),
            uri,
            qr_svg,
        })
    }

    /// Confirms an enrolment with a first code; whether it was accepted. The code's step is
    /// stored as used: the same code cannot then sign in.
    pub async fn confirm_totp(
        &self,
        account_id: &str,
        reference: &SecretToken,
        code: &str,
        locale: Locale,
    ) -> Result<bool, StorageError> {
        let Some(payload) = self.one_time.peek(TOTP_ENROLMENT, reference).await? else {
            return Ok(false);
        };
        let Ok(pending) = serde_json::from_str::<PendingTotp>(&payload) else {
            return Ok(false);
        };
        if pending.account_id != account_id {
            return Ok(false);
        }
        let Ok(sealed) = base64::engine::general_purpose::STANDARD.decode(&pending.sealed_seed)
        else {
            return Ok(false);
        };
        let Some(step) = self.check_code(account_id, &sealed, code)? else {
            return Ok(false);
        };
        // Single use of the enrolment itself.
        if self
            .one_time
            .redeem(TOTP_ENROLMENT, reference)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let now = self.clock.unix_now();
        self.store.put_totp(account_id, &sealed, step, now).await?;
        self.audited(
            Actor::User,
            AuditAction::MfaFactorAdded,
            account_id,
            serde_json::json!({"factor": "totp"}),
        )
        .await?;
        self.notify(account_id, SecurityEvent::TotpAdded, locale)
            .await?;
        Ok(true)
    }

    /// The step `code` matches at the clock's time (±1 step), if any.
    fn check_code(
        &self,
        account_id: &str,
        sealed: &[u8],
        code: &str,
    ) -> Result<Option<i64>, StorageError> {
        let Some(code) = totp_digits(code) else {
            return Ok(None);
        };
        let seed = self
            .keys
            .open_secret(&sealing_context(account_id), sealed)
            .map_err(|_| StorageError::Corrupt("a TOTP seed cannot be opened".into()))?;
        let Some(totp) = totp_of(&seed, "Sésame", "account") else {
            return Ok(None);
        };
        let now = self.clock.unix_now().max(0) as u64;
        // totp-rs compares in constant time and returns the matching step.
        Ok(totp.check(&code, now).map(|step| step as i64))
    }

    /// Checks a TOTP code at login: right, and its step never accepted before.
    pub async fn verify_totp(&self, account_id: &str, code: &str) -> Result<bool, StorageError> {
        let Some(stored) = self.store.find_totp(account_id).await? else {
            return Ok(false);
        };
        let Some(step) = self.check_code(account_id, &stored.sealed_seed, code)? else {
            return Ok(false);
        };
        // RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the OTP after the
        // successful validation has been issued for the first OTP".
        self.store
            .use_totp_step(account_id, step, self.clock.unix_now())
            .await
    }

    pub async fn remove_totp(
        &self,
        account_id: &str,
        locale: Locale,
    ) -> Result<bool, StorageError> {
        if !self.store.delete_totp(account_id).await? {
            return Ok(false);
        }
        self.audited(
            Actor::User,
            AuditAction::MfaFactorRemoved,
            account_id,
            serde_json::json!({"factor": "totp"}),
        )
        .await?;
        self.drop_codes_without_factor(account_id).await?;
        self.notify(account_id, SecurityEvent::TotpRemoved, locale)
            .await?;
        Ok(true)
    }

    /// Recovery codes back up a factor: without any factor left, they go too.
    async fn drop_codes_without_factor(&self, account_id: &str) -> Result<(), StorageError> {
        if !self.store.factor_summary(account_id).await?.any() {
            self.store
                .replace_recovery_codes(account_id, &[], self.clock.unix_now())
                .await?;
        }
        Ok(())
    }

    // ----- recovery codes -----

    /// Ten new codes (the old ones stop working); shown once, stored hashed.
    pub async fn new_recovery_codes(
        &self,
        account_id: &str,
        locale: Locale,
    ) -> Result<Vec<String>, StorageError> {
        let codes: Vec<String> = (0..codes::COUNT)
            .map(|_| codes::generate(self.entropy.as_ref()))
            .collect();
        let digests: Vec<[u8; 32]> = codes.iter().filter_map(|c| codes::digest(c)).collect();
        self.store
            .replace_recovery_codes(account_id, &digests, self.clock.unix_now())
            .await?;
        self.audited(
            Actor::User,
            AuditAction::MfaRecoveryCodesCreated,
            account_id,
            serde_json::json!({"count": digests.len()}),
        )
        .await?;
        self.notify(account_id, SecurityEvent::RecoveryCodesCreated, locale)
            .await?;
        Ok(codes)
    }

    /// Spends a recovery code at login; whether it was an unused one. The contacts are told.
    pub async fn use_recovery_code(
        &self,
        account_id: &str,
        code: &str,
        locale: Locale,
    ) -> Result<bool, StorageError> {
        let Some(digest) = codes::digest(code) else {
            return Ok(false);
        };
        if !self
            .store
            .use_recovery_code(account_id, &digest, self.clock.unix_now())
            .await?
        {
            return Ok(false);
        }
        self.audited(
            Actor::User,
            AuditAction::MfaRecoveryCodeUsed,
            account_id,
            serde_json::json!({}),
        )
        .await?;
        self.notify(account_id, SecurityEvent::RecoveryCodeUsed, locale)
            .await?;
        Ok(true)
    }

    // ----- passkeys (management; ceremonies are in `passkeys`) -----

    pub async fn list_passkeys(
        &self,
        account_id: &str,
    ) -> Result<Vec<StoredPasskey>, StorageError> {
        self.store.list_passkeys(account_id).await
    }

    pub async fn rename_passkey(
        &self,
        account_id: &str,
        id: &str,
        name: &str,
    ) -> Result<bool, StorageError> {
        let name = passkeys::clean_name(name);
        if name.is_empty() {
            return Ok(false);
        }
        self.store.rename_passkey(account_id, id, &name).await
    }

    pub async fn remove_passkey(
        &self,
        account_id: &str,
        id: &str,
        locale: Locale,
    ) -> Result<bool, StorageError> {
        if !self.store.delete_passkey(account_id, id).await? {
            return Ok(false);
        }
        self.audited(
            Actor::User,
            AuditAction::MfaFactorRemoved,
            account_id,
            serde_json::json!({"factor": "passkey", "passkey": id}),
        )
        .await?;
        self.drop_codes_without_factor(account_id).await?;
        self.notify(account_id, SecurityEvent::PasskeyRemoved, locale)
            .await?;
        Ok(true)
    }

    /// A fresh random id (passkeys).
    pub(crate) fn new_id(&self) -> String {
        self.entropy.token(12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_spaces_allowed() {
        assert_eq!(totp_digits("123456").as_deref(), Some("123456"));
        assert_eq!(totp_digits(" 123 456 ").as_deref(), Some("123456"));
        for bad in ["12345", "1234567", "12a456", "", "１２３４５６"] {
            assert_eq!(totp_digits(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc6238_vectors_at_six_digits() {
        // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890" (the last 6 digits).
        let totp = totp_of(b"12345678901234567890", "Sésame", "test").unwrap();
        for (time, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "{time}");
            assert_eq!(totp.check(code, time), Some(time / 30));
            // ±1 step accepted, ±2 refused.
            assert_eq!(totp.check(code, time + 30), Some(time / 30));
            assert_eq!(totp.check(code, time + 30 - (time % 30) + 30), None);
        }
    }

    #[test]
    fn only_a_password_is_not_multi_factor() {
        assert!(!is_multi_factor(&["pwd".into()]));
        assert!(is_multi_factor(&["pwd".into(), "otp".into()]));
        assert!(is_multi_factor(&["hwk".into()]));
    }
}
