//! Configuration: a TOML file (optional), then environment overrides, then command-line flags.
//!
//! Every key has a default, so Sésame runs with no file at all (the demo). Loading never stops at
//! the first problem: unknown keys, values of the wrong type, bad durations and bad URLs are all
//! collected and reported together (`sesame check-config`). Environment variables override keys as
//! `SESAME_SECTION__KEY` (`SESAME_DATA_DIR` for a top-level key); any secret key may instead be
//! read from a file named by `SESAME_SECTION__KEY_FILE` or by a `key_file = "…"` entry.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::{Table, Value};
use url::Url;

/// Keys whose values are secrets: masked when printed, readable from `*_file` / `*_FILE`.
pub const SECRET_KEYS: &[&str] = &[
    "database.url",
    "mail.smtp_url",
    "sms.gateway_url",
    "sms.authorization",
];

/// Environment variables that start with `SESAME_` but are not configuration keys.
const NON_CONFIG_VARIABLES: &[&str] = &["SESAME_CONFIG"];
const NON_CONFIG_PREFIXES: &[&str] = &["SESAME_TEST_", "SESAME_BENCH_"];

/// One thing wrong with the configuration, located by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `section.key`, or the file for syntax errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found while loading, in the order found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the configuration has {} problem(s):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// A duration written for humans (`10s`, `2h`, `30days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a duration ({e}); write e.g. \"10s\", \"15min\", \"8h\""
                ))
            })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A trusted proxy: one address (`192.0.2.7`) or a CIDR range (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRange(pub IpNet);

impl<'de> Deserialize<'de> for ProxyRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(ProxyRange(net));
        }
        text.parse::<IpAddr>()
            .map(|ip| ProxyRange(IpNet::from(ip)))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{text}` is neither an IP address nor a CIDR range"
                ))
            })
    }
}

impl Serialize for ProxyRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

/// Values a configuration key can hold. Implemented through serde for the common types.
trait FieldValue: Sized {
    fn from_value(value: Value) -> Result<Self, String>;
}

impl<T: serde::de::DeserializeOwned> FieldValue for T {
    fn from_value(value: Value) -> Result<Self, String> {
        T::deserialize(value).map_err(|e| e.message().trim().to_string())
    }
}

/// A configuration section: knows its keys and loads itself from a TOML table, recording every
/// problem instead of stopping at the first.
trait Section: Default {
    const KEYS: &'static [&'static str];
    fn load(table: &Table, section: &str, problems: &mut Vec<Problem>) -> Self;
}

macro_rules! section {
    ($(#[$meta:meta])* pub struct $name:ident { $( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $default:expr ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Serialize)]
        pub struct $name { $( $(#[doc = $doc])* pub $field: $ty, )* }

        impl Default for $name {
            fn default() -> Self { Self { $( $field: $default, )* } }
        }

        impl Section for $name {
            const KEYS: &'static [&'static str] = &[$( stringify!($field) ),*];

            fn load(table: &Table, section: &str, problems: &mut Vec<Problem>) -> Self {
                let mut out = Self::default();
                for key in table.keys() {
                    if !Self::KEYS.contains(&key.as_str()) {
                        problems.push(Problem {
                            key: format!("{section}.{key}"),
                            message: format!("unknown key (known keys of [{section}]: {})", Self::KEYS.join(", ")),
                        });
                    }
                }
                $(
                    if let Some(value) = table.get(stringify!($field)) {
                        match <$ty as FieldValue>::from_value(value.clone()) {
                            Ok(parsed) => out.$field = parsed,
                            Err(message) => problems.push(Problem {
                                key: format!("{section}.{}", stringify!($field)),
                                message,
                            }),
                        }
                    }
                )*
                out
            }
        }
    };
}

section! {
    /// `[server]`: where and how Sésame listens.
    pub struct Server {
        /// Socket address to listen on.
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
        /// The public URL users and applications see; the OIDC issuer and every absolute URL
        /// (mails included) are built from it. Defaults to `http://<listen>`.
        public_url: Option<Url> = None,
        /// PEM certificate chain for native HTTPS (with `tls_key`).
        tls_cert: Option<PathBuf> = None,
        /// PEM private key for native HTTPS (with `tls_cert`).
        tls_key: Option<PathBuf> = None,
        /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges).
        trusted_proxies: Vec<ProxyRange> = Vec::new(),
        /// Addresses allowed to read `/metrics` (others get a 404).
        metrics_allowed: Vec<ProxyRange> = vec![
            ProxyRange("127.0.0.0/8".parse().expect("valid range")),
            ProxyRange(IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))),
        ],
        /// Longest time a request may take before it is answered 408.
        request_timeout: HumanDuration = HumanDuration(Duration::from_secs(30)),
        /// How long in-flight requests may run after SIGTERM before the process exits.
        shutdown_grace: HumanDuration = HumanDuration(Duration::from_secs(30)),
    }
}

