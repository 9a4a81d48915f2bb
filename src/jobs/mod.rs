//! Background jobs every node runs: promote due signing keys, delete expired retired keys, purge
//! expired one-time values, finished mails, ended SSO sessions and old lockout counters of
//! unknown identifiers, forget idle throttle entries, and send the mail outbox (on its own, shorter
//! interval). Each step is a conditional write or an atomic claim, so running them on every node
//! at once is safe. Later rooms add the back-channel logout sender here.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::accounts::AccountSecretsPurge;
use crate::accounts::lockout::Lockout;
use crate::cas::logout::LogoutSender;
use crate::cas::server::CasServer;
use crate::clock::Clock;
use crate::keys::{KeyRing, MaintenanceReport};
use crate::mail::outbox::OutboxSender;
use crate::one_time::OneTimeValues;
use crate::sessions::Sessions;

/// The periodic maintenance pass.
#[derive(Clone)]
pub struct Maintenance {
    keys: Arc<KeyRing>,
    one_time: Arc<OneTimeValues>,
    mail: Option<MailJob>,
    account_secrets: Option<(Arc<dyn AccountSecretsPurge>, Arc<dyn Clock>)>,
    login: Option<(Arc<Sessions>, Arc<Lockout>)>,
    cas: Option<(Arc<CasServer>, Arc<LogoutSender>)>,
    oidc: Option<Arc<crate::oidc::server::OidcServer>>,
    /// Called on each pass (the web layer's throttle forgets idle addresses).
    sweeps: Vec<Arc<dyn Fn() + Send + Sync>>,
}

/// The outbox sender and how often it runs.
#[derive(Clone)]
struct MailJob {
    sender: Arc<OutboxSender>,
    interval: Duration,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceOutcome {
    pub keys: MaintenanceReport,
    pub purged_one_time_values: u64,
    pub purged_mails: u64,
    pub purged_account_secrets: u64,
    pub purged_sessions: u64,
    pub purged_failure_counters: u64,
    pub purged_tickets: u64,
}

impl Maintenance {
    pub fn new(keys: Arc<KeyRing>, one_time: Arc<OneTimeValues>) -> Self {
        Self {
            keys,
            one_time,
            mail: None,
            account_secrets: None,
            login: None,
            cas: None,
            oidc: None,
            sweeps: Vec::new(),
        }
    }

    /// Adds the purge of ended sessions and of old counters of unknown identifiers.
    pub fn with_login(mut self, sessions: Arc<Sessions>, lockout: Arc<Lockout>) -> Self {
        self.login = Some((sessions, lockout));
        self
    }

    /// Adds the purge of expired CAS tickets, and the single-logout sender (on the outbox's
    /// short interval).
    pub fn with_cas(mut self, cas: Arc<CasServer>, logouts: Arc<LogoutSender>) -> Self {
        self.cas = Some((cas, logouts));
        self
    }

    /// Adds the purge of expired OIDC codes, tokens and grants.
    pub fn with_oidc(mut self, oidc: Arc<crate::oidc::server::OidcServer>) -> Self {
        self.oidc = Some(oidc);
        self
    }

    /// Adds an in-memory sweep run on each pass.
    pub fn with_sweep(mut self, sweep: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.sweeps.push(sweep);
        self
    }

    /// Adds the purge of expired activations, staff codes and reset links.
    pub fn with_account_secrets(
        mut self,
        store: Arc<dyn AccountSecretsPurge>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        self.account_secrets = Some((store, clock));
        self
    }

    /// Adds the outbox: sent every `interval` (a few seconds, so mails leave soon after they are
    /// queued), and purged of finished rows on each maintenance pass.
    pub fn with_mail(mut self, sender: Arc<OutboxSender>, interval: Duration) -> Self {
        self.mail = Some(MailJob { sender, interval });
        self
    }

    /// One pass. Failures are logged and the pass goes on: one broken step must not stop the
    /// others.
    pub async fn run_once(&self) -> MaintenanceOutcome {
        let mut outcome = MaintenanceOutcome::default();
        if let Some((store, clock)) = &self.account_secrets {
            match store.purge_expired_account_secrets(clock.unix_now()).await {
                Ok(purged) => outcome.purged_account_secrets = purged,
                Err(error) => tracing::error!(%error, "purging expired account secrets failed"),
            }
        }
        if let Some((sessions, lockout)) = &self.login {
            match sessions.purge().await {
                Ok(purged) => outcome.purged_sessions = purged,
                Err(error) => tracing::error!(%error, "purging ended sessions failed"),
            }
            match lockout.purge().await {
                Ok(purged) => outcome.purged_failure_counters = purged,
                Err(error) => tracing::error!(%error, "purging old lockout counters failed"),
            }
        }
        if let Some((cas, logouts)) = &self.cas {
            match cas.purge().await {
                Ok(purged) => outcome.purged_tickets = purged,
                Err(error) => tracing::error!(%error, "purging expired CAS tickets failed"),
            }
            if let Err(error) = logouts.purge().await {
                tracing::error!(%error, "purging finished single logouts failed");
            }
        }
        if let Some(oidc) = &self.oidc {
            match oidc.purge().await {
                Ok(purged) => outcome.purged_tickets += purged,
                Err(error) => {
                    tracing::error!(%error, "purging expired OIDC codes and tokens failed")
                }
            }
        }
        for sweep in &self.sweeps {
            sweep();
        }
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
        if let Some(mail) = &self.mail {
            match mail.sender.purge_finished().await {
                Ok(purged) => outcome.purged_mails = purged,
                Err(error) => tracing::error!(%error, "purging finished mails failed"),
            }
        }
        outcome
    }

    /// One pass of the outbox senders: mail, and CAS single logout.
    pub async fn send_mail_once(&self) {
        if let Some(mail) = &self.mail
            && let Err(error) = mail.sender.run_once().await
        {
            tracing::error!(%error, "sending the mail outbox failed");
        }
        if let Some((_, logouts)) = &self.cas
            && let Err(error) = logouts.run_once().await
        {
            tracing::error!(%error, "sending single-logout requests failed");
        }
    }

    /// Runs a pass every `interval`, and the outbox sender every `mail.send_interval`, until the
    /// task is aborted. Both share one task, so aborting it stops them together; a mail cut off
    /// mid-send stays leased and is sent again once its lease ends.
    pub fn spawn(self, interval: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mail_interval = self
                .mail
                .as_ref()
                .map_or(Duration::from_secs(3600), |m| m.interval);
            let mut mail_ticker = tokio::time::interval(mail_interval);
            mail_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        self.run_once().await;
                    }
                    _ = mail_ticker.tick() => self.send_mail_once().await,
                }
            }
        })
    }
}
