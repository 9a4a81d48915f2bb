//! The HTTP adapter: the router (every route in one table), the handlers, the pages, the
//! middleware, and `errors.rs`, the only place where errors become responses. Handlers call the
//! domain and protocol rooms; they never touch SQL.

pub mod cookies;
pub mod errors;
pub mod handlers;
pub mod i18n;
pub mod metrics;
pub mod middleware;
pub mod router;
pub mod server;
pub mod throttle;
pub mod views;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::config::{ProxyRange, is_trusted_proxy};
use crate::entropy::Entropy;
use crate::storage::HealthProbe;

/// What the web layer needs, built by the composition root (`app.rs`).
#[derive(Clone)]
pub struct WebState {
    pub inner: Arc<WebServices>,
}

pub struct WebServices {
    /// `host[:port]` of the public URL: the only `Host` the pages answer to.
    pub public_authority: String,
    pub public_url: String,
    pub https: bool,
    pub demo: bool,
    pub trusted_proxies: Vec<ProxyRange>,
    pub metrics_allowed: Vec<ProxyRange>,
    pub request_timeout: Duration,
    pub health: Arc<dyn HealthProbe>,
    pub entropy: Arc<dyn Entropy>,
    pub metrics: metrics::Metrics,
    pub activation: Arc<crate::accounts::activation::ActivationService>,
    pub recovery: Arc<crate::accounts::recovery::RecoveryService>,
    pub login: Arc<crate::login::LoginService>,
    pub account: Arc<crate::accounts::self_service::SelfService>,
    pub cas: Arc<crate::cas::server::CasServer>,
    pub oidc: Arc<crate::oidc::server::OidcServer>,
    pub throttle: throttle::Throttle,
}

impl std::ops::Deref for WebState {
    type Target = WebServices;
    fn deref(&self) -> &WebServices {
        &self.inner
    }
}

/// The TCP peer of the request, when the server recorded it (always, outside in-process tests).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
                .await
                .ok()
                .map(|ConnectInfo(addr)| addr),
        ))
    }
}

/// The client's address as this deployment believes it (see [`client_ip`]); `None` only for
/// in-process requests without a socket.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<WebState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let PeerAddr(peer) = PeerAddr::from_request_parts(parts, state).await?;
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Ok(ClientIp(peer.map(|peer| {
            client_ip(peer.ip(), forwarded, &state.trusted_proxies)
        })))
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left
/// were written by the client and cannot be believed).
pub fn client_ip(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[ProxyRange],
) -> IpAddr {
    if !is_trusted_proxy(trusted_proxies, peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for entry in header.rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted_proxy(trusted_proxies, ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> Vec<ProxyRange> {
        list.iter()
            .map(|s| ProxyRange(s.parse().unwrap()))
            .collect()
    }

    #[test]
    fn forwarded_for_is_only_believed_from_trusted_proxies() {
        let proxies = ranges(&["10.0.0.0/8"]);
        let untrusted: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(client_ip(untrusted, Some("1.2.3.4"), &proxies), untrusted);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(proxy, Some("198.51.100.7"), &proxies),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // A client-forged left-most entry is ignored: the right-most untrusted one counts.
        assert_eq!(
            client_ip(proxy, Some("6.6.6.6, 198.51.100.7, 10.0.0.9"), &proxies),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, None, &proxies), proxy);
        assert_eq!(client_ip(proxy, Some("garbage"), &proxies), proxy);
    }
}
