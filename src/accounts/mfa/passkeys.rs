//! Passkeys (W3C WebAuthn Level 2) through webauthn-rs: registration from `/account`, and
//! assertion as a second factor (the account's credentials are offered) or as a passwordless
//! login (discoverable credentials: the authenticator names the account).
//!
//! The relying party id and origin come from the configured public URL, never from a request.
//! Ceremony state is kept server-side in `one_time` (single use, 5 minutes); the browser gets only
//! the options and a reference.

use std::time::Duration;

use base64::Engine as _;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

use super::{Mfa, SecurityEvent, StoredPasskey};
use crate::audit::{Actor, AuditAction};
use crate::locale::Locale;
use crate::one_time::SecretToken;
use crate::storage::StorageError;

const CEREMONY_LIFETIME: Duration = Duration::from_secs(5 * 60);
const REGISTRATION: &str = "mfa.passkey.registration";
const AUTHENTICATION: &str = "mfa.passkey.authentication";
/// Longest passkey name kept.
const MAX_NAME_CHARS: usize = 60;

/// A passkey ceremony that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("passkeys are not available on this server")]
    Unavailable,
    #[error("the passkey ceremony expired or was already used")]
    Expired,
    #[error("the passkey was refused: {0}")]
    Refused(String),
    #[error("this passkey is already registered")]
    AlreadyRegistered,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The relying party (webauthn-rs), built once from the public URL.
pub struct Passkeys {
    webauthn: Webauthn,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passkeys")
    }
}

impl Passkeys {
    /// WebAuthn §5.1.3 / §13.4.9: the RP id is the public URL's host, the origin its origin.
    /// Browsers refuse an IP address as RP id: such a deployment has no passkeys.
    pub fn new(public_url: &url::Url, name: &str) -> Result<Self, String> {
        let host = public_url
            .host_str()
            .ok_or_else(|| "the public URL has no host".to_string())?;
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return Err(format!(
                "passkeys need a host name, not the IP address {host}"
            ));
        }
        let origin = url::Url::parse(&public_url.origin().ascii_serialization())
            .map_err(|e| e.to_string())?;
        let webauthn = WebauthnBuilder::new(host, &origin)
            .and_then(|b| b.rp_name(name).build())
            .map_err(|e| format!("WebAuthn relying party: {e}"))?;
        Ok(Self { webauthn })
    }
}

