//! The password policy (DESIGN.md §4; NIST SP 800-63B §5.1.1.2): length, not common, not built
//! from the person's own data, and hard to guess (zxcvbn) — and no composition rules. The reason
//! for a refusal is precise, so the page can say exactly what to change.

use std::collections::HashSet;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

use super::password::MAX_PASSWORD_BYTES;

/// The bundled list: passwords of 12+ characters seen in breaches, lower-case.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../resources/common_passwords.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect()
});

/// zxcvbn is quadratic in the length; beyond this many characters a password is long enough that
/// only the prefix needs scoring.
const ZXCVBN_MAX_CHARS: usize = 128;
/// Personal words shorter than this are too common to refuse inside a password.
const MIN_CONTEXT_WORD: usize = 4;

/// What the policy requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// At least this many Unicode code points (after NFKC).
    pub min_chars: usize,
    /// zxcvbn score at least this (0–4).
    pub min_score: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 12,
            min_score: 3,
        }
    }
}

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("the password has fewer than {min} characters")]
    TooShort { min: usize },
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password appears in lists of leaked passwords")]
    Common,
    #[error("the password contains personal information (`{word}`)")]
    Personal { word: String },
    #[error("the password is too easy to guess")]
    Guessable,
    #[error("the two passwords differ")]
    Mismatch,
}

/// Lower-case letters and digits only, accents removed: how personal words and passwords are
/// compared (`Dupré` inside `dupre2004!` is found).
fn fold(text: &str) -> String {
    text.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// The personal words of an account: names, login, dossier number, birth date (in the usual
/// spellings), and the university's name.
pub fn context_words(
    first_name: &str,
    last_name: &str,
    login: &str,
    dossier_number: Option<&str>,
    birth_date: Option<&str>,
    university: &str,
) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for text in [first_name, last_name, university] {
        words.extend(
            text.split(|c: char| !c.is_alphanumeric())
                .map(str::to_string),
        );
        words.push(text.to_string());
    }
    words.extend(login.split(['.', '-']).map(str::to_string));
    words.push(login.to_string());
    if let Some(dossier) = dossier_number {
        words.push(dossier.to_string());
    }
    if let Some(date) = birth_date
        && let [year, month, day] = date.split('-').collect::<Vec<_>>()[..]
    {
        words.push(format!("{year}{month}{day}"));
        words.push(format!("{day}{month}{year}"));
        words.push(format!(
            "{day}{month}{}",
            &year[year.len().saturating_sub(2)..]
        ));
    }
    let mut folded: Vec<String> = words
        .iter()
        .map(|w| fold(w))
        .filter(|w| w.chars().count() >= MIN_CONTEXT_WORD)
        .collect();
    folded.sort();
    folded.dedup();
    folded
}

impl PasswordPolicy {
    /// Checks a new password (and its confirmation) against the policy.
    pub fn check(
        &self,
        password: &str,
        confirmation: &str,
        context: &[String],
    ) -> Result<(), PasswordProblem> {
        // Security: the size check comes first, before normalising or scoring.
        if password.len() > 4 * MAX_PASSWORD_BYTES {
            return Err(PasswordProblem::TooLong);
        }
        let password: String = password.nfkc().collect();
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordProblem::TooLong);
        }
        if password != confirmation.nfkc().collect::<String>() {
            return Err(PasswordProblem::Mismatch);
        }
        if password.chars().count() < self.min_chars {
            return Err(PasswordProblem::TooShort {
                min: self.min_chars,
            });
        }
        let lower = password.to_lowercase();
        if COMMON.contains(lower.as_str()) || COMMON.contains(lower.trim()) {
            return Err(PasswordProblem::Common);
        }
        let folded = fold(&password);
        if let Some(word) = context.iter().find(|w| folded.contains(w.as_str())) {
            return Err(PasswordProblem::Personal { word: word.clone() });
        }
        let scored: String = password.chars().take(ZXCVBN_MAX_CHARS).collect();
        let inputs: Vec<&str> = context.iter().map(String::as_str).collect();
        let score = u8::from(zxcvbn::zxcvbn(&scored, &inputs).score());
        if score < self.min_score {
            return Err(PasswordProblem::Guessable);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emilie() -> Vec<String> {
        context_words(
            "Émilie",
            "Dupré",
            "emilie.dupre",
            Some("22001234"),
            Some("2004-05-06"),
            "Université Clermont Auvergne",
        )
    }

    fn check(password: &str) -> Result<(), PasswordProblem> {
        PasswordPolicy::default().check(password, password, &emilie())
    }

    #[test]
    fn good_passphrases_pass_without_composition_rules() {
        assert_eq!(check("cheval agrafe pile correcte"), Ok(()));
        assert_eq!(check("le chat de ma voisine chante faux"), Ok(()));
        assert_eq!(check("tromboneviolettetartine"), Ok(()));
    }

    #[test]
    fn each_refusal_has_its_reason() {
        assert_eq!(check("Court1!"), Err(PasswordProblem::TooShort { min: 12 }));
        assert_eq!(check("azertyuiop123"), Err(PasswordProblem::Common));
        assert_eq!(
            check("MotDePasse123"),
            Err(PasswordProblem::Common),
            "case-insensitive"
        );
        assert_eq!(check("1q2w3e4r5t6y"), Err(PasswordProblem::Common));
        assert_eq!(
            check("EmilieDupre la plus forte"),
            Err(PasswordProblem::Personal {
                word: "dupre".into()
            })
        );
        assert_eq!(
            check("ma date 06052004 secrète"),
            Err(PasswordProblem::Personal {
                word: "06052004".into()
            })
        );
        assert!(matches!(
            check("dossier 22001234 à moi"),
            Err(PasswordProblem::Personal { .. })
        ));
        assert!(matches!(
            check("vive l'université clermont"),
            Err(PasswordProblem::Personal { .. })
        ));
        assert_eq!(
            check("aaaaaaaaaaaaaaaaaaaaaaab"),
            Err(PasswordProblem::Guessable)
        );
        assert_eq!(check("abcdefghijklmnopqr"), Err(PasswordProblem::Guessable));
        assert_eq!(
            PasswordPolicy::default().check(
                "cheval agrafe pile correcte",
                "cheval agrafe pile correct",
                &emilie()
            ),
            Err(PasswordProblem::Mismatch)
        );
    }

    #[test]
    fn length_counts_code_points_and_size_counts_bytes() {
        // 12 code points, 24 bytes: long enough.
        let accented = "éàèùâêîôûëïü";
        assert_eq!(accented.chars().count(), 12);
        assert_ne!(check(accented), Err(PasswordProblem::TooShort { min: 12 }));
        assert_eq!(check(&"x".repeat(1025)), Err(PasswordProblem::TooLong));
        assert_eq!(
            check(&"x".repeat(1024 * 1024)),
            Err(PasswordProblem::TooLong)
        );
    }

    #[test]
    fn the_bundled_list_is_loaded() {
        assert!(COMMON.len() > 40_000);
        assert!(COMMON.contains("123qweasdzxc"));
        assert!(
            COMMON
                .iter()
                .all(|p| p.chars().count() >= 12 || p.len() >= 12)
        );
    }
}
