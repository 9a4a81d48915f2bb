//! Mail: messages rendered from templates (French and English, text and HTML), written to a
//! durable outbox in the same transaction as the action that causes them, and sent by a job with
//! retries (DESIGN.md §4 "Mail and SMS").

use std::fmt;

/// One mailbox address, validated: a single `local@domain`, no whitespace or control characters
/// (so nothing can be smuggled into a header), at most 254 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a single valid e-mail address")]
pub struct AddressError(pub String);

impl EmailAddress {
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let trimmed = text.trim();
        let refuse = || {
            AddressError(
                trimmed
                    .chars()
                    .take(80)
                    .collect::<String>()
                    .escape_debug()
                    .to_string(),
            )
        };
        if trimmed.is_empty()
            || trimmed.len() > 254
            || trimmed.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(
                        c,
                        ',' | ';' | '<' | '>' | '"' | '(' | ')' | '[' | ']' | '\\'
                    )
            })
        {
            return Err(refuse());
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(refuse)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-'])
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(refuse());
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part, lower-case.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.0)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a mail is about (stored with it, for metrics and support).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    /// The 6-digit code that confirms a contact address during activation.
    ConfirmationCode,
    /// The link that resets a forgotten password.
    PasswordReset,
    /// Notice that the password was changed or reset.
    PasswordChanged,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfirmationCode => "confirmation_code",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
        }
    }
}

/// A rendered mail, ready for the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub kind: MailKind,
    pub to: EmailAddress,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl fmt::Debug for OutgoingMail {
    // Security: bodies carry codes and links; they never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("kind", &self.kind)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_single_mailboxes_without_header_tricks() {
        assert_eq!(
            EmailAddress::parse(" Emilie.Dupre@Example.ORG ")
                .unwrap()
                .as_str(),
            "Emilie.Dupre@example.org"
        );
        for bad in [
            "",
            "no-at-sign",
            "a@b",
            "a@@b.fr",
            "a@b.fr\r\nBcc: x@y.fr",
            "a@b.fr, c@d.fr",
            "Name <a@b.fr>",
            "a b@c.fr",
            "a@-b.fr",
            "a@b..fr",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        assert!(EmailAddress::parse(&format!("{}@b.fr", "a".repeat(65))).is_err());
        assert_eq!(EmailAddress::parse("x@ÉTU.fr").unwrap().domain(), "étu.fr");
    }
}
