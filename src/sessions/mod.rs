//! SSO sessions (DESIGN.md §5): the CAS ticket-granting ticket and the OIDC browser session are
//! one database row, shared by every node, so a restart or another node logs nobody out.
//!
//! The browser holds a 128-bit random value in the session cookie; the database keeps only its
//! SHA-256 (a copy of the table opens no session) and a separate public `id` the helpdesk can
//! name. A new value is issued at every login, so a value planted before login (session
//! fixation) is worthless. Sessions end when idle (2 h) or at their absolute limit (8 h; 1 h on a
//! public computer; 30 days when the user asked to stay signed in), at logout, and whenever the
//! account's password is reset or the account is disabled.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::entropy::{Entropy, EntropyExt};
use crate::one_time::SecretToken;
use crate::storage::StorageError;

/// How long a session may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ends after this long without a request.
    pub idle: Duration,
    /// Ends this long after the login, whatever happens.
    pub absolute: Duration,
    /// The absolute limit when the user ticked "public computer" (also its idle limit).
    pub public_computer: Duration,
    /// The absolute (and idle) limit when the user ticked "stay signed in".
    pub remember_me: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(2 * 3600),
            absolute: Duration::from_secs(8 * 3600),
            public_computer: Duration::from_secs(3600),
            remember_me: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// What the user asked for at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Standard,
    /// "Public computer": short, and the cookie dies with the browser.
    PublicComputer,
    /// "Stay signed in": the cookie outlives the browser.
    Remembered,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::PublicComputer => "public",
            Self::Remembered => "remembered",
        }
    }
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Self::Standard),
            "public" => Ok(Self::PublicComputer),
            "remembered" => Ok(Self::Remembered),
            other => Err(format!("unknown session kind `{other}`")),
        }
    }
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Public handle (helpdesk, audit); not the cookie value.
    pub id: String,
    pub account_id: String,
    pub kind: SessionKind,
    /// When the user last proved who they are (OIDC `auth_time`).
    pub auth_time: i64,
    /// Authentication methods used, as OIDC `amr` values (RFC 8176): `pwd`, later `otp`, `hwk`…
    pub factors: Vec<String>,
    pub last_seen_at: i64,
    pub idle_expires_at: i64,
    pub expires_at: i64,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A "stay signed in" session's second factor satisfies an application that requires MFA for
/// this long only (DESIGN.md §5: such an app "still asks again"); then it is asked again.
pub const REMEMBERED_MFA_LIFETIME: i64 = 8 * 3600;

impl Session {
    pub fn is_live(&self, now: i64) -> bool {
        now < self.idle_expires_at && now < self.expires_at
    }

    /// Whether the session passed a second factor, recently enough for an application that
    /// requires one.
    pub fn has_fresh_mfa(&self, now: i64) -> bool {
        crate::accounts::mfa::is_multi_factor(&self.factors)
            && (self.kind != SessionKind::Remembered
                || now - self.auth_time <= REMEMBERED_MFA_LIFETIME)
    }
}

/// An application a session logged into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedApplication {
    /// `cas` or `oidc`.
    pub protocol: String,
    /// The CAS service URL or the OIDC client id.
    pub service: String,
    pub first_at: i64,
    pub last_at: i64,
}

