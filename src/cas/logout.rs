//! CAS single logout (CAS 3.0.3 §2.3.3 and Appendix C): when an SSO session ends, every service of
//! that session that asked for it receives a back-channel POST `logoutRequest=<samlp:LogoutRequest
//! …>` naming the service ticket it was given (`SessionIndex`), so it can end its own session.
//!
//! The targets are recorded when a ticket is validated; the store moves them into an outbox in
//! the same transaction as the session's deletion (a database trigger, so no code path can end a
//! session without it); [`LogoutSender`] posts them with retries, for a bounded time.
//!
//! The same outbox carries OpenID Connect back-channel logout (Back-Channel Logout 1.0 §2.5): a
//! target of protocol `oidc` is sent as a POST `logout_token=<JWT>`, the token made (and signed)
//! by [`LogoutTokens`] at each attempt.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::render::escape_xml;
use crate::clock::{Clock, from_unix, rfc3339};
use crate::entropy::{Entropy, EntropyExt};
use crate::storage::StorageError;

/// Which protocol a logout target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutProtocol {
    /// CAS SAML `LogoutRequest` (`name_id` = the `cas:user`, `session_index` = the ticket).
    Cas,
    /// OIDC back-channel logout token (`service_id` = the client, `name_id` = `sub`; the `sid`
    /// is the session id).
    Oidc,
}

impl LogoutProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cas => "cas",
            Self::Oidc => "oidc",
        }
    }
}

impl std::str::FromStr for LogoutProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cas" => Ok(Self::Cas),
            "oidc" => Ok(Self::Oidc),
            other => Err(format!("unknown logout protocol `{other}`")),
        }
    }
}

/// Makes the signed back-channel logout token of an OIDC target.
#[async_trait]
pub trait LogoutTokens: Send + Sync {
    async fn logout_token(&self, client_id: &str, sub: &str, sid: &str) -> Result<String, String>;
}

/// Where and what to send when a session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutTarget {
    pub protocol: LogoutProtocol,
    pub session_id: String,
    pub account_id: String,
    pub service_id: String,
    pub url: String,
    /// The `cas:user` the service received.
    pub name_id: String,
    /// The service ticket it validated.
    pub session_index: String,
}

/// A queued single-logout request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogout {
    pub id: i64,
    pub target: LogoutTarget,
    pub attempts: i64,
    pub created_at: i64,
}

/// What the helpdesk sees of a single-logout request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogoutStatus {
    pub service_id: String,
    pub session_id: String,
    /// `pending`, `delivered` or `failed`.
    pub state: &'static str,
    pub attempts: i64,
    /// When a sender first picked it up (seconds after the session ended); `None` before.
    pub queued_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
}

