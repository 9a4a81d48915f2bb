//! Prometheus metrics (`/metrics`): request counts and latency by route. Later rooms add their
//! own families (ticket validations…) to the same registry; logins by result are here.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `success`, `rejected`, `locked`, `disabled`, `incomplete`, `too_long` or `busy`.
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CasLabels {
    /// `validate`, `serviceValidate`, `proxyValidate`, `p3/serviceValidate`, `p3/proxyValidate`,
    /// `samlValidate` or `proxy`.
    pub endpoint: &'static str,
    /// `success` or the failure code.
    pub result: &'static str,
}

/// The registry and the families the web layer records.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub logins: Family<LoginLabels, Counter>,
    pub cas: Family<CasLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s: password hashing sits around 50–500 ms, everything else far below.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

/// Labels of `sesame_oidc_tokens_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TokenLabels {
    /// The `grant_type` asked (`authorization_code`, `refresh_token`, `client_credentials`,
    /// `other`).
    pub grant: &'static str,
    /// `success` or the RFC 6749 error code.
    pub result: &'static str,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sesame");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Password logins by result (locked: refused or newly locked by the lockout)",
            logins.clone(),
        );
        let cas = Family::<CasLabels, Counter>::default();
        registry.register(
            "cas_validations",
            "CAS ticket validations and proxy requests, by endpoint and result",
            cas.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "oidc_tokens",
            "OIDC token requests, by grant type and result",
            tokens.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            logins,
            cas,
            tokens,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
