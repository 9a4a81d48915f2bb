//! A software WebAuthn authenticator (a P-256 "packed"-less passkey with `none` attestation), for
//! driving Sésame's passkey ceremonies from tests the way a browser and a platform authenticator
//! would: it reads the options the server sends and answers with the JSON `passkey.js` posts.
//! W3C WebAuthn Level 2 §6.1 (authenticator data), §6.5 (attestation object), §5.8.1 (client
//! data); COSE keys per RFC 9053 §7.1.1. The CBOR is written by hand: a handful of fixed shapes.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .unwrap()
}

fn head(major: u8, value: u64) -> Vec<u8> {
    let major = major << 5;
    match value {
        0..=23 => vec![major | value as u8],
        24..=0xff => vec![major | 24, value as u8],
        0x100..=0xffff => {
            let mut out = vec![major | 25];
            out.extend((value as u16).to_be_bytes());
            out
        }
        _ => {
            let mut out = vec![major | 26];
            out.extend((value as u32).to_be_bytes());
            out
        }
    }
}

fn int(value: i64) -> Vec<u8> {
    if value >= 0 {
        head(0, value as u64)
    } else {
        head(1, (-1 - value) as u64)
    }
}

fn bytes(value: &[u8]) -> Vec<u8> {
    let mut out = head(2, value.len() as u64);
    out.extend(value);
    out
}

fn text(value: &str) -> Vec<u8> {
    let mut out = head(3, value.len() as u64);
    out.extend(value.as_bytes());
    out
}

/// One resident credential.
pub struct SoftAuthenticator {
    key: EcdsaKeyPair,
    pub credential_id: Vec<u8>,
    pub user_handle: Vec<u8>,
    pub rp_id: String,
    pub counter: u32,
}

impl SoftAuthenticator {
    /// `navigator.credentials.create` for the server's options; the JSON to post back.
    pub fn create(options: &Value, origin: &str) -> (Self, String) {
        let pk = &options["publicKey"];
        let rp_id = pk["rp"]["id"].as_str().unwrap().to_string();
        let user_handle = unb64(pk["user"]["id"].as_str().unwrap());
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let mut credential_id = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut credential_id).unwrap();
        let authenticator = Self {
            key,
            credential_id,
            user_handle,
            rp_id,
            counter: 0,
        };
        let client_data = authenticator.client_data("webauthn.create", pk, origin);
        // Uncompressed point: 0x04 ‖ x ‖ y.
        let point = authenticator.key.public_key().as_ref().to_vec();
        let mut cose = head(5, 5);
        cose.extend(int(1));
        cose.extend(int(2)); // kty: EC2
        cose.extend(int(3));
        cose.extend(int(-7)); // alg: ES256
        cose.extend(int(-1));
        cose.extend(int(1)); // crv: P-256
        cose.extend(int(-2));
        cose.extend(bytes(&point[1..33]));
        cose.extend(int(-3));
        cose.extend(bytes(&point[33..65]));
        // Flags: user present, user verified, attested credential data.
        let mut auth_data = authenticator.auth_data_prefix(0x01 | 0x04 | 0x40);
        auth_data.extend([0u8; 16]); // AAGUID
        auth_data.extend((authenticator.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&authenticator.credential_id);
        auth_data.extend(cose);
        let mut attestation = head(5, 3);
        attestation.extend(text("fmt"));
        attestation.extend(text("none"));
        attestation.extend(text("attStmt"));
        attestation.extend(head(5, 0));
        attestation.extend(text("authData"));
        attestation.extend(bytes(&auth_data));
        let answer = json!({
            "id": b64(&authenticator.credential_id),
            "rawId": b64(&authenticator.credential_id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&client_data),
            },
        });
        (authenticator, answer.to_string())
    }

    fn client_data(&self, kind: &str, pk: &Value, origin: &str) -> Vec<u8> {
        json!({
            "type": kind,
            "challenge": pk["challenge"].as_str().unwrap(),
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    fn auth_data_prefix(&self, flags: u8) -> Vec<u8> {
        let mut out = digest(&SHA256, self.rp_id.as_bytes()).as_ref().to_vec();
        out.push(flags);
        out.extend(self.counter.to_be_bytes());
        out
    }

    /// `navigator.credentials.get`: an assertion with the next signature counter.
    pub fn get(&mut self, options: &Value, origin: &str) -> String {
        self.counter += 1;
        self.assert_with_counter(options, origin, self.counter)
    }

    /// An assertion with a chosen counter (a cloned authenticator lags behind).
    pub fn assert_with_counter(&self, options: &Value, origin: &str, counter: u32) -> String {
        let pk = &options["publicKey"];
        assert_eq!(pk["rpId"].as_str(), Some(self.rp_id.as_str()), "{pk}");
        let client_data = self.client_data("webauthn.get", pk, origin);
        let mut auth_data = digest(&SHA256, self.rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(0x01 | 0x04);
        auth_data.extend(counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend(digest(&SHA256, &client_data).as_ref());
        let rng = SystemRandom::new();
        let signature = self.key.sign(&rng, &signed).unwrap();
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.as_ref()),
                "userHandle": b64(&self.user_handle),
            },
        })
        .to_string()
    }
}