/// The storage port of single logout.
#[async_trait]
pub trait LogoutStore: Send + Sync {
    async fn record_logout_target(
        &self,
        target: &LogoutTarget,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Due requests, leased until `lease_until` so that no other node sends them meanwhile.
    async fn claim_due_logouts(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<PendingLogout>, StorageError>;
    async fn mark_logout_delivered(&self, id: i64, now: i64) -> Result<(), StorageError>;
    /// Records a failed attempt: retry at `retry_at`, or give up (`None`).
    async fn mark_logout_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), StorageError>;
    async fn list_logouts_of_account(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<LogoutStatus>, StorageError>;
    /// Deletes delivered and abandoned requests finished before `before`.
    async fn purge_finished_logouts(&self, before: i64) -> Result<u64, StorageError>;
}

/// Posts a logout request; `Err` with a reason when the service did not answer 2xx.
#[async_trait]
pub trait LogoutDelivery: Send + Sync {
    async fn post_logout(&self, url: &str, logout_request: &str) -> Result<(), String>;
    /// Back-Channel Logout 1.0 §2.5: a POST with the form field `logout_token`.
    async fn post_backchannel(&self, url: &str, logout_token: &str) -> Result<(), String>;
}

/// The `LogoutRequest` message (Appendix C).
pub fn logout_request(id: &str, issued_at: i64, name_id: &str, session_index: &str) -> String {
    format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{}\" Version=\"2.0\" \
         IssueInstant=\"{}\"><saml:NameID>{}</saml:NameID><samlp:SessionIndex>{}\
         </samlp:SessionIndex></samlp:LogoutRequest>",
        escape_xml(id),
        rfc3339(from_unix(issued_at)),
        escape_xml(name_id),
        escape_xml(session_index)
    )
}

/// Retries: 30 s, doubling, at most 1 h apart; given up 6 h after the logout.
const FIRST_RETRY: i64 = 30;
const LONGEST_RETRY: i64 = 3600;
const GIVE_UP_AFTER: i64 = 6 * 3600;
/// Requests claimed per pass, and how long they are reserved for the node sending them: longer
/// than the batch can take with every service at the outbound time limit, so another node never
/// re-sends a request still in flight.
const BATCH: i64 = 10;
const LEASE: Duration = Duration::from_secs(10 * 5 + 30);

/// When to try again after `attempts` failed attempts, or `None` to give up.
pub fn retry_at(attempts: i64, created_at: i64, now: i64) -> Option<i64> {
    let delay = FIRST_RETRY
        .saturating_mul(1i64 << (attempts.clamp(1, 20) - 1))
        .min(LONGEST_RETRY);
    let at = now + delay;
    (at <= created_at + GIVE_UP_AFTER).then_some(at)
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogoutReport {
    pub delivered: u64,
    pub retried: u64,
    pub abandoned: u64,
}

/// The sender job (run by the maintenance task on every node).
pub struct LogoutSender {
    store: Arc<dyn LogoutStore>,
    delivery: Arc<dyn LogoutDelivery>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    tokens: Option<Arc<dyn LogoutTokens>>,
}

impl LogoutSender {
    /// Lets the sender make OIDC logout tokens (without, OIDC targets fail and are retried).
    pub fn with_tokens(mut self, tokens: Arc<dyn LogoutTokens>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    pub fn new(
        store: Arc<dyn LogoutStore>,
        delivery: Arc<dyn LogoutDelivery>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Self {
        Self {
            store,
            delivery,
            clock,
            entropy,
            tokens: None,
        }
    }

    /// Sends what is due.
    pub async fn run_once(&self) -> Result<LogoutReport, StorageError> {
        let now = self.clock.unix_now();
        let mut report = LogoutReport::default();
        let due = self
            .store
            .claim_due_logouts(now, now + LEASE.as_secs() as i64, BATCH)
            .await?;
        for pending in due {
            let target = &pending.target;
            let sent = match target.protocol {
                LogoutProtocol::Cas => {
                    let message = logout_request(
                        &format!("LR-{}", self.entropy.hex(16)),
                        now,
                        &target.name_id,
                        &target.session_index,
                    );
                    self.delivery.post_logout(&target.url, &message).await
                }
                LogoutProtocol::Oidc => match &self.tokens {
                    Some(tokens) => match tokens
                        .logout_token(&target.service_id, &target.name_id, &target.session_id)
                        .await
                    {
                        Ok(token) => self.delivery.post_backchannel(&target.url, &token).await,
                        Err(e) => Err(e),
                    },
                    None => Err("no logout token signer".to_string()),
                },
            };
            match sent {
                Ok(()) => {
                    self.store
                        .mark_logout_delivered(pending.id, self.clock.unix_now())
                        .await?;
                    report.delivered += 1;
                }
                Err(error) => {
                    let now = self.clock.unix_now();
                    let retry = retry_at(pending.attempts + 1, pending.created_at, now);
                    self.store
                        .mark_logout_failed(pending.id, &error, retry, now)
                        .await?;
                    if retry.is_some() {
                        report.retried += 1;
                    } else {
                        tracing::warn!(service = %pending.target.service_id, %error,
                            "single logout abandoned");
                        report.abandoned += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Forgets requests finished a week ago.
    pub async fn purge(&self) -> Result<u64, StorageError> {
        self.store
            .purge_finished_logouts(self.clock.unix_now() - 7 * 24 * 3600)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_ticket_and_escapes_values() {
        let message = logout_request("LR-1", 0, "a<b", "ST-123");
        assert!(message.starts_with(
            "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\""
        ));
        assert!(message.contains("<saml:NameID>a&lt;b</saml:NameID>"));
        assert!(message.contains("<samlp:SessionIndex>ST-123</samlp:SessionIndex>"));
        assert!(message.contains("IssueInstant=\"1970-01-01T00:00:00Z\""));
    }

    #[test]
    fn retries_double_and_stop_after_six_hours() {
        assert_eq!(retry_at(1, 0, 0), Some(30));
        assert_eq!(retry_at(2, 0, 100), Some(160));
        assert_eq!(retry_at(10, 0, 1000), Some(1000 + 3600));
        assert_eq!(retry_at(3, 0, 6 * 3600), None, "bounded total time");
    }
}
