//! The composition root: the only place that names concrete adapters (the SQLite and PostgreSQL
//! stores, the system clock, the OS entropy source) and wires every service from the
//! configuration. Commands and tests build an [`App`] and take what they need from it.

use std::sync::Arc;

use axum::Router;

use crate::accounts::activation::{ActivationService, ActivationSettings};
use crate::accounts::helpdesk::Helpdesk;
use crate::accounts::lockout::{Lockout, LockoutPolicy};
use crate::accounts::mfa::Mfa;
use crate::accounts::password::{HashParams, PasswordError, PasswordHasher};
use crate::accounts::password_policy::PasswordPolicy;
use crate::accounts::provisioning::Importer;
use crate::accounts::recovery::{RESET_LIFETIME, RecoveryService};
use crate::audit::Auditor;
use crate::cas::server::{CasServer, CasSettings};
use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, Config, mask_secret};
use crate::entropy::{Entropy, OsEntropy};
use crate::jobs::Maintenance;
use crate::keys::{KeyError, KeyRing, RotationPolicy};
use crate::login::LoginService;
use crate::mail::MailTransport;
use crate::mail::outbox::{Outbox, OutboxSender};
use crate::mail::sms::{FileSmsSender, HttpSmsSender, SmsSender};
use crate::mail::transport::{
    FileTransport, MailSetupError, SMTP_TIMEOUT, SmtpTransport, sender_mailbox,
};
use crate::one_time::OneTimeValues;
use crate::sessions::{SessionPolicy, Sessions};
use crate::storage::StorageError;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{ConnectOptions, Store};
use crate::web::metrics::Metrics;
use crate::web::throttle::Throttle;
use crate::web::{WebServices, WebState};

/// Why Sésame could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database {url}: {source}")]
    Database {
        url: String,
        #[source]
        source: StorageError,
    },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot set up SMS: {0}")]
    Sms(String),
    #[error("cannot start password hashing: {0}")]
    Passwords(PasswordError),
    #[error("cannot set up mail: {0}")]
    Mail(#[from] MailSetupError),
    #[error("cannot set up outbound HTTP: {0}")]
    Callbacks(String),
}

/// For commands that validate no ticket.
struct NoCallbacks;

#[async_trait::async_trait]
impl crate::cas::ProxyCallback for NoCallbacks {
    async fn deliver(&self, _: &str, _: &str, _: &str) -> bool {
        false
    }
}

/// Every service of a running Sésame.
pub struct App {
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub store: Arc<dyn Store>,
    pub audit: Arc<Auditor>,
    pub keys: Arc<KeyRing>,
    pub one_time: Arc<OneTimeValues>,
    pub passwords: PasswordHasher,
    pub password_policy: PasswordPolicy,
    pub activation: Arc<ActivationService>,
    pub recovery: Arc<RecoveryService>,
    pub lockout: Arc<Lockout>,
    pub sessions: Arc<Sessions>,
    pub login: Arc<LoginService>,
    pub mfa: Arc<Mfa>,
    /// The rules of `/account`.
    pub self_service: Arc<crate::accounts::self_service::SelfService>,
    pub cas: Arc<CasServer>,
    pub oidc: Arc<crate::oidc::server::OidcServer>,
    /// Sends CAS single-logout requests (run by the jobs; tests call it directly).
    pub cas_logouts: Arc<crate::cas::logout::LogoutSender>,
    /// This node's throttles of the credential forms.
    pub throttle: Throttle,
    pub metrics: Metrics,
    /// Queues mails outside another transaction.
    pub outbox: Arc<Outbox>,
    /// Sends the outbox (run by the jobs; tests call it directly).
    pub mail_sender: Arc<OutboxSender>,
    /// Sends SMS (today the file outbox, `<outbox_dir>/sms/`).
    pub sms: Arc<dyn SmsSender>,
}

/// The mail transport of the configuration: the SMTP relay of `mail.smtp_url`, or `.eml` files
/// in the outbox directory when none is set (the demo).
pub fn mail_transport(config: &Config) -> Result<Arc<dyn MailTransport>, StartError> {
    let from = sender_mailbox(&config.mail.from)?;
    Ok(match &config.mail.smtp_url {
        Some(url) => Arc::new(SmtpTransport::new(url, from, SMTP_TIMEOUT)?),
        None => Arc::new(FileTransport::open(config.outbox_dir(), from)?),
    })
}

