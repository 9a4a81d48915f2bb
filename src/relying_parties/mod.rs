//! Relying parties: the CAS services and the OIDC clients allowed to use Sésame, and
//! the pure rules that match a request to one of them (DESIGN.md §7).
//!
//! A CAS service is found by its URL pattern: `exact`, `prefix` (scheme, host and port exact;
//! the path a prefix on a segment boundary; any query) or `regex` (anchored on the whole URL).
//! Services are evaluated in ascending `order`; the first match wins. An unknown service gets no
//! ticket and no redirect.
//!
//! Service URLs are compared the way real clients need (DESIGN.md §7, "interop facts"): escapes in
//! either case (`%3a` = `%3A`), the client's own query string kept, a stale `ticket=` parameter
//! dropped.

pub mod clients;
pub mod services;

pub use services::{CasService, MatchMode, ServiceRegistry, ServiceStore, canonical_service};