section! {
    /// `[database]`: the SQL backend, chosen by the URL scheme.
    pub struct Database {
        /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`. Defaults to
        /// `sqlite://<data_dir>/sesame.db`.
        url: Option<String> = None,
        /// PostgreSQL only: keep every table in this schema (created if needed), e.g. when several
        /// deployments share one database.
        schema: Option<String> = None,
        /// Connections kept by this node.
        max_connections: u32 = 10,
        /// How long to wait for a connection before reporting the database unavailable.
        acquire_timeout: HumanDuration = HumanDuration(Duration::from_secs(5)),
        /// SQLite only: how long a writer waits for the lock held by another.
        busy_timeout: HumanDuration = HumanDuration(Duration::from_secs(5)),
    }
}

section! {
    /// `[keys]`: the master key and the signing keys.
    pub struct Keys {
        /// Directory holding the master key file.
        dir: PathBuf = PathBuf::from("./keys"),
        /// The 256-bit master key that encrypts secrets at rest. Defaults to `<dir>/master.key`.
        master_key_file: Option<PathBuf> = None,
        /// How long a new signing key is published before it signs (≥ the JWKS cache time of
        /// relying parties), after `sesame keys rotate`.
        publish_before_use: HumanDuration = HumanDuration(Duration::from_secs(24 * 3600)),
        /// How long a retired key stays published so tokens it signed still verify.
        keep_retired: HumanDuration = HumanDuration(Duration::from_secs(7 * 24 * 3600)),
    }
}

section! {
    /// `[mail]`: how mail leaves Sésame.
    pub struct Mail {
        /// Sender address of every mail.
        from: String = "Sésame <no-reply@localhost>".to_string(),
        /// `smtp://` (STARTTLS, required) or `smtps://` (TLS) URL of the relay; `?tls=none` is
        /// allowed only to a loopback host. Unset, mails are written as `.eml` files.
        smtp_url: Option<String> = None,
        /// Where `.eml` files go when no SMTP relay is set (and SMS files, in `sms/`). Defaults to
        /// `<data_dir>/outbox`.
        outbox_dir: Option<PathBuf> = None,
        /// How often each node sends the queued mails.
        send_interval: HumanDuration = HumanDuration(Duration::from_secs(2)),
    }
}

section! {
    /// `[sms]`: how SMS leave Sésame (confirmation codes to mobiles).
    pub struct Sms {
        /// The provider's HTTP endpoint (https); unset, SMS are written to `<outbox_dir>/sms/`.
        gateway_url: Option<String> = None,
        /// The POST body; `{to}` (E.164) and `{text}` are replaced, JSON-escaped.
        body_template: String = r#"{"to": "{to}", "text": "{text}"}"#.to_string(),
        /// The body's media type.
        content_type: String = "application/json".to_string(),
        /// An `Authorization` header value for the gateway (e.g. `Bearer …`).
        authorization: Option<String> = None,
        /// Longest wait for the gateway.
        timeout: HumanDuration = HumanDuration(Duration::from_secs(10)),
    }
}

section! {
    /// `[university]`: who runs this Sésame.
    pub struct University {
        /// Shown on pages and mails, and refused inside passwords.
        name: String = "Université Clermont Auvergne".to_string(),
        /// Domain of student addresses (`prenom.nom@<student_domain>`).
        student_domain: String = "etu.uca.fr".to_string(),
        /// Domain of staff addresses.
        staff_domain: String = "uca.fr".to_string(),
    }
}

section! {
    /// `[password]`: hashing cost and policy (DESIGN.md §4).
    pub struct Password {
        /// Argon2id memory per hash, in KiB (OWASP's minimum for Argon2id: 19 MiB).
        memory_kib: u32 = 19 * 1024,
        /// Argon2id passes.
        iterations: u32 = 2,
        /// Argon2id lanes.
        parallelism: u32 = 1,
        /// Hashing threads; 0 means one per core.
        workers: usize = 0,
        /// Hashes allowed to wait; beyond, pages answer "busy, retry" at once.
        queue: usize = 64,
        /// Shortest password, in Unicode code points.
        min_length: usize = 12,
        /// Lowest zxcvbn score accepted (0–4).
        min_score: u8 = 3,
    }
}

section! {
    /// `[limits]`: throttling of the credential forms by client address (DESIGN.md §6), on top
    /// of the per-identifier lockout. Each node counts alone, in bounded memory.
    pub struct Limits {
        /// POSTs per minute from one client address to the login, activation and
        /// forgotten-password forms.
        per_address_per_minute: u32 = 30,
        /// POSTs per second to those forms from everyone together, on this node.
        global_per_second: u32 = 200,
    }
}

section! {
    /// `[lockout]`: the per-identifier lock after wrong passwords (DESIGN.md §6; names follow
    /// Keycloak's brute-force detection). Counted in the database, shared by every node.
    pub struct Lockout {
        /// Consecutive failures before the first temporary lock.
        max_login_failures: i64 = 5,
        /// The first temporary lock; each further failure doubles it.
        wait_increment: HumanDuration = HumanDuration(Duration::from_secs(60)),
        /// The longest temporary lock.
        max_wait: HumanDuration = HumanDuration(Duration::from_secs(15 * 60)),
        /// Consecutive failures that hard-lock an identifier until `sesame admin unlock` or a
        /// password reset. NIST SP 800-63B's ceiling; logins are predictable, so a low value lets
        /// anyone lock out anyone.
        permanent_lockout_after: i64 = 100,
        /// How long the counters of identifiers that match no account are kept after their last
        /// failure.
        failure_reset_time: HumanDuration = HumanDuration(Duration::from_secs(12 * 3600)),
    }
}