/// The password policy of the configuration.
pub fn password_policy(config: &Config) -> PasswordPolicy {
    PasswordPolicy {
        min_chars: config.password.min_length,
        min_score: config.password.min_score,
    }
}

/// The activation service over a store.
pub fn activation_service(
    config: &Config,
    store: Arc<dyn Store>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    passwords: PasswordHasher,
) -> ActivationService {
    ActivationService::new(
        store,
        audit,
        clock,
        entropy,
        passwords,
        password_policy(config),
        ActivationSettings {
            university: config.university.name.clone(),
            student_domain: config.university.student_domain.clone(),
            staff_domain: config.university.staff_domain.clone(),
        },
        code_mailer(),
    )
}

/// The mail that carries a 6-digit confirmation code (activation, contact change).
fn code_mailer() -> crate::accounts::activation::CodeMailer {
    Arc::new(|locale, to, code, university| {
        crate::mail::messages::confirmation_code(locale, to.clone(), code, university)
    })
}

/// The lockout thresholds of the configuration.
pub fn lockout_policy(config: &Config) -> LockoutPolicy {
    LockoutPolicy {
        max_login_failures: config.lockout.max_login_failures,
        wait_increment: config.lockout.wait_increment.0,
        max_wait: config.lockout.max_wait.0,
        permanent_lockout_after: config.lockout.permanent_lockout_after,
        failure_reset_time: config.lockout.failure_reset_time.0,
    }
}

/// The session lifetimes of the configuration.
pub fn session_policy(config: &Config) -> SessionPolicy {
    SessionPolicy {
        idle: config.sessions.idle.0,
        absolute: config.sessions.absolute.0,
        public_computer: config.sessions.public_computer.0,
        remember_me: config.sessions.remember_me.0,
    }
}

/// The CAS server over a store.
pub fn cas_server(
    config: &Config,
    callbacks: Arc<dyn crate::cas::ProxyCallback>,
    store: Arc<dyn Store>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
) -> CasServer {
    CasServer::new(
        store.clone(),
        store.clone(),
        callbacks,
        store,
        audit,
        clock,
        entropy,
        CasSettings {
            config_services: config.cas.services.clone(),
            allow_http_services: config.cas.allow_http_services,
            ticket_lifetime: config.cas.ticket_lifetime.0,
            student_domain: config.university.student_domain.clone(),
            staff_domain: config.university.staff_domain.clone(),
        },
    )
}

/// The OIDC issuer: the public URL without its trailing slash (OIDC Discovery 1.0 §3: compared
/// byte for byte by relying parties).
pub fn issuer(config: &Config) -> String {
    config
        .public_url()
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

/// The OpenID Connect provider over a store.
#[allow(clippy::too_many_arguments)]
pub fn oidc_server(
    config: &Config,
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    keys: Arc<KeyRing>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
) -> crate::oidc::server::OidcServer {
    crate::oidc::server::OidcServer::new(
        store.clone(),
        store.clone(),
        store.clone(),
        sessions,
        store,
        keys,
        audit,
        clock,
        entropy,
        crate::oidc::server::OidcSettings {
            issuer: issuer(config),
            config_clients: config.oidc.clients.clone(),
            allow_http_redirects: config.oidc.allow_http_redirects,
            code_lifetime: config.oidc.code_lifetime.0,
            id_token_lifetime: config.oidc.id_token_lifetime.0,
            access_token_lifetime: config.oidc.access_token_lifetime.0,
            refresh_token_lifetime: config.oidc.refresh_token_lifetime.0,
            student_domain: config.university.student_domain.clone(),
            staff_domain: config.university.staff_domain.clone(),
        },
    )
}

/// The domains whose addresses name our accounts (`prenom.nom@<domain>`).
pub fn our_domains(config: &Config) -> Vec<String> {
    vec![
        config.university.student_domain.clone(),
        config.university.staff_domain.clone(),
    ]
}

/// Starts the password hashing pool of the configuration.
pub fn password_hasher(
    config: &Config,
    entropy: Arc<dyn Entropy>,
) -> Result<PasswordHasher, StartError> {
    let workers = match config.password.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    PasswordHasher::start(
        HashParams {
            memory_kib: config.password.memory_kib,
            iterations: config.password.iterations,
            parallelism: config.password.parallelism,
        },
        workers,
        config.password.queue,
        entropy,
    )
    .map_err(StartError::Passwords)
}

/// Connects to the configured backend and applies pending migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let options = ConnectOptions {
        url: config.database_url().to_string(),
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout.0,
        busy_timeout: config.database.busy_timeout.0,
        schema: config.database.schema.clone(),
    };
    let opened: Result<Arc<dyn Store>, StorageError> = match config.backend() {
        Backend::Sqlite => SqliteStore::connect(&options)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>),
        Backend::Postgres => PostgresStore::connect(&options)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>),
    };
    opened.map_err(|source| StartError::Database {
        url: mask_secret(config.database_url()),
        source,
    })
}

