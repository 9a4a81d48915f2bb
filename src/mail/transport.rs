//! How mails leave: an SMTP relay through lettre, or `.eml` files in the outbox directory when no
//! relay is configured (the demo). Both build the same RFC 5322 message: `multipart/alternative`
//! with the text part first and the HTML part second (RFC 2046 §5.1.4: the richest last).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncTransport as _, Tokio1Executor};
use time::macros::format_description;

use super::{MailTransport, QueuedMail, SendError};
use crate::clock::from_unix;

/// How long one SMTP command (connecting included) may take before the attempt fails.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why mail could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("mail.from: `{0}` is not a mailbox (write `Name <address>` or `address`)")]
    From(String),
    #[error("mail.smtp_url: {0}")]
    SmtpUrl(String),
    #[error("cannot create the mail outbox directory {path}: {source}")]
    OutboxDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parses the configured sender (`Sésame <no-reply@uca.fr>`).
pub fn sender_mailbox(from: &str) -> Result<Mailbox, MailSetupError> {
    from.parse::<Mailbox>()
        .map_err(|_| MailSetupError::From(from.to_string()))
}

/// Builds the RFC 5322 message of a queued mail.
///
/// `Date` is when the mail was queued (RFC 5322 §3.6.1: when it was ready to enter the mail
/// system), and `Message-ID` is derived from the outbox row, so a retry sends the same message
/// and a receiver may recognise a duplicate.
pub fn build_message(from: &Mailbox, mail: &QueuedMail) -> Result<lettre::Message, SendError> {
    let to = mail
        .mail
        .to
        .as_str()
        .parse::<lettre::Address>()
        .map_err(|e| SendError::Rejected(format!("recipient not deliverable: {e}")))?;
    let domain = from.email.domain();
    let created = u64::try_from(mail.created_at).unwrap_or_default();
    lettre::Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(mail.mail.subject.clone())
        .date(SystemTime::UNIX_EPOCH + Duration::from_secs(created))
        .message_id(Some(format!(
            "<sesame.{}.{}@{domain}>",
            mail.id, mail.created_at
        )))
        // RFC 3834 §5: automatic mail; vacation responders must not answer it.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_string(),
        ))
        .multipart(MultiPart::alternative_plain_html(
            mail.mail.text.clone(),
            mail.mail.html.clone(),
        ))
        .map_err(|e| SendError::Rejected(format!("cannot build the message: {e}")))
}

/// Delivery through an SMTP relay (lettre, Tokio, rustls with aws-lc-rs).
///
/// URL forms (`mail.smtp_url`):
/// - `smtp://USER:PASSWORD@HOST[:587]`: STARTTLS, required (a relay that does not offer it is an
///   error, never a silent fallback to plain text);
/// - `smtps://USER:PASSWORD@HOST[:465]`: TLS from the first byte;
/// - `smtp://HOST:PORT?tls=none`: plain text, allowed only when HOST is a loopback address (a
///   local relay such as Postfix on the same machine, or a test server).
///
/// User and password are percent-decoded. The relay's certificate is checked against the
/// Mozilla root store (webpki-roots).
#[derive(Clone)]
pub struct SmtpTransport {
    relay: lettre::AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpTransport {
    // Security: the relay holds the credentials; print nothing of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport").finish_non_exhaustive()
    }
}

/// What an `smtp_url` asks for, before any connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// Security: never logged.
    password: Option<String>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: STARTTLS, required.
    StartTls,
    /// `smtps://`: implicit TLS.
    Tls,
    /// `smtp://…?tls=none` on a loopback host only.
    None,
}

impl SmtpSettings {
    /// Reads an `smtp_url`; the messages never repeat the password.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("the URL has no host".into()),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        // `smtp` is not a special scheme to the URL standard, so an IP address arrives as an
        // opaque host name: parse it here.
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let mut tls = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" => tls = Some(value.into_owned()),
                other => return Err(format!("unknown parameter `{other}` (known: tls=none)")),
            }
        }
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => SmtpSecurity::StartTls,
            ("smtps", None) => SmtpSecurity::Tls,
            ("smtp", Some("none")) if loopback => SmtpSecurity::None,
            ("smtp", Some("none")) => {
                return Err(format!(
                    "tls=none sends mail and credentials in clear; it is only allowed to a \
                     loopback host, not `{host}`"
                ));
            }
            (scheme @ ("smtp" | "smtps"), Some(other)) => {
                return Err(format!(
                    "tls={other} is not supported with {scheme}:// (only smtp://…?tls=none, on \
                     loopback)"
                ));
            }
            (other, _) => {
                return Err(format!(
                    "scheme `{other}` is not supported; use smtp:// (STARTTLS) or smtps://"
                ));
            }
        };
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::StartTls | SmtpSecurity::None => 587,
        });
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| "the user or password is not valid UTF-8".to_string())
        };
        let username = (!url.username().is_empty())
            .then(|| decode(url.username()))
            .transpose()?;
        let password = url.password().map(decode).transpose()?;
        if password.is_some() && username.is_none() {
            return Err("a password without a user name".into());
        }
        Ok(Self {
            host,
            port,
            security,
            username,
            password,
        })
    }
}

