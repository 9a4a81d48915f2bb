//! The CAS protocol (Apereo CAS Protocol 3.0.3; DESIGN.md §7): tickets, the validation rules and
//! the responses (CAS 1 text, CAS 2/3 XML, JSON). No HTTP and no SQL here: `web/handlers/cas.rs`
//! reads requests and `store/` keeps the tickets, through the [`TicketStore`] port.

pub mod logout;
pub mod render;
pub mod saml;
pub mod server;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use crate::entropy::{Entropy, EntropyExt};
use crate::relying_parties::services::canonical_service;
use crate::storage::StorageError;

/// The kinds of ticket (CAS 3.0.3 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKind {
    /// Service ticket (§3.1).
    Service,
    /// Proxy ticket (§3.2).
    Proxy,
}

impl TicketKind {
    /// The prefix every ticket of this kind starts with (§3.1.1, §3.2.1).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Service => "ST-",
            Self::Proxy => "PT-",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "ST",
            Self::Proxy => "PT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ST" => Some(Self::Service),
            "PT" => Some(Self::Proxy),
            _ => None,
        }
    }
}

/// The prefix of a proxy-granting ticket (§3.3) and of its IOU (§3.4).
pub const PGT_PREFIX: &str = "PGT-";
pub const PGTIOU_PREFIX: &str = "PGTIOU-";

/// A new value with `prefix`: 160 random bits in hex (see [`new_ticket`]).
pub fn new_value(prefix: &str, entropy: &dyn Entropy) -> String {
    format!("{prefix}{}", entropy.hex(20))
}