/// What the administration commands that need no keys work with (imports, migrations).
pub struct Admin {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub audit: Arc<Auditor>,
}

impl Admin {
    /// Opens the database (migrating it) with the real clock and the OS random generator.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        let store = open_store(&config).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Ok(Self {
            config: Arc::new(config),
            audit: Arc::new(Auditor::new(store.clone(), clock.clone())),
            entropy: Arc::new(OsEntropy),
            store,
            clock,
        })
    }

    /// The activation service, for the helpdesk commands.
    pub fn activation(&self) -> Result<ActivationService, StartError> {
        let passwords = password_hasher(&self.config, self.entropy.clone())?;
        Ok(activation_service(
            &self.config,
            self.store.clone(),
            self.audit.clone(),
            self.clock.clone(),
            self.entropy.clone(),
            passwords,
        ))
    }

    fn sessions(&self) -> Arc<Sessions> {
        Arc::new(Sessions::new(
            self.store.clone(),
            self.clock.clone(),
            self.entropy.clone(),
            session_policy(&self.config),
        ))
    }

    /// The helpdesk's account service.
    pub fn helpdesk(&self) -> Helpdesk {
        Helpdesk::new(
            self.store.clone(),
            self.store.clone(),
            Arc::new(Lockout::new(
                self.store.clone(),
                self.clock.clone(),
                lockout_policy(&self.config),
            )),
            self.sessions(),
            self.audit.clone(),
            self.clock.clone(),
            our_domains(&self.config),
            self.store.clone(),
            Arc::new(Outbox::new(self.store.clone(), self.clock.clone())),
            notice_mailer(),
            self.config.university.name.clone(),
        )
    }

    /// The CAS server, for `sesame service …`.
    pub fn cas(&self) -> CasServer {
        // The CLI validates no ticket: a callback that never calls out.
        cas_server(
            &self.config,
            Arc::new(NoCallbacks),
            self.store.clone(),
            self.audit.clone(),
            self.clock.clone(),
            self.entropy.clone(),
        )
    }

    /// The OIDC client registry, for `sesame client …`.
    pub fn clients(&self) -> crate::relying_parties::clients::ClientAdmin {
        crate::relying_parties::clients::ClientAdmin::new(
            self.store.clone(),
            self.config.oidc.clients.clone(),
            self.config.oidc.allow_http_redirects,
            self.audit.clone(),
            self.clock.clone(),
            self.entropy.clone(),
        )
    }

    pub fn importer(&self) -> Importer {
        Importer::new(self.store.clone(), self.clock.clone(), self.entropy.clone())
    }
}

/// The security notice to the recovery contacts (a factor added or removed, …).
fn notice_mailer() -> crate::accounts::mfa::NoticeMailer {
    Arc::new(|locale, to, university, what| {
        crate::mail::messages::security_notice(locale, to.clone(), university, what)
    })
}

/// The rotation timings of the configuration.
pub fn rotation_policy(config: &Config) -> RotationPolicy {
    RotationPolicy {
        publish_before_use: config.keys.publish_before_use.0,
        keep_retired: config.keys.keep_retired.0,
    }
}

