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

/// The TLS of Sésame's outbound HTTP clients: aws-lc-rs, the web PKI roots, safe protocol
/// versions.
pub fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

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

/// The text of the SMS carrying the code that, with the mailed link, removes lost second factors.
pub fn factor_recovery_text(locale: Locale, code: &str) -> String {
    match locale {
        Locale::Fr => format!(
            "Sésame : votre code pour retirer la double authentification est {code}. \
             Ne le donnez à personne."
        ),
        Locale::En => format!(
            "Sésame: your code to remove two-step verification is {code}. \
             Never give it to anyone."
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

/// Sends SMS through an HTTP gateway: one POST per message to the configured URL, with a body
/// made from a template where `{to}` and `{text}` are replaced by the JSON-escaped number and
/// text (so the template may be JSON, or form-encoded with JSON-safe values).
pub struct HttpSmsSender {
    client: reqwest::Client,
    url: url::Url,
    template: String,
    content_type: String,
    authorization: Option<String>,
}

impl fmt::Debug for HttpSmsSender {
    // Security: the URL and the authorization may carry the provider's API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpSmsSender([redacted])")
    }
}

/// Why the gateway configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SMS gateway: {0}")]
pub struct GatewayError(pub String);

/// Escapes a value for a JSON string literal (without the quotes).
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

impl HttpSmsSender {
    /// `url` must be https (or http on a loopback host, for a local relay or tests).
    pub fn new(
        url: &str,
        template: &str,
        content_type: &str,
        authorization: Option<String>,
        timeout: std::time::Duration,
    ) -> Result<Self, GatewayError> {
        let url = url::Url::parse(url).map_err(|e| GatewayError(format!("URL: {e}")))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(GatewayError(
                "the URL must be https (plain http only on a loopback address)".into(),
            ));
        }
        if !template.contains("{to}") || !template.contains("{text}") {
            return Err(GatewayError(
                "the body template must contain {to} and {text}".into(),
            ));
        }
        let tls = tls_config().map_err(GatewayError)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| GatewayError(e.to_string()))?;
        Ok(Self {
            client,
            url,
            template: template.to_string(),
            content_type: content_type.to_string(),
            authorization,
        })
    }

    /// The request body for one message.
    pub fn body(&self, to: &PhoneNumber, text: &str) -> String {
        self.template
            .replace("{to}", &json_escaped(to.as_str()))
            .replace("{text}", &json_escaped(text))
    }
}

#[async_trait]
impl SmsSender for HttpSmsSender {
    async fn send_sms(&self, to: &PhoneNumber, text: &str) -> Result<(), SendError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, &self.content_type)
            .body(self.body(to, text));
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) if response.status().is_client_error() => Err(SendError::Rejected(
                format!("the SMS gateway answered {}", response.status()),
            )),
            Ok(response) => Err(SendError::Temporary(format!(
                "the SMS gateway answered {}",
                response.status()
            ))),
            // Security: reqwest's error may name the URL, which may hold a key: say less.
            Err(error) if error.is_timeout() => {
                Err(SendError::Unavailable("the SMS gateway timed out".into()))
            }
            Err(_) => Err(SendError::Unavailable(
                "the SMS gateway could not be reached".into(),
            )),
        }
    }

    fn name(&self) -> &'static str {
        "http"
    }
}

#[cfg(test)]
mod gateway_tests {
    use std::time::Duration;

    use super::*;

    const TEMPLATE: &str = r#"{"to": "{to}", "text": "{text}"}"#;

    #[test]
    fn gateways_must_be_https_except_on_loopback_and_templates_complete() {
        let make = |url: &str, template: &str| {
            HttpSmsSender::new(
                url,
                template,
                "application/json",
                None,
                Duration::from_secs(1),
            )
        };
        assert!(make("https://sms.example.net/send", TEMPLATE).is_ok());
        assert!(make("http://127.0.0.1:9000/send", TEMPLATE).is_ok());
        assert!(make("http://sms.example.net/send", TEMPLATE).is_err());
        assert!(make("https://sms.example.net/send", r#"{"to": "{to}"}"#).is_err());
        assert!(make("not a url", TEMPLATE).is_err());
    }

    #[test]
    fn values_are_json_escaped_in_the_body() {
        let sender = HttpSmsSender::new(
            "https://sms.example.net/send",
            TEMPLATE,
            "application/json",
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        let number = PhoneNumber::parse("+33612345678").unwrap();
        let body = sender.body(&number, "code \"123456\"\nligne");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["to"], "+33612345678");
        assert_eq!(parsed["text"], "code \"123456\"\nligne");
        assert!(
            !format!("{sender:?}").contains("example"),
            "no URL in debug output"
        );
    }
}
