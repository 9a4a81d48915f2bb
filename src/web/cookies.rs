//! Cookies and CSRF tokens.
//!
//! Cookie names carry the `__Host-` prefix on https (host-only, `Secure`, `Path=/`), so no
//! sibling subdomain can set or shadow them; plain names on an http demo issuer.
//!
//! CSRF (DESIGN.md §9): double submit. A random 128-bit value lives in a host-only, HttpOnly
//! cookie and in a hidden `csrf` field of every form; a POST is accepted only when both are
//! present and equal (compared in constant time). A cross-site page can neither read nor set the
//! cookie, so it cannot forge the field.

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HeaderValue};

use crate::entropy::{Entropy, EntropyExt};

/// A cookie's full name for this deployment.
pub fn name(base: &str, https: bool) -> String {
    if https {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// The value of cookie `name`, if the request carries it.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .filter(|value| {
            !value.is_empty()
                && value.len() <= 256
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure on https; `max_age` 0 deletes.
pub fn set(name: &str, value: &str, max_age_seconds: u64, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}"
    ))
    .expect("cookie names and values are ASCII")
}

/// A `Set-Cookie` value like [`set`], but without `Max-Age` when `max_age_seconds` is `None`: a
/// browser-session cookie, gone when the browser closes.
pub fn set_session(
    name: &str,
    value: &str,
    max_age_seconds: Option<u64>,
    https: bool,
) -> HeaderValue {
    match max_age_seconds {
        Some(seconds) => set(name, value, seconds, https),
        None => {
            let secure = if https { "; Secure" } else { "" };
            HeaderValue::from_str(&format!(
                "{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"
            ))
            .expect("cookie names and values are ASCII")
        }
    }
}

/// The SSO session cookie (DESIGN.md §5): `__Host-sesame` on https, `sesame` on a plain-http
/// demo issuer.
pub const SESSION_COOKIE: &str = "sesame";

const CSRF_COOKIE: &str = "sesame-csrf";
/// A CSRF cookie lasts a day; forms older than that ask to reload.
const CSRF_MAX_AGE: u64 = 24 * 3600;

/// The CSRF token for the forms of a page, and the cookie to set when the browser had none.
#[derive(Debug, Clone)]
pub struct CsrfToken {
    pub value: String,
    pub set_cookie: Option<HeaderValue>,
}

/// The browser's CSRF token, or a new one (to be set with the page).
pub fn csrf_token(headers: &HeaderMap, https: bool, entropy: &dyn Entropy) -> CsrfToken {
    let cookie = name(CSRF_COOKIE, https);
    match read(headers, &cookie) {
        Some(value) => CsrfToken {
            value,
            set_cookie: None,
        },
        None => {
            let value = entropy.token(16);
            CsrfToken {
                set_cookie: Some(set(&cookie, &value, CSRF_MAX_AGE, https)),
                value,
            }
        }
    }
}

/// Whether a POST's `csrf` field matches the browser's cookie.
pub fn csrf_valid(headers: &HeaderMap, https: bool, submitted: &str) -> bool {
    read(headers, &name(CSRF_COOKIE, https)).is_some_and(|cookie| {
        aws_lc_rs::constant_time::verify_slices_are_equal(cookie.as_bytes(), submitted.as_bytes())
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn cookies_are_read_by_exact_name_and_must_look_like_tokens() {
        let h = headers("PHPSESSID=x; sesame-csrf=abc_DEF-123; __Host-sesame-csrf=zzz");
        assert_eq!(read(&h, "sesame-csrf").as_deref(), Some("abc_DEF-123"));
        assert_eq!(read(&h, "__Host-sesame-csrf").as_deref(), Some("zzz"));
        assert_eq!(read(&h, "csrf"), None);
        assert_eq!(read(&headers("sesame-csrf=a b"), "sesame-csrf"), None);
    }

    #[test]
    fn csrf_requires_the_cookie_and_the_same_value() {
        assert!(csrf_valid(&headers("sesame-csrf=tok123"), false, "tok123"));
        assert!(!csrf_valid(&headers("sesame-csrf=tok123"), false, "tok124"));
        assert!(!csrf_valid(&HeaderMap::new(), false, "tok123"));
        assert!(
            !csrf_valid(&headers("sesame-csrf=tok123"), true, "tok123"),
            "https uses __Host-"
        );
    }

    #[test]
    fn https_cookies_are_host_only_and_secure() {
        let value = set(&name("sesame-csrf", true), "v", 60, true);
        let text = value.to_str().unwrap();
        assert!(text.starts_with("__Host-sesame-csrf=v; Path=/; HttpOnly; SameSite=Lax"));
        assert!(text.ends_with("; Secure"));
    }
}
