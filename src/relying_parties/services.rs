//! CAS services: their definition, the checks on a new one, URL canonicalisation and matching.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::storage::StorageError;

/// How a service's pattern is compared with a requested service URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// The same URL (after canonicalisation), query included.
    Exact,
    /// Same scheme, host and port; the path starts with the pattern's path on a segment boundary;
    /// any query.
    Prefix,
    /// An anchored regular expression over the canonical URL.
    Regex,
}

impl MatchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Prefix => "prefix",
            Self::Regex => "regex",
        }
    }
}

impl fmt::Display for MatchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MatchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exact" => Ok(Self::Exact),
            "prefix" => Ok(Self::Prefix),
            "regex" => Ok(Self::Regex),
            other => Err(format!(
                "unknown match mode `{other}` (exact, prefix or regex)"
            )),
        }
    }
}

fn default_user_attribute() -> String {
    "uid".to_string()
}

fn default_true() -> bool {
    true
}

/// A CAS service (DESIGN.md §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasService {
    /// A short stable name (`moodle`): the CLI and the audit trail use it.
    pub id: String,
    /// Shown to people.
    pub name: String,
    /// The URL, URL prefix or regular expression.
    pub pattern: String,
    #[serde(rename = "match")]
    pub mode: MatchMode,
    /// Lower first.
    #[serde(default)]
    pub order: i32,
    /// Attributes released to it (names of DESIGN.md §7).
    #[serde(default)]
    pub attributes: Vec<String>,
    /// The attribute whose value is `cas:user`.
    #[serde(default = "default_user_attribute")]
    pub user_attribute: String,
    /// Attributes also on CAS 2 `serviceValidate` (mod_auth_cas, python-cas read them there).
    #[serde(default = "default_true")]
    pub attributes_on_cas2: bool,
    /// May obtain proxy tickets.
    #[serde(default)]
    pub proxy: bool,
    /// Logins to it need a second factor (the MFA work).
    #[serde(default)]
    pub mfa_required: bool,
    /// Receives single-logout requests.
    #[serde(default)]
    pub single_logout: bool,
    /// Where single-logout requests go (default: the service URL the ticket was issued to).
    #[serde(default)]
    pub logout_url: Option<String>,
}

/// Characters re-escaped in a canonical path or query component: everything but unreserved
/// characters and the sub-delimiters that are safe there (RFC 3986 §2.2–2.3).
const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'&')
    .add(b'=')
    .add(b'+');

const PATH_SEGMENT: &AsciiSet = &COMPONENT.add(b'/');

fn recode(text: &str, set: &'static AsciiSet) -> String {
    let decoded = percent_decode_str(text).decode_utf8_lossy();
    utf8_percent_encode(&decoded, set).to_string()
}

/// The canonical form of a service URL for comparison: scheme and host lower-case, default port
/// dropped, every escape decoded and re-encoded one way, query parameters in their order without
/// `ticket`, no fragment. `None` if it is not an absolute http(s) URL.
pub fn canonical_service(raw: &str) -> Option<String> {
    let url = Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    let mut out = format!(
        "{}://{}",
        url.scheme(),
        url.host_str()?.to_ascii_lowercase()
    );
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let path = url.path();
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| recode(segment, PATH_SEGMENT))
        .collect();
    out.push_str(&segments.join("/"));
    if let Some(query) = url.query() {
        let pairs: Vec<String> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                percent_decode_str(name).decode_utf8_lossy() != "ticket"
            })
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) => {
                    format!("{}={}", recode(name, COMPONENT), recode(value, COMPONENT))
                }
                None => recode(pair, COMPONENT),
            })
            .collect();
        if !pairs.is_empty() {
            out.push('?');
            out.push_str(&pairs.join("&"));
        }
    }
    Some(out)
}

