//! Signing keys and the master key: generated on first start, shared by every node through the
//! database (private halves sealed with the master key), published in the JWKS, rotated
//! next → current → retired so that no relying party ever meets an unknown `kid` (DESIGN.md §7).
//!
//! This room owns the rules; `store/` keeps the rows ([`KeyStore`]), `keys::sealing` the master key
//! file, `keys::signing` the key material.

pub mod sealing;
pub mod signing;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::digest;
use base64::Engine as _;
use time::OffsetDateTime;

use crate::audit::{Actor, AuditAction, Auditor};
use crate::clock::{Clock, from_unix};
use crate::entropy::Entropy;
use crate::storage::StorageError;
use sealing::{MasterKey, MasterKeyError};
use signing::{KeyMaterialError, PrivateKey};

/// The JOSE signature algorithms Sésame keeps a key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA-2048: always available (OIDC Core §15.1).
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    pub const ALL: [SigningAlgorithm; 3] = [Self::Rs256, Self::Es256, Self::EdDsa];

    /// The JOSE `alg` name (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown signing algorithm `{s}` (expected RS256, ES256 or EdDSA)")
            })
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyState {
    /// Published in the JWKS, not yet signing.
    Next,
    /// Signs new tokens; one per algorithm.
    Current,
    /// No longer signs; still published until tokens it signed have expired.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Current => "current",
            Self::Retired => "retired",
        }
    }
}

impl FromStr for KeyState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "next" => Ok(Self::Next),
            "current" => Ok(Self::Current),
            "retired" => Ok(Self::Retired),
            other => Err(format!("unknown key state `{other}`")),
        }
    }
}

/// A signing key as stored: the private half sealed with the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub state: KeyState,
    pub private_key_sealed: Vec<u8>,
    pub public_key_der: Vec<u8>,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
}

impl fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The storage port of this room.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The fingerprint of the master key the database was sealed with, if any.
    async fn find_master_key_fingerprint(&self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Records the master key fingerprint; [`StorageError::Conflict`] if one is already there.
    async fn insert_master_key_fingerprint(
        &self,
        fingerprint: &[u8],
        at: i64,
    ) -> Result<(), StorageError>;
    /// Every signing key, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<StoredSigningKey>, StorageError>;
    /// Adds a key; [`StorageError::Conflict`] if the algorithm already has a key in that state
    /// (`next` or `current`): a concurrent node won.
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<(), StorageError>;
    /// In one transaction: retires the current key of `kid`'s algorithm and makes `kid` (a `next`
    /// key) current. `false` if `kid` was not a `next` key (another node promoted it).
    async fn promote_signing_key(&self, kid: &str, at: i64) -> Result<bool, StorageError>;
    /// Deletes retired keys retired before `cutoff`; returns their ids.
    async fn delete_signing_keys_retired_before(
        &self,
        cutoff: i64,
    ) -> Result<Vec<String>, StorageError>;
}

/// What can go wrong with keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Material(#[from] KeyMaterialError),
    #[error(
        "signing key {kid} cannot be opened with this master key (the stored key was altered, or \
         the master key was replaced)"
    )]
    Unsealable { kid: String },
    #[error(
        "a next {algorithm} key ({kid}) is already published and will sign from {due}; rotate \
         again after it has become current"
    )]
    RotationPending {
        algorithm: SigningAlgorithm,
        kid: String,
        due: String,
    },
}

/// Timing rules of rotation.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// A `next` key is published this long before it signs (≥ relying parties' JWKS cache time).
    pub publish_before_use: Duration,
    /// A retired key stays published this long.
    pub keep_retired: Duration,
}

/// A summary of a key for listings (no secret material).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: &'static str,
    pub state: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
    /// For a `next` key: when it becomes current.
    #[serde(with = "time::serde::rfc3339::option")]
    pub signs_from: Option<OffsetDateTime>,
}

/// A loaded key: metadata plus its parsed private half.
#[derive(Debug)]
pub struct LoadedKey {
    pub stored: StoredSigningKey,
    pub private_key: Arc<PrivateKey>,
}

/// What a maintenance pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub promoted: Vec<String>,
    pub deleted: Vec<String>,
}

/// The key ring: every signing key of the deployment, parsed once, refreshed from the database.
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    audit: Arc<Auditor>,
    policy: RotationPolicy,
    loaded: RwLock<Arc<Vec<LoadedKey>>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

/// The key id: the first 128 bits of SHA-256 over the public key, base64url.
fn key_id(public_key_der: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, public_key_der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16])
}

fn sealing_context(kid: &str) -> String {
    format!("sesame signing key {kid}")
}

