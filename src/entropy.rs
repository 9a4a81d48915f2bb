//! Randomness, injected. Every secret value Sésame makes (tokens, tickets, codes, nonces, keys)
//! draws its bytes from an [`Entropy`] source: the operating system's CSPRNG in production
//! (through aws-lc-rs, the crypto backend we already ship), or a seeded deterministic generator
//! in tests so that a failing scenario can be replayed. Non-cryptographic RNGs are banned by
//! clippy's `disallowed-methods`.

use std::sync::Mutex;

use aws_lc_rs::digest;
use base64::Engine as _;

/// A source of random bytes.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    fn fill(&self, out: &mut [u8]);
}

/// Convenience draws built on [`Entropy::fill`].
pub trait EntropyExt: Entropy {
    /// `N` random bytes.
    fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }

    /// A URL-safe token of `bytes` random bytes (base64url, no padding).
    fn token(&self, bytes: usize) -> String {
        let mut raw = vec![0u8; bytes];
        self.fill(&mut raw);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// A lower-case hexadecimal string of `bytes` random bytes.
    fn hex(&self, bytes: usize) -> String {
        let mut raw = vec![0u8; bytes];
        self.fill(&mut raw);
        raw.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl<T: Entropy + ?Sized> EntropyExt for T {}

/// The operating system's CSPRNG (AWS-LC's DRBG, seeded and reseeded from the OS).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, out: &mut [u8]) {
        // Security: failure of the system RNG is not recoverable; continuing would hand out
        // predictable secrets.
        aws_lc_rs::rand::fill(out).expect("the operating system's random generator failed");
    }
}

/// A deterministic generator for tests: SHA-256 in counter mode over a seed. Never used outside
/// tests and benchmarks' fixtures; the composition root only builds [`OsEntropy`].
#[derive(Debug)]
pub struct SeededEntropy {
    seed: [u8; 32],
    counter: Mutex<u64>,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        let mut expanded = [0u8; 32];
        expanded[..8].copy_from_slice(&seed.to_le_bytes());
        Self {
            seed: expanded,
            counter: Mutex::new(0),
        }
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, out: &mut [u8]) {
        let mut counter = self.counter.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in out.chunks_mut(32) {
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(&self.seed);
            ctx.update(&counter.to_le_bytes());
            *counter += 1;
            let block = ctx.finish();
            chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_entropy_is_reproducible_and_seed_dependent() {
        let a = SeededEntropy::new(7);
        let b = SeededEntropy::new(7);
        let c = SeededEntropy::new(8);
        let first = a.bytes::<48>();
        assert_eq!(first, b.bytes::<48>());
        assert_ne!(first, c.bytes::<48>());
        assert_ne!(first, a.bytes::<48>(), "successive draws differ");
    }

    #[test]
    fn os_entropy_tokens_are_url_safe_and_distinct() {
        let token = OsEntropy.token(16);
        assert_eq!(token.len(), 22);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(token, OsEntropy.token(16));
        assert_eq!(OsEntropy.hex(16).len(), 32);
    }
}