/// A passkey name as kept: printable, trimmed, at most 60 characters.
pub fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PendingRegistration {
    account_id: String,
    user_handle: String,
    name: String,
    state: PasskeyRegistration,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum PendingAuthentication {
    /// A second factor: the account's own credentials were offered.
    Account {
        account_id: String,
        state: PasskeyAuthentication,
    },
    /// A passwordless login: the authenticator names the account.
    Discoverable { state: DiscoverableAuthentication },
}

/// A ceremony's options for `navigator.credentials.*`, and the reference to send back.
#[derive(Debug)]
pub struct Ceremony {
    pub options: serde_json::Value,
    pub reference: SecretToken,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn refused(error: impl std::fmt::Display) -> PasskeyError {
    PasskeyError::Refused(error.to_string())
}

fn corrupt(error: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("passkey: {error}"))
}

impl Mfa {
    fn relying_party(&self) -> Result<&Webauthn, PasskeyError> {
        self.passkeys
            .as_ref()
            .map(|p| &p.webauthn)
            .ok_or(PasskeyError::Unavailable)
    }

    /// Starts registering a passkey for an account.
    pub async fn start_passkey_registration(
        &self,
        account_id: &str,
        login: &str,
        display_name: &str,
        name: &str,
    ) -> Result<Ceremony, PasskeyError> {
        let webauthn = self.relying_party()?;
        let existing = self.store.list_passkeys(account_id).await?;
        let user_handle = match existing.first() {
            Some(passkey) => passkey.user_handle.clone(),
            None => {
                let mut handle = [0u8; 16];
                self.entropy.fill(&mut handle);
                handle.to_vec()
            }
        };
        let uuid = Uuid::from_slice(&user_handle).map_err(corrupt)?;
        let exclude = existing
            .iter()
            .map(|p| p.credential_id.clone())
            .collect::<Vec<_>>();
        let (challenge, state) = webauthn
            .start_passkey_registration(uuid, login, display_name, Some(exclude))
            .map_err(refused)?;
        let mut options = serde_json::to_value(&challenge).map_err(corrupt)?;
        // A passkey that can name its account (a discoverable credential) is what passwordless
        // login needs; webauthn-rs asks for none, so ask for one when the authenticator can.
        if let Some(selection) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(|s| s.as_object_mut())
        {
            selection.insert("residentKey".into(), "preferred".into());
            selection.insert("requireResidentKey".into(), false.into());
        }
        let name = match clean_name(name) {
            n if n.is_empty() => "Passkey".to_string(),
            n => n,
        };
        let payload = serde_json::to_string(&PendingRegistration {
            account_id: account_id.to_string(),
            user_handle: b64(&user_handle),
            name,
            state,
        })
        .map_err(corrupt)?;
        let reference = self
            .one_time
            .issue(REGISTRATION, &payload, CEREMONY_LIFETIME)
            .await?;
        Ok(Ceremony { options, reference })
    }

    /// Finishes a registration with the browser's answer (JSON).
    pub async fn finish_passkey_registration(
        &self,
        account_id: &str,
        reference: &SecretToken,
        response: &str,
        locale: Locale,
    ) -> Result<StoredPasskey, PasskeyError> {
        let webauthn = self.relying_party()?;
        let pending = self
            .one_time
            .redeem(REGISTRATION, reference)
            .await?
            .and_then(|p| serde_json::from_str::<PendingRegistration>(&p).ok())
            .filter(|p| p.account_id == account_id)
            .ok_or(PasskeyError::Expired)?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_str(response).map_err(refused)?;
        let passkey = webauthn
            .finish_passkey_registration(&credential, &pending.state)
            .map_err(refused)?;
        let now = self.clock.unix_now();
        let stored = StoredPasskey {
            id: self.new_id(),
            account_id: account_id.to_string(),
            user_handle: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&pending.user_handle)
                .map_err(corrupt)?,
            credential_id: AsRef::<[u8]>::as_ref(passkey.cred_id()).to_vec(),
            name: pending.name,
            passkey: serde_json::to_string(&passkey).map_err(corrupt)?,
            created_at: now,
            last_used_at: None,
            flagged_at: None,
        };
        match self.store.insert_passkey(&stored).await {
            Err(StorageError::Conflict) => return Err(PasskeyError::AlreadyRegistered),
            other => other?,
        }
        self.audit
            .record(
                Actor::User,
                AuditAction::MfaFactorAdded,
                Some(account_id.to_string()),
                serde_json::json!({"factor": "passkey", "passkey": stored.id}),
            )
            .await?;
        self.notify(account_id, SecurityEvent::PasskeyAdded, locale)
            .await?;
        Ok(stored)
    }

    /// Starts an assertion with the account's passkeys (second factor); `None` if it has none.
    pub async fn start_passkey_authentication(
        &self,
        account_id: &str,
    ) -> Result<Option<Ceremony>, PasskeyError> {
        let webauthn = self.relying_party()?;
        let passkeys: Vec<Passkey> = self
            .store
            .list_passkeys(account_id)
            .await?
            .iter()
            .filter(|p| p.flagged_at.is_none())
            .filter_map(|p| serde_json::from_str(&p.passkey).ok())
            .collect();
        if passkeys.is_empty() {
            return Ok(None);
        }
        let (challenge, state) = webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(refused)?;
        let pending = PendingAuthentication::Account {
            account_id: account_id.to_string(),
            state,
        };
        self.ceremony(serde_json::to_value(&challenge).map_err(corrupt)?, &pending)
            .await
            .map(Some)
    }

    /// Starts a passwordless assertion: any discoverable passkey of this site.
    pub async fn start_discoverable_authentication(&self) -> Result<Ceremony, PasskeyError> {
        let webauthn = self.relying_party()?;
        let (challenge, state) = webauthn
            .start_discoverable_authentication()
            .map_err(refused)?;
        let mut options = serde_json::to_value(&challenge).map_err(corrupt)?;
        // A button press, not the autofill ("conditional") flavour: the browser shows its dialog.
        if let Some(o) = options.as_object_mut() {
            o.remove("mediation");
        }
        self.ceremony(options, &PendingAuthentication::Discoverable { state })
            .await
    }

    async fn ceremony(
        &self,
        options: serde_json::Value,
        pending: &PendingAuthentication,
    ) -> Result<Ceremony, PasskeyError> {
        let payload = serde_json::to_string(pending).map_err(corrupt)?;
        let reference = self
            .one_time
            .issue(AUTHENTICATION, &payload, CEREMONY_LIFETIME)
            .await?;
        Ok(Ceremony { options, reference })
    }

    /// Finishes an assertion (the browser's answer, JSON). The account it proves; for a second
    /// factor, only `expected_account` may be proved. The ceremony is used up whatever happens.
    pub async fn finish_passkey_authentication(
        &self,
        reference: &SecretToken,
        response: &str,
        expected_account: Option<&str>,
        locale: Locale,
    ) -> Result<String, PasskeyError> {
        let webauthn = self.relying_party()?;
        let pending = self
            .one_time
            .redeem(AUTHENTICATION, reference)
            .await?
            .and_then(|p| serde_json::from_str::<PendingAuthentication>(&p).ok())
            .ok_or(PasskeyError::Expired)?;
        let credential: PublicKeyCredential = serde_json::from_str(response).map_err(refused)?;
        let credential_id = credential.get_credential_id().to_vec();
        let stored = self
            .store
            .find_passkey(&credential_id)
            .await?
            .ok_or_else(|| refused("unknown credential"))?;
        if stored.flagged_at.is_some() {
            return Err(refused("this passkey was flagged"));
        }
        let mut passkey: Passkey = serde_json::from_str(&stored.passkey).map_err(corrupt)?;
        let result = match pending {
            PendingAuthentication::Account { account_id, state } => {
                if stored.account_id != account_id || expected_account != Some(&account_id) {
                    return Err(refused("another account's passkey"));
                }
                webauthn.finish_passkey_authentication(&credential, &state)
            }
            PendingAuthentication::Discoverable { state } => {
                if expected_account.is_some_and(|a| a != stored.account_id) {
                    return Err(refused("another account's passkey"));
                }
                // The user handle the authenticator returned must be the account's own.
                let (uuid, _) = webauthn
                    .identify_discoverable_authentication(&credential)
                    .map_err(refused)?;
                if uuid.as_bytes().as_slice() != stored.user_handle.as_slice() {
                    return Err(refused("the user handle does not match"));
                }
                webauthn.finish_discoverable_authentication_v2(
                    &credential,
                    state,
                    DiscoverableKey::from(&passkey),
                )
            }
        };
        let result = match result {
            Ok(result) => result,
            // WebAuthn §6.1.1: a signature counter that did not grow signals a cloned
            // authenticator: the passkey is flagged and refused from now on.
            Err(WebauthnError::CredentialPossibleCompromise) => {
                let now = self.clock.unix_now();
                self.store.flag_passkey(&credential_id, now).await?;
                self.audit
                    .record(
                        Actor::System,
                        AuditAction::MfaPasskeyFlagged,
                        Some(stored.account_id.clone()),
                        serde_json::json!({"passkey": stored.id}),
                    )
                    .await?;
                self.notify(&stored.account_id, SecurityEvent::PasskeyFlagged, locale)
                    .await?;
                return Err(refused("the signature counter went backwards"));
            }
            Err(error) => return Err(refused(error)),
        };
        passkey.update_credential(&result);
        self.store
            .record_passkey_use(
                &stored.id,
                &serde_json::to_string(&passkey).map_err(corrupt)?,
                self.clock.unix_now(),
            )
            .await?;
        Ok(stored.account_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  Mon téléphone \n"), "Mon téléphone");
        assert_eq!(clean_name(&"x".repeat(100)).chars().count(), 60);
        assert_eq!(clean_name("\u{7}"), "");
    }

    #[test]
    fn the_relying_party_needs_a_host_name() {
        let ok = Passkeys::new(&url::Url::parse("https://sso.uca.fr/").unwrap(), "UCA");
        assert!(ok.is_ok());
        let local = Passkeys::new(&url::Url::parse("http://localhost:8080/").unwrap(), "UCA");
        assert!(local.is_ok(), "{:?}", local.err());
        let ip = Passkeys::new(&url::Url::parse("http://127.0.0.1:8080/").unwrap(), "UCA");
        assert!(ip.is_err());
    }
}