section! {
    /// `[sessions]`: how long an SSO session lives (DESIGN.md §5).
    pub struct Sessions {
        /// Ends after this long without a request.
        idle: HumanDuration = HumanDuration(Duration::from_secs(2 * 3600)),
        /// Ends this long after the login, whatever happens.
        absolute: HumanDuration = HumanDuration(Duration::from_secs(8 * 3600)),
        /// Absolute limit when the user ticks "public computer".
        public_computer: HumanDuration = HumanDuration(Duration::from_secs(3600)),
        /// Limit when the user ticks "stay signed in".
        remember_me: HumanDuration = HumanDuration(Duration::from_secs(30 * 24 * 3600)),
    }
}

section! {
    /// `[cas]`: the CAS server (DESIGN.md §7).
    pub struct Cas {
        /// Allow `http://` services (the demo and tests on loopback); never in production.
        allow_http_services: bool = false,
        /// Life of a service or proxy ticket (at most 5 minutes).
        ticket_lifetime: HumanDuration = HumanDuration(Duration::from_secs(10)),
        /// Services declared here (`[[cas.services]]`); `sesame service add` adds more.
        services: Vec<crate::relying_parties::CasService> = Vec::new(),
    }
}

section! {
    /// `[oidc]`: the OpenID Connect provider (DESIGN.md §7).
    pub struct Oidc {
        /// Allow `http://` redirect URIs on any host (the demo and tests); loopback hosts are
        /// always allowed (RFC 8252 §7.3). Never in production.
        allow_http_redirects: bool = false,
        /// Life of an authorization code (at most 10 minutes, RFC 6749 §4.1.2).
        code_lifetime: HumanDuration = HumanDuration(Duration::from_secs(60)),
        /// Life of an ID token.
        id_token_lifetime: HumanDuration = HumanDuration(Duration::from_secs(300)),
        /// Life of an access token.
        access_token_lifetime: HumanDuration = HumanDuration(Duration::from_secs(600)),
        /// Absolute life of a refresh-token family; it also ends with its SSO session.
        refresh_token_lifetime: HumanDuration = HumanDuration(Duration::from_secs(30 * 24 * 3600)),
        /// Clients declared here (`[[oidc.clients]]`); `sesame client add` adds more.
        clients: Vec<crate::relying_parties::clients::OidcClient> = Vec::new(),
    }
}

section! {
    /// `[mfa]`: second factors (DESIGN.md §5).
    pub struct Mfa {
        /// Affiliations (eduPersonAffiliation: `staff`, `faculty`, `employee`, `student`…) whose
        /// every login needs a second factor, whatever the application.
        required_for: Vec<String> = Vec::new(),
        /// When a second factor is required and the account has none: `enrol` (sign in with the
        /// password, then straight to the TOTP enrolment) or `refuse`.
        unenrolled: Unenrolled = Unenrolled::Enrol,
        /// Offer passkeys (needs `server.public_url` with a host name, not an IP address).
        passkeys: bool = true,
    }
}

/// What happens when a second factor is required from an account that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unenrolled {
    Enrol,
    Refuse,
}

section! {
    /// `[log]`: diagnostics.
    pub struct Log {
        /// `text` or `json`.
        format: LogFormat = LogFormat::Text,
        /// A `tracing` filter, e.g. `info` or `info,tower_http=debug` (a line per request).
        level: String = "info".to_string(),
    }
}

section! {
    /// `[maintenance]`: the background jobs every node runs.
    pub struct Maintenance {
        /// How often expired rows are purged and due signing keys promoted.
        interval: HumanDuration = HumanDuration(Duration::from_secs(60)),
    }
}

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Which SQL backend a database URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The whole, validated configuration, with every derived default filled in.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Directory for the SQLite database and the mail outbox.
    pub data_dir: PathBuf,
    pub server: Server,
    pub database: Database,
    pub keys: Keys,
    pub mail: Mail,
    pub sms: Sms,
    pub university: University,
    pub password: Password,
    pub limits: Limits,
    pub lockout: Lockout,
    pub sessions: Sessions,
    pub cas: Cas,
    pub oidc: Oidc,
    pub mfa: Mfa,
    pub log: Log,
    pub maintenance: Maintenance,
}

/// Overrides given on the command line; they win over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
}

impl Config {
    /// The configuration with no file, no environment and no flags: the demo's.
    pub fn defaults() -> Self {
        Self::from_table(Table::new()).expect("the defaults are valid")
    }

