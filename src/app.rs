//! The composition root: the only place that names concrete adapters (the SQLite and PostgreSQL
//! stores, the system clock, the OS entropy source) and wires every service from the
//! configuration. Commands and tests build an [`App`] and take what they need from it.

use std::sync::Arc;

use axum::Router;

use crate::accounts::password::{HashParams, PasswordError, PasswordHasher};
use crate::accounts::password_policy::PasswordPolicy;
use crate::accounts::provisioning::Importer;
use crate::audit::Auditor;
use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, Config, mask_secret};
use crate::entropy::{Entropy, OsEntropy};
use crate::jobs::Maintenance;
use crate::keys::{KeyError, KeyRing, RotationPolicy};
use crate::one_time::OneTimeValues;
use crate::storage::StorageError;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{ConnectOptions, Store};
use crate::web::metrics::Metrics;
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
    #[error("cannot start password hashing: {0}")]
    Passwords(PasswordError),
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
    pub metrics: Metrics,
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

    pub fn importer(&self) -> Importer {
        Importer::new(self.store.clone(), self.clock.clone(), self.entropy.clone())
    }
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
        let keys = KeyRing::open(
            store.clone(),
            config.master_key_file().to_path_buf(),
            clock.clone(),
            entropy.clone(),
            audit.clone(),
            rotation_policy(&config),
        )
        .await?;
        let one_time = OneTimeValues::new(store.clone(), clock.clone(), entropy.clone());
        let passwords = password_hasher(&config, entropy.clone())?;
        let password_policy = PasswordPolicy {
            min_chars: config.password.min_length,
            min_score: config.password.min_score,
        };
        Ok(Self {
            passwords,
            password_policy,
            config: Arc::new(config),
            clock,
            entropy,
            store,
            audit,
            keys: Arc::new(keys),
            one_time: Arc::new(one_time),
            metrics: Metrics::new(),
        })
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
    }
}