/// The storage port of this room.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Inserts a session for an account that is active at this instant;
    /// [`StorageError::Conflict`] otherwise.
    async fn insert_session(&self, session: &Session, digest: &[u8]) -> Result<(), StorageError>;
    /// Gives the live session of `old_digest`, if it belongs to `session.account_id`, a new
    /// cookie digest and the fresh authentication of `session` (kind, `auth_time`, factors,
    /// limits, origin), keeping its id — and with it the applications it served, their
    /// single-logout targets and proxy-granting tickets. `None` if there was no such session.
    async fn rotate_session(
        &self,
        old_digest: &[u8],
        new_digest: &[u8],
        session: &Session,
        now: i64,
    ) -> Result<Option<Session>, StorageError>;
    /// The session whose cookie has this digest, if it is live at `now`.
    async fn find_session_by_digest(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<Session>, StorageError>;
    /// Records activity: `last_seen_at` and the new idle limit (never past the absolute one).
    async fn touch_session(
        &self,
        id: &str,
        now: i64,
        idle_expires_at: i64,
    ) -> Result<(), StorageError>;
    /// Deletes the session with this cookie digest; its id if there was one.
    async fn delete_session_by_digest(
        &self,
        digest: &[u8],
    ) -> Result<Option<Session>, StorageError>;
    /// Deletes one session of an account by its public id; whether it existed.
    async fn delete_session(&self, account_id: &str, id: &str) -> Result<bool, StorageError>;
    /// Deletes every session of an account; how many.
    async fn delete_account_sessions(&self, account_id: &str) -> Result<u64, StorageError>;
    /// Live sessions of an account, most recent first.
    async fn list_account_sessions(
        &self,
        account_id: &str,
        now: i64,
    ) -> Result<Vec<Session>, StorageError>;
    /// Notes that a session logged into an application (for single logout).
    async fn record_session_service(
        &self,
        id: &str,
        protocol: &str,
        service: &str,
        now: i64,
    ) -> Result<(), StorageError>;
    async fn list_session_services(&self, id: &str)
    -> Result<Vec<ServedApplication>, StorageError>;
    /// Deletes sessions ended (idle or absolute) at `now`; how many.
    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StorageError>;
    async fn count_live_sessions(&self, now: i64) -> Result<u64, StorageError>;
}

/// Activity is written at most this often per session (a busy user's every page must not be a
/// database write); the idle limit is accurate to within this.
const TOUCH_EVERY: i64 = 60;

/// The session service.
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    policy: SessionPolicy,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sessions")
    }
}