    /// Loads `file` (if any), applies `env` overrides and `cli` flags, then validates.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        cli: &CliOverrides,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut table = match file {
            None => Table::new(),
            Some(path) => match std::fs::read_to_string(path) {
                Err(e) => {
                    return Err(ConfigError {
                        problems: vec![Problem {
                            key: path.display().to_string(),
                            message: format!("cannot read the configuration file: {e}"),
                        }],
                    });
                }
                Ok(text) => match text.parse::<Table>() {
                    Ok(table) => table,
                    Err(e) => {
                        return Err(ConfigError {
                            problems: vec![Problem {
                                key: path.display().to_string(),
                                message: format!("not valid TOML: {}", e.message()),
                            }],
                        });
                    }
                },
            },
        };
        read_secret_files_in_table(&mut table, &mut problems);
        apply_environment(&mut table, env, &mut problems);
        apply_cli(&mut table, cli);
        match Self::from_table(table) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError { problems }),
            Err(mut more) => {
                problems.append(&mut more.problems);
                Err(ConfigError { problems })
            }
        }
    }

    /// Loads from the process environment: `SESAME_*` variables.
    pub fn load_from_process(file: Option<&Path>, cli: &CliOverrides) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(name, _)| name.starts_with("SESAME_"))
            .collect();
        Self::load(file, &env, cli)
    }

    fn from_table(table: Table) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut data_dir = PathBuf::from("./data");
        let mut sections: BTreeMap<&str, Table> = BTreeMap::new();
        const SECTIONS: &[&str] = &[
            "server",
            "database",
            "keys",
            "mail",
            "sms",
            "university",
            "password",
            "limits",
            "lockout",
            "sessions",
            "cas",
            "oidc",
            "mfa",
            "log",
            "maintenance",
        ];
        for (key, value) in table {
            match (key.as_str(), value) {
                ("data_dir", Value::String(dir)) => data_dir = PathBuf::from(dir),
                ("data_dir", other) => problems.push(Problem {
                    key: "data_dir".into(),
                    message: format!("expected a path string, found {}", other.type_str()),
                }),
                (name, Value::Table(section)) if SECTIONS.contains(&name) => {
                    let name = SECTIONS.iter().find(|s| **s == name).copied().unwrap_or("");
                    sections.insert(name, section);
                }
                (name, other) if SECTIONS.contains(&name) => problems.push(Problem {
                    key: name.to_string(),
                    message: format!("expected a [{name}] table, found {}", other.type_str()),
                }),
                (name, _) => problems.push(Problem {
                    key: name.to_string(),
                    message: format!(
                        "unknown key (known: data_dir and the sections [{}])",
                        SECTIONS.join("], [")
                    ),
                }),
            }
        }
        let empty = Table::new();
        let section = |name: &str| sections.get(name).unwrap_or(&empty);
        let mut config = Config {
            server: Server::load(section("server"), "server", &mut problems),
            database: Database::load(section("database"), "database", &mut problems),
            keys: Keys::load(section("keys"), "keys", &mut problems),
            mail: Mail::load(section("mail"), "mail", &mut problems),
            sms: Sms::load(section("sms"), "sms", &mut problems),
            university: University::load(section("university"), "university", &mut problems),
            password: Password::load(section("password"), "password", &mut problems),
            limits: Limits::load(section("limits"), "limits", &mut problems),
            lockout: Lockout::load(section("lockout"), "lockout", &mut problems),
            sessions: Sessions::load(section("sessions"), "sessions", &mut problems),
            cas: Cas::load(section("cas"), "cas", &mut problems),
            oidc: Oidc::load(section("oidc"), "oidc", &mut problems),
            mfa: Mfa::load(section("mfa"), "mfa", &mut problems),
            log: Log::load(section("log"), "log", &mut problems),
            maintenance: Maintenance::load(section("maintenance"), "maintenance", &mut problems),
            data_dir,
        };
        config.derive_defaults();
        config.validate(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Fills the defaults that depend on other keys.
    fn derive_defaults(&mut self) {
        if self.server.public_url.is_none() {
            self.server.public_url = Url::parse(&format!("http://{}/", self.server.listen)).ok();
        }
        if self.database.url.is_none() {
            self.database.url = Some(format!(
                "sqlite://{}",
                self.data_dir.join("sesame.db").display()
            ));
        }
        if self.keys.master_key_file.is_none() {
            self.keys.master_key_file = Some(self.keys.dir.join("master.key"));
        }
        if self.mail.outbox_dir.is_none() {
            self.mail.outbox_dir = Some(self.data_dir.join("outbox"));
        }
    }

    fn validate(&self, problems: &mut Vec<Problem>) {
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.into(),
                message,
            })
        };
        if let Some(url) = &self.server.public_url {
            match url.scheme() {
                "https" => {}
                "http" if host_is_loopback(url) => {}
                "http" => problem(
                    "server.public_url",
                    format!(
                        "`{url}` must use https (plain http is only allowed on a loopback address)"
                    ),
                ),
                other => problem(
                    "server.public_url",
                    format!("`{url}` has scheme `{other}`; expected https (or http on loopback)"),
                ),
            }
            if url.query().is_some() || url.fragment().is_some() {
                problem(
                    "server.public_url",
                    format!("`{url}` must not have a query or a fragment"),
                );
            }
            if url.host_str().is_none() {
                problem("server.public_url", format!("`{url}` has no host"));
            }
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => problem(
                "server.tls_key",
                "tls_cert is set but tls_key is not; set both or neither".into(),
            ),
            (None, Some(_)) => problem(
                "server.tls_cert",
                "tls_key is set but tls_cert is not; set both or neither".into(),
            ),
            _ => {}
        }
        if let Some(url) = &self.database.url
            && let Err(message) = backend_of(url)
        {
            problem("database.url", message);
        }
        if let Some(schema) = &self.database.schema {
            if self.database.url.as_deref().map(backend_of) != Some(Ok(Backend::Postgres)) {
                problem(
                    "database.schema",
                    "only PostgreSQL databases have schemas; remove it for SQLite".into(),
                );
            }
            if schema.is_empty()
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                problem(
                    "database.schema",
                    format!("`{schema}` must be lower-case letters, digits and underscores"),
                );
            }
        }
        if self.database.max_connections == 0 {
            problem("database.max_connections", "must be at least 1".into());
        }
        if self.server.request_timeout.0.is_zero() {
            problem("server.request_timeout", "must be more than zero".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problem(
                "log.level",
                format!("`{}` is not a log filter: {e}", self.log.level),
            );
        }
        if self.maintenance.interval.0 < Duration::from_secs(1) {
            problem("maintenance.interval", "must be at least 1s".into());
        }
        if let Some(smtp) = &self.mail.smtp_url {
            match Url::parse(smtp) {
                Ok(url) if matches!(url.scheme(), "smtp" | "smtps") => {
                    for (key, value) in url.query_pairs() {
                        // `smtp` is not a special URL scheme: an IP address is an opaque host.
                        let loopback = url.host_str().is_some_and(|host| {
                            host == "localhost"
                                || host
                                    .trim_start_matches('[')
                                    .trim_end_matches(']')
                                    .parse::<IpAddr>()
                                    .is_ok_and(|ip| ip.is_loopback())
                        });
                        let plain_on_loopback =
                            url.scheme() == "smtp" && value == "none" && loopback;
                        if key != "tls" || !plain_on_loopback {
                            problem(
                                "mail.smtp_url",
                                format!(
                                    "`{key}={value}` is not allowed: the only parameter is \
                                     tls=none, for smtp:// to a loopback relay"
                                ),
                            );
                        }
                    }
                }
                Ok(url) => problem(
                    "mail.smtp_url",
                    format!(
                        "scheme `{}` is not supported; use smtp:// (STARTTLS) or smtps://",
                        url.scheme()
                    ),
                ),
                Err(e) => problem("mail.smtp_url", format!("not a URL: {e}")),
            }
        }
        for (key, domain) in [
            ("university.student_domain", &self.university.student_domain),
            ("university.staff_domain", &self.university.staff_domain),
        ] {
            let valid = !domain.is_empty()
                && domain.contains('.')
                && domain.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if !valid {
                problem(key, format!("`{domain}` is not a lower-case domain name"));
            }
        }
        if self.password.memory_kib < 8 * self.password.parallelism.max(1) {
            problem(
                "password.memory_kib",
                "must be at least 8 KiB per lane (19456 is the recommended minimum)".into(),
            );
        }
        if self.password.iterations == 0 {
            problem("password.iterations", "must be at least 1".into());
        }
        if self.password.parallelism == 0 {
            problem("password.parallelism", "must be at least 1".into());
        }
        if self.limits.per_address_per_minute == 0 {
            problem("limits.per_address_per_minute", "must be at least 1".into());
        }
        if self.limits.global_per_second == 0 {
            problem("limits.global_per_second", "must be at least 1".into());
        }
        if self.password.queue == 0 {
            problem("password.queue", "must be at least 1".into());
        }
        if self.password.min_length < 8 {
            problem(
                "password.min_length",
                "must be at least 8 (NIST SP 800-63B); 12 is recommended".into(),
            );
        }
        for (key, value) in [
            (
                "lockout.max_login_failures",
                self.lockout.max_login_failures,
            ),
            (
                "lockout.permanent_lockout_after",
                self.lockout.permanent_lockout_after,
            ),
        ] {
            if value < 1 {
                problem(key, format!("must be at least 1, not {value}"));
            }
        }
        for (key, value) in [
            ("lockout.wait_increment", self.lockout.wait_increment.0),
            ("lockout.max_wait", self.lockout.max_wait.0),
            ("sessions.idle", self.sessions.idle.0),
            ("sessions.absolute", self.sessions.absolute.0),
            ("sessions.public_computer", self.sessions.public_computer.0),
            ("sessions.remember_me", self.sessions.remember_me.0),
        ] {
            if value < Duration::from_secs(1) {
                problem(key, "must be at least one second".into());
            }
        }
        if self.cas.ticket_lifetime.0 < Duration::from_secs(1)
            || self.cas.ticket_lifetime.0 > Duration::from_secs(300)
        {
            problem(
                "cas.ticket_lifetime",
                "must be between 1 second and 5 minutes".into(),
            );
        }
        let mut ids = std::collections::BTreeSet::new();
        for service in &self.cas.services {
            if let Err(message) = service.check(self.cas.allow_http_services) {
                problem(&format!("cas.services.{}", service.id), message);
            }
            if !ids.insert(service.id.as_str()) {
                problem(
                    &format!("cas.services.{}", service.id),
                    "declared twice".into(),
                );
            }
        }
        for (key, value, max) in [
            ("oidc.code_lifetime", self.oidc.code_lifetime.0, 600),
            (
                "oidc.id_token_lifetime",
                self.oidc.id_token_lifetime.0,
                24 * 3600,
            ),
            (
                "oidc.access_token_lifetime",
                self.oidc.access_token_lifetime.0,
                24 * 3600,
            ),
            (
                "oidc.refresh_token_lifetime",
                self.oidc.refresh_token_lifetime.0,
                366 * 24 * 3600,
            ),
        ] {
            if value < Duration::from_secs(1) || value > Duration::from_secs(max) {
                problem(
                    key,
                    format!(
                        "must be between 1 second and {}",
                        humantime::format_duration(Duration::from_secs(max))
                    ),
                );
            }
        }
        let mut client_ids = std::collections::BTreeSet::new();
        for client in &self.oidc.clients {
            if let Err(message) = client.check(self.oidc.allow_http_redirects) {
                problem(&format!("oidc.clients.{}", client.id), message);
            }
            if !client_ids.insert(client.id.as_str()) {
                problem(
                    &format!("oidc.clients.{}", client.id),
                    "declared twice".into(),
                );
            }
        }
        if self.password.min_score > 4 {
            problem("password.min_score", "zxcvbn scores go from 0 to 4".into());
        }
        if self.university.name.trim().is_empty() {
            problem("university.name", "must not be empty".into());
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            problem(
                "mail.from",
                format!(
                    "`{}` is not an e-mail address (write `Name <address>` or `address`)",
                    self.mail.from
                ),
            );
        }
        if self.mail.send_interval.0 < Duration::from_millis(100) {
            problem("mail.send_interval", "must be at least 100ms".into());
        }
    }

    /// The public URL (always set after loading).
    pub fn public_url(&self) -> &Url {
        self.server
            .public_url
            .as_ref()
            .expect("derived during loading")
    }

    /// The database URL (always set after loading).
    pub fn database_url(&self) -> &str {
        self.database
            .url
            .as_deref()
            .expect("derived during loading")
    }

    pub fn backend(&self) -> Backend {
        backend_of(self.database_url()).expect("validated during loading")
    }

    pub fn master_key_file(&self) -> &Path {
        self.keys
            .master_key_file
            .as_deref()
            .expect("derived during loading")
    }

    pub fn outbox_dir(&self) -> &Path {
        self.mail
            .outbox_dir
            .as_deref()
            .expect("derived during loading")
    }

    /// Whether the public URL is plain http (only allowed on loopback: the demo and tests).
    pub fn is_plain_http(&self) -> bool {
        self.public_url().scheme() == "http"
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut value = Value::try_from(self).expect("the configuration serialises");
        for key in SECRET_KEYS {
            let (section, name) = key.split_once('.').expect("section.key");
            if let Some(Value::String(secret)) = value
                .get_mut(section)
                .and_then(|s| s.as_table_mut())
                .and_then(|s| s.get_mut(name))
            {
                *secret = mask_secret(secret);
            }
        }
        toml::to_string_pretty(&value).expect("TOML values serialise")
    }
}

