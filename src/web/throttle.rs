//! Throttling of the credential forms by client address and globally (DESIGN.md §6), with
//! `governor`: 429 and `Retry-After` beyond the quota. Counters live in this node's memory,
//! bounded: idle addresses are forgotten by the maintenance sweep ([`Throttle::forget_idle`]).
//! The per-identifier lockout, shared by all nodes through the database, is the real defence
//! against guessing; this one stops floods and scripted enumeration from one address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::{ClientIp, WebState};
use crate::web::errors::ErrorKind;

type KeyedLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;
type GlobalLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

/// The limiters of one node.
#[derive(Clone)]
pub struct Throttle {
    per_address: Arc<KeyedLimiter>,
    global: Arc<GlobalLimiter>,
}

impl Throttle {
    pub fn new(per_address_per_minute: u32, global_per_second: u32) -> Self {
        let per_minute = NonZeroU32::new(per_address_per_minute).unwrap_or(NonZeroU32::MIN);
        let per_second = NonZeroU32::new(global_per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            per_address: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            global: Arc::new(RateLimiter::direct(Quota::per_second(per_second))),
        }
    }

    /// `Ok` to go on, or how long to wait.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        // The limiter's own clock: making one per request would calibrate it each time.
        let clock = self.per_address.clock();
        if let Err(not_until) = self.per_address.check_key(&client) {
            return Err(not_until.wait_time_from(clock.now()));
        }
        self.global
            .check()
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }

    /// Forgets addresses whose quota is full again, keeping memory bounded.
    pub fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.per_address.shrink_to_fit();
    }
}

/// Applies the throttle to the POSTs of the routes it wraps.
pub async fn throttle_posts(
    State(state): State<WebState>,
    ClientIp(client): ClientIp,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(client) = client else {
        return next.run(request).await;
    };
    match state.throttle.check(client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::info!(%client, "throttled");
            let seconds = wait.as_secs().max(1);
            let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
            response.extensions_mut().insert(ErrorKind::TooManyRequests);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_quota() {
        let throttle = Throttle::new(3, 1000);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check(a).is_ok());
        }
        let wait = throttle.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(throttle.check(b).is_ok(), "another address is not affected");
    }

    #[test]
    fn the_global_quota_covers_everyone() {
        let throttle = Throttle::new(1000, 2);
        assert!(throttle.check("192.0.2.1".parse().unwrap()).is_ok());
        assert!(throttle.check("192.0.2.2".parse().unwrap()).is_ok());
        assert!(throttle.check("192.0.2.3".parse().unwrap()).is_err());
    }
}