/// Where a new session's request came from.
#[derive(Debug, Clone, Default)]
pub struct SessionOrigin {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        policy: SessionPolicy,
    ) -> Self {
        Self {
            store,
            clock,
            entropy,
            policy,
        }
    }

    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    fn limits(&self, kind: SessionKind) -> (i64, i64) {
        let secs = |d: Duration| d.as_secs() as i64;
        match kind {
            SessionKind::Standard => (secs(self.policy.idle), secs(self.policy.absolute)),
            SessionKind::PublicComputer => {
                let limit = secs(self.policy.public_computer);
                (secs(self.policy.idle).min(limit), limit)
            }
            SessionKind::Remembered => {
                let limit = secs(self.policy.remember_me);
                (limit, limit)
            }
        }
    }

    /// Opens a session after a completed login; returns the cookie value (to give the browser,
    /// never to store or log) and the record.
    pub async fn open(
        &self,
        account_id: &str,
        factors: &[&str],
        kind: SessionKind,
        origin: SessionOrigin,
    ) -> Result<(SecretToken, Session), StorageError> {
        let (token, session) = self.prepare(account_id, factors, kind, origin);
        self.store.insert_session(&session, &token.digest()).await?;
        Ok((token, session))
    }

    /// A new session and its cookie value, not stored yet: for a caller that stores it with
    /// other writes in one transaction (`LoginStore::record_successful_login`).
    pub fn prepare(
        &self,
        account_id: &str,
        factors: &[&str],
        kind: SessionKind,
        origin: SessionOrigin,
    ) -> (SecretToken, Session) {
        let now = self.clock.unix_now();
        let (idle, absolute) = self.limits(kind);
        // The CAS ticket-granting ticket (CAS 3.0.3 §3.6): `TGT-` and 160 random bits, only
        // `[A-Za-z0-9-]`. It never leaves the cookie.
        let token = SecretToken::new(format!("TGT-{}", self.entropy.hex(20)));
        let session = Session {
            id: self.entropy.token(12),
            account_id: account_id.to_string(),
            kind,
            auth_time: now,
            factors: factors.iter().map(|f| f.to_string()).collect(),
            last_seen_at: now,
            idle_expires_at: (now + idle).min(now + absolute),
            expires_at: now + absolute,
            client_ip: origin.client_ip,
            user_agent: origin.user_agent,
        };
        (token, session)
    }

    /// A new login in a browser that already has a session. The same person's session gets a new
    /// cookie value and the new authentication in place, so its applications stay signed in (a
    /// CAS `renew` or a step-up must not log them out); another person's session ends.
    pub async fn reopen(
        &self,
        previous: &SecretToken,
        account_id: &str,
        factors: &[&str],
        kind: SessionKind,
        origin: SessionOrigin,
    ) -> Result<(SecretToken, Session), StorageError> {
        let now = self.clock.unix_now();
        let (idle, absolute) = self.limits(kind);
        let token = SecretToken::new(format!("TGT-{}", self.entropy.hex(20)));
        let fresh = Session {
            id: String::new(),
            account_id: account_id.to_string(),
            kind,
            auth_time: now,
            factors: factors.iter().map(|f| f.to_string()).collect(),
            last_seen_at: now,
            idle_expires_at: (now + idle).min(now + absolute),
            expires_at: now + absolute,
            client_ip: origin.client_ip.clone(),
            user_agent: origin.user_agent.clone(),
        };
        if let Some(session) = self
            .store
            .rotate_session(&previous.digest(), &token.digest(), &fresh, now)
            .await?
        {
            return Ok((token, session));
        }
        self.end(previous).await?;
        self.open(account_id, factors, kind, origin).await
    }

    /// The live session of a cookie value, recording the activity.
    pub async fn current(&self, token: &SecretToken) -> Result<Option<Session>, StorageError> {
        let now = self.clock.unix_now();
        let Some(session) = self
            .store
            .find_session_by_digest(&token.digest(), now)
            .await?
        else {
            return Ok(None);
        };
        self.note_activity(session).await.map(Some)
    }

    /// Records the activity of a live session just read (its idle expiry moves on), at most
    /// once every [`TOUCH_EVERY`] seconds; the session as it now is.
    pub async fn note_activity(&self, mut session: Session) -> Result<Session, StorageError> {
        let now = self.clock.unix_now();
        if now - session.last_seen_at >= TOUCH_EVERY {
            let (idle, _) = self.limits(session.kind);
            session.last_seen_at = now;
            session.idle_expires_at = (now + idle).min(session.expires_at);
            self.store
                .touch_session(&session.id, now, session.idle_expires_at)
                .await?;
        }
        Ok(session)
    }

    /// Ends the session of a cookie value (logout); the session it was, if any.
    pub async fn end(&self, token: &SecretToken) -> Result<Option<Session>, StorageError> {
        self.store.delete_session_by_digest(&token.digest()).await
    }

    /// Ends one session of an account by its public id (helpdesk, self-service).
    pub async fn end_by_id(&self, account_id: &str, id: &str) -> Result<bool, StorageError> {
        self.store.delete_session(account_id, id).await
    }

    /// Ends every session of an account; how many there were.
    pub async fn revoke_all(&self, account_id: &str) -> Result<u64, StorageError> {
        self.store.delete_account_sessions(account_id).await
    }

    pub async fn list(&self, account_id: &str) -> Result<Vec<Session>, StorageError> {
        self.store
            .list_account_sessions(account_id, self.clock.unix_now())
            .await
    }

    /// Notes that a session logged into an application (CAS service, OIDC client).
    pub async fn record_service(
        &self,
        session: &Session,
        protocol: &str,
        service: &str,
    ) -> Result<(), StorageError> {
        self.store
            .record_session_service(&session.id, protocol, service, self.clock.unix_now())
            .await
    }

    pub async fn services(
        &self,
        session: &Session,
    ) -> Result<Vec<ServedApplication>, StorageError> {
        self.store.list_session_services(&session.id).await
    }

    /// Deletes ended sessions (the maintenance pass, safe on every node).
    pub async fn purge(&self) -> Result<u64, StorageError> {
        self.store
            .purge_expired_sessions(self.clock.unix_now())
            .await
    }

    pub async fn count_live(&self) -> Result<u64, StorageError> {
        self.store.count_live_sessions(self.clock.unix_now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in [
            SessionKind::Standard,
            SessionKind::PublicComputer,
            SessionKind::Remembered,
        ] {
            assert_eq!(kind.as_str().parse::<SessionKind>().unwrap(), kind);
        }
        assert!("forever".parse::<SessionKind>().is_err());
    }

    #[test]
    fn a_session_is_live_until_either_limit() {
        let session = Session {
            id: "s".into(),
            account_id: "a".into(),
            kind: SessionKind::Standard,
            auth_time: 0,
            factors: vec!["pwd".into()],
            last_seen_at: 0,
            idle_expires_at: 100,
            expires_at: 200,
            client_ip: None,
            user_agent: None,
        };
        assert!(session.is_live(99));
        assert!(!session.is_live(100));
        assert!(
            !Session {
                idle_expires_at: 300,
                ..session
            }
            .is_live(200)
        );
    }
}
