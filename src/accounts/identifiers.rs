//! Login identifiers (DESIGN.md §4): `prenom.nom` derived from the names, homonyms numbered, one
//! namespace for students and staff, and canonicalisation of what users type at login.
//!
//! Everything here is pure: the store decides which logins are taken.

use std::fmt;

use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

/// Why no login could be derived from a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("the first name has no letter usable in an identifier")]
    NoUsableFirstName,
    #[error("the last name has no letter usable in an identifier")]
    NoUsableLastName,
}

/// A login, lower-case ASCII `prenom.nom[N]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Login(String);

impl Login {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a login read back from storage (already canonical).
    pub fn from_stored(login: String) -> Self {
        Self(login)
    }

    /// The full address at `domain`.
    pub fn address(&self, domain: &str) -> String {
        format!("{}@{domain}", self.0)
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Letters that NFKD does not decompose into a base letter plus marks.
fn special_letter(c: char) -> Option<&'static str> {
    Some(match c {
        'ø' | 'Ø' => "o",
        'æ' | 'Æ' => "ae",
        'œ' | 'Œ' => "oe",
        'ß' | 'ẞ' => "ss",
        'ł' | 'Ł' => "l",
        'đ' | 'Đ' => "d",
        'ı' => "i",
        _ => return None,
    })
}

/// Folds one name part to identifier letters: accents removed, lower-case ASCII letters, digits
/// and hyphens kept; spaces and apostrophes (and anything else) dropped.
fn fold(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        if let Some(replacement) = special_letter(c) {
            out.push_str(replacement);
        } else if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '-' || c == '‐' || c == '‑' {
            out.push('-');
        }
    }
    // Hyphens only between letters: `jean--pierre`, `-x-` → `jean-pierre`, `x`.
    let pieces: Vec<&str> = out.split('-').filter(|p| !p.is_empty()).collect();
    pieces.join("-")
}

/// The login a person would get with no homonym: first given name (the first of several separated
/// by spaces) `.` last name (all its words joined).
pub fn derive_base(first_name: &str, last_name: &str) -> Result<Login, IdentifierError> {
    let given = first_name.split_whitespace().next().unwrap_or_default();
    let first = fold(given);
    if first.is_empty() {
        return Err(IdentifierError::NoUsableFirstName);
    }
    let last = fold(last_name);
    if last.is_empty() {
        return Err(IdentifierError::NoUsableLastName);
    }
    Ok(Login(format!("{first}.{last}")))
}

/// The first free login for `base`: `base`, then `base2`, `base3`… `is_taken` answers for the
/// whole namespace (current logins and aliases of every account).
pub fn first_free(base: &Login, mut is_taken: impl FnMut(&str) -> bool) -> Login {
    if !is_taken(base.as_str()) {
        return base.clone();
    }
    (2u32..)
        .map(|n| format!("{}{n}", base.as_str()))
        .find(|candidate| !is_taken(candidate))
        .map(Login)
        .expect("the integers do not run out")
}

