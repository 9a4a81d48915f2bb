//! One-time values: short-lived secrets that may be redeemed exactly once (e-mail confirmation
//! codes, login-transaction and WebAuthn challenges, and any future single-use token that needs no
//! table of its own).
//!
//! Security: only the SHA-256 digest of the value is stored, so a database leak yields nothing
//! usable; redemption is one atomic `DELETE … RETURNING` guarded by the expiry, so of any number
//! of concurrent redeemers exactly one gets the payload (DESIGN.md §8).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::digest;

use crate::clock::Clock;
use crate::entropy::{Entropy, EntropyExt};
use crate::storage::StorageError;

/// A secret handed to a user or a client. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// A 128-bit token as [`EntropyExt::token`](crate::entropy::EntropyExt::token) writes it (22
    /// base64url characters, surrounding spaces ignored), from a link, a form or a cookie;
    /// `None` for anything else, before any lookup.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        (text.len() == 22
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(text.to_string()))
    }

    /// The value, to put in a URL, a form or a mail: never in a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The digest under which the value is stored.
    pub fn digest(&self) -> [u8; 32] {
        let hash = digest::digest(&digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(hash.as_ref());
        out
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken([redacted])")
    }
}

/// The storage port of this room.
#[async_trait]
pub trait OneTimeStore: Send + Sync {
    /// Stores a value; [`StorageError::Conflict`] if the same digest exists for the purpose.
    async fn insert_one_time_value(
        &self,
        purpose: &str,
        digest: &[u8],
        payload: &str,
        expires_at: i64,
    ) -> Result<(), StorageError>;

    /// Atomically deletes and returns the payload if the value exists and has not expired at
    /// `now`. Of concurrent callers, at most one gets `Some`.
    async fn redeem_one_time_value(
        &self,
        purpose: &str,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<String>, StorageError>;

    /// The payload of a live value, without consuming it.
    async fn find_one_time_value(
        &self,
        purpose: &str,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<String>, StorageError>;

    /// Deletes every value expired at `now`; returns how many.
    async fn purge_expired_one_time_values(&self, now: i64) -> Result<u64, StorageError>;
}

/// Issues and redeems one-time values.
pub struct OneTimeValues {
    store: Arc<dyn OneTimeStore>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

impl fmt::Debug for OneTimeValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeValues")
    }
}

impl OneTimeValues {
    pub fn new(
        store: Arc<dyn OneTimeStore>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Self {
        Self {
            store,
            clock,
            entropy,
        }
    }

    /// Issues a fresh 128-bit token for `purpose`, carrying `payload`, valid for `ttl`.
    pub async fn issue(
        &self,
        purpose: &str,
        payload: &str,
        ttl: Duration,
    ) -> Result<SecretToken, StorageError> {
        let token = SecretToken::new(self.entropy.token(16));
        let expires_at = self.clock.unix_now() + ttl.as_secs() as i64;
        self.store
            .insert_one_time_value(purpose, &token.digest(), payload, expires_at)
            .await?;
        Ok(token)
    }

    /// Redeems `token` for `purpose`: the payload the first time, `None` ever after (and for an
    /// unknown, expired or other-purpose token).
    pub async fn redeem(
        &self,
        purpose: &str,
        token: &SecretToken,
    ) -> Result<Option<String>, StorageError> {
        self.store
            .redeem_one_time_value(purpose, &token.digest(), self.clock.unix_now())
            .await
    }

    /// Reads `token`'s payload without redeeming it (to show where a form will lead).
    pub async fn peek(
        &self,
        purpose: &str,
        token: &SecretToken,
    ) -> Result<Option<String>, StorageError> {
        self.store
            .find_one_time_value(purpose, &token.digest(), self.clock.unix_now())
            .await
    }

    /// Removes expired values (run by the maintenance job on every node).
    pub async fn purge_expired(&self) -> Result<u64, StorageError> {
        self.store
            .purge_expired_one_time_values(self.clock.unix_now())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_tokens_parse() {
        assert!(SecretToken::parse(" AAAAAAAAAAAAAAAAAAAA-_ ").is_some());
        for bad in [
            "",
            "short",
            "AAAAAAAAAAAAAAAAAAAAA+",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA\u{e9}",
        ] {
            assert!(SecretToken::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn secret_tokens_never_debug_print_their_value() {
        let token = SecretToken::new("very-secret".into());
        assert!(!format!("{token:?}").contains("very-secret"));
        assert_eq!(token.expose(), "very-secret");
        assert_ne!(token.digest(), SecretToken::new("other".into()).digest());
    }
}