/// Masks a secret for display: URLs keep everything but their password, other secrets vanish.
pub fn mask_secret(secret: &str) -> String {
    match Url::parse(secret) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("********"));
            url.to_string()
        }
        Ok(url) if url.has_host() || url.scheme() == "sqlite" => url.to_string(),
        _ => "********".to_string(),
    }
}

fn backend_of(url: &str) -> Result<Backend, String> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("sqlite") => Ok(Backend::Sqlite),
        Some("postgres" | "postgresql") => {
            Url::parse(url).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
            Ok(Backend::Postgres)
        }
        _ => Err(format!(
            "`{}` is not a database URL; use sqlite://PATH or postgres://USER@HOST/DB",
            mask_secret(url)
        )),
    }
}

fn host_is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// Whether an address belongs to one of the trusted proxies.
pub fn is_trusted_proxy(proxies: &[ProxyRange], peer: IpAddr) -> bool {
    proxies.iter().any(|range| range.0.contains(&peer))
}

/// Replaces every `key_file = "PATH"` entry of a secret key by the file's contents.
fn read_secret_files_in_table(table: &mut Table, problems: &mut Vec<Problem>) {
    for key in SECRET_KEYS {
        let (section, name) = key.split_once('.').expect("section.key");
        let Some(Value::Table(section_table)) = table.get_mut(section) else {
            continue;
        };
        let file_key = format!("{name}_file");
        if let Some(value) = section_table.remove(&file_key) {
            match value {
                Value::String(path) => match read_secret_file(Path::new(&path)) {
                    Ok(secret) => {
                        section_table.insert(name.to_string(), Value::String(secret));
                    }
                    Err(message) => problems.push(Problem {
                        key: format!("{section}.{file_key}"),
                        message,
                    }),
                },
                other => problems.push(Problem {
                    key: format!("{section}.{file_key}"),
                    message: format!("expected a path string, found {}", other.type_str()),
                }),
            }
        }
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))
}

