//! SMS: the port through which codes reach a mobile phone, and its file outbox (one `.txt` file
//! per message in `<outbox_dir>/sms/`), used until an HTTP gateway is configured (DESIGN.md §4).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use time::macros::format_description;

use super::SendError;
use super::transport::{MailSetupError, create_private_dir, write_atomically};
use crate::clock::Clock;
use crate::entropy::{Entropy, EntropyExt as _};
use crate::locale::Locale;

/// A mobile number in international form (E.164: `+` then 8 to 15 digits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

/// Why a string is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a phone number: write it as +33 6 12 34 56 78 or 06 12 34 56 78")]
pub struct PhoneNumberError;

impl PhoneNumber {
    /// Accepts international numbers (`+33 6 12 34 56 78`, `0033…`) and French national ones
    /// (`06 12 34 56 78`), with spaces, dots, dashes or parentheses between digits.
    pub fn parse(text: &str) -> Result<Self, PhoneNumberError> {
        let trimmed = text.trim();
        let (international, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if !rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')'))
        {
            return Err(PhoneNumberError);
        }
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        let e164 = if international {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_string()
        } else if digits.len() == 10 && digits.starts_with('0') {
            format!("33{}", &digits[1..])
        } else {
            return Err(PhoneNumberError);
        };
        if !(8..=15).contains(&e164.len()) || e164.starts_with('0') {
            return Err(PhoneNumberError);
        }
        Ok(Self(format!("+{e164}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.0)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sends a text message.
#[async_trait]
pub trait SmsSender: Send + Sync {
    async fn send_sms(&self, to: &PhoneNumber, text: &str) -> Result<(), SendError>;

    /// `file` (or, later, the gateway's name), for logs.
    fn name(&self) -> &'static str;
}

/// The text of the SMS carrying a confirmation code: short (one 160-character segment), French
/// unless the person chose English.
pub fn confirmation_code_text(locale: Locale, code: &str) -> String {
    match locale {
        Locale::Fr => format!(
            "Sésame : votre code de confirmation est {code}. Ne le communiquez à personne. \
             Si vous n'avez rien demandé, ignorez ce SMS."
        ),
        Locale::En => format!(
            "Sésame: your confirmation code is {code}. Do not share it with anyone. \
             If you did not ask for it, ignore this SMS."
        ),
    }
}

/// Writes each SMS to `<dir>/<UTC time>-<random>.txt`: `To: <number>`, a blank line, the text.
#[derive(Debug, Clone)]
pub struct FileSmsSender {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

impl FileSmsSender {
    /// Creates `dir` if needed (mode 0700).
    pub fn open(
        dir: &Path,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, MailSetupError> {
        create_private_dir(dir).map_err(|source| MailSetupError::OutboxDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            clock,
            entropy,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl SmsSender for FileSmsSender {
    async fn send_sms(&self, to: &PhoneNumber, text: &str) -> Result<(), SendError> {
        let stamp = self
            .clock
            .now()
            .format(format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .map_err(|e| SendError::Unavailable(e.to_string()))?;
        let name = format!("{stamp}-{}.txt", self.entropy.hex(8));
        let body = format!("To: {to}\n\n{text}\n");
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, body.as_bytes()))
            .await
            .map_err(|e| SendError::Unavailable(format!("writing task failed: {e}")))?
            .map_err(|e| {
                SendError::Unavailable(format!("cannot write to {}: {e}", self.dir.display()))
            })
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::entropy::SeededEntropy;

    #[test]
    fn phone_numbers_are_normalised_to_e164() {
        for (input, expected) in [
            ("06 12 34 56 78", "+33612345678"),
            ("06.12.34.56.78", "+33612345678"),
            ("+33 6 12 34 56 78", "+33612345678"),
            ("0033612345678", "+33612345678"),
            ("+1 (415) 555-0100", "+14155550100"),
        ] {
            assert_eq!(PhoneNumber::parse(input).unwrap().as_str(), expected);
        }
        for bad in [
            "",
            "612345678",
            "+33 6 12\n34",
            "+0612345678",
            "+123",
            "06 12 34 56 7a",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn code_texts_fit_one_sms_in_both_languages() {
        for locale in [Locale::Fr, Locale::En] {
            let text = confirmation_code_text(locale, "482913");
            assert!(text.contains("482913"));
            assert!(
                text.chars().count() <= 160,
                "{} chars",
                text.chars().count()
            );
        }
        assert!(confirmation_code_text(Locale::Fr, "1").contains("votre code"));
        assert!(confirmation_code_text(Locale::En, "1").contains("your confirmation code"));
    }

    #[tokio::test]
    async fn the_file_outbox_writes_one_text_file_per_sms() {
        let dir = tempfile::tempdir().unwrap();
        let sms_dir = dir.path().join("outbox/sms");
        let sender = FileSmsSender::open(
            &sms_dir,
            Arc::new(ManualClock::at_rentree()),
            Arc::new(SeededEntropy::new(7)),
        )
        .unwrap();
        let to = PhoneNumber::parse("06 12 34 56 78").unwrap();
        let text = confirmation_code_text(Locale::Fr, "482913");
        sender.send_sms(&to, &text).await.unwrap();
        sender.send_sms(&to, &text).await.unwrap();
        let mut files: Vec<_> = std::fs::read_dir(&sms_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".txt") && !name.starts_with('.'), "{name}");
        let content = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(content, format!("To: +33612345678\n\n{text}\n"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&sms_dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
