//! JOSE for the provider: the JWKS, signing keys for `openidconnect`'s ID tokens, and compact JWS
//! for the tokens that crate has no public type for (back-channel logout tokens, JWT access
//! tokens).
//!
//! Security: DESIGN.md §7 — signatures go through aws-lc-rs with keys parsed once
//! (`keys::signing`); `openidconnect`'s own RSA signer (the `rsa` crate, RUSTSEC-2023-0071) is
//! never used. Verification accepts only the algorithm the key was made for (RFC 8725 §3.1).

use std::sync::Arc;

use base64::Engine as _;
use openidconnect::core::{CoreJsonCurveType, CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKeyId, PrivateSigningKey, SigningError};

use crate::keys::signing::{self, PrivateKey};
use crate::keys::{KeyState, LoadedKey, SigningAlgorithm};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `openidconnect` name of an algorithm.
pub fn core_alg(algorithm: SigningAlgorithm) -> CoreJwsSigningAlgorithm {
    match algorithm {
        SigningAlgorithm::Rs256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        SigningAlgorithm::Es256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        SigningAlgorithm::EdDsa => CoreJwsSigningAlgorithm::EdDsa,
    }
}

/// The public JWK of a key (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
pub fn jwk_of(kid: &str, key: &PrivateKey) -> CoreJsonWebKey {
    use aws_lc_rs::signature::KeyPair as _;
    let kid = Some(JsonWebKeyId::new(kid.to_string()));
    match key {
        PrivateKey::Rsa(pair) => {
            let public = pair.public_key();
            CoreJsonWebKey::new_rsa(
                public.modulus().big_endian_without_leading_zero().to_vec(),
                public.exponent().big_endian_without_leading_zero().to_vec(),
                kid,
            )
        }
        PrivateKey::EcdsaP256(pair) => {
            // Uncompressed point: 0x04 ‖ x ‖ y (SEC 1 §2.3.3).
            let point = pair.public_key().as_ref();
            CoreJsonWebKey::new_ec(
                point[1..33].to_vec(),
                point[33..65].to_vec(),
                CoreJsonCurveType::P256,
                kid,
            )
        }
        PrivateKey::Ed25519(pair) => CoreJsonWebKey::new_okp(
            pair.public_key().as_ref().to_vec(),
            CoreJsonCurveType::Ed25519,
            kid,
        ),
    }
}

/// The JWK Set (RFC 7517 §5): every published key — next, current and recently retired — each
/// with `kid` and `alg` (the crate's JWK type has no setter for `alg`, so it is added to the
/// serialised key).
pub fn jwks(keys: &[LoadedKey]) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let mut value = serde_json::to_value(jwk_of(&k.stored.kid, &k.private_key))
                .unwrap_or(serde_json::Value::Null);
            if let Some(object) = value.as_object_mut() {
                object.insert("alg".into(), k.stored.algorithm.as_str().into());
            }
            value
        })
        .filter(|v| v.is_object())
        .collect();
    serde_json::json!({ "keys": keys })
}

/// A current signing key, ready for `openidconnect` (its `PrivateSigningKey`) and for compact
/// JWS.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    key: Arc<PrivateKey>,
    jwk: CoreJsonWebKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The `current` key of `algorithm` among `keys`.
    pub fn current(keys: &[LoadedKey], algorithm: SigningAlgorithm) -> Option<Self> {
        keys.iter()
            .find(|k| k.stored.algorithm == algorithm && k.stored.state == KeyState::Current)
            .map(|k| Self {
                kid: k.stored.kid.clone(),
                algorithm,
                key: k.private_key.clone(),
                jwk: jwk_of(&k.stored.kid, &k.private_key),
            })
    }

    /// A compact JWS (RFC 7515 §7.1) with header `typ`, `alg` and `kid`.
    pub fn sign_compact(&self, typ: &str, payload: &serde_json::Value) -> Result<String, String> {
        let header = serde_json::json!({
            "alg": self.algorithm.as_str(),
            "kid": self.kid,
            "typ": typ,
        });
        let mut out = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let signature = self.key.sign(out.as_bytes()).map_err(|e| e.to_string())?;
        out.push('.');
        out.push_str(&B64.encode(signature));
        Ok(out)
    }
}

impl PrivateSigningKey for SigningKey {
    type VerificationKey = CoreJsonWebKey;

    fn sign(
        &self,
        signature_alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, SigningError> {
        if *signature_alg != core_alg(self.algorithm) {
            return Err(SigningError::UnsupportedAlg(format!("{signature_alg:?}")));
        }
        self.key
            .sign(message)
            .map_err(|e| SigningError::Other(e.to_string()))
    }

    fn as_verification_key(&self) -> CoreJsonWebKey {
        self.jwk.clone()
    }
}

/// A compact JWS verified against one of `keys`: its header and payload. `None` for anything
/// malformed, an unknown `kid`, an `alg` other than the key's, or a bad signature. Expiry and
/// audience are the caller's to check.
pub fn verify_compact(
    token: &str,
    keys: &[LoadedKey],
) -> Option<(serde_json::Value, serde_json::Value)> {
    let mut parts = token.split('.');
    let (header_b64, payload_b64, signature_b64) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || token.len() > 16 * 1024 {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(header_b64).ok()?).ok()?;
    let kid = header.get("kid")?.as_str()?;
    let alg = header.get("alg")?.as_str()?;
    let key = keys.iter().find(|k| k.stored.kid == kid)?;
    if key.stored.algorithm.as_str() != alg {
        return None;
    }
    let signature = B64.decode(signature_b64).ok()?;
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    if !signing::verify(
        key.stored.algorithm,
        &key.stored.public_key_der,
        signed.as_bytes(),
        &signature,
    ) {
        return None;
    }
    let payload = serde_json::from_slice(&B64.decode(payload_b64).ok()?).ok()?;
    Some((header, payload))
}
