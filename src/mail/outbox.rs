//! The outbox job: every few seconds, on every node, claim due mails, hand them to the transport,
//! and record each outcome. A failed mail waits (1 min, doubling to 1 h) and is tried again until
//! two days after it was queued; nothing is lost while the relay is down, and no page waits for
//! it, since pages only insert rows.

use std::sync::Arc;
use std::time::Duration;

use super::{MailFailure, MailStore, MailTransport, OutgoingMail, SendError, next_attempt_at};
use crate::clock::Clock;
use crate::storage::StorageError;

/// Mails one claim takes.
pub const BATCH: u32 = 20;
/// How long a claim is leased to its sender: longer than a whole batch at [`super::transport::SMTP_TIMEOUT`]
/// per mail. Past it, a sender that died mid-batch leaves its mails to the others.
pub const LEASE: Duration = Duration::from_secs(10 * 60);
/// How long sent and abandoned rows are kept (their bodies are already cleared) for support.
pub const KEEP_FINISHED: Duration = Duration::from_secs(7 * 24 * 3600);
/// Batches one pass may send before yielding to the next tick.
const MAX_BATCHES_PER_PASS: u32 = 50;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    pub claimed: u32,
    pub sent: u32,
    /// Failed, to be tried again later.
    pub deferred: u32,
    /// Failed for good (refused by the relay, or two days old).
    pub given_up: u32,
}

impl SendReport {
    fn add(&mut self, other: SendReport) {
        self.claimed += other.claimed;
        self.sent += other.sent;
        self.deferred += other.deferred;
        self.given_up += other.given_up;
    }
}

/// Queues mails outside any other transaction (code that queues a mail as part of a larger
/// change uses the store's `insert_mail` on its own transaction instead).
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn MailStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl Outbox {
    pub fn new(store: Arc<dyn MailStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Queues `mail`, due at once; returns its outbox id.
    pub async fn queue(&self, mail: &OutgoingMail) -> Result<i64, StorageError> {
        self.store.insert_mail(mail, self.clock.unix_now()).await
    }

    /// Mails waiting to be sent.
    pub async fn depth(&self) -> Result<u64, StorageError> {
        self.store.count_queued_mails().await
    }
}

/// Sends what the outbox holds.
#[derive(Clone)]
pub struct OutboxSender {
    store: Arc<dyn MailStore>,
    transport: Arc<dyn MailTransport>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OutboxSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSender")
            .field("transport", &self.transport.name())
            .finish_non_exhaustive()
    }
}

impl OutboxSender {
    pub fn new(
        store: Arc<dyn MailStore>,
        transport: Arc<dyn MailTransport>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            transport,
            clock,
        }
    }

    pub fn transport(&self) -> &dyn MailTransport {
        self.transport.as_ref()
    }

    /// One batch: claims up to [`BATCH`] due mails and sends them one after the other.
    ///
    /// When the transport is unavailable (relay unreachable, outbox directory unwritable), the
    /// rest of the batch is deferred without trying: each would only wait for the same timeout.
    pub async fn send_batch(&self) -> Result<SendReport, StorageError> {
        let now = self.clock.unix_now();
        let claimed = self
            .store
            .claim_due_mails(now, now + LEASE.as_secs() as i64, BATCH)
            .await?;
        let mut report = SendReport {
            claimed: claimed.len() as u32,
            ..SendReport::default()
        };
        let mut unavailable: Option<String> = None;
        for mail in claimed {
            let result = match &unavailable {
                Some(reason) => Err(SendError::Unavailable(reason.clone())),
                None => self.transport.send(&mail).await,
            };
            let at = self.clock.unix_now();
            let kind = mail.mail.kind.as_str();
            let recorded = match result {
                Ok(()) => {
                    report.sent += 1;
                    tracing::info!(
                        id = mail.id,
                        kind,
                        transport = self.transport.name(),
                        "mail sent"
                    );
                    self.store.mark_mail_sent(mail.id, at).await
                }
                Err(error) => {
                    if let SendError::Unavailable(reason) = &error {
                        unavailable.get_or_insert_with(|| reason.clone());
                    }
                    let retry_at = match error {
                        SendError::Rejected(_) => None,
                        SendError::Unavailable(_) | SendError::Temporary(_) => {
                            next_attempt_at(mail.created_at, mail.attempts, at)
                        }
                    };
                    match retry_at {
                        Some(retry_at) => {
                            report.deferred += 1;
                            tracing::warn!(
                                id = mail.id,
                                kind,
                                attempts = mail.attempts,
                                retry_in_s = retry_at - at,
                                %error,
                                "mail not sent; will retry"
                            );
                        }
                        None => {
                            report.given_up += 1;
                            tracing::error!(
                                id = mail.id,
                                kind,
                                attempts = mail.attempts,
                                %error,
                                "mail given up"
                            );
                        }
                    }
                    let failure = MailFailure {
                        at,
                        retry_at,
                        error: error.to_string(),
                    };
                    self.store.mark_mail_failed(mail.id, &failure).await
                }
            };
            // The lease protects the mail until it ends; another pass will take it again.
            if let Err(error) = recorded {
                tracing::error!(id = mail.id, %error, "cannot record the outcome of a mail");
            }
        }
        Ok(report)
    }

    /// Sends batches until the due mails are gone (bounded, so one pass cannot run for ever).
    pub async fn run_once(&self) -> Result<SendReport, StorageError> {
        let mut total = SendReport::default();
        for _ in 0..MAX_BATCHES_PER_PASS {
            let report = self.send_batch().await?;
            total.add(report);
            if report.claimed < BATCH || report.sent == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Deletes sent and abandoned rows older than [`KEEP_FINISHED`].
    pub async fn purge_finished(&self) -> Result<u64, StorageError> {
        let before = self.clock.unix_now() - KEEP_FINISHED.as_secs() as i64;
        self.store.purge_finished_mails(before).await
    }

    /// Mails waiting to be sent.
    pub async fn depth(&self) -> Result<u64, StorageError> {
        self.store.count_queued_mails().await
    }
}