/// Applies `SESAME_SECTION__KEY=value` (and `…_FILE=path` for secrets) to the table.
fn apply_environment(
    table: &mut Table,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    for (name, raw) in env {
        if NON_CONFIG_VARIABLES.contains(&name.as_str())
            || NON_CONFIG_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            continue;
        }
        let Some(rest) = name.strip_prefix("SESAME_") else {
            continue;
        };
        let lowered = rest.to_ascii_lowercase();
        let (path, from_file) = match lowered.strip_suffix("_file") {
            Some(base) if SECRET_KEYS.contains(&base.replacen("__", ".", 1).as_str()) => {
                (base.to_string(), true)
            }
            _ => (lowered, false),
        };
        let value = if from_file {
            match read_secret_file(Path::new(raw)) {
                Ok(secret) => Value::String(secret),
                Err(message) => {
                    problems.push(Problem {
                        key: name.clone(),
                        message,
                    });
                    continue;
                }
            }
        } else {
            env_value(raw)
        };
        match path.split_once("__") {
            None => {
                table.insert(path, value);
            }
            Some((section, key)) => {
                let entry = table
                    .entry(section.to_string())
                    .or_insert_with(|| Value::Table(Table::new()));
                match entry {
                    Value::Table(section_table) => {
                        section_table.insert(key.to_string(), value);
                    }
                    _ => problems.push(Problem {
                        key: name.clone(),
                        message: format!("[{section}] is not a table in the configuration file"),
                    }),
                }
            }
        }
    }
}

