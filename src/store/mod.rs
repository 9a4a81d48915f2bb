//! Storage adapters: every port declared by the domain rooms, implemented twice — `sqlite/` and
//! `postgres/`, with the same file and function names — using sqlx runtime queries on the concrete
//! drivers (DESIGN.md §8; ADR 0002). SQL lives here and nowhere else.
//!
//! Migrations are embedded in the binary from `migrations/sqlite/` and `migrations/postgres/`
//! (identical numbered names, checked by a test) and applied with sqlx's migrator, each in one
//! transaction.

pub(crate) mod lockout_sql;
pub(crate) mod pool;
pub mod postgres;
pub mod sqlite;

#[cfg(test)]
mod contract;

use std::borrow::Cow;
use std::time::Duration;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::accounts::activation::ActivationStore;
use crate::accounts::lockout::LockoutStore;
use crate::accounts::mfa::MfaStore;
use crate::accounts::recovery::RecoveryStore;
use crate::accounts::{AccountAdminStore, AccountSecretsPurge, AccountStore, ProvisioningStore};
use crate::audit::AuditStore;
use crate::cas::TicketStore;
use crate::cas::logout::LogoutStore;
use crate::keys::KeyStore;
use crate::login::LoginStore;
use crate::mail::MailStore;
use crate::oidc::OidcStore;
use crate::one_time::OneTimeStore;
use crate::relying_parties::ServiceStore;
use crate::relying_parties::clients::ClientStore;
use crate::sessions::SessionStore;
use crate::storage::{HealthProbe, StorageError};

/// Everything a backend implements: the union of the domain ports.
pub trait Store:
    KeyStore
    + AuditStore
    + OneTimeStore
    + AccountStore
    + ActivationStore
    + RecoveryStore
    + AccountSecretsPurge
    + LockoutStore
    + LoginStore
    + AccountAdminStore
    + SessionStore
    + ServiceStore
    + TicketStore
    + LogoutStore
    + OidcStore
    + ClientStore
    + MfaStore
    + ProvisioningStore
    + MailStore
    + HealthProbe
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: KeyStore
        + AuditStore
        + OneTimeStore
        + AccountStore
        + ActivationStore
        + RecoveryStore
        + AccountSecretsPurge
        + LockoutStore
        + LoginStore
        + AccountAdminStore
        + SessionStore
        + ServiceStore
        + TicketStore
        + LogoutStore
        + OidcStore
        + ClientStore
        + MfaStore
        + ProvisioningStore
        + MailStore
        + HealthProbe
        + Send
        + Sync
{
}

/// How to connect, whatever the backend.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// SQLite only.
    pub busy_timeout: Duration,
    /// PostgreSQL only: the schema holding every table.
    pub schema: Option<String>,
}

/// A migration embedded in the binary: (version, name, SQL).
pub(crate) type EmbeddedMigration = (i64, &'static str, &'static str);

/// Builds sqlx's migrator from embedded migrations.
pub(crate) fn migrator(migrations: &[EmbeddedMigration]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Maps a driver error into the domain's vocabulary.
pub(crate) fn storage_error(error: sqlx::Error) -> StorageError {
    match &error {
        // A unique key taken, or a row referenced that is gone (a session ended meanwhile).
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
            StorageError::Conflict
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StorageError::Unavailable(error.to_string()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StorageError::Corrupt(error.to_string()),
        _ => StorageError::Other(error.to_string()),
    }
}

/// Maps a migration error.
pub(crate) fn migration_error(error: sqlx::migrate::MigrateError) -> StorageError {
    StorageError::Other(format!("migration failed: {error}"))
}

/// Parses a stored enum-like text column.
pub(crate) fn parse_column<T: std::str::FromStr<Err = String>>(
    value: &str,
) -> Result<T, StorageError> {
    value.parse().map_err(StorageError::Corrupt)
}

/// A CAS proxy chain as stored (a JSON array of URLs).
pub(crate) fn proxies_json(proxies: &[String]) -> Result<String, StorageError> {
    serde_json::to_string(proxies).map_err(|e| StorageError::Corrupt(format!("proxies: {e}")))
}

/// A stored CAS proxy chain.
pub(crate) fn proxies_of(text: &str) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt(format!("proxies: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    fn names(dir: &str) -> BTreeSet<String> {
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn embedded(list: &[super::EmbeddedMigration]) -> BTreeSet<String> {
        list.iter()
            .map(|(version, name, _)| format!("{version:04}_{name}.sql"))
            .collect()
    }

    #[test]
    fn both_backends_have_the_same_migrations_and_embed_all_of_them() {
        let sqlite = names("migrations/sqlite");
        let postgres = names("migrations/postgres");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres, "migration lists differ between backends");
        assert_eq!(embedded(super::sqlite::MIGRATIONS), sqlite);
        assert_eq!(embedded(super::postgres::MIGRATIONS), postgres);
    }
}