/// A person key: the folded names and birth date, to recognise one person in both feeds (a
/// doctoral student who teaches is one account with both affiliations).
pub fn person_key(first_name: &str, last_name: &str, birth_date: &str) -> String {
    let words = |s: &str| {
        s.split_whitespace()
            .map(fold)
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!("{}|{}|{birth_date}", words(first_name), words(last_name))
}

/// What a user typed in the identifier field, canonicalised: NFKC, trimmed, lower-case; an
/// address keeps only its local part when its domain is one of ours. Anything that is not then a
/// plain ASCII login (Cyrillic look-alikes, zero-width characters…) is refused: it can never name
/// another account.
pub fn canonical_login(typed: &str, our_domains: &[String]) -> Option<Login> {
    let normalised: String = typed.nfkc().collect::<String>().trim().to_lowercase();
    let local = match normalised.rsplit_once('@') {
        Some((local, domain)) => {
            if our_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                local
            } else {
                return None;
            }
        }
        None => normalised.as_str(),
    };
    let valid = !local.is_empty()
        && local.len() <= 128
        && local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !local.starts_with(['.', '-'])
        && !local.ends_with(['.', '-']);
    valid.then(|| Login(local.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn base(first: &str, last: &str) -> String {
        derive_base(first, last).unwrap().0
    }

    #[test]
    fn the_design_examples() {
        assert_eq!(base("Émilie", "Dupré"), "emilie.dupre");
        assert_eq!(base("Jean", "D'Almeida"), "jean.dalmeida");
        assert_eq!(base("Jean", "de La Fontaine"), "jean.delafontaine");
        assert_eq!(base("Anne-Sophie", "Martin"), "anne-sophie.martin");
        assert_eq!(base("Marie Claire Anne", "Martin"), "marie.martin");
    }

    #[test]
    fn letters_that_do_not_decompose() {
        assert_eq!(base("Søren", "Ødegaard"), "soren.odegaard");
        assert_eq!(base("Łukasz", "Kowalczyk"), "lukasz.kowalczyk");
        assert_eq!(base("Ævar", "Lœuvre"), "aevar.loeuvre");
        assert_eq!(base("Claß", "Đorđević"), "class.dordevic");
        assert_eq!(base("Işık", "Şahin"), "isik.sahin");
    }

    #[test]
    fn the_generators_tricky_names() {
        assert_eq!(base("Nguyễn Văn", "Nguyễn"), "nguyen.nguyen");
        assert_eq!(base("Çağla", "García López"), "cagla.garcialopez");
        assert_eq!(
            base("Pierre-Étienne", "Dubois-Maréchal"),
            "pierre-etienne.dubois-marechal"
        );
        assert_eq!(base("Zoë", "N'Diaye"), "zoe.ndiaye");
        assert_eq!(base("Noël", "Van der Berg"), "noel.vanderberg");
        assert_eq!(base("Aïcha", "O'Connor"), "aicha.oconnor");
        assert_eq!(base("Loïc", "Le Gall"), "loic.legall");
        assert_eq!(base("Björn", "Müller"), "bjorn.muller");
        assert_eq!(base("Ève", "Lefèvre"), "eve.lefevre");
        assert_eq!(base("José", "Benoît"), "jose.benoit");
    }

    #[test]
    fn odd_punctuation_never_leaks_into_a_login() {
        assert_eq!(base("  Jean--Pierre ", "-Martin-"), "jean-pierre.martin");
        assert_eq!(
            base("Jean", "D’Almeida"),
            "jean.dalmeida",
            "typographic apostrophe"
        );
        assert_eq!(
            base("ＪＥＡＮ", "Ｍartin"),
            "jean.martin",
            "full-width letters"
        );
    }

    #[test]
    fn names_without_latin_letters_are_refused() {
        assert_eq!(
            derive_base("Иван", "Martin"),
            Err(IdentifierError::NoUsableFirstName)
        );
        assert_eq!(
            derive_base("Ana", "  "),
            Err(IdentifierError::NoUsableLastName)
        );
    }

    #[test]
    fn homonyms_are_numbered_from_two() {
        let marie = derive_base("Marie", "Martin").unwrap();
        let taken = ["marie.martin", "marie.martin2"];
        assert_eq!(
            first_free(&marie, |l| taken.contains(&l)).0,
            "marie.martin3"
        );
        assert_eq!(first_free(&marie, |_| false).0, "marie.martin");
        let gap = ["marie.martin", "marie.martin3"];
        assert_eq!(first_free(&marie, |l| gap.contains(&l)).0, "marie.martin2");
    }

    #[test]
    fn typed_identifiers_are_canonicalised() {
        let ours = vec!["etu.uca.fr".to_string(), "uca.fr".to_string()];
        let login = |s: &str| canonical_login(s, &ours).map(|l| l.0);
        assert_eq!(login("  Marie.Martin2 "), Some("marie.martin2".into()));
        assert_eq!(
            login("MARIE.MARTIN@ETU.UCA.FR"),
            Some("marie.martin".into())
        );
        assert_eq!(login("marie.martin@uca.fr"), Some("marie.martin".into()));
        assert_eq!(
            login("ｍａｒｉｅ.martin"),
            Some("marie.martin".into()),
            "NFKC"
        );
        assert_eq!(login("marie.martin@gmail.com"), None, "not our domain");
        assert_eq!(login("аlice.martin"), None, "Cyrillic а");
        assert_eq!(login("alice\u{200b}.martin"), None, "zero-width space");
        assert_eq!(login(""), None);
        assert_eq!(login(".martin"), None);
    }

    proptest! {
        #[test]
        fn derived_logins_are_always_plain_ascii(first in "\\PC{0,30}", last in "\\PC{0,30}") {
            if let Ok(login) = derive_base(&first, &last) {
                let text = login.as_str();
                prop_assert_eq!(text.matches('.').count(), 1);
                prop_assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'));
                prop_assert!(!text.contains("--") && !text.contains("-.") && !text.contains(".-"));
                // What the derivation makes, canonical_login accepts unchanged.
                prop_assert_eq!(canonical_login(text, &[]), Some(login.clone()));
            }
        }

        #[test]
        fn derivation_ignores_case_and_unicode_form(first in "[A-Za-zÀ-ÿ' -]{1,20}", last in "[A-Za-zÀ-ÿ' -]{1,20}") {
            let nfd_first: String = first.nfd().collect();
            let upper_last = last.to_uppercase();
            prop_assert_eq!(derive_base(&first, &last), derive_base(&nfd_first, &upper_last));
        }

        #[test]
        fn first_free_never_returns_a_taken_login(taken in proptest::collection::hash_set(0u32..8, 0..8)) {
            let base = derive_base("Marie", "Martin").unwrap();
            let name = |n: u32| if n <= 1 { base.as_str().to_string() } else { format!("{}{n}", base.as_str()) };
            let taken: std::collections::HashSet<String> = taken.into_iter().map(name).collect();
            let free = first_free(&base, |l| taken.contains(l));
            prop_assert!(!taken.contains(free.as_str()));
        }
    }
}