impl KeyRing {
    /// Opens the key ring at start: checks (or, on the very first start, creates) the master key,
    /// makes sure every algorithm has a current key, and loads them all.
    ///
    /// Security: a missing or different master key file is an error whenever the database
    /// already holds sealed data; it is never silently replaced.
    pub async fn open(
        store: Arc<dyn KeyStore>,
        master_key_file: PathBuf,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        audit: Arc<Auditor>,
        policy: RotationPolicy,
    ) -> Result<Self, KeyError> {
        let recorded = store.find_master_key_fingerprint().await?;
        let master = match MasterKey::read(&master_key_file)? {
            Some(master) => master,
            None => {
                let has_keys = !store.list_signing_keys().await?.is_empty();
                if recorded.is_some() || has_keys {
                    return Err(MasterKeyError::Missing {
                        path: master_key_file,
                    }
                    .into());
                }
                let master = MasterKey::create(&master_key_file, entropy.as_ref())?;
                audit
                    .record(
                        Actor::System,
                        AuditAction::MasterKeyCreated,
                        Some(master_key_file.display().to_string()),
                        serde_json::json!({}),
                    )
                    .await?;
                master
            }
        };
        let fingerprint = master.fingerprint();
        let recorded = match recorded {
            Some(recorded) => recorded,
            None => match store
                .insert_master_key_fingerprint(&fingerprint, clock.unix_now())
                .await
            {
                Ok(()) => fingerprint.clone(),
                // Another node recorded its fingerprint first: compare with that one.
                Err(StorageError::Conflict) => store
                    .find_master_key_fingerprint()
                    .await?
                    .unwrap_or_default(),
                Err(e) => return Err(e.into()),
            },
        };
        if !constant_time_eq(&recorded, &fingerprint) {
            return Err(MasterKeyError::Mismatch {
                path: master_key_file,
            }
            .into());
        }
        let ring = Self {
            store,
            master,
            clock,
            entropy,
            audit,
            policy,
            loaded: RwLock::new(Arc::new(Vec::new())),
        };
        ring.ensure_current_keys().await?;
        ring.refresh().await?;
        Ok(ring)
    }