/// Decodes `%XX` escapes (RFC 3986 §2.1) in the user or password of a URL.
fn percent_decode(text: &str) -> Option<String> {
    fn hex(digit: u8) -> Option<u8> {
        (digit as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?))
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl SmtpTransport {
    /// Prepares the relay of `smtp_url`; connects only when the first mail is sent. Call it
    /// inside a Tokio runtime: lettre's connection pool starts its clean-up task here.
    pub fn new(smtp_url: &str, from: Mailbox, timeout: Duration) -> Result<Self, MailSetupError> {
        let settings = SmtpSettings::parse(smtp_url).map_err(MailSetupError::SmtpUrl)?;
        let tls_parameters = || {
            TlsParameters::new(settings.host.clone())
                .map_err(|e| MailSetupError::SmtpUrl(format!("TLS set-up failed: {e}")))
        };
        let tls = match settings.security {
            SmtpSecurity::StartTls => Tls::Required(tls_parameters()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters()?),
            SmtpSecurity::None => Tls::None,
        };
        let mut builder =
            lettre::AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
                .port(settings.port)
                .tls(tls)
                .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            relay: builder.build(),
            from,
        })
    }
}

/// Sorts an SMTP failure: recipient-level refusals are final for this mail, a busy mailbox is
/// worth a retry, anything else (connection, TLS, authentication, 421…) means the relay is not
/// usable right now.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let text = error.to_string();
    match error.status().map(|code| code.to_string()).as_deref() {
        // RFC 5321 §4.2.3: mailbox unavailable, not local, name not allowed, syntax, too big.
        Some("550" | "551" | "553" | "501" | "552") => SendError::Rejected(text),
        Some("450" | "452") => SendError::Temporary(text),
        _ => SendError::Unavailable(text),
    }
}

