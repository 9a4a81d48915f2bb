//! Recovery codes: ten single-use codes, 80 random bits each, shown once and stored as SHA-256
//! (they are random, so a fast hash is enough: nothing to guess from the digest).

use crate::entropy::Entropy;

/// How many codes a set has.
pub const COUNT: usize = 10;
/// Crockford's base32 alphabet (no i, l, o, u): read aloud and typed without ambiguity.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 16 characters × 5 bits = 80 bits (the issue asks for at least 64).
const LENGTH: usize = 16;

/// A new code, as shown: `xxxx-xxxx-xxxx-xxxx`.
pub fn generate(entropy: &dyn Entropy) -> String {
    let mut bytes = [0u8; LENGTH];
    entropy.fill(&mut bytes);
    let mut out = String::with_capacity(LENGTH + 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[(b & 31) as usize] as char);
    }
    out
}

/// The canonical form of what was typed: case, spaces and dashes ignored, `o`→0, `i`/`l`→1;
/// `None` if it cannot be a code.
pub fn normalize(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(LENGTH);
    for c in typed.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' => continue,
            'o' => '0',
            'i' | 'l' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        out.push(c);
    }
    (out.len() == LENGTH).then_some(out)
}

/// The stored digest of a typed code.
pub fn digest(typed: &str) -> Option<[u8; 32]> {
    let canonical = normalize(typed)?;
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_ref());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn codes_are_grouped_and_read_back_whatever_the_typing() {
        let entropy = SeededEntropy::new(7);
        let code = generate(&entropy);
        assert_eq!(code.len(), 19);
        assert_eq!(code.matches('-').count(), 3);
        let digest = digest(&code).unwrap();
        assert_eq!(Some(digest), super::digest(&code.to_uppercase()));
        assert_eq!(Some(digest), super::digest(&code.replace('-', " ")));
        assert_ne!(Some(digest), super::digest(&generate(&entropy)));
    }

    #[test]
    fn bad_codes_have_no_digest() {
        for bad in [
            "",
            "abcd",
            "abcd-efgh-jkmn-pqrs-t",
            "abcd-efgh-jkmn-pqr!",
            "123456",
        ] {
            assert_eq!(digest(bad), None, "{bad:?}");
        }
        assert_eq!(
            normalize("OIL0-abcd-efgh-jkmn").as_deref(),
            Some("0110abcdefghjkmn")
        );
    }
}