/// Whether a presented value can be a proxy-granting ticket.
pub fn well_formed_pgt(value: &str) -> bool {
    value.starts_with(PGT_PREFIX)
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A new ticket value: the prefix and 160 random bits in hex. Only `[A-Za-z0-9-]` (mod_auth_cas
/// silently drops tickets with any other character; DESIGN.md §7), at least 32 characters
/// (§3.1.1 asks clients to accept 256).
pub fn new_ticket(kind: TicketKind, entropy: &dyn Entropy) -> String {
    format!("{}{}", kind.prefix(), entropy.hex(20))
}

/// Whether a presented value can be a ticket at all (checked before any lookup).
pub fn well_formed(ticket: &str) -> bool {
    (ticket.starts_with("ST-") || ticket.starts_with("PT-"))
        && ticket.len() <= 256
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A ticket as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTicket {
    pub kind: TicketKind,
    /// The service URL it was issued for (without `ticket`), as the client sent it.
    pub service: String,
    pub account_id: String,
    pub session_id: String,
    /// Issued right after the user typed credentials, not from an existing SSO session.
    pub from_new_login: bool,
    pub expires_at: i64,
    /// When the user last typed credentials (the session's `auth_time`).
    pub auth_time: i64,
    /// The session is a "stay signed in" one.
    pub long_term: bool,
    /// The factors of the session's authentication (RFC 8176 `amr` values).
    pub amr: Vec<String>,
    /// For a proxy ticket: the proxy callback URLs it came through, most recent first (§2.6.2).
    pub proxies: Vec<String>,
}

/// What a service ticket issued from a session cookie ([`TicketStore::insert_ticket_from_session`])
/// does not take from the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTicket {
    /// The service URL it is issued for (without `ticket`), as the client sent it.
    pub service: String,
    /// The CAS service's id, noted in the session (single logout).
    pub noted_service: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A proxy-granting ticket (§3.3): lets a service obtain proxy tickets for other services, until
/// the SSO session it came from ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyGrantingTicket {
    /// The service that holds it.
    pub service_id: String,
    pub account_id: String,
    pub session_id: String,
    /// Its callback URL first, then the chain it came through.
    pub proxies: Vec<String>,
    pub auth_time: i64,
    pub long_term: bool,
    pub amr: Vec<String>,
}

/// A ticket just consumed, with its account.
#[derive(Debug, Clone)]
pub struct TakenTicket {
    pub ticket: StoredTicket,
    pub account: Option<crate::accounts::AccountWithRecords>,
}

/// The storage port of tickets.
#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Stores a ticket. With `noted_service` (a CAS service's id), the same write notes in the
    /// ticket's session that it logged into that service, as
    /// [`crate::sessions::SessionStore::record_session_service`] does (ADR 0019).
    async fn insert_ticket(
        &self,
        digest: &[u8],
        ticket: &StoredTicket,
        noted_service: Option<&str>,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Stores a service ticket issued from the live SSO session whose cookie has
    /// `session_digest` (live at `ticket.created_at`: neither idle- nor absolutely expired), in
    /// one write with the session's service note (`ticket.noted_service`), and returns that
    /// session as it was read; `None`, and nothing written, when there is no such session
    /// (ADR 0023). The ticket takes from the session what [`server::CasServer::issue`] takes:
    /// its account, its id, its `auth_time`, its factors as `amr`, and `long_term` when the
    /// session's kind is [`crate::sessions::SessionKind::Remembered`]; never from a new login.
    async fn insert_ticket_from_session(
        &self,
        session_digest: &[u8],
        digest: &[u8],
        ticket: &SessionTicket,
    ) -> Result<Option<crate::sessions::Session>, StorageError>;
    /// Deletes and returns the ticket, expired or not (`DELETE … RETURNING`): a ticket gets
    /// exactly one validation attempt, whatever its outcome (§3.1.1, §3.2.1). Of concurrent
    /// validators, one gets it. With it comes its account and feed records as they are now
    /// (`None` for an account gone), which a successful validation releases: PostgreSQL reads
    /// them in the same statement (ADR 0019).
    async fn take_ticket(&self, digest: &[u8]) -> Result<Option<TakenTicket>, StorageError>;
    async fn purge_expired_tickets(&self, now: i64) -> Result<u64, StorageError>;
    async fn insert_pgt(
        &self,
        digest: &[u8],
        pgt: &ProxyGrantingTicket,
        now: i64,
    ) -> Result<(), StorageError>;
    /// The proxy-granting ticket, if its SSO session is still live at `now`.
    async fn find_pgt(
        &self,
        digest: &[u8],
        now: i64,
    ) -> Result<Option<ProxyGrantingTicket>, StorageError>;
}

/// The proxy callback (§2.5.4): an HTTPS GET of `pgtUrl?pgtIou=…&pgtId=…` that must answer 200,
/// with no redirect followed and a time limit. `true` when it did.
#[async_trait]
pub trait ProxyCallback: Send + Sync {
    async fn deliver(&self, pgt_url: &str, pgt_iou: &str, pgt_id: &str) -> bool;
}

/// The error codes of §2.5.3 (and §2.7.2 for `/proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasErrorCode {
    /// Not all of the required request parameters were present.
    InvalidRequest,
    /// Failure to meet the requirements of validation specification (a PT at `serviceValidate`).
    InvalidTicketSpec,
    /// The service is not authorized to perform proxy authentication.
    UnauthorizedServiceProxy,
    /// `/proxy`: the target service is not authorized (§2.7.2).
    UnauthorizedService,
    /// The proxy callback specified is invalid.
    InvalidProxyCallback,
    /// The ticket provided was not valid, or was not from an initial login and `renew` was set.
    InvalidTicket,
    /// The ticket provided was valid, but the service specified did not match.
    InvalidService,
    /// An internal error occurred during ticket validation.
    InternalError,
}

impl CasErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::InvalidTicketSpec => "INVALID_TICKET_SPEC",
            Self::UnauthorizedServiceProxy => "UNAUTHORIZED_SERVICE_PROXY",
            Self::UnauthorizedService => "UNAUTHORIZED_SERVICE",
            Self::InvalidProxyCallback => "INVALID_PROXY_CALLBACK",
            Self::InvalidTicket => "INVALID_TICKET",
            Self::InvalidService => "INVALID_SERVICE",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// A validation failure: the code and a description for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasFailure {
    pub code: CasErrorCode,
    pub description: String,
}

