//! CAS responses: CAS 1 text (§2.4.2), CAS 2/3 XML in the namespace `http://www.yale.edu/tp/cas`
//! (§2.5.2, Appendix A's schema) and the JSON form (§2.5.1 `format=JSON`). Every value that comes
//! from a request or a record is escaped: an injected ticket such as
//! `ST-1</cas:authenticationFailure><cas:authenticationSuccess>` stays text.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::{Authentication, CasFailure, Format};

/// Escapes text for XML element content and attribute values.
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Whether `name` can be an XML element name as we write them (attribute names are ours, but a
/// wrong one must never break the document).
fn element_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const OPEN: &str = "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">\n";
const CLOSE: &str = "</cas:serviceResponse>\n";

/// A successful validation (§2.5.2), with attributes when there are some (§2.8 and Appendix A).
pub fn success(auth: &Authentication, format: Format) -> String {
    match format {
        Format::Xml => {
            let mut out = String::from(OPEN);
            out.push_str("    <cas:authenticationSuccess>\n");
            let _ = writeln!(
                out,
                "        <cas:user>{}</cas:user>",
                escape_xml(&auth.user)
            );
            if !auth.attributes.is_empty() {
                out.push_str("        <cas:attributes>\n");
                // Appendix A (schema 3.0.3): these three come first, in this order; `memberOf`
                // and any other attribute follow.
                const FIRST: [&str; 3] = [
                    "authenticationDate",
                    "longTermAuthenticationRequestTokenUsed",
                    "isFromNewLogin",
                ];
                let ordered = FIRST
                    .iter()
                    .filter_map(|name| auth.attributes.get_key_value(*name))
                    .chain(
                        auth.attributes
                            .iter()
                            .filter(|(name, _)| !FIRST.contains(&name.as_str())),
                    );
                for (name, values) in ordered {
                    if !element_name(name) {
                        continue;
                    }
                    for value in values {
                        let _ = writeln!(
                            out,
                            "            <cas:{name}>{}</cas:{name}>",
                            escape_xml(value)
                        );
                    }
                }
                out.push_str("        </cas:attributes>\n");
            }
            if let Some(iou) = &auth.proxy_granting_ticket {
                let _ = writeln!(
                    out,
                    "        <cas:proxyGrantingTicket>{}</cas:proxyGrantingTicket>",
                    escape_xml(iou)
                );
            }
            if !auth.proxies.is_empty() {
                out.push_str("        <cas:proxies>\n");
                for proxy in &auth.proxies {
                    let _ = writeln!(
                        out,
                        "            <cas:proxy>{}</cas:proxy>",
                        escape_xml(proxy)
                    );
                }
                out.push_str("        </cas:proxies>\n");
            }
            out.push_str("    </cas:authenticationSuccess>\n");
            out.push_str(CLOSE);
            out
        }
        Format::Json => {
            let mut success = Map::new();
            success.insert("user".into(), Value::String(auth.user.clone()));
            if !auth.attributes.is_empty() {
                let attributes: Map<String, Value> = auth
                    .attributes
                    .iter()
                    .map(|(name, values)| {
                        (
                            name.clone(),
                            Value::Array(values.iter().cloned().map(Value::String).collect()),
                        )
                    })
                    .collect();
                success.insert("attributes".into(), Value::Object(attributes));
            }
            if let Some(iou) = &auth.proxy_granting_ticket {
                success.insert("proxyGrantingTicket".into(), Value::String(iou.clone()));
            }
            if !auth.proxies.is_empty() {
                success.insert(
                    "proxies".into(),
                    Value::Array(auth.proxies.iter().cloned().map(Value::String).collect()),
                );
            }
            let body = json!({"serviceResponse": {"authenticationSuccess": success}});
            format!("{body}\n")
        }
    }
}

/// A failed validation (§2.5.2): the code, and a description for people.
pub fn failure(failure: &CasFailure, format: Format) -> String {
    match format {
        Format::Xml => format!(
            "{OPEN}    <cas:authenticationFailure code=\"{}\">\n        {}\n    </cas:authenticationFailure>\n{CLOSE}",
            failure.code.as_str(),
            escape_xml(&failure.description)
        ),
        Format::Json => {
            let body = json!({"serviceResponse": {"authenticationFailure": {
                "code": failure.code.as_str(),
                "description": failure.description,
            }}});
            format!("{body}\n")
        }
    }
}

/// `/proxy` success (§2.7.2).
pub fn proxy_success(ticket: &str, format: Format) -> String {
    match format {
        Format::Xml => format!(
            "{OPEN}    <cas:proxySuccess>\n        <cas:proxyTicket>{}</cas:proxyTicket>\n    </cas:proxySuccess>\n{CLOSE}",
            escape_xml(ticket)
        ),
        Format::Json => {
            let body = json!({"serviceResponse": {"proxySuccess": {"proxyTicket": ticket}}});
            format!("{body}\n")
        }
    }
}

/// `/proxy` failure (§2.7.2).
pub fn proxy_failure(failure: &CasFailure, format: Format) -> String {
    match format {
        Format::Xml => format!(
            "{OPEN}    <cas:proxyFailure code=\"{}\">\n        {}\n    </cas:proxyFailure>\n{CLOSE}",
            failure.code.as_str(),
            escape_xml(&failure.description)
        ),
        Format::Json => {
            let body = json!({"serviceResponse": {"proxyFailure": {
                "code": failure.code.as_str(),
                "description": failure.description,
            }}});
            format!("{body}\n")
        }
    }
}

/// CAS 1 `/validate` (§2.4.2): `yes\n<user>\n` or `no\n`.
pub fn cas1(user: Option<&str>) -> String {
    match user {
        // A user name never holds a line break; if one did, it must not forge a second line.
        Some(user) => format!("yes\n{}\n", user.replace(['\n', '\r'], "")),
        None => "no\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cas::CasErrorCode;

    fn auth() -> Authentication {
        let mut attributes = BTreeMap::new();
        attributes.insert(
            "eduPersonAffiliation".to_string(),
            vec!["student".to_string(), "member".to_string()],
        );
        attributes.insert(
            "displayName".to_string(),
            vec!["Émilie <Dupré> & co".to_string()],
        );
        Authentication {
            user: "emilie.dupre".into(),
            attributes,
            proxy_granting_ticket: None,
            proxies: vec![],
            auth_time: 0,
        }
    }

    #[test]
    fn success_repeats_multi_valued_attributes_and_escapes_values() {
        let xml = success(&auth(), Format::Xml);
        assert!(xml.starts_with("<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">"));
        assert!(xml.contains("<cas:user>emilie.dupre</cas:user>"));
        assert!(xml.contains("<cas:eduPersonAffiliation>student</cas:eduPersonAffiliation>\n            <cas:eduPersonAffiliation>member</cas:eduPersonAffiliation>"));
        assert!(xml.contains("<cas:displayName>Émilie &lt;Dupré&gt; &amp; co</cas:displayName>"));
        let json: serde_json::Value =
            serde_json::from_str(&success(&auth(), Format::Json)).unwrap();
        assert_eq!(
            json["serviceResponse"]["authenticationSuccess"]["user"],
            "emilie.dupre"
        );
        assert_eq!(
            json["serviceResponse"]["authenticationSuccess"]["attributes"]["eduPersonAffiliation"],
            serde_json::json!(["student", "member"])
        );
        let bare = Authentication {
            user: "x".into(),
            attributes: BTreeMap::new(),
            proxy_granting_ticket: None,
            proxies: vec![],
            auth_time: 0,
        };
        assert!(!success(&bare, Format::Xml).contains("cas:attributes"));
    }

    #[test]
    fn an_injected_ticket_stays_text() {
        let evil = "ST-1</cas:authenticationFailure><cas:authenticationSuccess><cas:user>admin";
        let body = failure(
            &CasFailure::new(
                CasErrorCode::InvalidTicket,
                format!("Ticket {evil} not recognized"),
            ),
            Format::Xml,
        );
        assert!(!body.contains("<cas:authenticationSuccess>"));
        assert!(body.contains("&lt;/cas:authenticationFailure&gt;"));
        assert_eq!(body.matches("<cas:authenticationFailure").count(), 1);
        assert_eq!(cas1(Some("a\nyes")), "yes\nayes\n");
        assert_eq!(cas1(None), "no\n");
    }
}
