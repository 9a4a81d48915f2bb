//! Background jobs every node runs: promote due signing keys, delete expired retired keys, purge
//! expired one-time values. Each step is a conditional write, so running them on every node at
//! once is safe. Later rooms add the mail outbox and back-channel logout senders here.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::keys::{KeyRing, MaintenanceReport};
use crate::one_time::OneTimeValues;

/// The periodic maintenance pass.
#[derive(Clone)]
pub struct Maintenance {
    keys: Arc<KeyRing>,
    one_time: Arc<OneTimeValues>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceOutcome {
    pub keys: MaintenanceReport,
    pub purged_one_time_values: u64,
}

impl Maintenance {
    pub fn new(keys: Arc<KeyRing>, one_time: Arc<OneTimeValues>) -> Self {
        Self { keys, one_time }
    }

    /// One pass. Failures are logged and the pass goes on: one broken step must not stop the
    /// others.
    pub async fn run_once(&self) -> MaintenanceOutcome {
        let mut outcome = MaintenanceOutcome::default();
        match self.keys.run_maintenance().await {
            Ok(report) => {
                for kid in &report.promoted {
                    tracing::info!(%kid, "signing key promoted to current");
                }
                outcome.keys = report;
            }
            Err(error) => tracing::error!(%error, "key maintenance failed"),
        }
        match self.one_time.purge_expired().await {
            Ok(purged) => outcome.purged_one_time_values = purged,
            Err(error) => tracing::error!(%error, "purging one-time values failed"),
        }
        outcome
    }

    /// Runs a pass every `interval` until the task is aborted.
    pub fn spawn(self, interval: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                self.run_once().await;
            }
        })
    }
}
