//! The vocabulary shared by every storage port: what can go wrong when a domain room asks its
//! store for something. Domain rooms declare their ports (traits) in their own `mod.rs` and return
//! [`StorageError`]; `store/` implements the ports and maps driver errors into it, so no domain
//! code ever sees a driver type.

use async_trait::async_trait;

/// A failure of the storage backend, as the domain sees it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be reached or did not answer in time.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule of the schema refused the write (a concurrent writer won).
    #[error("a record with the same key already exists")]
    Conflict,
    /// A stored row does not have the shape the code expects (manual edit, bad migration).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Anything else the driver reported.
    #[error("database error: {0}")]
    Other(String),
}

/// Reports whether the database answers, for `/readyz`.
#[async_trait]
pub trait HealthProbe: Send + Sync {
    async fn ping(&self) -> Result<(), StorageError>;

    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;
}
