//! The CAS server: finds services in the registry, issues tickets from an SSO session, and
//! validates them (CAS 3.0.3 §2–3). The web adapter calls it; it never sees HTTP.

use std::sync::Arc;
use std::time::Duration;

use super::logout::{LogoutStore, LogoutTarget};
use super::{
    Authentication, CasErrorCode, CasFailure, Endpoint, PGT_PREFIX, PGTIOU_PREFIX, ProxyCallback,
    ProxyGrantingTicket, SessionTicket, StoredTicket, TicketKind, TicketStore, ValidationRequest,
    new_ticket, new_value, validate, well_formed, well_formed_pgt,
};
use crate::accounts::{AccountState, attributes};
use crate::audit::{Actor, AuditAction, Auditor};
use crate::clock::{Clock, from_unix, rfc3339};
use crate::entropy::Entropy;
use crate::one_time::SecretToken;
use crate::relying_parties::services::without_ticket;
use crate::relying_parties::{CasService, ServiceRegistry, ServiceStore};
use crate::sessions::{Session, SessionKind};
use crate::storage::StorageError;

/// Which attributes a validation endpoint releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// CAS 1 `/validate`: the user only.
    None,
    /// CAS 2 `/serviceValidate`: the service's attributes when it allows them there.
    Cas2,
    /// CAS 3 `/p3/*`: the service's attributes (§2.8).
    Cas3,
}

pub struct CasSettings {
    pub config_services: Vec<CasService>,
    pub allow_http_services: bool,
    pub ticket_lifetime: Duration,
    pub student_domain: String,
    pub staff_domain: String,
}

/// How long a node keeps the registry it read (a change by another node or the CLI is seen within
/// this time; the node's own changes at once).
const REGISTRY_CACHE: Duration = Duration::from_secs(1);

pub struct CasServer {
    /// The registry as last read, and when.
    cache: std::sync::Mutex<Option<(crate::clock::Stopwatch, Arc<ServiceRegistry>)>>,
    tickets: Arc<dyn TicketStore>,
    logouts: Arc<dyn LogoutStore>,
    callback: Arc<dyn ProxyCallback>,
    services: Arc<dyn ServiceStore>,
    audit: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    settings: CasSettings,
}

/// A service URL a browser came with, checked against the registry.
#[derive(Debug, Clone)]
pub struct KnownService {
    /// The URL as the client sent it, without a stale `ticket`: where the ticket goes.
    pub url: String,
    pub service: CasService,
}