/// The service URL without a stale `ticket` parameter, otherwise as the client sent it: where the
/// ticket is appended.
pub fn without_ticket(raw: &str) -> Option<String> {
    let mut url = Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    if let Some(query) = url.query() {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                !pair.is_empty() && percent_decode_str(name).decode_utf8_lossy() != "ticket"
            })
            .collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.set_query(Some(&kept.join("&")));
        }
    }
    Some(url.to_string())
}

/// The URL the browser goes back to with its ticket.
pub fn with_ticket(service: &str, ticket: &str) -> String {
    let separator = if service.contains('?') { '&' } else { '?' };
    format!("{service}{separator}ticket={ticket}")
}

impl CasService {
    /// A service with the defaults of the configuration file: order 0, no attribute released,
    /// `uid` as `cas:user`, no proxying, no MFA, no single logout.
    pub fn new(id: &str, name: &str, pattern: &str, mode: MatchMode) -> Self {
        Self {
            id: id.to_string(),
            name: name.to_string(),
            pattern: pattern.to_string(),
            mode,
            order: 0,
            attributes: Vec::new(),
            user_attribute: default_user_attribute(),
            attributes_on_cas2: true,
            proxy: false,
            mfa_required: false,
            single_logout: false,
            logout_url: None,
        }
    }