impl App {
    /// Starts with the real clock and the OS random generator.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with(config, Arc::new(SystemClock), Arc::new(OsEntropy)).await
    }

    /// Starts with an injected clock and entropy source (tests, simulations).
    pub async fn start_with(
        config: Config,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, StartError> {
        let store = open_store(&config).await?;
        Self::assemble(config, store, clock, entropy).await
    }

    /// Builds every service over an already opened store.
    pub async fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, StartError> {
        let audit = Arc::new(Auditor::new(store.clone(), clock.clone()));
        let keys = Arc::new(
            KeyRing::open(
                store.clone(),
                config.master_key_file().to_path_buf(),
                clock.clone(),
                entropy.clone(),
                audit.clone(),
                rotation_policy(&config),
            )
            .await?,
        );
        let one_time = Arc::new(OneTimeValues::new(
            store.clone(),
            clock.clone(),
            entropy.clone(),
        ));
        let passwords = password_hasher(&config, entropy.clone())?;
        let activation = Arc::new(activation_service(
            &config,
            store.clone(),
            audit.clone(),
            clock.clone(),
            entropy.clone(),
            passwords.clone(),
        ));
        let outbox = Arc::new(Outbox::new(store.clone(), clock.clone()));
        let mail_sender = Arc::new(OutboxSender::new(
            store.clone(),
            mail_transport(&config)?,
            clock.clone(),
        ));
        let sms: Arc<dyn SmsSender> = match &config.sms.gateway_url {
            Some(url) => Arc::new(
                HttpSmsSender::new(
                    url,
                    &config.sms.body_template,
                    &config.sms.content_type,
                    config.sms.authorization.clone(),
                    config.sms.timeout.0,
                )
                .map_err(|e| StartError::Sms(e.to_string()))?,
            ),
            None => Arc::new(FileSmsSender::open(
                &config.outbox_dir().join("sms"),
                clock.clone(),
                entropy.clone(),
            )?),
        };
        activation.send_codes_by_sms(sms.clone());
        let recovery = Arc::new(RecoveryService::new(
            store.clone(),
            audit.clone(),
            clock.clone(),
            entropy.clone(),
            passwords.clone(),
            password_policy(&config),
            config.public_url().clone(),
            config.university.name.clone(),
            our_domains(&config),
            Arc::new(|locale, to, link, university| {
                crate::mail::messages::password_reset(
                    locale,
                    to.clone(),
                    link,
                    university,
                    (RESET_LIFETIME.as_secs() / 60) as u32,
                )
            }),
            Arc::new(|locale, to, university| {
                crate::mail::messages::password_changed(locale, to.clone(), university)
            }),
        ));
        let throttle = Throttle::new(
            config.limits.per_address_per_minute,
            config.limits.global_per_second,
        );
        let lockout = Arc::new(Lockout::new(
            store.clone(),
            clock.clone(),
            lockout_policy(&config),
        ));
        let sessions = Arc::new(Sessions::new(
            store.clone(),
            clock.clone(),
            entropy.clone(),
            session_policy(&config),
        ));
        let passkeys = match config.mfa.passkeys {
            true => match crate::accounts::mfa::Passkeys::new(
                config.public_url(),
                &config.university.name,
            ) {
                Ok(passkeys) => Some(passkeys),
                Err(reason) => {
                    tracing::warn!(%reason, "passkeys are off");
                    None
                }
            },
            false => None,
        };
        let mfa = Arc::new(
            Mfa::new(
                store.clone(),
                store.clone(),
                keys.clone(),
                one_time.clone(),
                audit.clone(),
                outbox.clone(),
                clock.clone(),
                entropy.clone(),
                notice_mailer(),
                config.university.name.clone(),
                passkeys,
            )
            .with_lost_factor_channels(
                crate::accounts::mfa::lost::LostFactorChannels {
                    sms: sms.clone(),
                    link_mail: Arc::new(|locale, to, link, university, minutes| {
                        crate::mail::messages::factor_recovery(
                            locale,
                            to.clone(),
                            link,
                            university,
                            minutes,
                        )
                    }),
                    link_base: config
                        .public_url()
                        .join("login/mfa/recover")
                        .expect("a relative path joins any base URL"),
                },
            ),
        );
        let login = Arc::new(LoginService::new(
            store.clone(),
            lockout.clone(),
            passwords.clone(),
            sessions.clone(),
            audit.clone(),
            outbox.clone(),
            one_time.clone(),
            clock.clone(),
            Arc::new(|locale, to, university, link| {
                crate::mail::messages::account_locked(locale, to.clone(), university, link)
            }),
            our_domains(&config),
            config.university.name.clone(),
            config
                .public_url()
                .join("password/forgot")
                .expect("a relative path joins any base URL"),
            mfa.clone(),
            crate::login::MfaPolicy {
                required_for: config.mfa.required_for.clone(),
                unenrolled: config.mfa.unenrolled,
                student_domain: config.university.student_domain.clone(),
                staff_domain: config.university.staff_domain.clone(),
            },
        ));
        let callbacks = Arc::new(
            crate::outbound::HttpCallbacks::new(crate::outbound::CALLBACK_TIMEOUT)
                .map_err(StartError::Callbacks)?,
        );
        let oidc = Arc::new(oidc_server(
            &config,
            store.clone(),
            sessions.clone(),
            keys.clone(),
            audit.clone(),
            clock.clone(),
            entropy.clone(),
        ));
        let cas_logouts = Arc::new(
            crate::cas::logout::LogoutSender::new(
                store.clone(),
                callbacks.clone(),
                clock.clone(),
                entropy.clone(),
            )
            .with_tokens(oidc.clone()),
        );
        let cas = Arc::new(cas_server(
            &config,
            callbacks,
            store.clone(),
            audit.clone(),
            clock.clone(),
            entropy.clone(),
        ));
        let self_service = Arc::new(crate::accounts::self_service::SelfService::new(
            store.clone(),
            store.clone(),
            passwords.clone(),
            password_policy(&config),
            login.clone(),
            sessions.clone(),
            mfa.clone(),
            audit.clone(),
            config.university.name.clone(),
            config.university.student_domain.clone(),
            config.university.staff_domain.clone(),
            crate::accounts::self_service::Channels {
                one_time: one_time.clone(),
                outbox: outbox.clone(),
                code_mail: code_mailer(),
                sms: sms.clone(),
                clock: clock.clone(),
                entropy: entropy.clone(),
            },
        ));
        Ok(Self {
            self_service,
            mfa,
            cas,
            oidc,
            cas_logouts,
            lockout,
            sessions,
            login,
            throttle,
            recovery,
            password_policy: password_policy(&config),
            passwords,
            activation,
            config: Arc::new(config),
            clock,
            entropy,
            store,
            audit,
            keys,
            one_time,
            metrics: Metrics::new(),
            outbox,
            mail_sender,
            sms,
        })
    }

    /// The helpdesk's account service (what `sesame admin` uses).
    pub fn helpdesk(&self) -> Helpdesk {
        Helpdesk::new(
            self.store.clone(),
            self.store.clone(),
            self.lockout.clone(),
            self.sessions.clone(),
            self.audit.clone(),
            self.clock.clone(),
            our_domains(&self.config),
            self.store.clone(),
            self.outbox.clone(),
            notice_mailer(),
            self.config.university.name.clone(),
        )
    }

    /// The state the web layer runs on.
    pub fn web_state(&self, demo: bool) -> WebState {
        let url = self.config.public_url();
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        WebState {
            inner: Arc::new(WebServices {
                public_authority: authority,
                public_url: url.to_string(),
                https: url.scheme() == "https",
                demo,
                trusted_proxies: self.config.server.trusted_proxies.clone(),
                metrics_allowed: self.config.server.metrics_allowed.clone(),
                request_timeout: self.config.server.request_timeout.0,
                health: self.store.clone(),
                entropy: self.entropy.clone(),
                metrics: self.metrics.clone(),
                activation: self.activation.clone(),
                recovery: self.recovery.clone(),
                login: self.login.clone(),
                account: self.self_service.clone(),
                cas: self.cas.clone(),
                oidc: self.oidc.clone(),
                throttle: self.throttle.clone(),
            }),
        }
    }

    /// The HTTP application.
    pub fn router(&self, demo: bool) -> Router {
        crate::web::router::router(self.web_state(demo))
    }

    /// The background maintenance every node runs.
    pub fn maintenance(&self) -> Maintenance {
        Maintenance::new(self.keys.clone(), self.one_time.clone())
            .with_mail(self.mail_sender.clone(), self.config.mail.send_interval.0)
            .with_account_secrets(self.store.clone(), self.clock.clone())
            .with_login(self.sessions.clone(), self.lockout.clone())
            .with_cas(self.cas.clone(), self.cas_logouts.clone())
            .with_oidc(self.oidc.clone())
            .with_sweep({
                let throttle = self.throttle.clone();
                Arc::new(move || throttle.forget_idle())
            })
    }
}