impl CasServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tickets: Arc<dyn TicketStore>,
        logouts: Arc<dyn LogoutStore>,
        callback: Arc<dyn ProxyCallback>,
        services: Arc<dyn ServiceStore>,
        audit: Arc<Auditor>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        settings: CasSettings,
    ) -> Self {
        Self {
            cache: std::sync::Mutex::new(None),
            tickets,
            logouts,
            callback,
            services,
            audit,
            clock,
            entropy,
            settings,
        }
    }

    /// The services of the configuration and the database, read again after
    /// [`REGISTRY_CACHE`] (another node or the CLI may have changed them).
    pub async fn registry(&self) -> Result<Arc<ServiceRegistry>, StorageError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((read_at, registry)) = cache.as_ref()
            && read_at.elapsed() < REGISTRY_CACHE
        {
            return Ok(registry.clone());
        }
        let registry = Arc::new(self.read_registry().await?);
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((crate::clock::Stopwatch::start(), registry.clone()));
        }
        Ok(registry)
    }

    fn forget_registry(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
    }

    async fn read_registry(&self) -> Result<ServiceRegistry, StorageError> {
        let mut all = self.settings.config_services.clone();
        all.extend(
            self.services
                .list_cas_services()
                .await?
                .into_iter()
                .filter(|s| s.check(self.settings.allow_http_services).is_ok()),
        );
        Ok(ServiceRegistry::new(all))
    }

    /// The registered service of a URL; `None` for a malformed or unknown one.
    pub async fn known_service(&self, raw: &str) -> Result<Option<KnownService>, StorageError> {
        let Some(url) = without_ticket(raw) else {
            return Ok(None);
        };
        if url.starts_with("http://") && !self.settings.allow_http_services {
            return Ok(None);
        }
        Ok(self
            .registry()
            .await?
            .find(&url)
            .cloned()
            .map(|service| KnownService { url, service }))
    }

    /// Issues a service ticket for a live session (§2.1–2.2) and notes the service in the
    /// session (for single logout).
    pub async fn issue(
        &self,
        session: &Session,
        service: &KnownService,
        from_new_login: bool,
    ) -> Result<String, StorageError> {
        let now = self.clock.unix_now();
        let ticket = new_ticket(TicketKind::Service, self.entropy.as_ref());
        let stored = StoredTicket {
            kind: TicketKind::Service,
            service: service.url.clone(),
            account_id: session.account_id.clone(),
            session_id: session.id.clone(),
            from_new_login,
            expires_at: now + self.settings.ticket_lifetime.as_secs() as i64,
            auth_time: session.auth_time,
            long_term: session.kind == SessionKind::Remembered,
            amr: session.factors.clone(),
            proxies: Vec::new(),
        };
        let digest = SecretToken::new(ticket.clone()).digest();
        // The session notes the service in the same write.
        self.tickets
            .insert_ticket(&digest, &stored, Some(&service.service.id), now)
            .await?;
        Ok(ticket)
    }

    /// Issues a service ticket (§2.1–2.2) from the live SSO session of a cookie, read and used
    /// in one write (ADR 0023): the ticket and the session it came from, or `None` when the
    /// cookie names no live session (nothing issued). Only for a service whose ticket cannot
    /// depend on the session beyond its being live (no second factor to require): the caller
    /// decides that before.
    pub async fn issue_from_cookie(
        &self,
        cookie: &SecretToken,
        service: &KnownService,
    ) -> Result<Option<(String, Session)>, StorageError> {
        let now = self.clock.unix_now();
        let ticket = new_ticket(TicketKind::Service, self.entropy.as_ref());
        let digest = SecretToken::new(ticket.clone()).digest();
        let issued = SessionTicket {
            service: service.url.clone(),
            noted_service: service.service.id.clone(),
            created_at: now,
            expires_at: now + self.settings.ticket_lifetime.as_secs() as i64,
        };
        Ok(self
            .tickets
            .insert_ticket_from_session(&cookie.digest(), &digest, &issued)
            .await?
            .map(|session| (ticket, session)))
    }

    /// Validates a ticket (§2.4–2.9): consumed whatever the outcome. With `pgt_url`, the service
    /// also asks for a proxy-granting ticket (§2.5.4).
    pub async fn validate(
        &self,
        request: ValidationRequest<'_>,
        release: Release,
        pgt_url: Option<&str>,
    ) -> Result<Result<Authentication, CasFailure>, StorageError> {
        let now = self.clock.unix_now();
        let taken = match request.ticket.filter(|t| well_formed(t)) {
            Some(ticket) => {
                self.tickets
                    .take_ticket(&SecretToken::new(ticket.to_string()).digest())
                    .await?
            }
            None => None,
        };
        let (taken, account) = match taken {
            Some(taken) => (Some(taken.ticket), taken.account),
            None => (None, None),
        };
        let known = match request.service {
            Some(service) => self.known_service(service).await?,
            None => None,
        };
        let stored = match validate(&request, taken, known.is_some(), now) {
            Ok(stored) => stored,
            Err(failure) => {
                self.audit
                    .record(
                        Actor::System,
                        AuditAction::CasTicketRefused,
                        None,
                        serde_json::json!({"code": failure.code.as_str(),
                            "service": known.as_ref().map(|k| k.service.id.clone())}),
                    )
                    .await?;
                return Ok(Err(failure));
            }
        };
        let service = known.expect("validate() refuses unknown services").service;
        // §2.5.4: a service asking for a PGT must be allowed to proxy, and its callback must be
        // https and registered for proxying; the ticket is consumed either way.
        let callback = match pgt_url.filter(|u| !u.is_empty()) {
            None => None,
            Some(_) if !service.proxy => {
                return Ok(Err(CasFailure::new(
                    CasErrorCode::UnauthorizedServiceProxy,
                    format!("the service {} may not obtain proxy tickets", service.id),
                )));
            }
            Some(url) => match self.known_service(url).await? {
                Some(callback) if callback.service.proxy => Some(url),
                _ => {
                    return Ok(Err(CasFailure::new(
                        CasErrorCode::InvalidProxyCallback,
                        format!("the proxy callback {url} is not registered for proxying"),
                    )));
                }
            },
        };
        // DESIGN.md §5: a service that requires MFA never validates a ticket of an
        // authentication without a second factor (whatever issued it).
        if service.mfa_required && !crate::accounts::mfa::is_multi_factor(&stored.amr) {
            self.audit
                .record(
                    Actor::System,
                    AuditAction::CasTicketRefused,
                    Some(stored.account_id.clone()),
                    serde_json::json!({"code": "INVALID_TICKET", "service": service.id,
                        "reason": "no_second_factor"}),
                )
                .await?;
            return Ok(Err(CasFailure::new(
                CasErrorCode::InvalidTicket,
                format!(
                    "the service {} requires a second factor, which this login did not use",
                    service.id
                ),
            )));
        }
        // The account and its feed records, read with the ticket.
        let records = match account {
            Some(records) if records.account.state == AccountState::Active => records,
            _ => {
                return Ok(Err(CasFailure::new(
                    CasErrorCode::InvalidTicket,
                    "the account of this ticket is no longer active",
                )));
            }
        };
        let all = attributes::of_records(
            &records,
            &self.settings.student_domain,
            &self.settings.staff_domain,
        );
        let account = records.account;
        let user = all
            .get(&service.user_attribute)
            .and_then(|values| values.first())
            .cloned()
            .unwrap_or_else(|| account.login.clone());
        let release_attributes = match release {
            Release::None => false,
            Release::Cas2 => service.attributes_on_cas2,
            Release::Cas3 => true,
        };
        let mut released = attributes::Attributes::new();
        if release_attributes {
            for name in &service.attributes {
                if let Some(values) = all.get(name) {
                    released.insert(name.clone(), values.clone());
                }
            }
            // Appendix A / §2.8: the authentication's own attributes.
            released.insert(
                "authenticationDate".into(),
                vec![rfc3339(from_unix(stored.auth_time))],
            );
            released.insert(
                "isFromNewLogin".into(),
                vec![stored.from_new_login.to_string()],
            );
            released.insert(
                "longTermAuthenticationRequestTokenUsed".into(),
                vec![stored.long_term.to_string()],
            );
            // The authentication context (REFEDS profiles, as the OIDC `acr`) and its methods
            // (RFC 8176 values, as the OIDC `amr`).
            released.insert(
                "authnContextClass".into(),
                vec![crate::oidc::server::acr_of(&stored.amr).to_string()],
            );
            released.insert("authenticationMethod".into(), stored.amr.clone());
        }
        self.audit
            .record(
                Actor::System,
                AuditAction::CasTicketValidated,
                Some(account.id.clone()),
                serde_json::json!({"service": service.id, "kind": stored.kind.as_str(),
                "endpoint": match request.endpoint {
                    Endpoint::Validate => "validate",
                    Endpoint::ServiceValidate => "serviceValidate",
                    Endpoint::ProxyValidate => "proxyValidate",
                }}),
            )
            .await?;
        // Single logout (§2.3.3): this service will be told, with this ticket, when the SSO
        // session ends.
        if service.single_logout
            && let Some(ticket) = request.ticket
        {
            self.logouts
                .record_logout_target(
                    &LogoutTarget {
                        protocol: super::logout::LogoutProtocol::Cas,
                        session_id: stored.session_id.clone(),
                        account_id: account.id.clone(),
                        service_id: service.id.clone(),
                        url: service
                            .logout_url
                            .clone()
                            .unwrap_or_else(|| stored.service.clone()),
                        name_id: user.clone(),
                        session_index: ticket.to_string(),
                    },
                    now,
                )
                .await?;
        }
        let proxy_granting_ticket = match callback {
            Some(url) => self.grant_pgt(&stored, &service, url).await?,
            None => None,
        };
        Ok(Ok(Authentication {
            user,
            attributes: released,
            proxy_granting_ticket,
            proxies: stored.proxies,
            auth_time: stored.auth_time,
        }))
    }

    /// §2.5.4: sends a new PGT and its IOU to the callback; keeps the PGT only if the callback
    /// answered 200. Returns the IOU for the validation response.
    async fn grant_pgt(
        &self,
        ticket: &StoredTicket,
        service: &CasService,
        pgt_url: &str,
    ) -> Result<Option<String>, StorageError> {
        let pgt = new_value(PGT_PREFIX, self.entropy.as_ref());
        let iou = new_value(PGTIOU_PREFIX, self.entropy.as_ref());
        if !self.callback.deliver(pgt_url, &iou, &pgt).await {
            tracing::info!(service = %service.id, "the proxy callback did not answer 200: no PGT");
            return Ok(None);
        }
        let mut proxies = vec![pgt_url.to_string()];
        proxies.extend(ticket.proxies.iter().cloned());
        self.tickets
            .insert_pgt(
                &SecretToken::new(pgt).digest(),
                &ProxyGrantingTicket {
                    service_id: service.id.clone(),
                    account_id: ticket.account_id.clone(),
                    session_id: ticket.session_id.clone(),
                    proxies,
                    auth_time: ticket.auth_time,
                    long_term: ticket.long_term,
                    amr: ticket.amr.clone(),
                },
                self.clock.unix_now(),
            )
            .await?;
        Ok(Some(iou))
    }

    /// `/proxy` (§2.7): a proxy ticket for `target_service` from a proxy-granting ticket.
    pub async fn proxy(
        &self,
        pgt: Option<&str>,
        target_service: Option<&str>,
    ) -> Result<Result<String, CasFailure>, StorageError> {
        let (Some(pgt), Some(target)) = (
            pgt.filter(|p| !p.is_empty()),
            target_service.filter(|t| !t.is_empty()),
        ) else {
            return Ok(Err(CasFailure::new(
                CasErrorCode::InvalidRequest,
                "'pgt' and 'targetService' parameters are both required",
            )));
        };
        let now = self.clock.unix_now();
        let granting = match well_formed_pgt(pgt) {
            true => {
                self.tickets
                    .find_pgt(&SecretToken::new(pgt.to_string()).digest(), now)
                    .await?
            }
            false => None,
        };
        let Some(granting) = granting else {
            return Ok(Err(CasFailure::new(
                CasErrorCode::InvalidTicket,
                format!("Ticket {pgt} not recognized"),
            )));
        };
        // The holder must still be registered and allowed to proxy (§2.7).
        let registry = self.registry().await?;
        if !registry
            .by_id(&granting.service_id)
            .is_some_and(|holder| holder.proxy)
        {
            return Ok(Err(CasFailure::new(
                CasErrorCode::UnauthorizedServiceProxy,
                format!("the service {} may no longer proxy", granting.service_id),
            )));
        }
        let Some(target) = self.known_service(target).await? else {
            return Ok(Err(CasFailure::new(
                CasErrorCode::UnauthorizedService,
                format!("the service {target} is not registered"),
            )));
        };
        let ticket = new_ticket(TicketKind::Proxy, self.entropy.as_ref());
        let stored = StoredTicket {
            kind: TicketKind::Proxy,
            service: target.url.clone(),
            account_id: granting.account_id,
            session_id: granting.session_id,
            from_new_login: false,
            expires_at: now + self.settings.ticket_lifetime.as_secs() as i64,
            auth_time: granting.auth_time,
            long_term: granting.long_term,
            amr: granting.amr,
            proxies: granting.proxies,
        };
        self.tickets
            .insert_ticket(
                &SecretToken::new(ticket.clone()).digest(),
                &stored,
                None,
                now,
            )
            .await?;
        Ok(Ok(ticket))
    }

    /// Deletes expired tickets (the maintenance pass).
    pub async fn purge(&self) -> Result<u64, StorageError> {
        self.tickets
            .purge_expired_tickets(self.clock.unix_now())
            .await
    }

    /// Adds a service to the database (`sesame service add`), after the checks.
    pub async fn add_service(&self, service: &CasService) -> Result<(), String> {
        service.check(self.settings.allow_http_services)?;
        if self
            .settings
            .config_services
            .iter()
            .any(|s| s.id == service.id)
        {
            return Err(format!(
                "`{}` is declared in the configuration file",
                service.id
            ));
        }
        let inserted = self
            .services
            .insert_cas_service(service, self.clock.unix_now())
            .await;
        self.forget_registry();
        match inserted {
            Ok(()) => Ok(()),
            Err(StorageError::Conflict) => Err(format!("`{}` exists already", service.id)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Removes a service added with the CLI; `Err` for one of the configuration file.
    pub async fn remove_service(&self, id: &str) -> Result<bool, String> {
        if self.settings.config_services.iter().any(|s| s.id == id) {
            return Err(format!(
                "`{id}` is declared in the configuration file: remove it there"
            ));
        }
        let removed = self
            .services
            .delete_cas_service(id)
            .await
            .map_err(|e| e.to_string());
        self.forget_registry();
        removed
    }
}