#[async_trait]
impl MailTransport for SmtpTransport {
    async fn send(&self, mail: &QueuedMail) -> Result<(), SendError> {
        let message = build_message(&self.from, mail)?;
        self.relay
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}

/// Delivery as `.eml` files in a directory: the demo default, and a way to read what would have
/// been sent. Each file is complete or absent (written beside, then renamed), named
/// `<queued time, UTC>-<outbox id>.eml` so a listing sorts by time.
#[derive(Debug, Clone)]
pub struct FileTransport {
    dir: PathBuf,
    from: Mailbox,
}

impl FileTransport {
    /// Creates `dir` if needed (mode 0700: the files hold codes and links).
    pub fn open(dir: &Path, from: Mailbox) -> Result<Self, MailSetupError> {
        create_private_dir(dir).map_err(|source| MailSetupError::OutboxDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            from,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name of a mail: sortable by queue time, unique by outbox id.
    pub fn file_name(mail: &QueuedMail) -> String {
        let stamp = from_unix(mail.created_at)
            .format(format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_else(|_| mail.created_at.to_string());
        format!("{stamp}-{:010}.eml", mail.id)
    }
}

#[async_trait]
impl MailTransport for FileTransport {
    async fn send(&self, mail: &QueuedMail) -> Result<(), SendError> {
        let bytes = build_message(&self.from, mail)?.formatted();
        let dir = self.dir.clone();
        let name = Self::file_name(mail);
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
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

/// Creates a directory (and its parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `dir/name` whole or not at all: a hidden temporary file beside it, synced, then
/// renamed over the final name (atomic on POSIX file systems). Mode 0600.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use mail_parser::MimeHeaders as _;

    use super::*;
    use crate::locale::Locale;
    use crate::mail::EmailAddress;
    use crate::mail::messages::confirmation_code;

    fn queued(locale: Locale) -> QueuedMail {
        QueuedMail {
            id: 42,
            mail: confirmation_code(
                locale,
                EmailAddress::parse("emilie.dupre@example.org").unwrap(),
                "482913",
                "Université Clermont Auvergne",
            ),
            created_at: 1_788_220_800,
            attempts: 1,
        }
    }

    fn from() -> Mailbox {
        sender_mailbox("Sésame <no-reply@uca.fr>").unwrap()
    }

    #[test]
    fn messages_are_rfc5322_with_alternative_text_and_html() {
        let mail = queued(Locale::Fr);
        let bytes = build_message(&from(), &mail).unwrap().formatted();
        let text = String::from_utf8(bytes.clone()).unwrap();
        // Header lines are 7-bit (non-ASCII goes through RFC 2047 encoded words).
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.is_ascii(), "{head}");
        assert!(head.contains("Auto-Submitted: auto-generated"), "{head}");

        let parsed = mail_parser::MessageParser::default()
            .parse(&bytes)
            .expect("parses");
        assert_eq!(parsed.subject(), Some("Votre code de confirmation Sésame"));
        let to = parsed.to().and_then(|a| a.first()).unwrap();
        assert_eq!(to.address(), Some("emilie.dupre@example.org"));
        let sender = parsed.from().and_then(|a| a.first()).unwrap();
        assert_eq!(sender.address(), Some("no-reply@uca.fr"));
        assert_eq!(sender.name(), Some("Sésame"));
        assert_eq!(parsed.message_id(), Some("sesame.42.1788220800@uca.fr"));
        assert_eq!(
            parsed.date().map(|d| d.to_timestamp()),
            Some(mail.created_at)
        );
        let content_type = parsed.content_type().unwrap();
        assert_eq!(content_type.ctype(), "multipart");
        assert_eq!(content_type.subtype(), Some("alternative"));
        // SMTP lines end in CRLF (RFC 5322 §2.1); the bodies are otherwise intact.
        let lf = |s: &str| s.replace("\r\n", "\n").trim_end().to_string();
        assert_eq!(lf(&parsed.body_text(0).unwrap()), lf(&mail.mail.text));
        assert_eq!(lf(&parsed.body_html(0).unwrap()), lf(&mail.mail.html));
    }

    // A runtime: lettre's connection pool starts its clean-up task when built.
    #[tokio::test]
    async fn smtp_urls_require_tls_except_on_loopback() {
        let starttls = SmtpSettings::parse("smtp://sesame:p%40ss%2Fw0rd@smtp.uca.fr").unwrap();
        assert_eq!(starttls.security, SmtpSecurity::StartTls);
        assert_eq!(starttls.port, 587);
        assert_eq!(starttls.username.as_deref(), Some("sesame"));
        assert_eq!(starttls.password.as_deref(), Some("p@ss/w0rd"));
        let tls = SmtpSettings::parse("smtps://smtp.uca.fr").unwrap();
        assert_eq!((tls.security, tls.port), (SmtpSecurity::Tls, 465));
        let local = SmtpSettings::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!((local.security, local.port), (SmtpSecurity::None, 2525));
        assert_eq!(
            SmtpSettings::parse("smtp://localhost:25?tls=none")
                .unwrap()
                .security,
            SmtpSecurity::None
        );
        for bad in [
            "smtp://smtp.uca.fr?tls=none",
            "smtps://127.0.0.1?tls=none",
            "smtp://smtp.uca.fr?tls=opportunistic",
            "smtp://smtp.uca.fr?foo=bar",
            "http://smtp.uca.fr",
            "smtp://:secret@smtp.uca.fr",
        ] {
            assert!(SmtpSettings::parse(bad).is_err(), "{bad}");
        }
        let error = SmtpSettings::parse("smtp://u:hunter2@smtp.uca.fr?tls=none").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        let transport =
            SmtpTransport::new("smtp://u:hunter2@smtp.uca.fr", from(), SMTP_TIMEOUT).unwrap();
        assert!(!format!("{transport:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn the_file_transport_writes_complete_private_eml_files() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("data/outbox");
        let transport = FileTransport::open(&outbox, from()).unwrap();
        let first = queued(Locale::Fr);
        let mut second = queued(Locale::En);
        second.id = 43;
        transport.send(&second).await.unwrap();
        transport.send(&first).await.unwrap();
        // A retry of the same mail replaces its file instead of adding one.
        transport.send(&first).await.unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&outbox)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "20260901T000000Z-0000000042.eml",
                "20260901T000000Z-0000000043.eml"
            ]
        );
        let bytes = std::fs::read(outbox.join(&names[1])).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.subject(), Some("Your Sésame confirmation code"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&outbox), 0o700);
            assert_eq!(mode(&outbox.join(&names[0])), 0o600);
        }
    }
}