    /// Generates a current key for every algorithm that has none (first start).
    async fn ensure_current_keys(&self) -> Result<(), KeyError> {
        let existing = self.store.list_signing_keys().await?;
        for algorithm in SigningAlgorithm::ALL {
            let has_current = existing
                .iter()
                .any(|k| k.algorithm == algorithm && k.state == KeyState::Current);
            if !has_current {
                match self.add_key(algorithm, KeyState::Current).await {
                    Ok(_) | Err(KeyError::Storage(StorageError::Conflict)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn add_key(
        &self,
        algorithm: SigningAlgorithm,
        state: KeyState,
    ) -> Result<StoredSigningKey, KeyError> {
        let generated = tokio::task::spawn_blocking(move || signing::generate(algorithm))
            .await
            .map_err(|e| KeyMaterialError(format!("key generation task failed: {e}")))??;
        let kid = key_id(&generated.public_key_der);
        let now = self.clock.unix_now();
        let stored = StoredSigningKey {
            private_key_sealed: self.master.seal(
                self.entropy.as_ref(),
                &sealing_context(&kid),
                &generated.pkcs8,
            ),
            public_key_der: generated.public_key_der,
            kid,
            algorithm,
            state,
            created_at: now,
            activated_at: (state == KeyState::Current).then_some(now),
            retired_at: None,
        };
        self.store.insert_signing_key(&stored).await?;
        self.audit
            .record(
                Actor::System,
                AuditAction::SigningKeyGenerated,
                Some(stored.kid.clone()),
                serde_json::json!({"algorithm": algorithm.as_str(), "state": state.as_str()}),
            )
            .await?;
        Ok(stored)
    }

    /// Seals a secret of the deployment (a TOTP seed) with the master key; `context` binds it to
    /// its owner (a sealed value moved to another row does not open).
    pub fn seal_secret(&self, context: &str, secret: &[u8]) -> Vec<u8> {
        self.master.seal(self.entropy.as_ref(), context, secret)
    }

    /// Opens what [`KeyRing::seal_secret`] sealed with the same context.
    pub fn open_secret(
        &self,
        context: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, sealing::UnsealError> {
        self.master.open(context, sealed)
    }

    /// Reloads every key from the database (other nodes or the CLI may have rotated).
    pub async fn refresh(&self) -> Result<(), KeyError> {
        let stored = self.store.list_signing_keys().await?;
        let mut loaded = Vec::with_capacity(stored.len());
        let previous = self.snapshot();
        for key in stored {
            // Keys already parsed keep their parsed form (parsing once is what keeps signing
            // fast); only new rows are opened. Their state may have changed: take the new row.
            let private_key = match previous.iter().find(|l| l.stored.kid == key.kid) {
                Some(same) => same.private_key.clone(),
                None => Arc::new(signing::parse(key.algorithm, &self.open_private(&key)?)?),
            };
            loaded.push(LoadedKey {
                stored: key,
                private_key,
            });
        }
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    fn open_private(
        &self,
        key: &StoredSigningKey,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        self.master
            .open(&sealing_context(&key.kid), &key.private_key_sealed)
            .map_err(|_| KeyError::Unsealable {
                kid: key.kid.clone(),
            })
    }

    /// The keys as last loaded.
    pub fn snapshot(&self) -> Arc<Vec<LoadedKey>> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The key that signs for `algorithm` now.
    pub fn current(&self, algorithm: SigningAlgorithm) -> Option<String> {
        self.snapshot()
            .iter()
            .find(|k| k.stored.algorithm == algorithm && k.stored.state == KeyState::Current)
            .map(|k| k.stored.kid.clone())
    }

    /// Summaries of every key, for `sesame keys list`.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.snapshot()
            .iter()
            .map(|k| info(&k.stored, self.policy))
            .collect()
    }

    /// Publishes a new `next` key for each of `algorithms`. It signs only once promoted, after
    /// `publish_before_use`, so relying parties have fetched it before they meet it.
    pub async fn rotate(
        &self,
        algorithms: &[SigningAlgorithm],
        actor: Actor,
    ) -> Result<Vec<KeyInfo>, KeyError> {
        let existing = self.store.list_signing_keys().await?;
        for algorithm in algorithms {
            if let Some(pending) = existing
                .iter()
                .find(|k| k.algorithm == *algorithm && k.state == KeyState::Next)
            {
                let due = from_unix(pending.created_at) + self.policy.publish_before_use;
                return Err(KeyError::RotationPending {
                    algorithm: *algorithm,
                    kid: pending.kid.clone(),
                    due: crate::clock::rfc3339(due),
                });
            }
        }
        let mut created = Vec::new();
        for algorithm in algorithms {
            let stored = self.add_key(*algorithm, KeyState::Next).await?;
            self.audit
                .record(
                    actor.clone(),
                    AuditAction::SigningKeyRotationStarted,
                    Some(stored.kid.clone()),
                    serde_json::json!({"algorithm": algorithm.as_str()}),
                )
                .await?;
            created.push(info(&stored, self.policy));
        }
        self.refresh().await?;
        Ok(created)
    }

    /// Promotes `next` keys that have been published long enough and deletes retired keys past
    /// their keep time. Safe to run on every node at once: each step is a conditional update.
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport, KeyError> {
        let now = self.clock.now();
        let mut report = MaintenanceReport::default();
        for key in self.store.list_signing_keys().await? {
            let due = from_unix(key.created_at) + self.policy.publish_before_use;
            if key.state == KeyState::Next
                && due <= now
                && self
                    .store
                    .promote_signing_key(&key.kid, now.unix_timestamp())
                    .await?
            {
                self.audit
                    .record(
                        Actor::System,
                        AuditAction::SigningKeyPromoted,
                        Some(key.kid.clone()),
                        serde_json::json!({"algorithm": key.algorithm.as_str()}),
                    )
                    .await?;
                report.promoted.push(key.kid);
            }
        }
        let cutoff = now - self.policy.keep_retired;
        let deleted = self
            .store
            .delete_signing_keys_retired_before(cutoff.unix_timestamp())
            .await?;
        for kid in &deleted {
            self.audit
                .record(
                    Actor::System,
                    AuditAction::SigningKeyDeleted,
                    Some(kid.clone()),
                    serde_json::json!({}),
                )
                .await?;
        }
        report.deleted = deleted;
        self.refresh().await?;
        Ok(report)
    }
}

fn info(key: &StoredSigningKey, policy: RotationPolicy) -> KeyInfo {
    KeyInfo {
        kid: key.kid.clone(),
        algorithm: key.algorithm.as_str(),
        state: key.state.as_str(),
        created_at: from_unix(key.created_at),
        activated_at: key.activated_at.map(from_unix),
        retired_at: key.retired_at.map(from_unix),
        signs_from: (key.state == KeyState::Next)
            .then(|| from_unix(key.created_at) + policy.publish_before_use),
    }
}

/// Lists keys straight from the store, without the master key (for `sesame keys list`).
pub async fn list_stored(
    store: &dyn KeyStore,
    policy: RotationPolicy,
) -> Result<Vec<KeyInfo>, StorageError> {
    Ok(store
        .list_signing_keys()
        .await?
        .iter()
        .map(|k| info(k, policy))
        .collect())
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