    /// Whether a (canonical) service URL is this service's.
    pub fn matches(&self, canonical: &str) -> bool {
        match self.mode {
            MatchMode::Exact => canonical_service(&self.pattern).as_deref() == Some(canonical),
            MatchMode::Prefix => {
                let Some(pattern) = canonical_service(&self.pattern) else {
                    return false;
                };
                let pattern = pattern.split('?').next().unwrap_or_default();
                let url = canonical.split('?').next().unwrap_or_default();
                let base = pattern.trim_end_matches('/');
                // Scheme, host and port exact, and the path continues on a segment boundary
                // (so neither `moodle.uca.fr.evil.example` nor `/moodle2` match `…/moodle`).
                url.strip_prefix(base)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            // Anchored, and the URL's host must also be the pattern's literal host: whatever the
            // rest of the expression says (`(.*)`, `[^/]*`, a `|`), no other host matches.
            MatchMode::Regex => {
                let host = Url::parse(canonical)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
                literal_host(&self.pattern).is_some_and(|literal| host == Some(literal))
                    && regex::Regex::new(&format!("^(?:{})$", self.pattern))
                        .is_ok_and(|re| re.is_match(canonical))
            }
        }
    }

    /// The checks a service must pass before it is registered (config or CLI).
    pub fn check(&self, allow_http: bool) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "id `{}`: use 1 to 64 lower-case letters, digits, `-` or `_`",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            return Err("the name is empty".into());
        }
        let scheme_ok = |scheme: &str| scheme == "https" || (allow_http && scheme == "http");
        match self.mode {
            MatchMode::Exact | MatchMode::Prefix => {
                let url = Url::parse(&self.pattern)
                    .map_err(|e| format!("pattern `{}` is not a URL: {e}", self.pattern))?;
                if !scheme_ok(url.scheme()) {
                    return Err(format!(
                        "pattern `{}` must be https (http only with cas.allow_http_services)",
                        self.pattern
                    ));
                }
                if url.host_str().is_none() || url.fragment().is_some() {
                    return Err(format!(
                        "pattern `{}` needs a host and no fragment",
                        self.pattern
                    ));
                }
            }
            MatchMode::Regex => check_regex(&self.pattern, allow_http)?,
        }
        if let Some(url) = &self.logout_url {
            let parsed = Url::parse(url).map_err(|e| format!("logout_url `{url}`: {e}"))?;
            if !scheme_ok(parsed.scheme()) {
                return Err(format!("logout_url `{url}` must be https"));
            }
        }
        const KNOWN: &[&str] = &[
            "uid",
            "mail",
            "displayName",
            "givenName",
            "sn",
            "eduPersonPrincipalName",
            "eduPersonAffiliation",
            "eduPersonPrimaryAffiliation",
            "supannEtuId",
            "supannEmpId",
            "supannEntiteAffectation",
        ];
        for name in self.attributes.iter().chain([&self.user_attribute]) {
            if !KNOWN.contains(&name.as_str()) {
                return Err(format!(
                    "unknown attribute `{name}` (known: {})",
                    KNOWN.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The host a regex pattern starts with (`https://ent\.uca\.fr/…` → `ent.uca.fr`), unescaped and
/// lower-case; `None` if it does not start with a literal host.
fn literal_host(pattern: &str) -> Option<String> {
    let body = pattern.strip_prefix('^').unwrap_or(pattern);
    let rest = body
        .strip_prefix("https://")
        .or_else(|| body.strip_prefix("http://"))?;
    let end = rest
        .find(['/', '(', '[', '?', '$', ':', '|', '*', '+', '{', ')'])
        .unwrap_or(rest.len());
    let host = rest[..end].replace("\\.", ".").replace("\\-", "-");
    (!host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
    .then(|| host.to_ascii_lowercase())
}

/// Refuses the regular expressions that let other sites in (DESIGN.md §7): an unescaped `.` in
/// the host (`https://moodle.uca.fr` also matches `https://moodleXuca.fr`), a trailing `.*`
/// (`https://moodle\.uca\.fr.*` matches `moodle.uca.fr.evil.example`; for "every path under",
/// the `prefix` match says it safely), a host that is not literal, anything not pinned to
/// `https://`.
fn check_regex(pattern: &str, allow_http: bool) -> Result<(), String> {
    regex::Regex::new(pattern)
        .map_err(|e| format!("pattern `{pattern}` is not a valid regex: {e}"))?;
    let body = pattern.strip_prefix('^').unwrap_or(pattern);
    let rest = if let Some(rest) = body.strip_prefix("https://") {
        rest
    } else if let Some(rest) = body.strip_prefix("http://").filter(|_| allow_http) {
        rest
    } else {
        return Err(format!(
            "pattern `{pattern}` must start with `https://` and a literal host"
        ));
    };
    let host_end = rest.find(['/', '(', '[', '?', '$']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    let mut previous = ' ';
    for c in host.chars() {
        if c == '.' && previous != '\\' {
            return Err(format!(
                "pattern `{pattern}`: escape the dots of the host (`\\.`), or it matches other hosts"
            ));
        }
        if matches!(c, '*' | '+' | '|' | '{') {
            return Err(format!("pattern `{pattern}`: the host must be literal"));
        }
        previous = c;
    }
    let trimmed = pattern.trim_end_matches('$');
    if trimmed.ends_with(".*") && !trimmed.ends_with("\\.*") {
        return Err(format!(
            "pattern `{pattern}` ends with `.*`: for every path under a URL, use the `prefix` match"
        ));
    }
    if host.is_empty() || literal_host(pattern).is_none() {
        return Err(format!("pattern `{pattern}` has no literal host"));
    }
    // A top-level alternative would escape the host: `https://a\.fr/x|.+`.
    let mut depth = 0i32;
    let mut escaped = false;
    for c in pattern.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            '|' if depth == 0 => {
                return Err(format!(
                    "pattern `{pattern}`: a top-level `|` lets other URLs in; group the alternatives"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The storage port of the CLI-managed services.
#[async_trait]
pub trait ServiceStore: Send + Sync {
    async fn list_cas_services(&self) -> Result<Vec<CasService>, StorageError>;
    /// [`StorageError::Conflict`] if the id exists.
    async fn insert_cas_service(&self, service: &CasService, now: i64) -> Result<(), StorageError>;
    async fn delete_cas_service(&self, id: &str) -> Result<bool, StorageError>;
}

/// The services of the configuration and of the database, in evaluation order.
#[derive(Debug, Clone, Default)]
pub struct ServiceRegistry {
    services: Vec<CasService>,
}

impl ServiceRegistry {
    /// In ascending order (a stable sort: at equal order, configuration services first).
    pub fn new(mut services: Vec<CasService>) -> Self {
        services.sort_by_key(|s| s.order);
        Self { services }
    }

    pub fn services(&self) -> &[CasService] {
        &self.services
    }

    /// The first service (in order) whose pattern matches the URL.
    pub fn find(&self, service_url: &str) -> Option<&CasService> {
        let canonical = canonical_service(service_url)?;
        self.services.iter().find(|s| s.matches(&canonical))
    }

    pub fn by_id(&self, id: &str) -> Option<&CasService> {
        self.services.iter().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn service(pattern: &str, mode: MatchMode) -> CasService {
        CasService::new("moodle", "Moodle", pattern, mode)
    }

    #[test]
    fn escapes_case_stale_tickets_and_defaults_do_not_matter() {
        let a = canonical_service(
            "https://Moodle.UCA.fr:443/login/index.php?a=1%3a2&ticket=ST-1&b=%7e",
        )
        .unwrap();
        let b = canonical_service("https://moodle.uca.fr/login/index.php?a=1%3A2&b=~").unwrap();
        assert_eq!(a, b);
        assert_ne!(
            canonical_service("https://moodle.uca.fr/login/index.php?a=1").unwrap(),
            canonical_service("https://moodle.uca.fr/login/index.php?a=2").unwrap()
        );
        assert_eq!(canonical_service("javascript:alert(1)"), None);
        assert_eq!(canonical_service("not a url"), None);
    }

    #[test]
    fn a_stale_ticket_is_dropped_and_the_rest_kept() {
        assert_eq!(
            without_ticket("https://app.uca.fr/p?x=1&ticket=ST-abc&y=2#frag").unwrap(),
            "https://app.uca.fr/p?x=1&y=2"
        );
        assert_eq!(
            without_ticket("https://app.uca.fr/p?ticket=ST-abc").unwrap(),
            "https://app.uca.fr/p"
        );
        assert_eq!(
            with_ticket("https://app.uca.fr/p?x=1", "ST-1"),
            "https://app.uca.fr/p?x=1&ticket=ST-1"
        );
        assert_eq!(
            with_ticket("https://app.uca.fr/p", "ST-1"),
            "https://app.uca.fr/p?ticket=ST-1"
        );
    }

    #[test]
    fn prefix_stops_at_segment_boundaries_and_pins_the_host() {
        let s = service("https://moodle.uca.fr/moodle", MatchMode::Prefix);
        let ok = |u: &str| s.matches(&canonical_service(u).unwrap());
        assert!(ok("https://moodle.uca.fr/moodle"));
        assert!(ok("https://moodle.uca.fr/moodle/login/index.php?x=1"));
        assert!(!ok("https://moodle.uca.fr/moodle2/login"));
        assert!(!ok("https://moodle.uca.fr.evil.example/moodle/login"));
        assert!(!ok("http://moodle.uca.fr/moodle/login"));
        assert!(!ok("https://moodle.uca.fr:8443/moodle/login"));
        assert!(!ok("https://evil.example/moodle/"));
    }

    #[test]
    fn exact_means_exact() {
        let s = service("https://app.uca.fr/cas?x=1", MatchMode::Exact);
        assert!(s.matches(&canonical_service("https://APP.uca.fr/cas?x=1&ticket=ST-9").unwrap()));
        assert!(!s.matches(&canonical_service("https://app.uca.fr/cas?x=2").unwrap()));
        assert!(!s.matches(&canonical_service("https://app.uca.fr/cas/x?x=1").unwrap()));
    }

    #[test]
    fn a_regex_never_reaches_another_host() {
        for pattern in [
            r"https://ent\.uca\.fr(.*)",
            r"https://ent\.uca\.fr[^/]*/x",
            r"https://ent\.uca\.fr/x|.+",
        ] {
            let s = service(pattern, MatchMode::Regex);
            for evil in [
                "https://ent.uca.fr.evil.example/x",
                "https://evil.example/",
                "https://ent.uca.frx/x",
            ] {
                assert!(
                    !s.matches(&canonical_service(evil).unwrap()),
                    "{pattern} ~ {evil}"
                );
            }
        }
        let s = service(r"https://ent\.uca\.fr(/.*)?", MatchMode::Regex);
        assert!(s.matches(&canonical_service("https://ent.uca.fr/a").unwrap()));
    }

    #[test]
    fn regexes_are_anchored() {
        let s = service(
            r"https://ent\.uca\.fr/(portail|scolarite)/.*",
            MatchMode::Regex,
        );
        assert!(s.matches(&canonical_service("https://ent.uca.fr/portail/x").unwrap()));
        assert!(!s.matches(&canonical_service("https://ent.uca.fr/autre/x").unwrap()));
        assert!(!s.matches(
            &canonical_service("https://evil.example/?https://ent.uca.fr/portail/x").unwrap()
        ));
    }

    #[test]
    fn dangerous_services_are_refused() {
        let check = |pattern: &str, mode| service(pattern, mode).check(false);
        assert!(
            check(
                r"https://ent\.uca\.fr/(portail|scol)/[a-z/]*",
                MatchMode::Regex
            )
            .is_ok()
        );
        assert!(
            check(r"https://ent.uca.fr/portail/[a-z]*", MatchMode::Regex).is_err(),
            "dots"
        );
        assert!(
            check(r"https://ent\.uca\.fr/portail/.*", MatchMode::Regex).is_err(),
            "use prefix"
        );
        assert!(
            check(r"https://ent\.uca\.fr.*", MatchMode::Regex).is_err(),
            "trailing .*"
        );
        assert!(check(r".*", MatchMode::Regex).is_err());
        assert!(
            check(r"https://.*\.uca\.fr/", MatchMode::Regex).is_err(),
            "wildcard host"
        );
        assert!(
            check(r"https://ent\.uca\.fr/(", MatchMode::Regex).is_err(),
            "invalid"
        );
        assert!(
            check("http://app.uca.fr/", MatchMode::Prefix).is_err(),
            "http"
        );
        assert!(
            service("http://127.0.0.1:8080/", MatchMode::Prefix)
                .check(true)
                .is_ok()
        );
        assert!(check("app.uca.fr", MatchMode::Exact).is_err());
        let mut bad = service("https://app.uca.fr/", MatchMode::Prefix);
        bad.attributes = vec!["password".into()];
        assert!(bad.check(false).is_err());
        bad.attributes = vec![];
        bad.id = "Bad Id".into();
        assert!(bad.check(false).is_err());
    }

    #[test]
    fn the_registry_takes_the_first_match_in_order() {
        let mut general = service("https://app.uca.fr/", MatchMode::Prefix);
        general.id = "general".into();
        general.order = 10;
        let mut specific = service("https://app.uca.fr/notes", MatchMode::Prefix);
        specific.id = "notes".into();
        specific.order = 1;
        let registry = ServiceRegistry::new(vec![general, specific]);
        assert_eq!(
            registry.find("https://app.uca.fr/notes/x").unwrap().id,
            "notes"
        );
        assert_eq!(
            registry.find("https://app.uca.fr/other").unwrap().id,
            "general"
        );
        assert!(registry.find("https://other.uca.fr/").is_none());
        assert!(registry.find("garbage").is_none());
    }

    proptest! {
        #[test]
        fn canonicalisation_is_idempotent_and_ignores_escape_case(
            path in "[a-zA-Z0-9/:._~-]{0,20}",
            value in "[ -~]{0,20}",
        ) {
            let raw = format!(
                "https://app.uca.fr/{}?v={}",
                path.trim_start_matches('/'),
                url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
            );
            let canonical = canonical_service(&raw).expect("a valid URL");
            prop_assert_eq!(canonical_service(&canonical), Some(canonical.clone()));
            // The same URL with every escape in lower case.
            let mut lower = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                lower.push(c);
                if c == '%' {
                    lower.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
                }
            }
            prop_assert_eq!(canonical_service(&lower), Some(canonical));
        }
    }
}
