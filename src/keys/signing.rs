//! Signing key material: generation, parsing (once, at load) and signing, through aws-lc-rs.
//!
//! Security: DESIGN.md §7 — RSA signatures go through aws-lc-rs, never the pure-Rust `rsa` crate
//! (RUSTSEC-2023-0071, Marvin timing side channel). Keys are parsed once when loaded, because
//! re-parsing a private key per token halves RS256 throughput.

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};

use super::SigningAlgorithm;

/// Why key material could not be made or used.
#[derive(Debug, thiserror::Error)]
#[error("signing key material error: {0}")]
pub struct KeyMaterialError(pub String);

/// A parsed private signing key, ready to sign.
pub enum PrivateKey {
    Rsa(RsaKeyPair),
    EcdsaP256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// A freshly generated key: PKCS#8 private key and SubjectPublicKeyInfo public key (DER).
pub struct GeneratedKey {
    pub pkcs8: zeroize::Zeroizing<Vec<u8>>,
    pub public_key_der: Vec<u8>,
}

fn failed(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> KeyMaterialError + '_ {
    move |_| KeyMaterialError(format!("{what} failed"))
}

/// Generates a key pair for `algorithm` (RSA-2048, P-256 or Ed25519).
///
/// Key generation draws from AWS-LC's own DRBG (seeded from the OS), as it must: the crypto
/// library does not accept external randomness for key generation.
pub fn generate(algorithm: SigningAlgorithm) -> Result<GeneratedKey, KeyMaterialError> {
    let rng = SystemRandom::new();
    let pkcs8: Vec<u8> = match algorithm {
        SigningAlgorithm::Rs256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .map_err(failed("RSA-2048 generation"))?;
            let der: Pkcs8V1Der = pair.as_der().map_err(failed("RSA key encoding"))?;
            der.as_ref().to_vec()
        }
        SigningAlgorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(failed("P-256 generation"))?
                .as_ref()
                .to_vec()
        }
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(failed("Ed25519 generation"))?
            .as_ref()
            .to_vec(),
    };
    let pkcs8 = zeroize::Zeroizing::new(pkcs8);
    let parsed = parse(algorithm, &pkcs8)?;
    Ok(GeneratedKey {
        public_key_der: parsed.public_key_der()?,
        pkcs8,
    })
}

/// Parses a PKCS#8 private key of `algorithm`.
pub fn parse(algorithm: SigningAlgorithm, pkcs8: &[u8]) -> Result<PrivateKey, KeyMaterialError> {
    let rejected = |e: aws_lc_rs::error::KeyRejected| {
        KeyMaterialError(format!("{} key rejected: {e}", algorithm.as_str()))
    };
    Ok(match algorithm {
        SigningAlgorithm::Rs256 => {
            PrivateKey::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?)
        }
        SigningAlgorithm::Es256 => PrivateKey::EcdsaP256(
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(rejected)?,
        ),
        SigningAlgorithm::EdDsa => {
            PrivateKey::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?)
        }
    })
}

impl PrivateKey {
    /// The SubjectPublicKeyInfo (X.509) DER of the public half.
    pub fn public_key_der(&self) -> Result<Vec<u8>, KeyMaterialError> {
        let der: PublicKeyX509Der = match self {
            PrivateKey::Rsa(pair) => pair.public_key().as_der(),
            PrivateKey::EcdsaP256(pair) => pair.public_key().as_der(),
            PrivateKey::Ed25519(pair) => pair.public_key().as_der(),
        }
        .map_err(failed("public key encoding"))?;
        Ok(der.as_ref().to_vec())
    }

    /// Signs `message` as the JOSE algorithm of this key (RS256, ES256 fixed-width, EdDSA).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyMaterialError> {
        let rng = SystemRandom::new();
        match self {
            PrivateKey::Rsa(pair) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(failed("RS256 signing"))?;
                Ok(out)
            }
            PrivateKey::EcdsaP256(pair) => Ok(pair
                .sign(&rng, message)
                .map_err(failed("ES256 signing"))?
                .as_ref()
                .to_vec()),
            PrivateKey::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// Verifies a signature made by [`PrivateKey::sign`] against a SubjectPublicKeyInfo DER.
pub fn verify(
    algorithm: SigningAlgorithm,
    public_key_der: &[u8],
    message: &[u8],
    signature_bytes: &[u8],
) -> bool {
    use aws_lc_rs::signature::{ParsedPublicKey, VerificationAlgorithm};
    let verification: &'static dyn VerificationAlgorithm = match algorithm {
        SigningAlgorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SigningAlgorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        SigningAlgorithm::EdDsa => &signature::ED25519,
    };
    ParsedPublicKey::new(verification, public_key_der)
        .map(|key| key.verify_sig(message, signature_bytes).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_signs_and_verifies() {
        for algorithm in SigningAlgorithm::ALL {
            let generated = generate(algorithm).unwrap();
            let key = parse(algorithm, &generated.pkcs8).unwrap();
            assert_eq!(key.public_key_der().unwrap(), generated.public_key_der);
            let sig = key.sign(b"header.payload").unwrap();
            assert!(verify(
                algorithm,
                &generated.public_key_der,
                b"header.payload",
                &sig
            ));
            assert!(!verify(
                algorithm,
                &generated.public_key_der,
                b"header.payloaD",
                &sig
            ));
        }
    }
}
