//! The master key and authenticated encryption of secrets at rest.
//!
//! The master key is 256 random bits in a file of the key directory (mode 0600), shared by every
//! node; the database never holds it, only a fingerprint that lets a node detect a wrong or
//! replaced key before it reads anything. Secrets are sealed with XChaCha20-Poly1305: its 192-bit
//! nonces are drawn at random per message, so uniqueness needs no counter shared between nodes.
//! The associated data names what the secret is (e.g. the key id), so a sealed value copied onto
//! another row does not open.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::entropy::{Entropy, EntropyExt};

/// Format version of a sealed value, stored as its first byte.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const FINGERPRINT_LABEL: &[u8] = b"sesame master key fingerprint v1";

/// Why the master key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "the master key file {path} is missing, but the database already holds secrets sealed with a \
         master key. Restore the file from your backup (or set keys.master_key_file to where it is). \
         Sésame will not create a new one: that would make every stored secret unreadable."
    )]
    Missing { path: PathBuf },
    #[error(
        "the master key in {path} is not the one this database was sealed with (fingerprints differ). \
         Put back the original master key file; every node must use the same one."
    )]
    Mismatch { path: PathBuf },
    #[error("the master key file {path} is malformed: expected 64 hexadecimal characters")]
    Malformed { path: PathBuf },
    #[error("cannot read or write the master key file {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// The 256-bit key that seals secrets at rest. Its bytes never leave this module.
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Failure to open a sealed value: wrong key, wrong context, or tampering.
#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened (wrong master key, or the stored value was altered)")]
pub struct UnsealError;

impl MasterKey {
    /// Reads the key file; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Self>, MasterKeyError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Zeroizing::new(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(MasterKeyError::Io {
                    path: path.into(),
                    reason: e.to_string(),
                });
            }
        };
        let hex = text.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MasterKeyError::Malformed { path: path.into() });
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| MasterKeyError::Malformed { path: path.into() })?;
        }
        Ok(Some(Self { bytes }))
    }

    /// Creates a new key file (never overwriting an existing one), readable by its owner only.
    pub fn create(path: &Path, entropy: &dyn Entropy) -> Result<Self, MasterKeyError> {
        let io = |e: std::io::Error| MasterKeyError::Io {
            path: path.into(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(io)?;
        }
        let bytes = Zeroizing::new(entropy.bytes::<32>());
        let hex: Zeroizing<String> =
            Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(hex.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { bytes })
    }

    /// A public fingerprint of the key (HMAC of a fixed label), stored to detect a wrong key.
    pub fn fingerprint(&self) -> Vec<u8> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.as_ref());
        hmac::sign(&key, FINGERPRINT_LABEL).as_ref().to_vec()
    }

    /// Encrypts `secret`, bound to `context`.
    pub fn seal(&self, entropy: &dyn Entropy, context: &str, secret: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(self.bytes.as_ref().into());
        let nonce = entropy.bytes::<NONCE_LEN>();
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts a value made by [`MasterKey::seal`] with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEALED_V1 {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.bytes.as_ref().into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| UnsealError)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let entropy = SeededEntropy::new(1);
        let key = MasterKey::create(&dir.path().join("k/master.key"), &entropy).unwrap();
        let sealed = key.seal(&entropy, "signing-key:abc", b"private bytes");
        assert_eq!(
            key.open("signing-key:abc", &sealed).unwrap().as_slice(),
            b"private bytes"
        );
        assert!(key.open("signing-key:other", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open("signing-key:abc", &tampered).is_err());
        let other = MasterKey::create(&dir.path().join("other.key"), &entropy).unwrap();
        assert!(other.open("signing-key:abc", &sealed).is_err());
        assert_ne!(key.fingerprint(), other.fingerprint());
        // Two seals of the same secret differ: fresh nonces.
        assert_ne!(
            sealed,
            key.seal(&entropy, "signing-key:abc", b"private bytes")
        );
    }

    #[test]
    fn key_file_is_private_round_trips_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        assert!(MasterKey::read(&path).unwrap().is_none());
        let created = MasterKey::create(&path, &SeededEntropy::new(2)).unwrap();
        let read = MasterKey::read(&path).unwrap().unwrap();
        assert_eq!(created.fingerprint(), read.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            MasterKey::create(&path, &SeededEntropy::new(3)),
            Err(MasterKeyError::Io { .. })
        ));
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            MasterKey::read(&path),
            Err(MasterKeyError::Malformed { .. })
        ));
    }
}