/// Interprets an environment value: a TOML literal when it is one (`5`, `true`, `["a"]`),
/// otherwise the plain string.
fn env_value(raw: &str) -> Value {
    let looks_like_literal = raw
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '[' || c == '"' || c == '-')
        || raw == "true"
        || raw == "false";
    if looks_like_literal
        && let Ok(table) = format!("v = {raw}").parse::<Table>()
        && let Some(value) = table.get("v")
    {
        return value.clone();
    }
    Value::String(raw.to_string())
}

fn apply_cli(table: &mut Table, cli: &CliOverrides) {
    if let Some(dir) = &cli.data_dir {
        table.insert(
            "data_dir".into(),
            Value::String(dir.to_string_lossy().into_owned()),
        );
    }
    let mut server_value = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            let server = table
                .entry("server")
                .or_insert_with(|| Value::Table(Table::new()));
            if let Value::Table(server) = server {
                server.insert(key.into(), Value::String(value.clone()));
            }
        }
    };
    server_value("listen", &cli.listen);
    server_value("public_url", &cli.public_url);
}

/// Every `section.key` the configuration knows, for documentation checks.
pub fn all_keys() -> Vec<String> {
    let mut keys = vec!["data_dir".to_string()];
    let sections: [(&str, &[&str]); 15] = [
        ("server", Server::KEYS),
        ("database", Database::KEYS),
        ("keys", Keys::KEYS),
        ("mail", Mail::KEYS),
        ("sms", Sms::KEYS),
        ("university", University::KEYS),
        ("password", Password::KEYS),
        ("limits", Limits::KEYS),
        ("lockout", Lockout::KEYS),
        ("sessions", Sessions::KEYS),
        ("cas", Cas::KEYS),
        ("oidc", Oidc::KEYS),
        ("mfa", Mfa::KEYS),
        ("log", Log::KEYS),
        ("maintenance", Maintenance::KEYS),
    ];
    for (section, names) in sections {
        keys.extend(names.iter().map(|k| format!("{section}.{k}")));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sesame.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &env(vars), &CliOverrides::default())
    }

    #[test]
    fn no_file_gives_the_documented_defaults() {
        let config = Config::load(None, &env(&[]), &CliOverrides::default()).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url().as_str(), "http://127.0.0.1:8080/");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.database_url(), "sqlite://./data/sesame.db");
        assert_eq!(config.backend(), Backend::Sqlite);
        assert_eq!(config.keys.dir, PathBuf::from("./keys"));
        assert_eq!(config.master_key_file(), Path::new("./keys/master.key"));
        assert_eq!(config.outbox_dir(), Path::new("./data/outbox"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let error = load_text(
            r#"
            colour = "blue"
            [server]
            listen = "127.0.0.1:8080"
            public_url = "ftp://example.org"
            request_timeout = "soon"
            tls_cert = "/etc/cert.pem"
            [database]
            url = "mysql://x"
            flavour = 3
            "#,
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "colour",
            "server.public_url",
            "server.request_timeout",
            "server.tls_key",
            "database.url",
            "database.flavour",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        let text = error.to_string();
        assert!(text.contains("`soon` is not a duration"), "{text}");
        assert!(text.contains("unknown key"), "{text}");
    }

    #[test]
    fn environment_overrides_the_file_and_cli_overrides_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sesame.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:7000\"\n").unwrap();
        let config = Config::load(
            Some(&path),
            &env(&[
                ("SESAME_SERVER__LISTEN", "127.0.0.1:7001"),
                ("SESAME_DATABASE__MAX_CONNECTIONS", "3"),
                ("SESAME_DATA_DIR", "/srv/sesame"),
                ("SESAME_TEST_POSTGRES_URL", "postgres://ignored"),
            ]),
            &CliOverrides::default(),
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 7001);
        assert_eq!(config.public_url().as_str(), "http://127.0.0.1:7001/");
        assert_eq!(config.database.max_connections, 3);
        assert_eq!(config.database_url(), "sqlite:///srv/sesame/sesame.db");

        let cli = CliOverrides {
            data_dir: Some("/tmp/other".into()),
            listen: Some("127.0.0.1:7002".into()),
            public_url: Some("https://sso.example.org".into()),
        };
        let config = Config::load(
            Some(&path),
            &env(&[("SESAME_SERVER__LISTEN", "127.0.0.1:7001")]),
            &cli,
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 7002);
        assert_eq!(config.public_url().as_str(), "https://sso.example.org/");
        assert_eq!(config.database_url(), "sqlite:///tmp/other/sesame.db");
    }

    #[test]
    fn unknown_environment_keys_are_refused() {
        let error = Config::load(
            None,
            &env(&[("SESAME_SERVER__LISTN", "127.0.0.1:1")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert_eq!(error.problems.len(), 1);
        assert_eq!(error.problems[0].key, "server.listn");
    }

    #[test]
    fn secrets_come_from_files_and_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db-url");
        std::fs::write(
            &secret,
            "postgres://sesame:hunter2hunter2@db.internal/sesame\n",
        )
        .unwrap();
        let config = Config::load(
            None,
            &env(&[("SESAME_DATABASE__URL_FILE", secret.to_str().unwrap())]),
            &CliOverrides::default(),
        )
        .unwrap();
        assert_eq!(config.backend(), Backend::Postgres);
        assert_eq!(
            config.database_url(),
            "postgres://sesame:hunter2hunter2@db.internal/sesame"
        );
        let printed = config.to_masked_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://sesame:********@db.internal/sesame"));

        let from_table = load_text(
            &format!("[database]\nurl_file = \"{}\"\n", secret.display()),
            &[],
        )
        .unwrap();
        assert_eq!(from_table.backend(), Backend::Postgres);

        let missing = load_text("[database]\nurl_file = \"/nonexistent/secret\"\n", &[]);
        assert!(
            missing.unwrap_err().problems[0]
                .message
                .contains("cannot read secret file")
        );
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        assert!(load_text("[server]\npublic_url = \"http://localhost:8080\"\n", &[]).is_ok());
        let error = load_text("[server]\npublic_url = \"http://sso.uca.fr\"\n", &[]).unwrap_err();
        assert!(error.problems[0].message.contains("must use https"));
        assert!(load_text("[server]\npublic_url = \"https://sso.uca.fr\"\n", &[]).is_ok());
    }

    #[test]
    fn mail_relays_need_tls_except_on_loopback() {
        for ok in [
            "smtp://u:p@smtp.uca.fr:587",
            "smtps://smtp.uca.fr",
            "smtp://127.0.0.1:2525?tls=none",
            "smtp://localhost:25?tls=none",
        ] {
            let text = format!("[mail]\nsmtp_url = \"{ok}\"\n");
            assert!(load_text(&text, &[]).is_ok(), "{ok}");
        }
        for bad in [
            "smtp://smtp.uca.fr?tls=none",
            "smtps://127.0.0.1?tls=none",
            "smtp://smtp.uca.fr?tls=opportunistic",
        ] {
            let text = format!("[mail]\nsmtp_url = \"{bad}\"\n");
            let error = load_text(&text, &[]).unwrap_err();
            assert_eq!(error.problems[0].key, "mail.smtp_url", "{bad}");
        }
        let error = load_text(
            "[mail]\nfrom = \"Sésame <nobody>\"\nsend_interval = \"0s\"\n",
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["mail.from", "mail.send_interval"]);
    }

    #[test]
    fn a_bad_log_filter_is_a_problem() {
        let error = load_text("[log]\nlevel = \"sesame=loud\"\n", &[]).unwrap_err();
        assert_eq!(error.problems[0].key, "log.level");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let error = load_text("[server\n", &[]).unwrap_err();
        assert!(error.problems[0].message.starts_with("not valid TOML"));
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_ranges() {
        let config = load_text(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n",
            &[],
        )
        .unwrap();
        let proxies = &config.server.trusted_proxies;
        assert!(is_trusted_proxy(proxies, "10.1.2.3".parse().unwrap()));
        assert!(is_trusted_proxy(proxies, "192.0.2.7".parse().unwrap()));
        assert!(!is_trusted_proxy(proxies, "192.0.2.8".parse().unwrap()));
    }
}