impl CasFailure {
    pub fn new(code: CasErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

impl fmt::Display for CasFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

/// Which validation endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/validate` (CAS 1, §2.4): service tickets only.
    Validate,
    /// `/serviceValidate` (§2.5) and `/p3/serviceValidate` (§2.8): service tickets only.
    ServiceValidate,
    /// `/proxyValidate` (§2.6) and `/p3/proxyValidate` (§2.9): service and proxy tickets.
    ProxyValidate,
}

/// What the request asked (already read from the query).
#[derive(Debug, Clone)]
pub struct ValidationRequest<'a> {
    pub endpoint: Endpoint,
    pub ticket: Option<&'a str>,
    pub service: Option<&'a str>,
    /// `renew=true`: only tickets issued from a fresh login are accepted (§2.5.1).
    pub renew: bool,
}

/// Checks a request and the ticket it consumed (already taken from the store, or `None`) against
/// the rules of §2.5–2.9. `registered` says whether the service URL is (still) in the registry.
pub fn validate(
    request: &ValidationRequest<'_>,
    taken: Option<StoredTicket>,
    registered: bool,
    now: i64,
) -> Result<StoredTicket, CasFailure> {
    use CasErrorCode::*;
    let (Some(ticket), Some(service)) = (
        request.ticket.filter(|t| !t.is_empty()),
        request.service.filter(|s| !s.is_empty()),
    ) else {
        // §2.5.1: `service` and `ticket` are required.
        return Err(CasFailure::new(
            InvalidRequest,
            "'service' and 'ticket' parameters are both required",
        ));
    };
    let Some(stored) = taken else {
        return Err(CasFailure::new(
            InvalidTicket,
            format!("Ticket {ticket} not recognized"),
        ));
    };
    // §2.5: `/serviceValidate` MUST NOT return a successful authentication for a proxy ticket,
    // and should answer INVALID_TICKET_SPEC.
    if stored.kind == TicketKind::Proxy && request.endpoint != Endpoint::ProxyValidate {
        return Err(CasFailure::new(
            InvalidTicketSpec,
            format!("Ticket {ticket} is a proxy ticket: validate it at proxyValidate"),
        ));
    }
    if stored.expires_at <= now {
        return Err(CasFailure::new(
            InvalidTicket,
            format!("Ticket {ticket} has expired"),
        ));
    }
    let same = match (
        canonical_service(service),
        canonical_service(&stored.service),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    if !same || !registered {
        // §2.5.3 INVALID_SERVICE; the ticket is consumed all the same (§3.1.1).
        return Err(CasFailure::new(
            InvalidService,
            format!("Ticket {ticket} does not match the service {service}"),
        ));
    }
    if request.renew && !stored.from_new_login {
        // §2.5.1: with `renew`, a ticket issued from an SSO session fails.
        return Err(CasFailure::new(
            InvalidTicket,
            format!("Ticket {ticket} was not issued from a new login, and renew was asked"),
        ));
    }
    Ok(stored)
}

/// A successful validation, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// `cas:user`.
    pub user: String,
    /// The PGT IOU when a proxy callback received a proxy-granting ticket (§2.5.4).
    pub proxy_granting_ticket: Option<String>,
    /// For a proxy ticket: the proxies it came through, most recent first (§2.6.2).
    pub proxies: Vec<String>,
    /// When the user typed the password (Unix seconds).
    pub auth_time: i64,
    /// Released attributes (name → values, several values repeat the element). Empty when the
    /// endpoint or the service releases none.
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// How the client asked for the answer (§2.5.1 `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

impl Format {
    /// `format=JSON` (case-insensitive); XML otherwise, the default.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Xml,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    fn stored(kind: TicketKind) -> StoredTicket {
        StoredTicket {
            kind,
            service: "https://moodle.uca.fr/login/index.php?authCAS=CAS".into(),
            account_id: "acc".into(),
            session_id: "sess".into(),
            from_new_login: false,
            expires_at: 110,
            auth_time: 50,
            long_term: false,
            amr: vec!["pwd".into()],
            proxies: vec![],
        }
    }

    fn request<'a>(endpoint: Endpoint, service: &'a str) -> ValidationRequest<'a> {
        ValidationRequest {
            endpoint,
            ticket: Some("ST-1"),
            service: Some(service),
            renew: false,
        }
    }

    const SERVICE: &str = "https://moodle.uca.fr/login/index.php?authCAS=CAS";

    #[test]
    fn tickets_use_only_the_characters_every_client_accepts() {
        let entropy = SeededEntropy::new(1);
        for kind in [TicketKind::Service, TicketKind::Proxy] {
            let ticket = new_ticket(kind, &entropy);
            assert!(ticket.starts_with(kind.prefix()));
            assert!(ticket.len() >= 3 + 40, "160 bits");
            assert!(well_formed(&ticket));
        }
        assert!(!well_formed("ST-1</cas:authenticationFailure>"));
        assert!(!well_formed("TGT-1"));
        assert!(!well_formed(&format!("ST-{}", "a".repeat(300))));
    }

    #[test]
    fn the_rules_of_the_specification() {
        use CasErrorCode::*;
        let code = |r: Result<StoredTicket, CasFailure>| r.map(|_| ()).map_err(|f| f.code);
        let ok = request(Endpoint::ServiceValidate, SERVICE);
        assert_eq!(
            code(validate(&ok, Some(stored(TicketKind::Service)), true, 100)),
            Ok(())
        );
        // Lower-case escapes, a stale ticket, another case in the host: the same service.
        let same = "https://MOODLE.uca.fr/login/index.php?authCAS=CAS&ticket=ST-old";
        assert_eq!(
            code(validate(
                &request(Endpoint::ServiceValidate, same),
                Some(stored(TicketKind::Service)),
                true,
                100
            )),
            Ok(())
        );
        let missing = ValidationRequest {
            ticket: None,
            ..ok.clone()
        };
        assert_eq!(
            code(validate(&missing, None, true, 100)),
            Err(InvalidRequest)
        );
        assert_eq!(code(validate(&ok, None, true, 100)), Err(InvalidTicket));
        assert_eq!(
            code(validate(&ok, Some(stored(TicketKind::Proxy)), true, 100)),
            Err(InvalidTicketSpec)
        );
        assert_eq!(
            code(validate(
                &request(Endpoint::ProxyValidate, SERVICE),
                Some(stored(TicketKind::Proxy)),
                true,
                100
            )),
            Ok(())
        );
        assert_eq!(
            code(validate(&ok, Some(stored(TicketKind::Service)), true, 110)),
            Err(InvalidTicket),
            "expired"
        );
        assert_eq!(
            code(validate(
                &request(Endpoint::ServiceValidate, "https://evil.example/"),
                Some(stored(TicketKind::Service)),
                true,
                100
            )),
            Err(InvalidService)
        );
        assert_eq!(
            code(validate(&ok, Some(stored(TicketKind::Service)), false, 100)),
            Err(InvalidService),
            "a service removed from the registry"
        );
        let renew = ValidationRequest {
            renew: true,
            ..ok.clone()
        };
        assert_eq!(
            code(validate(
                &renew,
                Some(stored(TicketKind::Service)),
                true,
                100
            )),
            Err(InvalidTicket)
        );
        let fresh = StoredTicket {
            from_new_login: true,
            ..stored(TicketKind::Service)
        };
        assert_eq!(code(validate(&renew, Some(fresh), true, 100)), Ok(()));
    }
}
